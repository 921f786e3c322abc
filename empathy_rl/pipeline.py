"""`empathy-rl pipeline`: prepare-data -> sft -> train-rm -> grpo -> eval from one config.

Each stage skips itself when its output exists and its inputs are unchanged. "Inputs" is a
fingerprint: the config keys the stage reads, the content of the files it reads (data sources,
CoE data, the base model's files) and the fingerprints of the stages it depends on, so a changed
upstream stage re-runs everything after it. `--from STAGE` forces that stage and the ones after
it. A stage's record (`<pipeline.state_dir>/<stage>.json`) is written only after it succeeded;
GRPO also leaves a `grpo.started.json`, so an interrupted GRPO run with unchanged inputs resumes
from its latest checkpoint instead of starting over.

An output that must be rebuilt is moved aside (`pipeline.on_rerun=backup`, the default: nothing
already written is lost) or deleted (`replace`, what `make demo` uses).

One local Ray cluster (or the one at `cluster.address`) serves every stage; the stages are the
same functions the single commands call (`prepare_data`, `run_sft`, `train_reward_model`,
`GRPOTrainer.fit`, `evaluate_systems`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from empathy_rl.atomic_io import atomic_write_json
from empathy_rl.config import ConfigError, EmpathyRLConfig

log = logging.getLogger("empathy_rl")

STAGES: tuple[str, ...] = ("prepare-data", "sft", "train-rm", "grpo", "eval")
# Files above this size are fingerprinted by (size, mtime) instead of content: hashing an 8B
# model's 16 GB on every pipeline start would cost minutes. Smaller files are hashed.
HASH_LIMIT_BYTES = 64 * 1024 * 1024


class PipelineError(RuntimeError):
    """A stage failed or its inputs are missing; the message names the stage."""


# ------------------------------------------------------------------------------ fingerprints


def _file_digest(path: Path, cache: dict[Path, str]) -> str:
    path = path.resolve()
    if path not in cache:
        st = path.stat()
        if st.st_size > HASH_LIMIT_BYTES:
            cache[path] = f"size={st.st_size},mtime_ns={st.st_mtime_ns}"
        else:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            cache[path] = "sha256=" + h.hexdigest()
    return cache[path]


def _crisis_model_files() -> list[str]:
    """The files behind the `crisis` flag of prepared records: rules and classifier heads."""
    from importlib import resources

    assets = resources.files("empathy_rl.assets")
    return [str(assets.joinpath(name)) for name in ("crisis_rules.yaml", "crisis_classifier.json", "crisis_classifier_precise.json")]


def files_digest(paths: Sequence[str | os.PathLike[str]], cache: Optional[dict[Path, str]] = None) -> dict[str, str]:
    """Digest per file; a directory contributes each file below it (sorted). Missing paths read 'missing'."""
    cache = {} if cache is None else cache
    out: dict[str, str] = {}
    for given in paths:
        p = Path(given)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                out[str(f)] = _file_digest(f, cache)
        elif p.is_file():
            out[str(p)] = _file_digest(p, cache)
        else:
            out[str(p)] = "missing"
    return out


def fingerprint(inputs: dict[str, Any]) -> str:
    """A stable hash of a JSON-able description of a stage's inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _section(cfg: EmpathyRLConfig, name: str) -> dict[str, Any]:
    return dataclasses.asdict(getattr(cfg, name))


# ------------------------------------------------------------------------------ stages


@dataclass
class Stage:
    name: str
    output: Path  # what the stage writes (a directory); exists + unchanged inputs = skip
    done_marker: Path  # a file inside `output` written last by the stage
    inputs: Callable[[], dict[str, Any]]  # the stage's own inputs (upstream fingerprints are added)
    run: Callable[[], dict[str, Any]]  # runs the stage, returns a small summary for the record
    depends: tuple[str, ...] = ()


def _utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Pipeline:
    """The stages of one config, their fingerprints and records (see the module docstring)."""

    def __init__(self, cfg: EmpathyRLConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.state_dir = Path(cfg.pipeline.state_dir)
        self._digests: dict[Path, str] = {}
        unknown = [s for s in cfg.pipeline.stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"pipeline.stages: unknown stage(s) {unknown}; choose from {list(STAGES)}")
        self.enabled = [s for s in STAGES if s in cfg.pipeline.stages]
        if "train-rm" in self.enabled and "grpo" in self.enabled:
            if Path(cfg.reward.encoder or "").resolve() != Path(cfg.reward_model.output_dir).resolve():
                raise ConfigError(
                    f"reward.encoder={cfg.reward.encoder!r} is not reward_model.output_dir={cfg.reward_model.output_dir!r}: "
                    "GRPO would not use the reward model the pipeline trains; point reward.encoder at it, or drop train-rm from pipeline.stages"
                )
        self.stages = {s.name: s for s in self._build()}
        self._fingerprints: dict[str, str] = {}
        self._start(None)

    # -------------------------------------------------------------- stage definitions
    def _build(self) -> list[Stage]:
        cfg = self.cfg
        sft_policy = Path(cfg.sft.output_dir) / "policy"
        grpo_cfg = self.grpo_config()
        return [
            Stage(
                "prepare-data", Path(cfg.data.prepared_dir), Path(cfg.data.prepared_dir) / "summary.json",
                lambda: {"data": _section(cfg, "data"), "safety": _section(cfg, "safety"),
                         "files": files_digest([s.path for s in cfg.data.sources] + _crisis_model_files(), self._digests)},
                self._run_prepare,
            ),
            Stage(
                "sft", Path(cfg.sft.output_dir), Path(cfg.sft.output_dir) / "sft.json",
                lambda: {
                    "sft": _section(cfg, "sft"), "model": _section(cfg, "model"),
                    "prompt": {k: getattr(cfg.rollout, k) for k in ("system_prompt_style", "enable_thinking", "overlong_prompt")},
                    "files": files_digest([*cfg.sft.data, cfg.model.path, cfg.model.tokenizer_path or cfg.model.path], self._digests),
                },
                self._run_sft,
            ),
            Stage(
                "train-rm", Path(cfg.reward_model.output_dir), Path(cfg.reward_model.output_dir) / "reward_model.json",
                lambda: {"reward_model": _section(cfg, "reward_model"),
                         "files": files_digest([s.path for s in cfg.reward_model.sources], self._digests)},
                self._run_train_rm,
            ),
            Stage(
                "grpo", Path(cfg.trainer.run_dir), Path(cfg.trainer.run_dir) / "summary.json",
                lambda: {
                    # everything GRPO reads, minus what only later stages, tools or logging read
                    k: v for k, v in dataclasses.asdict(grpo_cfg).items()
                    if k not in ("eval", "rank", "pipeline", "logging", "timeouts", "draft", "review", "sft", "reward_model")
                } | {"files": files_digest(self._grpo_files(grpo_cfg), self._digests)},
                self._run_grpo,
                depends=("prepare-data", "sft", "train-rm"),
            ),
            Stage(
                "eval", Path(cfg.eval.output_dir), Path(cfg.eval.output_dir) / "report.json",
                lambda: {"eval": _section(cfg, "eval"), "reward": _section(cfg, "reward"), "systems": self.eval_systems()},
                self._run_eval,
                depends=("prepare-data", "sft", "train-rm", "grpo"),
            ),
        ]

    def _grpo_files(self, cfg: EmpathyRLConfig) -> list[str]:
        """Files GRPO reads that no enabled upstream stage accounts for."""
        files = []
        if not self._on("sft"):
            files.append(cfg.warmstart.policy or cfg.model.path)
        if not self._on("prepare-data"):
            files.append(cfg.data.prepared_dir)
        if not self._on("train-rm") and cfg.reward.encoder and Path(cfg.reward.encoder).exists():
            files.append(cfg.reward.encoder)
        return files

    def _on(self, name: str) -> bool:
        return name in self.enabled

    def grpo_config(self) -> EmpathyRLConfig:
        """The GRPO stage's config: the SFT stage's policy as its start and KL reference when SFT is on."""
        cfg = self.cfg
        if self._on("sft"):
            ws = dataclasses.replace(cfg.warmstart, policy=str(Path(cfg.sft.output_dir) / "policy"), run_sft=False)
            cfg = dataclasses.replace(cfg, warmstart=ws)
        return cfg

    def eval_systems(self) -> list[str]:
        """`NAME=PATH` specs the eval stage compares: the SFT policy (if any) and the GRPO run."""
        systems = []
        if self.cfg.pipeline.eval_base:
            systems.append(f"base={self.cfg.model.path}")
        start = self.grpo_config().warmstart.policy
        if start:
            systems.append(f"sft={start}")
        systems.append(f"grpo={self.cfg.trainer.run_dir}")
        return systems

    # -------------------------------------------------------------- runners
    def _ray(self) -> None:
        """One cluster for every stage, started by the first stage that needs it (Ray Train needs the dashboard)."""
        from empathy_rl.driver import init_ray

        init_ray(dataclasses.replace(self.cfg, cluster=dataclasses.replace(self.cfg.cluster, include_dashboard=True)))

    def _run_prepare(self) -> dict[str, Any]:
        from empathy_rl.data import prepare_data

        summary = prepare_data(self.cfg.data, progress=self.progress, safety=self.cfg.safety)
        print(summary.format(), flush=True)
        return {}

    def _run_sft(self) -> dict[str, Any]:
        self._ray()
        from empathy_rl.sft import run_sft

        policy = run_sft(self.cfg, progress=self.progress)
        meta = json.loads((Path(self.cfg.sft.output_dir) / "sft.json").read_text(encoding="utf-8"))
        return {"policy": str(policy), "metrics": meta.get("metrics", {})}

    def _run_train_rm(self) -> dict[str, Any]:
        self._ray()
        from reward.rm_train import train_reward_model

        report = train_reward_model(self.cfg, progress=self.progress)
        return {"languages": {lang: {"threshold": r["threshold"], "auc": r["after"]["auc"]} for lang, r in report["languages"].items()}}

    def _run_grpo(self) -> dict[str, Any]:
        self._ray()
        from empathy_rl.driver import GRPOTrainer

        cfg = self.grpo_config()
        started = self.state_dir / "grpo.started.json"
        run_dir = Path(cfg.trainer.run_dir)
        fp = self._fingerprints["grpo"]
        if run_dir.exists() and any(run_dir.iterdir()):
            prior = _read_json(started)
            if prior and prior.get("fingerprint") == fp and (run_dir / "checkpoints").is_dir() and not self._forced("grpo"):
                log.info("pipeline: grpo was interrupted with the same inputs; resuming from its latest checkpoint")
                cfg = dataclasses.replace(cfg, checkpoint=dataclasses.replace(cfg.checkpoint, resume="auto"))
            else:
                self._clear(run_dir, "grpo")
        _write_json(started, {"fingerprint": fp, "started_at": _utc()})
        trainer = GRPOTrainer(cfg)
        try:
            summary = trainer.fit()
        finally:
            trainer.shutdown()
        keep = {k: summary[k] for k in ("eval_start", "eval_end", "checkpoint", "steps") if k in summary}
        return keep

    def _run_eval(self) -> dict[str, Any]:
        self._ray()
        from empathy_rl.evaluation import evaluate_systems, parse_system

        report = evaluate_systems(self.cfg, [parse_system(s) for s in self.eval_systems()])
        return {name: {"format_pass_rate": blocks["all"]["reward"]["format_pass_rate"],
                       "reward_mean": blocks["all"]["reward"]["reward_mean"]}
                for name, blocks in report.systems.items()}

    # -------------------------------------------------------------- orchestration
    def _forced(self, name: str) -> bool:
        return self._force_from is not None and STAGES.index(name) >= STAGES.index(self._force_from)

    def _clear(self, path: Path, stage: str) -> None:
        """Make room for a stage's new output: move the old one aside (backup) or delete it (replace)."""
        if not path.exists():
            return
        if self.cfg.pipeline.on_rerun == "replace":
            log.info("pipeline: %s: deleting the previous output %s (pipeline.on_rerun=replace)", stage, path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            backup = path.with_name(f"{path.name}.bak-{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = path.with_name(f"{path.name}.bak-{stamp}-{n}")
            log.info("pipeline: %s: moving the previous output to %s (pipeline.on_rerun=backup)", stage, backup)
            path.rename(backup)

    def plan(self, force_from: Optional[str] = None) -> list[tuple[str, str]]:
        """(stage, 'skip: reason' | 'run: reason') for every enabled stage, without running any."""
        self._start(force_from)
        return [(name, self._decide(name)) for name in self.enabled]

    def _start(self, force_from: Optional[str]) -> None:
        if force_from is not None and force_from not in self.enabled:
            raise ConfigError(f"--from {force_from!r}: not one of the enabled stages {self.enabled} (pipeline.stages)")
        self._force_from = force_from
        self._runs: set[str] = set()  # stages decided to run (in this call)

    def _decide(self, name: str) -> str:
        """Whether `name` runs, and why. Stages are decided in order, so upstream decisions are known."""
        stage = self.stages[name]
        record = _read_json(self.state_dir / f"{name}.json")
        rerun_upstream = [d for d in stage.depends if d in self._runs]
        if self._forced(name):
            decision = "run: forced by --from"
        elif rerun_upstream:
            decision = f"run: upstream stage {rerun_upstream[0]} runs"
        elif record is None:
            decision = "run: never ran (no record in pipeline.state_dir)"
        elif not stage.done_marker.is_file():
            decision = f"run: output {stage.done_marker} is missing"
        elif record.get("fingerprint") != self._fingerprint(name):
            decision = "run: inputs changed"
        else:
            decision = "skip: output exists and inputs are unchanged"
        if decision.startswith("run"):
            self._runs.add(name)
        return decision

    def _fingerprint(self, name: str) -> str:
        """Hash of the stage's inputs and of the records (fingerprint + finish time) of its upstream stages."""
        stage = self.stages[name]
        upstream = {}
        for d in stage.depends:
            if self._on(d):
                rec = _read_json(self.state_dir / f"{d}.json") or {}
                upstream[d] = [rec.get("fingerprint"), rec.get("finished_at")]
        return fingerprint({"stage": name, "inputs": stage.inputs(), "upstream": upstream})

    def run(self, force_from: Optional[str] = None) -> dict[str, Any]:
        """Run (or skip) every enabled stage in order; returns {stage: record}."""
        self._start(force_from)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        records: dict[str, Any] = {}
        import ray

        owns_ray = self.cfg.cluster.address is None and not ray.is_initialized()
        try:
            for name in self.enabled:
                decision = self._decide(name)
                print(f"[pipeline] {name}: {decision}", flush=True)
                if decision.startswith("skip"):
                    records[name] = {**(_read_json(self.state_dir / f"{name}.json") or {}), "skipped": True}
                    continue
                stage = self.stages[name]
                fp = self._fingerprints[name] = self._fingerprint(name)
                (self.state_dir / f"{name}.json").unlink(missing_ok=True)  # a failed re-run must not look done
                if name in ("sft", "train-rm", "eval"):
                    self._clear(stage.output, name)
                t0 = time.perf_counter()
                try:
                    summary = stage.run()
                except Exception as err:
                    raise PipelineError(f"pipeline stage {name!r} failed: {type(err).__name__}: {err}") from err
                record = {"stage": name, "fingerprint": fp, "output": str(stage.output),
                          "finished_at": _utc(), "seconds": round(time.perf_counter() - t0, 1), "summary": summary}
                _write_json(self.state_dir / f"{name}.json", record)
                records[name] = record
                print(f"[pipeline] {name}: done in {record['seconds']:.1f} s", flush=True)
        finally:
            if owns_ray and ray.is_initialized():
                ray.shutdown()
        return records


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err.msg}, line {err.lineno}); delete it to re-run that stage") from None


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_json(path, obj, indent=1, default=str)
