"""How work is split across parallel actors: one definition for prompts (rollout) and rows (learner)."""

from __future__ import annotations


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
