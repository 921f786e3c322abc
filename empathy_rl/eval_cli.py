"""The `eval` and `rank` commands of `empathy-rl` (registered by `empathy_rl.cli.build_parser`).

    empathy-rl eval --config C --system NAME=PATH [--system ...] [--split test] [--output DIR] [key=value ...]
    empathy-rl rank export --config C [--eval-dir DIR] [--sets DIR] [key=value ...]
    empathy-rl rank serve  --config C [--sets DIR] [--port N] [key=value ...]
    empathy-rl rank report --config C [--sets DIR] [key=value ...]
    empathy-rl rank judge  --config C [--sets DIR] [key=value ...]

These commands do not train, so `model.path` may stay unset; the systems name their own models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from empathy_rl.config import EmpathyRLConfig, ModelConfig, load_config


def _config(args: argparse.Namespace, extra: list[str]) -> EmpathyRLConfig:
    return load_config(args.config, [*args.overrides, *extra], base=EmpathyRLConfig(model=ModelConfig(path="")))


def cmd_eval(args: argparse.Namespace) -> int:
    from empathy_rl.cli import _setup_logging
    from empathy_rl.eval_report import format_table
    from empathy_rl.evaluation import evaluate_systems, parse_system

    extra = ([f"eval.split={args.split}"] if args.split else []) + ([f"eval.output_dir={args.output}"] if args.output else [])
    cfg = _config(args, extra)
    _setup_logging(cfg.logging.level)
    systems = [parse_system(spec) for spec in args.system]  # fails on a bad path before Ray starts
    report = evaluate_systems(cfg, systems)
    s = report.settings
    print(f"\nevaluation on split {s['split']!r}: {s['prompts']} prompts "
          f"({', '.join(f'{k} {v}' for k, v in s['prompts_per_language'].items())}), {s['decoding']} decoding, seed {s['seed']}")
    print(f"METEOR: {s['meteor']['matching']}; reference metrics x 100; intervals in {report.output_dir}/report.md\n")
    print(format_table(report))
    print(f"\nreport: {report.output_dir}/report.md, report.json, metrics.png, reward.png; answers: {report.output_dir}/generations.jsonl")
    return 0


def _sets_dir(args: argparse.Namespace, cfg: EmpathyRLConfig) -> Path:
    return Path(args.sets or cfg.rank.sets_dir)


def _db(cfg: EmpathyRLConfig, sets: Path) -> Path:
    return Path(cfg.rank.db) if cfg.rank.db else sets / "rankings.sqlite"


def cmd_rank_export(args: argparse.Namespace) -> int:
    from empathy_rl.cli import _setup_logging
    from empathy_rl.ranking.sets import export_sets

    cfg = _config(args, [])
    _setup_logging(cfg.logging.level)
    sets = _sets_dir(args, cfg)
    n = export_sets(args.eval_dir or cfg.eval.output_dir, sets, cfg.rank.systems_per_case, cfg.rank.max_cases, cfg.rank.seed)
    print(f"{n} case(s) -> {sets}/cases.jsonl (what raters see); key -> {sets}/key.json (keep it away from raters)")
    return 0


def cmd_rank_serve(args: argparse.Namespace) -> int:
    from empathy_rl.cli import _setup_logging
    from empathy_rl.ranking.pages import add_ranking_pages
    from empathy_rl.ranking.sets import load_cases
    from empathy_rl.ranking.store import RankingStore
    from empathy_rl.webapp.server import App, serve_until_interrupted

    cfg = _config(args, [f"rank.port={args.port}"] if args.port is not None else [])
    _setup_logging(cfg.logging.level)
    sets = _sets_dir(args, cfg)
    cases = load_cases(sets)
    store = RankingStore(_db(cfg, sets))
    return serve_until_interrupted(
        add_ranking_pages(App(), cases, store), cfg.rank.host, cfg.rank.port,
        lambda url: f"ranking {len(cases)} case(s): open {url}/ (rankings -> {store.path}); Ctrl-C stops", on_close=store.close)


def cmd_rank_report(args: argparse.Namespace) -> int:
    from empathy_rl.ranking.report import render_rank_markdown, write_rank_report
    from empathy_rl.ranking.store import RankingStore

    cfg = _config(args, [])
    sets = _sets_dir(args, cfg)
    store = RankingStore(_db(cfg, sets))
    try:
        report = write_rank_report(sets, store.all(), ks=cfg.rank.win_k, resamples=cfg.rank.bootstrap_resamples,
                                   confidence=cfg.rank.confidence, seed=cfg.rank.seed)
    finally:
        store.close()
    print(render_rank_markdown(report))
    print(f"written: {sets}/rank_report.md, {sets}/rank_report.json")
    return 0


def cmd_rank_judge(args: argparse.Namespace) -> int:
    from empathy_rl.cli import _setup_logging
    from empathy_rl.ranking.judge import JudgeError, run_judge
    from empathy_rl.ranking.sets import load_cases
    from empathy_rl.ranking.store import RankingStore

    cfg = _config(args, [])
    _setup_logging(cfg.logging.level)
    sets = _sets_dir(args, cfg)
    store = RankingStore(_db(cfg, sets))
    try:
        result = run_judge(cfg.rank, load_cases(sets), store, progress=cfg.logging.progress_bar)
    except JudgeError as err:
        print(f"empathy-rl: error: {err}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"judge {cfg.rank.judge_rater!r}: {result.ranked} case(s) ranked, {len(result.failed)} unparseable reply(ies); "
          f"`empathy-rl rank report` aggregates it with the human raters")
    return 0


def add_parsers(sub: argparse._SubParsersAction, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `eval` and `rank {export,serve,report,judge}` on the top-level subparsers."""
    p = sub.add_parser("eval", help="generate with several systems on a held-out split and compare them (BLEU, ROUGE-L, METEOR, Distinct, reward)")
    config_args(p)
    p.add_argument("--system", action="append", default=[], required=True, metavar="NAME=PATH",
                   help="a model directory, a GRPO run directory (latest checkpoint) or an SFT output directory; repeat for each system")
    p.add_argument("--split", help="prepared split to evaluate on (eval.split)")
    p.add_argument("--output", "-o", help="output directory (eval.output_dir)")
    p.set_defaults(func=cmd_eval)
    rank = sub.add_parser("rank", help="human ranking (Win@K): export sets, serve the ranking page, report, LLM judge")
    rank_sub = rank.add_subparsers(dest="rank_command", required=True)
    for name, func, text in (
        ("export", cmd_rank_export, "build anonymised, shuffled comparison sets from an eval output directory"),
        ("serve", cmd_rank_serve, "serve the local ranking page (127.0.0.1)"),
        ("report", cmd_rank_report, "Win@1, Win@K, mean rank with bootstrap intervals and Kendall's W"),
        ("judge", cmd_rank_judge, "rank the sets with an LLM judge on an OpenAI-compatible endpoint"),
    ):
        p = rank_sub.add_parser(name, help=text)
        config_args(p)
        p.add_argument("--sets", help="comparison-set directory (rank.sets_dir)")
        if name == "export":
            p.add_argument("--eval-dir", help="the eval output directory holding generations.jsonl (default eval.output_dir)")
        if name == "serve":
            p.add_argument("--port", type=int, help="port (rank.port; 0 = a free one)")
        p.set_defaults(func=func)
