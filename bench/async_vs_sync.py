"""Step time of `trainer.mode=sync` against `trainer.mode=async` (one-step off-policy) on one config.

Each repeat runs `empathy-rl grpo` once per mode in a fresh run directory (same config, seed and
prompts), alternating the modes so that a change in machine load hits both; the first step of each
run is left out (start-up effects, and in async mode nothing overlaps it). Prints, per mode, the
median `time/step_s` over all kept steps with its spread (min, quartiles, max), the median of each
phase, and the async/sync ratio of the medians. Defaults are small (tiny preset, 6 steps, 2 repeats):

    .venv/bin/python bench/async_vs_sync.py --workdir /tmp/bench-async \\
        model.path=runs/tiny-model data.prepared_dir=runs/data/bundled
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("time/generate_s", "time/reward_s", "time/train_s", "time/sync_s")


def run_once(config: str, mode: str, run_dir: Path, steps: int, prompts: int, overrides: list[str]) -> list[dict]:
    cmd = [
        sys.executable, "-m", "empathy_rl.cli", "grpo", "--config", config, f"trainer.run_dir={run_dir}", f"trainer.mode={mode}",
        f"trainer.total_steps={steps}", f"trainer.prompts_per_step={prompts}", "warmstart.run_sft=false", "trainer.eval_every=0",
        "logging.progress_bar=false", "logging.plots=false", *overrides,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{mode} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["phase"] == "grpo"]


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, q1 {q[0]:.2f}, q3 {q[2]:.2f}, max {max(values):.2f}; n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny-cpu.yaml")
    parser.add_argument("--workdir", required=True, help="fresh run directories are made under it")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=8, help="trainer.prompts_per_step")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to both modes")
    args = parser.parse_args()
    if args.steps < 2:
        sys.exit("--steps must be >= 2 (the first step of each run is left out)")
    kept: dict[str, list[dict]] = {"sync": [], "async": []}
    walls: dict[str, list[float]] = {"sync": [], "async": []}
    for repeat in range(args.repeats):
        for mode in ("sync", "async") if repeat % 2 == 0 else ("async", "sync"):
            run_dir = Path(args.workdir) / f"{mode}-{repeat}-{int(time.time())}"
            steps = run_once(args.config, mode, run_dir, args.steps, args.prompts, args.overrides)
            lags = [s["rollout/policy_lag"] for s in steps]
            print(f"repeat {repeat} {mode}: step_s {[round(s['time/step_s'], 2) for s in steps]}, policy lag {lags}", flush=True)
            kept[mode] += steps[1:]
            walls[mode].append(sum(s["time/step_s"] for s in steps[1:]))
    print(f"\n{args.repeats} repeat(s) x {args.steps} steps x {args.prompts} prompts, first step of each run left out")
    for mode, steps in kept.items():
        print(f"{mode:5s} time/step_s: {spread([s['time/step_s'] for s in steps])}")
        print("      phases (median): " + ", ".join(f"{k.split('/')[1]} {statistics.median(s[k] for s in steps):.2f}" for k in PHASES))
    ratio = statistics.median(s["time/step_s"] for s in kept["async"]) / statistics.median(s["time/step_s"] for s in kept["sync"])
    print(f"async / sync median step time: {ratio:.2f}")


if __name__ == "__main__":
    main()
