"""Generation that survives a rollout actor's death: restart, re-sync, issue its prompts again.

Rollout actors are started with `max_restarts=rollout.max_restarts`, so Ray re-runs the constructor
of an actor whose process dies (a crashed vLLM engine, `ray.kill`, a lost node). The restarted engine
holds the policy it was started from at version 0, and whatever it was generating is lost. Here:

1. every worker's share of the prompts is waited on (`timeouts.generate_s`); the shares of live
   workers are kept, and a share whose actor died is dropped whole, so no group is ever counted half;
2. each dead worker is waited for until it answers again (`timeouts.startup_s`);
3. `on_restart()` (the driver's weight push at the current version) brings every worker to the
   learner's weights, so the version check in the pool still holds;
4. the dropped shares are issued again with the same seeds (each prompt's seed comes from its uid,
   so the candidates are those the worker would have produced).

At most `rollout.max_restarts` rounds; an error raised inside an actor (not a death) is not retried.
A worker that dies between two calls is caught before the next one: `resync_restarted_between_calls`
finds it serving an older version and pushes the current weights before any prompt is sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, Sequence

from empathy_rl.remote import StageError, StageFailed, actor_died, wait_settled

log = logging.getLogger("empathy_rl")


def wait_until_alive(worker: Any, name: str, timeout: float) -> int:
    """Poll a (restarting) actor until a call succeeds and return the policy version it serves;
    `StageFailed` if it stays dead past `timeout`."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(ray.get(worker.get_policy_version.remote(), timeout=max(min(10.0, deadline - time.monotonic()), 0.1)))
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError) as err:
            if time.monotonic() >= deadline:
                raise StageFailed(
                    f"{name}: restart failed: not answering {timeout:g} s after it died (timeouts.startup_s; "
                    f"rollout.max_restarts may be used up)", name, "restart", err,
                ) from err
            time.sleep(1.0)


def resync_restarted_between_calls(workers: Sequence[Any], version: int, startup_timeout: float,
                                   on_restart: Optional[Callable[[], None]]) -> int:
    """Before a generate call: find workers that died and were restarted since the last one.

    A worker that dies between calls (after the last weight push) comes back holding the start
    policy at version 0, and nothing else would notice until its candidates failed the pool's version
    check. Each worker is asked for its version (waiting out a restart in progress, up to
    `startup_timeout`); any below `version` gets the current weights through `on_restart` before any
    prompt is sent. Returns the number of such workers (counted as restarts).
    """
    if version == 0:  # nothing pushed yet: a restarted engine holds the start policy, which is version 0
        return 0
    behind = [i for i, w in enumerate(workers) if wait_until_alive(w, f"rollout worker {i}", startup_timeout) < version]
    if not behind:
        return 0
    log.warning("rollout worker(s) %s restarted since the last step (serving an older policy); pushing version %d", behind, version)
    if on_restart is None:
        raise RuntimeError(f"rollout worker(s) {behind} serve a policy older than version {version} and no weight push is set up (RolloutPool.on_restart)")
    on_restart()
    return len(behind)


def await_restarts(workers: Sequence[Any], shards: Sequence[list], dead: list[int], startup_timeout: float,
                   on_restart: Optional[Callable[[], None]], what: str) -> int:
    """Wait until every dead worker is back (Ray restarts the actor), then let the driver push the
    current weights (`on_restart`); their prompts are then issued again. Returns len(dead)."""
    for i in dead:
        log.warning("rollout worker %d died during %s (%d prompt(s) to reissue); waiting for its restart", i, what, len(shards[i]))
        wait_until_alive(workers[i], f"rollout worker {i}", startup_timeout)
    if on_restart is not None:
        on_restart()
    return len(dead)


def generate_supervised(
    workers: Sequence[Any],
    shards: Sequence[list],
    call: Callable[[Any, list], Any],
    generate_timeout: float,
    startup_timeout: float,
    max_restarts: int,
    on_restart: Optional[Callable[[], None]],
) -> tuple[list[list], int]:
    """Results per worker index (empty for empty shards) and the number of workers restarted."""
    results: list[Optional[list]] = [None if shard else [] for shard in shards]
    pending = [i for i, shard in enumerate(shards) if shard]
    restarts = 0
    for attempt in range(max_restarts + 1):
        named = [(f"rollout worker {i}", call(workers[i], shards[i])) for i in pending]
        outcomes = wait_settled(named, "generate", generate_timeout, "timeouts.generate_s")
        dead = []
        for i, outcome in zip(pending, outcomes):
            if not isinstance(outcome, StageError):
                results[i] = outcome
            elif actor_died(outcome) and attempt < max_restarts:
                dead.append(i)
            else:
                raise outcome
        if not dead:
            break
        restarts += await_restarts(workers, shards, dead, startup_timeout, on_restart, "generate")
        pending = dead
        log.warning("rollout worker(s) %s restarted with the current weights; their prompts are issued again", dead)
    return [r if r is not None else [] for r in results], restarts
