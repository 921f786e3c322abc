"""One GRPO learner step against a plain PyTorch forward/backward of the same model on the same batch.

    .venv/bin/python bench/learner_step.py                    # tiny model, 64 rows, 5 repeats
    .venv/bin/python bench/learner_step.py --size 50m --rows 16 --repeats 3

No Ray: the learner actor class (`learner.actor.LearnerWorker`) runs in this process with DeepSpeed
(gloo, ZeRO from the config, one rank), as tests/test_learner.py does. The batch is synthetic:
`--rows` sequences in groups of 4 with group-normalised advantages, prompt lengths uniform in
`--prompt-len` and response lengths uniform in `--response-len` (the tiny preset's GRPO steps have
about 100 response tokens per candidate after a compact system prompt and a query).

Variants, alternated in every repeat so that load drift hits them alike:
- `bound`: plain PyTorch, the same model and rows, micro-batches of `learner.micro_batch_size` in
  row order, `model(input_ids, attention_mask).logits`, cross-entropy on the response tokens,
  backward, AdamW step. This is the work any training step on this batch must do.
- `bound+ref`: `bound` plus a no-grad forward of the same micro-batches (the KL reference GRPO needs).
- `tight bound+ref`: the least work for this loss in plain PyTorch: length-sorted micro-batches,
  `lm_head` on the loss positions only, for the reference forward and the forward/backward.
- `lean`: `LearnerWorker.train_step` as configured now (length-sorted micro-batches, logits on the
  loss positions only, entropy off on non-logging steps).
- `before`: the same step with the previous behaviour put back for comparison (`old_behaviour`):
  row-order micro-batches, logits from each micro-batch's earliest response token on with
  logsumexp log-probs, full-vocabulary entropy on every micro-batch (under no_grad here; before, it
  was built in the graph and detached, which cost a little more).

Then one `lean` step under the torch profiler, with its phases labelled, gives the table of where
the time goes. `--write-docs` puts the tables into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (sets the environment before torch and DeepSpeed are imported)

import torch  # noqa: E402

from empathy_rl import grpo  # noqa: E402
from empathy_rl.config import load_config  # noqa: E402
from learner import actor as actor_module  # noqa: E402
from learner import microbatch  # noqa: E402
from learner.batch import TrainBatch, from_sft  # noqa: E402


def make_batch(vocab: int, rows: int, prompt_len: tuple[int, int], response_len: tuple[int, int], seed: int) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)

    def draw(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    prompts = [torch.randint(10, vocab, (draw(*prompt_len),), generator=g).tolist() for _ in range(rows)]
    responses = [torch.randint(10, vocab, (draw(*response_len),), generator=g).tolist() for _ in range(rows)]
    batch = from_sft(prompts, responses, pad_id=0)
    rewards = torch.rand(rows, generator=g)
    batch.advantages = grpo.group_advantages(rewards, 4)
    return batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_worker(config: str, model: Path, overrides: list[str]):
    cfg = load_config(config, [f"model.path={model}", "learner.lr=1e-5", *overrides])
    worker = actor_module.LearnerWorker(cfg, rank=0, world_size=1)
    worker.init_distributed("127.0.0.1", _free_port())  # a no-op after the first call in this process
    worker.load_policy(str(model), lr=cfg.learner.lr, warmup_steps=0, with_reference=True)
    return worker


def _old_forward_logprobs(module, batch: TrainBatch, temperature: float, device: torch.device, entropy: str = microbatch.ENTROPY_OFF):
    """The previous learner forward, kept here to measure against: logits for every position from the
    micro-batch's earliest response token on, log-probs as z_token - logsumexp(z / T)."""
    ids = batch.input_ids.to(device)
    rows_with_loss = batch.loss_mask.any(-1)
    first = int(batch.loss_mask[rows_with_loss].float().argmax(-1).min()) if rows_with_loss.any() else ids.shape[1] - 2
    out = module(input_ids=ids, attention_mask=batch.attention_mask.to(device), use_cache=False, logits_to_keep=ids.shape[1] - first)
    logits = out.logits[:, :-1]
    z = logits.float() / temperature
    picked = z.gather(-1, ids[:, first + 1 :].unsqueeze(-1)).squeeze(-1)
    logp = torch.nn.functional.pad(picked - torch.logsumexp(z, dim=-1), (first, 0))
    ent = None
    if entropy != microbatch.ENTROPY_OFF:
        ent = torch.nn.functional.pad(grpo.token_entropy_from_logits(logits.detach() if entropy == microbatch.ENTROPY_LOG else logits), (first, 0))
    return logp, ent


@contextlib.contextmanager
def old_behaviour():
    """Put back the previous step for the `before` variant: row-order micro-batches, entropy on every
    micro-batch, logits from the earliest response token (`_old_forward_logprobs`)."""
    saved = [
        (actor_module, "plan_micro_batches", functools.partial(microbatch.plan_micro_batches, sort=False)),
        (actor_module, "entropy_mode", lambda coeff, every, step: microbatch.ENTROPY_LOG),
        (actor_module, "forward_logprobs", _old_forward_logprobs),
        (microbatch, "forward_logprobs", _old_forward_logprobs),
    ]
    originals = [(obj, name, getattr(obj, name)) for obj, name, _ in saved]
    for obj, name, value in saved:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in originals:
            setattr(obj, name, value)


class PlainStep:
    """The bound: a plain PyTorch forward/backward/AdamW step of the same model on the same rows."""

    def __init__(self, model: Path, micro: int, lr: float = 1e-5):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.micro = micro

    def __call__(self, batch: TrainBatch, with_reference: bool, tight: bool = False) -> float:
        """Seconds for one step; `tight`: length-sorted micro-batches and logits on the loss positions only
        (the least work for this loss: the tightest bound), else row order and logits everywhere."""
        start = time.perf_counter()
        lengths = microbatch.sequence_lengths(batch)
        plan = microbatch.plan_micro_batches(lengths, range(len(batch)), self.micro, sort=tight)
        if with_reference:
            with torch.no_grad():
                for rows in plan:
                    part = batch.select(rows)
                    self._nll(part, tight)
        total = batch.num_loss_tokens()
        for rows in plan:
            nll = self._nll(batch.select(rows), tight)
            (nll / total).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def _nll(self, part: TrainBatch, tight: bool) -> torch.Tensor:
        targets = part.input_ids[:, 1:][part.loss_mask]
        if tight:
            hidden = self.model.get_decoder()(input_ids=part.input_ids, attention_mask=part.attention_mask, use_cache=False).last_hidden_state
            logits = self.model.lm_head(hidden[:, :-1][part.loss_mask])
        else:
            logits = self.model(input_ids=part.input_ids, attention_mask=part.attention_mask, use_cache=False).logits[:, :-1][part.loss_mask]
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


PHASES = {
    "reference forward (no grad)": None,
    "policy forward + log-probs": None,
    "GRPO loss + metrics": None,
    "backward": None,
    "optimizer step (DeepSpeed)": None,
}


def _labelled(label: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)

    return wrapper


def profile_step(worker, batch: TrainBatch, top: int) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]], float]:
    """One lean step under the profiler: (phase, ms, share), (top op, self ms, share), total ms."""
    patches = [
        (worker, "_logprobs_nograd", "reference forward (no grad)"),
        (microbatch, "forward_logprobs", "policy forward + log-probs"),
        (grpo, "policy_loss", "GRPO loss + metrics"),
        (worker.engine, "backward", "backward"),
        (worker.engine, "step", "optimizer step (DeepSpeed)"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, label in patches:
        setattr(obj, name, _labelled(label, getattr(obj, name)))
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            with torch.profiler.record_function("whole step"):
                worker.train_step(batch)
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    total = by_name["whole step"].cpu_time_total / 1e3
    phases = []
    for label in PHASES:
        ms = by_name[label].cpu_time_total / 1e3 if label in by_name else 0.0
        phases.append((label, ms, ms / total))
    rest = total - sum(ms for _, ms, _ in phases)
    phases.append(("other (batch slicing, metrics, Python)", rest, rest / total))
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:top]
    top_ops = [(e.key, e.self_cpu_time_total / 1e3, e.self_cpu_time_total / 1e3 / total) for e in ops]
    return phases, top_ops, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny-cpu.yaml", help="the learner's settings (micro-batch, ZeRO stage, KL)")
    parser.add_argument("--size", default="tiny", help="tiny | 50m | 100m (random-init Qwen3 shapes, bench/_common.py)")
    parser.add_argument("--rows", type=int, default=64, help="sequences in the step (prompts x G)")
    parser.add_argument("--prompt-len", type=int, nargs=2, default=(40, 200))
    parser.add_argument("--response-len", type=int, nargs=2, default=(20, 160))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top-ops", type=int, default=8)
    parser.add_argument("--write-docs", action="store_true", help="write the tables into docs/benchmarks.md")
    parser.add_argument("overrides", nargs="*", help="config overrides for the learner (key=value)")
    args = parser.parse_args()
    load_start = _common.print_load("start")
    model = _common.model_path(args.size)
    params = _common.parameter_count(model)
    base = ["algorithm.entropy_log_every=0", *args.overrides]
    lean = make_worker(args.config, model, base)
    before = make_worker(args.config, model, base)
    plain = PlainStep(model, lean.cfg.learner.micro_batch_size)
    threads = torch.get_num_threads()
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model).vocab_size
    batch = make_batch(vocab, args.rows, tuple(args.prompt_len), tuple(args.response_len), seed=0)
    lengths = microbatch.sequence_lengths(batch)
    micro = lean.cfg.learner.micro_batch_size
    pad_sorted = microbatch.padding_share(batch, microbatch.plan_micro_batches(lengths, range(len(batch)), micro))
    pad_rows = microbatch.padding_share(batch, microbatch.plan_micro_batches(lengths, range(len(batch)), micro, sort=False))
    print(
        f"model {args.size} ({params / 1e6:.2f}M parameters, vocab {vocab}), {args.rows} rows, {batch.num_loss_tokens()} response tokens, "
        f"micro-batch {micro}, torch threads {threads}; padding share sorted {pad_sorted:.2f}, row order {pad_rows:.2f}",
        flush=True,
    )

    def run_lean() -> float:
        return lean.train_step(batch)["time/train_s"]

    def run_before() -> float:
        with old_behaviour():
            return before.train_step(batch)["time/train_s"]

    variants = {
        "bound": lambda: plain(batch, with_reference=False),
        "bound+ref": lambda: plain(batch, with_reference=True),
        "tight bound+ref": lambda: plain(batch, with_reference=True, tight=True),
        "lean": run_lean,
        "before": run_before,
    }
    for fn in variants.values():  # warm-up: first-call allocations, DeepSpeed's lazy set-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {"lean / bound": [], "lean / bound+ref": [], "lean / tight bound+ref": [], "before / bound": [], "lean / before": []}
    names = list(variants)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        got = {name: variants[name]() for name in order}
        for name, seconds in got.items():
            times[name].append(seconds)
        ratios["lean / bound"].append(got["lean"] / got["bound"])
        ratios["lean / bound+ref"].append(got["lean"] / got["bound+ref"])
        ratios["lean / tight bound+ref"].append(got["lean"] / got["tight bound+ref"])
        ratios["before / bound"].append(got["before"] / got["bound"])
        ratios["lean / before"].append(got["lean"] / got["before"])
        print(f"repeat {repeat}: " + ", ".join(f"{n} {got[n]:.3f}s" for n in names), flush=True)
    phases, top_ops, total = profile_step(lean, batch, args.top_ops)
    load_end = _common.print_load("end")

    lines = [
        f"| variant | seconds per step, median (min-max, n={args.repeats}) |",
        "| --- | --- |",
        *[f"| {name} | {_common.spread(values)} |" for name, values in times.items()],
        "",
        "| ratio (per repeat, same invocation) | median (min-max) |",
        "| --- | --- |",
        *[f"| {name} | {_common.spread(values, '{:.2f}')} |" for name, values in ratios.items()],
        "",
        f"Where the time goes in one `lean` step under the torch profiler ({total:.0f} ms with profiling on):",
        "",
        "| phase | ms | share |",
        "| --- | --- | --- |",
        *[f"| {label} | {ms:.0f} | {share:.0%} |" for label, ms, share in phases],
        "",
        "| top aten ops by self CPU time | ms | share |",
        "| --- | --- | --- |",
        *[f"| `{name}` | {ms:.0f} | {share:.0%} |" for name, ms, share in top_ops],
    ]
    table = "\n".join(lines)
    summary = (
        f"Model {args.size}: {params / 1e6:.2f}M parameters, vocab {vocab}; {args.rows} rows, {batch.num_loss_tokens()} response "
        f"tokens, prompt lengths {args.prompt_len[0]}-{args.prompt_len[1]}, response lengths {args.response_len[0]}-{args.response_len[1]}; "
        f"micro-batch {micro}, {threads} torch thread(s), ZeRO-{lean.cfg.learner.zero_stage}. Padding share of the forward positions: "
        f"{pad_rows:.2f} in row order, {pad_sorted:.2f} sorted."
    )
    _common.publish(__file__, f"learner_step_{args.size}", summary, table, load_start, load_end, args.write_docs)
    print(f"lean / bound median ratio: {statistics.median(ratios['lean / bound']):.2f}, lean / tight bound+ref {statistics.median(ratios['lean / tight bound+ref']):.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
