"""TRL's side of bench/trl_compare.py: one `GRPOTrainer` run, in the TRL virtual environment.

    .cache/trl-venv/bin/python bench/trl_runner.py SPEC.json OUT_DIR REPORT.json

Not meant to be run by hand: bench/trl_compare.py writes SPEC.json (policy path, prompts file and
every setting, taken from the same config our run uses) and reads REPORT.json (absolute times of
each optimizer step's begin and end, TRL's logged completion lengths). Imports torch,
transformers, datasets and trl, plus our pure-Python reward (`reward.model.RewardModel`, the same
scoring our Ray Serve app runs; it imports neither Ray nor vLLM).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def load_prompts(path: Path, tokenizer) -> list[dict]:
    """The rendered prompts; each must re-tokenize (TRL's way, `tokenizer(text)`) to exactly our ids."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        ids = tokenizer(text=row["prompt"])["input_ids"]
        if ids != row["prompt_ids"]:
            raise SystemExit(f"{path}:{number}: the prompt text re-tokenizes to {len(ids)} ids, not our {len(row['prompt_ids'])}; "
                             "TRL would not see the same prompt")
        rows.append({k: row[k] for k in ("prompt", "query", "crisis", "language", "references")})
    return rows


def main(spec_path: str, out_dir: str, report_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sys.path.insert(0, spec["repo"])
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from empathy_rl.config import load_config
    from reward.model import RewardModel
    from reward.types import ScoreRequest

    cfg = load_config(str(Path(spec["repo"]) / spec["config"]), spec["overrides"])
    scorer = RewardModel(cfg.reward)

    def empathy_reward(prompts, completions, query, crisis, language, references, **_) -> list[float]:
        items = [ScoreRequest(q, c, bool(k), language=lang, references=tuple(refs))
                 for c, q, k, lang, refs in zip(completions, query, crisis, language, references)]
        return [s.total for s in scorer.score(items)]

    tokenizer = AutoTokenizer.from_pretrained(spec["policy"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_list(load_prompts(Path(spec["prompts_file"]), tokenizer))

    steps: list[dict] = []

    class StepTimes(TrainerCallback):
        """Wall-clock begin and end of each optimizer step, and TRL's logged completion length."""

        def on_step_begin(self, args, state, control, **kwargs):
            steps.append({"begin": time.time()})

        def on_step_end(self, args, state, control, **kwargs):
            steps[-1]["end"] = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs and steps:
                steps[-1]["completion_len"] = logs["completions/mean_length"]

    dtype = getattr(torch, spec["dtype"])
    args = GRPOConfig(
        output_dir=out_dir, max_steps=spec["steps"], seed=spec["seed"], use_cpu=not torch.cuda.is_available(),
        bf16=dtype == torch.bfloat16, fp16=False, model_init_kwargs={"dtype": spec["dtype"]},
        per_device_train_batch_size=spec["per_device_train_batch_size"], gradient_accumulation_steps=spec["gradient_accumulation_steps"],
        num_generations=spec["num_generations"], max_completion_length=spec["max_completion_length"],
        temperature=spec["temperature"], top_p=spec["top_p"], top_k=0,
        learning_rate=spec["learning_rate"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=spec["weight_decay"],
        adam_beta1=spec["adam_beta1"], adam_beta2=spec["adam_beta2"], max_grad_norm=spec["max_grad_norm"],
        beta=spec["beta"], epsilon=spec["epsilon"], epsilon_high=spec["epsilon_high"], loss_type="grpo", scale_rewards="group",
        num_iterations=1, gradient_checkpointing=spec["gradient_checkpointing"],
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=spec["policy"], reward_funcs=[empathy_reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[StepTimes()])
    trainer.train()
    Path(report_path).write_text(json.dumps({"completions_per_step": spec["completions_per_step"], "steps": steps}))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
