"""A bounded LRU cache of text embeddings for the reward encoders (`reward.query_cache_size`).

GRPO scores G candidates per prompt and the same prompts come back every epoch, so one query is
embedded many times while its answers are new each time. The encoders keep each query's final
embedding (after the query head and normalisation) here, keyed by a namespace (language and side,
e.g. "en/query") plus the exact text, and embed only the texts they have not seen. The encoder is
frozen while it serves, so a stored row stays valid for the cache's lifetime (one per encoder
object, i.e. per Serve replica); nothing here is shared between processes. The map is locked, so
threads that score at once (a replica's executor) may share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Sequence

import torch


class EmbeddingCache:
    """LRU map (namespace, text) -> one embedding row; `max_entries=0` turns it off (nothing kept)."""

    def __init__(self, max_entries: int):
        if max_entries < 0:
            raise ValueError(f"reward.query_cache_size={max_entries} must be >= 0 (0 turns the cache off)")
        self.max_entries = max_entries
        self._rows: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, namespace: str, text: str) -> Optional[torch.Tensor]:
        """The stored row (marked most recently used), or None; counts a hit or a miss."""
        with self._lock:
            row = self._rows.get((namespace, text)) if self.max_entries else None
            if row is None:
                self.misses += 1
                return None
            self._rows.move_to_end((namespace, text))
            self.hits += 1
            return row

    def put(self, namespace: str, text: str, row: torch.Tensor) -> None:
        """Store a detached copy of `row`, dropping the least recently used rows beyond `max_entries`."""
        if not self.max_entries:
            return
        row = row.detach().clone()
        with self._lock:
            self._rows[(namespace, text)] = row
            self._rows.move_to_end((namespace, text))
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.hits = self.misses = 0

    def lookup(self, namespace: str, texts: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """(rows found, distinct texts still to embed in first-seen order): a text repeated in one
        batch (a prompt's G candidates) is embedded once even with the cache off."""
        rows: dict[str, torch.Tensor] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            row = self.get(namespace, text)
            if row is None:
                missing.append(text)
            else:
                rows[text] = row
        return rows, missing

    def store(self, namespace: str, texts: Sequence[str], embeddings: torch.Tensor, rows: dict[str, torch.Tensor]) -> None:
        """Add freshly embedded `texts` (one row each) to `rows` and to the cache."""
        if len(texts) != embeddings.shape[0]:
            raise ValueError(f"{len(texts)} texts but {embeddings.shape[0]} embeddings")
        for text, row in zip(texts, embeddings):
            rows[text] = row
            self.put(namespace, text, row)


def gather(rows: dict[str, torch.Tensor], texts: Sequence[str]) -> torch.Tensor:
    """One row per text, in order (texts repeat: a prompt's candidates share its query row)."""
    return torch.stack([rows[t] for t in texts])
