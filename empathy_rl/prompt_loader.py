"""Deterministic, resumable order of training records.

Each epoch is a permutation of the records drawn from `seed + epoch`; the cursor (epoch, position)
is all the state there is, so a run can be resumed exactly from a checkpoint's `trainer_state.json`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

T = TypeVar("T")


@dataclass
class Cursor:
    epoch: int = 0
    position: int = 0


class PromptLoader(Generic[T]):
    def __init__(self, records: Sequence[T], seed: int, cursor: Cursor | None = None):
        if not records:
            raise ValueError("no records to draw prompts from; check data.prepared_dir and data.train_split")
        self.records = list(records)
        self.seed = seed
        self.cursor = cursor or Cursor()
        self._order = self._permutation(self.cursor.epoch)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.records)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next_batch(self, n: int) -> list[T]:
        """The next `n` records, crossing into a fresh permutation at epoch boundaries."""
        out: list[T] = []
        while len(out) < n:
            if self.cursor.position >= len(self._order):
                self.cursor = Cursor(self.cursor.epoch + 1, 0)
                self._order = self._permutation(self.cursor.epoch)
            out.append(self.records[self._order[self.cursor.position]])
            self.cursor.position += 1
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "position": self.cursor.position}

    def restore(self, state: dict[str, int]) -> None:
        """Go back (or forward) to a cursor from `state()`, e.g. a checkpoint's, within this run."""
        self.cursor = Cursor(int(state["epoch"]), int(state["position"]))
        self._order = self._permutation(self.cursor.epoch)
