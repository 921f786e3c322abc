"""Format pass rate of vLLM samples after the SFT cold start (the number docs/benchmarks.md reports).

Runs `empathy-rl sft` in process (`run_sft`, Ray Train + DeepSpeed, timed from the call: Ray
start-up included) unless `--policy` names an existing policy, then samples the training prompts
of the prepared data (`data.prepared_dir`, `data.train_split`; the GRPO prompts) with vLLM in this
process at temperature 1.0, `--samples` per prompt, `model.max_response_len` tokens, and reports
the share that `coe.parse_coe` accepts, the failure codes, the response length and, for crisis
prompts, the share whose answer refers to immediate help (`reward.crisis.crisis_reward` = +1).

    .venv/bin/python bench/sft_pass_rate.py --config configs/tiny-cpu.yaml [key=value ...]
    .venv/bin/python bench/sft_pass_rate.py --config configs/tiny-cpu.yaml --policy runs/sft
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for key, value in (
    ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
    ("TOKENIZERS_PARALLELISM", "false"), ("DS_ACCELERATOR", "cpu"), ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
    ("VLLM_CPU_KVCACHE_SPACE", "1"), ("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
):
    os.environ.setdefault(key, value)


def pass_rate(cfg, policy: Path, samples: int, seed: int) -> dict:
    """Sample every training prompt `samples` times at temperature 1.0 with vLLM; return the figures."""
    from vllm import LLM, SamplingParams

    from empathy_rl import coe
    from empathy_rl.data import load_records
    from reward.crisis import crisis_reward
    from rollout.prompts import PromptBuilder

    records = load_records(cfg.data.prepared_dir, cfg.data.train_split)
    t0 = time.perf_counter()
    llm = LLM(model=str(policy), dtype=cfg.model.dtype, max_model_len=cfg.model.max_prompt_len + cfg.model.max_response_len,
              enforce_eager=True, seed=seed, enable_chunked_prefill=False)
    r = cfg.rollout
    builder = PromptBuilder(llm.get_tokenizer(), cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language,
                            r.system_prompt_style, enable_thinking=r.enable_thinking)
    prompts = builder.build_many(records)
    params = SamplingParams(n=samples, temperature=1.0, max_tokens=cfg.model.max_response_len, seed=seed)
    outputs = llm.generate([{"prompt_token_ids": list(p.token_ids)} for p in prompts], params, use_tqdm=False)
    codes: Counter = Counter()
    lengths, crisis = [], []
    for prompt, out in zip(prompts, outputs):
        for cand in out.outputs:
            parsed = coe.parse_coe(cand.text)
            codes[parsed.error_code] += 1
            lengths.append(len(cand.token_ids))
            if prompt.crisis:
                crisis.append(crisis_reward(True, parsed.answer if parsed.ok else coe.strip_tags(cand.text), prompt.language) > 0)
    n = sum(codes.values())
    return {
        "samples": n, "prompts": len(prompts), "format_pass_rate": round(codes["ok"] / n, 3),
        "failures": {k: v for k, v in codes.most_common() if k != "ok"},
        "mean_response_tokens": round(sum(lengths) / n, 1),
        "crisis_referral_rate": round(sum(crisis) / len(crisis), 3) if crisis else None,
        "sample_seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/tiny-cpu.yaml")
    ap.add_argument("--policy", help="evaluate this SFT output (or policy) directory instead of training one")
    ap.add_argument("--samples", type=int, default=2, help="samples per training prompt")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import logging

    from empathy_rl.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg = load_config(args.config, [*args.overrides, "logging.progress_bar=false"])
    result: dict = {}
    if args.policy:
        from empathy_rl.sft import policy_dir

        policy = policy_dir(args.policy)
    else:
        import ray

        from empathy_rl.sft import SFT_FILE, run_sft

        t0 = time.perf_counter()
        policy = run_sft(cfg, progress=False)
        result["sft_seconds"] = round(time.perf_counter() - t0, 1)
        meta = json.loads((policy.parent / SFT_FILE).read_text(encoding="utf-8"))["metrics"]
        result.update(steps=meta["steps"], fit_seconds=meta["fit_seconds"], final_loss=round(meta["final_loss"], 4))
        if ray.is_initialized():
            ray.shutdown()
    result.update(pass_rate(cfg, policy, args.samples, args.seed))
    print(json.dumps({"policy": str(policy), **result}, indent=2))


if __name__ == "__main__":
    main()
