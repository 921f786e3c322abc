"""Small statistics for evaluation claims: how sure is "the model got better"?"""

from __future__ import annotations

import math
from typing import Mapping


def paired_difference(before: Mapping[str, float], after: Mapping[str, float]) -> tuple[float, float, int]:
    """Mean of `after[k] - before[k]` over the keys both have, its standard error, and the count.

    Used with per-prompt means (e.g. the format pass rate of each evaluation prompt over all its
    samples), measured before and after training on the same prompts and sampling seeds. Pairing by
    prompt removes the prompt-to-prompt spread (some posts are simply harder) from the error of the
    gain; SE = sample std of the differences / sqrt(n). Raises ValueError with fewer than 2 pairs.
    """
    keys = sorted(set(before) & set(after))
    if len(keys) < 2:
        raise ValueError(f"need at least 2 paired values, got {len(keys)}")
    diffs = [after[k] - before[k] for k in keys]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(var / len(diffs)), len(diffs)
