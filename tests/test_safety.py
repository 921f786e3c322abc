"""Crisis assessment (rules from crisis_rules.yaml + the n-gram classifier), the crisis flag and
the crisis-resources text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from empathy_rl import crisis_eval
from empathy_rl.crisis_classifier import CrisisClassifier, load_default, ngrams
from empathy_rl.safety import (
    CATEGORIES, CRISIS_RESOURCES, assess_crisis, crisis_resources, crisis_terms, detect_crisis, load_rules_data, rule_ids,
)

EVAL = Path(__file__).parent / "data" / "crisis_eval.jsonl"


@pytest.mark.parametrize(
    "text, level, category",
    [
        ("我最近总是想自杀", "urgent", "suicide"),
        ("我真的不想活了", "urgent", "suicide"),
        ("I want to kill myself", "urgent", "suicide"),
        ("I've been cutting myself again", "urgent", "self_harm"),
        ("I don't want to wake up anymore", "concern", "suicide"),
        ("不想再醒来了", "concern", "suicide"),
        ("I gave away my guitar and my books to my friends", "urgent", "suicide"),
        ("I have been stockpiling my sleeping pills", "urgent", "suicide"),
        ("I was standing on the bridge for an hour last night", "urgent", "suicide"),
        ("I bought a knife to hurt my ex", "urgent", "harm_to_others"),
        ("My drunk father choked me last night", "urgent", "abuse"),
        ("I used a blade on my arm", "urgent", "self_harm"),
        ("I feel like a burden and there is no hope left for me", "urgent", "suicide"),
        ("我觉得自己是家里的累赘", "concern", "suicide"),
    ],
)
def test_warning_signs_are_assessed(text: str, level: str, category: str) -> None:
    result = assess_crisis(text)
    assert result.level == level, result
    assert category in result.categories
    assert detect_crisis(text)
    assert all(0 <= ev.span[0] < ev.span[1] <= len(text) for ev in result.evidence)


@pytest.mark.parametrize(
    "text",
    ["想死你了！", "笑死我了", "饿死了，累死了", "I was dying of laughter", "You're killing it!", "I'm dying to see you",
     "The news reported a suicide bombing downtown.", "In the novel the hero kills himself at the end.",
     "最近工作压力很大，睡不好", "I feel anxious before exams", "", "   "],
)
def test_idioms_news_and_everyday_distress_are_not_flagged(text: str) -> None:
    assert assess_crisis(text).level == "none"
    assert not detect_crisis(text)


def test_negation_lowers_a_level_and_keeps_the_evidence() -> None:
    plain, negated = assess_crisis("I want to hurt myself"), assess_crisis("I would never hurt myself")
    assert plain.level == "urgent" and negated.level == "none"
    (ev,) = [e for e in negated.evidence if e.category == "self_harm"]
    assert ev.negated and ev.weight == 1.0 and 0 < ev.effective < 0.5  # kept, below the concern line
    # with another sign of the same category the negated hit still counts
    assert assess_crisis("I would never kill myself, but I feel like a burden to everyone").level == "concern"
    assert assess_crisis("我从来没有想过自杀").level == "none"
    assert assess_crisis("我从来没有想过自杀").evidence[0].negated


def test_someone_else_at_risk_is_concern_and_reported_text_is_none() -> None:
    friend = assess_crisis("My friend told me she is suicidal")
    assert friend.level == "concern" and friend.evidence[0].about_other
    news = assess_crisis("新闻报道说一个学生跳楼了")
    assert news.level == "none" and news.evidence and news.evidence[0].reported


def test_levels_combine_signs_within_a_category() -> None:
    assert assess_crisis("I feel hopeless").level == "concern"
    assert assess_crisis("I feel hopeless and I'm a burden to my family").level == "urgent"


def test_terms_name_rule_ids() -> None:
    terms = crisis_terms("I want to kill myself. 我不想活了, I keep cutting myself")
    assert set(terms) <= set(rule_ids())
    assert {"en.suicide.ideation.explicit", "zh.suicide.ideation.explicit", "en.self_harm.act"} <= set(terms)


def test_rules_file_is_well_formed() -> None:
    data = load_rules_data()
    ids = [r["id"] for r in data["rules"]]
    assert len(ids) == len(set(ids))
    for rule in data["rules"]:
        assert rule["category"] in CATEGORIES and rule["language"] in ("zh", "en") and 0 < rule["weight"] <= 1
        for pattern in rule["patterns"]:
            re.compile(pattern)
    assert {r["language"] for r in data["rules"]} == {"zh", "en"}
    assert {r["category"] for r in data["rules"]} == set(CATEGORIES)


def test_language_restricts_the_rules() -> None:
    assert assess_crisis("我想自杀", "en", use_classifier=False).level == "none"
    assert assess_crisis("我想自杀", "zh").level == "urgent"


def test_classifier_model_round_trips_and_only_lifts_to_concern() -> None:
    model = load_default()
    assert model is not None and 0.5 <= model.threshold <= 0.99
    again = CrisisClassifier.from_tsv(model.to_tsv())
    text = "I have felt so empty for months"
    assert abs(again.probability(text) - model.probability(text)) < 1e-6
    forced = CrisisClassifier({g: 5.0 for g in ngrams("zzz qqq")}, 0.0, 0.5)
    import empathy_rl.crisis_classifier as cc

    original = cc.load_default
    try:
        cc.load_default = lambda: forced  # type: ignore[assignment]
        result = assess_crisis("zzz qqq")
        assert result.level == "concern" and result.evidence[-1].source == "classifier" and result.categories == ()
    finally:
        cc.load_default = original  # type: ignore[assignment]


# Measured numbers documented in docs/safety.md; the test keeps them from regressing (margin 0.03).
DOCUMENTED = {
    "all": {"recall": 0.86, "fpr": 0.0},
    "split=test": {"recall": 0.72, "fpr": 0.0},
    "language=en": {"recall": 0.87, "fpr": 0.0},
    "language=zh": {"recall": 0.85, "fpr": 0.0},
}


def test_evaluation_set_stays_at_documented_numbers() -> None:
    items = crisis_eval.load(EVAL)
    assert len(items) >= 120 and {i["language"] for i in items} == {"zh", "en"}
    report = crisis_eval.evaluate(items)
    for key, numbers in DOCUMENTED.items():
        assert report[key]["recall"] >= numbers["recall"] - 0.03, (key, report[key])
        assert report[key]["fpr"] <= numbers["fpr"] + 0.03, (key, report[key])


def test_bundled_crisis_posts_are_all_flagged_and_others_are_not() -> None:
    """Our own seed posts are labelled: every crisis post must be flagged, no everyday post."""
    from empathy_rl.warmstart import load_seed_posts

    posts = load_seed_posts()
    flagged = {p["id"]: detect_crisis(p["title"] + "\n" + p["description"]) for p in posts}
    missed = [p["id"] for p in posts if p["topic"] == "crisis" and not flagged[p["id"]]]
    false_alarms = [p["id"] for p in posts if p["topic"] != "crisis" and flagged[p["id"]]]
    assert sum(p["topic"] == "crisis" for p in posts) >= 12
    assert missed == [] and false_alarms == []


def test_resources_are_generic_in_both_languages() -> None:
    assert set(CRISIS_RESOURCES) == {"zh", "en"}
    assert "emergency" in CRISIS_RESOURCES["en"]
    assert "急救" in CRISIS_RESOURCES["zh"]
    for text in CRISIS_RESOURCES.values():
        assert not re.search(r"[0-9]{3}", text)  # the message names no number that may be wrong for the reader's country
    assert crisis_resources("fr") == CRISIS_RESOURCES["en"]
    assert crisis_resources("zh") == CRISIS_RESOURCES["zh"]
