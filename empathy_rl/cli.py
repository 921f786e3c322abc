"""`empathy-rl`: the command line.

    empathy-rl make-tiny-model OUT_DIR [--seed N] [--no-shared-data]
    empathy-rl prepare-data --config configs/tiny-cpu.yaml [key=value ...]
    empathy-rl grpo --config configs/tiny-cpu.yaml [key=value ...]
    empathy-rl show-config --config configs/qwen3-8b.yaml [key=value ...]

Overrides are OmegaConf dot-lists (`trainer.total_steps=20 rollout.num_workers=2`). The config is
merged and validated before anything starts; a bad key or value exits with status 2 and a message
naming it.
"""

from __future__ import annotations

import argparse
import logging
import sys
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
    summary = prepare_data(cfg.data, progress=cfg.logging.progress_bar)
    print(summary.format())
    return 0


def cmd_grpo(args: argparse.Namespace) -> int:
    from empathy_rl.driver import GRPOTrainer

    cfg = load_config(args.config, args.overrides)
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
    if cfg.warmstart.steps:
        print("  warmstart/       the warm-started (SFT) policy")
    if "checkpoint" in summary:
        print(f"  {summary['checkpoint']}/  final policy (Hugging Face format) and optimizer state")
    for key in ("eval_start", "eval_end"):
        if key in summary:
            m = summary[key]
            print(f"{key.replace('_', ' ')}: reward {m['eval/mean']:.3f}, format pass rate {m['eval/format_pass_rate']:.2f}")
    return 0


def cmd_show_config(args: argparse.Namespace) -> int:
    print(to_yaml(load_config(args.config, args.overrides)), end="")
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
        ("grpo", cmd_grpo, "run warm start (optional) and GRPO on a Ray cluster"),
        ("show-config", cmd_show_config, "print the merged, validated configuration"),
    ):
        p = sub.add_parser(name, help=text)
        _config_args(p)
        p.set_defaults(func=func)
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
