"""Exact resume after SIGKILL, with the real stack (Ray, Serve, vLLM, DeepSpeed) in subprocesses.

`empathy-rl grpo` runs with a checkpoint every step and is killed (SIGKILL, its whole process group)
as soon as a checkpoint before the last step is complete, in the middle of the run. `--resume auto`
then continues with two rollout workers instead of one. The steps continue without a gap, every
step's record ids equal those of an uninterrupted run (the prompt order is a function of the seed
and the records only, so the uninterrupted sequence is `PromptLoader` drawn straight through), the
learner reports the optimizer steps it loaded from DeepSpeed's state, and `keep_last` pruned the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = 4
PROMPTS = 2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _args(tiny_model_dir, bundled_data_dir, run_dir, *extra):
    return [
        sys.executable, "-m", "empathy_rl.cli", "grpo", "--config", str(REPO / "configs" / "tiny-cpu.yaml"),
        f"model.path={tiny_model_dir}", f"data.prepared_dir={bundled_data_dir}", f"trainer.run_dir={run_dir}",
        "reward.encoder=minilm", "reward.answer_threshold=0.1",
        f"trainer.total_steps={STEPS}", f"trainer.prompts_per_step={PROMPTS}", "warmstart.run_sft=false", "trainer.eval_every=0",
        "checkpoint.save_every=1", "checkpoint.keep_last=2", "logging.progress_bar=false", "cluster.num_cpus=2", *extra,
    ]


def _latest_step(run_dir: Path) -> int:
    latest = run_dir / "checkpoints" / "latest"
    if not latest.is_file():
        return 0
    state = run_dir / "checkpoints" / latest.read_text().strip() / "trainer_state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def test_sigkill_then_resume_auto_continues_exactly(tiny_model_dir, bundled_data_dir, tmp_path):
    from empathy_rl.data import load_records
    from empathy_rl.prompt_loader import PromptLoader

    run_dir = tmp_path / "run"
    log_first = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_args(tiny_model_dir, bundled_data_dir, run_dir), cwd=REPO, stdout=log_first, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while proc.poll() is None and _latest_step(run_dir) < 1:
            time.sleep(0.2)
        assert proc.poll() is None, f"the first run ended before its first checkpoint:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started (its local Ray cluster)
        proc.wait()
    killed_at = _latest_step(run_dir)
    assert 1 <= killed_at < STEPS, f"killed after step {killed_at}: not in the middle of the run"

    second = subprocess.run(
        _args(tiny_model_dir, bundled_data_dir, run_dir, "rollout.num_workers=2", "rollout.num_cpus_per_worker=0.5") + ["--resume", "auto"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    assert f"resuming from {run_dir / 'checkpoints'}" in second.stderr
    assert f"({killed_at} optimizer steps)" in second.stderr  # DeepSpeed state loaded: one optimizer step per GRPO step

    prompts = [json.loads(line) for line in (run_dir / "prompts.jsonl").read_text().splitlines()]
    assert [p["step"] for p in prompts] == list(range(1, STEPS + 1))
    loader = PromptLoader(load_records(bundled_data_dir, "train"), seed=0)  # trainer.seed 0 + data.shuffle_seed 0
    assert [p["record_ids"] for p in prompts] == [[r.id for r in loader.next_batch(PROMPTS)] for _ in range(STEPS)]

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    grpo = [m for m in metrics if m["phase"] == "grpo"]
    assert [m["step"] for m in grpo] == list(range(1, STEPS + 1))
    assert [m["rollout/policy_version"] for m in grpo] == [float(s) for s in range(1, STEPS + 1)]

    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "latest").read_text() == f"step-{STEPS:06d}"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", f"step-{STEPS - 1:06d}", f"step-{STEPS:06d}"]
    state = json.loads((checkpoints / f"step-{STEPS:06d}" / "trainer_state.json").read_text())
    assert state["loader"] == loader.state() and state["policy_version"] == STEPS and state["rollout_workers"] == 2
    assert (checkpoints / f"step-{STEPS:06d}" / "rng" / "rank-0.pt").is_file()
    assert (run_dir / f"config.resume-step-{killed_at}.yaml").is_file()
