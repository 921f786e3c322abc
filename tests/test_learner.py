"""The learner with real DeepSpeed (gloo, CPU), in-process: no Ray needed for one rank.

These pin down the parts of the update that a wrong sign or a wrong normalisation would break
silently: micro-batch accumulation equals one big batch, the update follows the advantages, LoRA
exports merged weights under the base model's names, and ZeRO-3 exports the same full weights.
"""

from __future__ import annotations

import socket

import pytest
import torch

from empathy_rl.config import load_config
from learner.actor import LearnerWorker
from learner.batch import TrainBatch, from_sft

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(model_dir, *overrides: str, with_reference: bool = True, lr: float = 1e-2) -> LearnerWorker:
    cfg = load_config("configs/tiny-cpu.yaml", [f"model.path={model_dir}", *overrides])
    worker = LearnerWorker(cfg, rank=0, world_size=1)
    worker.init_distributed("127.0.0.1", _free_port())  # a no-op after the first call in this process
    worker.load_policy(str(model_dir), lr=lr, warmup_steps=0, with_reference=with_reference)
    return worker


def _batch(advantages: list[float]) -> TrainBatch:
    g = torch.Generator().manual_seed(0)
    n = len(advantages)
    prompts = [torch.randint(10, 500, (int(torch.randint(4, 9, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    responses = [torch.randint(10, 500, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    batch = from_sft(prompts, responses, pad_id=0)
    batch.advantages = torch.tensor(advantages)
    return batch


def _weights(worker: LearnerWorker) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in worker._named_weights()}


def _capture_gradients(worker: LearnerWorker) -> list[torch.Tensor]:
    """Gradients the wrapped torch optimizer receives at its next step (after accumulation and
    DeepSpeed's averaging, before Adam): ZeRO-2 hands it flat fp32 partitions whose layout depends
    only on the model, so two engines over the same model can be compared element by element."""
    captured: list[torch.Tensor] = []
    base = getattr(worker.optimizer, "optimizer", worker.optimizer)

    def hook(optimizer, args, kwargs):
        captured.extend(p.grad.detach().clone() for group in optimizer.param_groups for p in group["params"] if p.grad is not None)

    base.register_step_pre_hook(hook)
    return captured


def test_micro_batch_accumulation_equals_one_big_batch(tiny_model_dir):
    """One optimizer step over 8 sequences, as one micro-batch of 8 and as micro-batches of 3, 3, 2:
    the gradient that reaches the optimizer must be the same. A wrong per-micro-batch weight or a
    scale error changes it by far more than the tolerance, which covers float32 summation order only
    (rtol 1e-4 and atol 1e-5 of the largest entry; seen differences are ~1e-7 relative, and differ
    between CPU models). Parameters after Adam are not compared: g / (|g| + eps) blows that order
    noise in near-zero gradients up to the size of the step."""
    batch = _batch([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0, 1.5])
    grads, norms = [], []
    for micro in (8, 3):
        worker = _worker(tiny_model_dir, f"learner.micro_batch_size={micro}", "trainer.prompts_per_step=2", "learner.max_grad_norm=1000")
        captured = _capture_gradients(worker)
        norms.append(worker.train_step(batch)["train/grad_norm"])
        assert worker.updates == 1 and captured, "the optimizer should step exactly once, after the last micro-batch"
        grads.append(torch.cat([g.reshape(-1) for g in captured]))
    assert grads[0].shape == grads[1].shape and grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5 * float(grads[0].abs().max()))
    assert norms[1] == pytest.approx(norms[0], rel=1e-4) and norms[0] > 0
    # The same check fails for a wrong accumulation: half the weight on the last micro-batch.
    assert not torch.allclose(grads[0] * 0.5, grads[1], rtol=1e-4, atol=1e-5 * float(grads[0].abs().max()))


def test_update_raises_logprobs_of_positive_advantage_sequences(tiny_model_dir):
    worker = _worker(tiny_model_dir, "algorithm.kl_beta=0.0", with_reference=False, lr=1e-3)
    batch = _batch([1.0, -1.0, 1.0, -1.0])
    before = worker.compute_logprobs(batch)
    metrics = worker.train_step(batch)
    after = worker.compute_logprobs(batch)
    change = ((after - before) * batch.loss_mask).sum(-1) / batch.loss_mask.sum(-1)
    assert metrics["train/grad_norm"] > 0 and metrics["train/ratio_mean"] == pytest.approx(1.0)
    assert (change[batch.advantages > 0] > 0).all() and (change[batch.advantages < 0] < 0).all()


def test_lora_reference_is_the_base_model_with_adapters_off(tiny_model_dir):
    """With LoRA the KL reference is the same network with its adapters switched off: it must equal
    the base checkpoint before and after training, while the policy moves away from it."""
    worker = _worker(tiny_model_dir, "model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "algorithm.kl_beta=0.1", lr=5e-2)
    assert worker.ref_model is None and worker.use_lora_reference  # no second copy of the weights
    batch = _batch([1.0, -1.0, 1.0, -1.0])
    ref_before = worker._logprobs_nograd(batch, reference=True)
    torch.testing.assert_close(worker.compute_logprobs(batch), ref_before)  # LoRA B starts at 0
    first = worker.train_step(batch)
    assert first["train/kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at the first forward
    ref_after = worker._logprobs_nograd(batch, reference=True)
    policy_after = worker.compute_logprobs(batch)
    torch.testing.assert_close(ref_after, ref_before)  # the reference does not train
    moved = ((policy_after - ref_after).abs() * batch.loss_mask).max()
    assert moved > 1e-3, f"the policy should move away from the reference (max gap {moved})"
    assert worker.train_step(batch)["train/kl"] > 1e-6  # and the KL term sees it


def test_lora_exports_merged_weights_under_base_names(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    worker = _worker(tiny_model_dir, "model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", lr=5e-2)
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    worker.train_step(_batch([1.0, -1.0, 1.0, -1.0]))
    merged = _weights(worker)
    assert set(merged) == set(base) | {"lm_head.weight"}
    moved = {n for n in merged if not torch.equal(merged[n], base.get(n, base["model.embed_tokens.weight"]).detach())}
    assert moved and all(n.endswith("_proj.weight") for n in moved), moved  # only adapted projections change
    layer = worker.engine.module.get_base_model().model.layers[0].self_attn.q_proj
    expected = layer.base_layer.weight + layer.get_delta_weight("default")
    torch.testing.assert_close(merged["model.layers.0.self_attn.q_proj.weight"], expected.detach())


def test_zero3_exports_the_same_full_weights(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    worker = _worker(tiny_model_dir, "learner.zero_stage=3", "algorithm.kl_beta=0.0", with_reference=False)
    exported = _weights(worker)
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    for name, param in base.items():
        torch.testing.assert_close(exported[name], param.detach(), msg=name)
    assert worker.train_step(_batch([1.0, -1.0, 1.0, -1.0]))["train/grad_norm"] > 0  # and it trains
