"""`empathy-rl review --input drafts.jsonl --reviewer NAME [--host H] [--port N] [--config C] [key=value ...]`.

Serves the review page (`review.pages`) for one CoE JSONL file on the shared local web app until
Ctrl-C. The file is rewritten after every decision, so stopping the server loses nothing.
"""

from __future__ import annotations

import argparse
from typing import Callable


def cmd_review(args: argparse.Namespace) -> int:
    from empathy_rl.cli import _setup_logging
    from empathy_rl.config import EmpathyRLConfig, ModelConfig, load_config
    from empathy_rl.review.pages import add_review_pages
    from empathy_rl.review.store import ReviewStore
    from empathy_rl.webapp.server import App, serve_until_interrupted

    extra = ([f"review.host={args.host}"] if args.host is not None else []) + ([f"review.port={args.port}"] if args.port is not None else [])
    cfg = load_config(args.config, [*args.overrides, *extra], base=EmpathyRLConfig(model=ModelConfig(path="")))  # model.path is not needed
    _setup_logging(cfg.logging.level)
    store = ReviewStore(args.input, args.reviewer, cfg.review.max_field_chars, cfg.review.lock_timeout_s)
    counts = store.counts()
    return serve_until_interrupted(
        add_review_pages(App(), store), cfg.review.host, cfg.review.port,
        lambda url: (f"reviewing {store.path} as {store.reviewer!r}: {counts['reviewed']} / {counts['total']} reviewed "
                     f"({counts['accepted']} accepted, {counts['rejected']} rejected); open {url}/review "
                     f"(audit log -> {store.audit_path}); Ctrl-C stops"))


def add_parser(sub: argparse._SubParsersAction, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `review` on the top-level subparsers."""
    p = sub.add_parser("review", help="serve the local page to accept, edit or reject drafted CoE examples (127.0.0.1)")
    config_args(p)
    p.add_argument("--input", "-i", required=True, help="CoE JSONL to review (e.g. draft-coe's output); rewritten after each decision")
    p.add_argument("--reviewer", required=True, help="your name, stored with each decision and in <input>.audit.jsonl")
    p.add_argument("--host", help="address to bind (review.host; loopback only)")
    p.add_argument("--port", type=int, help="port (review.port; 0 = a free one)")
    p.set_defaults(func=cmd_review)
