"""The run directory: everything a run leaves behind, in one place.

    <run_dir>/
      config.yaml          resolved configuration (defaults <- preset <- command line)
      config.resume-step-N.yaml  the configuration of a resumed part, when it was resumed at step N
      metrics.jsonl        one JSON object per step (and per evaluation), flat "section/name" keys
      prompts.jsonl        one line per GRPO step: {"step": N, "record_ids": [...]} (ids only, no text)
      samples.jsonl        a few CoE outputs per step with their reward components (anonymized)
      checkpoints/step-N/  policy/ (Hugging Face format) + deepspeed/ (optimizer, scheduler) + rng/ +
                           driver_rng.pt + trainer_state.json (written last)
      checkpoints/latest   name of the newest complete checkpoint (replaced atomically)

A new run refuses a directory that already holds a run; a resumed run keeps what the checkpoint
covers and drops the records of steps after it (they are redone), so every step appears once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from empathy_rl.anonymize import anonymize
from empathy_rl.atomic_io import atomic_write_text
from empathy_rl.checkpointing import CheckpointStore
from empathy_rl.config import EmpathyRLConfig, to_yaml

log = logging.getLogger("empathy_rl")

STEP_LOGS = ("metrics.jsonl", "samples.jsonl", "prompts.jsonl")


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (names the directory and what to do)."""


class RunDirectory:
    def __init__(self, path: str | Path, cfg: EmpathyRLConfig, resume_step: Optional[int] = None):
        """Open `path` for a new run (it must be empty or absent) or, with `resume_step`, to continue one."""
        self.path = Path(path)
        if resume_step is None:
            self.check_new(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / f"config.resume-step-{resume_step}.yaml").write_text(to_yaml(cfg), encoding="utf-8")
            self.rewind(resume_step)
        self.sinks: list[Any] = []  # also get every metrics record (empathy_rl.metrics_export.MetricsSink)
        self.checkpoints = self.path / "checkpoints"
        self.store = CheckpointStore(self.checkpoints, cfg.checkpoint.keep_last)
        self.keep_last = cfg.checkpoint.keep_last

    @staticmethod
    def check_new(path: str | Path) -> None:
        """RunDirectoryError unless `path` can hold a new run (absent or empty); creates nothing."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            held = ", ".join(sorted(p.name for p in path.iterdir())[:6])
            raise RunDirectoryError(
                f"run directory {path} is not empty ({held}); continue that run with `empathy-rl grpo --resume auto` "
                f"(checkpoint.resume=auto), or choose another trainer.run_dir"
            )

    def rewind(self, step: int) -> None:
        """Drop the step records after `step` (the run goes back to a checkpoint and redoes them)."""
        for name in STEP_LOGS:
            dropped = self._truncate(self.path / name, step)
            if dropped:
                log.info("back to step %d: %d record(s) of later steps dropped from %s (they are redone)", step, dropped, name)

    @staticmethod
    def _truncate(path: Path, step: int) -> int:
        """Keep the lines of `path` whose GRPO/eval step is <= `step`."""
        if not path.is_file():
            return 0
        keep, dropped = [], 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by the crash
                dropped += 1
                continue
            if int(record.get("step", 0)) > step:
                dropped += 1
                continue
            keep.append(line)
        atomic_write_text(path, "".join(line + "\n" for line in keep))
        return dropped

    def _append(self, name: str, lines: list[str]) -> None:
        with (self.path / name).open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))

    def log_metrics(self, record: dict[str, Any]) -> None:
        self._append("metrics.jsonl", [json.dumps(record, ensure_ascii=False, sort_keys=True)])
        for sink in self.sinks:
            sink.record(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def log_prompts(self, step: int, record_ids: list[str]) -> None:
        """The ids (never the text) of the records step `step` drew, in order."""
        self._append("prompts.jsonl", [json.dumps({"step": step, "record_ids": list(record_ids)})])

    def log_samples(self, samples: list[dict[str, Any]]) -> None:
        """Model outputs can echo personal details from the query: anonymize every text field."""
        clean = [{k: anonymize(v) if isinstance(v, str) else v for k, v in sample.items()} for sample in samples]
        self._append("samples.jsonl", [json.dumps(c, ensure_ascii=False) for c in clean])

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
