"""`TrainBatch`: right-padded token sequences with a mask over the tokens that carry loss.

Positions follow the shifted-logits convention: `loss_mask[:, t]` says whether the token
`input_ids[:, t + 1]` (predicted by the logits at position t) counts, so every tensor over
"targets" has length T - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from empathy_rl.sharding import even_slices
from rollout.types import RolloutBatch


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # (B, T) long, right-padded
    attention_mask: torch.Tensor  # (B, T) long
    loss_mask: torch.Tensor  # (B, T-1) bool: targets that count
    advantages: Optional[torch.Tensor] = None  # (B,) float; None for SFT
    rollout_logprobs: Optional[torch.Tensor] = None  # (B, T-1) vLLM's log-probs at loss positions, else 0

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: Sequence[int] | slice) -> "TrainBatch":
        """Rows of the batch, with trailing all-padding columns trimmed."""
        ids = self.input_ids[rows]
        length = int(self.attention_mask[rows].sum(-1).max().item()) if len(ids) else 1
        length = max(length, 2)
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return TrainBatch(
            ids[:, :length],
            self.attention_mask[rows][:, :length],
            self.loss_mask[rows][:, : length - 1],
            pick(self.advantages),
            None if self.rollout_logprobs is None else self.rollout_logprobs[rows][:, : length - 1],
        )

    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum().item())

    def num_loss_sequences(self) -> int:
        return int((self.loss_mask.sum(-1) > 0).sum().item())


def _pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(2, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def from_rollout(batch: RolloutBatch, advantages: torch.Tensor, pad_id: int) -> TrainBatch:
    """One row per candidate: prompt tokens + response tokens; loss on the response tokens only."""
    if advantages.shape != (len(batch.candidates),):
        raise ValueError(f"advantages shape {tuple(advantages.shape)} != ({len(batch.candidates)},)")
    prompts = {p.uid: p.token_ids for p in batch.prompts}
    seqs = [list(prompts[c.prompt_uid]) + list(c.token_ids) for c in batch.candidates]
    ids, attn = _pad(seqs, pad_id)
    loss_mask = torch.zeros((len(seqs), ids.shape[1] - 1), dtype=torch.bool)
    rollout_logp = torch.zeros((len(seqs), ids.shape[1] - 1), dtype=torch.float32)
    for i, c in enumerate(batch.candidates):
        start = len(prompts[c.prompt_uid]) - 1
        loss_mask[i, start : start + len(c.token_ids)] = True
        rollout_logp[i, start : start + len(c.token_ids)] = torch.tensor(c.logprobs, dtype=torch.float32)
    return TrainBatch(ids, attn, loss_mask, advantages.float(), rollout_logp)


def from_sft(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int) -> TrainBatch:
    """Prompt + response rows with the loss mask on the response tokens (used to build learner batches in tests)."""
    seqs = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
    ids, attn = _pad(seqs, pad_id)
    loss_mask = torch.zeros((len(seqs), ids.shape[1] - 1), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        loss_mask[i, len(p) - 1 : len(p) - 1 + len(r)] = True
    return TrainBatch(ids, attn, loss_mask)


def shard(batch: TrainBatch, parts: int) -> list[TrainBatch]:
    """Contiguous row shards for data-parallel learners (sizes differ by at most one)."""
    return [batch.select(part) for part in even_slices(len(batch), parts)]
