"""Start-up of a GRPO run on the tiny preset, until step 1 could start: services started together
(now) against one after another (as before), alternated in one invocation.

    .venv/bin/python bench/startup.py                 # 3 repeats of each mode
    .venv/bin/python bench/startup.py --repeats 5 --write-docs

Each run is a fresh process (`--child`), as a user's `empathy-rl grpo` is: Ray starts, then
`GRPOTrainer(cfg)` (reward app, placement groups, learner group with policy and reference, vLLM
rollout pool) and `setup()` (weight sync), then it shuts down. The per-component seconds come from
the run's `{"phase": "startup"}` record in metrics.jsonl; "to step 1" is from the start of the
process's `GRPOTrainer(...)` call (Ray start-up included) to the end of `setup()`.

`sequential` puts the previous order back (`ConcurrentStart.start` runs each stage at once in the
calling thread: reward, then placement, learner, rollout), so both modes run the same code
otherwise. DeepSpeed's CPU ops and vLLM's caches live under .cache (`TORCH_EXTENSIONS_DIR`,
`VLLM_CACHE_ROOT`, set by the Makefile and by bench/_common.py), so every run here is a warm-cache
run; the first run on a fresh machine also builds them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

KEYS = ("reward_s", "learner_s", "rollout_s", "total_s", "to_step1_s")


def child(mode: str, run_dir: str, overrides: list[str]) -> None:
    from empathy_rl.config import load_config
    from empathy_rl.driver import GRPOTrainer

    if mode == "sequential":
        from empathy_rl import startup

        def run_now(self, name, fn, timeout_s, key):  # the previous behaviour: each stage to the end, in order
            startup.ConcurrentStart._orig_start(self, name, fn, timeout_s, key)
            self.stages[-1].done.wait(timeout_s)

        startup.ConcurrentStart._orig_start = startup.ConcurrentStart.start
        startup.ConcurrentStart.start = run_now
    cfg = load_config("configs/tiny-cpu.yaml", [f"trainer.run_dir={run_dir}", "logging.progress_bar=false", "logging.plots=false", *overrides])
    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        to_step1 = time.perf_counter() - t0
    finally:
        trainer.shutdown()
    record = [r for r in trainer.run.read_jsonl("metrics.jsonl") if r.get("phase") == "startup"][-1]
    print("STARTUP " + json.dumps({**{k: record[k] for k in KEYS[:4]}, "to_step1_s": to_step1}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["concurrent", "sequential"], help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value) for every run")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.run_dir, args.overrides)
        return
    overrides = [f"model.path={_common.tiny_model_path()}", "warmstart.run_sft=false", *args.overrides]
    load_start = _common.print_load("start")
    results: dict[str, list[dict]] = {"concurrent": [], "sequential": []}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for repeat in range(args.repeats):
            got = {}
            for mode in ("concurrent", "sequential") if repeat % 2 == 0 else ("sequential", "concurrent"):
                run_dir = Path(tmp) / f"{mode}-{repeat}"
                cmd = [sys.executable, __file__, "--child", mode, "--run-dir", str(run_dir), *overrides]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=_common.REPO, timeout=1800)
                lines = [line for line in done.stdout.splitlines() if line.startswith("STARTUP ")]
                if done.returncode != 0 or not lines:
                    sys.exit(f"{mode} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
                got[mode] = json.loads(lines[-1][len("STARTUP ") :])
                results[mode].append(got[mode])
                print(f"repeat {repeat} {mode}: " + ", ".join(f"{k} {got[mode][k]:.1f}" for k in KEYS), flush=True)
            ratios.append(got["concurrent"]["to_step1_s"] / got["sequential"]["to_step1_s"])
    load_end = _common.print_load("end")
    lines = [
        f"| mode | reward | learner (group + policy + reference) | rollout (vLLM) | services | to step 1 (Ray start included) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode, runs in results.items():
        lines.append(f"| {mode} | " + " | ".join(_common.spread([r[k] for r in runs], "{:.1f}") for k in KEYS) + " |")
    lines += ["", f"Concurrent / sequential time to step 1, per repeat: {_common.spread(ratios, '{:.2f}')}."]
    table = "\n".join(lines)
    note = "Seconds, median (min-max, n); every run a fresh process with warm caches."
    _common.publish(__file__, "startup", note, table, load_start, load_end, args.write_docs)


if __name__ == "__main__":
    main()
