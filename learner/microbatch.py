"""Micro-batches of a GRPO update: which rows go together, and the loss of each.

Why a module of its own: the learner actor wraps these in DeepSpeed, but the arithmetic (row order,
per-micro-batch weights, the clipped loss, when entropy is computed) must be checkable with a plain
torch module and no Ray, and it is where the step's time goes.

- Rows are sorted by length (longest first) inside each mini-batch and cut into micro-batches of
  `learner.micro_batch_size`; each micro-batch is then trimmed to its own longest sequence
  (`TrainBatch.select`), and only the loss positions get logits (`forward_logprobs`). Sorting
  keeps short rows out of long rows' padding. It cannot change the update: each micro-batch's loss
  is weighted by its share of the mini-batch's tokens (or sequences), so the sum over micro-batches
  is the aggregation over the whole mini-batch whatever the grouping (checked in
  tests/test_microbatch.py against the unsorted grouping and one big batch).
- Entropy over the full vocabulary costs a softmax over (tokens x vocabulary) per micro-batch. It is
  computed with gradient only when `algorithm.entropy_coeff` > 0; otherwise it is computed exactly,
  under no_grad and on the logits the loss already needed, every `algorithm.entropy_log_every`
  training steps (the first step, then every k-th), and not at all in between (0 = never). Steps
  without it have no `train/entropy` metric.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from empathy_rl import grpo
from learner.batch import TrainBatch

ENTROPY_OFF, ENTROPY_LOG, ENTROPY_GRAD = "off", "log", "grad"


def entropy_mode(entropy_coeff: float, log_every: int, step: int) -> str:
    """How step `step` (1-based) treats entropy: `grad` (in the loss), `log` (no_grad, metric only) or `off`."""
    if entropy_coeff != 0:
        return ENTROPY_GRAD
    if log_every > 0 and (step - 1) % log_every == 0:
        return ENTROPY_LOG
    return ENTROPY_OFF


def sequence_lengths(batch: TrainBatch) -> list[int]:
    """Real (unpadded) length of every row."""
    return batch.attention_mask.sum(-1).tolist()


def plan_micro_batches(lengths: Sequence[int], rows: Sequence[int], size: int, sort: bool = True) -> list[list[int]]:
    """`rows` cut into ceil(len/size) micro-batches of at most `size`; longest rows first when `sort`.

    The number of micro-batches is the same sorted or not (DeepSpeed's accumulation count depends on
    it). Ties keep row order, so the plan is deterministic.
    """
    if size < 1:
        raise ValueError(f"micro-batch size must be >= 1, got {size}")
    order = sorted(rows, key=lambda r: -lengths[r]) if sort else list(rows)
    return [order[i : i + size] for i in range(0, len(order), size)]


def output_head(module: torch.nn.Module) -> torch.nn.Module:
    """The vocabulary projection (lm_head) of a Hugging Face model, a PEFT model or a DeepSpeed engine."""
    inner = getattr(module, "module", None)  # DeepSpeed engines wrap the model as `.module`
    model = inner if isinstance(inner, torch.nn.Module) else module
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (lm_head): cannot compute token log-probs")
    return head


def forward_logprobs(
    module: Callable[..., object], batch: TrainBatch, temperature: float, device: torch.device, entropy: str = ENTROPY_OFF
) -> tuple[Tensor, Optional[Tensor]]:
    """Per-target log-probs (B, T-1), zero outside the loss mask; and entropy, the same shape.

    The vocabulary projection runs on the loss positions only: the model's forward returns no
    logits (`logits_to_keep` of zero positions) and its last hidden states (after the final norm)
    at the loss positions go through `lm_head` as one (N, H) matrix. Prompt positions, padding and
    the gaps between rows of different prompt lengths get no logits and no log-softmax, which on
    the tiny model (vocabulary 6012, hidden 64) is most of a forward's cost. Entropy (B, T-1) is
    returned for `ENTROPY_GRAD` (in the graph) and `ENTROPY_LOG` (detached, computed under no_grad
    from the same logits), None for `ENTROPY_OFF`.
    """
    ids = batch.input_ids.to(device)
    mask = batch.loss_mask.to(device)
    none = torch.zeros(0, dtype=torch.long, device=device)
    out = module(
        input_ids=ids, attention_mask=batch.attention_mask.to(device), use_cache=False, output_hidden_states=True, logits_to_keep=none
    )
    hidden = out.hidden_states[-1][:, :-1][mask]  # (N, H): positions whose next token carries loss
    logits = output_head(module)(hidden).unsqueeze(0)  # (1, N, V)
    picked = grpo.sequence_log_probs(logits, ids[:, 1:][mask].unsqueeze(0), temperature).squeeze(0)
    logp = torch.zeros(mask.shape, dtype=picked.dtype, device=device).masked_scatter(mask, picked)
    ent = None
    if entropy == ENTROPY_GRAD:
        ent = grpo.token_entropy_from_logits(logits).squeeze(0)
    elif entropy == ENTROPY_LOG:
        with torch.no_grad():
            ent = grpo.token_entropy_from_logits(logits.detach()).squeeze(0)
    if ent is not None:
        ent = torch.zeros(mask.shape, dtype=ent.dtype, device=device).masked_scatter(mask, ent)
    return logp, ent


def loss_weight(part: TrainBatch, aggregation: str, denom: float, world_size: int) -> float:
    """This micro-batch's share of the mini-batch aggregation (tokens or sequences over all ranks)."""
    share = part.num_loss_tokens() if aggregation == "token-mean" else part.num_loss_sequences()
    return world_size * share / max(denom, 1.0)


def mini_batch_denominator(sub: TrainBatch, aggregation: str) -> float:
    """What the aggregation divides by on this rank: loss tokens (token-mean) or sequences with one."""
    return float(sub.num_loss_tokens() if aggregation == "token-mean" else sub.num_loss_sequences())


def run_micro_batches(
    module: Callable[..., object],
    batch: TrainBatch,
    chunks: list[list[int]],
    *,
    alg,
    temperature: float,
    device: torch.device,
    denom: float,
    world_size: int,
    entropy: str,
    old_all: Optional[Tensor],
    ref_all: Optional[Tensor],
    backward: Callable[[Tensor], None],
    after_backward: Callable[[bool], None] = lambda last: None,
) -> dict[str, float]:
    """Forward, loss and backward of each micro-batch of one mini-batch; returns token-weighted sums.

    `backward(weighted_loss)` is `engine.backward` in the learner and `Tensor.backward` in tests;
    `after_backward(is_last)` is where the learner steps the engine. Returned sums (divide by
    "tokens" for means): every `policy_loss` metric, "loss", "logprob_gap" when the batch carries
    rollout log-probs, "weighted_loss" (the mini-batch's aggregated loss, unweighted by tokens),
    "tokens" and "entropy_passes" (micro-batches where entropy was computed).
    """
    sums: dict[str, float] = {"tokens": 0.0, "weighted_loss": 0.0, "entropy_passes": 0.0}
    for i, chunk in enumerate(chunks):
        part = batch.select(chunk)
        width = part.loss_mask.shape[1]
        logp, ent = forward_logprobs(module, part, temperature, device, entropy)
        mask = part.loss_mask.to(device)
        old = old_all[chunk][:, :width].to(device) if old_all is not None else logp.detach()
        ref = ref_all[chunk][:, :width].to(device) if ref_all is not None else None
        coeff = alg.entropy_coeff if entropy == ENTROPY_GRAD else 0.0
        loss, metrics = grpo.policy_loss(
            logp, old, ref, part.advantages.to(device), mask,
            clip_low=alg.clip_low, clip_high=alg.clip_high, beta=alg.kl_beta if ref is not None else 0.0,
            kl_kind=alg.kl_kind, aggregation=alg.aggregation, entropy=ent, entropy_coeff=coeff,
        )
        weight = loss_weight(part, alg.aggregation, denom, world_size)
        backward(loss * weight)
        after_backward(i == len(chunks) - 1)
        n_tok = float(part.num_loss_tokens())
        sums["tokens"] += n_tok
        sums["weighted_loss"] += float(loss.item()) * weight / world_size
        sums["entropy_passes"] += float(ent is not None)
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * n_tok
        sums["loss"] = sums.get("loss", 0.0) + float(loss.item()) * n_tok
        if part.rollout_logprobs is not None and n_tok:
            gap = (part.rollout_logprobs.to(device) - old.float()).abs()
            sums["logprob_gap"] = sums.get("logprob_gap", 0.0) + float(gap[mask].sum().item())
    return sums


def padding_share(batch: TrainBatch, chunks: list[list[int]]) -> float:
    """Share of forward positions that are padding under a plan (for benchmarks and logs)."""
    lengths = sequence_lengths(batch)
    total = sum(len(c) * max(lengths[r] for r in c) for c in chunks)
    real = sum(lengths[r] for c in chunks for r in c)
    return 1.0 - real / total if total else 0.0

