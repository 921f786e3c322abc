"""Reward-model metrics: ROC-AUC against hand-checked values, pairwise accuracy, T calibration."""

from __future__ import annotations

import math

import pytest

from reward.rm_eval import EvalScores, balanced_accuracy, calibrate_threshold, eval_metrics, markdown_report, pairwise_accuracy, roc_auc


def test_roc_auc_hand_checked() -> None:
    # pairs (pos, neg): (.9,.5) win, (.9,.1) win, (.4,.5) loss, (.4,.1) win -> 3/4
    assert roc_auc([0.9, 0.4], [0.5, 0.1]) == pytest.approx(0.75)
    # a tie counts one half: (.5,.5) 0.5, (.5,.2) 1, (.3,.5) 0, (.3,.2) 1 -> 2.5/4
    assert roc_auc([0.5, 0.3], [0.5, 0.2]) == pytest.approx(0.625)
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert math.isnan(roc_auc([], [1.0]))


def test_pairwise_accuracy_is_strict() -> None:
    pos = [0.5, 0.2]
    assert pairwise_accuracy(pos, [(0, 0.1), (1, 0.3), (0, 0.5)]) == pytest.approx(1 / 3)
    assert math.isnan(pairwise_accuracy(pos, []))


def test_calibration_on_hand_made_scores() -> None:
    pos = [0.6, 0.7, 0.8]
    negatives = {"random": [0.1, 0.2, 0.65], "echo_exact": [0.3, 0.4]}
    t, bacc = calibrate_threshold(pos, negatives)
    # T in (0.4, 0.6) rejects every echo, 2 of 3 random, accepts every positive: (1 + (2/3 + 1) / 2) / 2
    assert 0.4 < t < 0.6
    assert bacc == pytest.approx((1 + (2 / 3 + 1) / 2) / 2)
    assert balanced_accuracy(t, pos, negatives) == pytest.approx(bacc)
    # the middle of the best plateau: candidates 0.5 (between .4 and .6) only
    assert t == pytest.approx(0.5)


def test_calibration_separable_and_errors() -> None:
    t, bacc = calibrate_threshold([0.8, 0.9], {"k": [0.1, 0.2]})
    assert bacc == 1.0 and 0.2 < t < 0.8
    with pytest.raises(ValueError):
        calibrate_threshold([], {"k": [0.1]})
    with pytest.raises(ValueError):
        calibrate_threshold([0.5], {"k": []})


def test_eval_metrics_and_report() -> None:
    scores = EvalScores([0.8, 0.6], {"random": [(0, 0.1), (1, 0.7)], "echo_exact": [(0, 0.9), (1, 0.2)], "off_topic": [(0, 0.0), (1, 0.0)]})
    m = eval_metrics(scores, threshold=0.5)
    assert m["pairwise"] == {"random": 0.5, "echo_exact": 0.5, "off_topic": 1.0}
    assert m["echo_below_real"] == 0.5
    assert m["real_at_or_above_T"] == 1.0 and m["below_T"]["random"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)  # off_topic is not part of it
    report = {"training": {"train_seconds": 1.0, "epochs": 1, "margin": 0.2, "num_workers": 1, "total_seconds": 2.0},
              "languages": {"en": {"encoder": "minilm", "eval_split": "test", "threshold": 0.5, "calibration_split": "validation",
                                   "calibration_balanced_accuracy": 0.9, "before": m, "after": m}}}
    text = markdown_report(report)
    assert "| real > echo_exact | 0.500 | 0.500 |" in text and "## en" in text
