"""Hand-checked values for `empathy_rl.stats`."""

from __future__ import annotations

import math

import pytest

from empathy_rl.stats import paired_difference


def test_paired_difference_hand_checked():
    before = {"a": 0.25, "b": 0.5, "c": 0.0, "d": 1.0}
    after = {"a": 0.5, "b": 0.75, "c": 0.5, "d": 1.0, "extra": 0.0}  # unpaired keys are ignored
    mean, se, n = paired_difference(before, after)
    # diffs 0.25, 0.25, 0.5, 0.0 -> mean 0.25, sample var ((0)^2+(0)^2+0.25^2+0.25^2)/3 = 0.041667
    assert n == 4 and mean == pytest.approx(0.25)
    assert se == pytest.approx(math.sqrt(0.125 / 3 / 4))


def test_paired_difference_needs_two_pairs():
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference({"a": 1.0}, {"a": 0.0, "b": 1.0})
