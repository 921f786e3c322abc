"""SQLite store of rankings: one row per (rater, case), replaced when a rater ranks a case again.

A ranking is stored as ranks by position (`ranks[i]` = rank given to the answer at position i+1),
so the file holds no system names; `report` joins it with the key. SQLite because a rater's
work must survive a closed browser or a restarted server (resume), with no service to run.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

RATER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rankings (
    rater TEXT NOT NULL,
    case_id TEXT NOT NULL,
    ranks TEXT NOT NULL,          -- JSON list: rank of the answer at each position (1 = best)
    updated_at REAL NOT NULL,
    PRIMARY KEY (rater, case_id)
);
"""


class RankingStoreError(ValueError):
    """A rater name or a ranking is invalid; the message says which and why."""


def check_rater(name: str) -> str:
    if not RATER_RE.match(name or ""):
        raise RankingStoreError(f"rater name {name!r} must be 1-40 letters, digits, '_', '.' or '-'")
    return name


def check_ranks(ranks: list[int], n: int) -> list[int]:
    """A full ranking without ties: a permutation of 1..n."""
    if not isinstance(ranks, list) or any(not isinstance(r, int) or isinstance(r, bool) for r in ranks):
        raise RankingStoreError("ranks must be a list of integers")
    if sorted(ranks) != list(range(1, n + 1)):
        raise RankingStoreError(f"ranks {ranks} must use each of 1..{n} exactly once")
    return ranks


class RankingStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one writer at a time from the threaded server
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._conn.commit()

    def save(self, rater: str, case_id: str, ranks: list[int]) -> None:
        check_rater(rater)
        with self._lock:
            self._conn.execute(
                "INSERT INTO rankings (rater, case_id, ranks, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(rater, case_id) DO UPDATE SET ranks = excluded.ranks, updated_at = excluded.updated_at",
                (rater, case_id, json.dumps(ranks), time.time()),
            )
            self._conn.commit()

    def get(self, rater: str, case_id: str) -> Optional[list[int]]:
        with self._lock:
            row = self._conn.execute("SELECT ranks FROM rankings WHERE rater = ? AND case_id = ?", (rater, case_id)).fetchone()
        return json.loads(row[0]) if row else None

    def done(self, rater: str) -> set[str]:
        with self._lock:
            rows = self._conn.execute("SELECT case_id FROM rankings WHERE rater = ?", (rater,)).fetchall()
        return {r[0] for r in rows}

    def all(self) -> list[tuple[str, str, list[int]]]:
        """Every stored ranking as (rater, case_id, ranks), ordered by rater and case."""
        with self._lock:
            rows = self._conn.execute("SELECT rater, case_id, ranks FROM rankings ORDER BY rater, case_id").fetchall()
        return [(r, c, json.loads(k)) for r, c, k in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
