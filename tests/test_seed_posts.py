"""The bundled help-seeker posts (`empathy_rl/assets/seed_posts.jsonl`): fields, counts, lengths, crisis answers."""

from __future__ import annotations

import re

from empathy_rl.config import DataConfig
from empathy_rl.data.seed_posts import load_seed_posts

LANGUAGES = ("zh", "en")
REQUIRED_FIELDS = ("id", "language", "topic", "title", "description", "answers")
EXPECTED_TOPICS = {
    "work_stress", "exams", "family_conflict", "relationships", "loneliness", "grief", "sleep",
    "anxiety", "low_mood", "self_esteem", "parenting", "body_image", "crisis",
}
CRISIS_WORDS = {"en": ("emergency", "crisis"), "zh": ("急救", "危机", "热线")}
DESCRIPTION_CHARS = {"zh": (60, 200), "en": (200, 600)}
ANSWER_CHARS = {"zh": (110, 300), "en": (110, 700)}


# ------------------------------------------------------------------------------------------
# seed_posts.jsonl
# ------------------------------------------------------------------------------------------


def test_seed_posts_fields_and_ids() -> None:
    posts = load_seed_posts()
    assert len(posts) == 96
    ids = [post["id"] for post in posts]
    assert len(ids) == len(set(ids))
    for post in posts:
        for field in REQUIRED_FIELDS:
            assert field in post, f"{post.get('id')}: missing {field}"
        assert post["language"] in LANGUAGES
        assert re.fullmatch(rf"{post['language']}-\d{{3}}", post["id"]), post["id"]
        assert post["topic"] in EXPECTED_TOPICS, post["id"]
        assert post["title"].strip() and len(post["title"]) <= 60, post["id"]
        assert isinstance(post["answers"], list) and 1 <= len(post["answers"]) <= 2, post["id"]


def test_seed_posts_per_language_and_topic() -> None:
    posts = load_seed_posts()
    for lang in LANGUAGES:
        mine = [p for p in posts if p["language"] == lang]
        assert len(mine) == 48
        assert {p["topic"] for p in mine} == EXPECTED_TOPICS
        assert sum(p["topic"] == "crisis" for p in mine) >= 6


def test_seed_posts_lengths() -> None:
    for post in load_seed_posts():
        lang = post["language"]
        low, high = DESCRIPTION_CHARS[lang]
        assert low <= len(post["description"]) <= high, (post["id"], len(post["description"]))
        low, high = ANSWER_CHARS[lang]
        for answer in post["answers"]:
            assert low <= len(answer) <= high, (post["id"], len(answer))


def test_seed_crisis_answers_point_to_help() -> None:
    for post in load_seed_posts():
        if post["topic"] == "crisis":
            for answer in post["answers"]:
                assert any(w in answer.lower() for w in CRISIS_WORDS[post["language"]]), post["id"]


def test_seed_posts_pass_default_answer_filter() -> None:
    """Every answer survives the default `data.min_answer_chars` filter of prepare-data."""
    minimum = DataConfig().min_answer_chars
    assert all(len(a) >= minimum for post in load_seed_posts() for a in post["answers"])
