"""Checkpoints that survive a crash at any moment, and finding the one to resume from.

A checkpoint of step N is written into `checkpoints/.tmp-step-N/` (the learner writes `policy/`,
`deepspeed/` and `rng/`; the driver then writes `driver_rng.pt` and, last, `trainer_state.json`).
Every file is fsynced, the directory is renamed to `step-N` (an atomic rename on one filesystem),
and only then is `checkpoints/latest` replaced, itself through a fsynced temporary file and a
rename. So at every instant `latest` names a complete checkpoint (or does not exist yet), and a
directory named `step-N` always holds a `trainer_state.json`: a crash while writing leaves at worst
a `.tmp-step-N/` directory, which the next run removes.

Ray-free on purpose: the run directory, the driver and the tests use it alike.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

from empathy_rl.atomic_io import atomic_write_text, fsync_dir

STATE_FILE = "trainer_state.json"
LATEST = "latest"
TMP_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """No usable checkpoint where one was asked for; the message names the path."""


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def is_complete(directory: Path) -> bool:
    return directory.is_dir() and not directory.name.startswith(TMP_PREFIX) and (directory / STATE_FILE).is_file()


def fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then every directory bottom-up (so the names are durable too)."""
    dirs = []
    for dirpath, _, files in os.walk(root):
        dirs.append(dirpath)
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for dirpath in reversed(dirs):
        fsync_dir(Path(dirpath))


class CheckpointStore:
    """`<run_dir>/checkpoints`: temporary directories, commit, `latest`, pruning, lookup."""

    def __init__(self, root: str | Path, keep_last: int):
        self.root = Path(root)
        self.keep_last = keep_last

    def staging_dir(self, step: int) -> Path:
        """A fresh, empty directory to write step `step`'s checkpoint into (a stale one is removed)."""
        tmp = self.root / f"{TMP_PREFIX}{step_name(step)}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, staging: Path, step: int, trainer_state: dict[str, Any]) -> Path:
        """Write the state file, fsync, rename to `step-N`, point `latest` at it, prune old ones."""
        (staging / STATE_FILE).write_text(json.dumps(trainer_state, indent=2, sort_keys=True), encoding="utf-8")
        fsync_tree(staging)
        final = self.root / step_name(step)
        if final.exists():  # left by a run that crashed before updating `latest`; this one replaces it
            shutil.rmtree(final)
        os.rename(staging, final)
        fsync_dir(self.root)
        atomic_write_text(self.root / LATEST, final.name)
        self.prune()
        return final

    def complete(self) -> list[Path]:
        """Complete step checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if is_complete(p))

    def latest(self) -> Optional[Path]:
        """The checkpoint `latest` names if it is complete, else the newest complete one, else None."""
        pointer = self.root / LATEST
        if pointer.is_file():
            named = self.root / pointer.read_text(encoding="utf-8").strip()
            if named.name and is_complete(named):
                return named
        done = self.complete()
        return done[-1] if done else None

    def prune(self) -> list[Path]:
        """Delete all but the newest `keep_last` complete checkpoints (never the one `latest` names)."""
        keep = {self.latest()}
        removed = []
        for old in self.complete()[: -self.keep_last]:
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)
                removed.append(old)
        return removed

    def remove_staging(self) -> list[Path]:
        """Remove `.tmp-*` directories a crashed writer left behind."""
        stale = sorted(self.root.glob(f"{TMP_PREFIX}*")) if self.root.is_dir() else []
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale


def resolve_resume(run_dir: str | Path, resume: str) -> Path:
    """The checkpoint directory to resume from: `auto` = the run directory's latest complete one."""
    if resume == "auto":
        found = CheckpointStore(Path(run_dir) / "checkpoints", keep_last=1).latest()
        if found is None:
            raise CheckpointError(f"--resume auto: no complete checkpoint under {Path(run_dir) / 'checkpoints'}")
        return found
    path = Path(resume)
    if path.is_dir() and not is_complete(path) and (path / LATEST).is_file():  # a checkpoints/ directory
        found = CheckpointStore(path, keep_last=1).latest()
        if found is not None:
            return found
    if not is_complete(path):
        raise CheckpointError(f"--resume {resume}: not a complete checkpoint (no {STATE_FILE} in {path})")
    return path


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- random number generators


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch generator states of this process (torch.save-able)."""
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_rng(path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(capture_rng(), path)


def load_rng(path: Path) -> None:
    import torch

    restore_rng(torch.load(path, weights_only=False))
