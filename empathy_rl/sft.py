"""`empathy-rl sft`: the supervised cold start, a Ray Train job that writes a Hugging Face policy.

Stages, in order (the driver does everything except the gradient steps):

1. data: the accepted records of `sft.data` (CoE JSONL, docs/sft.md; the bundled
   `empathy_rl/assets/coe/seed_coe.jsonl` when empty), tokenized with the run's prompt builder
   (`empathy_rl.sft_data`). Bad records stop here with ``file:line`` and the field.
2. fit: a `TorchTrainer` on `sft.num_workers` workers (`empathy_rl.sft_worker.train_loop`:
   DeepSpeed at `sft.zero_stage`, gloo on CPU, NCCL on GPU). Rank 0 sends one record per step to
   a small inbox actor; the driver drains it into `<sft.output_dir>/metrics.jsonl` and the
   progress bar. The policy comes back as the run's last Ray Train checkpoint.
3. outputs: the checkpoint is moved to `<sft.output_dir>/policy/` (staged, then renamed), Ray
   Train's copy of the run is removed, and `sft.json` (the inputs' fingerprint and the final
   metrics) is written last and atomically. A run removes the old `sft.json` first, so an output
   directory without one is incomplete (an interrupted run), and the next run overwrites it.

`run_sft` works inside a process that already runs Ray (a pipeline, `grpo` with
`warmstart.run_sft`) and otherwise starts a local cluster, which it leaves up for the caller's
next stage (`empathy-rl sft` shuts it down).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from empathy_rl.config import EmpathyRLConfig

log = logging.getLogger(__name__)

SFT_FILE = "sft.json"
METRICS_FILE = "metrics.jsonl"
POLICY_DIR = "policy"
FORMAT = "empathy-rl-sft"
FORMAT_VERSION = 1
# sft.* keys that change where or how often things are written, not what is trained; `data` is
# fingerprinted by the files' content instead of their paths.
_NOT_FINGERPRINTED = ("data", "output_dir", "log_every", "storage_path", "fit_timeout_s")


class SFTError(RuntimeError):
    """A stage of `empathy-rl sft` failed; the message names the stage (data, fit, outputs)."""


# ------------------------------------------------------------------------------ inputs


def data_paths(cfg: EmpathyRLConfig) -> list[Path]:
    """`sft.data`, or the bundled seed file when it is empty."""
    from empathy_rl.coe_data import bundled_path

    return [Path(p) for p in cfg.sft.data] if cfg.sft.data else [bundled_path()]


def row_length(cfg: EmpathyRLConfig) -> int:
    """Tokens of one training row (`sft.max_len`, or prompt + response budget when 0)."""
    return cfg.sft.max_len or cfg.model.max_prompt_len + cfg.model.max_response_len


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(cfg: EmpathyRLConfig) -> dict[str, Any]:
    """What the SFT output depends on, with `key` = sha256 over all of it.

    Data files by content (sha256, in order), the base model by resolved path, config.json hash and
    weight-file names and sizes (hashing the weights of an 8B model would take minutes), the `sft`
    section except the keys that only say where or how often to write, and the model/prompt keys
    that change the tokenized examples.
    """
    model_dir = Path(cfg.model.path)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise SFTError(f"sft: model.path={cfg.model.path} has no config.json (a Hugging Face model directory is needed)")
    weights = sorted(
        (p.name, p.stat().st_size) for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()
    )
    paths = data_paths(cfg)
    for i, path in enumerate(paths):
        if not path.is_file():
            raise SFTError(f"sft: sft.data[{i}]={path} does not exist")
    sft = {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k not in _NOT_FINGERPRINTED}
    r, m = cfg.rollout, cfg.model
    inputs = {
        "data": [{"path": str(p), "sha256": _sha256(p)} for p in paths],
        "base_model": {
            "path": str(model_dir.resolve()),
            "config_sha256": _sha256(config_file),
            "weights": [list(w) for w in weights],
            "tokenizer": str(Path(m.tokenizer_path or m.path).resolve()),
        },
        "sft": sft,
        "model": {"dtype": m.dtype, "max_prompt_len": m.max_prompt_len, "max_response_len": m.max_response_len,
                  "trust_remote_code": m.trust_remote_code, "gradient_checkpointing": m.gradient_checkpointing},
        "prompt": {"system_prompt_style": r.system_prompt_style, "system_prompt_language": r.system_prompt_language,
                   "overlong_prompt": r.overlong_prompt, "enable_thinking": r.enable_thinking},
        "device": cfg.cluster.device,
    }
    keyed = {**inputs, "data": [d["sha256"] for d in inputs["data"]]}  # content, not where the files lie
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()
    return {"key": key, **inputs}


def read_output(output_dir: str | Path) -> Optional[dict[str, Any]]:
    """The `sft.json` of a finished SFT output directory, or None when it is missing or unreadable."""
    path = Path(output_dir) / SFT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_current(cfg: EmpathyRLConfig) -> bool:
    """True when `sft.output_dir` holds a finished output trained from exactly these inputs."""
    done = read_output(cfg.sft.output_dir)
    if done is None or not (Path(cfg.sft.output_dir) / POLICY_DIR / "config.json").is_file():
        return False
    try:
        return done.get("inputs", {}).get("key") == fingerprint(cfg)["key"]
    except SFTError:
        return False


def read_accepted(cfg: EmpathyRLConfig) -> list:
    """The accepted records of `sft.data` (the bundled file when empty); CoEDataError names file:line."""
    from empathy_rl.coe_data import accepted_records

    paths = data_paths(cfg)
    records = accepted_records(paths)
    if not records:
        raise SFTError(f"sft: no accepted record in {', '.join(map(str, paths))}; only records with review.status=accepted train")
    return records


def load_examples(cfg: EmpathyRLConfig, tokenizer: Any, records: list) -> tuple[list, dict[str, int]]:
    """Tokenized examples of `records` with the run's prompt builder, and their counts (kept, dropped by reason)."""
    from empathy_rl.sft_data import encode_records
    from rollout.prompts import PromptBuilder

    r = cfg.rollout
    builder = PromptBuilder(tokenizer, cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language, r.system_prompt_style,
                            enable_thinking=r.enable_thinking)
    examples, counts = encode_records(records, builder, tokenizer, cfg.model.max_response_len, row_length(cfg))
    counts["prompts_truncated"] = builder.counts["truncated"]
    if not examples:
        raise SFTError(
            f"sft: none of the {len(records)} accepted records fits (counts {dict(counts)}): raise model.max_response_len, "
            "model.max_prompt_len or sft.max_len, or use rollout.overlong_prompt=truncate"
        )
    return examples, dict(counts)


# ------------------------------------------------------------------------------ progress


class _Inbox:
    """A tiny actor rank 0 sends step records to (fire and forget) and the driver empties."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    def take(self) -> list[dict[str, Any]]:
        items, self.items = self.items, []
        return items


class _Progress:
    """metrics.jsonl, the tqdm bar and the periodic log line, fed with the workers' step records."""

    def __init__(self, path: Path, total: int, show: bool, log_every: int):
        from tqdm.auto import tqdm

        self.fh = path.open("w", encoding="utf-8")
        self.bar = tqdm(total=total, desc="sft", disable=not show, dynamic_ncols=True)
        self.total, self.log_every = total, log_every
        self.first: Optional[dict[str, Any]] = None
        self.last: Optional[dict[str, Any]] = None
        self.tokens = 0  # response tokens trained on, all workers
        self.started = time.perf_counter()

    def add(self, records: list[dict[str, Any]]) -> None:
        for record in sorted(records, key=lambda r: r["step"]):
            record = {"phase": "sft", **record, "elapsed_s": round(time.perf_counter() - self.started, 3)}
            self.fh.write(json.dumps(record) + "\n")
            self.first = self.first or record
            self.last = record
            self.tokens += record["tokens"]
            self.bar.update(record["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{record['loss']:.3f}")
            if record["step"] % self.log_every == 0 or record["step"] == self.total:
                log.info("sft step %d/%d: loss %.4f, lr %.2e, %d response tokens, %.2fs/step",
                         record["step"], self.total, record["loss"], record["lr"], record["tokens"], record["step_s"])
        self.fh.flush()

    def close(self) -> None:
        self.bar.close()
        self.fh.close()


# ------------------------------------------------------------------------------ the stage


def _loop_config(cfg: EmpathyRLConfig, examples: list, tokenizer: Any, inbox: Any) -> dict[str, Any]:
    s, use_gpu = cfg.sft, cfg.cluster.device == "cuda"
    env = {"DS_ACCELERATOR": "cuda" if use_gpu else "cpu", "TOKENIZERS_PARALLELISM": "false"}
    for key in ("TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return {
        "examples": [(e.record_id, e.prompt, e.response) for e in examples],
        "model_path": str(Path(cfg.model.path).resolve()),
        "tokenizer_path": str(Path(cfg.model.tokenizer_path or cfg.model.path).resolve()),
        "dtype": cfg.model.dtype, "trust_remote_code": cfg.model.trust_remote_code,
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "lora": dataclasses.asdict(s.lora), "lr": s.lr, "min_lr_ratio": s.min_lr_ratio, "warmup_steps": s.warmup_steps,
        "weight_decay": s.weight_decay, "betas": list(s.betas), "max_grad_norm": s.max_grad_norm,
        "batch_size": s.batch_size, "micro_batch_size": s.micro_batch_size, "max_len": row_length(cfg), "packing": s.packing,
        "epochs": s.epochs, "max_steps": s.max_steps, "seed": s.seed, "zero_stage": s.zero_stage,
        "use_gpu": use_gpu, "threads": max(1, int(s.num_cpus_per_worker)), "pad_id": tokenizer.pad_token_id,
        "inbox": inbox, "env": env, "actor_log_level": cfg.logging.actor_log_level,
    }


def _fit(cfg: EmpathyRLConfig, loop_config: dict[str, Any], name: str, progress: _Progress, inbox: Any):
    """Run the TorchTrainer, feeding `progress` while it runs; returns the Ray Train result."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from empathy_rl.sft_worker import train_loop

    s, use_gpu = cfg.sft, cfg.cluster.device == "cuda"
    resources = {"CPU": s.num_cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=str(Path(s.storage_path).resolve()), failure_config=FailureConfig(max_failures=0)),
    )
    deadline = time.monotonic() + s.fit_timeout_s
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sft-fit")
    future = pool.submit(trainer.fit)

    def drain() -> None:
        try:
            progress.add(ray.get(inbox.take.remote(), timeout=60))
        except ray.exceptions.GetTimeoutError as err:
            raise SFTError("sft: the progress inbox did not answer within 60 s") from err

    try:
        while True:
            try:
                result = future.result(timeout=0.5)
                break
            except concurrent.futures.TimeoutError:
                drain()
                if time.monotonic() > deadline:
                    raise SFTError(f"sft: Ray Train fit did not finish within sft.fit_timeout_s={s.fit_timeout_s:g}s") from None
    except SFTError:
        raise
    except Exception as err:
        raise SFTError(f"sft: Ray Train fit failed: {err}") from err
    finally:
        pool.shutdown(wait=False)
    drain()
    if result.error is not None:
        raise SFTError(f"sft: Ray Train fit failed: {result.error}")
    if result.checkpoint is None:
        raise SFTError("sft: Ray Train fit finished without a checkpoint (the policy)")
    return result


def run_sft(cfg: EmpathyRLConfig, progress: bool = True) -> Path:
    """The whole `sft` stage; returns `<sft.output_dir>/policy`.

    Uses the running Ray session when there is one (`cluster.address` to join one), else starts a
    local cluster and leaves it up for the caller.
    """
    import ray
    from transformers import AutoTokenizer

    from empathy_rl.atomic_io import atomic_write_text
    from empathy_rl.driver import init_ray
    from empathy_rl.sft_worker import step_plan

    t_start = time.perf_counter()
    s = cfg.sft
    inputs = fingerprint(cfg)  # checks model.path and sft.data first
    records = read_accepted(cfg)  # bad records stop here, before anything starts
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer_path or cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, counts = load_examples(cfg, tokenizer, records)
    accepted = len(records)
    plan_config = {"world_size": s.num_workers, "batch_size": s.batch_size, "seed": s.seed, "packing": s.packing,
                   "max_len": row_length(cfg), "max_steps": s.max_steps, "epochs": s.epochs}
    try:
        total = len(step_plan(examples, plan_config))
    except ValueError as err:
        raise SFTError(f"sft: {err}") from None
    log.info("sft: %d accepted records -> %s; %d steps of %d row(s) x %d worker(s)%s", accepted, counts, total, s.batch_size,
             s.num_workers, " (packed rows)" if s.packing else "")

    out = Path(s.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SFT_FILE).unlink(missing_ok=True)  # from here on the directory is incomplete until sft.json is back
    # Ray Train V2 polls its controller through the State API, which needs the dashboard (see reward/rm_train.py).
    init_ray(dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, include_dashboard=True)))
    inbox = ray.remote(num_cpus=0)(_Inbox).remote()
    name = f"sft-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    bar = _Progress(out / METRICS_FILE, total, progress and cfg.logging.progress_bar, s.log_every)
    t_fit = time.perf_counter()
    try:
        result = _fit(cfg, _loop_config(cfg, examples, tokenizer, inbox), name, bar, inbox)
    finally:
        bar.close()
        ray.kill(inbox)
    fit_seconds = time.perf_counter() - t_fit

    staging = Path(tempfile.mkdtemp(prefix=f".{POLICY_DIR}-", dir=out))
    try:
        shutil.rmtree(staging)
        shutil.move(result.checkpoint.path, staging)  # a rename when storage and output share a filesystem
        if (out / POLICY_DIR).exists():
            shutil.rmtree(out / POLICY_DIR)
        os.replace(staging, out / POLICY_DIR)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(Path(s.storage_path) / name, ignore_errors=True)  # Ray Train's copy of this run (its checkpoint moved out)

    first, last = bar.first or {}, bar.last or {}
    summary = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "inputs": inputs,
        "examples": {"accepted_records": accepted, **counts},
        "metrics": {
            "steps": total, "epochs_started": last.get("epoch"), "first_loss": first.get("loss"), "final_loss": last.get("loss"),
            "response_tokens": bar.tokens, "fit_seconds": round(fit_seconds, 1),
            "total_seconds": round(time.perf_counter() - t_start, 1), "num_workers": s.num_workers, "zero_stage": s.zero_stage,
            "final_report": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float, str))},
        },
        "outputs": {"policy": POLICY_DIR, "metrics": METRICS_FILE},
    }
    atomic_write_text(out / SFT_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    log.info("sft: done in %.1fs (fit %.1fs): loss %.4f -> %.4f; policy in %s", summary["metrics"]["total_seconds"], fit_seconds,
             first.get("loss", float("nan")), last.get("loss", float("nan")), out / POLICY_DIR)
    return out / POLICY_DIR


# ------------------------------------------------------------------------------ the GRPO side


def policy_dir(path: str | Path) -> Path:
    """The Hugging Face model directory of an SFT output dir (its `policy/`) or of a model dir itself."""
    from empathy_rl.config import ConfigError

    p = Path(path)
    if (p / "config.json").is_file():
        return p
    if (p / POLICY_DIR / "config.json").is_file():
        return p / POLICY_DIR
    raise ConfigError(
        f"warmstart.policy={path}: no Hugging Face model there (config.json) or in its {POLICY_DIR}/; "
        "run `empathy-rl sft` first, or set warmstart.run_sft=true to run it from grpo"
    )


def warmstart_policy(cfg: EmpathyRLConfig, progress: bool = True) -> Optional[str]:
    """The GRPO starting policy (also its KL reference) that `warmstart` names; None = `model.path`.

    With `warmstart.run_sft` it is `<sft.output_dir>/policy`, and the sft stage runs first, in this
    process, when that directory has no `sft.json` yet. An existing output trained from other
    inputs is used as it is, with a warning (the pipeline re-runs stale stages; here nothing is
    thrown away without being asked).
    """
    ws = cfg.warmstart
    if ws.run_sft:
        out = Path(cfg.sft.output_dir)
        if read_output(out) is None or not (out / POLICY_DIR / "config.json").is_file():
            log.info("warmstart.run_sft: %s holds no finished SFT output; running the sft stage first", out)
            return str(run_sft(cfg, progress=progress))
        if not is_current(cfg):
            log.warning("warmstart.run_sft: %s was trained from other inputs than this config's; using it as it is "
                        "(run `empathy-rl sft` to retrain)", out)
        return str(out / POLICY_DIR)
    return str(policy_dir(ws.policy)) if ws.policy is not None else None
