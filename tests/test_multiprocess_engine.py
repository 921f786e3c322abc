"""vLLM's multiprocess engine (`rollout.engine_multiprocessing=true`, the GPU preset's setting) with
real weight sync: `collective_rpc` arguments cross to the engine process through msgpack there, so
this is the path where a dataclass bucket index used to arrive as a dict. A rollout pool with that
engine and a DeepSpeed learner group on local Ray (2 CPUs): after a training step and a verified
sync, the engine holds exactly the learner's bytes and their log-probs agree. Then the whole loop
(`GRPOTrainer.fit`, two steps) with that engine. Short on purpose: no warm start, two prompts."""

from __future__ import annotations

import json

import pytest
import ray
import torch

from empathy_rl.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def setup(tiny_model_dir, bundled_data_dir):
    from transformers import AutoTokenizer

    from empathy_rl.data import load_records
    from empathy_rl.driver import init_ray
    from empathy_rl.placement import Placement
    from empathy_rl.weight_sync import WeightSync
    from learner.group import LearnerGroup
    from rollout.pool import RolloutPool
    from rollout.prompts import PromptBuilder

    cfg = load_config(
        "configs/tiny-cpu.yaml",
        [
            f"model.path={tiny_model_dir}",
            "rollout.engine_multiprocessing=true",
            "rollout.num_workers=1",
            "learner.num_workers=1",
            "warmstart.run_sft=false",
            "algorithm.kl_beta=0",
            "sync.timeout_s=300",
            "model.max_response_len=24",
        ],
    )
    init_ray(cfg)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(tokenizer, cfg.model.max_prompt_len, style=cfg.rollout.system_prompt_style)
    prompts = builder.build_many(load_records(bundled_data_dir, "train")[:2])
    placement = Placement(cfg)
    learner = LearnerGroup(cfg, placement)
    learner.load_policy(str(tiny_model_dir), 1e-2, 0, with_reference=False)
    pool = RolloutPool(cfg, str(tiny_model_dir), placement)
    sync = WeightSync(cfg, learner, pool)
    yield cfg, tokenizer, prompts, placement, learner, pool, sync
    pool.shutdown()
    learner.shutdown()
    placement.remove()
    ray.shutdown()


def _gap(learner, tokenizer, rollout) -> float:
    """Largest |vLLM log-prob - learner log-prob| over the sampled response tokens."""
    from learner.batch import from_rollout

    batch = from_rollout(rollout, torch.zeros(len(rollout.candidates)), tokenizer.pad_token_id)
    learner_logp = learner.compute_logprobs(batch)
    return float((learner_logp - batch.rollout_logprobs)[batch.loss_mask].abs().max())


def test_sync_into_the_multiprocess_engine(setup):
    from learner.batch import from_rollout

    cfg, tokenizer, prompts, placement, learner, pool, sync = setup
    assert ray.get(pool.workers[0].placement_group_id.remote()) == placement.engine_groups[0].id.hex()
    rollout = pool.generate(prompts, seed=3)
    advantages = torch.tensor([1.0, -1.0] * (len(rollout.candidates) // 2))
    learner.train_step(from_rollout(rollout, advantages, tokenizer.pad_token_id))
    stale_gap = _gap(learner, tokenizer, pool.generate(prompts, seed=4))
    assert stale_gap > 1e-2, f"a training step should move log-probs (gap {stale_gap})"

    received = sync.push(1, verify=True)  # dict indexes and byte buffers through vLLM's msgpack
    assert received == [learner.weights_checksum()]
    assert pool.versions() == [1]
    fresh = pool.generate(prompts, seed=5)
    fresh_gap = _gap(learner, tokenizer, fresh)
    print(f"\nmultiprocess engine: log-prob gap stale {stale_gap:.4f} -> synced {fresh_gap:.2e}")
    assert fresh_gap < 1e-3
    assert {c.policy_version for c in fresh.candidates} == {1}


def test_sync_to_a_dead_engine_names_the_worker(setup):
    from empathy_rl.weight_sync import WeightSyncError

    cfg, tokenizer, prompts, placement, learner, pool, sync = setup
    ray.kill(pool.workers[0])
    with pytest.raises(WeightSyncError, match=r"weight sync \(object-store reload\) failed on rollout worker 0"):
        sync.push(2)


def test_grpo_loop_with_the_multiprocess_engine(tiny_model_dir, bundled_data_dir, tmp_path):
    """Two GRPO steps of the real loop with the multiprocess engine: after each step's sync the engine
    serves the learner's weights (log-prob gap < 1e-3, version 2 at the end).

    Resources are small on purpose (0.25 CPU each): run after the tests above, it joins their Ray
    cluster beside their still-reserved groups, with its own run-scoped names; run alone, it starts
    and stops its own cluster."""
    from empathy_rl.config import run_id
    from empathy_rl.driver import GRPOTrainer

    cfg = load_config(
        "configs/tiny-cpu.yaml",
        [
            f"model.path={tiny_model_dir}", f"data.prepared_dir={bundled_data_dir}", f"trainer.run_dir={tmp_path / 'run'}",
            "rollout.engine_multiprocessing=true", "rollout.num_workers=1", "learner.num_workers=1",
            "rollout.num_cpus_per_worker=0.25", "learner.num_cpus_per_worker=0.25",
            "warmstart.run_sft=false", "trainer.total_steps=2", "trainer.prompts_per_step=2", "trainer.eval_every=0",
            "reward.encoder=minilm", "reward.answer_threshold=0.1", "model.max_response_len=24", "sync.timeout_s=300",
            "logging.progress_bar=false", "logging.plots=false",
        ],
    )
    trainer = GRPOTrainer(cfg)
    try:
        trainer.fit()
        names = set(ray.util.list_named_actors())  # names in this namespace
        assert {f"{run_id(cfg)}-learner-0", f"{run_id(cfg)}-rollout-0"} <= names  # the run's actors carry its run id
        assert trainer.pool.versions() == [2]
    finally:
        trainer.shutdown()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["phase"] == "grpo"]
    print("\nmultiprocess loop: logprob_gap per step", [f"{r['train/logprob_gap']:.2e}" for r in steps])
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["train/logprob_gap"] < 1e-3 for r in steps), [r["train/logprob_gap"] for r in steps]
    assert [r["rollout/policy_version"] for r in steps] == [1.0, 2.0]
