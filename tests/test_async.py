"""One-step off-policy mode (`trainer.mode=async`) on the real stack: step t+1 is generated while step t
trains, every trained batch is exactly one policy version behind from the second step on, prompts
are drawn in the same order as a sync run, and a checkpoint holds the cursor of its own step (the
loader is a batch ahead while a prefetch is in flight)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy_rl.config import load_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
STEPS, PROMPTS = 3, 2


def test_async_mode_trains_one_version_behind_and_checkpoints_its_own_cursor(tiny_model_dir, bundled_data_dir, tmp_path):
    from empathy_rl.data import load_records
    from empathy_rl.driver import GRPOTrainer
    from empathy_rl.prompt_loader import PromptLoader

    run = tmp_path / "run"
    cfg = load_config(
        REPO / "configs" / "tiny-cpu.yaml",
        [
            f"model.path={tiny_model_dir}", f"data.prepared_dir={bundled_data_dir}", f"trainer.run_dir={run}",
            "reward.encoder=minilm", "reward.answer_threshold=0.1", "warmstart.run_sft=false", "trainer.eval_every=0",
            f"trainer.total_steps={STEPS}", f"trainer.prompts_per_step={PROMPTS}", "trainer.mode=async",
            "checkpoint.save_every=1", "checkpoint.keep_last=3", "logging.progress_bar=false",
        ],
    )
    trainer = GRPOTrainer(cfg)
    try:
        summary = trainer.fit()
    finally:
        trainer.shutdown()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if m["phase"] == "grpo"]
    assert [m["rollout/policy_version"] for m in steps] == [1.0, 2.0, 3.0]
    assert [m["rollout/policy_lag"] for m in steps] == [0.0, 1.0, 1.0]
    assert all(m["rollout/candidates"] == PROMPTS * cfg.rollout.group_size for m in steps)
    loader = PromptLoader(load_records(bundled_data_dir, "train"), seed=0)
    expected = [[r.id for r in loader.next_batch(PROMPTS)] for _ in range(STEPS)]
    assert [json.loads(line)["record_ids"] for line in (run / "prompts.jsonl").read_text().splitlines()] == expected
    for step in range(1, STEPS + 1):  # while step t+1 was prefetched, step t's checkpoint kept step t's cursor
        state = json.loads((run / "checkpoints" / f"step-{step:06d}" / "trainer_state.json").read_text())
        assert state["loader"] == {"epoch": 0, "position": step * PROMPTS}
    assert summary["last_step"]["rollout/policy_lag"] == 1.0
