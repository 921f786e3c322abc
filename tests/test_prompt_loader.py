"""Tests for the deterministic, resumable prompt order."""

from __future__ import annotations

from collections import Counter

import pytest

from empathy_rl.prompt_loader import Cursor, PromptLoader

RECORDS = [f"r{i:02d}" for i in range(10)]


def _draw(loader: PromptLoader, sizes: list[int]) -> list[list[str]]:
    return [loader.next_batch(n) for n in sizes]


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_deterministic_for_a_seed(seed: int) -> None:
    a = _draw(PromptLoader(RECORDS, seed), [3, 4, 7, 10, 1])
    b = _draw(PromptLoader(RECORDS, seed), [3, 4, 7, 10, 1])
    assert a == b


def test_different_seeds_give_different_orders() -> None:
    orders = {tuple(PromptLoader(RECORDS, seed).next_batch(len(RECORDS))) for seed in range(5)}
    assert len(orders) > 1


def test_batch_sizes_do_not_change_the_stream() -> None:
    flat = PromptLoader(RECORDS, 7).next_batch(27)
    chunked = [r for batch in _draw(PromptLoader(RECORDS, 7), [1, 5, 2, 9, 10]) for r in batch]
    assert chunked == flat


@pytest.mark.parametrize("n_records", [1, 2, 10, 31])
def test_each_epoch_is_a_permutation(n_records: int) -> None:
    records = list(range(n_records))
    loader = PromptLoader(records, seed=3)
    epochs = [loader.next_batch(n_records) for _ in range(4)]
    for epoch in epochs:
        assert sorted(epoch) == records  # every record exactly once
    if n_records >= 10:
        assert epochs[0] != records  # actually shuffled
        assert len({tuple(e) for e in epochs}) > 1  # a fresh permutation per epoch


def test_crossing_epochs_inside_one_batch() -> None:
    loader = PromptLoader(RECORDS, seed=5)
    first = loader.next_batch(7)
    crossing = loader.next_batch(7)  # 3 from epoch 0, 4 from epoch 1
    assert loader.state() == {"epoch": 1, "position": 4}
    epoch0 = first + crossing[:3]
    assert sorted(epoch0) == RECORDS
    rest = loader.next_batch(6)
    assert sorted(crossing[3:] + rest) == RECORDS
    assert loader.state() == {"epoch": 1, "position": 10}
    loader.next_batch(1)
    assert loader.state() == {"epoch": 2, "position": 1}


def test_batch_larger_than_the_data_spans_epochs() -> None:
    loader = PromptLoader(RECORDS[:3], seed=0)
    batch = loader.next_batch(8)
    assert len(batch) == 8
    assert sorted(Counter(batch).values()) == [2, 3, 3]
    assert sorted(batch[:3]) == sorted(batch[3:6]) == RECORDS[:3]
    assert loader.state() == {"epoch": 2, "position": 2}


def test_zero_sized_batch() -> None:
    loader = PromptLoader(RECORDS, seed=0)
    assert loader.next_batch(0) == []
    assert loader.state() == {"epoch": 0, "position": 0}


def test_initial_state() -> None:
    assert PromptLoader(RECORDS, seed=0).state() == {"epoch": 0, "position": 0}


@pytest.mark.parametrize("consumed", [0, 1, 9, 10, 11, 23, 30])
def test_resume_from_state_continues_exactly(consumed: int) -> None:
    original = PromptLoader(RECORDS, seed=11)
    original.next_batch(consumed)
    state = original.state()
    assert set(state) == {"epoch", "position"}
    resumed = PromptLoader(RECORDS, seed=11, cursor=Cursor(**state))
    sizes = [4, 10, 3, 17]
    assert _draw(resumed, sizes) == _draw(original, sizes)
    assert resumed.state() == original.state()


def test_resume_state_survives_json() -> None:
    import json

    original = PromptLoader(RECORDS, seed=2)
    original.next_batch(13)
    state = json.loads(json.dumps(original.state()))
    resumed = PromptLoader(RECORDS, seed=2, cursor=Cursor(**state))
    assert resumed.next_batch(12) == original.next_batch(12)


def test_resume_with_another_seed_differs() -> None:
    original = PromptLoader(RECORDS, seed=1)
    original.next_batch(4)
    other = PromptLoader(RECORDS, seed=2, cursor=Cursor(**original.state()))
    assert other.next_batch(20) != original.next_batch(20)


def test_records_are_copied() -> None:
    records = list(RECORDS)
    loader = PromptLoader(records, seed=0)
    records.clear()
    assert len(loader.next_batch(10)) == 10


@pytest.mark.parametrize("empty", [[], ()])
def test_empty_records_error(empty) -> None:
    with pytest.raises(ValueError, match="no records"):
        PromptLoader(empty, seed=0)
