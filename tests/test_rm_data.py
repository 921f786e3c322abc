"""Reward-model data: echo generators, the generic-reply asset, triples of every negative kind,
evaluation sets."""

from __future__ import annotations

import random

import pytest

from empathy_rl.data import CounselingRecord
from reward import rm_data
from reward.rm_data import build_eval_set, build_triples, echo_shuffle, echo_truncate, select_records


def record(rid: str, query: str, answers: list[str], topic: str = "", language: str = "en") -> CounselingRecord:
    return CounselingRecord(id=rid, source="t", language=language, title="", description=query, query=query, answers=answers, topic=topic)


EN = [
    record("a", "I cannot sleep at night. My thoughts keep racing. What can I do?", ["Racing thoughts at night are exhausting.", "Try a wind-down routine."], "sleep"),
    record("b", "My partner and I fight every day. I feel lost.", ["Daily fights wear anyone down."], "relationships"),
    record("c", "I wake up at 3am every night and cannot fall asleep again.", ["Early waking is common with stress."], "sleep"),
    record("d", "My boss criticises me in front of everyone.", ["Being criticised in public hurts."], ""),
]
ZH = [
    record("z1", "我最近总是失眠。躺在床上脑子停不下来。", ["失眠真的很折磨人，我们可以一起看看原因。"], language="zh"),
    record("z2", "和父母吵架以后，我一直很难过。", ["和父母起冲突后难过是很自然的。"], language="zh"),
]
ALL_KINDS = ["random", "same_topic", "echo_exact", "echo_truncate", "echo_shuffle", "generic"]


# ------------------------------------------------------------------------------ echoes


def test_echo_truncate_keeps_a_prefix_ending_at_a_boundary() -> None:
    q = "I cannot sleep at night. My thoughts keep racing. What can I do about it?"
    cut = echo_truncate(q, 0.5)
    assert q.startswith(cut) and 0 < len(cut) < len(q)
    assert cut.endswith(".") or cut.endswith("night") or q[len(cut)] in " ."  # ends at a sentence or word end


def test_echo_truncate_chinese_and_bad_ratio() -> None:
    q = "我最近总是失眠。躺在床上脑子停不下来，越想越焦虑。"
    cut = echo_truncate(q, 0.5)
    assert q.startswith(cut) and len(cut) < len(q)
    with pytest.raises(ValueError, match="echo_truncate_ratio"):
        echo_truncate(q, 1.0)


@pytest.mark.parametrize(
    "query",
    [
        "I cannot sleep. My thoughts race. What can I do?",  # sentences
        "I cannot sleep, my thoughts race",  # clauses
        "nothing works anymore for me",  # words
        "我最近总是失眠。躺在床上脑子停不下来。",  # zh sentences
        "我最近总是失眠睡不着觉",  # zh blocks
    ],
)
def test_echo_shuffle_reorders_the_same_material(query: str) -> None:
    out = echo_shuffle(query, random.Random(0))
    assert out != query
    strip = lambda s: sorted(s.replace(" ", ""))  # noqa: E731 - same characters, other order
    assert strip(out) == strip(query)


def test_echo_shuffle_of_one_piece_is_the_query() -> None:
    assert echo_shuffle("alone", random.Random(0)) == "alone"


def test_sentence_split() -> None:
    assert rm_data.split_sentences("One. Two!\nThree？四。") == ["One.", "Two!", "Three？", "四。"]


# ------------------------------------------------------------------------------ assets


@pytest.mark.parametrize("language", ["en", "zh"])
def test_generic_and_offtopic_assets(language: str) -> None:
    generic, offtopic = rm_data.generic_replies(language), rm_data.offtopic_texts(language)
    assert len(generic) >= 10 and len(offtopic) >= 10
    assert not set(generic) & set(offtopic)


def test_unknown_asset_language() -> None:
    with pytest.raises(ValueError, match="no texts for language 'fr'"):
        rm_data.generic_replies("fr")


# ------------------------------------------------------------------------------ triples


def test_triples_of_every_kind() -> None:
    ts = build_triples(EN, "en", ALL_KINDS, seed=0)
    assert ts.queries == 4 and ts.pairs == 5
    by_kind: dict[str, list] = {}
    for t in ts.triples:
        by_kind.setdefault(t.kind, []).append(t)
    answers_of = {r.query: set(r.answers) for r in EN}
    all_answers = {a for r in EN for a in r.answers}
    topic_of = {r.query: r.topic for r in EN}
    for t in ts.triples:
        assert t.positive in answers_of[t.query]
    for t in by_kind["random"]:
        assert t.negative in all_answers and t.negative not in answers_of[t.query]
    for t in by_kind["same_topic"]:
        other = next(r for r in EN if t.negative in r.answers)
        assert other.query != t.query and other.topic == topic_of[t.query] != ""
    # only the two sleep records (3 pairs) have another record of their topic
    assert ts.kinds["same_topic"] == 3 and ts.unavailable["same_topic"] == 2
    for t in by_kind["echo_exact"]:
        assert t.negative == t.query
    for t in by_kind["echo_truncate"]:
        assert t.query.startswith(t.negative) and len(t.negative) < len(t.query)
    for t in by_kind["echo_shuffle"]:
        assert t.negative != t.query and sorted(t.negative.replace(" ", "")) == sorted(t.query.replace(" ", ""))
    for t in by_kind["generic"]:
        assert t.negative in rm_data.generic_replies("en")
    assert ts.kinds["random"] == ts.kinds["echo_exact"] == ts.kinds["generic"] == 5
    assert len(ts.triples) == sum(ts.kinds.values())
    assert ts.summary()["negatives"]["same_topic"] == 3


def test_triples_follow_the_negatives_list_and_language() -> None:
    ts = build_triples(EN + ZH, "zh", ["echo_exact", "generic"], seed=1)
    assert ts.queries == 2 and {t.kind for t in ts.triples} == {"echo_exact", "generic"}
    assert all(t.negative in rm_data.generic_replies("zh") for t in ts.triples if t.kind == "generic")


def test_triples_are_deterministic_and_cut() -> None:
    a = build_triples(EN, "en", ALL_KINDS, seed=3, max_chars=20)
    b = build_triples(EN, "en", ALL_KINDS, seed=3, max_chars=20)
    assert a.triples == b.triples
    assert all(len(t.query) <= 20 and len(t.positive) <= 20 for t in a.triples)


def test_select_records_limits_per_language() -> None:
    assert [r.id for r in select_records(EN + ZH, "zh", 0, 0)] == ["z1", "z2"]
    assert len(select_records(EN + ZH, "en", 2, 0)) == 2


def test_eval_set_has_a_negative_of_each_kind() -> None:
    es = build_eval_set(EN, "en", "test", seed=0)
    assert es.queries == [r.query for r in EN] and es.positives == [r.answers[0] for r in EN]
    for kind in ("random", "off_topic", "echo_exact", "echo_truncate", "echo_shuffle", "generic"):
        assert len(es.negatives[kind]) == 4, kind
    assert len(es.negatives["same_topic"]) == 2
    for i, text in es.negatives["off_topic"]:
        assert text in rm_data.offtopic_texts("en")
    for i, text in es.negatives["random"]:
        assert text != es.positives[i]
    assert set(es.texts()) >= set(es.queries) | set(es.positives)
