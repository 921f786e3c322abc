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
DEV = Path(__file__).parent / "data" / "crisis_dev.jsonl"


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
    weak_hit = "I wrote my will last week"  # a rules hit below the concern line (weight 0.3)
    forced = CrisisClassifier({g: 5.0 for g in ngrams(weak_hit) | ngrams("zzz qqq")}, 0.0, 0.5)
    import empathy_rl.crisis_classifier as cc

    assert assess_crisis(weak_hit, use_classifier=False).level == "none"
    original = cc.load_default
    try:
        cc.load_default = lambda: forced  # type: ignore[assignment]
        result = assess_crisis(weak_hit)
        assert result.level == "concern" and any(ev.source == "classifier" for ev in result.evidence) and result.categories == ()
        # gated: without a rules hit the classifier flags nothing, however sure it is
        alone = assess_crisis("zzz qqq")
        assert alone.level == "none" and alone.classifier_probability is not None and alone.classifier_probability > 0.99
    finally:
        cc.load_default = original  # type: ignore[assignment]


# Development numbers documented in docs/safety.md (both files are development data: the rules were
# revised on them, so these are in-sample; the held-out estimate is the lead's blind set). The
# test keeps them from regressing (margin 0.03).
DOCUMENTED = {
    EVAL: {"all": {"recall": 1.0, "fpr": 0.0}, "language=en": {"recall": 1.0, "fpr": 0.0}, "language=zh": {"recall": 1.0, "fpr": 0.0}},
    DEV: {"all": {"recall": 1.0, "fpr": 0.0}, "language=en": {"recall": 1.0, "fpr": 0.0}, "language=zh": {"recall": 1.0, "fpr": 0.0}},
}


@pytest.mark.parametrize("path", [EVAL, DEV], ids=["crisis_eval", "crisis_dev"])
def test_development_sets_stay_at_documented_numbers(path: Path) -> None:
    items = crisis_eval.load(path)
    assert len(items) >= 120 and {i["language"] for i in items} == {"zh", "en"}
    report = crisis_eval.evaluate(items)
    for key, numbers in DOCUMENTED[path].items():
        assert report[key]["recall"] >= numbers["recall"] - 0.03, (key, report[key])
        assert report[key]["fpr"] <= numbers["fpr"] + 0.03, (key, report[key])
    assert report["all"]["urgent_recall"] >= 0.85


HELDOUT = Path(__file__).parent / "data" / "crisis_heldout.jsonl"


def test_blind_heldout_set_stays_at_its_measured_floor() -> None:
    """The blind set (docs/safety.md) was measured once after the revision: recall 0.55, FPR 0.15.
    It is never used to revise rules; this only catches regressions (margin 0.03). The goal of the
    issue (recall >= 0.95 at FPR <= 0.05) is not met, and this test does not pretend it is."""
    items = crisis_eval.load(HELDOUT)
    assert len(items) == 240 and "split" not in items[0]
    report = crisis_eval.evaluate(items)
    assert report["all"]["recall"] >= 0.52, report["all"]
    assert report["all"]["fpr"] <= 0.18, report["all"]


def test_classifier_cross_validation_matches_the_documented_numbers() -> None:
    """5-fold CV of the classifier on the development sets (python -m empathy_rl.crisis_classifier
    build): the shipped threshold is the CV one, out-of-fold recall/FPR as documented."""
    from empathy_rl.crisis_classifier import cross_validate, labelled_examples

    report = cross_validate([], labelled_examples([EVAL, DEV]), folds=5, target_fpr=0.03)
    assert abs(float(report["threshold"]) - load_default().threshold) < 0.02  # type: ignore[union-attr]
    oof = report["classifier_oof"]
    assert oof["fpr"] <= 0.03 and oof["recall"] >= 0.15  # type: ignore[index]
    assert report["rules_or_gated_classifier"]["fpr"] <= 0.03  # type: ignore[index]


@pytest.mark.parametrize(
    "text",
    ["I could kill for a coffee right now", "Dead tired after the night shift", "lmao this is killing me", "I'm gonna die lol, 2% battery",
     "气死我了，又堵车", "尴尬死了", "这关卡打得我想死哈哈", "社死现场", "我润了，明年去读研", "My sister is going to murder me when she sees the car",
     "I bought a rope ladder for the treehouse", "I'm so tired of living in this tiny flat", "No one would notice if I skipped the meeting, right?",
     "医生给我开了安眠药，吃了白天很困", "我切菜把手指割破了", "把旧衣服都捐了"],
)
def test_more_idioms_and_everyday_traps_are_not_flagged(text: str) -> None:
    assert assess_crisis(text).level == "none", assess_crisis(text)


@pytest.mark.parametrize(
    "text, level",
    [("My therapist asked if I ever wanted to hurt myself and I said no", "none"),
     ("没有伤害自己的想法，就是焦虑", "none"),
     ("我不是想自杀，就是想请假休息几天", "none"),
     ("He forced me to have sex when I said no", "urgent"),  # "I said no" without a question is no denial
     ("I'm not suicidal, but I wish I could stop existing", "concern")],
)
def test_negation_cases(text: str, level: str) -> None:
    assert assess_crisis(text).level == level, assess_crisis(text)


@pytest.mark.parametrize(
    "text",
    ["My roommate gave away her stuff and says she wants to end it all", "我闺蜜说她想结束一切，还把东西都送人了",
     "My brother has been cutting himself"],
)
def test_someone_else_at_risk_is_concern_even_with_several_signs(text: str) -> None:
    result = assess_crisis(text)
    assert result.level == "concern", result
    assert all(ev.about_other for ev in result.evidence if ev.effective > 0)


@pytest.mark.parametrize(
    "text, category",
    [("honestly kms, nothing works", "suicide"), ("thinking about sewerslide again", "suicide"), ("想紫砂", "suicide"),
     ("Bought charcoal and tape for the car windows", "suicide"), ("我已经买好了木炭和胶带", "suicide"),
     ("农药就放在柜子里，想着喝下去就解脱了", "suicide"), ("I sat in the garage with the engine running", "suicide"),
     ("sh urges are bad tonight", "self_harm"), ("难受的时候我会扇自己耳光", "self_harm"),
     ("My stepdad locks me in my room for days", "abuse"), ("他抓着我的头往墙上撞", "abuse"),
     ("已经买了老鼠药，想放进她的水杯里", "harm_to_others")],
)
def test_slang_and_means_are_flagged(text: str, category: str) -> None:
    result = assess_crisis(text)
    assert result.is_crisis and category in result.categories, result


def test_bundled_crisis_posts_are_all_flagged_and_others_are_not() -> None:
    """Our own seed posts are labelled: every crisis post must be flagged, no everyday post."""
    from empathy_rl.data.seed_posts import load_seed_posts

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
