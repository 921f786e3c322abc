"""The pure helpers of bench/trl_compare.py: metrics.jsonl and TRL reports into run summaries, and the table.

No TRL, Ray or model here: the benchmark itself installs TRL and is run by hand (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import trl_compare  # noqa: E402


def _step(step: int, seconds: float, candidates: int = 64, length: float = 40.0) -> str:
    return json.dumps({"phase": "grpo", "step": step, "time/step_s": seconds, "rollout/candidates": candidates,
                       "rollout/response_len_mean": length})


def test_summarize_ours_startup_steps_and_rate():
    lines = [
        json.dumps({"phase": "startup", "total_s": 20.0}),
        _step(2, 4.0, length=50.0),  # out of order on purpose: steps are sorted
        "",
        _step(1, 6.0, length=30.0),
        _step(3, 2.0, length=40.0),
    ]
    s = trl_compare.summarize_ours(lines, "m.jsonl", launch=100.0, step1_seen=136.0, end=160.0)
    assert s.startup_s == pytest.approx(30.0)  # step 1 landed at 136 after 6 s of work: began at 130
    assert s.step_s == (6.0, 4.0, 2.0)
    assert s.median_step_s == 4.0
    assert s.completions_per_s == pytest.approx(16.0)
    assert s.wall_s == pytest.approx(60.0)
    assert s.completion_len == pytest.approx(40.0)


def test_summarize_ours_errors_name_the_file_and_line():
    with pytest.raises(ValueError, match=r"m.jsonl:2: invalid JSON"):
        trl_compare.grpo_steps([_step(1, 1.0), "{oops"], "m.jsonl")
    with pytest.raises(ValueError, match=r"m.jsonl:1: GRPO record without 'time/step_s'"):
        trl_compare.grpo_steps([json.dumps({"phase": "grpo", "step": 1})], "m.jsonl")
    with pytest.raises(ValueError, match="no GRPO step records"):
        trl_compare.summarize_ours([json.dumps({"phase": "startup"})], "m.jsonl", 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="completions per step vary"):
        trl_compare.summarize_ours([_step(1, 1.0, 64), _step(2, 1.0, 60)], "m.jsonl", 0.0, 1.0, 2.0)


def test_summarize_trl_from_step_times():
    report = {"completions_per_step": 64, "steps": [
        {"begin": 110.0, "end": 118.0, "completion_len": 38.0},
        {"begin": 118.5, "end": 122.5, "completion_len": 42.0},
        {"begin": 123.0, "end": 129.0},
    ]}
    s = trl_compare.summarize_trl(report, launch=100.0, end=131.0)
    assert s.startup_s == pytest.approx(10.0)
    assert s.step_s == (8.0, 4.0, 6.0)
    assert s.completions_per_s == pytest.approx(64 / 6.0)
    assert s.wall_s == pytest.approx(31.0)
    assert s.completion_len == pytest.approx(40.0)
    with pytest.raises(ValueError, match="no steps"):
        trl_compare.summarize_trl({"completions_per_step": 64, "steps": []}, 0.0, 1.0)


def test_table_rows_and_ratio():
    ours = trl_compare.RunSummary(20.0, (2.0, 2.0), 64, 30.0, 40.0)
    trl = trl_compare.RunSummary(10.0, (8.0, 8.0), 64, 40.0, 41.0)
    text = trl_compare.table({("empathy-rl grpo", "tiny"): [ours], ("TRL GRPOTrainer", "tiny"): [trl]}, {"tiny": [4.0]})
    rows = text.splitlines()
    assert rows[2] == "| empathy-rl grpo | tiny | 20.0 (20.0-20.0, n=1) | 2.00 (2.00-2.00, n=2) | 32.00 (32.00-32.00, n=1) | 30.0 (30.0-30.0, n=1) | 40 |"
    assert rows[3].startswith("| TRL GRPOTrainer | tiny | 10.0 (10.0-10.0, n=1) | 8.00 (8.00-8.00, n=2) | 8.00 (8.00-8.00, n=1) |")
    assert rows[-1] == "Ours / fastest TRL run's completions/s at tiny, per repeat: 4.00 (4.00-4.00, n=1)."


def test_ratio_is_taken_against_the_fastest_trl_run():
    ours = trl_compare.RunSummary(20.0, (2.0,), 64, 30.0, 40.0)  # 32 completions/s
    slow = trl_compare.RunSummary(10.0, (16.0,), 64, 40.0, 41.0)  # 4
    fast = trl_compare.RunSummary(10.0, (8.0,), 64, 40.0, 41.0)  # 8
    assert trl_compare.ratio_to_best(ours, [slow, fast]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="no TRL run"):
        trl_compare.ratio_to_best(ours, [])
    assert trl_compare.tool_label("ours") == "empathy-rl grpo"
    assert trl_compare.tool_label("trl-t0").endswith("default torch threads")
    assert trl_compare.tool_label("trl-t1").endswith(", 1 torch thread")
