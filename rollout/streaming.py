"""Groups as they finish: the rollout side of `rollout.stream_rewards`.

Each rollout worker runs `RolloutWorker.generate_stream` as a Ray streaming generator, which yields
one prompt's G candidates as soon as all G are done. `stream_supervised` reads every worker's
stream at once and hands each group to a callback (the driver scores it there), and
`GroupAssembler` puts the groups back in prompt order, so the batch is the one `generate` returns.

Faults are handled as in `rollout.supervision`: a worker that dies mid-stream loses its share;
after its restart and the driver's weight push (`on_restart`), its whole share is issued again with
the same seeds and streamed again. Groups it had yielded before dying are delivered a second time;
the assembler keeps the last delivery of each prompt, and the callback is told the same group again
(the driver replaces that prompt's pending score), so every group in the batch is counted once.

This module knows nothing of rewards: the driver connects the callback to the reward client.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

from empathy_rl.remote import StageError, StageFailed, StageTimeout, actor_died, first_line
from rollout.supervision import await_restarts
from rollout.types import Candidate, Prompt


OnGroup = Callable[[Prompt, list[Candidate]], None]


class GroupAssembler:
    """Collects groups in any order (and any number of times) and returns them in prompt order."""

    def __init__(self, prompts: Sequence[Prompt], group_size: int):
        self.prompts = list(prompts)
        self.group_size = group_size
        self.by_uid = {p.uid: p for p in self.prompts}
        if len(self.by_uid) != len(self.prompts):
            raise ValueError("prompt uids of one rollout call must be unique")
        self.groups: dict[int, list[Candidate]] = {}

    def add(self, group: list[Candidate]) -> Prompt:
        """Record one finished group (a later delivery of the same prompt replaces the earlier one)."""
        uids = {c.prompt_uid for c in group}
        if len(uids) != 1 or len(group) != self.group_size:
            raise RuntimeError(f"a streamed group must hold {self.group_size} candidates of one prompt; got {len(group)} for prompt uid(s) {sorted(uids)}")
        uid = uids.pop()
        if uid not in self.by_uid:
            raise RuntimeError(f"a rollout worker returned candidates for prompt uid {uid}, which this call did not send")
        self.groups[uid] = group
        return self.by_uid[uid]

    def missing(self) -> list[int]:
        return [p.uid for p in self.prompts if p.uid not in self.groups]

    def candidates(self) -> list[Candidate]:
        """All candidates, prompt by prompt in the order the prompts were given."""
        missing = self.missing()
        if missing:
            raise RuntimeError(f"rollout stream ended with {len(missing)} prompt(s) unanswered (uids {missing[:8]})")
        return [c for p in self.prompts for c in self.groups[p.uid]]


def stream_supervised(
    workers: Sequence[Any],
    shards: Sequence[list[Prompt]],
    start: Callable[[Any, list[Prompt]], Any],
    on_group: Callable[[list[Candidate]], None],
    generate_timeout: float,
    startup_timeout: float,
    max_restarts: int,
    on_restart: Optional[Callable[[], None]],
) -> int:
    """Read every worker's stream to its end, calling `on_group` per group; returns the workers restarted.

    `start(worker, shard)` returns the worker's `ObjectRefGenerator`. Each attempt has one deadline
    of `generate_timeout` (timeouts.generate_s) for all streams; a stream whose actor died is
    re-issued after the restart (at most `max_restarts` rounds); any other error is raised as a
    `StageError` naming the worker.
    """
    import ray

    pending = [i for i, shard in enumerate(shards) if shard]
    restarts = 0
    for attempt in range(max_restarts + 1):
        streams = {start(workers[i], shards[i]): i for i in pending}
        deadline = time.monotonic() + generate_timeout
        dead: list[int] = []
        while streams:
            ready, _ = ray.wait(list(streams), num_returns=1, timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                party = ", ".join(f"rollout worker {i}" for i in sorted(streams.values()))
                for gen in streams:
                    ray.cancel(gen)
                raise StageTimeout(f"{party}: generate (streamed) timed out after {generate_timeout:g} s (timeouts.generate_s)", party, "generate")
            gen = ready[0]
            i = streams[gen]
            name = f"rollout worker {i}"
            try:
                ref = next(gen)
            except StopIteration:
                del streams[gen]
                continue
            try:
                group = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))
            except ray.exceptions.GetTimeoutError as err:
                raise StageTimeout(f"{name}: generate (streamed) timed out after {generate_timeout:g} s (timeouts.generate_s)", name, "generate", err) from err
            except ray.exceptions.RayError as err:
                failure = StageFailed(f"{name}: generate (streamed) failed: {first_line(err)}", name, "generate", err)
                if actor_died(failure) and attempt < max_restarts:
                    dead.append(i)
                    del streams[gen]
                    continue
                raise failure from err
            on_group(group)
        if not dead:
            return restarts
        restarts += await_restarts(workers, shards, dead, startup_timeout, on_restart, "streamed generate")
        pending = dead
    raise StageError("rollout: streamed generate left the restart loop without a result", "rollout pool", "generate")  # unreachable: the last attempt raises
