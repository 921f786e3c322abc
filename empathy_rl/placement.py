"""Where every actor of a run goes: Ray placement groups for learners and rollout engines.

Without placement groups Ray scatters actors wherever resources are free, and a vLLM engine with
tensor parallelism then creates its own placement group from inside the actor, after the actor
already took resources; on a full cluster that deadlocks, and TP workers may land on other nodes.
Reserving everything up front makes a missing GPU fail at start-up with a message, and keeps each
engine's TP workers together (one group per engine, PACK).

Two layouts (`cluster.layout`):

- `split`: learners in one group (one bundle per rank), each rollout engine in its own group (one
  bundle per TP worker). Learner GPUs and vLLM GPUs are disjoint, so NCCL weight sync can join
  learner rank 0 and every vLLM worker in one communicator.
- `colocated`: one shared group of `learner.num_workers` bundles; learner rank i and one vLLM TP
  worker both sit in bundle i with fractional GPUs. Weight sync must then use the object store
  (two NCCL ranks on one GPU fail at `ncclCommInitRank`; the config check refuses it).

A vLLM engine with TP > 1 runs its workers as Ray actors: the rollout actor is scheduled with
`placement_group_capture_child_tasks=True` and `VLLM_RAY_BUNDLE_INDICES` names its bundles, so vLLM
uses this group instead of making one. `RAY_ADDRESS` is set too, so an engine core started in a
subprocess (multiprocess engine) joins this cluster rather than starting a new one.

Every group is named `<run id>-<what>` (`empathy_rl.config.run_id`, e.g. `demo-1a2b3c4d-learner-group`),
like the run's actors, so two runs on one cluster neither collide nor touch each other's groups.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from empathy_rl.config import EmpathyRLConfig, run_scoped


class PlacementError(RuntimeError):
    """A placement group could not be reserved in time (names the group and what it asked for)."""


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    bundle = {"CPU": float(cpus)} if cpus > 0 else {}
    if gpus > 0:
        bundle["GPU"] = float(gpus)
    return bundle


@dataclass
class ActorSlot:
    """Everything `actor_cls.options(...)` needs to put one actor in its bundle."""

    placement_group: Any
    bundle_index: int
    num_cpus: float
    num_gpus: float
    env: dict[str, str] = field(default_factory=dict)  # extra actor environment (vLLM bundle indices)

    def options(self) -> dict[str, Any]:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return dict(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=self.placement_group,
                placement_group_bundle_index=self.bundle_index,
                placement_group_capture_child_tasks=True,  # vLLM's TP workers join this group
            ),
        )


def learner_bundles(cfg: EmpathyRLConfig) -> list[dict[str, float]]:
    """Bundles of the learner group (split) or of the shared group (colocated)."""
    lc, r = cfg.learner, cfg.rollout
    if cfg.cluster.layout == "colocated":
        # Bundle i holds learner rank i and vLLM TP worker i; rollout CPUs go to each engine's first bundle.
        tp = r.tensor_parallel_size
        return [
            _bundle(lc.num_cpus_per_worker + (r.num_cpus_per_worker if i % tp == 0 else 0), 1 if cfg.cluster.device == "cuda" else 0)
            for i in range(lc.num_workers)
        ]
    return [_bundle(lc.num_cpus_per_worker, lc.num_gpus_per_worker) for _ in range(lc.num_workers)]


def engine_bundles(cfg: EmpathyRLConfig) -> list[dict[str, float]]:
    """Bundles of one rollout engine's group in the split layout: one per TP worker, CPUs on the first."""
    r = cfg.rollout
    per_worker_gpus = r.num_gpus_per_worker / r.tensor_parallel_size
    return [_bundle(r.num_cpus_per_worker if i == 0 else 0, per_worker_gpus) for i in range(r.tensor_parallel_size)]


class Placement:
    """Reserves the run's placement groups and hands out one `ActorSlot` per actor."""

    def __init__(self, cfg: EmpathyRLConfig, roles: tuple[str, ...] = ("learner", "rollout")):
        """Reserve the groups of `roles` (a pool or learner group started alone reserves only its own).

        Colocated, the shared group always holds every bundle: both roles live in it.
        """
        self.cfg = cfg
        self.groups: list[tuple[str, Any]] = []  # (what it is for, group)
        self.learner_group = None
        self.engine_groups: list[Any] = []
        if cfg.cluster.layout == "colocated":
            self.shared = self._reserve("shared learner + rollout group", learner_bundles(cfg), "PACK")
            self.learner_group = self.shared
            self.engine_groups = [self.shared] * cfg.rollout.num_workers
        else:
            self.shared = None
            if "learner" in roles:
                self.learner_group = self._reserve("learner group", learner_bundles(cfg), "PACK")
            if "rollout" in roles:
                self.engine_groups = [self._reserve(f"rollout engine {i}", engine_bundles(cfg), "PACK") for i in range(cfg.rollout.num_workers)]
        self._wait_ready()

    def _reserve(self, what: str, bundles: list[dict[str, float]], strategy: str):
        from ray.util.placement_group import placement_group

        if any(not b for b in bundles):
            raise PlacementError(f"{what}: a bundle asks for no resources ({bundles}); give the actors CPUs or GPUs")
        group = placement_group(bundles, strategy=strategy, name=run_scoped(self.cfg, what.replace(' ', '-')))
        self.groups.append((what, group))
        return group

    def _wait_ready(self) -> None:
        import ray

        timeout = self.cfg.cluster.placement_timeout_s
        deadline = time.monotonic() + timeout
        for what, group in self.groups:
            left = max(deadline - time.monotonic(), 0.0)
            ready, _ = ray.wait([group.ready()], timeout=left)
            if not ready:
                self.remove()
                raise PlacementError(
                    f"placement group for the {what} not ready after {timeout:.0f} s: the cluster cannot provide "
                    f"{group.bundle_specs} (cluster.placement_timeout_s; check learner.*/rollout.* resources against `ray status`)"
                )

    def learner_slot(self, rank: int) -> ActorSlot:
        lc = self.cfg.learner
        return ActorSlot(self.learner_group, rank, lc.num_cpus_per_worker, lc.num_gpus_per_worker)

    def rollout_slot(self, engine: int) -> ActorSlot:
        """Engine `engine`'s actor: in bundle 0 of its own group (split) or of its TP slice (colocated).

        With TP > 1 the actor itself takes no GPU; vLLM's Ray workers take one per bundle listed in
        `VLLM_RAY_BUNDLE_INDICES`, each `VLLM_RAY_PER_WORKER_GPUS` of it.
        """
        import ray

        r = self.cfg.rollout
        tp = r.tensor_parallel_size
        first = engine * tp if self.shared is not None else 0
        env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        per_worker = r.num_gpus_per_worker / tp
        if tp > 1:
            env["VLLM_RAY_BUNDLE_INDICES"] = ",".join(str(first + k) for k in range(tp))
            env["VLLM_RAY_PER_WORKER_GPUS"] = str(per_worker)
        return ActorSlot(self.engine_groups[engine], first, r.num_cpus_per_worker, per_worker if tp == 1 else 0.0, env)

    def remove(self) -> None:
        """Give every reserved group back (actors in them must be killed first)."""
        from ray.util.placement_group import remove_placement_group

        for _, group in self.groups:
            try:
                remove_placement_group(group)
            except Exception:  # already gone with its cluster: nothing to give back
                pass
        self.groups = []
