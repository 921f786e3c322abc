"""Held-out evaluation of the reward model: pairwise accuracy, ROC-AUC, threshold calibration, report.

For every held-out query q with a real answer a+ and negatives a- of several kinds (`rm_data.EVAL_KINDS`):
- pairwise accuracy per kind: the share of queries with sim(q, a+) > sim(q, a-) (ties count as wrong);
  for the echo kinds this is the rate at which an echo of the query scores below a real answer;
- ROC-AUC of real answers against all negatives pooled, and per kind (ties count one half);
- with a threshold T: the share of real answers at or above T, of each negative kind below T, and the
  balanced accuracy (mean of the two sides, the negative side averaged over kinds).

T criterion: the T that maximises that balanced accuracy on the calibration split, with every
negative kind except `off_topic` weighted equally (off-topic texts are the same few in every split,
so they stay out of calibration and measure generalisation only). Among equally good thresholds the
middle one is taken; candidates are midpoints between consecutive observed scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from reward.rm_data import ECHO_KINDS, EvalSet

CALIBRATION_EXCLUDES = ("off_topic",)


# ------------------------------------------------------------------------------ metrics


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(score of a random positive > score of a random negative), ties 1/2 (Mann-Whitney U).
    NaN when either side is empty."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def pairwise_accuracy(positives: Sequence[float], negatives: Sequence[tuple[int, float]]) -> float:
    """Share of (query index, negative score) with positives[query] > score strictly. NaN if none."""
    if not negatives:
        return float("nan")
    return sum(positives[i] > s for i, s in negatives) / len(negatives)


def balanced_accuracy(threshold: float, positives: Sequence[float], negatives: Mapping[str, Sequence[float]]) -> float:
    """(share of positives >= T + mean over kinds of the share of negatives < T) / 2."""
    kinds = [np.asarray(v) for v in negatives.values() if len(v)]
    if not len(positives) or not kinds:
        raise ValueError("balanced accuracy needs positives and at least one non-empty negative kind")
    tpr = float((np.asarray(positives) >= threshold).mean())
    tnr = float(np.mean([(k < threshold).mean() for k in kinds]))
    return (tpr + tnr) / 2


def calibrate_threshold(positives: Sequence[float], negatives: Mapping[str, Sequence[float]]) -> tuple[float, float]:
    """(T, balanced accuracy at T): the T maximising `balanced_accuracy` (middle of the ties)."""
    kinds = {k: np.sort(np.asarray(v, dtype=np.float64)) for k, v in negatives.items() if len(v)}
    pos = np.sort(np.asarray(positives, dtype=np.float64))
    if pos.size == 0 or not kinds:
        raise ValueError("threshold calibration needs real answers and at least one non-empty negative kind")
    values = np.unique(np.concatenate([pos, *kinds.values()]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    tpr = 1 - np.searchsorted(pos, candidates, side="left") / pos.size  # share >= T
    tnr = np.mean([np.searchsorted(v, candidates, side="left") / v.size for v in kinds.values()], axis=0)  # share < T
    bacc = (tpr + tnr) / 2
    best = np.flatnonzero(np.isclose(bacc, bacc.max(), rtol=0, atol=1e-12))
    t = float(candidates[best[len(best) // 2]])
    return t, float(bacc.max())


# ------------------------------------------------------------------------------ scoring an eval set


@dataclass
class EvalScores:
    """Similarities of one eval set under one scorer."""

    positives: list[float]
    negatives: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def negative_values(self, exclude: Sequence[str] = ()) -> dict[str, list[float]]:
        return {k: [s for _, s in v] for k, v in self.negatives.items() if v and k not in exclude}


class FeatureCache:
    """Encoder features of an eval set's texts, computed once and reused by the scorers before and
    after training (the encoder input does not change; only heads and projection do)."""

    def __init__(self, scorer, eval_set: EvalSet):
        self.texts = eval_set.texts()
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.features = scorer.featurize(self.texts)


@torch.no_grad()
def score_eval_set(scorer, eval_set: EvalSet, cache: FeatureCache | None = None) -> EvalScores:
    cache = cache or FeatureCache(scorer, eval_set)
    dev = scorer.query_head.weight.device
    rows = range(len(cache.texts))
    q_emb = scorer.embed_queries(cache.features.take(rows, dev))
    a_emb = scorer.embed_answers(cache.features.take(rows, dev))

    def sims(queries: Sequence[int], answers: Sequence[str]) -> list[float]:
        qi = torch.as_tensor([cache.index[eval_set.queries[i]] for i in queries], dtype=torch.long)
        ai = torch.as_tensor([cache.index[a] for a in answers], dtype=torch.long)
        if len(qi) == 0:
            return []
        return (q_emb[qi] * a_emb[ai]).sum(-1).float().cpu().tolist()

    n = len(eval_set.queries)
    out = EvalScores(sims(range(n), eval_set.positives))
    for kind, pairs in eval_set.negatives.items():
        values = sims([i for i, _ in pairs], [t for _, t in pairs])
        out.negatives[kind] = [(i, v) for (i, _), v in zip(pairs, values)]
    return out


def _clean(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else round(float(x), 4)


def eval_metrics(scores: EvalScores, threshold: float | None = None) -> dict[str, Any]:
    """Every reported number for one eval set and scorer (NaN -> None for JSON)."""
    pos = scores.positives
    negs = {k: v for k, v in scores.negatives.items() if v}
    all_neg = [s for v in negs.values() for _, s in v]
    echoes = [p for k in ECHO_KINDS for p in negs.get(k, [])]
    out: dict[str, Any] = {
        "queries": len(pos),
        "negatives": {k: len(v) for k, v in negs.items()},
        "pairwise": {k: _clean(pairwise_accuracy(pos, v)) for k, v in negs.items()},
        "echo_below_real": _clean(pairwise_accuracy(pos, echoes)),
        "auc": _clean(roc_auc(pos, all_neg)),
        "auc_by_kind": {k: _clean(roc_auc(pos, [s for _, s in v])) for k, v in negs.items()},
        "mean_similarity": {"real": _clean(float(np.mean(pos))) if pos else None,
                            **{k: _clean(float(np.mean([s for _, s in v]))) for k, v in negs.items()}},
    }
    if threshold is not None and pos:
        cal = {k: [s for _, s in v] for k, v in negs.items() if k not in CALIBRATION_EXCLUDES}
        out["threshold"] = round(threshold, 4)
        out["real_at_or_above_T"] = _clean(float(np.mean(np.asarray(pos) >= threshold)))
        out["below_T"] = {k: _clean(float(np.mean(np.asarray([s for _, s in v]) < threshold))) for k, v in negs.items()}
        out["balanced_accuracy"] = _clean(balanced_accuracy(threshold, pos, cal)) if cal else None
    return out


# ------------------------------------------------------------------------------ report


def write_reports(directory: Path, report: dict[str, Any]) -> None:
    """`report.json` (everything) and `report.md` (the headline table per language)."""
    (directory / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (directory / "report.md").write_text(markdown_report(report), encoding="utf-8")


def _fmt(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def markdown_report(report: dict[str, Any]) -> str:
    lines = ["# Reward model: held-out evaluation", ""]
    train = report.get("training", {})
    lines.append(f"Trained in {_fmt(train.get('train_seconds'))} s of Ray Train fit ({train.get('epochs')} epochs, "
                 f"margin {train.get('margin')}, {train.get('num_workers')} worker(s)); total wall time "
                 f"{_fmt(train.get('total_seconds'))} s. Pairwise accuracy = share of held-out queries whose real "
                 "answer scores strictly above the negative. T is calibrated on the calibration split (max balanced "
                 "accuracy, negative kinds weighted equally, off-topic excluded).")
    lines.append("")
    for lang, res in report.get("languages", {}).items():
        before, after = res["before"], res["after"]
        lines += [f"## {lang}: encoder {res['encoder']}, eval split {res['eval_split']} ({after['queries']} queries), "
                  f"T = {_fmt(res['threshold'])} (calibrated on {res['calibration_split']}, balanced accuracy "
                  f"{_fmt(res['calibration_balanced_accuracy'])})", "",
                  "| metric | before training | after training |", "| --- | --- | --- |"]
        for kind in after["pairwise"]:
            lines.append(f"| real > {kind} | {_fmt(before['pairwise'].get(kind))} | {_fmt(after['pairwise'].get(kind))} |")
        lines.append(f"| real > any echo | {_fmt(before['echo_below_real'])} | {_fmt(after['echo_below_real'])} |")
        lines.append(f"| ROC-AUC (all negatives) | {_fmt(before['auc'])} | {_fmt(after['auc'])} |")
        lines.append(f"| balanced accuracy at T | {_fmt(before.get('balanced_accuracy'))} | {_fmt(after.get('balanced_accuracy'))} |")
        lines.append(f"| real answers >= T | {_fmt(before.get('real_at_or_above_T'))} | {_fmt(after.get('real_at_or_above_T'))} |")
        for kind in ECHO_KINDS:
            if kind in after.get("below_T", {}):
                lines.append(f"| {kind} < T | {_fmt(before['below_T'].get(kind))} | {_fmt(after['below_T'].get(kind))} |")
        lines.append("")
    return "\n".join(lines)
