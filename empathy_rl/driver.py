"""The single controller of a GRPO run: data -> rollout -> reward -> learner -> weights -> rollout.

The driver is the only place that knows the order of the stages. Each arrow carries one small
record: `Prompt`s to the rollout pool, a `RolloutBatch` back, `ScoreRequest`s to the reward
service, `Score`s back, a `TrainBatch` to the learner group, metrics back, then a weight push
(bucketed) from the learner to every rollout worker, which bumps the policy version.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from empathy_rl import grpo
from empathy_rl.config import EmpathyRLConfig
from empathy_rl.prompt_loader import PromptLoader
from empathy_rl.run_dir import RunDirectory

log = logging.getLogger("empathy_rl")


def _cluster_env() -> dict[str, str]:
    """Variables every actor of the run inherits (offline hub, shared caches, no usage stats)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TORCH_EXTENSIONS_DIR", "VLLM_CACHE_ROOT", "HF_HOME", "TOKENIZERS_PARALLELISM")
    env = {k: os.environ[k] for k in keys if k in os.environ}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def init_ray(cfg: EmpathyRLConfig) -> None:
    """Start a local Ray cluster (cluster.address unset) or join a running one.

    A local cluster gets the run's environment as its runtime env. When joining (`ray job submit`,
    KubeRay), the job's runtime env already reaches every actor, and passing a second one that sets
    the same variables makes Ray refuse to start the driver; so none is passed.
    """
    import ray

    if ray.is_initialized():
        return
    c = cfg.cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = dict(namespace=c.namespace, log_to_driver=True)
    if c.address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local cluster: no token file needed
        kwargs.update(
            num_cpus=c.num_cpus, num_gpus=c.num_gpus, include_dashboard=c.include_dashboard,
            runtime_env={"env_vars": _cluster_env()},
        )
    else:
        kwargs["address"] = c.address
    ray.init(**kwargs)


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)


class GRPOTrainer:
    """Owns the actors of one run. `fit()` runs warm start (optional) and `trainer.total_steps` steps."""

    def __init__(self, cfg: EmpathyRLConfig):
        from transformers import AutoTokenizer

        from empathy_rl.data import load_records
        from reward.serve_app import RewardClient
        from rollout.prompts import PromptBuilder

        self.cfg = cfg
        self.run = RunDirectory(cfg.trainer.run_dir, cfg)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer_path or cfg.model.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        r = cfg.rollout
        self.prompts = PromptBuilder(self.tokenizer, cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language, r.system_prompt_style)
        train = load_records(cfg.data.prepared_dir, cfg.data.train_split)
        self.loader = PromptLoader(train, seed=cfg.trainer.seed + cfg.data.shuffle_seed)
        self.eval_records = load_records(cfg.data.prepared_dir, cfg.data.eval_split) if cfg.trainer.eval_every else []
        self.step = 0
        self.version = 0
        init_ray(cfg)
        t0 = time.perf_counter()
        self.reward = RewardClient(cfg.reward, log_level=cfg.logging.actor_log_level)
        log.info("reward service up (%.1fs)", time.perf_counter() - t0)
        from learner.group import LearnerGroup

        t0 = time.perf_counter()
        self.learner = LearnerGroup(cfg)
        log.info("learner group up: %d worker(s), ZeRO-%d (%.1fs)", cfg.learner.num_workers, cfg.learner.zero_stage, time.perf_counter() - t0)
        self.pool = None

    # ------------------------------------------------------------------ phases
    def warm_start(self) -> Optional[str]:
        """SFT on our bundled CoE examples, run by the learner actor; returns the warm-started path."""
        from empathy_rl.warmstart import build_examples, encode_examples
        from learner.batch import from_sft

        ws = self.cfg.warmstart
        if ws.steps == 0:
            return None
        self.learner.load_policy(self.cfg.model.path, ws.lr, 0, with_reference=False)
        examples = build_examples(ws.examples, seed=ws.seed)
        encoded = encode_examples(examples, self.prompts, self.tokenizer, self.cfg.model.max_response_len)
        if not encoded:
            raise ValueError(f"every warm-start example is longer than model.max_prompt_len={self.cfg.model.max_prompt_len} under rollout.overlong_prompt=drop")
        log.info("warm start: %d examples (%s)", len(encoded), dict(self.prompts.counts))
        self.prompts.counts.clear()  # the rollout counters start at GRPO
        gen = torch.Generator().manual_seed(ws.seed)
        bar = _progress(self.cfg, ws.steps, "warm start")
        for step in range(ws.steps):
            rows = torch.randint(len(encoded), (ws.batch_size,), generator=gen).tolist()
            batch = from_sft([encoded[r][0] for r in rows], [encoded[r][1] for r in rows], self.tokenizer.pad_token_id)
            metrics = self.learner.sft_step(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['sft/loss']:.3f}")
            if (step + 1) % max(1, ws.steps // 5) == 0 or step + 1 == ws.steps:
                self.run.log_metrics({"phase": "warmstart", "step": step + 1, **metrics})
        bar.close()
        out = self.run.path / "warmstart"
        self.learner.save_checkpoint(str(out), save_optimizer=False)
        log.info("warm start done: %d SFT steps, loss %.3f -> %s", ws.steps, metrics["sft/loss"], out / "policy")
        return str(out / "policy")

    def setup(self) -> None:
        """Warm start if configured, then load the GRPO policy + reference and start rollout workers."""
        from rollout.pool import RolloutPool

        policy_path = self.warm_start() or self.cfg.model.path
        self.learner.load_policy(policy_path, self.cfg.learner.lr, self.cfg.learner.warmup_steps, with_reference=True)
        t0 = time.perf_counter()
        self.pool = RolloutPool(self.cfg, policy_path)
        log.info("rollout pool up: %d vLLM worker(s) (%.1fs)", self.cfg.rollout.num_workers, time.perf_counter() - t0)
        if self.cfg.sync.transport == "nccl":
            import ray

            addr, port = ray.get(self.learner.workers[0].address.remote())
            world = 1 + self.cfg.rollout.num_workers * self.cfg.rollout.tensor_parallel_size
            ray.get(self.pool.init_weight_group_refs(addr, port, world) + self.learner.init_weight_group_refs(addr, port, world))

    def sync_weights(self, verify: bool = False) -> tuple[float, list[Optional[str]]]:
        """Push the learner's weights to every rollout worker; returns (seconds, received checksums)."""
        import ray

        start = time.perf_counter()
        self.version += 1
        checksums: list[Optional[str]] = []
        if self.cfg.sync.transport == "object_store":
            refs = self.learner.export_to_object_store()
            checksums = self.pool.push_from_object_store(self.version, refs, verify)
            del refs
        else:
            plan = self.learner.bucket_plan()
            ray.get(self.pool.receive_nccl_refs(self.version, plan) + self.learner.broadcast_refs())
            self.pool.mark_version(self.version)
        return time.perf_counter() - start, checksums

    def _score(self, rollout) -> tuple[list, float]:
        from reward.types import ScoreRequest

        prompts = {p.uid: p for p in rollout.prompts}
        items = [ScoreRequest(prompts[c.prompt_uid].query, c.text, prompts[c.prompt_uid].crisis) for c in rollout.candidates]
        return self.reward.score(items)

    def train_step(self) -> StepResult:
        from learner.batch import from_rollout

        cfg = self.cfg
        t_step = time.perf_counter()
        records = self.loader.next_batch(cfg.trainer.prompts_per_step)
        prompts = self.prompts.build_many(records)
        if not prompts:
            raise RuntimeError("every prompt of this step was dropped as over-long; raise model.max_prompt_len")
        rollout = self.pool.generate(prompts, seed=cfg.rollout.seed + 1_000_003 * (self.step + 1))
        scores, t_reward = self._score(rollout)
        rewards = torch.tensor([s.total for s in scores], dtype=torch.float32)
        estimator = grpo.get_advantage_estimator(cfg.algorithm.advantage)
        advantages = estimator(rewards, rollout.group_size, normalize_std=cfg.algorithm.normalize_std, eps=cfg.algorithm.adv_eps)
        batch = from_rollout(rollout, advantages, self.tokenizer.pad_token_id)
        train_metrics = self.learner.train_step(batch)
        t_sync, _ = self.sync_weights()
        self.step += 1
        metrics = {
            **_reward_metrics(scores, rewards, rollout.group_size, prefix="reward"),
            **rollout.stats,
            **train_metrics,
            "time/reward_s": t_reward,
            "time/sync_s": t_sync,
            "time/step_s": time.perf_counter() - t_step,
            "rollout/prompts": float(len(prompts)),
            "rollout/prompts_truncated": float(sum(p.truncated for p in prompts)),
            "rollout/prompts_dropped_total": float(self.prompts.counts["dropped"]),
            "rollout/policy_version": float(self.version),
        }
        samples = _samples(rollout, scores, self.step, cfg.trainer.samples_per_step)
        return StepResult(self.step, metrics, samples)

    def evaluate(self, n_prompts: Optional[int] = None, seed: int = 12345) -> dict[str, Any]:
        """Sample the eval split with the current rollout weights and score it (no training).

        `trainer.eval_repeats` seeded rounds of `group_size` samples per prompt (the same seeds at
        every evaluation, so evaluations of one run are paired). Returns the `eval/*` metrics and,
        under "by_record", each prompt's mean reward and format pass rate over all its samples, so
        that a gain can be judged per prompt (`empathy_rl.stats.paired_difference`).
        """
        cfg = self.cfg
        records = (self.eval_records or self.loader.records)[: n_prompts or cfg.trainer.eval_prompts]
        prompts = self.prompts.build_many(records)
        scores, rewards, candidates = [], [], []
        for repeat in range(cfg.trainer.eval_repeats):
            rollout = self.pool.generate(prompts, seed=seed + 7919 * repeat, temperature=cfg.trainer.eval_temperature)
            part, _ = self._score(rollout)
            scores += part
            candidates += rollout.candidates
        rewards = torch.tensor([s.total for s in scores])
        metrics: dict[str, Any] = _reward_metrics(scores, rewards, cfg.rollout.group_size, prefix="eval")
        metrics["eval/samples"] = float(len(scores))
        record_of = {p.uid: p.record_id for p in prompts}
        by_record: dict[str, dict[str, list[float]]] = {}
        for cand, score in zip(candidates, scores):
            entry = by_record.setdefault(record_of[cand.prompt_uid], {"reward": [], "format": []})
            entry["reward"].append(score.total)
            entry["format"].append(score.format)
        metrics["by_record"] = {rid: {k: statistics.fmean(v) for k, v in entry.items()} for rid, entry in by_record.items()}
        return metrics

    def fit(self) -> dict[str, Any]:
        """The whole run. Returns a summary (first/last evaluation and step metrics, paths)."""
        cfg = self.cfg
        if self.pool is None:
            self.setup()
        summary: dict[str, Any] = {"run_dir": str(self.run.path)}
        if cfg.trainer.eval_every:
            summary["eval_start"] = self._log_eval()
        bar = _progress(cfg, cfg.trainer.total_steps, "GRPO")
        for _ in range(cfg.trainer.total_steps):
            result = self.train_step()
            m = result.metrics
            self.run.log_metrics({"phase": "grpo", "step": result.step, **m})
            self.run.log_samples(result.samples)
            log.info(
                "step %d/%d reward %.3f±%.3f format %.2f kl %.4f | gen %.2fs reward %.2fs train %.2fs sync %.2fs",
                result.step, cfg.trainer.total_steps, m["reward/mean"], m["reward/std"], m["reward/format_pass_rate"],
                m.get("train/kl", 0.0), m["time/generate_s"], m["time/reward_s"], m["time/train_s"], m["time/sync_s"],
            )
            bar.update(1)
            bar.set_postfix(reward=f"{m['reward/mean']:.2f}", fmt=f"{m['reward/format_pass_rate']:.2f}", kl=f"{m.get('train/kl', 0.0):.3f}")
            summary.setdefault("first_step", m)
            summary["last_step"] = m
            if cfg.trainer.eval_every and result.step % cfg.trainer.eval_every == 0:
                summary["eval_end"] = self._log_eval()
            if cfg.checkpoint.save_every and result.step % cfg.checkpoint.save_every == 0:
                self.save()
        bar.close()
        if cfg.trainer.eval_every and cfg.trainer.total_steps % cfg.trainer.eval_every:
            summary["eval_end"] = self._log_eval()
        if cfg.trainer.total_steps:
            summary["checkpoint"] = str(self.save())
        (self.run.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        return summary

    def _log_eval(self) -> dict[str, Any]:
        metrics = self.evaluate()
        self.run.log_metrics({"phase": "eval", "step": self.step, **{k: v for k, v in metrics.items() if k != "by_record"}})
        log.info(
            "eval @ step %d: reward %.3f format pass rate %.2f (%d samples)",
            self.step, metrics["eval/mean"], metrics["eval/format_pass_rate"], metrics["eval/samples"],
        )
        return metrics

    def save(self) -> Path:
        directory = self.run.checkpoint_dir(self.step)
        self.learner.save_checkpoint(str(directory), self.cfg.checkpoint.save_optimizer)
        state = {"step": self.step, "policy_version": self.version, "loader": self.loader.state()}
        return self.run.finish_checkpoint(self.step, state)

    def shutdown(self) -> None:
        import ray

        if self.pool is not None:
            self.pool.shutdown()
        self.learner.shutdown()
        try:
            self.reward.shutdown()  # deletes only the app this run started; never Serve itself (other apps may share it)
        finally:
            if ray.is_initialized() and self.cfg.cluster.address is None:
                ray.shutdown()


# ---------------------------------------------------------------------- helpers


def _reward_metrics(scores: list, rewards: torch.Tensor, group_size: int, prefix: str) -> dict[str, float]:
    n = len(scores)
    groups = rewards.view(-1, group_size)
    failures = Counter(s.failure for s in scores if s.failure)
    out = {
        f"{prefix}/mean": float(rewards.mean()),
        f"{prefix}/std": float(rewards.std(unbiased=False)),
        f"{prefix}/format_pass_rate": sum(s.format for s in scores) / n,
        f"{prefix}/answer_mean": sum(s.answer for s in scores) / n,
        f"{prefix}/similarity_mean": sum(s.similarity for s in scores) / n,
        f"{prefix}/crisis_mean": statistics.fmean([s.crisis for s in scores if s.crisis != 0] or [0.0]),
        f"{prefix}/zero_std_group_frac": float((groups.std(-1, unbiased=False) == 0).float().mean()),
    }
    for code, count in failures.items():
        out[f"{prefix}/fail_{code}"] = count / n
    return out


def _samples(rollout, scores: list, step: int, k: int) -> list[dict[str, Any]]:
    prompts = {p.uid: p for p in rollout.prompts}
    out = []
    for cand, score in list(zip(rollout.candidates, scores))[:k]:
        p = prompts[cand.prompt_uid]
        out.append(
            {
                "step": step, "record_id": p.record_id, "language": p.language, "crisis": p.crisis,
                "policy_version": cand.policy_version, "finish_reason": cand.finish_reason,
                "reward": score.total, "format": score.format, "answer": score.answer, "similarity": score.similarity,
                "crisis_reward": score.crisis, "failure": score.failure, "response": cand.text,
            }
        )
    return out


def _progress(cfg: EmpathyRLConfig, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not cfg.logging.progress_bar, dynamic_ncols=True)
