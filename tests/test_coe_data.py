"""The CoE SFT data format (`empathy_rl.coe_data`) and the bundled examples (`assets/coe/seed_coe.jsonl`).

The bundled file is what `empathy-rl sft` trains the demo on: every record must parse, only
accepted records train, crisis records must name the risk and point to emergency help and trusted
people, and the examples must fit the tiny model's response budget. The format's errors must name
``file:line`` and the field, so a hand-edited or teacher-drafted file can be fixed quickly.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from empathy_rl import coe
from empathy_rl.coe_data import (
    CoEDataError,
    CoERecord,
    Review,
    accepted_records,
    append_record,
    bundled_path,
    read_records,
    write_records,
)
from empathy_rl.data.seed_posts import load_seed_posts

# Emergency help (services or a crisis line) and trusted people, per language.
CRISIS_HELP = {"en": ("emergency", "crisis line"), "zh": ("急救", "危机热线")}
TRUSTED = {"en": ("trust",), "zh": ("信任",)}
# Character budgets that keep a rendered response well inside the tiny preset's 160 response
# tokens (tests/test_sft.py checks the token counts with the tiny tokenizer).
LAYER_MAX_CHARS = {"en": 30, "zh": 10}
ANSWER_CHARS = {"en": (30, 130), "zh": (8, 40)}


@pytest.fixture(scope="module")
def bundled() -> list[CoERecord]:
    return read_records(bundled_path())


# ------------------------------------------------------------------------------------------
# the bundled examples
# ------------------------------------------------------------------------------------------


def test_every_bundled_record_parses_and_is_accepted(bundled) -> None:
    assert len(bundled) >= 96
    assert accepted_records([bundled_path()]) == bundled  # all of them train
    for record in bundled:
        parsed = coe.parse_coe(record.response())
        assert parsed.ok, (record.id, parsed.errors)
        assert parsed.layers == record.layers and parsed.answer == record.answer
        assert record.provenance.source == "written" and record.review.reviewer


def test_bundled_languages_and_queries_come_from_the_seed_posts(bundled) -> None:
    posts = {(p["language"], f"{p['title']}\n{p['description']}"): p for p in load_seed_posts()}
    counts = Counter(r.language for r in bundled)
    assert counts["en"] == counts["zh"] > 0
    for record in bundled:
        post = posts.get((record.language, record.query))
        assert post is not None, f"{record.id}: query is not a bundled seed post"
        assert record.crisis == (post["topic"] == "crisis"), record.id
        assert record.topic == post["topic"], record.id
    assert {(r.language, r.query) for r in bundled} == set(posts)  # every post has examples


def test_bundled_crisis_records_name_the_risk_and_point_to_help(bundled) -> None:
    crisis = [r for r in bundled if r.crisis]
    assert {r.language for r in crisis} == {"en", "zh"} and len(crisis) >= 16
    for r in crisis:
        answer = r.answer.lower()
        assert any(w in answer for w in CRISIS_HELP[r.language]), (r.id, r.answer)
        assert any(w in answer for w in TRUSTED[r.language]), (r.id, r.answer)
        layers = " ".join(r.layers).lower()
        named = ("suicid", "self-harm", "safety", "risk") if r.language == "en" else ("自杀", "自伤", "安全", "轻生", "风险")
        assert any(w in layers for w in named), (r.id, r.layers)  # the reasoning names the risk
    for r in bundled:
        if not r.crisis:
            assert not any(w in r.answer.lower() for w in CRISIS_HELP[r.language]), r.id


def test_bundled_lengths_fit_the_tiny_budget(bundled) -> None:
    for r in bundled:
        for layer in r.layers:
            assert 0 < len(layer) <= LAYER_MAX_CHARS[r.language], (r.id, layer)
        low, high = ANSWER_CHARS[r.language]
        assert low <= len(r.answer) <= high, (r.id, len(r.answer), r.answer)


# ------------------------------------------------------------------------------------------
# the format's errors
# ------------------------------------------------------------------------------------------


def _good(rid: str = "x-1", **over) -> dict:
    record = {
        "id": rid, "language": "en", "topic": "sleep", "crisis": False, "query": "Cannot sleep\nI lie awake.",
        "layers": {"L1": "tired", "L2": "worry", "L3": "comfort", "L4": "listen"}, "answer": "That sounds exhausting.",
        "provenance": {"source": "written", "model": None, "created_at": None, "parent_id": None},
        "review": {"status": "accepted", "reviewer": "me", "reviewed_at": None, "notes": ""},
        "raw": None, "parse_error": None,
    }
    record.update(over)
    return record


def _file(tmp_path: Path, *lines: str, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(CoEDataError) as info:
        read_records(path)
    return str(info.value)


def test_round_trip_and_blank_lines(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps(_good("a")), "", json.dumps(_good("b", review={"status": "draft"})))
    records = read_records(path)
    assert [r.id for r in records] == ["a", "b"] and [r.accepted for r in records] == [True, False]
    out = tmp_path / "out.jsonl"
    assert write_records(out, records) == 2
    assert read_records(out) == records
    append_record(out, CoERecord("c", "zh", "睡不着", ("累", "担心", "安慰", "倾听"), "辛苦了。", review=Review(status="accepted")))
    assert [r.id for r in read_records(out)] == ["a", "b", "c"]


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps(_good("a")), '{"id": "b", "language": ')
    assert _error(path).startswith(f"{path}:2: invalid JSON")


@pytest.mark.parametrize(
    "over, field",
    [
        ({"crisis": "yes"}, "'crisis'"),
        ({"language": 5}, "'language'"),
        ({"language": "fr"}, "'language'"),
        ({"query": ["not", "text"]}, "'query'"),
        ({"layers": ["a", "b", "c", "d"]}, "'layers'"),
        ({"layers": {"L1": "a", "L2": "b", "L3": "c", "L4": 4}}, "'layers.L4'"),
        ({"review": {"status": "maybe"}}, "'review.status'"),
        ({"provenance": {"source": "copied"}}, "'provenance.source'"),
        ({"provenance": {"model": 3}}, "'provenance.model'"),
    ],
)
def test_wrong_types_name_the_field(tmp_path: Path, over: dict, field: str) -> None:
    path = _file(tmp_path, json.dumps(_good("a")), json.dumps(_good("b", **over)))
    message = _error(path)
    assert message.startswith(f"{path}:2:") and field in message, message


def test_unknown_and_missing_fields(tmp_path: Path) -> None:
    message = _error(_file(tmp_path, json.dumps(_good("a", mood="sad"))))
    assert ":1: unknown field(s) ['mood']" in message
    record = _good("a")
    del record["query"]
    assert "missing field 'query'" in _error(_file(tmp_path, json.dumps(record), name="b.jsonl"))
    message = _error(_file(tmp_path, json.dumps(_good("a", layers={"L1": "a", "L5": "b"})), name="c.jsonl"))
    assert "'layers' has unknown key(s) ['L5']" in message


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps(_good("a")), json.dumps(_good("b")), json.dumps(_good("a")))
    assert _error(path) == f"{path}:3: duplicate id 'a' (first on line 1)"


def test_duplicate_id_across_files(tmp_path: Path) -> None:
    first = _file(tmp_path, json.dumps(_good("a")), name="one.jsonl")
    second = _file(tmp_path, json.dumps(_good("a")), name="two.jsonl")
    with pytest.raises(CoEDataError, match=r"two\.jsonl: id 'a' also appears in .*one\.jsonl"):
        accepted_records([first, second])


def test_accepted_but_incomplete_is_rejected_and_drafts_do_not_train(tmp_path: Path) -> None:
    empty_layer = _good("a", layers={"L1": "tired", "L2": "", "L3": "comfort", "L4": "listen"})
    message = _error(_file(tmp_path, json.dumps(empty_layer)))
    assert message.startswith(f"{tmp_path / 'data.jsonl'}:1: record 'a' is accepted but not a complete CoE example")
    tagged = _good("a", answer="fine </answer> <answer>again")
    assert "accepted but not a complete CoE example" in _error(_file(tmp_path, json.dumps(tagged), name="t.jsonl"))
    # The same incomplete record as a draft (a teacher output that never parsed) is valid and never trains.
    draft = _good("b", layers={"L1": "", "L2": "", "L3": "", "L4": ""}, answer="", raw="<L1>half", parse_error="missing_tag",
                  review={"status": "draft"})
    path = _file(tmp_path, json.dumps(_good("a")), json.dumps(draft), json.dumps(_good("c", review={"status": "rejected"})), name="mix.jsonl")
    assert [r.id for r in read_records(path)] == ["a", "b", "c"]
    assert [r.id for r in accepted_records([path])] == ["a"]


def test_missing_file_and_non_object(tmp_path: Path) -> None:
    with pytest.raises(CoEDataError, match="no such CoE data file"):
        read_records(tmp_path / "absent.jsonl")
    assert _error(_file(tmp_path, "[1, 2]")).endswith("a record must be a JSON object, got list")
