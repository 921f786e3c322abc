"""`empathy_rl.atomic_io`: the content lands whole, no temporary file stays, a failed write keeps the old file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from empathy_rl.atomic_io import atomic_write_json, atomic_write_lines, atomic_write_text, atomic_writer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_lines_and_json_are_written_whole_with_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "out.txt"  # missing parents are created
    atomic_write_text(target, "first")
    atomic_write_text(target, "zweite – second")
    assert target.read_text(encoding="utf-8") == "zweite – second"
    lines = tmp_path / "rows.jsonl"
    assert atomic_write_lines(lines, (json.dumps({"n": n}) for n in range(3))) == 3
    assert lines.read_text(encoding="utf-8") == '{"n": 0}\n{"n": 1}\n{"n": 2}\n'
    doc = tmp_path / "state.json"
    atomic_write_json(doc, {"text": "你好", "n": 1}, indent=1)
    assert doc.read_text(encoding="utf-8") == '{\n "text": "你好",\n "n": 1\n}\n'
    atomic_write_json(doc, {"path": Path("/x")}, indent=None, default=str)
    assert json.loads(doc.read_text(encoding="utf-8")) == {"path": "/x"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dir", "new", "out.txt", "rows.jsonl", "state.json"]


def test_permissions_follow_the_umask_not_mkstemp(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o640
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "b.txt", "x")
    assert _mode(tmp_path / "b.txt") == _mode(plain)


def test_a_failure_mid_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "data.jsonl"
    atomic_write_lines(target, ["old 1", "old 2"])

    def rows() -> Iterator[str]:
        yield "new 1"
        raise RuntimeError("killed after one line")

    with pytest.raises(RuntimeError, match="killed after one line"):
        atomic_write_lines(target, rows())
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_write_json(target, {"bad": object()})
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(target) as fh:
            fh.write("half")
            fh.flush()
            raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old 1\nold 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]


def test_binary_writer_streams_bytes(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    with atomic_writer(target, binary=True) as fh:
        fh.write(b"\x00\x01")
        fh.write(b"\xff")
    assert target.read_bytes() == b"\x00\x01\xff"
