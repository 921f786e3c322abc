"""The Ray `runtime_env` of an empathy-rl job submitted to a cluster.

The repo is shipped as `working_dir`: Ray unpacks it on every node and puts it first on PYTHONPATH,
so the driver and all actors run exactly the code you submitted. Heavy dependencies are *not*
shipped: there is no `pip` field, because installing `vllm==0.33.0` (which pins its own CUDA torch)
and DeepSpeed per job takes many minutes per node and can silently replace the CUDA torch of the
image. GPU images and nodes must have the `gpu` extra preinstalled (see cluster/kuberay/Dockerfile.gpu).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from empathy_rl.config import EmpathyRLConfig

# Never uploaded: local virtualenvs, run outputs and caches are large (Ray rejects a working_dir over
# 512 MiB) and machine-specific; tests are not needed to train. Anchored to the repo root.
EXCLUDES: tuple[str, ...] = ("/.venv", "/runs", "/.cache", "/.git", "/tests")

ENV_VARS: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",  # models come from shared storage; a node must never fetch weights mid-run
    "TOKENIZERS_PARALLELISM": "false",  # the Rust tokenizer pool deadlocks in forked Ray workers
    "RAY_USAGE_STATS_ENABLED": "0",
}
# NCCL_* (interfaces, InfiniBand, P2P) is deliberately absent: it depends on the cluster's network
# and belongs in the node image or pod spec, where the operators of that network set it.


def is_excluded(relative_path: str) -> bool:
    """Whether a path relative to the repo root falls under EXCLUDES (so it is missing on the cluster)."""
    parts = PurePosixPath(relative_path).parts
    return bool(parts) and f"/{parts[0]}" in EXCLUDES


def _check_cluster_paths(cfg: EmpathyRLConfig) -> None:
    """Reject relative paths that would silently break on a cluster.

    A relative path resolves inside Ray's per-job copy of working_dir: outputs written there vanish
    with the job, and inputs under an excluded directory (e.g. runs/tiny-model) were never uploaded.
    """
    if not PurePosixPath(cfg.trainer.run_dir).is_absolute():
        raise ValueError(
            f"trainer.run_dir={cfg.trainer.run_dir!r} is relative: on a cluster it would land in Ray's "
            "temporary copy of the repo and be deleted with the job; use shared storage, e.g. trainer.run_dir=/mnt/runs/NAME"
        )
    inputs = {"model.path": cfg.model.path, "model.tokenizer_path": cfg.model.tokenizer_path, "data.prepared_dir": cfg.data.prepared_dir}
    for key, value in inputs.items():
        if value and not PurePosixPath(value).is_absolute() and is_excluded(value):
            raise ValueError(f"{key}={value!r} is under a directory that is not uploaded ({', '.join(EXCLUDES)}); use an absolute path on shared storage")


def build_runtime_env(cfg: EmpathyRLConfig, working_dir: str) -> dict[str, Any]:
    """The runtime_env for `JobSubmissionClient.submit_job`; raises ValueError for cluster-unsafe paths."""
    _check_cluster_paths(cfg)
    return {"working_dir": working_dir, "excludes": list(EXCLUDES), "env_vars": dict(ENV_VARS)}
