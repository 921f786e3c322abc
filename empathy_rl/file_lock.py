"""The exclusive lock every writer of one CoE JSONL file takes: ``<file>.lock``, held with `flock`.

Why: `empathy-rl review` rewrites the whole file after each decision (temp file + rename) while
`empathy-rl draft-coe` may still be appending to it. An append that lands between the review
server's read and its rename would go into the replaced file and be lost, and a decision written
over a file that grew would drop the new lines. Both writers therefore hold this lock while they
read-modify-write (review) or append (drafting), each for one short step, so either can run while
the other is open. `flock` locks are released by the kernel when a process dies, so a crash never
leaves the file locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockTimeout(TimeoutError):
    """The lock stayed held by another writer for longer than the caller's timeout."""


def lock_path(data_path: str | os.PathLike[str]) -> Path:
    """``<file>.lock`` next to the data file (a separate file: the data file itself is replaced by rename)."""
    path = Path(data_path)
    return path.with_name(path.name + ".lock")


@contextmanager
def exclusive_lock(path: str | os.PathLike[str], timeout_s: float) -> Iterator[None]:
    """Hold an exclusive `flock` on the lock file `path` (created if missing) for the `with` block.

    Polls every 20 ms; raises `LockTimeout` naming `path` after `timeout_s` seconds.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{target} stayed locked by another writer for {timeout_s:g} s") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
