"""Tests for the pure reward components (format, answer, crisis, combine) and the reward records."""

from __future__ import annotations

import dataclasses

import pytest

from empathy_rl.coe import render_coe
from reward.components import answer_component, combine, crisis_component, format_component
from reward.types import Score, ScoreRequest

LAYERS = (
    "Exhausted and anxious about constant overtime.",
    "Fear of being seen as lazy; all-or-nothing thinking about saying no.",
    "Wants understanding first, then some practical advice.",
    "Name the feeling, validate it, then explore one small boundary.",
)
ANSWER = "It sounds like you have been running on empty for a long time. What would one small boundary look like?"
GOOD = render_coe(LAYERS, ANSWER)


# --------------------------------------------------------------------------------------------
# format
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        GOOD + "<|im_end|>",  # EOS marker kept when special tokens are not skipped
        "\n  " + GOOD + "\n\n",
        GOOD.replace("\n", "\r\n"),
        render_coe(["愤怒", "被误解", "想被理解", "共情"], "听起来你真的很委屈。"),
    ],
    ids=["canonical", "eos", "whitespace", "crlf", "zh"],
)
def test_format_component_well_formed(text: str) -> None:
    assert format_component(text) == (1.0, "")


@pytest.mark.parametrize(
    "text, code",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Just a friendly reply without any tags.", "missing_tag"),
        (GOOD.replace("<L3>", "").replace("</L3>", ""), "missing_tag"),
        (GOOD[: GOOD.index("</answer>")], "truncated"),
        (GOOD[: GOOD.index("</L2>")], "truncated"),
        (GOOD + "\n<answer>again</answer>", "duplicate_tag"),
        ("Sure! " + GOOD, "outside_text"),
        (GOOD + " Hope this helps.", "outside_text"),
        (GOOD.replace(LAYERS[1], "   "), "empty_layer"),
        (GOOD.replace(ANSWER, ""), "empty_answer"),
        (
            GOOD.replace(f"<L1>{LAYERS[0]}</L1>", "@@").replace(f"<L2>{LAYERS[1]}</L2>", f"<L1>{LAYERS[0]}</L1>").replace(
                "@@", f"<L2>{LAYERS[1]}</L2>"
            ),
            "misordered",
        ),
        (GOOD.replace(f"<L1>{LAYERS[0]}</L1>", f"<L1>{LAYERS[0]}<answer>x</L1>").replace(f"<answer>{ANSWER}</answer>", f"</answer>{ANSWER}"), "nested"),
        (GOOD.upper(), "missing_tag"),
    ],
    ids=[
        "empty",
        "whitespace",
        "no-tags",
        "missing-layer",
        "cut-in-answer",
        "cut-in-L2",
        "duplicate",
        "chatter-before",
        "chatter-after",
        "empty-layer",
        "empty-answer",
        "misordered",
        "nested",
        "upper-case",
    ],
)
def test_format_component_malformed(text: str, code: str) -> None:
    assert format_component(text) == (0.0, code)


# --------------------------------------------------------------------------------------------
# answer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "similarity, mode, threshold, expected",
    [
        (0.5, "binary", 0.3, 1.0),
        (0.3, "binary", 0.3, 1.0),  # threshold is inclusive
        (0.2999, "binary", 0.3, 0.0),
        (-0.4, "binary", -0.5, 1.0),
        (-0.6, "binary", -0.5, 0.0),
        (0.42, "cosine", 0.3, 0.71),  # cosine: (s + 1) / 2
        (0.1, "cosine", 0.3, 0.55),  # threshold does not apply to cosine
        (-0.25, "cosine", 0.9, 0.375),
        (-1.0, "cosine", None, 0.0),
        (1.0, "cosine", None, 1.0),
        (0.6, "reference", None, 0.8),  # reference: same scale, from the reference similarity
        (-0.2, "reference", 0.9, 0.4),
        (None, "binary", 0.3, 0.0),
        (None, "cosine", 0.3, 0.0),
        (None, "binary", None, 0.0),  # no answer: no threshold needed
        (None, "anything", 0.3, 0.0),  # nothing to embed: 0 before the mode is looked at
    ],
)
def test_answer_component(similarity: float | None, mode: str, threshold: float | None, expected: float) -> None:
    result = answer_component(similarity, mode, threshold)
    assert result == pytest.approx(expected)
    assert isinstance(result, float)


def test_answer_component_binary_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="reward.answer_threshold"):
        answer_component(0.5, "binary", None)


@pytest.mark.parametrize("mode", ["soft", "Binary", ""])
def test_answer_component_unknown_mode(mode: str) -> None:
    with pytest.raises(ValueError, match="reward.answer_mode"):
        answer_component(0.5, mode, 0.3)


# --------------------------------------------------------------------------------------------
# crisis
# --------------------------------------------------------------------------------------------


# The crisis component must also acknowledge the risk (reward/crisis.py; more cases in
# tests/test_reward_crisis.py): every referral below is preceded by an acknowledgement.
@pytest.mark.parametrize(
    "answer",
    [
        "I am worried about your safety. Please contact your local emergency services right now.",
        "I am worried about you. You could call a crisis line tonight; they are there for exactly this.",
        "Your safety matters. In the US you can call or text 988 at any time.",
        "I take this seriously. Please reach out to a suicide prevention hotline.",
        "I'm worried about your safety. Could you call a trusted friend to stay with you?",
        "I'm worried about you. Please talk to a therapist today about these thoughts.",
        "I AM WORRIED ABOUT YOU. PLEASE CALL 911.",  # case-insensitive
        "我很担心你的安全。请立即拨打心理援助热线，或者联系身边信任的人。",
        "如果你有危险，请马上拨打120或去医院急诊。",
        "我很担心你，请马上报警。",
    ],
)
def test_crisis_with_referral(answer: str) -> None:
    assert crisis_component(True, answer) == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "That sounds really hard. Try to get some sleep and go for a walk.",
        "I hear how lonely you feel. What has helped before?",
        "听起来你很辛苦，要不要先好好休息一下？",
        "你的感受很重要，慢慢来。",
        "你可以寻求专业帮助。",  # not immediate help, no acknowledgement
        "Please contact your local emergency services right now.",  # no acknowledgement of the risk
        "",
        None,
    ],
)
def test_crisis_without_referral(answer: str | None) -> None:
    assert crisis_component(True, answer) == -1.0


@pytest.mark.parametrize(
    "answer",
    ["Please contact emergency services.", "请拨打心理危机热线。", "Go for a walk.", "", None],
)
def test_non_crisis_is_zero(answer: str | None) -> None:
    assert crisis_component(False, answer) == 0.0


@pytest.mark.parametrize("answer", ["每天散步1200步会有帮助。", "I wrote 1100 words in my journal."])
def test_crisis_numbers_inside_other_numbers_are_not_referrals(answer: str) -> None:
    assert crisis_component(True, answer) == -1.0


def test_referral_patterns_cover_both_languages() -> None:
    from reward.crisis import _spec

    assert set(_spec()["referral"]) == {"zh", "en"}


# --------------------------------------------------------------------------------------------
# combine and records
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, answer, crisis, weights, expected",
    [
        (1.0, 1.0, 0.0, (1.0, 1.0, 0.5), 2.0),
        (1.0, 0.0, -1.0, (1.0, 1.0, 0.5), 0.5),
        (0.0, 0.0, -1.0, (1.0, 1.0, 0.5), -0.5),
        (1.0, 0.42, 1.0, (0.5, 2.0, 0.25), 0.5 + 0.84 + 0.25),
        (1.0, 1.0, 1.0, (0.0, 0.0, 0.0), 0.0),
        (0.0, 1.0, 0.0, (3.0, 1.0, 1.0), 1.0),
    ],
)
def test_combine(fmt: float, answer: float, crisis: float, weights: tuple[float, float, float], expected: float) -> None:
    assert combine(fmt, answer, crisis, *weights) == pytest.approx(expected)


def test_combine_keyword_order() -> None:
    """Each weight multiplies its own component (not a neighbour's)."""
    assert combine(1.0, 0.0, 0.0, format_weight=2.0, answer_weight=3.0, crisis_weight=5.0) == 2.0
    assert combine(0.0, 1.0, 0.0, format_weight=2.0, answer_weight=3.0, crisis_weight=5.0) == 3.0
    assert combine(0.0, 0.0, 1.0, format_weight=2.0, answer_weight=3.0, crisis_weight=5.0) == 5.0


def test_score_request_defaults_and_frozen() -> None:
    req = ScoreRequest("query", GOOD)
    assert req.crisis is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.query = "other"  # type: ignore[misc]


def test_score_fields() -> None:
    score = Score(total=2.0, format=1.0, answer=1.0, similarity=0.6, crisis=0.0, failure="")
    assert dataclasses.asdict(score) == {
        "total": 2.0, "format": 1.0, "answer": 1.0, "similarity": 0.6, "crisis": 0.0, "failure": "",
        "reference_similarity": None, "language": "",  # defaults: not in reference mode, language unset
    }
    assert score == Score(2.0, 1.0, 1.0, 0.6, 0.0, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        score.total = 0.0  # type: ignore[misc]
