"""Learner: DeepSpeed actors that apply the KL-regularised, group-normalised GRPO update.

- `batch`: `TrainBatch` (what the learner consumes) built from a `RolloutBatch` and advantages,
  or from plain prompt + response rows (`from_sft`). The SFT cold start is its own stage
  (`empathy_rl.sft`, a Ray Train job).
- `ds_config`: the DeepSpeed config derived from `learner.*` and `model.*`.
- `weights`: full-weight export (ZeRO-3 gathered, LoRA merged) for sync and checkpoints.
- `actor`: `LearnerWorker`, the Ray actor holding the policy engine and the frozen reference.
- `group`: `LearnerGroup`, N data-parallel workers behind one interface.
"""
