"""The lean learner step: sorting and trimming micro-batches leaves the update unchanged, and entropy
over the vocabulary is computed only when the loss or a logging step needs it.

A plain torch Qwen3 of a few thousand parameters, built from a config (no checkpoint, no Ray, no
DeepSpeed), runs `learner.microbatch.run_micro_batches`, the learner actor's inner loop.
"""

from __future__ import annotations

import types

import pytest
import torch

from empathy_rl import grpo
from learner import microbatch
from learner.batch import from_sft
from learner.microbatch import ENTROPY_GRAD, ENTROPY_LOG, ENTROPY_OFF, entropy_mode, plan_micro_batches, run_micro_batches

VOCAB = 97


def _model() -> torch.nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=0,
    )
    return Qwen3ForCausalLM(cfg).float()


def _batch(n: int = 10):
    """Rows whose prompt and response lengths vary a lot, so the order of rows changes the padding."""
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, VOCAB, (int(torch.randint(3, 15, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    responses = [torch.randint(3, VOCAB, (int(torch.randint(1, 25, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    batch = from_sft(prompts, responses, pad_id=0)
    batch.advantages = torch.linspace(-1.5, 1.5, n)
    return batch


def _alg(aggregation: str, entropy_coeff: float = 0.0, kl_beta: float = 0.05):
    return types.SimpleNamespace(
        clip_low=0.2, clip_high=0.2, kl_beta=kl_beta, kl_kind="k3", aggregation=aggregation, entropy_coeff=entropy_coeff
    )


def _loss_and_grads(model, batch, chunks, alg, ref_all, entropy=ENTROPY_OFF):
    model.zero_grad()
    denom = microbatch.mini_batch_denominator(batch, alg.aggregation)
    sums = run_micro_batches(
        model, batch, chunks, alg=alg, temperature=1.0, device=torch.device("cpu"), denom=denom, world_size=1,
        entropy=entropy, old_all=None, ref_all=ref_all, backward=lambda loss: loss.backward(),
    )
    return sums, torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]).clone()


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_sorted_trimmed_micro_batches_give_the_same_loss_and_gradients(aggregation):
    model, batch = _model(), _batch()
    lengths = microbatch.sequence_lengths(batch)
    with torch.no_grad():  # a reference that differs from the policy, so the KL term has a gradient
        ref_all = microbatch.forward_logprobs(model, batch, 1.0, torch.device("cpu"))[0] + 0.1
    alg = _alg(aggregation)
    before = plan_micro_batches(lengths, range(len(batch)), 3, sort=False)  # the old contiguous grouping
    after = plan_micro_batches(lengths, range(len(batch)), 3)
    assert before != after and len(before) == len(after)
    assert microbatch.padding_share(batch, after) < microbatch.padding_share(batch, before)
    whole, g_whole = _loss_and_grads(model, batch, [list(range(len(batch)))], alg, ref_all)
    old, g_old = _loss_and_grads(model, batch, before, alg, ref_all)
    new, g_new = _loss_and_grads(model, batch, after, alg, ref_all)
    assert new["weighted_loss"] == pytest.approx(old["weighted_loss"], abs=1e-6)
    assert new["weighted_loss"] == pytest.approx(whole["weighted_loss"], abs=1e-6)
    assert new["tokens"] == old["tokens"] == batch.num_loss_tokens()
    scale = float(g_old.abs().max())
    assert scale > 0
    torch.testing.assert_close(g_new, g_old, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(g_new, g_whole, rtol=1e-5, atol=1e-6 * scale)
    # The check can fail: dropping the per-micro-batch weight changes the gradient far beyond the tolerance.
    model.zero_grad()
    for chunk in after:
        part = batch.select(chunk)
        logp, _ = microbatch.forward_logprobs(model, part, 1.0, torch.device("cpu"))
        w = part.loss_mask.shape[1]
        loss, _ = grpo.policy_loss(logp, logp.detach(), ref_all[chunk][:, :w], part.advantages, part.loss_mask, beta=0.05, aggregation=aggregation)
        loss.backward()
    wrong = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    assert not torch.allclose(wrong, g_old, rtol=1e-5, atol=1e-6 * scale)


def test_plan_keeps_rows_and_micro_batch_count():
    lengths = [5, 9, 2, 9, 7, 1, 3]
    plan = plan_micro_batches(lengths, range(1, 7), 4)
    assert plan == [[1, 3, 4, 6], [2, 5]]  # longest first, ties in row order, rows outside the range untouched
    assert plan_micro_batches(lengths, range(7), 3, sort=False) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="micro-batch size"):
        plan_micro_batches(lengths, range(7), 0)


def test_entropy_mode_follows_coefficient_and_logging_interval():
    assert entropy_mode(0.01, 0, 7) == ENTROPY_GRAD
    assert [entropy_mode(0.0, 3, s) for s in range(1, 8)] == [ENTROPY_LOG, ENTROPY_OFF, ENTROPY_OFF, ENTROPY_LOG, ENTROPY_OFF, ENTROPY_OFF, ENTROPY_LOG]
    assert {entropy_mode(0.0, 0, s) for s in range(1, 20)} == {ENTROPY_OFF}


def test_entropy_is_skipped_when_off_and_logged_without_gradient(monkeypatch):
    calls = []
    real = grpo.token_entropy_from_logits
    monkeypatch.setattr(grpo, "token_entropy_from_logits", lambda logits: calls.append(logits.requires_grad) or real(logits))
    model, batch = _model(), _batch(6)
    chunks = plan_micro_batches(microbatch.sequence_lengths(batch), range(len(batch)), 4)
    alg = _alg("seq-mean-token-mean", kl_beta=0.0)
    off, g_off = _loss_and_grads(model, batch, chunks, alg, None, ENTROPY_OFF)
    assert calls == [] and off["entropy_passes"] == 0 and "entropy" not in off
    logged, g_logged = _loss_and_grads(model, batch, chunks, alg, None, ENTROPY_LOG)
    assert calls == [False, False] and logged["entropy_passes"] == 2 and logged["entropy"] > 0
    torch.testing.assert_close(g_logged, g_off)  # logging entropy does not touch the update
    calls.clear()
    _, g_grad = _loss_and_grads(model, batch, chunks, _alg("seq-mean-token-mean", entropy_coeff=0.1, kl_beta=0.0), None, ENTROPY_GRAD)
    assert calls == [True, True] and not torch.allclose(g_grad, g_off)  # in the loss: with gradient, and it moves the update


def test_logits_on_loss_positions_only_equal_the_full_forward():
    """Log-probs from lm_head on the loss positions equal log_softmax of the model's full logits there."""
    model, batch = _model(), _batch(5)
    with torch.no_grad():
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        expected = torch.log_softmax(full / 0.7, -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
        expected_ent = grpo.token_entropy_from_logits(full)
        logp, ent = microbatch.forward_logprobs(model, batch, 0.7, torch.device("cpu"), ENTROPY_LOG)
    mask = batch.loss_mask
    torch.testing.assert_close(logp[mask], expected[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(ent[mask], expected_ent[mask], rtol=0, atol=1e-5)
    assert (logp[~mask] == 0).all() and (ent[~mask] == 0).all()
