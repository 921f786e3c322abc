"""GRPO step time against `rollout.num_workers` and prompts per step, and a fitted step-time model.

    .venv/bin/python bench/scaling.py                       # workers 1,2 x prompts 8,16, 8 steps each
    .venv/bin/python bench/scaling.py --steps 3 --workers 1 --prompts 8

Each grid point is one `empathy-rl grpo` run (a subprocess, fresh run directory, the tiny preset
plus overrides) with `rollout.num_workers` and `trainer.prompts_per_step` set; the first step of
each run is left out (start-up effects). The runs start from the SFT policy (`--policy`, default
runs/sft): the randomly initialised tiny model runs every answer to the token limit, the SFT
policy gives the preset's real answer lengths. With `--repeats` above 1 the grid is run again in
reverse order, so that a change in machine load hits every point. Per point the script prints the
median step time with its spread over the kept steps, the median of each phase (metrics.jsonl:
`time/generate_s`, `time/reward_s`, `time/train_s`, `time/sync_s`) and completions per second.

Then it fits the step-time model of docs/benchmarks.md to the measured medians (least squares,
one small fit per phase) and prints predicted against measured step time for every point, both
in-sample and leave-one-out (each point predicted by constants fitted to the other points):

    generate = g0 + g_tok * response_tokens / rollout_workers
    reward   = r0 + r_item * completions
    train    = t0 + t_tok * response_tokens            (one learner rank)
    sync     = s_call * (learner_ranks + rollout_workers)
    step     = generate + reward + train + sync + other (sync mode; `other` = median remainder)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from empathy_rl.jsonl import iter_jsonl_lines  # noqa: E402

PHASES = ("time/generate_s", "time/reward_s", "time/train_s", "time/sync_s")
REQUIRED = (*PHASES, "time/step_s", "rollout/tokens", "rollout/candidates")


@dataclass(frozen=True)
class Point:
    """The medians of one grid point's kept steps (one or more runs)."""

    workers: int
    prompts: int
    learners: int
    steps: tuple[float, ...]  # time/step_s of every kept step, for the spread
    step_s: float
    generate_s: float
    reward_s: float
    train_s: float
    sync_s: float
    tokens: float  # generated (= trained) response tokens per step
    completions: float  # candidates per step (prompts x G)
    completions_per_s: float

    @property
    def other_s(self) -> float:
        """Step time the four phases do not cover (batch assembly, metrics, logging)."""
        return self.step_s - self.generate_s - self.reward_s - self.train_s - self.sync_s


@dataclass(frozen=True)
class Constants:
    """The fitted step-time model (seconds; see the module docstring)."""

    g0: float
    g_tok: float
    r0: float
    r_item: float
    t0: float
    t_tok: float
    s_call: float
    other: float


def grpo_rows(lines: Iterable[str], source: str, skip_first: int = 1) -> list[dict]:
    """The GRPO step records of a metrics.jsonl, without the first `skip_first` steps.

    A step record missing one of the timing keys is an error naming the file and line: the model
    needs every phase of every step.
    """
    rows = []
    for number, record in iter_jsonl_lines(lines, source, ValueError):
        if not isinstance(record, dict) or record.get("phase") != "grpo":
            continue
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise ValueError(f"{source}:{number}: GRPO step record lacks {', '.join(missing)}")
        rows.append(record)
    rows.sort(key=lambda r: r.get("step", 0))
    return rows[skip_first:]


def summarize(rows: Sequence[dict], workers: int, prompts: int, learners: int = 1) -> Point:
    """Medians of the kept step records of one grid point."""
    if not rows:
        raise ValueError(f"workers={workers} prompts={prompts}: no GRPO steps left after the first")
    med = lambda key: statistics.median(float(r[key]) for r in rows)  # noqa: E731
    return Point(
        workers=workers, prompts=prompts, learners=learners, steps=tuple(float(r["time/step_s"]) for r in rows),
        step_s=med("time/step_s"), generate_s=med("time/generate_s"), reward_s=med("time/reward_s"),
        train_s=med("time/train_s"), sync_s=med("time/sync_s"), tokens=med("rollout/tokens"),
        completions=med("rollout/candidates"),
        completions_per_s=statistics.median(float(r["rollout/candidates"]) / float(r["time/step_s"]) for r in rows),
    )


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares intercept and slope; with one distinct x, the line through the origin and the mean.

    Both are kept >= 0 (more work never takes less time, and no phase has a negative fixed cost):
    a negative slope, which load noise can produce on a few points, becomes 0 with the mean as
    intercept; a negative intercept becomes a line through the origin.
    """
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 1e-12 * max(1.0, mx * mx):
        return 0.0, (my / mx if mx else 0.0)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if slope < 0:
        return my, 0.0
    if my - slope * mx < 0:
        return 0.0, sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    return my - slope * mx, slope


def fit(points: Sequence[Point]) -> Constants:
    """Fit each phase's constants to the points' medians (each phase alone, least squares)."""
    if not points:
        raise ValueError("no points to fit")
    g0, g_tok = _line([p.tokens / p.workers for p in points], [p.generate_s for p in points])
    r0, r_item = _line([p.completions for p in points], [p.reward_s for p in points])
    t0, t_tok = _line([p.tokens / p.learners for p in points], [p.train_s for p in points])
    calls = [p.learners + p.workers for p in points]
    s_call = sum(c * p.sync_s for c, p in zip(calls, points)) / sum(c * c for c in calls)
    other = statistics.median(p.other_s for p in points)
    return Constants(g0=g0, g_tok=g_tok, r0=r0, r_item=r_item, t0=t0, t_tok=t_tok, s_call=s_call, other=other)


def predict(c: Constants, tokens: float, completions: float, workers: int, learners: int = 1) -> dict[str, float]:
    """Each phase and the sync-mode step time the model gives for one step."""
    phases = {
        "generate": c.g0 + c.g_tok * tokens / workers,
        "reward": c.r0 + c.r_item * completions,
        "train": c.t0 + c.t_tok * tokens / learners,
        "sync": c.s_call * (learners + workers),
    }
    phases["step"] = sum(phases.values()) + c.other
    return phases


def leave_one_out(points: Sequence[Point]) -> list[Optional[float]]:
    """Each point's step time predicted from constants fitted to the other points (None with < 3 points)."""
    if len(points) < 3:
        return [None] * len(points)
    out: list[Optional[float]] = []
    for i, p in enumerate(points):
        c = fit([q for j, q in enumerate(points) if j != i])
        out.append(predict(c, p.tokens, p.completions, p.workers, p.learners)["step"])
    return out


def results_table(points: Sequence[Point]) -> str:
    lines = [
        "| rollout workers | prompts/step | step s, median (min-max, n) | generate s | reward s | train s | sync s | response tokens | completions/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in points:
        lines.append(
            f"| {p.workers} | {p.prompts} | {_common.spread(p.steps, '{:.2f}')} | {p.generate_s:.2f} | {p.reward_s:.2f} | "
            f"{p.train_s:.2f} | {p.sync_s:.3f} | {p.tokens:.0f} | {p.completions_per_s:.1f} |"
        )
    return "\n".join(lines)


def constants_table(c: Constants) -> str:
    rows = [
        ("g0 (generate, fixed per step)", f"{c.g0:.3f} s"),
        ("g_tok (generate, per response token per engine)", f"{c.g_tok * 1e3:.3f} ms"),
        ("r0 (reward, fixed per step)", f"{c.r0:.3f} s"),
        ("r_item (reward, per completion)", f"{c.r_item * 1e3:.2f} ms"),
        ("t0 (train, fixed per step)", f"{c.t0:.3f} s"),
        ("t_tok (train incl. reference forward, per response token per rank)", f"{c.t_tok * 1e3:.3f} ms"),
        ("s_call (sync, per actor call)", f"{c.s_call * 1e3:.1f} ms"),
        ("other (step time outside the four phases)", f"{c.other:.3f} s"),
    ]
    return "\n".join(["| constant | fitted value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)])


def prediction_table(points: Sequence[Point], c: Constants) -> str:
    loo = leave_one_out(points)
    lines = [
        "| rollout workers | prompts/step | measured step s | predicted (all points) | rel. error | predicted (leave one out) | rel. error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p, held_out in zip(points, loo):
        fitted = predict(c, p.tokens, p.completions, p.workers, p.learners)["step"]
        cells = [f"{fitted:.2f}", f"{(fitted - p.step_s) / p.step_s:+.0%}"]
        cells += ["n/a", "n/a"] if held_out is None else [f"{held_out:.2f}", f"{(held_out - p.step_s) / p.step_s:+.0%}"]
        lines.append(f"| {p.workers} | {p.prompts} | {p.step_s:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_point(config: str, run_dir: Path, workers: int, prompts: int, steps: int, policy: str, overrides: list[str]) -> Path:
    """One `empathy-rl grpo` run; returns its metrics.jsonl (the run's stderr tail on failure)."""
    cmd = [
        sys.executable, "-m", "empathy_rl.cli", "grpo", "--config", config, f"trainer.run_dir={run_dir}",
        f"rollout.num_workers={workers}", f"trainer.prompts_per_step={prompts}", f"trainer.total_steps={steps}",
        "warmstart.run_sft=false", "trainer.eval_every=0", "logging.progress_bar=false", "logging.plots=false",
        "logging.tensorboard=false",
    ]
    if policy:
        cmd.append(f"warmstart.policy={policy}")
    done = subprocess.run([*cmd, *overrides], capture_output=True, text=True, cwd=_common.REPO)
    if done.returncode != 0:
        sys.exit(f"grpo run workers={workers} prompts={prompts} failed ({done.returncode}), run dir {run_dir}:\n{done.stderr[-4000:]}")
    return run_dir / "metrics.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny-cpu.yaml")
    parser.add_argument("--workers", default="1,2", help="rollout.num_workers values, comma-separated")
    parser.add_argument("--prompts", default="8,16", help="trainer.prompts_per_step values, comma-separated")
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps per run (the first is left out)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per grid point (odd repeats in reverse order)")
    parser.add_argument("--policy", default="runs/sft", help="warmstart.policy; '' = model.path (the random tiny model)")
    parser.add_argument("--workdir", default=str(_common.REPO / ".cache" / "bench-scaling"), help="run directories go under it")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value) for every run")
    args = parser.parse_args()
    if args.steps < 2:
        sys.exit("--steps must be >= 2 (the first step of each run is left out)")
    if args.policy and not (_common.REPO / args.policy).exists() and not Path(args.policy).exists():
        sys.exit(f"--policy {args.policy} does not exist: run `empathy-rl sft --config {args.config}` or pass --policy ''")
    workers = [int(w) for w in args.workers.split(",")]
    prompts = [int(p) for p in args.prompts.split(",")]
    grid = [(w, p) for w in workers for p in prompts]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_start = _common.print_load("start")
    rows: dict[tuple[int, int], list[dict]] = {cell: [] for cell in grid}
    for repeat in range(args.repeats):
        for w, p in grid if repeat % 2 == 0 else list(reversed(grid)):
            run_dir = Path(args.workdir) / f"{stamp}-w{w}-p{p}-r{repeat}"
            started = time.monotonic()
            metrics = run_point(args.config, run_dir, w, p, args.steps, args.policy, args.overrides)
            kept = grpo_rows(metrics.read_text(encoding="utf-8").splitlines(), str(metrics))
            rows[(w, p)] += kept
            print(f"repeat {repeat} workers={w} prompts={p}: {time.monotonic() - started:.0f} s wall, "
                  f"step_s {[round(r['time/step_s'], 2) for r in kept]}", flush=True)
    load_end = _common.print_load("end")
    points = [summarize(rows[cell], *cell) for cell in grid]
    constants = fit(points)
    note = (
        f"Tiny preset ({args.config}), start policy {args.policy or 'model.path'}, trainer.mode sync, G from the config, "
        f"{args.steps} steps per run with the first left out, {args.repeats} run(s) per point, one learner rank. "
        "Phase columns are medians over the kept steps; the fit uses the medians."
    )
    table = "\n\n".join([results_table(points), constants_table(constants), prediction_table(points, constants)])
    _common.publish(__file__, "scaling", note, table, load_start, load_end, args.write_docs)


if __name__ == "__main__":
    main()
