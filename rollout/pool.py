"""`RolloutPool`: N rollout actors behind one interface for the driver.

Prompts are split into contiguous shards (one per worker) with about equal prompt tokens
(`rollout.balance=tokens`) or prompt counts (`count`), generated in parallel, and the candidates are
put back in prompt order. Weight pushes go to every worker; each worker
records the policy version it serves, and the pool refuses to generate from workers that disagree.

Each engine goes into its placement-group slot (`empathy_rl.placement`): its own group in the split
layout, its bundles of the shared group when colocated. Weight pushes are started here but waited
on by `empathy_rl.weight_sync`, which owns the timeouts and the error messages.

`generate_streamed` returns the same batch but hands each prompt's group to a callback as soon as it
is done (`rollout.stream_rewards`, `rollout.streaming`); the driver scores the groups there.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import ray

from empathy_rl.config import EmpathyRLConfig, run_scoped
from empathy_rl.placement import Placement
from empathy_rl.remote import wait_named
from empathy_rl.sharding import even_slices, token_balanced_slices
from rollout.streaming import GroupAssembler, OnGroup, stream_supervised
from rollout.supervision import generate_supervised, resync_restarted_between_calls
from rollout.types import Candidate, Prompt, RolloutBatch
from rollout.vllm_engine import RolloutWorker, engine_env


def rollout_actor_name(cfg: EmpathyRLConfig, engine: int) -> str:
    """`<run id>-rollout-<engine>`: unique on a cluster shared by several runs."""
    return run_scoped(cfg, f"rollout-{engine}")


class RolloutPool:
    def __init__(self, cfg: EmpathyRLConfig, model_path: str, placement: Optional[Placement] = None):
        """Start `rollout.num_workers` engines in `placement` (reserved here, for rollout only, if None)."""
        r = cfg.rollout
        self.cfg = cfg
        self.own_placement = placement is None
        self.placement = placement or Placement(cfg, roles=("rollout",))
        actor_cls = ray.remote(RolloutWorker)
        self.workers = []
        for i in range(r.num_workers):
            slot = self.placement.rollout_slot(i)
            self.workers.append(
                actor_cls.options(
                    name=rollout_actor_name(cfg, i),
                    runtime_env={"env_vars": {**engine_env(cfg), **slot.env}},
                    max_concurrency=2,  # the driver may poll the version while a call runs; LLM calls take a lock
                    max_restarts=r.max_restarts,  # a dead engine is restarted; rollout.supervision re-syncs it and re-issues its prompts
                    **slot.options(),
                ).remote(cfg, model_path, i)
            )
        try:
            wait_named(self._named([w.get_policy_version.remote() for w in self.workers]), "vLLM engine start-up", cfg.timeouts.startup_s, "timeouts.startup_s")
        except BaseException:
            self.shutdown()  # an engine that failed or hung: stop them all, never leave half a pool behind
            raise
        self.version = 0
        self.on_restart: Optional[Callable[[], None]] = None  # set by the driver: push the current weights to every worker
        self.restarts = 0  # rollout workers restarted after dying during generate, over the run

    @staticmethod
    def _named(refs: list, indexes: Sequence[int] | None = None) -> list[tuple[str, object]]:
        return [(f"rollout worker {i}", ref) for i, ref in zip(indexes if indexes is not None else range(len(refs)), refs)]

    def _shards(self, prompts: list[Prompt]) -> list[list[Prompt]]:
        if self.cfg.rollout.balance == "tokens":  # contiguous, so the candidates come back in prompt order
            parts = token_balanced_slices([len(p.token_ids) for p in prompts], len(self.workers))
        else:
            parts = even_slices(len(prompts), len(self.workers))
        return [prompts[part] for part in parts]

    def generate(self, prompts: Sequence[Prompt], seed: int, n: int | None = None, temperature: float | None = None) -> RolloutBatch:
        n = n or self.cfg.rollout.group_size
        temperature = self.cfg.rollout.temperature if temperature is None else temperature
        start = time.perf_counter()
        self._resync_restarted()
        expected = self.version  # a weight push may land while this runs (async mode); the outputs must be of this version
        prompts = list(prompts)
        results, restarted = generate_supervised(
            self.workers, self._shards(prompts), lambda w, shard: w.generate.remote(shard, n, temperature, seed),
            self.cfg.timeouts.generate_s, self.cfg.timeouts.startup_s, self.cfg.rollout.max_restarts, self.on_restart,
        )
        self.restarts += restarted
        return self._batch(prompts, [c for part in results for c in part], n, expected, start)

    def generate_streamed(
        self, prompts: Sequence[Prompt], seed: int, on_group: OnGroup, n: int | None = None, temperature: float | None = None
    ) -> RolloutBatch:
        """`generate`, calling `on_group(prompt, candidates)` for each group as soon as it is done.

        Same prompts, seeds and returned batch as `generate` (`rollout.streaming`); the groups reach
        `on_group` in finish order, and a group of a worker that died and was re-run reaches it again.
        """
        n = n or self.cfg.rollout.group_size
        temperature = self.cfg.rollout.temperature if temperature is None else temperature
        start = time.perf_counter()
        self._resync_restarted()
        expected = self.version
        prompts = list(prompts)
        assembler = GroupAssembler(prompts, n)

        def deliver(group: list[Candidate]) -> None:
            on_group(assembler.add(group), group)

        restarted = stream_supervised(
            self.workers, self._shards(prompts),
            lambda w, shard: w.generate_stream.options(num_returns="streaming").remote(shard, n, temperature, seed),
            deliver, self.cfg.timeouts.generate_s, self.cfg.timeouts.startup_s, self.cfg.rollout.max_restarts, self.on_restart,
        )
        self.restarts += restarted
        return self._batch(prompts, assembler.candidates(), n, expected, start)

    def _resync_restarted(self) -> None:
        """Workers Ray restarted between two calls get the current weights first (rollout.supervision)."""
        self.restarts += resync_restarted_between_calls(self.workers, self.version, self.cfg.timeouts.startup_s, self.on_restart)

    def _batch(self, prompts: list[Prompt], candidates: list[Candidate], n: int, expected: int, start: float) -> RolloutBatch:
        versions = {c.policy_version for c in candidates}
        if versions != {expected}:
            raise RuntimeError(f"rollout workers served policy versions {sorted(versions)}, expected {expected}")
        batch = RolloutBatch(prompts, candidates, n)
        lengths = [len(c.token_ids) for c in candidates]
        batch.stats = {
            "rollout/response_len_mean": sum(lengths) / max(len(lengths), 1),
            "rollout/truncated_frac": sum(c.finish_reason == "length" for c in candidates) / max(len(candidates), 1),
            "time/generate_s": time.perf_counter() - start,
            "rollout/worker_restarts_total": float(self.restarts),
        }
        return batch

    def update_refs(self, version: int, bucket_refs: list, verify: bool = False) -> list:
        """Start the object-store reload on every worker; `empathy_rl.weight_sync` waits on the refs."""
        return [w.update_weights.remote(version, bucket_refs, verify) for w in self.workers]

    def receive_nccl_refs(self, version: int, indexes: list) -> list:
        """Start the NCCL receive on every worker; the caller starts the learner's broadcast and waits on all."""
        return [w.receive_weights_nccl.remote(version, indexes) for w in self.workers]

    def mark_version(self, version: int) -> None:
        self.version = version

    def init_weight_group_refs(self, master_address: str, master_port: int, world_size: int) -> list:
        tp = self.cfg.rollout.tensor_parallel_size
        return [w.init_weight_group.remote(master_address, master_port, 1 + i * tp, world_size) for i, w in enumerate(self.workers)]

    def close_weight_group_refs(self) -> list:
        return [w.close_weight_group.remote() for w in self.workers]

    def versions(self) -> list[int]:
        return ray.get([w.get_policy_version.remote() for w in self.workers])

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []
        if self.own_placement:
            self.placement.remove()
