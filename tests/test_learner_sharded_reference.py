"""The KL reference sharded by ZeRO-3 inference, and the bucket export built one bucket at a time.

DeepSpeed gloo at world size 1, in process (as tests/test_learner.py). At one rank ZeRO-3 shards
nothing away, but the code path is the one that runs on N GPUs: the reference goes through a
second, optimizer-less `deepspeed.initialize` with a stage-3 config, parameters partitioned at load
time, and every forward gathers them; the export gathers one module at a time and packs buckets
from those gathers."""

from __future__ import annotations

import socket

import pytest
import torch

from empathy_rl.config import load_config
from empathy_rl.weight_buckets import unpack_bucket
from learner.actor import LearnerWorker
from learner.batch import TrainBatch, from_sft

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(model_dir, *overrides: str) -> LearnerWorker:
    cfg = load_config("configs/tiny-cpu.yaml", [f"model.path={model_dir}", "sync.bucket_size_mb=1", *overrides])
    worker = LearnerWorker(cfg, rank=0, world_size=1)
    worker.init_distributed("127.0.0.1", _free_port())  # a no-op after the first call in this process
    worker.load_policy(str(model_dir), lr=1e-2, warmup_steps=0, with_reference=True)
    return worker


def _batch() -> TrainBatch:
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(10, 500, (6,), generator=g).tolist() for _ in range(4)]
    responses = [torch.randint(10, 500, (int(torch.randint(3, 10, (1,), generator=g)),), generator=g).tolist() for _ in range(4)]
    return from_sft(prompts, responses, pad_id=0)


def test_sharded_reference_gives_the_plain_reference_logprobs(tiny_model_dir):
    batch = _batch()
    plain = _worker(tiny_model_dir, "learner.ref_zero_stage=0")
    assert plain.ref_engine is None
    expected = plain._logprobs_nograd(batch, reference=True)
    sharded = _worker(tiny_model_dir, "learner.ref_zero_stage=3")
    assert sharded.ref_engine is not None
    # partitioned at load time: the module's own parameters are ZeRO-3 placeholders
    assert all(hasattr(p, "ds_id") and p.numel() == 0 for p in sharded.ref_model.parameters())
    got = sharded._logprobs_nograd(batch, reference=True)
    assert (expected[batch.loss_mask] < 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # and the sharded reference serves the KL term of a real step: KL 0 at the start (policy == reference)
    batch.advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert sharded.train_step(batch)["train/kl"] == pytest.approx(0.0, abs=1e-6)


def test_zero3_bucket_export_equals_zero2(tiny_model_dir):
    """Same model, same plan: ZeRO-3's one-bucket-at-a-time export gives byte-identical buckets."""
    exports = {}
    for stage in (2, 3):
        worker = _worker(tiny_model_dir, f"learner.zero_stage={stage}", "algorithm.kl_beta=0")
        exports[stage] = [(index, buffer.clone()) for index, buffer in worker.iter_buckets("cpu")]
        if stage == 3:
            storages = {buffer.untyped_storage().data_ptr() for _, buffer in worker.iter_buckets("cpu")}
    assert len(exports[2]) > 1, "the test needs several buckets"
    assert [i for i, _ in exports[2]] == [i for i, _ in exports[3]]
    for (index, b2), (_, b3) in zip(exports[2], exports[3]):
        assert torch.equal(b2, b3), [m.name for m in index.tensors]
    names = [n for index, buffer in exports[3] for n, _ in unpack_bucket(index, buffer)]
    assert "lm_head.weight" in names and len(names) == len(set(names))
    # rank 0 packs every bucket into one scratch buffer (copying each gathered tensor straight into
    # it), not one buffer per bucket and never the whole state dict; it is reused by the next sync too
    assert len(storages) == 1, f"{len(storages)} packing buffers for {len(exports[3])} buckets"
    assert storages == {buffer.untyped_storage().data_ptr() for _, buffer in worker.iter_buckets("cpu")}
