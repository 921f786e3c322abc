"""`LearnerGroup`: N data-parallel `LearnerWorker` actors behind one interface for the driver.

Rank 0 reports an address for the torch.distributed rendezvous, then every rank joins. Each call
shards the batch by rows and runs on all ranks at once (DeepSpeed averages gradients across them);
metrics come from rank 0's shard, except timings, which are the slowest rank's. Ranks are placed in
the learner placement group (`empathy_rl.placement`), one bundle per rank.
"""

from __future__ import annotations

from typing import Any, Optional

import ray

from empathy_rl.config import EmpathyRLConfig, run_scoped
from empathy_rl.placement import Placement
from empathy_rl.remote import wait_named
from learner.actor import LearnerWorker, learner_env
from learner.batch import TrainBatch, shard


# method -> the `timeouts.*` key of its deadline (start-up for anything not listed)
_TIMEOUT_KEYS: dict[str, str] = {
    "train_step": "train_s",
    "compute_logprobs": "train_s",
    "save_checkpoint": "checkpoint_s",
    "load_checkpoint": "checkpoint_s",
    "weights_checksum": "checkpoint_s",
}


def learner_actor_name(cfg: EmpathyRLConfig, rank: int) -> str:
    """`<run id>-learner-<rank>`: unique on a cluster shared by several runs."""
    return run_scoped(cfg, f"learner-{rank}")


class LearnerGroup:
    def __init__(self, cfg: EmpathyRLConfig, placement: Optional[Placement] = None):
        """Start `learner.num_workers` ranks in `placement` (reserved here, for learners only, if None)."""
        lc = cfg.learner
        self.cfg = cfg
        self.own_placement = placement is None
        self.placement = placement or Placement(cfg, roles=("learner",))
        actor_cls = ray.remote(LearnerWorker)
        self.workers = [
            actor_cls.options(
                name=learner_actor_name(cfg, rank),
                runtime_env={"env_vars": learner_env(cfg)},
                **self.placement.learner_slot(rank).options(),
            ).remote(cfg, rank, lc.num_workers)
            for rank in range(lc.num_workers)
        ]
        try:
            addr, port = self._wait([self.workers[0].address.remote()], "address")[0]
            self._wait([w.init_distributed.remote(addr, port) for w in self.workers], "init_distributed")
        except BaseException:
            self.shutdown()  # never leave half a group behind
            raise
        self.master_addr = addr

    def _wait(self, refs: list, method: str) -> list[Any]:
        """Results per rank, with the deadline of the method's kind (`timeouts.*`); errors name the rank."""
        key = _TIMEOUT_KEYS.get(method, "startup_s")
        named = [(f"learner rank {r}", ref) for r, ref in enumerate(refs)]
        return wait_named(named, method, getattr(self.cfg.timeouts, key), f"timeouts.{key}")

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self._wait([getattr(w, method).remote(*args) for w in self.workers], method)

    def load_policy(self, model_path: str, lr: float, warmup_steps: int, with_reference: bool) -> int:
        return self._all("load_policy", model_path, lr, warmup_steps, with_reference)[0]

    def _sharded(self, method: str, batch: TrainBatch) -> list[Any]:
        parts = shard(batch, len(self.workers))
        return self._wait([getattr(w, method).remote(part) for w, part in zip(self.workers, parts)], method)

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        results = self._sharded("train_step", batch)
        metrics = dict(results[0])
        metrics["time/train_s"] = max(r["time/train_s"] for r in results)
        return metrics

    def compute_logprobs(self, batch: TrainBatch):
        """Current policy log-probs (B, T-1) over the whole batch (each shard padded back to T-1)."""
        import torch

        width = batch.loss_mask.shape[1]
        parts = self._sharded("compute_logprobs", batch)
        return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts], dim=0)

    def export_refs(self) -> list:
        """Start the bucket export on every rank (collective at ZeRO-3); rank 0's result holds the buckets."""
        return [w.export_to_object_store.remote() for w in self.workers]

    def bucket_plan_ref(self):
        return self.workers[0].bucket_plan.remote()

    def weights_checksum(self) -> str:
        return self._all("weights_checksum")[0]

    def init_weight_group_refs(self, master_address: str, master_port: int, world_size: int) -> list:
        return [w.init_weight_group.remote(master_address, master_port, world_size) for w in self.workers]

    def broadcast_refs(self) -> list:
        return [w.broadcast_weights_nccl.remote() for w in self.workers]

    def weight_group_address_ref(self):
        return self.workers[0].weight_group_address.remote()

    def close_weight_group_refs(self) -> list:
        return [w.close_weight_group.remote() for w in self.workers]

    def save_checkpoint(self, directory: str, save_optimizer: bool) -> None:
        self._all("save_checkpoint", directory, save_optimizer)

    def load_checkpoint(self, directory: str) -> int:
        """Every rank loads its DeepSpeed state and RNG from `directory`; returns the optimizer steps."""
        return self._all("load_checkpoint", directory)[0]

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []
        if self.own_placement:
            self.placement.remove()
