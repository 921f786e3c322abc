"""`python -m empathy_rl.crisis_eval FILE` on any labelled file with the crisis_eval keys: no
`split`, unknown kinds, and clear errors naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy_rl import crisis_eval


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_file_without_split_and_with_unknown_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "blind.jsonl", [
        {"id": "a", "language": "en", "level": "urgent", "categories": ["suicide"], "kind": "indirect", "text": "I want to kill myself"},
        {"id": "b", "language": "zh", "level": "none", "categories": [], "kind": "ambiguous_none", "text": "想死你了"},
        {"id": "c", "language": "en", "level": "none", "text": "I like pottery"},  # no categories, no kind
    ])
    assert crisis_eval.main([str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["all"] == {"positives": 1, "negatives": 2, "recall": 1.0, "fpr": 0.0, "urgent_recall": 1.0, "level_accuracy": 1.0}
    assert report["kind=ambiguous_none"]["flag_correct"] == 1.0 and report["kind=unspecified"]["n"] == 1
    assert not any(key.startswith("split=") for key in report)
    assert "I want to kill myself" not in json.dumps(report)  # counts and ids, never texts


@pytest.mark.parametrize(
    "line, message",
    [("not json", "1: invalid JSON"), ('{"id": "a", "language": "en", "level": "urgent"}', "field 'text'"),
     ('{"id": "a", "language": "fr", "level": "none", "text": "x"}', "field 'language'"),
     ('{"id": "a", "language": "en", "level": "high", "text": "x"}', "field 'level'"),
     ('{"id": "a", "language": "en", "level": "none", "text": "x", "categories": "suicide"}', "field 'categories'")],
)
def test_bad_rows_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(crisis_eval.EvalDataError, match=message) as err:
        crisis_eval.load(path)
    assert "bad.jsonl:1" in str(err.value)
