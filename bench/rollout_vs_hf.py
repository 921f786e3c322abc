"""Generated tokens/s: our rollout path (vLLM, `rollout.vllm_engine.RolloutWorker`) against Hugging
Face `generate`, on the same model, prompts, G, temperature and length limit, alternated in one run.

    .venv/bin/python bench/rollout_vs_hf.py                       # tiny model, 8 prompts x G=4
    .venv/bin/python bench/rollout_vs_hf.py --size 50m --repeats 3

The vLLM side is the rollout actor's class built in this process (no Ray): `RolloutWorker(cfg, ...)`
with the tiny preset's settings (in-process engine, `engine_env` applied before vLLM is imported)
and its `generate` (seeded per prompt, log-probs returned, as in training). The Hugging Face side
is one `model.generate` call over all prompts (left-padded), `num_return_sequences=G`, sampling at
the same temperature, stopping at EOS or the same `max_new_tokens`. Tokens are counted as
generated (up to and including EOS); both sides use `--threads` torch threads. Prompts are the
prepared training records rendered by `rollout.prompts.PromptBuilder` (the compact CoE system
prompt and chat template), from `data.prepared_dir` of the preset.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="tiny | 50m | 100m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both engines")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from empathy_rl.config import load_config
    from rollout.vllm_engine import engine_env

    model = _common.model_path(args.size)
    cfg = load_config("configs/tiny-cpu.yaml", [f"model.path={model}", f"model.max_response_len={args.max_tokens}", "warmstart.run_sft=false"])
    os.environ.update(engine_env(cfg))
    import torch

    torch.set_num_threads(args.threads)
    load_start = _common.print_load("start")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from empathy_rl.data import load_records
    from rollout.prompts import PromptBuilder
    from rollout.vllm_engine import RolloutWorker

    tokenizer = AutoTokenizer.from_pretrained(model)
    r = cfg.rollout
    builder = PromptBuilder(tokenizer, cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language, r.system_prompt_style, enable_thinking=r.enable_thinking)
    prompts = builder.build_many(load_records(cfg.data.prepared_dir, cfg.data.train_split)[: args.prompts])
    worker = RolloutWorker(cfg, str(model), 0)
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    tokenizer.padding_side = "left"
    width = max(len(p.token_ids) for p in prompts)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p.token_ids)) + list(p.token_ids) for p in prompts])
    attn = (torch.arange(width)[None, :] >= torch.tensor([width - len(p.token_ids) for p in prompts])[:, None]).long()

    def run_vllm(seed: int) -> tuple[int, float]:
        start = time.perf_counter()
        cands = worker.generate(prompts, args.group_size, 1.0, seed)
        return sum(len(c.token_ids) for c in cands), time.perf_counter() - start

    @torch.no_grad()
    def run_hf(seed: int) -> tuple[int, float]:
        torch.manual_seed(seed)
        start = time.perf_counter()
        out = hf.generate(
            input_ids=ids, attention_mask=attn, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=args.max_tokens,
            num_return_sequences=args.group_size, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        seconds = time.perf_counter() - start
        new = out[:, width:]
        eos = new == tokenizer.eos_token_id
        # tokens up to and including the first EOS (the rest is padding)
        first = torch.where(eos.any(-1), eos.float().argmax(-1) + 1, torch.full((new.shape[0],), new.shape[1]))
        return int(first.sum()), seconds

    run_vllm(0), run_hf(0)  # warm-up
    rates: dict[str, list[float]] = {"vLLM (RolloutWorker)": [], "HF generate": []}
    lengths: dict[str, list[float]] = {name: [] for name in rates}
    ratios: list[float] = []
    for repeat in range(args.repeats):
        order = [("vLLM (RolloutWorker)", run_vllm), ("HF generate", run_hf)]
        got = {}
        for name, fn in order if repeat % 2 == 0 else order[::-1]:
            tokens, seconds = fn(1000 + repeat)
            got[name] = tokens / seconds
            rates[name].append(got[name])
            lengths[name].append(tokens / (len(prompts) * args.group_size))
            print(f"repeat {repeat} {name}: {tokens} tokens in {seconds:.2f}s = {got[name]:.0f} tokens/s", flush=True)
        ratios.append(got["vLLM (RolloutWorker)"] / got["HF generate"])
    load_end = _common.print_load("end")
    params = _common.parameter_count(model)
    lines = [
        "| engine | generated tokens/s, median (min-max, n) | mean tokens per completion |",
        "| --- | --- | --- |",
        *[f"| {name} | {_common.spread(values, '{:.0f}')} | {sum(lengths[name]) / len(lengths[name]):.0f} |" for name, values in rates.items()],
        "",
        f"vLLM / HF tokens/s, per repeat: {_common.spread(ratios, '{:.2f}')}.",
    ]
    table = "\n".join(lines)
    note = (
        f"Model {args.size} ({params / 1e6:.2f}M parameters), {len(prompts)} prompts x G={args.group_size}, up to {args.max_tokens} new "
        f"tokens, temperature 1.0, {args.threads} torch thread(s) for both."
    )
    _common.publish(__file__, f"rollout_vs_hf_{args.size}", note, table, load_start, load_end, args.write_docs)


if __name__ == "__main__":
    main()
