"""Monitoring without Ray: the Grafana dashboard matches the exported metrics both ways, TensorBoard
event files hold the step metrics, `empathy-rl plot` draws PNGs from a run's metrics.jsonl."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from empathy_rl.metrics_export import EXPORTED, TensorBoardWriter, prometheus_name

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "cluster" / "grafana" / "empathy-rl-dashboard.json"


def _dashboard_metric_names() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            names |= set(re.findall(r"\bray_empathy_rl_[a-z_]+", target["expr"]))
    return names


def test_grafana_dashboard_is_valid_and_covers_every_exported_metric_and_no_other():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert {"id", "type", "title", "gridPos"} <= set(panel)
        if panel["type"] == "timeseries":
            assert panel["targets"] and all('run=~"$run"' in t["expr"] for t in panel["targets"])
    assert "run" in {v["name"] for v in dash["templating"]["list"]}
    exported = {prometheus_name(m) for m in EXPORTED}
    shown = _dashboard_metric_names()
    assert shown == exported, f"only in the dashboard: {shown - exported}; not in the dashboard: {exported - shown}"


def test_exported_keys_are_unique_and_named_for_prometheus():
    assert len({m.key for m in EXPORTED}) == len({m.name for m in EXPORTED}) == len(EXPORTED)
    for m in EXPORTED:
        assert re.fullmatch(r"empathy_rl_[a-z_]+", m.name) and m.kind in ("gauge", "counter")


def _read_events(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of every TFRecord event file under `directory` (length, crc, Event proto, crc)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_tensorboard_event_files_hold_every_numeric_metric(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.record({"phase": "grpo", "step": 1, "reward/mean": 0.5, "train/kl": 0.01, "note": "text is skipped"})
    writer.record({"phase": "grpo", "step": 2, "reward/mean": 0.75, "train/kl": float("nan")})
    writer.record({"phase": "warmstart", "step": 10, "sft/loss": 2.0})
    writer.close()
    scalars = _read_events(tmp_path / "tensorboard")
    assert scalars["reward/mean"] == [(1, 0.5), (2, 0.75)]
    assert scalars["train/kl"] == [(1, pytest.approx(0.01))]
    assert scalars["warmstart/sft/loss"] == [(10, 2.0)]
    assert "note" not in scalars


def test_plot_command_draws_pngs_of_a_running_run(tmp_path, capsys):
    from empathy_rl.cli import main

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"phase": "eval", "step": 0, "eval/mean": 0.2, "eval/format_pass_rate": 0.1}]
    for step in range(1, 6):
        lines.append({
            "phase": "grpo", "step": step, "reward/mean": 0.1 * step, "reward/std": 0.05, "reward/format_pass_rate": 0.2,
            "train/kl": 0.001 * step, "train/loss": -0.1, "time/generate_s": 1.0, "time/train_s": 2.0, "rollout/tokens_per_s": 100.0,
        })
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"phase": "grpo", "st')  # a line being written
    assert main(["plot", str(run)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == ["reward.png", "timing.png", "training.png"]
    for path in printed:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(path).stat().st_size > 5000


def test_plot_command_on_a_directory_without_metrics_exits_2(tmp_path, capsys):
    from empathy_rl.cli import main

    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
