"""How work is split across parallel actors: one definition for prompts (rollout) and rows (learner)."""

from __future__ import annotations

from typing import Sequence


def even_slices(n: int, parts: int) -> list[slice]:
    """`parts` contiguous slices of range(n), in order, whose lengths differ by at most one.

    The first `n % parts` slices get the extra item; when n < parts the last slices are empty, so
    callers can zip the result with their workers and skip empty shards.
    """
    if parts < 1:
        raise ValueError(f"cannot split into {parts} parts")
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        out.append(slice(start, end))
        start = end
    return out


def token_balanced_slices(weights: Sequence[int], parts: int) -> list[slice]:
    """`parts` contiguous slices of range(len(weights)), in order, minimising the largest slice's total weight.

    Used with each prompt's token count, so that a worker given long prompts gets fewer of them.
    Contiguous slices keep the prompt order: concatenating the workers' results in worker order gives
    the candidates in prompt order. The largest total is the smallest possible (binary search over it,
    then a greedy fill); among splits with that maximum, the fill leaves no worker idle while one
    holds more than one item. Deterministic: the same weights always give the same slices.
    """
    if parts < 1:
        raise ValueError(f"cannot split into {parts} parts")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be >= 0")
    n = len(weights)
    if n == 0:
        return [slice(0, 0)] * parts

    def fits(cap: int) -> bool:
        used, load = 1, 0
        for w in weights:
            if load + w > cap:
                used, load = used + 1, 0
            load += w
        return used <= parts

    low, high = max(weights), sum(weights)
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    out, start, load = [], 0, 0
    for i, w in enumerate(weights):
        parts_left = parts - len(out) - 1  # parts after the current one
        if i > start and (load + w > low or n - i <= parts_left):
            out.append(slice(start, i))
            start, load = i, 0
        load += w
    out.append(slice(start, n))
    out += [slice(n, n)] * (parts - len(out))
    return out
