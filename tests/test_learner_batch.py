"""Tests for `learner.batch` (padding, shifted loss mask, select/shard), rollout records and `even_slices`."""

from __future__ import annotations

import pytest
import torch

from learner.batch import TrainBatch, from_rollout, from_sft, shard
from rollout.types import Candidate, Prompt, RolloutBatch

PAD = 0


def _prompt(uid: int, ids: tuple[int, ...]) -> Prompt:
    return Prompt(uid=uid, record_id=f"rec{uid}", language="en", query=f"q{uid}", token_ids=ids)


def _candidate(uid: int, ids: list[int], base: float) -> Candidate:
    logprobs = [-(base + k / 10) for k in range(len(ids))]
    return Candidate(uid, ids, logprobs, text="t", finish_reason="stop", policy_version=0, worker=0)


# Two prompts (lengths 3 and 5), G = 3 candidates each, response lengths 2/4/1 and 3/1/0.
PROMPT_IDS = [(11, 12, 13), (21, 22, 23, 24, 25)]
RESPONSES = [[[101, 102], [111, 112, 113, 114], [121]], [[201, 202, 203], [211], []]]
G = 3


def _rollout() -> RolloutBatch:
    prompts = [_prompt(i, ids) for i, ids in enumerate(PROMPT_IDS)]
    candidates = [_candidate(i, r, base=i + j) for i, group in enumerate(RESPONSES) for j, r in enumerate(group)]
    return RolloutBatch(prompts, candidates, G)


def _rows() -> list[tuple[tuple[int, ...], list[int]]]:
    return [(PROMPT_IDS[i], r) for i, group in enumerate(RESPONSES) for r in group]


@pytest.fixture
def batch() -> TrainBatch:
    return from_rollout(_rollout(), torch.arange(6, dtype=torch.float64) - 2.5, PAD)


# --------------------------------------------------------------------------------------------
# from_rollout
# --------------------------------------------------------------------------------------------


def test_from_rollout_shapes(batch: TrainBatch) -> None:
    longest = max(len(p) + len(r) for p, r in _rows())
    assert len(batch) == 6
    assert batch.input_ids.shape == (6, longest)
    assert batch.input_ids.dtype == torch.long
    assert batch.attention_mask.shape == (6, longest)
    assert batch.loss_mask.shape == (6, longest - 1)
    assert batch.loss_mask.dtype == torch.bool
    assert batch.rollout_logprobs is not None and batch.rollout_logprobs.shape == (6, longest - 1)
    assert batch.rollout_logprobs.dtype == torch.float32
    assert batch.advantages is not None and batch.advantages.dtype == torch.float32
    assert torch.equal(batch.advantages, torch.arange(6, dtype=torch.float32) - 2.5)


def test_from_rollout_tokens_right_padded(batch: TrainBatch) -> None:
    for i, (p, r) in enumerate(_rows()):
        seq = list(p) + r
        n = len(seq)
        assert batch.input_ids[i, :n].tolist() == seq
        assert batch.input_ids[i, n:].tolist() == [PAD] * (batch.input_ids.shape[1] - n)
        assert batch.attention_mask[i].tolist() == [1] * n + [0] * (batch.attention_mask.shape[1] - n)


def test_from_rollout_loss_mask_is_shifted_response(batch: TrainBatch) -> None:
    """loss_mask[:, t] is True exactly when input_ids[:, t + 1] is a response token."""
    for i, (p, r) in enumerate(_rows()):
        expected = [len(p) <= t + 1 < len(p) + len(r) for t in range(batch.loss_mask.shape[1])]
        assert batch.loss_mask[i].tolist() == expected, i
        # the masked targets are exactly the response tokens, in order
        assert batch.input_ids[i, 1:][batch.loss_mask[i]].tolist() == r
    assert batch.num_loss_tokens() == sum(len(r) for _, r in _rows())
    assert batch.num_loss_sequences() == 5  # one candidate has an empty response


def test_from_rollout_logprobs_at_loss_positions(batch: TrainBatch) -> None:
    candidates = _rollout().candidates
    assert batch.rollout_logprobs is not None
    for i, c in enumerate(candidates):
        row = batch.rollout_logprobs[i]
        assert row[batch.loss_mask[i]].tolist() == pytest.approx(c.logprobs)
        assert torch.all(row[~batch.loss_mask[i]] == 0)
        start = len(PROMPT_IDS[c.prompt_uid]) - 1
        for k, lp in enumerate(c.logprobs):
            assert row[start + k].item() == pytest.approx(lp)


def test_from_rollout_uses_prompt_uid_not_position() -> None:
    """Candidates find their prompt by uid, even when the prompt list is in another order."""
    prompts = [_prompt(7, (1, 2)), _prompt(3, (5, 6, 7, 8))]
    candidates = [_candidate(7, [9], 0.0), _candidate(7, [9, 9], 0.0), _candidate(3, [4], 0.0), _candidate(3, [4, 4], 0.0)]
    tb = from_rollout(RolloutBatch(prompts, candidates, 2), torch.zeros(4), PAD)
    assert tb.input_ids[0, :3].tolist() == [1, 2, 9]
    assert tb.input_ids[2, :5].tolist() == [5, 6, 7, 8, 4]
    assert tb.loss_mask[2].tolist() == [False, False, False, True, False]


@pytest.mark.parametrize("shape", [(5,), (7,), (6, 1), (1, 6), ()])
def test_from_rollout_advantages_shape_check(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="advantages shape"):
        from_rollout(_rollout(), torch.zeros(shape), PAD)


def test_pad_id_is_used() -> None:
    tb = from_rollout(_rollout(), torch.zeros(6), pad_id=-7)
    assert tb.input_ids[5, 5:].tolist() == [-7] * (tb.input_ids.shape[1] - 5)


def test_minimum_length_two() -> None:
    """A single-token sequence is padded to length 2 so there is at least one target column."""
    prompts = [_prompt(0, (5,))]
    tb = from_rollout(RolloutBatch(prompts, [_candidate(0, [], 0.0), _candidate(0, [], 0.0)], 2), torch.zeros(2), PAD)
    assert tb.input_ids.shape == (2, 2)
    assert tb.loss_mask.shape == (2, 1)
    assert tb.num_loss_tokens() == 0


# --------------------------------------------------------------------------------------------
# RolloutBatch invariant
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_candidates", [0, 5, 7, 3])
def test_rollout_batch_rejects_wrong_candidate_count(n_candidates: int) -> None:
    prompts = [_prompt(i, ids) for i, ids in enumerate(PROMPT_IDS)]
    candidates = [_candidate(0, [1], 0.0) for _ in range(n_candidates)]
    with pytest.raises(ValueError, match=f"{n_candidates} candidates for 2 prompts x G=3"):
        RolloutBatch(prompts, candidates, G)


def test_rollout_batch_accepts_prompts_times_group() -> None:
    rb = _rollout()
    assert len(rb.candidates) == 6
    assert rb.stats == {}


def test_prompt_is_frozen() -> None:
    p = _prompt(0, (1, 2))
    assert (p.crisis, p.truncated) == (False, False)
    with pytest.raises(AttributeError):
        p.uid = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# from_sft
# --------------------------------------------------------------------------------------------


def test_from_sft() -> None:
    prompts = [[1, 2, 3], [4], [5, 6]]
    responses = [[7, 8], [9, 10, 11, 12], [13]]
    tb = from_sft(prompts, responses, PAD)
    assert tb.advantages is None and tb.rollout_logprobs is None
    assert tb.input_ids.shape == (3, 5)
    assert tb.input_ids.tolist() == [[1, 2, 3, 7, 8], [4, 9, 10, 11, 12], [5, 6, 13, PAD, PAD]]
    assert tb.attention_mask.tolist() == [[1] * 5, [1] * 5, [1, 1, 1, 0, 0]]
    assert tb.loss_mask.tolist() == [
        [False, False, True, True],
        [True, True, True, True],
        [False, True, False, False],
    ]
    for i, r in enumerate(responses):
        assert tb.input_ids[i, 1:][tb.loss_mask[i]].tolist() == r
    assert tb.num_loss_tokens() == 7
    assert tb.num_loss_sequences() == 3


# --------------------------------------------------------------------------------------------
# select / shard
# --------------------------------------------------------------------------------------------


def test_select_trims_trailing_padding(batch: TrainBatch) -> None:
    # rows 4 and 5 have lengths 6 and 5 (full batch width 8) -> trimmed to width 6
    sub = batch.select([4, 5])
    assert sub.input_ids.shape == (2, 6)
    assert sub.attention_mask.shape == (2, 6)
    assert sub.loss_mask.shape == (2, 5)
    assert sub.rollout_logprobs is not None and sub.rollout_logprobs.shape == (2, 5)
    assert sub.advantages is not None and sub.advantages.tolist() == batch.advantages[[4, 5]].tolist()
    assert torch.equal(sub.input_ids, batch.input_ids[[4, 5], :6])
    assert torch.equal(sub.loss_mask, batch.loss_mask[[4, 5], :5])
    assert sub.num_loss_tokens() == 1
    # nothing of value was trimmed
    assert batch.attention_mask[[4, 5], 6:].sum() == 0


def test_select_slice_and_order(batch: TrainBatch) -> None:
    sub = batch.select(slice(0, 3))
    assert sub.input_ids.shape == (3, 7)  # longest of rows 0..2 is 3 + 4
    rev = batch.select([2, 0])
    assert rev.input_ids[0, :4].tolist() == [11, 12, 13, 121]
    assert rev.input_ids.shape == (2, 5)


def test_select_keeps_at_least_two_columns() -> None:
    tb = from_sft([[1], [2, 3, 4]], [[], [5]], PAD)
    sub = tb.select([0])
    assert sub.input_ids.shape == (1, 2)
    assert sub.loss_mask.shape == (1, 1)


def test_select_without_optional_tensors() -> None:
    tb = from_sft([[1, 2], [3]], [[4], [5]], PAD)
    sub = tb.select([1])
    assert sub.advantages is None and sub.rollout_logprobs is None
    assert sub.input_ids.tolist() == [[3, 5]]


@pytest.mark.parametrize("parts, sizes", [(1, [6]), (2, [3, 3]), (4, [2, 2, 1, 1]), (6, [1] * 6), (8, [1] * 6 + [0, 0])])
def test_shard_sizes(batch: TrainBatch, parts: int, sizes: list[int]) -> None:
    shards = shard(batch, parts)
    assert [len(s) for s in shards] == sizes
    rows = torch.cat([s.advantages for s in shards if s.advantages is not None])
    assert torch.equal(rows, batch.advantages)  # contiguous, in order
    for s in shards:
        if len(s):
            assert s.input_ids.shape[1] == max(2, int(s.attention_mask.sum(-1).max()))
            assert s.loss_mask.shape[1] == s.input_ids.shape[1] - 1
    assert sum(s.num_loss_tokens() for s in shards) == batch.num_loss_tokens()


# --------------------------------------------------------------------------------------------
# empathy_rl.sharding.even_slices (rollout prompts and learner rows share it)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, parts, sizes",
    [(10, 3, [4, 3, 3]), (9, 3, [3, 3, 3]), (2, 4, [1, 1, 0, 0]), (0, 2, [0, 0]), (5, 1, [5]), (7, 7, [1] * 7)],
)
def test_even_slices(n: int, parts: int, sizes: list[int]) -> None:
    from empathy_rl.sharding import even_slices

    items = list(range(n))
    shards = [items[s] for s in even_slices(n, parts)]
    assert [len(s) for s in shards] == sizes
    assert [x for s in shards for x in s] == items
    assert max(sizes) - min(sizes) <= 1


def test_even_slices_rejects_zero_parts() -> None:
    from empathy_rl.sharding import even_slices

    with pytest.raises(ValueError):
        even_slices(3, 0)
