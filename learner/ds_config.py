"""The DeepSpeed config of the policy engine, derived from the typed config (one source of truth)."""

from __future__ import annotations

from typing import Any

from empathy_rl.config import EmpathyRLConfig


def micro_batches_per_update(cfg: EmpathyRLConfig) -> int:
    """Gradient-accumulation steps: micro-batches in one optimizer step on one learner rank."""
    rows = cfg.trainer.prompts_per_step * cfg.rollout.group_size
    per_rank = -(-rows // (cfg.learner.mini_batches_per_step * cfg.learner.num_workers))
    return max(1, -(-per_rank // cfg.learner.micro_batch_size))


def build_ds_config(cfg: EmpathyRLConfig, grad_accum: int | None = None) -> dict[str, Any]:
    learner = cfg.learner
    gas = grad_accum or micro_batches_per_update(cfg)
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": learner.micro_batch_size,
        "gradient_accumulation_steps": gas,
        "train_batch_size": learner.micro_batch_size * gas * learner.num_workers,
        "gradient_clipping": learner.max_grad_norm,
        "zero_optimization": {"stage": learner.zero_stage, "overlap_comm": cfg.cluster.device == "cuda"},
        "zero_allow_untested_optimizer": True,  # the client torch AdamW
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }
    if learner.zero_stage == 3:
        ds["zero_optimization"].update(stage3_gather_16bit_weights_on_model_save=True)
    if learner.offload_optimizer:
        ds["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.cluster.device == "cuda"}
        ds["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": learner.lr, "betas": list(learner.betas), "weight_decay": learner.weight_decay},
        }
    if cfg.model.dtype == "bfloat16":
        ds["bf16"] = {"enabled": True}
    elif cfg.model.dtype == "float16":
        ds["fp16"] = {"enabled": True, "initial_scale_power": 16}
    return ds


def reference_zero_stage(cfg: EmpathyRLConfig) -> int:
    """Effective ZeRO stage of the KL reference: `learner.ref_zero_stage`, or 3 when the policy is at 3."""
    lc = cfg.learner
    if lc.ref_zero_stage is not None:
        return lc.ref_zero_stage
    return 3 if lc.zero_stage == 3 else 0


def build_reference_ds_config(cfg: EmpathyRLConfig) -> dict[str, Any]:
    """ZeRO-3 inference config of the frozen reference: parameters sharded (and optionally on CPU), no optimizer.

    Without it every rank holds a whole copy of the reference: 16 GB in bf16 for an 8B model, next to
    its ZeRO-3 shard of the policy. Sharded, each rank holds 1/N and gathers one layer at a time in
    the forward, as for the policy.
    """
    learner = cfg.learner
    zero: dict[str, Any] = {"stage": 3}
    if learner.ref_offload:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cfg.cluster.device == "cuda"}
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": learner.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": learner.micro_batch_size * learner.num_workers,
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.model.dtype == "bfloat16":
        ds["bf16"] = {"enabled": True}
    elif cfg.model.dtype == "float16":
        ds["fp16"] = {"enabled": True}
    return ds
