"""`rollout.stream_rewards` on the real stack (vLLM rollout actor, Ray Serve reward, DeepSpeed learner):
a streamed rollout gives the same candidates, rewards and advantages as generating first and scoring
after, and in a real step the first reward request leaves before the last group is generated.

`rollout.max_num_seqs=8` makes the engine decode 2 of the 6 groups at a time, so groups finish in
waves even when every answer of the untrained tiny model runs to the length limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from empathy_rl.config import load_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PROMPTS = 6


def test_streamed_rewards_match_unstreamed_and_overlap_generation(tiny_model_dir, bundled_data_dir, tmp_path):
    from empathy_rl import grpo
    from empathy_rl.driver import GRPOTrainer, ScoredRollout

    run = tmp_path / "run"
    cfg = load_config(
        REPO / "configs" / "tiny-cpu.yaml",
        [
            f"model.path={tiny_model_dir}", f"data.prepared_dir={bundled_data_dir}", f"trainer.run_dir={run}",
            "reward.encoder=minilm", "reward.answer_threshold=0.1", "warmstart.run_sft=false", "trainer.eval_every=0",
            "trainer.total_steps=1", f"trainer.prompts_per_step={PROMPTS}", "model.max_response_len=48",
            "rollout.stream_rewards=true", "rollout.max_num_seqs=8", "logging.progress_bar=false", "logging.plots=false",
        ],
    )
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        prompts = trainer.prompts.build_many(trainer.loader.records[:PROMPTS])
        plain = trainer.pool.generate(prompts, seed=777)
        plain_scores, _ = trainer._score(plain)
        streamed = trainer._generate_streamed(prompts, seed=777)
        assert isinstance(streamed, ScoredRollout)
        assert [(c.prompt_uid, c.token_ids, c.text) for c in streamed.rollout.candidates] == [
            (c.prompt_uid, c.token_ids, c.text) for c in plain.candidates
        ]
        assert [s.total for s in streamed.scores] == [s.total for s in plain_scores]
        assert [s.format for s in streamed.scores] == [s.format for s in plain_scores]
        assert [s.similarity for s in streamed.scores] == pytest.approx([s.similarity for s in plain_scores], abs=1e-5)
        estimator = grpo.get_advantage_estimator(cfg.algorithm.advantage)

        def advantages(scores):
            rewards = torch.tensor([s.total for s in scores], dtype=torch.float32)
            return estimator(rewards, cfg.rollout.group_size, normalize_std=cfg.algorithm.normalize_std, eps=cfg.algorithm.adv_eps)

        assert torch.equal(advantages(streamed.scores), advantages(plain_scores))
        t = streamed.timing
        assert t["timing/first_reward_request_s"] < t["timing/generation_end_s"], t
        summary = trainer.fit()  # one real streamed step through the rollout source
    finally:
        trainer.shutdown()
    step = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["phase"] == "grpo"]
    assert len(step) == 1
    m = step[0]
    assert m["rollout/candidates"] == PROMPTS * cfg.rollout.group_size
    assert m["timing/first_reward_request_s"] < m["timing/generation_end_s"], m
    assert m["timing/reward_overlap_s"] > 0.0
    assert m["timing/reward_tail_s"] == pytest.approx(max(m["timing/reward_end_s"] - m["timing/generation_end_s"], 0.0))
    assert summary["last_step"]["reward/mean"] == m["reward/mean"]
