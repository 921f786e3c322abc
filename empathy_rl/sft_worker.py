"""The SFT loop that runs on every Ray Train worker: DeepSpeed on the policy, loss on response tokens.

`train_loop(config)` is what `empathy_rl.sft` hands to `TorchTrainer`. Ray Train has already formed
the process group (gloo on CPU, NCCL on GPU) when it starts; DeepSpeed wraps that group. Each
worker:

1. builds the policy with transformers (dtype from `model.dtype`), optionally with LoRA adapters
   (peft), and a DeepSpeed engine at `sft.zero_stage` with a torch AdamW and a warm-up + cosine
   learning-rate schedule;
2. runs the step plan: every rank lays out the same seeded rows per epoch (`sft_data.epoch_rows`)
   and takes its share, so all ranks step in lockstep; a step's loss is the token mean over the
   response tokens of the whole step on every rank (each micro-batch is weighted by its share of
   that global count, so accumulation and data parallelism give exactly that mean);
3. sends one record per step to the driver through a small inbox actor (rank 0, fire and forget,
   for the progress bar and metrics.jsonl), and calls `ray.train.report` once, at the end, with the
   policy as the checkpoint. Ray Train 2.60 keeps one pending report per worker and collects them
   every 2 s, so each report while training can stall the workers up to 2 s: a report per step
   capped training at half a step a second, and a report per epoch (8 steps on the tiny preset)
   doubled the wall time of the tiny SFT run (both measured). The inbox does not wait.
4. writes the policy in Hugging Face format from rank 0 (full weights gathered at ZeRO-3, LoRA
   merged into the base weights, a tied LM head saved once), with config, generation config and
   tokenizer: `vllm.LLM(model=...)` and the GRPO learner load it as it is.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from empathy_rl.sft_data import IGNORE, Example, epoch_rows, loss_tokens, make_batch

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def response_nll(model, batch: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the response tokens of `batch`, and their number.

    Logits are computed only at positions that predict a labelled token (``logits_to_keep`` with
    the union of those positions over the rows): the prompt is most of every row, and the
    vocabulary projection over it would cost more than the rest of a tiny model while carrying no
    loss.
    """
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    keep = mask.any(0).nonzero().squeeze(-1)
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    logits = model(**inputs, use_cache=False, logits_to_keep=keep.to(device)).logits
    picked = mask[:, keep].to(device)
    nll = F.cross_entropy(logits[picked].float(), targets[:, keep].to(device)[picked], reduction="sum")
    return nll, int(picked.sum())


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based): linear warm-up over
    `warmup` steps, then cosine decay to `min_ratio` at the last step."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_plan(examples: list[Example], config: dict[str, Any]) -> list[tuple[int, int]]:
    """(epoch, first row) of every optimizer step, the same on every rank and on the driver.

    An epoch yields ``len(rows) // (world x batch_size)`` steps; the rows left over are dropped for
    that epoch (the next one reshuffles). With `max_steps` the epochs repeat until that many steps.
    """
    world, bs = config["world_size"], config["batch_size"]
    plan: list[tuple[int, int]] = []
    epoch = 0
    while True:
        rows = epoch_rows(examples, epoch, config["seed"], config["packing"], config["max_len"])
        per_epoch = len(rows) // (world * bs)
        if per_epoch == 0:
            raise ValueError(
                f"{len(rows)} row(s) per epoch cannot fill one step of sft.batch_size={bs} on sft.num_workers={world}; "
                "lower sft.batch_size or add examples"
            )
        for i in range(per_epoch):
            plan.append((epoch, i * world * bs))
            if config["max_steps"] and len(plan) == config["max_steps"]:
                return plan
        epoch += 1
        if not config["max_steps"] and epoch == config["epochs"]:
            return plan


def ds_config(config: dict[str, Any]) -> dict[str, Any]:
    """DeepSpeed config of one worker's engine (micro-batches, accumulation, ZeRO stage, precision)."""
    micro = config["micro_batch_size"] or config["batch_size"]
    gas = config["batch_size"] // micro
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "train_batch_size": micro * gas * config["world_size"],
        "gradient_clipping": config["max_grad_norm"],
        "zero_optimization": {"stage": config["zero_stage"], "overlap_comm": config["use_gpu"]},
        "zero_allow_untested_optimizer": True,  # the client torch AdamW
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }
    if config["zero_stage"] == 3:
        ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    if config["dtype"] == "bfloat16":
        ds["bf16"] = {"enabled": True}
    elif config["dtype"] == "float16":
        ds["fp16"] = {"enabled": True, "initial_scale_power": 16}
    return ds


def _build_engine(config: dict[str, Any], total_steps: int):
    import deepspeed
    from transformers import AutoModelForCausalLM

    ds = ds_config(config)
    keep_alive = None
    if config["zero_stage"] == 3:  # partition while loading instead of materialising the model per rank
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds)  # noqa: F841  (must outlive from_pretrained)
    model = AutoModelForCausalLM.from_pretrained(
        config["model_path"], dtype=_DTYPES[config["dtype"]], trust_remote_code=config["trust_remote_code"]
    )
    del keep_alive
    if config["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    lora = config["lora"]
    if lora["enabled"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                       target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM"),
        )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config["lr"], betas=tuple(config["betas"]), weight_decay=config["weight_decay"])
    schedule = lambda step: lr_factor(step, total_steps, config["warmup_steps"], config["min_lr_ratio"])  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=params, optimizer=optimizer, lr_scheduler=scheduler, config=ds)
    return engine


def _all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _save_policy(engine, config: dict[str, Any], rank: int) -> Path | None:
    """Full (merged) weights, config, generation config and tokenizer into a temporary directory on
    rank 0; every rank must call this (gathering at ZeRO-3 is collective). None on other ranks."""
    from learner.weights import iter_full_weights

    module = engine.module
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    tied = bool(getattr(base.config, "tie_word_embeddings", False))
    state = {}
    for name, tensor in iter_full_weights(module, config["zero_stage"]):
        if rank == 0 and not (tied and name == "lm_head.weight"):  # re-tied on load; safetensors refuses shared storage
            state[name] = tensor.to("cpu").clone()
    if rank != 0:
        return None
    from huggingface_hub import save_torch_state_dict
    from transformers import AutoConfig, AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="sft-policy-"))
    save_torch_state_dict(state, out, max_shard_size="5GB")
    hf_config = AutoConfig.from_pretrained(config["model_path"], trust_remote_code=config["trust_remote_code"])
    hf_config.dtype = config["dtype"]  # the dtype the weights were saved in
    hf_config.save_pretrained(out)
    generation = Path(config["model_path"]) / "generation_config.json"
    if generation.is_file():
        shutil.copy(generation, out / generation.name)
    AutoTokenizer.from_pretrained(config["tokenizer_path"]).save_pretrained(out)
    return out


def train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker (see the module docstring)."""
    for key, value in config["env"].items():
        os.environ.setdefault(key, value)  # DS_ACCELERATOR and the extension cache, before DeepSpeed is imported
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    local_rank = ctx.get_local_rank()
    for key, value in (("RANK", rank), ("WORLD_SIZE", world), ("LOCAL_RANK", local_rank)):
        os.environ[key] = str(value)  # DeepSpeed reads these next to the process group Ray Train formed
    if not config["use_gpu"]:
        torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"] + rank)
    logging.getLogger("DeepSpeed").setLevel(config["actor_log_level"])
    logging.getLogger("transformers").setLevel(config["actor_log_level"])
    device = ray.train.torch.get_device()
    if config["use_gpu"]:
        torch.cuda.set_device(device)  # DeepSpeed builds the engine on the current device
    import deepspeed

    # DeepSpeed wraps the process group Ray Train formed; its own world size (ZeRO-3's partitioned
    # loading reads it before the engine exists) is 1 until this runs.
    deepspeed.init_distributed(dist_backend="nccl" if config["use_gpu"] else "gloo")
    examples = [Example(*e) for e in config["examples"]]
    config = {**config, "world_size": world}
    plan = step_plan(examples, config)
    engine = _build_engine(config, len(plan))
    engine.train()
    queue = config["inbox"] if rank == 0 else None
    micro = config["micro_batch_size"] or config["batch_size"]
    bs, packing, pad = config["batch_size"], config["packing"], config["pad_id"]
    rows_of_epoch: dict[int, list] = {}
    epoch_sums = [0.0, 0.0]  # nll, tokens of the current epoch
    summary: dict[str, Any] = {}
    loss = float("nan")
    started = time.perf_counter()
    for step, (epoch, first) in enumerate(plan, start=1):
        if epoch not in rows_of_epoch:
            rows_of_epoch = {epoch: epoch_rows(examples, epoch, config["seed"], packing, config["max_len"])}
        t0 = time.perf_counter()
        lr = float(engine.get_lr()[0])  # the rate this step uses (the scheduler moves on at its end)
        mine = rows_of_epoch[epoch][first + rank * bs : first + (rank + 1) * bs]
        batches = [make_batch(mine[i : i + micro], pad, packing) for i in range(0, bs, micro)]
        local_tokens = sum(loss_tokens(b) for b in batches)
        row_tokens = sum(int(b["input_ids"].numel()) for b in batches)
        (global_tokens,) = _all_sum([float(local_tokens)], device, world)
        nll_sum = 0.0
        for batch in batches:
            nll, _ = response_nll(engine, batch, device)
            engine.backward(nll * world / max(global_tokens, 1.0), scale_wrt_gas=False)
            engine.step()
            nll_sum += float(nll.detach())
        nll_all, rows_all = _all_sum([nll_sum, float(row_tokens)], device, world)
        loss = nll_all / max(global_tokens, 1.0)
        epoch_sums[0] += nll_all
        epoch_sums[1] += global_tokens
        record = {
            "step": step, "epoch": epoch + 1, "loss": loss, "tokens": int(global_tokens), "row_tokens": int(rows_all),
            "lr": lr, "step_s": time.perf_counter() - t0,
        }
        norm = engine.get_global_grad_norm()
        if norm is not None:
            record["grad_norm"] = float(norm)
        if queue is not None:
            queue.put.remote(record)  # fire and forget: the driver drains it
        next_epoch = plan[step][0] if step < len(plan) else None
        if next_epoch != epoch:
            summary = {"epoch": epoch + 1, "step": step, "epoch_loss": epoch_sums[0] / max(epoch_sums[1], 1.0),
                       "seconds": time.perf_counter() - started}
            epoch_sums = [0.0, 0.0]
    saved = _save_policy(engine, config, rank)
    checkpoint = ray.train.Checkpoint.from_directory(str(saved)) if saved is not None else None
    # SYNC upload (Ray Train's default) copies it into storage before returning; the temporary copy goes.
    ray.train.report({**summary, "final_loss": loss}, checkpoint=checkpoint, delete_local_checkpoint_after_upload=saved is not None)
