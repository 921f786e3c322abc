"""Checkpoint store and run directory, without Ray: atomic commit, `latest`, pruning, resume lookup,
refusing a used run directory, truncating step logs on resume, RNG round trip."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from empathy_rl import checkpointing
from empathy_rl.checkpointing import CheckpointError, CheckpointStore, resolve_resume
from empathy_rl.config import load_config
from empathy_rl.run_dir import RunDirectory, RunDirectoryError

REPO = Path(__file__).resolve().parents[1]


def _write(store: CheckpointStore, step: int) -> Path:
    staging = store.staging_dir(step)
    (staging / "policy").mkdir()
    (staging / "policy" / "weights.bin").write_bytes(bytes([step]) * 16)
    return store.commit(staging, step, {"step": step, "policy_version": step, "loader": {"epoch": 0, "position": 2 * step}})


def test_commit_points_latest_at_the_newest_and_keeps_last_n(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep_last=2)
    for step in range(1, 5):
        _write(store, step)
    assert [p.name for p in store.complete()] == ["step-000003", "step-000004"]
    assert (store.root / "latest").read_text() == "step-000004"
    assert store.latest() == store.root / "step-000004"
    assert not list(store.root.glob(".tmp-*")) and not (store.root / "latest.tmp").exists()
    assert checkpointing.read_state(store.latest())["loader"] == {"epoch": 0, "position": 8}


def test_keep_last_one_keeps_only_the_latest(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep_last=1)
    for step in (2, 4, 6):
        _write(store, step)
    assert [p.name for p in store.complete()] == ["step-000006"]


def test_a_crash_while_writing_leaves_latest_on_the_previous_complete_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "checkpoints", keep_last=3)
    _write(store, 1)
    # A writer killed before the state file: only a staging directory is left.
    half = store.staging_dir(2)
    (half / "policy").mkdir()
    assert resolve_resume(tmp_path, "auto") == store.root / "step-000001"
    # A crash at the rename (after the state file and fsync): still step 1.
    monkeypatch.setattr(checkpointing.os, "rename", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        _write(store, 2)
    monkeypatch.undo()
    assert (store.root / "latest").read_text() == "step-000001"
    assert resolve_resume(tmp_path, "auto") == store.root / "step-000001"
    assert [p.name for p in store.remove_staging()] == [".tmp-step-000002"]
    assert not list(store.root.glob(".tmp-*"))


def test_a_crash_before_latest_is_replaced_keeps_the_old_latest_and_the_next_save_replaces_the_orphan(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "checkpoints", keep_last=3)
    _write(store, 1)
    real_write = checkpointing.atomic_write_text
    monkeypatch.setattr(checkpointing, "atomic_write_text", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        _write(store, 2)
    monkeypatch.setattr(checkpointing, "atomic_write_text", real_write)
    assert store.latest() == store.root / "step-000001"  # step-000002 is complete but `latest` was not moved
    _write(store, 2)  # the resumed run redoes step 2 and replaces the orphan
    assert store.latest() == store.root / "step-000002"


def test_latest_naming_a_missing_directory_falls_back_to_the_newest_complete(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep_last=5)
    _write(store, 1)
    _write(store, 2)
    (store.root / "latest").write_text("step-000009")
    assert store.latest() == store.root / "step-000002"


def test_resolve_resume(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_resume(tmp_path, "auto")
    store = CheckpointStore(tmp_path / "checkpoints", keep_last=5)
    first = _write(store, 1)
    _write(store, 2)
    assert resolve_resume(tmp_path, str(first)) == first
    assert resolve_resume(tmp_path, str(store.root)) == store.root / "step-000002"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, str(tmp_path / "nowhere"))


def _cfg(run_dir: Path, *extra: str):
    return load_config(REPO / "configs" / "tiny-cpu.yaml", [f"trainer.run_dir={run_dir}", *extra])


def test_a_new_run_refuses_a_used_run_directory(tmp_path):
    run = tmp_path / "run"
    RunDirectory(run, _cfg(run)).log_metrics({"phase": "grpo", "step": 1})
    with pytest.raises(RunDirectoryError, match=str(run)) as err:
        RunDirectory(run, _cfg(run))
    assert "--resume auto" in str(err.value)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # nothing appended or overwritten


def test_cli_grpo_into_a_used_run_directory_exits_2_naming_it(tmp_path, capsys):
    from empathy_rl.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    assert main(["grpo", "--config", str(REPO / "configs" / "tiny-cpu.yaml"), f"trainer.run_dir={run}"]) == 2
    assert str(run) in capsys.readouterr().err
    assert main(["grpo", "--config", str(REPO / "configs" / "tiny-cpu.yaml"), "--resume", "auto", f"trainer.run_dir={run}"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_resume_drops_records_of_steps_after_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    d = RunDirectory(run, _cfg(run))
    d.log_metrics({"phase": "eval", "step": 0})
    for step in (1, 2, 3):
        d.log_prompts(step, [f"r{step}a", f"r{step}b"])
        d.log_metrics({"phase": "grpo", "step": step})
        d.log_samples([{"step": step, "response": "x"}])
    with (run / "prompts.jsonl").open("a") as fh:
        fh.write('{"step": 4, "record_')  # a line cut by SIGKILL
    config_before = (run / "config.yaml").read_text()
    resumed = RunDirectory(run, _cfg(run, "rollout.num_workers=2"), resume_step=2)
    assert [r["step"] for r in resumed.read_jsonl("prompts.jsonl")] == [1, 2]
    assert [(r["phase"], r["step"]) for r in resumed.read_jsonl("metrics.jsonl")] == [("eval", 0), ("grpo", 1), ("grpo", 2)]
    assert [r["step"] for r in resumed.read_jsonl("samples.jsonl")] == [1, 2]
    assert (run / "config.yaml").read_text() == config_before
    assert "num_workers: 2" in (run / "config.resume-step-2.yaml").read_text()


def test_rng_round_trip(tmp_path):
    import numpy as np
    import torch

    checkpointing.save_rng(tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(1)
    checkpointing.load_rng(tmp_path / "rng.pt")
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_atomic_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "latest"
    checkpointing.atomic_write_text(target, "step-000001")
    checkpointing.atomic_write_text(target, "step-000002")
    assert target.read_text() == "step-000002" and sorted(os.listdir(tmp_path)) == ["latest"]
