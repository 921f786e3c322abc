"""Tests of the bundled seed posts and the templated CoE warm-start examples."""

from __future__ import annotations

import itertools
import re

import pytest

from empathy_rl import coe, warmstart
from empathy_rl.config import DataConfig
from empathy_rl.warmstart import CoEExample, build_examples, load_seed_posts

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


# ------------------------------------------------------------------------------------------
# build_examples
# ------------------------------------------------------------------------------------------


def test_deterministic_for_a_seed() -> None:
    assert build_examples(64, seed=3) == build_examples(64, seed=3)
    assert build_examples(64, seed=3) != build_examples(64, seed=4)


def test_count_and_alternating_languages() -> None:
    assert build_examples(0) == []
    for n in (1, 7, 160):
        examples = build_examples(n, seed=1)
        assert len(examples) == n
        assert all(isinstance(e, CoEExample) for e in examples)
        assert [e.language for e in examples] == [LANGUAGES[i % 2] for i in range(n)]
    assert {e.language for e in build_examples(2)} == set(LANGUAGES)


def test_negative_n_rejected() -> None:
    with pytest.raises(ValueError):
        build_examples(-1)


def test_queries_come_from_seed_posts() -> None:
    queries = {(p["language"], f"{p['title']}\n{p['description']}") for p in load_seed_posts()}
    examples = build_examples(200, seed=0)
    assert all((e.language, e.query) in queries for e in examples)
    # One full pass over each language's 48 posts uses every post once.
    assert len({e.query for e in build_examples(96, seed=5)}) == 96


def test_crisis_flag_matches_post_topic() -> None:
    topic_of = {f"{p['title']}\n{p['description']}": p["topic"] for p in load_seed_posts()}
    examples = build_examples(200, seed=2)
    assert any(e.crisis for e in examples) and not all(e.crisis for e in examples)
    for e in examples:
        assert e.crisis == (topic_of[e.query] == "crisis")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_limits(seed: int) -> None:
    for e in build_examples(300, seed=seed):
        layer_max = 24 if e.language == "zh" else 60
        low, high = (30, 80) if e.language == "zh" else (80, 240)
        assert len(e.layers) == 4
        for layer in e.layers:
            assert layer.strip() and len(layer) <= layer_max, (e.language, layer)
        assert low <= len(e.answer) <= high, (e.language, len(e.answer), e.answer)


def test_every_template_combination_within_limits() -> None:
    """Exhaustive check of the pools, so no unlucky seed can produce an over-long example."""
    for lang, pools in warmstart._POOLS.items():
        assert set(pools) == EXPECTED_TOPICS
        layer_max = warmstart.LAYER_MAX_CHARS[lang]
        low, high = warmstart.ANSWER_CHARS[lang]
        for topic, pool in pools.items():
            for layer in (*pool.emotions, *pool.causes, *pool.intents, *pool.strategies):
                assert len(layer) <= layer_max, (lang, topic, layer)
            closings = warmstart._CRISIS_CLOSINGS[lang] if topic == "crisis" else warmstart._CLOSINGS[lang]
            for parts in itertools.product(pool.openings, pool.bodies, closings):
                answer = warmstart._JOIN[lang].join(parts)
                assert low <= len(answer) <= high, (lang, topic, answer)
                if topic == "crisis":
                    assert any(w in answer.lower() for w in CRISIS_WORDS[lang]), answer


def test_crisis_examples_get_crisis_answers() -> None:
    crisis = [e for e in build_examples(400, seed=7) if e.crisis]
    assert {e.language for e in crisis} == set(LANGUAGES)
    for e in crisis:
        assert any(w in e.answer.lower() for w in CRISIS_WORDS[e.language]), e.answer


def test_examples_are_frozen() -> None:
    example = build_examples(1)[0]
    with pytest.raises(AttributeError):
        example.answer = "changed"  # type: ignore[misc]


def test_responses_are_well_formed_coe() -> None:
    for e in build_examples(200, seed=0):
        text = e.response()
        assert coe.format_reward(text) == 1.0, text
        parsed = coe.parse_coe(text)
        assert parsed.layers == e.layers
        assert parsed.answer == e.answer
