"""Step metrics out of the run: Ray's metrics (Prometheus, Grafana, the dashboard) and TensorBoard.

`EXPORTED` is the one list of what goes to Prometheus: the step-metric key in `metrics.jsonl`, the
metric name, its kind and description. Every metric carries a `run` tag (the run directory's name),
so runs sharing a cluster are told apart. Ray prefixes application metrics with `ray_` and counters
get a `_total` suffix in Prometheus, so `empathy_rl_reward_mean` is queried as
`ray_empathy_rl_reward_mean{run="..."}` (`prometheus_name`). The Grafana dashboard in
`cluster/grafana/empathy-rl-dashboard.json` has one panel per metric here (a test checks both ways).

TensorBoard gets every numeric key of every step and evaluation record (not only the exported
ones), under `<run_dir>/tensorboard/`, written with `tensorboardX` (event files TensorBoard reads).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("empathy_rl")


@dataclass(frozen=True)
class Exported:
    key: str  # key of the step record (metrics.jsonl)
    name: str  # Ray metric name (Prometheus adds the `ray_` prefix)
    kind: str  # gauge | counter (a counter is increased by the key's value every step)
    description: str
    unit: str = "none"  # Grafana unit of its panel


EXPORTED: tuple[Exported, ...] = (
    Exported("step", "empathy_rl_step", "gauge", "last finished GRPO step"),
    Exported("reward/mean", "empathy_rl_reward_mean", "gauge", "mean total reward of the step's candidates"),
    Exported("reward/std", "empathy_rl_reward_std", "gauge", "std of the total reward over the step's candidates"),
    Exported("reward/format_pass_rate", "empathy_rl_reward_format_pass_rate", "gauge", "share of candidates with a valid Chain-of-Empathy format", "percentunit"),
    Exported("reward/answer_mean", "empathy_rl_reward_answer_mean", "gauge", "mean answer-reward component"),
    Exported("reward/similarity_mean", "empathy_rl_reward_similarity_mean", "gauge", "mean query/answer similarity"),
    Exported("reward/crisis_mean", "empathy_rl_reward_crisis_mean", "gauge", "mean crisis component over crisis queries"),
    Exported("reward/zero_std_group_frac", "empathy_rl_reward_zero_std_group_frac", "gauge", "share of groups whose rewards are all equal (no signal)", "percentunit"),
    Exported("train/kl", "empathy_rl_train_kl", "gauge", "KL to the reference policy (per token)"),
    Exported("train/loss", "empathy_rl_train_loss", "gauge", "policy loss"),
    Exported("train/clip_frac", "empathy_rl_train_clip_fraction", "gauge", "share of tokens whose ratio was clipped", "percentunit"),
    Exported("train/grad_norm", "empathy_rl_train_grad_norm", "gauge", "gradient norm before clipping"),
    Exported("train/logprob_gap", "empathy_rl_train_logprob_gap", "gauge", "mean |vLLM - learner| log-prob of the sampled tokens"),
    Exported("rollout/tokens_per_s", "empathy_rl_rollout_tokens_per_second", "gauge", "generated tokens per second of generation time"),
    Exported("rollout/response_len_mean", "empathy_rl_rollout_response_len_mean", "gauge", "mean response length in tokens"),
    Exported("rollout/policy_version", "empathy_rl_policy_version", "gauge", "policy version the rollout workers serve"),
    Exported("rollout/worker_restarts_total", "empathy_rl_rollout_worker_restarts", "gauge", "rollout actors restarted so far in this run (Ray max_restarts)"),
    Exported("rollout/policy_lag", "empathy_rl_policy_version_lag", "gauge", "learner version minus the oldest version a trained candidate came from"),
    Exported("time/generate_s", "empathy_rl_time_generate_seconds", "gauge", "generation time of the step", "s"),
    Exported("time/reward_s", "empathy_rl_time_reward_seconds", "gauge", "reward time of the step", "s"),
    Exported("time/train_s", "empathy_rl_time_train_seconds", "gauge", "training time of the step", "s"),
    Exported("time/sync_s", "empathy_rl_time_sync_seconds", "gauge", "weight-sync time of the step", "s"),
    Exported("time/step_s", "empathy_rl_time_step_seconds", "gauge", "wall time of the step", "s"),
    Exported("rollout/tokens", "empathy_rl_generated_tokens", "counter", "generated tokens (cumulative)"),
    Exported("rollout/candidates", "empathy_rl_candidates", "counter", "candidates sampled and trained on (cumulative)"),
)


def prometheus_name(metric: Exported) -> str:
    """The series name Prometheus holds: `ray_` prefix, and `_total` for counters."""
    return "ray_" + metric.name + ("_total" if metric.kind == "counter" else "")


def _finite(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class RayMetrics:
    """`ray.util.metrics` gauges and counters of `EXPORTED`, tagged with `run`."""

    def __init__(self, run: str):
        from ray.util.metrics import Counter, Gauge

        self.run = run
        self.metrics = {}
        for m in EXPORTED:
            cls = Gauge if m.kind == "gauge" else Counter
            self.metrics[m.key] = (m, cls(m.name, description=m.description, tag_keys=("run",)).set_default_tags({"run": run}))

    def record(self, record: dict[str, Any]) -> None:
        for key, (m, metric) in self.metrics.items():
            value = _finite(record.get(key))
            if value is None:
                continue
            if m.kind == "gauge":
                metric.set(value)
            elif value > 0:
                metric.inc(value)


class TensorBoardWriter:
    """Every numeric key of a record as a scalar at its step, under `<run_dir>/tensorboard/`."""

    def __init__(self, run_dir: Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(Path(run_dir) / "tensorboard"), flush_secs=30)

    def record(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        phase = record.get("phase", "grpo")
        for key, value in record.items():
            value = _finite(value)
            if value is None or key == "step":
                continue
            tag = key if phase in ("grpo", "eval") else f"{phase}/{key}"
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MetricsSink:
    """Where the driver sends each record besides metrics.jsonl (`logging.ray_metrics`, `logging.tensorboard`)."""

    def __init__(self, run_dir: Path, ray_metrics: bool, tensorboard: bool):
        self.ray = RayMetrics(Path(run_dir).resolve().name) if ray_metrics else None
        self.tb = TensorBoardWriter(run_dir) if tensorboard else None

    def record(self, record: dict[str, Any]) -> None:
        if self.ray is not None and record.get("phase") == "grpo":
            self.ray.record(record)
        if self.tb is not None:
            self.tb.record(record)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
