"""`empathy-rl`: the command line.

    empathy-rl make-tiny-model OUT_DIR [--seed N] [--no-shared-data]
    empathy-rl prepare-data --config configs/tiny-cpu.yaml [key=value ...]
    empathy-rl sft --config configs/tiny-cpu.yaml [key=value ...]
    empathy-rl grpo --config configs/tiny-cpu.yaml [--resume auto|PATH] [key=value ...]
    empathy-rl pipeline --config configs/tiny-cpu.yaml [--from STAGE] [--dry-run] [key=value ...]
    empathy-rl show-config --config configs/qwen3-8b.yaml [key=value ...]
    empathy-rl plot RUN_DIR
    empathy-rl train-rm --config configs/tiny-cpu.yaml [key=value ...]
    empathy-rl serve-reward --config configs/tiny-cpu.yaml [--detach] [key=value ...]
    empathy-rl score --config configs/tiny-cpu.yaml --input IN.jsonl [--output OUT.jsonl] [key=value ...]
    empathy-rl eval --config configs/tiny-cpu.yaml --system NAME=PATH [--system ...] [--split test] [--output DIR] [key=value ...]
    empathy-rl rank {export,serve,report,judge} --config configs/tiny-cpu.yaml [--sets DIR] [key=value ...]
    empathy-rl draft-coe --config configs/tiny-cpu.yaml [--prepared-dir DIR] [--output OUT.jsonl] [key=value ...]
    empathy-rl review --input drafts.jsonl --reviewer NAME [--host H] [--port N] [--config C] [key=value ...]

Overrides are OmegaConf dot-lists (`trainer.total_steps=20 rollout.num_workers=2`). The config is
merged and validated before anything starts; a bad key or value exits with status 2 and a message
naming it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from empathy_rl.config import ConfigError, load_config, to_yaml


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML preset (configs/tiny-cpu.yaml, configs/qwen3-8b.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.total_steps=10")


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("vllm", "ray", "deepspeed", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from empathy_rl.tiny_model import build_tiny_model

    out = build_tiny_model(args.out_dir, seed=args.seed, use_shared_data=not args.no_shared_data)
    print(f"tiny model written to {out}")
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from empathy_rl.data import prepare_data

    cfg = load_config(args.config, args.overrides)
    _setup_logging(cfg.logging.level)
    summary = prepare_data(cfg.data, progress=cfg.logging.progress_bar, safety=cfg.safety)
    print(summary.format())
    return 0


def cmd_grpo(args: argparse.Namespace) -> int:
    from empathy_rl.driver import GRPOTrainer

    overrides = list(args.overrides) + ([f"checkpoint.resume={args.resume}"] if args.resume else [])
    cfg = load_config(args.config, overrides)
    _setup_logging(cfg.logging.level)
    trainer = GRPOTrainer(cfg)
    try:
        summary = trainer.fit()
    finally:
        trainer.shutdown()
    run = summary["run_dir"]
    print(f"\nrun directory: {run}")
    print("  config.yaml      resolved configuration")
    print("  metrics.jsonl    per-step metrics (reward, format pass rate, KL, timings) and evaluations")
    print("  samples.jsonl    sampled CoE outputs per step, anonymized, with reward components")
    print("  prompts.jsonl    the record ids each step drew (no text)")
    if cfg.logging.tensorboard:
        print("  tensorboard/     the metrics as TensorBoard scalars")
    if summary.get("plots"):
        print("  plots/           PNG curves (redraw any time: empathy-rl plot RUN_DIR)")
    if summary.get("start_policy"):
        print(f"  start policy and KL reference: {summary['start_policy']}")
    if "checkpoint" in summary:
        print(f"  {summary['checkpoint']}/  final policy (Hugging Face format) and optimizer state")
    for key in ("eval_start", "eval_end"):
        if key in summary:
            m = summary[key]
            print(f"{key.replace('_', ' ')}: reward {m['eval/mean']:.3f}, format pass rate {m['eval/format_pass_rate']:.2f}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    """Supervised cold start on CoE examples (`sft.*`, docs/sft.md) as a Ray Train job."""
    import json

    from empathy_rl.coe_data import CoEDataError
    from empathy_rl.sft import SFT_FILE, SFTError, run_sft

    cfg = load_config(args.config, args.overrides)
    _setup_logging(cfg.logging.level)
    try:
        policy = run_sft(cfg, progress=cfg.logging.progress_bar)
    except (SFTError, CoEDataError) as err:  # names the stage, or the data file:line and field
        print(f"empathy-rl: error: {err}", file=sys.stderr)
        return 1
    finally:
        import ray

        if ray.is_initialized() and cfg.cluster.address is None:
            ray.shutdown()
    out = policy.parent
    meta = json.loads((out / SFT_FILE).read_text(encoding="utf-8"))
    m = meta["metrics"]
    print(f"\nSFT output: {out}")
    print(f"  policy/          Hugging Face model + tokenizer (warmstart.policy={out}; vLLM and the GRPO learner load it)")
    print(f"  metrics.jsonl    one line per step: loss, tokens, lr, step time")
    print(f"  {SFT_FILE}         inputs' fingerprint and final metrics")
    print(f"  {m['steps']} steps, loss {m['first_loss']:.3f} -> {m['final_loss']:.3f}, {meta['examples']['kept']} examples, "
          f"{m['total_seconds']:.0f} s (fit {m['fit_seconds']:.0f} s)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """PNG plots of a run's curves from its metrics.jsonl (finished or still running)."""
    from empathy_rl.plots import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def cmd_train_rm(args: argparse.Namespace) -> int:
    """Train the answer-reward model (`reward_model.*`) on Ray Train; model.path is not needed."""
    from empathy_rl.config import EmpathyRLConfig, ModelConfig
    from reward.rm_train import RewardModelTrainingError, train_reward_model

    cfg = load_config(args.config, args.overrides, base=EmpathyRLConfig(model=ModelConfig(path="")))
    _setup_logging(cfg.logging.level)
    try:
        report = train_reward_model(cfg, progress=cfg.logging.progress_bar)
    except RewardModelTrainingError as err:  # names the stage (data, fit, timeout)
        print(f"empathy-rl: error: {err}", file=sys.stderr)
        return 1
    finally:
        import ray

        if ray.is_initialized() and cfg.cluster.address is None:
            ray.shutdown()
    print(f"\nreward model written to {report['output_dir']} (reward.encoder={report['output_dir']})")
    for lang, res in report["languages"].items():
        b, a = res["before"], res["after"]
        print(f"  {lang} ({res['encoder']}, {a['queries']} {res['eval_split']} queries, T={res['threshold']:.3f}): "
              f"real>random {b['pairwise'].get('random')} -> {a['pairwise'].get('random')}, "
              f"real>echo {b['echo_below_real']} -> {a['echo_below_real']}, "
              f"real>off-topic {b['pairwise'].get('off_topic')} -> {a['pairwise'].get('off_topic')}, "
              f"AUC {b['auc']} -> {a['auc']}")
    print(f"  report: {report['output_dir']}/report.md, training {report['training']['train_seconds']} s")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """prepare-data -> sft -> train-rm -> grpo -> eval, skipping stages whose output is up to date."""
    from empathy_rl.pipeline import Pipeline, PipelineError

    cfg = load_config(args.config, args.overrides)
    _setup_logging(cfg.logging.level)
    pipeline = Pipeline(cfg, progress=cfg.logging.progress_bar)
    if args.dry_run:
        for name, decision in pipeline.plan(args.from_stage):
            print(f"{name:13s} {decision}")
        return 0
    t0 = time.perf_counter()
    try:
        records = pipeline.run(args.from_stage)
    except PipelineError as err:
        print(f"empathy-rl: error: {err}", file=sys.stderr)
        return 1
    print(f"\npipeline finished in {time.perf_counter() - t0:.0f} s (records in {cfg.pipeline.state_dir}/)")
    for name, rec in records.items():
        state = "skipped (up to date)" if rec.get("skipped") else f"ran in {rec.get('seconds', 0):.0f} s"
        print(f"  {name:13s} {state:22s} -> {rec.get('output', '')}")
    report = Path(cfg.eval.output_dir) / "report.json"
    if "eval" in records and report.is_file():
        from empathy_rl.eval_report import component_table, load_report

        print(f"\nevaluation ({cfg.eval.split} split, {cfg.eval.decoding} decoding; components averaged over all answers):")
        print(component_table(load_report(report)))
    return 0


def cmd_draft_coe(args: argparse.Namespace) -> int:
    """A teacher model drafts CoE SFT examples for prepared records (empathy_rl/drafting.py)."""
    from empathy_rl.drafting import draft_coe, summary_path
    from empathy_rl.file_lock import LockTimeout
    from empathy_rl.openai_compat import EndpointError

    cfg = load_config(args.config, args.overrides)
    if args.prepared_dir:
        cfg.draft.prepared_dir = args.prepared_dir
    if args.output:
        cfg.draft.output = args.output
    _setup_logging(cfg.logging.level)
    try:
        summary = draft_coe(cfg)
    except EndpointError as err:
        print(f"empathy-rl: teacher error: {err}\n  finished records are in {cfg.draft.output}; re-run to resume "
              f"(summary: {summary_path(cfg.draft.output)})", file=sys.stderr)
        return 1
    except LockTimeout as err:
        print(f"empathy-rl: {err}", file=sys.stderr)
        return 1
    print(summary.format())
    print(f"summary written to {summary_path(cfg.draft.output)}")
    return 0


def cmd_show_config(args: argparse.Namespace) -> int:
    print(to_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def _reward_config(args: argparse.Namespace):
    """The config of a reward-only command: `model.path` is not needed, so it may stay unset."""
    from empathy_rl.config import EmpathyRLConfig, ModelConfig

    return load_config(args.config, args.overrides, base=EmpathyRLConfig(model=ModelConfig(path="")))


def cmd_serve_reward(args: argparse.Namespace) -> int:
    from reward.standalone import serve_reward

    cfg = _reward_config(args)
    _setup_logging(cfg.logging.level)
    return serve_reward(cfg, detach=args.detach)


def cmd_score(args: argparse.Namespace) -> int:
    from reward.batch_score import score_file

    cfg = _reward_config(args)
    _setup_logging(cfg.logging.level)
    count = score_file(cfg.reward, args.input, args.output, progress=cfg.logging.progress_bar)
    print(f"scored {count} line(s) -> {args.output or 'stdout'}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy-rl", description="GRPO for Chain-of-Empathy mental-health support models on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-tiny-model", help="build a tiny Qwen3 + tokenizer offline for tests and the demo")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-shared-data", action="store_true", help="train the tokenizer on bundled text only")
    p.set_defaults(func=cmd_make_tiny_model)
    for name, func, text in (
        ("prepare-data", cmd_prepare_data, "read, anonymize, filter, split raw data into Parquet"),
        ("show-config", cmd_show_config, "print the merged, validated configuration"),
        ("train-rm", cmd_train_rm, "train the answer-reward model (triplet loss, Ray Train) and write reward.encoder's directory"),
    ):
        p = sub.add_parser(name, help=text)
        _config_args(p)
        p.set_defaults(func=func)
    p = sub.add_parser("sft", help="supervised cold start on CoE examples (Ray Train + DeepSpeed); writes sft.output_dir/policy")
    _config_args(p)
    p.set_defaults(func=cmd_sft)
    p = sub.add_parser("grpo", help="run GRPO on a Ray cluster from warmstart.policy (running sft first with warmstart.run_sft)")
    _config_args(p)
    p.add_argument(
        "--resume", metavar="auto|PATH",
        help="continue from the run directory's latest complete checkpoint (auto) or from checkpoint PATH (sets checkpoint.resume)",
    )
    p.set_defaults(func=cmd_grpo)
    p = sub.add_parser("pipeline", help="prepare-data -> sft -> train-rm -> grpo -> eval from one config; up-to-date stages are skipped")
    _config_args(p)
    p.add_argument("--from", dest="from_stage", metavar="STAGE",
                   help="force STAGE and every stage after it (prepare-data, sft, train-rm, grpo, eval)")
    p.add_argument("--dry-run", action="store_true", help="print which stages would run or be skipped, and why; run nothing")
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser("draft-coe", help="draft CoE SFT examples for prepared records with a teacher model (endpoint or local vLLM)")
    _config_args(p)
    p.add_argument("--prepared-dir", help="prepared data directory to draft for (sets draft.prepared_dir; default data.prepared_dir)")
    p.add_argument("--output", "-o", help="CoE JSONL to append drafts to (sets draft.output); re-runs skip ids already in it")
    p.set_defaults(func=cmd_draft_coe)
    p = sub.add_parser("plot", help="draw PNG plots of a run directory's metrics (finished or still running) into RUN_DIR/plots")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("serve-reward", help="run the reward as a standalone Ray Serve app (handle + HTTP); re-run to roll out a new config")
    _config_args(p)
    p.add_argument("--detach", action="store_true", help="deploy into the cluster at cluster.address and return (the app stays up)")
    p.set_defaults(func=cmd_serve_reward)
    p = sub.add_parser("score", help="score a JSONL file of {query, response, crisis} in process, no Ray")
    _config_args(p)
    p.add_argument("--input", "-i", required=True, help="JSONL, one {query, response, crisis?, language?, references?, id?} per line")
    p.add_argument("--output", "-o", help="JSONL of scores in input order (written atomically); default stdout")
    p.set_defaults(func=cmd_score)
    from empathy_rl.eval_cli import add_parsers  # eval + rank (human ranking): their own module

    add_parsers(sub, _config_args)
    from empathy_rl.review.command import add_parser as add_review_parser  # review of CoE drafts: its own module

    add_review_parser(sub, _config_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "make-tiny-model":
        _setup_logging()
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"empathy-rl: config error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:  # includes empathy_rl.data.DataError / BadRowError
        print(f"empathy-rl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
