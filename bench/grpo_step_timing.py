"""Where a GRPO step's time goes on the tiny preset: medians from a run's metrics.jsonl.

Run a short training first (for example `make demo`, or
`empathy-rl grpo --config configs/tiny-cpu.yaml trainer.total_steps=20`), then:

    .venv/bin/python bench/grpo_step_timing.py runs/demo/metrics.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys

KEYS = ("time/generate_s", "time/reward_s", "time/train_s", "time/sync_s", "time/step_s", "rollout/response_len_mean", "train/tokens")


def main(path: str) -> None:
    steps = [r for r in map(json.loads, open(path, encoding="utf-8")) if r.get("phase") == "grpo"]
    if not steps:
        sys.exit(f"{path}: no GRPO steps")
    print(f"| metric | median over {len(steps)} steps |")
    print("| --- | --- |")
    for key in KEYS:
        print(f"| {key} | {statistics.median(r[key] for r in steps):.3f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/metrics.jsonl")
