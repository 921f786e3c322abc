"""Rebuilding a dead learner from the last checkpoint, inside the run (`trainer.learner_restarts`).

A learner rank that dies takes its DeepSpeed state (and, at ZeRO > 0, a shard of everyone's) with
it, so the surviving ranks cannot go on. With `trainer.learner_restarts` > 0 the driver instead:

1. drops a prefetched rollout (async mode) and stops the remaining learner ranks;
2. starts a new learner group in the same placement group and loads the latest complete checkpoint
   (the run's starting policy as the reference, then `engine.load_checkpoint` and each rank's RNG);
3. goes back to the checkpoint's step, policy version and data cursor, drops the step records after
   it from the run directory, and pushes the checkpoint's weights to every rollout worker.

The steps after the checkpoint are then redone exactly as a `--resume auto` would redo them. With no
checkpoint yet, or `trainer.learner_restarts` used up, the original error stops the run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from empathy_rl.checkpointing import read_state
from empathy_rl.remote import StageError, actor_died

log = logging.getLogger("empathy_rl")


def is_learner_death(err: BaseException) -> bool:
    return isinstance(err, StageError) and err.party.startswith("learner rank") and actor_died(err)


def _wait_names_free(names: list[str], timeout: float) -> None:
    """Killing is asynchronous: wait until the dead ranks' actor names (in the driver's namespace) can be taken again."""
    import ray

    deadline = time.monotonic() + timeout
    for name in names:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name)  # the driver's namespace, where the group created them
            except ValueError:
                break
            time.sleep(0.2)


def restart_learner_from_checkpoint(trainer: Any) -> Path:
    """Steps 1-3 above on `trainer` (a `GRPOTrainer`); returns the checkpoint it went back to."""
    from empathy_rl.rollout_source import RolloutSource
    from empathy_rl.weight_sync import WeightSync
    from learner.group import LearnerGroup, learner_actor_name

    cfg = trainer.cfg
    checkpoint = trainer.run.store.latest()
    if checkpoint is None:
        raise RuntimeError("no complete checkpoint to rebuild the learner from (set checkpoint.save_every)")
    state = read_state(checkpoint)
    trainer.source.close()
    if trainer.weight_sync is not None:
        trainer.weight_sync.teardown()
    trainer.learner.shutdown()
    _wait_names_free([learner_actor_name(cfg, r) for r in range(cfg.learner.num_workers)], cfg.timeouts.startup_s)
    trainer.learner = LearnerGroup(cfg, trainer.placement)
    trainer.learner.load_policy(state["start_policy"], cfg.learner.lr, cfg.learner.warmup_steps, with_reference=True)
    trainer.learner.load_checkpoint(str(checkpoint))
    trainer.step, trainer.version = state["step"], state["policy_version"]
    trainer.loader.restore(state["loader"])
    trainer._cursor = dict(state["loader"])
    trainer.run.rewind(trainer.step)
    trainer.weight_sync = WeightSync(cfg, trainer.learner, trainer.pool)
    trainer.weight_sync.setup()
    trainer.weight_sync.push(trainer.version)  # rollout workers back to the checkpoint's weights and version
    trainer.source = RolloutSource(cfg, trainer.loader, trainer.prompts, trainer.pool)
    log.warning("learner rebuilt from %s: back to step %d, policy version %d", checkpoint, trainer.step, trainer.version)
    return checkpoint
