"""Property-based fuzzing (hypothesis) of the code that reads untrusted text: the CoE parser, the
data readers and adapters, the crisis assessment, the crisis-reply check and the anonymizer.

The property is always the same: no crash other than the documented error types, and bounded
work (hypothesis' `deadline` per example and bounded input sizes). Example counts are moderate so
the whole file stays within about half a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empathy_rl import coe
from empathy_rl.anonymize import anonymize
from empathy_rl.data.adapters import ADAPTERS
from empathy_rl.data.readers import DataError, read_rows
from empathy_rl.safety import CATEGORIES, LEVELS, assess_crisis
from reward.crisis import check_reply

FUZZ = settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

TAGS = list(coe.ALL_TAGS) + ["<L5>", "</L0>", "<answer", "answer>", "<<answer>>", "＜L1＞", "<|im_end|>", "<|endoftext|>"]
PIECES = st.sampled_from(TAGS) | st.text(max_size=30) | st.sampled_from(["我想死", "想死你了", "kill myself", "13812345678", "\r\n", "\u3000", "\x00", "\ud7ff"])
TAG_SOUP = st.lists(PIECES, max_size=60).map("".join)
TEXT = st.text(max_size=400) | TAG_SOUP


def _nested(depth: int) -> str:
    return "".join(f"<L{1 + i % 4}><answer>" for i in range(depth)) + "x" + "".join(f"</answer></L{1 + i % 4}>" for i in range(depth))


# ------------------------------------------------------------------------------ CoE parser


@FUZZ
@given(TEXT)
def test_parse_coe_never_crashes(text: str) -> None:
    parsed = coe.parse_coe(text)
    assert parsed.ok == (parsed.error_code == coe.OK)
    assert coe.format_reward(parsed) in (0.0, 1.0)
    if parsed.ok:
        assert parsed.answer and len(parsed.layers) == 4


@FUZZ
@given(st.lists(st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and not any(t in s for t in ("<", ">"))), min_size=5, max_size=5))
def test_rendered_coe_round_trips(parts: list[str]) -> None:
    parsed = coe.parse_coe(coe.render_coe(parts[:4], parts[4]))
    expected = parts[4].replace("\r\n", "\n").replace("\r", "\n").strip()  # the parser normalizes newlines (documented)
    assert parsed.ok and parsed.answer == expected


@pytest.mark.parametrize("text", [_nested(2000), "<answer>" * 20000, "<L1>" + "a" * 500_000 + "</L1>", "\r" * 100_000])
def test_parse_coe_handles_huge_and_deeply_nested_input(text: str) -> None:
    assert coe.parse_coe(text).ok is False


# ------------------------------------------------------------------------------ readers and adapters

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
FIELDS = ["id", "title", "description", "text", "answers", "answer", "turns", "role", "language", "topic", "questionText",
          "questionTitle", "answerText", "questionLink", "questionID", "split"]
ROWS = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8)


def _drain(path: Path, adapter: str) -> int:
    bad: list[DataError] = []
    rows = read_rows(path, "auto", bad.append)
    return sum(1 for _ in ADAPTERS[adapter](rows, str(path), bad.append)) + len(bad)


@FUZZ
@given(st.lists(ROWS | JSON_VALUES, max_size=8), st.sampled_from(sorted(ADAPTERS)))
def test_jsonl_rows_of_any_shape(tmp_path_factory, rows: list, adapter: str) -> None:
    path = tmp_path_factory.mktemp("fz") / "x.jsonl"
    path.write_text("\n".join(json.dumps(r, allow_nan=True) for r in rows), encoding="utf-8")
    _drain(path, adapter)  # every wrong type is a BadRowError handed to on_bad_row, nothing else


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["x.jsonl", "x.json", "x.csv", "x.parquet"]), st.sampled_from(sorted(ADAPTERS)))
def test_arbitrary_bytes_in_files(tmp_path_factory, data: bytes, name: str, adapter: str) -> None:
    path = tmp_path_factory.mktemp("fz") / name
    path.write_bytes(data)
    try:
        _drain(path, adapter)
    except DataError:
        pass  # the documented error for a file that cannot be used as a whole


def test_invalid_utf8_line_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    good = json.dumps({"description": "d", "answer": "a"}).encode()
    path.write_bytes(good + b"\n" + b'{"description": "\xff\xfe"}\n' + good + b"\n")
    bad: list[DataError] = []
    rows = list(read_rows(path, "auto", bad.append))
    assert len(rows) == 2 and len(bad) == 1 and "UTF-8" in str(bad[0]) and "line 2" in str(bad[0])


def test_deeply_nested_json_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(DataError):
        list(read_rows(path))
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    bad: list[DataError] = []
    assert list(read_rows(jsonl, "auto", bad.append)) == [] and len(bad) == 1


def test_nan_and_wrong_types_are_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"description": NaN, "answer": "a"}\n{"description": "d", "answers": [1, 2]}\n{"description": "d", "answer": Infinity}\n', encoding="utf-8")
    bad: list[DataError] = []
    records = list(ADAPTERS["generic"](read_rows(path, "auto", bad.append), str(path), bad.append))
    assert records == [] and len(bad) == 3
    assert not any(math.isnan(0.0) for _ in records)


# ------------------------------------------------------------------------------ crisis assessment and reply check


@FUZZ
@given(TEXT, st.sampled_from([None, "zh", "en", "auto"]))
def test_assess_crisis_on_anything(text: str, language) -> None:
    result = assess_crisis(text, language)
    assert result.level in LEVELS
    assert set(result.categories) <= set(CATEGORIES)
    for ev in result.evidence:
        assert 0 <= ev.span[0] < ev.span[1] <= len(text)
        assert 0.0 <= ev.effective <= max(1.0, ev.weight)


@pytest.mark.parametrize("text", ["想死" * 25_000, "I want to die. " * 8_000, "a" * 1_000_000, ("kill " * 30_000) + "myself"])
def test_assess_crisis_bounded_on_huge_input(text: str) -> None:
    assert assess_crisis(text).level in LEVELS


def test_assess_crisis_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        assess_crisis(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        assess_crisis("x", "fr")


@FUZZ
@given(TEXT, st.sampled_from(["zh", "en", "auto"]))
def test_check_reply_on_anything(text: str, language: str) -> None:
    assert check_reply(text, language).value in (1.0, -1.0, -2.0)


# ------------------------------------------------------------------------------ anonymizer


@FUZZ
@given(TEXT)
def test_anonymize_never_crashes_and_is_idempotent(text: str) -> None:
    out = anonymize(text)
    assert isinstance(out, str)
    assert anonymize(out) == out


@pytest.mark.parametrize("text", ["1" * 300_000, "张伟" * 40_000, "Emily " * 30_000, "a@" * 100_000, "北京市朝阳区" * 15_000])
def test_anonymize_bounded_on_huge_input(text: str) -> None:
    assert isinstance(anonymize(text), str)
