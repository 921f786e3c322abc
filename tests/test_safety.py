"""Crisis detection lexicon (zh, en) and the crisis-resources text."""

from __future__ import annotations

import re

import pytest

from empathy_rl.safety import CRISIS_LEXICON, CRISIS_RESOURCES, crisis_resources, crisis_terms, detect_crisis


@pytest.mark.parametrize(
    "text",
    [
        "我最近总是想自杀",
        "我真的不想活了",
        "有时候觉得活着没意思",
        "我想结束自己的生命",
        "昨天又割腕了",
        "站在楼顶想跳楼",
        "我一直在自残",
        "他劝我不要轻生",
        "I have been thinking about suicide.",
        "Sometimes I feel suicidal",
        "I want to kill myself",
        "I just want to end my life",
        "I've been cutting myself again",
        "I don't want to live anymore",
        "I don’t want to live anymore",  # curly apostrophe
        "my history of self-harm",
        "I took an overdose last year",
        "I want to die",
        "everyone would be better off dead without me",
    ],
)
def test_crisis_expressions_are_flagged(text: str) -> None:
    assert detect_crisis(text)
    assert crisis_terms(text)


@pytest.mark.parametrize(
    "text",
    [
        "最近工作压力很大，睡不好",
        "我和男朋友吵架了，很难过",
        "I feel anxious before exams",
        "My parents keep fighting and I feel lonely",
        "The dead battery killed my morning",  # no lexicon entry
        "",
    ],
)
def test_ordinary_distress_is_not_flagged(text: str) -> None:
    assert not detect_crisis(text)
    assert crisis_terms(text) == []


def test_negation_is_ignored_on_purpose() -> None:
    # False positives are accepted: the flag asks for care, it does not block.
    assert detect_crisis("I've never tried or contemplated suicide.")
    assert detect_crisis("我从来没有想过自杀")


def test_terms_name_lexicon_entries() -> None:
    terms = crisis_terms("I want to kill myself. 我不想活了, I keep cutting myself")
    assert set(terms) == {"kill myself", "不想活", "cutting myself"}
    assert all(t in CRISIS_LEXICON for t in terms)


def test_resources_are_generic_in_both_languages() -> None:
    assert set(CRISIS_RESOURCES) == {"zh", "en"}
    assert "emergency" in CRISIS_RESOURCES["en"]
    assert "急救" in CRISIS_RESOURCES["zh"]
    for text in CRISIS_RESOURCES.values():
        assert not re.search(r"[0-9]{3}", text)  # no phone number that may be wrong for the reader's country
    assert crisis_resources("fr") == CRISIS_RESOURCES["en"]
    assert crisis_resources("zh") == CRISIS_RESOURCES["zh"]


def test_bundled_crisis_posts_are_all_flagged_and_others_are_not():
    """Our own seed posts are labelled: every crisis post must be flagged, no everyday post."""
    from empathy_rl.warmstart import load_seed_posts

    posts = load_seed_posts()
    flagged = {p["id"]: detect_crisis(p["title"] + "\n" + p["description"]) for p in posts}
    missed = [p["id"] for p in posts if p["topic"] == "crisis" and not flagged[p["id"]]]
    false_alarms = [p["id"] for p in posts if p["topic"] != "crisis" and flagged[p["id"]]]
    assert sum(p["topic"] == "crisis" for p in posts) >= 12
    assert missed == [] and false_alarms == []
