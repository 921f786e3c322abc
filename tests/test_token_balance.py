"""Token-balanced contiguous split of a step's prompts across rollout workers."""

from __future__ import annotations

import itertools
import random

import pytest

from empathy_rl.sharding import even_slices, token_balanced_slices


def _best_max(weights, parts):
    """Smallest possible largest slice total, by trying every set of cut points (small inputs only)."""
    n = len(weights)
    best = None
    for cuts in itertools.combinations_with_replacement(range(n + 1), parts - 1):
        bounds = (0, *cuts, n)
        worst = max(sum(weights[a:b]) for a, b in zip(bounds, bounds[1:]))
        best = worst if best is None else min(best, worst)
    return best


def _check(weights, parts):
    slices = token_balanced_slices(weights, parts)
    assert len(slices) == parts
    assert [i for s in slices for i in range(s.start, s.stop)] == list(range(len(weights)))  # contiguous, in order, complete
    return slices


def test_largest_share_is_optimal_on_random_inputs():
    rng = random.Random(0)
    for _ in range(300):
        weights = [rng.randint(1, 400) for _ in range(rng.randint(0, 9))]
        parts = rng.randint(1, 4)
        slices = _check(weights, parts)
        if weights:
            assert max(sum(weights[s]) for s in slices) == _best_max(weights, parts)


def test_long_prompts_get_a_worker_of_their_own_and_no_worker_idles_needlessly():
    weights = [300, 20, 20, 20, 20, 20]
    slices = _check(weights, 2)
    assert [sum(weights[s]) for s in slices] == [300, 100]
    assert even_slices(6, 2) == [slice(0, 3), slice(3, 6)]  # the count split would give 340 vs 60
    assert [s.stop - s.start for s in _check([3, 1, 1, 1], 3)] == [1, 2, 1]
    assert [s.stop - s.start for s in _check([5, 5], 4)] == [1, 1, 0, 0]


def test_deterministic_and_edge_cases():
    weights = [7, 3, 9, 1, 1, 4, 8]
    assert token_balanced_slices(weights, 3) == token_balanced_slices(list(weights), 3)
    assert token_balanced_slices([], 2) == [slice(0, 0), slice(0, 0)]
    assert token_balanced_slices([0, 0, 0], 2) == _check([0, 0, 0], 2)
    with pytest.raises(ValueError):
        token_balanced_slices([1], 0)
    with pytest.raises(ValueError):
        token_balanced_slices([-1], 1)
