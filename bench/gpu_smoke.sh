#!/usr/bin/env bash
# The first thing to run on a GPU machine (see cluster/README.md): three timed stages, stopping at
# the first failure. Python for the stages is in bench/gpu_smoke.py; arguments pass through, e.g.
#   bench/gpu_smoke.sh --model /mnt/models/Qwen3-0.6B                # stages 1, 2, 3 on CUDA
#   bench/gpu_smoke.sh --model runs/tiny-model --device cpu --stages 1,2   # code paths on CPU only
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}" VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$PWD/.cache/vllm}"
if [[ " $* " == *" --device cpu "* ]]; then export DS_ACCELERATOR=cpu; fi
exec "$PY" bench/gpu_smoke.py "$@"
