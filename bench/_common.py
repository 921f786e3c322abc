"""What every benchmark script shares: the environment, model shapes, statistics, and the docs table.

Benchmarks on a shared 2-core machine need to say how loaded it was (the load average at the
start and the end), report a median with its spread over repeats, and measure ratios inside one
invocation, alternating the variants. Each script writes its table between markers in
docs/benchmarks.md (`<!-- bench:NAME -->` ... `<!-- /bench:NAME -->`), with the command, machine
and versions beside it, so the numbers in the docs are the ones a script printed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for _key, _value in (
    ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
    ("TOKENIZERS_PARALLELISM", "false"), ("DS_ACCELERATOR", "cpu"),
    ("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")), ("VLLM_CACHE_ROOT", str(REPO / ".cache" / "vllm")),
):
    os.environ.setdefault(_key, _value)

DOCS = REPO / "docs" / "benchmarks.md"
MODELS = REPO / ".cache" / "bench-models"


@dataclass(frozen=True)
class Shape:
    """A Qwen3 shape for random-init benchmark models (the tiny tokenizer's vocabulary, 6012)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


# ~50M and ~100M parameters with the tiny tokenizer (embeddings tied); head_dim 64 suits vLLM's CPU attention.
SHAPES = {
    "50m": Shape(hidden_size=640, intermediate_size=2048, num_layers=10, num_heads=10, num_kv_heads=5, head_dim=64),
    "100m": Shape(hidden_size=768, intermediate_size=2560, num_layers=14, num_heads=12, num_kv_heads=4, head_dim=64),
}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def print_load(when: str) -> str:
    text = load_average()
    print(f"load average ({when}, 1/5/15 min): {text} on {os.cpu_count()} CPUs", flush=True)
    return text


def tiny_model_path() -> Path:
    """`runs/tiny-model` when it exists, else the same model built once under .cache/bench-models/tiny."""
    if (REPO / "runs" / "tiny-model" / "config.json").is_file():
        return REPO / "runs" / "tiny-model"
    out = MODELS / "tiny"
    if not (out / "config.json").is_file():
        from empathy_rl.tiny_model import build_tiny_model

        build_tiny_model(out, seed=0)
    return out


def model_path(size: str) -> Path:
    """The tiny model, or a random-init Qwen3 of `SHAPES[size]` with the tiny tokenizer (built once, seed 0)."""
    if size == "tiny":
        return tiny_model_path()
    if size not in SHAPES:
        raise SystemExit(f"unknown model size {size!r}; choose tiny or one of {', '.join(SHAPES)}")
    shape = SHAPES[size]
    out = MODELS / f"qwen3-{size}"
    stamp = out / "bench-shape.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == asdict(shape):
        return out
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig, Qwen3ForCausalLM

    tiny = tiny_model_path()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = AutoConfig.from_pretrained(tiny)
    config.hidden_size, config.intermediate_size = shape.hidden_size, shape.intermediate_size
    config.num_hidden_layers, config.num_attention_heads = shape.num_layers, shape.num_heads
    config.num_key_value_heads, config.head_dim = shape.num_kv_heads, shape.head_dim
    config.layer_types = ["full_attention"] * shape.num_layers
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig.from_pretrained(tiny)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    stamp.write_text(json.dumps(asdict(shape)))
    return out


def parameter_count(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(file), "pt") as fh:
            for name in fh.keys():
                total += _numel(fh.get_slice(name).get_shape())
    return total


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def spread(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """`median (min-max, n=k)`."""
    v = list(values)
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))}, n={len(v)})"


def versions() -> str:
    parts = [f"python {platform.python_version()}"]
    for name in ("torch", "transformers", "deepspeed", "vllm", "ray"):
        try:
            module = __import__(name)
            parts.append(f"{name} {module.__version__}")
        except Exception:  # noqa: BLE001  (a missing or broken package is reported, not fatal)
            parts.append(f"{name} (not importable)")
    return ", ".join(parts)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001
        pass
    return f"{os.cpu_count()} CPUs ({cpu}){gpu}"


def write_section(name: str, body: str, path: Path = DOCS) -> None:
    """Replace the text between `<!-- bench:name -->` and `<!-- /bench:name -->` in docs (appended if
    absent). Only markers that stand alone on a line count, so prose may quote a marker."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text(encoding="utf-8")
    block = f"{start}\n{body.rstrip()}\n{end}"
    found = re.search(rf"^{re.escape(start)}[ \t]*$(.*?)^{re.escape(end)}[ \t]*$", text, re.MULTILINE | re.DOTALL)
    if found:
        text = text[: found.start()] + block + text[found.end():]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote the {name} table to {path.relative_to(REPO)}", flush=True)


def header(command: str, load_start: str, load_end: str, note: Optional[str] = None) -> str:
    """The lines every docs table starts with: command, machine, versions, load."""
    lines = [
        "```bash", command, "```", "",
        f"Machine: {machine()}. Versions: {versions()}.",
        f"Load average (1/5/15 min) at start {load_start}, at end {load_end}.",
    ]
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n"


def publish(script: str, section: str, note: str, table: str, load_start: str, load_end: str, write_docs: bool) -> None:
    """Print `note` and the median/spread `table`; with `--write-docs`, put both into docs under `section`.

    One place for the ending every table benchmark shares, so the command recorded in the docs is
    always the one that ran (`python bench/<script> <its arguments>`, `--write-docs` left out).
    """
    print("\n" + note + "\n\n" + table, flush=True)
    if write_docs:
        command = " ".join([f"python bench/{Path(script).name}", *sys.argv[1:]]).replace(" --write-docs", "")
        write_section(section, header(command, load_start, load_end, note) + "\n" + table)
