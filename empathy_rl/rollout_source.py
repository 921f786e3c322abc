"""Where each GRPO step's rollout comes from: generated now (`trainer.mode=sync`) or one step ahead (`async`).

Sync: step t draws its records, generates them with the current weights, trains, syncs.

Async (one-step off-policy): right after step t's rollout is in hand, the records of step t+1 are
drawn and their generation is started in a background thread, with the weights of version v that
produced step t's rollout. Step t then trains (the learner moves to v+1) while the rollout workers
generate step t+1. The weight push of version v+1 waits, inside each worker, for the running
generation to finish (the worker's LLM lock), so a worker never generates with half-loaded weights,
and step t+1's candidates all carry version v. Step t+1 is therefore trained one version behind the
weights that will produce step t+2: the policy lag is exactly 1 from the second step on (reported as
`rollout/policy_lag`), never more, because at most one rollout is in flight. The learner recomputes
the old log-probs of each batch with its current weights before the update (`need_old` in
`learner/actor.py`), so the importance ratio of the clipped loss is taken against the learner's own
policy, as in one-step off-policy GRPO.

Records are always drawn in step order from one `PromptLoader`, so the sequence of records per step is
the same in both modes; `cursor` is the loader state right after a step's own records, which is what a
checkpoint of that step must hold (in async mode the loader is already one batch ahead).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class DrawnStep:
    step: int
    records: list
    prompts: list
    cursor: dict[str, int]  # loader state after this step's records
    future: Optional[Future] = field(default=None, repr=False)


class RolloutSource:
    def __init__(self, cfg: Any, loader: Any, builder: Any, pool: Any, generate: Optional[Callable[[list, int], Any]] = None):
        """`generate(prompts, seed)` makes a step's rollout: `pool.generate` unless the driver passes its
        own (`rollout.stream_rewards`: generation with each group scored as it finishes)."""
        self.cfg = cfg
        self.loader = loader
        self.builder = builder
        self.pool = pool
        self.generate = generate or (lambda prompts, seed: pool.generate(prompts, seed=seed))
        self.mode = cfg.trainer.mode
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="rollout-prefetch") if self.mode == "async" else None
        self.pending: Optional[DrawnStep] = None

    def seed(self, step: int) -> int:
        return self.cfg.rollout.seed + 1_000_003 * step

    def _draw(self, step: int) -> DrawnStep:
        records = self.loader.next_batch(self.cfg.trainer.prompts_per_step)
        prompts = self.builder.build_many(records)
        if not prompts:
            raise RuntimeError("every prompt of this step was dropped as over-long; raise model.max_prompt_len")
        return DrawnStep(step, records, prompts, self.loader.state())

    def next(self, step: int, last_step: int) -> tuple[DrawnStep, Any]:
        """Step `step`'s records and rollout; in async mode also starts step `step + 1`'s generation."""
        if self.pending is not None and self.pending.step == step:
            drawn, self.pending = self.pending, None
            rollout = drawn.future.result()  # pool.generate(_streamed) enforces timeouts.generate_s itself, the reward client its own
        else:
            drawn = self._draw(step)
            rollout = self.generate(drawn.prompts, self.seed(step))
        if self.executor is not None and step + 1 <= last_step:
            ahead = self._draw(step + 1)
            ahead.future = self.executor.submit(self.generate, ahead.prompts, self.seed(step + 1))
            self.pending = ahead
        return drawn, rollout

    def close(self) -> None:
        """Drop a prefetch in flight (its records are redrawn from the checkpoint's cursor on resume)."""
        self.pending = None
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
