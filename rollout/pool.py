"""`RolloutPool`: N rollout actors behind one interface for the driver.

Prompts are split into contiguous, nearly equal shards (one per worker), generated in parallel,
and the candidates are put back in prompt order. Weight pushes go to every worker; each worker
records the policy version it serves, and the pool refuses to generate from workers that disagree.
"""

from __future__ import annotations

import time
from typing import Sequence

import ray

from empathy_rl.config import EmpathyRLConfig
from empathy_rl.sharding import even_slices
from rollout.types import Candidate, Prompt, RolloutBatch
from rollout.vllm_engine import RolloutWorker, engine_env


class RolloutPool:
    def __init__(self, cfg: EmpathyRLConfig, model_path: str):
        r = cfg.rollout
        self.cfg = cfg
        actor_cls = ray.remote(RolloutWorker)
        self.workers = [
            actor_cls.options(
                name=f"rollout-{i}",
                num_cpus=r.num_cpus_per_worker,
                num_gpus=r.num_gpus_per_worker if r.tensor_parallel_size == 1 else 0,
                runtime_env={"env_vars": engine_env(cfg)},
                max_concurrency=2,  # a weight push may arrive while the driver polls the version
            ).remote(cfg, model_path, i)
            for i in range(r.num_workers)
        ]
        ray.get([w.get_policy_version.remote() for w in self.workers])  # wait for engines to start
        self.version = 0

    def generate(self, prompts: Sequence[Prompt], seed: int, n: int | None = None, temperature: float | None = None) -> RolloutBatch:
        n = n or self.cfg.rollout.group_size
        temperature = self.cfg.rollout.temperature if temperature is None else temperature
        start = time.perf_counter()
        prompts = list(prompts)
        shards = [prompts[part] for part in even_slices(len(prompts), len(self.workers))]
        refs = [w.generate.remote(shard, n, temperature, seed) for w, shard in zip(self.workers, shards) if shard]
        candidates: list[Candidate] = [c for part in ray.get(refs) for c in part]
        versions = {c.policy_version for c in candidates}
        if versions != {self.version}:
            raise RuntimeError(f"rollout workers served policy versions {sorted(versions)}, expected {self.version}")
        batch = RolloutBatch(list(prompts), candidates, n)
        lengths = [len(c.token_ids) for c in candidates]
        batch.stats = {
            "rollout/response_len_mean": sum(lengths) / max(len(lengths), 1),
            "rollout/truncated_frac": sum(c.finish_reason == "length" for c in candidates) / max(len(candidates), 1),
            "time/generate_s": time.perf_counter() - start,
        }
        return batch

    def push_from_object_store(self, version: int, bucket_refs: list, verify: bool = False) -> list[str | None]:
        """Every worker reloads from the same object-store buckets; returns their checksums if `verify`."""
        checksums = ray.get([w.update_weights.remote(version, bucket_refs, verify) for w in self.workers])
        self.version = version
        return checksums

    def receive_nccl_refs(self, version: int, indexes: list) -> list:
        """Start the NCCL receive on every worker; the caller starts the learner's broadcast and waits on all."""
        return [w.receive_weights_nccl.remote(version, indexes) for w in self.workers]

    def mark_version(self, version: int) -> None:
        self.version = version

    def init_weight_group_refs(self, master_address: str, master_port: int, world_size: int) -> list:
        tp = self.cfg.rollout.tensor_parallel_size
        return [w.init_weight_group.remote(master_address, master_port, 1 + i * tp, world_size) for i, w in enumerate(self.workers)]

    def versions(self) -> list[int]:
        return ray.get([w.get_policy_version.remote() for w in self.workers])

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []
