"""bench/_common.write_section: tables go between markers that stand alone on a line."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import _common  # noqa: E402


def test_write_section_ignores_markers_quoted_in_prose_and_appends_when_absent(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_common, "REPO", tmp_path)
    docs = tmp_path / "benchmarks.md"
    docs.write_text("Prose quoting `<!-- bench:x -->` inline.\n\n<!-- bench:x -->\nold\n<!-- /bench:x -->\ntail\n", encoding="utf-8")
    _common.write_section("x", "new table", docs)
    assert docs.read_text(encoding="utf-8") == (
        "Prose quoting `<!-- bench:x -->` inline.\n\n<!-- bench:x -->\nnew table\n<!-- /bench:x -->\ntail\n")
    _common.write_section("y", "appended", docs)
    assert docs.read_text(encoding="utf-8").endswith("\n\n<!-- bench:y -->\nappended\n<!-- /bench:y -->\n")
