"""Waiting on actors with a deadline, and errors that say who failed at what.

A plain `ray.get(refs)` waits forever when an actor hangs, and a failure deep in an actor surfaces
as a long traceback without saying which stage of the loop it was. `wait_named` waits on named refs
with one deadline for all of them and raises `StageTimeout` ("rollout worker 1: generate timed out
after 600 s (timeouts.generate_s)") or `StageFailed` ("learner rank 0: load_policy failed: ...").
Refs are checked as they finish, so the first party that dies is reported at once rather than after
the others' deadline. The original Ray error stays attached as `__cause__` (and `.cause`), so a
caller can tell a dead actor (`ray.exceptions.RayActorError`) from an error raised inside one.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence


class StageError(RuntimeError):
    """A remote call of one stage failed or timed out; `party` and `stage` say where."""

    def __init__(self, message: str, party: str, stage: str, cause: Optional[BaseException] = None):
        super().__init__(message)
        self.party = party
        self.stage = stage
        self.cause = cause


class StageTimeout(StageError):
    pass


class StageFailed(StageError):
    pass


def first_line(err: BaseException) -> str:
    """The first line of an error's message (Ray errors carry whole remote tracebacks)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def wait_named(named_refs: Sequence[tuple[str, Any]], stage: str, timeout: float, key: str) -> list[Any]:
    """Results of `(party, ref)` pairs in order; `StageTimeout`/`StageFailed` at the first problem.

    `key` is the config key that sets `timeout`, quoted in the timeout message.
    """
    import ray

    names = {ref: name for name, ref in named_refs}
    results: dict[Any, Any] = {}
    pending = [ref for _, ref in named_refs]
    deadline = time.monotonic() + timeout
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.monotonic(), 0.0))
        if not ready:
            party = ", ".join(names[ref] for ref in pending)
            raise StageTimeout(f"{party}: {stage} timed out after {timeout:g} s ({key})", party, stage)
        for ref in ready:
            try:
                results[ref] = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))
            except ray.exceptions.GetTimeoutError as err:
                raise StageTimeout(f"{names[ref]}: {stage} timed out after {timeout:g} s ({key})", names[ref], stage, err) from err
            except ray.exceptions.RayError as err:
                raise StageFailed(f"{names[ref]}: {stage} failed: {first_line(err)}", names[ref], stage, err) from err
    return [results[ref] for _, ref in named_refs]


def actor_died(err: BaseException) -> bool:
    """True when `err` (or the Ray error behind a `StageError`) means the actor process is gone."""
    import ray

    cause = err.cause if isinstance(err, StageError) else err
    return isinstance(cause, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError))



def wait_settled(named_refs: Sequence[tuple[str, Any]], stage: str, timeout: float, key: str) -> list[Any]:
    """Like `wait_named`, but waits for every ref: each entry is the result or the `StageError` it raised.

    For callers that recover some failures (a dead actor that Ray restarts) and must know which
    parties finished before deciding; the deadline still ends the wait for those not done.
    """
    import ray

    refs = [ref for _, ref in named_refs]
    ray.wait(refs, num_returns=len(refs), timeout=timeout)
    out: list[Any] = []
    for name, ref in named_refs:
        try:
            out.append(ray.get(ref, timeout=0))
        except ray.exceptions.GetTimeoutError as err:
            out.append(StageTimeout(f"{name}: {stage} timed out after {timeout:g} s ({key})", name, stage, err))
        except ray.exceptions.RayError as err:
            out.append(StageFailed(f"{name}: {stage} failed: {first_line(err)}", name, stage, err))
    return out
