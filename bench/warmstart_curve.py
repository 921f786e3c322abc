"""Format pass rate of the tiny model against warm-start (SFT) steps.

Plain torch on one thread, the same examples, prompts and loss as the learner's warm start, and
Hugging Face sampling at temperature 1.0 for the pass rate (vLLM agrees within 0.05 at n=64).
Used to choose `warmstart.*` in configs/tiny-cpu.yaml and the learning test's budget.

    .venv/bin/python bench/warmstart_curve.py --model runs/tiny-model --lr 1e-2 --batch 8 --steps 400
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from empathy_rl import coe, grpo
from empathy_rl.warmstart import build_examples
from learner.batch import from_sft


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/tiny-model")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--style", default="compact", choices=["compact", "full"])
    ap.add_argument("--eval-prompts", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)

    def prompt(ex) -> list[int]:
        messages = [{"role": "system", "content": coe.system_prompt(ex.language, args.style)}, {"role": "user", "content": ex.query}]
        return tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]

    data = [(prompt(e), tok(e.response(), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]) for e in build_examples(160)]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def pass_rate() -> float:
        model.eval()
        ok = n = 0
        for p, _ in data[: args.eval_prompts]:
            out = model.generate(torch.tensor([p] * 4), do_sample=True, temperature=1.0, max_new_tokens=160, pad_token_id=tok.pad_token_id)
            for o in out:
                ok += coe.format_reward(tok.decode(o[len(p) :], skip_special_tokens=True))
                n += 1
        model.train()
        return ok / n

    print("| step | loss | train s (cumulative) | format pass rate (T=1.0, n=%d) |" % (4 * args.eval_prompts))
    print("| --- | --- | --- | --- |")
    train_s = 0.0
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        rows = torch.randint(len(data), (args.batch,), generator=gen).tolist()
        batch = from_sft([data[r][0] for r in rows], [data[r][1] for r in rows], tok.pad_token_id)
        first = int(batch.loss_mask.float().argmax(-1).min())
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=batch.input_ids.shape[1] - first).logits[:, :-1]
        logp = torch.nn.functional.pad(grpo.sequence_log_probs(logits, batch.input_ids[:, first + 1 :]), (first, 0))
        loss = -logp[batch.loss_mask].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        train_s += time.perf_counter() - t0
        if step % args.every == 0:
            print(f"| {step} | {loss.item():.3f} | {train_s:.0f} | {pass_rate():.2f} |", flush=True)


if __name__ == "__main__":
    main()
