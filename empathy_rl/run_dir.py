"""The run directory: everything a run leaves behind, in one place.

    <run_dir>/
      config.yaml          resolved configuration (defaults <- preset <- command line)
      metrics.jsonl        one JSON object per step (and per evaluation), flat "section/name" keys
      samples.jsonl        a few CoE outputs per step with their reward components (anonymized)
      warmstart/           the warm-started policy (Hugging Face format), if warmstart.steps > 0
      checkpoints/step-N/  policy/ (Hugging Face format) + deepspeed/ (optimizer) + trainer_state.json
      checkpoints/latest   name of the newest complete checkpoint
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from empathy_rl.anonymize import anonymize
from empathy_rl.config import EmpathyRLConfig, to_yaml


class RunDirectory:
    def __init__(self, path: str | Path, cfg: EmpathyRLConfig):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        self.checkpoints = self.path / "checkpoints"
        self.keep_last = cfg.checkpoint.keep_last

    def log_metrics(self, record: dict[str, Any]) -> None:
        with (self.path / "metrics.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")

    def log_samples(self, samples: list[dict[str, Any]]) -> None:
        """Model outputs can echo personal details from the query: anonymize every text field."""
        with (self.path / "samples.jsonl").open("a", encoding="utf-8") as fh:
            for sample in samples:
                clean = {k: anonymize(v) if isinstance(v, str) else v for k, v in sample.items()}
                fh.write(json.dumps(clean, ensure_ascii=False) + "\n")

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    def finish_checkpoint(self, step: int, trainer_state: dict[str, Any]) -> Path:
        """Mark a checkpoint complete (state file last, then `latest`) and prune old ones."""
        directory = self.checkpoint_dir(step)
        (directory / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
        tmp = self.checkpoints / "latest.tmp"
        tmp.write_text(directory.name, encoding="utf-8")
        tmp.replace(self.checkpoints / "latest")
        complete = sorted(p for p in self.checkpoints.glob("step-*") if (p / "trainer_state.json").exists())
        for old in complete[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return directory
