"""JSON Lines read one object per line, with errors that start with ``file:line``.

Why one reader: CoE data, labelled crisis sets, ranking sets and the seed posts are all JSONL that
people write or edit by hand, and a bad line must be found by its place, not by a traceback.
Every reader here skips blank lines, decodes each line on its own (a stray byte is an error on
that line, not the end of the file) and raises the caller's error class, so callers keep the
exception type their users already catch. What an object must hold is the caller's business.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator


class JSONLError(ValueError):
    """A line that is not UTF-8 or not JSON; the message starts with ``file:line:``."""


def iter_jsonl_lines(lines: Iterable[bytes | str], name: str, error: type[Exception] = JSONLError) -> Iterator[tuple[int, Any]]:
    """`(line number, parsed value)` for each non-blank line; `name` is the file named in errors.

    Line numbers start at 1 and count blank lines, so they match an editor's.
    """
    for number, raw in enumerate(lines, start=1):
        where = f"{name}:{number}"
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        else:
            line = raw
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: invalid JSON ({exc.msg}, column {exc.colno})") from None
        except RecursionError:
            raise error(f"{where}: invalid JSON (nested too deeply)") from None
        yield number, value


def iter_jsonl(path: str | os.PathLike[str], error: type[Exception] = JSONLError) -> Iterator[tuple[int, Any]]:
    """`(line number, parsed value)` for each non-blank line of the file at `path` (read as bytes, UTF-8 per line)."""
    with Path(path).open("rb") as fh:
        yield from iter_jsonl_lines(fh, str(path), error)
