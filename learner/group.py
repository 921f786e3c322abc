"""`LearnerGroup`: N data-parallel `LearnerWorker` actors behind one interface for the driver.

Rank 0 reports an address for the torch.distributed rendezvous, then every rank joins. Each call
shards the batch by rows and runs on all ranks at once (DeepSpeed averages gradients across them);
metrics come from rank 0's shard, except timings, which are the slowest rank's.
"""

from __future__ import annotations

from typing import Any

import ray

from empathy_rl.config import EmpathyRLConfig
from learner.actor import LearnerWorker, learner_env
from learner.batch import TrainBatch, shard


class LearnerGroup:
    def __init__(self, cfg: EmpathyRLConfig):
        lc = cfg.learner
        self.cfg = cfg
        actor_cls = ray.remote(LearnerWorker)
        self.workers = [
            actor_cls.options(
                name=f"learner-{rank}",
                num_cpus=lc.num_cpus_per_worker,
                num_gpus=lc.num_gpus_per_worker,
                runtime_env={"env_vars": learner_env(cfg)},
            ).remote(cfg, rank, lc.num_workers)
            for rank in range(lc.num_workers)
        ]
        addr, port = ray.get(self.workers[0].address.remote())
        ray.get([w.init_distributed.remote(addr, port) for w in self.workers])
        self.master_addr = addr

    def _all(self, method: str, *args: Any) -> list[Any]:
        return ray.get([getattr(w, method).remote(*args) for w in self.workers])

    def load_policy(self, model_path: str, lr: float, warmup_steps: int, with_reference: bool) -> int:
        return self._all("load_policy", model_path, lr, warmup_steps, with_reference)[0]

    def _sharded(self, method: str, batch: TrainBatch) -> list[Any]:
        parts = shard(batch, len(self.workers))
        return ray.get([getattr(w, method).remote(part) for w, part in zip(self.workers, parts)])

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        results = self._sharded("train_step", batch)
        metrics = dict(results[0])
        metrics["time/train_s"] = max(r["time/train_s"] for r in results)
        return metrics

    def sft_step(self, batch: TrainBatch) -> dict[str, float]:
        return self._sharded("sft_step", batch)[0]

    def compute_logprobs(self, batch: TrainBatch):
        """Current policy log-probs (B, T-1) over the whole batch (each shard padded back to T-1)."""
        import torch

        width = batch.loss_mask.shape[1]
        parts = self._sharded("compute_logprobs", batch)
        return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts], dim=0)

    def export_to_object_store(self) -> list:
        return self._all("export_to_object_store")[0]

    def bucket_plan(self) -> list:
        return self._all("bucket_plan")[0]

    def weights_checksum(self) -> str:
        return self._all("weights_checksum")[0]

    def init_weight_group_refs(self, master_address: str, master_port: int, world_size: int) -> list:
        return [w.init_weight_group.remote(master_address, master_port, world_size) for w in self.workers]

    def broadcast_refs(self) -> list:
        return [w.broadcast_weights_nccl.remote() for w in self.workers]

    def save_checkpoint(self, directory: str, save_optimizer: bool) -> None:
        self._all("save_checkpoint", directory, save_optimizer)

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []
