"""End to end against TRL: `empathy-rl grpo` against TRL's `GRPOTrainer` on the same work.

    .venv/bin/python bench/trl_compare.py                            # tiny, 4 steps, 1 repeat (smoke)
    .venv/bin/python bench/trl_compare.py --size tiny --steps 8 --repeats 3 --write-docs
    .venv/bin/python bench/trl_compare.py --size 50m --steps 4 --repeats 3 --write-docs

`--write-docs` puts the table into docs/benchmarks.md between `<!-- bench:trl_compare_SIZE -->`
markers (SIZE = tiny, 50m or both), with the command, machine, versions and load average.

Same policy, prompts, G, lengths, batch, optimiser settings and reward on both sides:
- Policy: `--size tiny` starts from the demo's SFT policy (`runs/sft/policy`), `--size 50m` from a
  random-init Qwen3 of about 50M parameters (`_common.model_path("50m")`, the tiny tokenizer). Both
  sides load the same checkpoint as policy and KL reference. What a fresh clone lacks is built first
  with the project's own commands (make-tiny-model, prepare-data, sft, train-rm: what `make demo` runs).
- Prompts: the prepared training records (`data.prepared_dir`, train split) rendered once here by
  `rollout.prompts.PromptBuilder` (compact CoE system prompt, the model's chat template, the
  preset's prompt limit); TRL gets the rendered text as a standard (non-chat) prompt, and its runner
  checks that re-tokenizing gives exactly the same token ids.
- Work per step: `--prompts` prompts x G=`--group-size` completions (16 x 4 = 64), up to
  `--max-tokens` new tokens (160) sampled at temperature 1.0 (top-p 1, top-k off), one optimizer
  step per rollout batch in micro-batches of `learner.micro_batch_size` (16 rows: TRL's
  per-device batch 16 with 4 accumulation steps), AdamW at the preset's lr (constant), k3 KL to the
  reference with beta `algorithm.kl_beta`, ratio clip `algorithm.clip_low/high`, per-sequence loss
  (TRL `loss_type="grpo"`, ours `seq-mean-token-mean`), group-normalised advantages, fp32.
- Reward: the same function, `reward.model.RewardModel` built from the preset's `reward` section
  (format + answer term from the train-rm encoder, + the crisis term on crisis queries); ours
  scores it in its Ray Serve app, TRL's runner in process (no Ray).

TRL runs in its own virtual environment, `.cache/trl-venv` (built on first use, reused after; see
`ensure_trl_venv`): TRL `TRL_VERSION` installed there with `--no-deps`, and a `.pth` file that puts
the project venv's site-packages after the venv's own, so TRL runs on the same torch, transformers,
accelerate and datasets as the project (one CPU torch; no second multi-GB torch download).

Threads: ours runs the preset's actors (learner 1 CPU and 1 torch thread, vLLM 0.5 CPU). TRL is one
process; it runs once per `--trl-threads` count (default `0,1`: torch's default of one thread per
core, and one thread), and the ratio is taken against the faster of them in each repeat, so TRL is
not judged by a thread setting that a loaded machine happens to punish.

Measured per run, each a fresh process, runs alternated within each repeat (reversed order on odd repeats):
- start-up: process launch to the start of step 1 (ours: Ray, reward app, learner, vLLM, weight
  sync; TRL: imports, model + reference load, trainer set-up);
- step seconds: ours `time/step_s` from metrics.jsonl; TRL from a callback (`on_step_begin` to
  `on_step_end`: generation, reward, reference and policy forward/backward, optimizer step);
- completions/s = completions per step / median step seconds; wall = launch to process exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (sets the environment before anything heavy is imported)
from empathy_rl.jsonl import iter_jsonl_lines  # noqa: E402

REPO = _common.REPO
TRL_VERSION = "1.16.0"
TRL_VENV = REPO / ".cache" / "trl-venv"
STAMP_NAME = "empathy-rl-trl.json"
PTH_NAME = "zz_empathy_rl_project_site.pth"  # a .pth path goes after the venv's own site-packages ("zz": after any other .pth too)
RUNNER = Path(__file__).resolve().parent / "trl_runner.py"
CONFIG = "configs/tiny-cpu.yaml"
EMPATHY = Path(sys.executable).parent / "empathy-rl"  # the CLI of the venv running this script
RUN_TIMEOUT_S = 3 * 3600  # longest one run (either side) or one input-building command may take


# ---------------------------------------------------------------------------------------------
# The TRL virtual environment
def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_site(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise SystemExit(f"{venv}: no lib/python3*/site-packages after creating the venv")
    return found[0]


def ensure_trl_venv(venv: Path = TRL_VENV, version: str = TRL_VERSION) -> tuple[Path, dict]:
    """The TRL venv's python and its stamp (what it holds); built when missing or stale.

    Holds `trl==version` (installed with --no-deps by the project's pip; no pip or setuptools of
    its own) and a .pth naming this interpreter's
    site-packages, appended after the venv's own: TRL's dependencies (torch, transformers,
    accelerate, datasets, ...) resolve to the project's installed versions. Idempotent: a stamp
    with the same TRL version and project site-packages is reused as is.
    """
    project_site = sysconfig.get_paths()["purelib"]
    stamp_path = venv / STAMP_NAME
    if stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("trl") == version and stamp.get("project_site") == project_site and _venv_python(venv).exists():
            return _venv_python(venv), stamp
    print(f"building the TRL venv {venv.relative_to(REPO)} (trl=={version}, --no-deps) ...", flush=True)
    start = time.perf_counter()
    if venv.exists():
        shutil.rmtree(venv)
    # No pip or setuptools of its own (an old bundled setuptools would shadow the project's): the
    # project's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=600)
    py = _venv_python(venv)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", f"trl=={version}"],
                   check=True, timeout=1800)
    (_venv_site(venv) / PTH_NAME).write_text(project_site + "\n")
    probe = (
        "import json, sys, torch, transformers, accelerate, datasets, trl; "
        "print(json.dumps({'python': sys.version.split()[0], 'trl': trl.__version__, 'trl_file': trl.__file__, "
        "'torch': torch.__version__, 'torch_file': torch.__file__, 'transformers': transformers.__version__, "
        "'accelerate': accelerate.__version__, 'datasets': datasets.__version__}))"
    )
    done = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the TRL venv {venv} cannot import trl with the project's packages:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not found["trl_file"].startswith(str(venv)):
        raise SystemExit(f"trl imported from {found['trl_file']}, not from the TRL venv {venv}")
    own = sorted(p.name for p in _venv_site(venv).iterdir() if not p.name.startswith(("_", ".")) and p.name != "__pycache__")
    stamp = {
        **found, "trl": version, "project_site": project_site, "venv_contents": own,
        "install_s": round(time.perf_counter() - start, 1), "size_mb": round(_dir_mb(venv), 1),
    }
    stamp_path.write_text(json.dumps(stamp, indent=1))
    print(f"TRL venv ready in {stamp['install_s']} s, {stamp['size_mb']} MB: trl {version} on torch {found['torch']}, "
          f"transformers {found['transformers']}", flush=True)
    return py, stamp


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested): summaries of one run
@dataclass(frozen=True)
class RunSummary:
    """One process's numbers: start-up to step 1, per-step seconds, completions per step, wall, mean completion length."""

    startup_s: float
    step_s: tuple[float, ...]
    completions_per_step: int
    wall_s: float
    completion_len: float

    @property
    def median_step_s(self) -> float:
        return statistics.median(self.step_s)

    @property
    def completions_per_s(self) -> float:
        return self.completions_per_step / self.median_step_s


def grpo_steps(lines: Sequence[str], source: str) -> list[dict]:
    """The `{"phase": "grpo"}` records of a metrics.jsonl, in step order; an error names the file and line."""
    steps = []
    for number, record in iter_jsonl_lines(lines, source, ValueError):
        if isinstance(record, dict) and record.get("phase") == "grpo":
            for key in ("step", "time/step_s", "rollout/candidates", "rollout/response_len_mean"):
                if key not in record:
                    raise ValueError(f"{source}:{number}: GRPO record without {key!r}")
            steps.append(record)
    return sorted(steps, key=lambda r: r["step"])


def summarize_ours(lines: Sequence[str], source: str, launch: float, step1_seen: float, end: float) -> RunSummary:
    """Our run from its metrics.jsonl lines: `step1_seen` is when step 1's record appeared in the file
    (so step 1 began `time/step_s` before it); `launch` and `end` bracket the process."""
    steps = grpo_steps(lines, source)
    if not steps:
        raise ValueError(f"{source}: no GRPO step records")
    counts = {int(r["rollout/candidates"]) for r in steps}
    if len(counts) != 1:
        raise ValueError(f"{source}: completions per step vary ({sorted(counts)}); the comparison needs a fixed batch")
    return RunSummary(
        startup_s=step1_seen - steps[0]["time/step_s"] - launch,
        step_s=tuple(r["time/step_s"] for r in steps),
        completions_per_step=counts.pop(),
        wall_s=end - launch,
        completion_len=statistics.fmean(r["rollout/response_len_mean"] for r in steps),
    )


def summarize_trl(report: dict, launch: float, end: float) -> RunSummary:
    """TRL's run from the runner's report (absolute times of each step's begin and end)."""
    steps = report["steps"]
    if not steps:
        raise ValueError("the TRL runner reported no steps")
    lengths = [s["completion_len"] for s in steps if s.get("completion_len") is not None]
    return RunSummary(
        startup_s=steps[0]["begin"] - launch,
        step_s=tuple(s["end"] - s["begin"] for s in steps),
        completions_per_step=int(report["completions_per_step"]),
        wall_s=end - launch,
        completion_len=statistics.fmean(lengths) if lengths else float("nan"),
    )


def tool_label(tool: str) -> str:
    """The table's name for a run kind: "ours", or "trl-tN" (TRL with N torch threads, 0 = torch's default)."""
    if tool == "ours":
        return "empathy-rl grpo"
    n = int(tool[len("trl-t"):])
    return f"TRL {TRL_VERSION} GRPOTrainer, {'default torch threads' if n == 0 else f'{n} torch thread' + ('s' if n > 1 else '')}"


def ratio_to_best(ours: RunSummary, trl_runs: Sequence[RunSummary]) -> float:
    """Ours / the fastest TRL run of the same repeat, in completions/s (TRL gets its best thread setting)."""
    if not trl_runs:
        raise ValueError("no TRL run to compare with")
    return ours.completions_per_s / max(r.completions_per_s for r in trl_runs)


def table(results: dict[tuple[str, str], list[RunSummary]], ratios: dict[str, list[float]]) -> str:
    """The markdown table: one row per (tool, size), medians (min-max, n) over repeats, then ours/TRL per size."""
    lines = [
        "| tool | size | start-up to step 1, s | median step, s | completions/s | wall, s | mean completion tokens |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (tool, size), runs in results.items():
        steps = [s for r in runs for s in r.step_s]
        lines.append(
            f"| {tool} | {size} | {_common.spread([r.startup_s for r in runs], '{:.1f}')} | "
            f"{_common.spread(steps, '{:.2f}')} | {_common.spread([r.completions_per_s for r in runs], '{:.2f}')} | "
            f"{_common.spread([r.wall_s for r in runs], '{:.1f}')} | {statistics.fmean(r.completion_len for r in runs):.0f} |"
        )
    lines.append("")
    for size, values in ratios.items():
        lines.append(f"Ours / fastest TRL run's completions/s at {size}, per repeat: {_common.spread(values, '{:.2f}')}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Inputs
def _cli(*args: str) -> None:
    print("+ empathy-rl " + " ".join(args), flush=True)
    subprocess.run([str(EMPATHY), *args], check=True, cwd=REPO, timeout=RUN_TIMEOUT_S)


def ensure_inputs(size: str) -> Path:
    """The starting policy for `size`, building first what a fresh clone lacks (the inputs `make demo` builds)."""
    from empathy_rl.config import load_config

    cfg = load_config(CONFIG, [])
    if not (REPO / cfg.model.path / "config.json").is_file():
        _cli("make-tiny-model", cfg.model.path)
    if not (REPO / cfg.data.prepared_dir / f"{cfg.data.train_split}.parquet").is_file():
        _cli("prepare-data", "--config", CONFIG)
    if not (REPO / cfg.reward.encoder / "reward_model.json").is_file():
        _cli("train-rm", "--config", CONFIG)
    if size == "tiny":
        policy = REPO / cfg.sft.output_dir / "policy"
        if not (policy / "config.json").is_file():
            _cli("sft", "--config", CONFIG)
    else:
        policy = _common.model_path(size)
    return policy


def write_prompts(policy: Path, out: Path, overrides: list[str]) -> int:
    """The training prompts rendered by our PromptBuilder, one JSON line each (text, ids, reward fields)."""
    from transformers import AutoTokenizer

    from empathy_rl.config import load_config
    from empathy_rl.data import load_records
    from rollout.prompts import PromptBuilder

    cfg = load_config(CONFIG, overrides)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    r = cfg.rollout
    builder = PromptBuilder(tokenizer, cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language, r.system_prompt_style,
                            enable_thinking=r.enable_thinking)
    prompts = builder.build_many(load_records(cfg.data.prepared_dir, cfg.data.train_split))
    with out.open("w", encoding="utf-8") as fh:
        for p in prompts:
            text = tokenizer.decode(list(p.token_ids), skip_special_tokens=False)
            fh.write(json.dumps({"prompt": text, "prompt_ids": list(p.token_ids), "query": p.query, "crisis": p.crisis,
                                 "language": p.language, "references": list(p.references)}, ensure_ascii=False) + "\n")
    return len(prompts)


# ---------------------------------------------------------------------------------------------
# One run of each side
def run_ours(policy: Path, run_dir: Path, steps: int, overrides: list[str], log: Path) -> RunSummary:
    """`empathy-rl grpo` for `steps` steps; step 1's start is found by watching metrics.jsonl."""
    metrics = run_dir / "metrics.jsonl"
    cmd = [
        str(EMPATHY), "grpo", "--config", CONFIG, f"trainer.run_dir={run_dir}", f"trainer.total_steps={steps}",
        f"model.path={policy}", "warmstart.run_sft=false", "logging.progress_bar=false", "logging.plots=false", *overrides,
    ]
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:  # the moment step 1's record lands in metrics.jsonl
        while not stop.is_set() and "step1" not in seen:
            if metrics.is_file() and '"phase": "grpo"' in metrics.read_text(encoding="utf-8", errors="replace"):
                seen["step1"] = time.time()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    with log.open("w") as fh:
        launch = time.time()
        watcher.start()
        try:
            done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            sys.exit(f"empathy-rl grpo ran past {RUN_TIMEOUT_S} s; log {log}")
        finally:
            stop.set()
        end = time.time()
    watcher.join(timeout=5)
    if done.returncode != 0:
        sys.exit(f"empathy-rl grpo failed ({done.returncode}); log {log}:\n{log.read_text()[-4000:]}")
    if "step1" not in seen:
        sys.exit(f"empathy-rl grpo wrote no GRPO step to {metrics}; log {log}")
    return summarize_ours(metrics.read_text(encoding="utf-8").splitlines(), str(metrics), launch, seen["step1"], end)


def run_trl(python: Path, spec: Path, out_dir: Path, log: Path, threads: int) -> RunSummary:
    """bench/trl_runner.py in the TRL venv; it writes a JSON report of step times. `threads` > 0 caps
    its torch/OpenMP threads; 0 leaves torch's default (one per CPU)."""
    report_path = out_dir / "trl-report.json"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    with log.open("w") as fh:
        launch = time.time()
        try:
            done = subprocess.run([str(python), str(RUNNER), str(spec), str(out_dir), str(report_path)],
                                  stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, timeout=RUN_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            sys.exit(f"the TRL runner ran past {RUN_TIMEOUT_S} s; log {log}")
        end = time.time()
    if done.returncode != 0 or not report_path.is_file():
        sys.exit(f"the TRL runner failed ({done.returncode}); log {log}:\n{log.read_text()[-4000:]}")
    return summarize_trl(json.loads(report_path.read_text()), launch, end)


def trl_spec(policy: Path, prompts_file: Path, steps: int, overrides: list[str]) -> dict:
    """TRL's settings, read from the same config our run uses (so an override changes both sides)."""
    from empathy_rl.config import load_config

    cfg = load_config(CONFIG, overrides)
    a, lrn, r = cfg.algorithm, cfg.learner, cfg.rollout
    if a.aggregation != "seq-mean-token-mean":
        raise SystemExit(f"algorithm.aggregation={a.aggregation}: the TRL side is set up for seq-mean-token-mean (TRL loss_type=grpo)")
    if a.kl_kind != "k3" or not a.normalize_std or lrn.ppo_epochs != 1 or lrn.mini_batches_per_step != 1 or lrn.warmup_steps != 0:
        raise SystemExit("the TRL side matches k3 KL, std-normalised advantages, one optimizer step per batch and no warm-up only")
    completions = cfg.trainer.prompts_per_step * r.group_size
    if completions % lrn.micro_batch_size:
        raise SystemExit(f"prompts_per_step x group_size ({completions}) must be a multiple of learner.micro_batch_size ({lrn.micro_batch_size})")
    return {
        "policy": str(policy), "prompts_file": str(prompts_file), "steps": steps, "seed": cfg.trainer.seed,
        "config": CONFIG, "overrides": overrides, "repo": str(REPO),
        "num_generations": r.group_size, "per_device_train_batch_size": lrn.micro_batch_size,
        "gradient_accumulation_steps": completions // lrn.micro_batch_size, "completions_per_step": completions,
        "max_completion_length": cfg.model.max_response_len, "temperature": r.temperature, "top_p": r.top_p,
        "learning_rate": lrn.lr, "weight_decay": lrn.weight_decay, "adam_beta1": lrn.betas[0], "adam_beta2": lrn.betas[1],
        "max_grad_norm": lrn.max_grad_norm, "beta": a.kl_beta, "epsilon": a.clip_low, "epsilon_high": a.clip_high,
        "gradient_checkpointing": cfg.model.gradient_checkpointing, "dtype": cfg.model.dtype,
    }


# ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=["tiny", "50m", "both"])
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps per run (step 1 included in the median)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (trainer.prompts_per_step)")
    parser.add_argument("--group-size", type=int, default=4, help="G (rollout.group_size)")
    parser.add_argument("--max-tokens", type=int, default=160, help="max new tokens (model.max_response_len)")
    parser.add_argument("--trl-threads", default="0,1",
                        help="comma-separated torch thread counts to run TRL with, one TRL run each (0: torch's default, one per "
                             "core); ours is compared with the fastest")
    parser.add_argument("--ours", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for our run only, repeatable (e.g. learner.torch_threads=2); it shows in "
                             "the command written above the table")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--keep", help="keep run directories and logs here (default: a temporary directory)")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    sizes = ["tiny", "50m"] if args.size == "both" else [args.size]
    try:
        threads = sorted({int(n) for n in args.trl_threads.split(",")})
    except ValueError:
        parser.error(f"--trl-threads must be comma-separated integers, got {args.trl_threads!r}")
    if not threads or min(threads) < 0:
        parser.error("--trl-threads needs at least one count, each >= 0")
    python, stamp = ensure_trl_venv()
    load_start = _common.print_load("start")
    base = [f"trainer.prompts_per_step={args.prompts}", f"rollout.group_size={args.group_size}", f"model.max_response_len={args.max_tokens}"]
    results: dict[tuple[str, str], list[RunSummary]] = {}
    ratios: dict[str, list[float]] = {}
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench-trl-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for size in sizes:
            policy = ensure_inputs(size)
            overrides = [*base, f"model.path={policy}"]
            prompts_file = work / f"prompts-{size}.jsonl"
            count = write_prompts(policy, prompts_file, overrides)
            print(f"{size}: policy {policy.relative_to(REPO) if policy.is_relative_to(REPO) else policy}, {count} training prompts", flush=True)
            ratios[size] = []
            for repeat in range(args.repeats):
                got: dict[str, RunSummary] = {}
                tools = ["ours", *(f"trl-t{n}" for n in threads)]
                for tool in tools if repeat % 2 == 0 else tools[::-1]:
                    name = f"{tool}-{size}-{repeat}"
                    run_dir = work / name
                    if tool == "ours":
                        got[tool] = run_ours(policy, run_dir, args.steps, [*base, *args.ours], work / f"{name}.log")
                    else:
                        run_dir.mkdir(parents=True, exist_ok=True)
                        spec = run_dir / "spec.json"
                        spec.write_text(json.dumps(trl_spec(policy, prompts_file, args.steps, overrides), indent=1))
                        got[tool] = run_trl(python, spec, run_dir, work / f"{name}.log", int(tool[len("trl-t"):]))
                    results.setdefault((tool_label(tool), size), []).append(got[tool])
                    s = got[tool]
                    print(f"repeat {repeat} {size} {tool_label(tool)}: start-up {s.startup_s:.1f} s, median step {s.median_step_s:.2f} s "
                          f"({s.completions_per_s:.2f} completions/s, {s.completion_len:.0f} tokens each), wall {s.wall_s:.1f} s", flush=True)
                ratios[size].append(ratio_to_best(got["ours"], [v for k, v in got.items() if k != "ours"]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load_end = _common.print_load("end")
    body = table(results, ratios)
    note = (
        f"{args.prompts} prompts x G={args.group_size} = {args.prompts * args.group_size} completions per step, up to {args.max_tokens} new "
        f"tokens, temperature 1.0, {args.steps} steps per run, {args.repeats} repeat(s); each run a fresh process. TRL runs once per torch "
        f"thread count ({', '.join(map(str, threads))}; 0 = torch's default). TRL {stamp['trl']} ran on "
        f"torch {stamp['torch']}, transformers {stamp['transformers']}, accelerate {stamp['accelerate']}, datasets {stamp['datasets']} "
        f"(the project's, through the TRL venv's .pth)."
    )
    print("\n" + note + "\nmedian (min-max, n)\n" + body, flush=True)
    if args.write_docs:
        command = " ".join(["python bench/trl_compare.py", *sys.argv[1:]]).replace(" --write-docs", "")
        _common.write_section(f"trl_compare_{args.size}", _common.header(command, load_start, load_end, note) + "\n" + body)


if __name__ == "__main__":
    main()
