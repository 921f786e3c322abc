"""The single controller of a GRPO run: data -> rollout -> reward -> learner -> weights -> rollout.

The driver is the only place that knows the order of the stages. Each arrow carries one small
record: `Prompt`s to the rollout pool, a `RolloutBatch` back, `ScoreRequest`s to the reward
service, `Score`s back, a `TrainBatch` to the learner group, metrics back, then a weight push
(bucketed) from the learner to every rollout worker, which bumps the policy version.
"""

from __future__ import annotations

import dataclasses
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
from empathy_rl.config import EmpathyRLConfig, reward_app_name, run_id
from empathy_rl.checkpointing import load_rng, read_state, resolve_resume, save_rng
from empathy_rl.prompt_loader import Cursor, PromptLoader
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
        if c.metrics_export_port is not None:
            kwargs["_metrics_export_port"] = c.metrics_export_port  # the node's Prometheus endpoint
    else:
        kwargs["address"] = c.address
    ray.init(**kwargs)


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)  # the records this step drew, in order (prompts.jsonl)


@dataclass
class ScoredRollout:
    """A rollout whose groups were scored while it generated (`rollout.stream_rewards`)."""

    rollout: Any  # RolloutBatch
    scores: list  # one Score per candidate, in candidate order
    timing: dict[str, float]  # time/reward_s and the timing/* keys of empathy_rl.reward_stream.overlap_metrics


class GRPOTrainer:
    """Owns the actors of one run. `fit()` runs `trainer.total_steps` GRPO steps from the starting policy."""

    def __init__(self, cfg: EmpathyRLConfig):
        from concurrent.futures import ThreadPoolExecutor

        self.cfg = cfg
        self.reward = self.placement = self.learner = self.pool = self.weight_sync = self.source = None
        self._cursor: Optional[dict[str, int]] = None  # loader state after the last trained step's records
        self.learner_restarts = 0  # learner rebuilds from a checkpoint so far (trainer.learner_restarts)
        self._owns_ray = False
        # Resume: the checkpoint is found (and the run directory checked) before anything starts.
        self.resume_from = resolve_resume(cfg.trainer.run_dir, cfg.checkpoint.resume) if cfg.checkpoint.resume else None
        self.resume_state = read_state(self.resume_from) if self.resume_from is not None else None
        import ray

        self._owns_ray = cfg.cluster.address is None and not ray.is_initialized()
        # The starting policy (also the KL reference): warmstart.policy, or the sft stage's output,
        # which runs here first when warmstart.run_sft is set and it is missing. A resumed run keeps its own.
        warm = None
        if self.resume_from is None:
            from empathy_rl.sft import warmstart_policy

            RunDirectory.check_new(cfg.trainer.run_dir)  # refuse a used run directory before any SFT runs
            warm = warmstart_policy(cfg, progress=cfg.logging.progress_bar)
        self.run = RunDirectory(cfg.trainer.run_dir, cfg, resume_step=self.resume_state["step"] if self.resume_state else None)
        state = self.resume_state or {}
        # The tokenizer and the prompts load in a thread while Ray starts here: they do not need each
        # other, and each takes seconds (transformers' imports ~3 s, `ray.init` ~4 s on 2 cores).
        # Nothing in the thread touches Ray. A failure there stops the local cluster this run started.
        with ThreadPoolExecutor(1, thread_name_prefix="load-inputs") as pool:
            inputs = pool.submit(self._load_inputs, state)
            try:
                init_ray(cfg)
                inputs.result()
            except BaseException:
                inputs.cancel()
                if self._owns_ray and ray.is_initialized():
                    ray.shutdown()
                raise
        self.step = state.get("step", 0)
        self.version = state.get("policy_version", 0)
        # the GRPO starting point (also the KL reference)
        self.start_policy: str = state.get("start_policy") or warm or cfg.model.path
        if self.resume_from is not None:
            log.info("resuming from %s: step %d, policy version %d, data cursor %s", self.resume_from, self.step, self.version, state["loader"])
        log.info("run id %s: prefix of this run's actors, placement groups and reward app (trainer.run_name)", run_id(cfg))
        try:
            self._start_services()
        except BaseException:
            self.shutdown()  # set-up failed half way: remove what this run started (reward app, actors, groups)
            raise

    def _load_inputs(self, state: dict[str, Any]) -> None:
        """Tokenizer, prompt builder, prompt loader (at the resumed cursor) and evaluation records."""
        from transformers import AutoTokenizer

        from empathy_rl.data import load_records
        from rollout.prompts import PromptBuilder

        cfg, r = self.cfg, self.cfg.rollout
        tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer_path or cfg.model.path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.prompts = PromptBuilder(
            tokenizer, cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language, r.system_prompt_style,
            enable_thinking=r.enable_thinking,
        )
        train = load_records(cfg.data.prepared_dir, cfg.data.train_split)
        cursor = Cursor(**state["loader"]) if state else None
        self.loader = PromptLoader(train, seed=cfg.trainer.seed + cfg.data.shuffle_seed, cursor=cursor)
        self.eval_records = load_records(cfg.data.prepared_dir, cfg.data.eval_split) if cfg.trainer.eval_every else []

    def _start_services(self) -> None:
        """Reward service, learner group (policy and reference loaded) and rollout pool, started at once.

        The placement groups are reserved first (while the reward app deploys), then the learner and
        the rollout engines start together (`empathy_rl.startup`). Seconds per component go to the log
        and to metrics.jsonl as one `{"phase": "startup"}` record.
        """
        import ray

        from empathy_rl.metrics_export import MetricsSink
        from empathy_rl.placement import Placement
        from empathy_rl.startup import ConcurrentStart

        # Imported here, before any stage thread runs: Ray sets up its serializers (which walk the
        # pydantic modules) on first use, and a thread importing Serve/pydantic at that moment made
        # it fail with KeyError 'pydantic.v1'. `ray.put` sets the serializers up now.
        import learner.group  # noqa: F401
        import reward.serve_app  # noqa: F401
        import rollout.pool  # noqa: F401

        ray.put(None)
        cfg = self.cfg
        self.run.sinks.append(MetricsSink(self.run.path, cfg.logging.ray_metrics, cfg.logging.tensorboard))
        t_start = time.perf_counter()
        starter = ConcurrentStart()
        starter.start("reward service", self._start_reward, cfg.timeouts.startup_s, "timeouts.startup_s")
        try:
            t0 = time.perf_counter()
            self.placement = Placement(cfg)  # every learner and engine slot, reserved before any actor starts
            log.info("placement groups reserved: layout %s (%.1fs)", cfg.cluster.layout, time.perf_counter() - t0)
        except BaseException:
            starter.settle()  # the reward app must be up (and so known to shutdown) before the error goes out
            raise
        # The learner's deadline covers its rendezvous and its DeepSpeed build (load_policy), each up to startup_s.
        starter.start("learner group", self._start_learner, 2 * cfg.timeouts.startup_s, "timeouts.startup_s, twice")
        starter.start("rollout pool", self._start_rollout, cfg.timeouts.startup_s, "timeouts.startup_s")
        seconds = starter.wait()
        record = {
            "phase": "startup",
            "reward_s": seconds["reward service"],
            "learner_s": seconds["learner group"],
            "rollout_s": seconds["rollout pool"],
            "total_s": time.perf_counter() - t_start,
        }
        log.info(
            "services up in %.1fs (started together): reward %.1fs, learner %.1fs, rollout %.1fs",
            record["total_s"], record["reward_s"], record["learner_s"], record["rollout_s"],
        )
        self.run.log_metrics(record)

    def _start_reward(self) -> None:
        from reward.serve_app import RewardClient

        t0 = time.perf_counter()
        # A started app is the run's own: `<run id>-<reward.app_name>` (attach/url keep the shared name).
        reward_cfg = dataclasses.replace(self.cfg.reward, app_name=reward_app_name(self.cfg))
        self.reward = RewardClient(reward_cfg, log_level=self.cfg.logging.actor_log_level)
        log.info("reward service up: app %r (%.1fs)", reward_cfg.app_name, time.perf_counter() - t0)

    def _start_learner(self) -> None:
        """Learner ranks, then the starting policy and its KL reference (and, on resume, the checkpoint)."""
        from learner.group import LearnerGroup

        cfg = self.cfg
        t0 = time.perf_counter()
        self.learner = LearnerGroup(cfg, self.placement)
        # The reference is always the run's starting policy; on resume the weights, optimizer, scheduler and RNG come from the checkpoint.
        self.learner.load_policy(self.start_policy, cfg.learner.lr, cfg.learner.warmup_steps, with_reference=True)
        if self.resume_from is not None:
            updates = self.learner.load_checkpoint(str(self.resume_from))
            log.info("learner resumed from %s (%d optimizer steps)", self.resume_from, updates)
        log.info("learner group up: %d worker(s), ZeRO-%d (%.1fs)", cfg.learner.num_workers, cfg.learner.zero_stage, time.perf_counter() - t0)

    def _start_rollout(self) -> None:
        from rollout.pool import RolloutPool

        t0 = time.perf_counter()
        policy_path = self.start_policy if self.resume_from is None else str(self.resume_from / "policy")
        self.pool = RolloutPool(self.cfg, policy_path, self.placement)
        log.info("rollout pool up: %d vLLM worker(s) (%.1fs)", self.cfg.rollout.num_workers, time.perf_counter() - t0)

    # ------------------------------------------------------------------ phases
    def setup(self) -> None:
        """Connect the started services: weight sync, the rollout source, and (on resume) the resumed weights."""
        if self.weight_sync is not None:
            return
        if self.resume_from is not None and (self.resume_from / "driver_rng.pt").is_file():
            load_rng(self.resume_from / "driver_rng.pt")
        from empathy_rl.weight_sync import WeightSync

        self.weight_sync = WeightSync(self.cfg, self.learner, self.pool)
        self.weight_sync.setup()  # NCCL: its own port (sync.nccl_port or a free one), never DeepSpeed's
        from empathy_rl.rollout_source import RolloutSource

        generate = self._generate_streamed if self.cfg.rollout.stream_rewards else None  # None: pool.generate, scored in train_step
        self.source = RolloutSource(self.cfg, self.loader, self.prompts, self.pool, generate)
        self.pool.on_restart = self._resync_rollout  # a restarted engine gets the current weights before its prompts are re-issued
        if self.resume_from is not None:
            self.weight_sync.push(self.version)  # every worker holds the learner's resumed weights, at the resumed version

    def _resync_rollout(self) -> None:
        """After a rollout actor restarted: every worker gets the learner's weights at the pool's current version."""
        if self.cfg.sync.transport == "nccl":  # the restarted engine is not in the old NCCL group: form a new one
            self.weight_sync.teardown()
            self.weight_sync.setup()
        self.weight_sync.push(self.pool.version)

    def sync_weights(self, verify: bool = False) -> tuple[float, list[Optional[str]]]:
        """Push the learner's weights to every rollout worker; returns (seconds, received checksums).

        Every wait has `sync.timeout_s`; a failure raises `WeightSyncError` naming the stage and actor.
        """
        start = time.perf_counter()
        self.version += 1
        checksums = self.weight_sync.push(self.version, verify)
        return time.perf_counter() - start, checksums

    def _score(self, rollout) -> tuple[list, float]:
        from empathy_rl.reward_stream import score_requests

        prompts = {p.uid: p for p in rollout.prompts}
        items = [item for c in rollout.candidates for item in score_requests(prompts[c.prompt_uid], [c])]
        return self.reward.score(items)

    def _generate_streamed(self, prompts: list, seed: int) -> "ScoredRollout":
        """Generate with each group scored as soon as it is done (`rollout.stream_rewards`).

        The pool streams groups (`rollout.streaming`); `empathy_rl.reward_stream` sends each to the
        reward service and collects the scores in batch order. In async mode this runs in the
        prefetch thread, so both generation and scoring overlap the previous step's training.
        """
        from empathy_rl.reward_stream import StreamScorer

        scorer = StreamScorer(self.reward, self.cfg.reward)
        try:
            rollout = self.pool.generate_streamed(prompts, seed=seed, on_group=scorer.on_group)
        except BaseException:
            scorer.close()
            raise
        scores, timing = scorer.finish(rollout)
        return ScoredRollout(rollout, scores, timing)

    def _scored(self, produced) -> tuple[Any, list, dict[str, float]]:
        """(rollout, scores, reward timing) of what the rollout source produced: scored already when streamed."""
        from empathy_rl.reward_stream import overlap_metrics

        if isinstance(produced, ScoredRollout):
            return produced.rollout, produced.scores, produced.timing
        scores, t_reward = self._score(produced)
        generated = produced.stats["time/generate_s"]  # scored after generation: the whole reward time is tail
        timing = overlap_metrics(generated, generated, generated + t_reward)
        timing["time/reward_s"] = t_reward
        return produced, scores, timing

    def train_step(self) -> StepResult:
        from learner.batch import from_rollout

        cfg = self.cfg
        t_step = time.perf_counter()
        # sync: generated now; async: generated during the previous step's training (empathy_rl.rollout_source)
        drawn, produced = self.source.next(self.step + 1, max(cfg.trainer.total_steps, self.step + 1))
        records, prompts = drawn.records, drawn.prompts
        rollout, scores, reward_timing = self._scored(produced)
        rewards = torch.tensor([s.total for s in scores], dtype=torch.float32)
        estimator = grpo.get_advantage_estimator(cfg.algorithm.advantage)
        advantages = estimator(rewards, rollout.group_size, normalize_std=cfg.algorithm.normalize_std, eps=cfg.algorithm.adv_eps)
        batch = from_rollout(rollout, advantages, self.tokenizer.pad_token_id)
        train_metrics = self.learner.train_step(batch)
        lag = self.version - min(c.policy_version for c in rollout.candidates)  # learner version at training - oldest sample's
        tokens = sum(len(c.token_ids) for c in rollout.candidates)
        t_sync, _ = self.sync_weights()
        self.step += 1
        self._cursor = drawn.cursor  # the loader may be a batch ahead (async): a checkpoint holds this step's cursor
        metrics = {
            **_reward_metrics(scores, rewards, rollout.group_size, prefix="reward"),
            **rollout.stats,
            **train_metrics,
            **reward_timing,  # time/reward_s and timing/* (reward tail and overlap, empathy_rl.reward_stream)
            "time/sync_s": t_sync,
            "time/step_s": time.perf_counter() - t_step,
            "rollout/prompts": float(len(prompts)),
            "rollout/prompts_truncated": float(sum(p.truncated for p in prompts)),
            "rollout/prompts_dropped_total": float(self.prompts.counts["dropped"]),
            "rollout/policy_version": float(self.version),
            "rollout/policy_lag": float(lag),
            "rollout/tokens": float(tokens),
            "rollout/candidates": float(len(rollout.candidates)),
            "rollout/tokens_per_s": tokens / max(rollout.stats["time/generate_s"], 1e-9),
        }
        samples = _samples(rollout, scores, self.step, cfg.trainer.samples_per_step)
        return StepResult(self.step, metrics, samples, [r.id for r in records])

    def run_step(self) -> StepResult:
        """`train_step`, rebuilding a dead learner from the last checkpoint up to `trainer.learner_restarts` times."""
        from empathy_rl.faults import is_learner_death, restart_learner_from_checkpoint

        while True:
            try:
                return self.train_step()
            except Exception as err:
                if not is_learner_death(err) or self.learner_restarts >= self.cfg.trainer.learner_restarts:
                    raise
                self.learner_restarts += 1
                log.warning("%s; rebuilding the learner from the last checkpoint (%d/%d)", err, self.learner_restarts, self.cfg.trainer.learner_restarts)
                restart_learner_from_checkpoint(self)

    def evaluate(
        self, n_prompts: Optional[int] = None, seed: int = 12345, records: Optional[list] = None, text_metrics: Optional[bool] = None
    ) -> dict[str, Any]:
        """Sample the eval split (or `records`) with the current rollout weights and score it (no training).

        `trainer.eval_repeats` seeded rounds of `group_size` samples per prompt (the same seeds at
        every evaluation, so evaluations of one run are paired). Returns the `eval/*` metrics and,
        under "by_record", each prompt's mean reward and format pass rate over all its samples, so
        that a gain can be judged per prompt (`empathy_rl.stats.paired_difference`).
        """
        cfg = self.cfg
        records = (records or self.eval_records or self.loader.records)[: n_prompts or cfg.trainer.eval_prompts]
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
        if cfg.trainer.eval_text_metrics if text_metrics is None else text_metrics:  # the paper's reference metrics on these answers (BLEU, ROUGE-L, METEOR, Distinct)
            from empathy_rl.evaluation import rollout_text_metrics

            metrics.update(rollout_text_metrics(prompts, candidates, cfg.eval.zh_tokenizer, cfg.eval.meteor_wordnet))
        return metrics

    def fit(self) -> dict[str, Any]:
        """The whole run. Returns a summary (first/last evaluation and step metrics, paths)."""
        cfg = self.cfg
        if self.weight_sync is None:
            self.setup()
        summary: dict[str, Any] = {"run_dir": str(self.run.path), "start_policy": self.start_policy}
        if cfg.trainer.eval_every and self.step == 0:  # a resumed run logged its start evaluation already
            summary["eval_start"] = self._log_eval()
        bar = _progress(cfg, cfg.trainer.total_steps, "GRPO")
        bar.update(self.step)
        while self.step < cfg.trainer.total_steps:
            result = self.run_step()
            m = result.metrics
            self.run.log_prompts(result.step, result.record_ids)
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
            latest = self.run.store.latest()
            done = latest is not None and read_state(latest)["step"] == self.step
            summary["checkpoint"] = str(latest if done else self.save())
        (self.run.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        if cfg.logging.plots and cfg.trainer.total_steps:
            from empathy_rl.plots import plot_run

            summary["plots"] = [str(p) for p in plot_run(self.run.path)]
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
        """Checkpoint the current step atomically (`empathy_rl.checkpointing`); returns its directory."""
        staging = self.run.store.staging_dir(self.step)
        self.learner.save_checkpoint(str(staging), self.cfg.checkpoint.save_optimizer)
        save_rng(staging / "driver_rng.pt")
        state = {
            "step": self.step,
            "policy_version": self.version,
            "loader": self._cursor or self.loader.state(),
            "start_policy": self.start_policy,
            "rollout_workers": self.cfg.rollout.num_workers,
            "learner_workers": self.cfg.learner.num_workers,
        }
        directory = self.run.store.commit(staging, self.step, state)
        log.info("checkpoint %s written (step %d, policy version %d)", directory.name, self.step, self.version)
        return directory

    def shutdown(self) -> None:
        import ray

        # In this order (actors before the placement groups they sit in); each part is attempted even
        # if an earlier one fails, so a failed run never leaves its reward app or actors behind.
        parts = [
            ("rollout prefetch", "source", lambda source: source.close()),
            ("rollout pool", "pool", lambda pool: pool.shutdown()),
            ("learner group", "learner", lambda learner: learner.shutdown()),
            ("placement groups", "placement", lambda placement: placement.remove()),
            # deletes only the app this run started; never Serve itself (other apps may share it)
            ("reward service", "reward", lambda reward: reward.shutdown()),
        ]
        for what, attr, stop in parts:
            obj = getattr(self, attr, None)
            if obj is None:
                continue
            try:
                stop(obj)
            except Exception as err:  # noqa: BLE001  (shutdown must reach the next part)
                log.warning("shutdown: stopping the %s failed: %s: %s", what, type(err).__name__, err)
            setattr(self, attr, None)
        self.run.close()  # flush TensorBoard
        if ray.is_initialized() and self._owns_ray:  # a cluster this run started; never one it joined
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
        # share of crisis queries (the only ones with a non-zero crisis component) answered with +crisis reward
        f"{prefix}/crisis_handled_rate": statistics.fmean([float(s.crisis > 0) for s in scores if s.crisis != 0] or [0.0]),
        f"{prefix}/zero_std_group_frac": float((groups.std(-1, unbiased=False) == 0).float().mean()),
    }
    for code, count in failures.items():
        out[f"{prefix}/fail_{code}"] = count / n
    refs = [s.reference_similarity for s in scores if getattr(s, "reference_similarity", None) is not None]
    if refs:  # reward.answer_mode=reference: how close answers come to the counsellors' answers
        out[f"{prefix}/reference_similarity_mean"] = statistics.fmean(refs)
        out[f"{prefix}/reference_coverage"] = len(refs) / n
    for lang in sorted({getattr(s, "language", "") for s in scores} - {""}):  # mixed zh/en batches: per-language answer reward
        own = [s.answer for s in scores if s.language == lang]
        out[f"{prefix}/answer_mean_{lang}"] = sum(own) / len(own)
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
                "reference_similarity": score.reference_similarity,
                "crisis_reward": score.crisis, "failure": score.failure, "response": cand.text,
            }
        )
    return out


def _progress(cfg: EmpathyRLConfig, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not cfg.logging.progress_bar, dynamic_ncols=True)
