"""Aggregate rankings: Win@1, Win@K and mean rank per system with bootstrap intervals, and
inter-rater agreement (Kendall's W).

A judgment is one rater's full ranking of one case. Win@K of a system is the share of the
judgments of cases that show it in which it is ranked within the top K (Win@1: ranked first, the
paper's measure). Intervals resample cases (all judgments of a drawn case stay together), since
raters of one case are not independent. Kendall's W is computed per case over the raters who
ranked it (at least 2) and averaged over such cases: W = 12 S / (m^2 (n^3 - n)), with S the sum of
squared deviations of the systems' rank sums from their mean, m raters and n answers (no ties).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from empathy_rl.ranking.sets import RankingError, load_key


def kendalls_w(rankings: Sequence[Sequence[int]]) -> float:
    """Kendall's coefficient of concordance of m complete rankings of the same n items (no ties)."""
    m = len(rankings)
    if m < 2:
        raise ValueError("Kendall's W needs at least 2 raters")
    n = len(rankings[0])
    if n < 2 or any(len(r) != n for r in rankings):
        raise ValueError("every ranking must rank the same n >= 2 items")
    sums = np.sum(np.asarray(rankings, dtype=float), axis=0)
    s = float(((sums - sums.mean()) ** 2).sum())
    return 12.0 * s / (m ** 2 * (n ** 3 - n))


def judgments(rows: Sequence[tuple[str, str, list[int]]], key: dict[str, list[str]]) -> list[dict[str, Any]]:
    """(rater, case_id, ranks by position) -> {"rater", "case_id", "ranks": {system: rank}}; unknown cases raise."""
    out = []
    for rater, case_id, ranks in rows:
        systems = key.get(case_id)
        if systems is None:
            raise RankingError(f"ranking of rater {rater!r} names case {case_id!r}, which the key file does not hold")
        if len(systems) != len(ranks):
            raise RankingError(f"ranking of rater {rater!r} for case {case_id!r} has {len(ranks)} ranks for {len(systems)} answers")
        out.append({"rater": rater, "case_id": case_id, "ranks": dict(zip(systems, ranks))})
    return out


def _system_stats(items: list[dict[str, Any]], systems: list[str], ks: Sequence[int]) -> dict[str, dict[str, float]]:
    out = {}
    for name in systems:
        ranks = np.array([j["ranks"][name] for j in items if name in j["ranks"]], dtype=float)
        stats = {"judgments": float(len(ranks)), "mean_rank": float(ranks.mean()) if len(ranks) else float("nan")}
        for k in ks:
            stats[f"win@{k}"] = float((ranks <= k).mean()) if len(ranks) else float("nan")
        out[name] = stats
    return out


def rank_report(
    rows: Sequence[tuple[str, str, list[int]]], key: dict[str, list[str]], ks: Sequence[int] = (1, 2),
    resamples: int = 1000, confidence: float = 0.95, seed: int = 0, raters: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
    """Win@K, mean rank (with intervals) per system and Kendall's W, from stored rankings."""
    items = judgments(rows, key)
    if raters is not None:
        items = [j for j in items if j["rater"] in set(raters)]
    if not items:
        raise RankingError("no rankings to report: rank some cases first (`empathy-rl rank serve`) or run the judge")
    systems = sorted({s for names in key.values() for s in names})
    ks = sorted(set(ks))
    point = _system_stats(items, systems, ks)
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in items:
        by_case[j["case_id"]].append(j)
    case_ids = sorted(by_case)
    intervals: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = [j for i in rng.integers(0, len(case_ids), len(case_ids)) for j in by_case[case_ids[i]]]
        for name, stats in _system_stats(drawn, systems, ks).items():
            for metric, value in stats.items():
                if metric != "judgments" and np.isfinite(value):
                    intervals[name][metric].append(value)
    alpha = (1 - confidence) / 2
    for name in systems:
        point[name]["intervals"] = {
            m: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))] for m, v in intervals[name].items() if v
        }
    per_case_w = {}
    for case_id, js in by_case.items():
        if len({j["rater"] for j in js}) >= 2:
            names = key[case_id]
            per_case_w[case_id] = kendalls_w([[j["ranks"][s] for s in names] for j in js])
    return {
        "systems": point,
        "judgments": len(items),
        "cases": len(case_ids),
        "raters": sorted({j["rater"] for j in items}),
        "win_k": ks,
        "bootstrap": {"resamples": resamples, "confidence": confidence, "unit": "case"},
        "agreement": {
            "kendalls_w_mean": float(np.mean(list(per_case_w.values()))) if per_case_w else None,
            "cases_with_2plus_raters": len(per_case_w),
            "per_case": per_case_w,
        },
    }


def render_rank_markdown(report: dict[str, Any]) -> str:
    ks = report["win_k"]
    conf = int(round(report["bootstrap"]["confidence"] * 100))
    head = "| system | judgments | " + " | ".join(f"Win@{k}" for k in ks) + " | mean rank |"
    lines = [
        "# Human ranking report", "",
        f"- {report['judgments']} judgment(s) of {report['cases']} case(s) by {len(report['raters'])} rater(s): {', '.join(report['raters'])}",
        f"- Win@K: share of judgments ranking the system in the top K; cells: value [{conf}% bootstrap interval over cases, "
        f"{report['bootstrap']['resamples']} resamples]",
    ]
    w = report["agreement"]["kendalls_w_mean"]
    lines.append(f"- agreement: Kendall's W mean {w:.3f} over {report['agreement']['cases_with_2plus_raters']} case(s) with 2+ raters"
                 if w is not None else "- agreement: no case has 2+ raters, so Kendall's W is not defined")
    lines += ["", head, "| --- | --- | " + " | ".join("---" for _ in ks) + " | --- |"]
    for name, s in report["systems"].items():
        def cell(metric: str) -> str:
            ci = s["intervals"].get(metric)
            return f"{s[metric]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{s[metric]:.3f}"
        lines.append(f"| {name} | {int(s['judgments'])} | " + " | ".join(cell(f"win@{k}") for k in ks) + f" | {cell('mean_rank')} |")
    return "\n".join(lines) + "\n"


def write_rank_report(sets_dir: str | Path, rows: Sequence[tuple[str, str, list[int]]], **kwargs: Any) -> dict[str, Any]:
    """rank_report.json and rank_report.md into `sets_dir`; returns the report."""
    report = rank_report(rows, load_key(sets_dir), **kwargs)
    out = Path(sets_dir)
    (out / "rank_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "rank_report.md").write_text(render_rank_markdown(report), encoding="utf-8")
    return report
