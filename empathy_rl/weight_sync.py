"""Weight sync between the learner group and the rollout pool, with a deadline on every wait.

A sync is several remote calls that depend on each other: the learner exports or broadcasts, every
rollout worker reloads or receives. If one party dies or hangs (an NCCL broadcast whose peer never
joined waits forever), a plain `ray.get` hangs the whole run without a word. Here every wait has
`sync.timeout_s`, and a failure raises `WeightSyncError` naming the stage and the party, e.g.
"weight sync (nccl broadcast) timed out after 600 s on rollout worker 1". After a failed NCCL sync
the weight group is torn down on every party (best effort, within the same deadline), so that a
restarted run does not inherit a half-open communicator.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

from empathy_rl.config import EmpathyRLConfig
from empathy_rl.remote import StageError, StageFailed, StageTimeout, first_line, wait_named


class WeightSyncError(StageError):
    """A weight-sync call failed or timed out; the message names the stage and the actor.

    A `StageError` like every other stage's, so that the driver's fault handling (e.g. a learner
    rank that died during a sync) sees who failed (`party`) and why (`cause`).
    """


def wait_all(named_refs: Sequence[tuple[str, Any]], stage: str, timeout: float) -> list[Any]:
    """Results of all refs in order, or `WeightSyncError` at the first failure or at the deadline.

    `remote.wait_named` checks refs as they finish, so a party that dies is reported at once, not
    after the others' timeout (a broadcast waiting for a dead receiver would otherwise hide the cause).
    """
    try:
        return wait_named(named_refs, f"weight sync ({stage})", timeout, "sync.timeout_s")
    except StageTimeout as err:
        raise WeightSyncError(
            f"weight sync ({stage}) timed out after {timeout:g} s on {err.party} (sync.timeout_s)", err.party, err.stage, err.cause
        ) from err.cause
    except StageFailed as err:
        raise WeightSyncError(
            f"weight sync ({stage}) failed on {err.party}: {first_line(err.cause)}", err.party, err.stage, err.cause
        ) from err.cause


class WeightSync:
    """Pushes the learner's weights to every rollout worker over `sync.transport`."""

    def __init__(self, cfg: EmpathyRLConfig, learner: Any, pool: Any):
        self.cfg = cfg
        self.learner = learner
        self.pool = pool
        self.timeout = cfg.sync.timeout_s
        self.group_ready = False
        # The last push, for benchmarks and logs: actor calls issued, buckets moved, seconds per stage.
        # Calls are one per learner rank and rollout worker (plus the bucket plan on NCCL), whatever
        # the number of parameters; buckets grow with the model (sync.bucket_size_mb).
        self.last_push: dict[str, float] = {}

    def _rollout(self, refs: list) -> list[tuple[str, Any]]:
        return [(f"rollout worker {i}", ref) for i, ref in enumerate(refs)]

    def _learner(self, refs: list) -> list[tuple[str, Any]]:
        return [(f"learner rank {r}", ref) for r, ref in enumerate(refs)]

    def setup(self) -> None:
        """NCCL only: learner rank 0 and every vLLM worker join one group on a port of its own."""
        if self.cfg.sync.transport != "nccl":
            return
        addr, port = wait_all([("learner rank 0", self.learner.weight_group_address_ref())], "nccl group address", self.timeout)[0]
        world = 1 + self.cfg.rollout.num_workers * self.cfg.rollout.tensor_parallel_size
        try:
            wait_all(
                self._rollout(self.pool.init_weight_group_refs(addr, port, world))
                + self._learner(self.learner.init_weight_group_refs(addr, port, world)),
                f"nccl group set-up at {addr}:{port}",
                self.timeout,
            )
        except WeightSyncError:
            self.teardown()
            raise
        self.group_ready = True

    def push(self, version: int, verify: bool = False) -> list[Optional[str]]:
        """Move the weights, then mark the pool at `version`; returns received checksums if `verify`."""
        if self.cfg.sync.transport == "object_store":
            t0 = time.perf_counter()
            export_refs = self.learner.export_refs()
            exported = wait_all(self._learner(export_refs), "object-store export", self.timeout)
            bucket_refs = exported[0]  # rank 0 holds the buckets; other ranks only took part in gathering
            t1 = time.perf_counter()
            reload_refs = self.pool.update_refs(version, bucket_refs, verify)
            checksums = wait_all(self._rollout(reload_refs), "object-store reload", self.timeout)
            self.last_push = {
                "calls": float(len(export_refs) + len(reload_refs)), "buckets": float(len(bucket_refs)),
                "export_s": t1 - t0, "reload_s": time.perf_counter() - t1,
            }
            del bucket_refs  # the objects are freed once no worker holds them
            self.pool.mark_version(version)
            return checksums
        if not self.group_ready:
            raise WeightSyncError(
                "weight sync (nccl broadcast) has no weight group: it was torn down after a failure or never set up",
                party="driver", stage="weight sync (nccl broadcast)",
            )
        try:
            t0 = time.perf_counter()
            plan = wait_all([("learner rank 0", self.learner.bucket_plan_ref())], "bucket plan", self.timeout)[0]
            wire = [index.to_wire() for index in plan]
            receive_refs, broadcast_refs = self.pool.receive_nccl_refs(version, wire), self.learner.broadcast_refs()
            wait_all(self._rollout(receive_refs) + self._learner(broadcast_refs), "nccl broadcast", self.timeout)
            self.last_push = {
                "calls": float(1 + len(receive_refs) + len(broadcast_refs)), "buckets": float(len(wire)),
                "export_s": 0.0, "reload_s": time.perf_counter() - t0,
            }
        except WeightSyncError:
            self.teardown()
            raise
        self.pool.mark_version(version)
        return [None] * len(self.pool.workers)

    def teardown(self) -> None:
        """Close the NCCL group everywhere; errors here are dropped (the sync error is what matters)."""
        self.group_ready = False
        if self.cfg.sync.transport != "nccl":
            return
        try:
            wait_all(
                self._rollout(self.pool.close_weight_group_refs()) + self._learner(self.learner.close_weight_group_refs()),
                "nccl group teardown",
                self.timeout,
            )
        except WeightSyncError:
            pass  # a party that hangs in a collective cannot close; killing the run's actors frees it
