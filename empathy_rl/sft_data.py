"""CoE records -> token rows for supervised fine-tuning, with the loss on the response only.

Every example is ``prompt ids + response ids + EOS``. The prompt is built by the run's
`rollout.prompts.PromptBuilder` (chat template, CoE system prompt of `rollout.system_prompt_style`,
an over-long query cut inside the user turn), so SFT trains on exactly the prompts GRPO samples
from. Labels are ``-100`` on prompt and padding tokens, so only the response carries loss.

Two row layouts:

- unpacked: one example per row, right-padded to the longest row of the micro-batch, with an
  attention mask;
- packed (`sft.packing`): several examples concatenated into rows of at most `max_len` tokens.
  ``position_ids`` restart at 0 for every example (and for the padding tail), and no attention
  mask is passed: transformers then builds a block-diagonal causal mask from the position resets
  (`masking_utils.find_packed_sequence_indices`), for the sdpa and eager attention alike, so no
  token attends across examples and the loss equals the unpacked one (tests/test_sft.py checks
  this within float tolerance).

The first token of an example in a packed row is a prompt token (label -100), so the previous
example's last token never learns to predict it.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch

log = logging.getLogger(__name__)

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)


@dataclass(frozen=True)
class Example:
    """One tokenized SFT example: the chat prompt and the CoE response ending in EOS."""

    record_id: str
    prompt: tuple[int, ...]
    response: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


def encode_records(records: Sequence[Any], prompts: Any, tokenizer: Any, max_response_len: int, max_len: int) -> tuple[list[Example], Counter]:
    """Tokenize CoE records (`coe_data.CoERecord`) into examples; returns them and counts.

    An example whose response (with EOS) is longer than `max_response_len` is left out and counted
    as ``response_too_long``: cutting it would teach the model to stop in the middle of the CoE
    structure, and GRPO could not generate it within its budget anyway. An example longer than
    `max_len` in all is counted as ``too_long``; a prompt the builder drops (`rollout.overlong_prompt=drop`)
    as ``prompt_dropped``.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: SFT responses must end with one so that generation stops")
    counts: Counter = Counter()
    out: list[Example] = []
    for record in records:
        fitted = prompts.fit(record.language, record.query)
        if fitted is None:
            counts["prompt_dropped"] += 1
            continue
        response = tokenizer(record.response(), add_special_tokens=False)["input_ids"] + [eos]
        if len(response) > max_response_len:
            counts["response_too_long"] += 1
            continue
        example = Example(record.id, tuple(fitted[0]), tuple(response))
        if len(example) > max_len:
            counts["too_long"] += 1
            continue
        counts["kept"] += 1
        out.append(example)
    return out, counts


def labels_for(example: Example) -> list[int]:
    """Per-token labels of one example: IGNORE on the prompt, the token itself on the response."""
    return [IGNORE] * len(example.prompt) + list(example.response)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Unpacked rows: ``input_ids``, ``attention_mask`` and ``labels``, right-padded to the longest."""
    if not examples:
        raise ValueError("collate needs at least one example")
    length = max(len(e) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e)
        ids[i, :n] = torch.tensor(e.prompt + e.response, dtype=torch.long)
        labels[i, :n] = torch.tensor(labels_for(e), dtype=torch.long)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(examples: Sequence[Example], max_len: int) -> list[list[Example]]:
    """Group examples into rows of at most `max_len` tokens, first fit in the given order.

    The order is kept within a row, and rows come out in the order they were opened, so a shuffled
    input gives shuffled rows. An example longer than `max_len` is an error (`encode_records`
    leaves those out).
    """
    rows: list[list[Example]] = []
    room: list[int] = []
    for e in examples:
        if len(e) > max_len:
            raise ValueError(f"example {e.record_id!r} has {len(e)} tokens, more than the row length {max_len}")
        for i, free in enumerate(room):
            if len(e) <= free:
                rows[i].append(e)
                room[i] -= len(e)
                break
        else:
            rows.append([e])
            room.append(max_len - len(e))
    return rows


def collate_packed(rows: Sequence[Sequence[Example]], pad_id: int) -> dict[str, torch.Tensor]:
    """Packed rows: ``input_ids``, ``position_ids`` (restarting per example) and ``labels``.

    There is deliberately no ``attention_mask``: with position resets and no mask, transformers
    masks attention block-diagonally (see the module docstring). The padding tail is a block of
    its own with positions from 0, and its labels are IGNORE.
    """
    if not rows or not all(rows):
        raise ValueError("collate_packed needs non-empty rows")
    length = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e)
            ids[i, at : at + n] = torch.tensor(e.prompt + e.response, dtype=torch.long)
            labels[i, at : at + n] = torch.tensor(labels_for(e), dtype=torch.long)
            positions[i, at : at + n] = torch.arange(n)
            at += n
        positions[i, at:] = torch.arange(length - at)
    return {"input_ids": ids, "position_ids": positions, "labels": labels}


def epoch_rows(examples: Sequence[Example], epoch: int, seed: int, packing: bool, max_len: int) -> list[list[Example]]:
    """The rows of one epoch: the examples in a seeded order (new each epoch), packed or one per row."""
    order = list(examples)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return pack(order, max_len) if packing else [[e] for e in order]


def make_batch(rows: Sequence[Sequence[Example]], pad_id: int, packing: bool) -> dict[str, torch.Tensor]:
    """Tensors of one micro-batch of rows in the layout `packing` selects."""
    return collate_packed(rows, pad_id) if packing else collate([row[0] for row in rows], pad_id)


def loss_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Number of tokens that carry loss in `batch` (response tokens after the first position)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())
