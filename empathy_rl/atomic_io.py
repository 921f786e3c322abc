"""Replace a file all at once: readers see the old content or the new, never half of either.

Why one module: data files (CoE JSONL, reward scores, prepared Parquet), run state (pipeline stage
records, `checkpoints/latest`, summaries) and ranking sets are all rewritten while something else
may read them, or while the process may die. Each write goes the same way:

1. a temporary file in the same directory (`.<name>.<random>.tmp`: same filesystem, so the rename
   below is atomic; a random name, so two writers of one file never share a temporary file),
2. the content, then `flush` and `fsync` (the bytes are on disk before the name points at them),
3. `os.replace` onto the target, then `fsync` of the directory (the rename itself is durable).

On any exception before the rename the temporary file is removed and the old file stays as it
was. The new file gets the permissions a plain `open(path, "w")` would give it (0666 less the
umask), not `mkstemp`'s 0600, and missing parent directories are created.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Optional


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (`os.umask` sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so that a rename or a new name inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike[str], binary: bool = False) -> Iterator[IO[Any]]:
    """A file handle whose content replaces `path` when the `with` block ends without an exception.

    For writers that stream (records, scores, a Parquet table); text is UTF-8. When the block
    raises, the temporary file is removed, `path` is untouched and the exception propagates.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a data file gets the usual permissions
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    with atomic_writer(path) as fh:
        fh.write(text)


def atomic_write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> int:
    """Replace `path` with one line per item of `lines` (each gets a trailing newline); returns how many.

    `lines` may be a generator: when it raises part-way, `path` keeps its old content.
    """
    count = 0
    with atomic_writer(path) as fh:
        for line in lines:
            fh.write(line + "\n")
            count += 1
    return count


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: Optional[int] = 2,
                      default: Optional[Callable[[Any], Any]] = None) -> None:
    """Replace `path` with `obj` as JSON (non-ASCII kept as is, a trailing newline).

    The object is serialised before the file is touched, so a value JSON cannot encode raises
    `TypeError` and leaves `path` as it was.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=default) + "\n"
    atomic_write_text(path, text)
