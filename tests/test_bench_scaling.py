"""The pure parts of bench/scaling.py: metrics rows into medians, the per-phase fit, predictions.

No subprocess, Ray or model here: the benchmark itself runs `empathy-rl grpo` and is run by hand
(docs/benchmarks.md).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import scaling  # noqa: E402


def _row(step: int, tokens: float, candidates: float, gen: float, rew: float, train: float, sync: float, other: float = 0.1) -> dict:
    return {
        "phase": "grpo", "step": step, "rollout/tokens": tokens, "rollout/candidates": candidates,
        "time/generate_s": gen, "time/reward_s": rew, "time/train_s": train, "time/sync_s": sync,
        "time/step_s": gen + rew + train + sync + other,
    }


def _synthetic(workers: int, prompts: int, g: int = 4, len_per: float = 40.0) -> scaling.Point:
    """A point that follows known constants exactly: g0 .2, g_tok 1 ms, r0 .3, r_item 10 ms, t0 .1, t_tok .5 ms, s_call 20 ms."""
    completions = prompts * g
    tokens = completions * len_per
    row = _row(2, tokens, completions, 0.2 + 1e-3 * tokens / workers, 0.3 + 0.01 * completions, 0.1 + 5e-4 * tokens, 0.02 * (1 + workers))
    return scaling.summarize([row], workers, prompts)


def test_grpo_rows_skips_startup_records_and_first_step() -> None:
    lines = [
        json.dumps({"phase": "startup", "total_s": 30.0}),
        json.dumps(_row(2, 100, 32, 1.0, 0.5, 0.8, 0.05)),
        json.dumps(_row(1, 100, 32, 9.0, 0.5, 0.8, 0.05)),
        "",
        json.dumps({"phase": "eval", "step": 2}),
        json.dumps(_row(3, 120, 32, 1.2, 0.5, 0.9, 0.05)),
    ]
    rows = scaling.grpo_rows(lines, "m.jsonl")
    assert [r["step"] for r in rows] == [2, 3]  # step 1 left out even though it came second in the file
    assert len(scaling.grpo_rows(lines, "m.jsonl", skip_first=0)) == 3


def test_grpo_rows_names_file_and_line_of_bad_records() -> None:
    with pytest.raises(ValueError, match=r"m.jsonl:2: invalid JSON"):
        scaling.grpo_rows([json.dumps(_row(1, 1, 1, 1, 1, 1, 1)), "{oops"], "m.jsonl")
    bad = _row(1, 1, 1, 1, 1, 1, 1)
    del bad["time/sync_s"]
    with pytest.raises(ValueError, match=r"m.jsonl:1: GRPO step record lacks time/sync_s"):
        scaling.grpo_rows([json.dumps(bad)], "m.jsonl")


def test_summarize_takes_medians_and_completions_per_second() -> None:
    rows = [_row(s, tok, 32, gen, 0.5, 0.8, 0.05) for s, tok, gen in ((2, 100, 1.0), (3, 300, 3.0), (4, 200, 2.0))]
    p = scaling.summarize(rows, workers=2, prompts=8)
    assert p.generate_s == pytest.approx(2.0) and p.tokens == 200
    assert p.step_s == pytest.approx(2.0 + 0.5 + 0.8 + 0.05 + 0.1)
    assert p.other_s == pytest.approx(0.1)
    assert len(p.steps) == 3
    assert p.completions_per_s == pytest.approx(32 / p.step_s)
    with pytest.raises(ValueError, match="no GRPO steps"):
        scaling.summarize([], workers=1, prompts=8)


def test_fit_recovers_known_constants_and_predicts_exactly() -> None:
    points = [_synthetic(w, p) for w in (1, 2) for p in (8, 16)]
    c = scaling.fit(points)
    assert c.g0 == pytest.approx(0.2) and c.g_tok == pytest.approx(1e-3)
    assert c.r0 == pytest.approx(0.3) and c.r_item == pytest.approx(0.01)
    assert c.t0 == pytest.approx(0.1) and c.t_tok == pytest.approx(5e-4)
    assert c.s_call == pytest.approx(0.02) and c.other == pytest.approx(0.1)
    for p in points:
        assert scaling.predict(c, p.tokens, p.completions, p.workers)["step"] == pytest.approx(p.step_s)
    for p, held_out in zip(points, scaling.leave_one_out(points)):
        assert held_out == pytest.approx(p.step_s)
    # more engines halve the per-engine token term only
    assert scaling.predict(c, 1000, 32, 2)["generate"] == pytest.approx(0.2 + 0.5)


def test_fit_clamps_negative_slopes_and_handles_one_distinct_x() -> None:
    # noise that makes reward fall with more completions: slope 0, intercept the mean
    assert scaling._line([32, 64], [1.2, 1.0]) == (pytest.approx(1.1), 0.0)
    assert scaling._line([10, 10], [2.0, 4.0]) == (0.0, pytest.approx(0.3))
    # a negative intercept: the line through the origin instead
    assert scaling._line([1, 2, 3], [0.5, 2.0, 3.5]) == (0.0, pytest.approx((0.5 + 4.0 + 10.5) / 14))
    assert scaling.leave_one_out([_synthetic(1, 8), _synthetic(2, 8)]) == [None, None]


def test_tables_show_every_point_with_relative_error() -> None:
    points = [_synthetic(w, p) for w in (1, 2) for p in (8, 16)]
    c = scaling.fit(points)
    table = scaling.prediction_table(points, c)
    assert table.count("\n") == 1 + len(points)
    assert re.search(r"\| [+-]0% \|", table)
    assert "| 2 | 16 |" in scaling.results_table(points)
    assert "ms" in scaling.constants_table(c)
