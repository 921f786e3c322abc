"""Where a GRPO step's time goes on the tiny preset: medians from a run's metrics.jsonl.

Run a short training first (for example `make demo`, or
`empathy-rl grpo --config configs/tiny-cpu.yaml trainer.total_steps=20`), then:

    .venv/bin/python bench/grpo_step_timing.py runs/demo/metrics.jsonl

To compare `rollout.stream_rewards=true` with `false`, run the training twice (one run directory
each) and pass each run's metrics.jsonl; `--skip-first` leaves out step 1 (start-up effects).
"""

from __future__ import annotations

import json
import statistics
import sys

KEYS = (
    "time/generate_s", "time/reward_s", "time/train_s", "time/sync_s", "time/step_s", "rollout/response_len_mean", "train/tokens",
    # reward left after the last group was generated, and reward that ran during generation (rollout.stream_rewards)
    "timing/reward_tail_s", "timing/reward_overlap_s",
)


def main(path: str, skip_first: bool = False) -> None:
    steps = [r for r in map(json.loads, open(path, encoding="utf-8")) if r.get("phase") == "grpo"]
    steps = steps[1:] if skip_first else steps
    if not steps:
        sys.exit(f"{path}: no GRPO steps")
    print(f"| metric | median over {len(steps)} steps |")
    print("| --- | --- |")
    for key in KEYS:
        values = [r[key] for r in steps if key in r]  # runs from before a key existed lack it
        print(f"| {key} | {statistics.median(values):.3f} |" if values else f"| {key} | not logged |")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--skip-first"]
    main(args[0] if args else "runs/demo/metrics.jsonl", skip_first="--skip-first" in sys.argv[1:])
