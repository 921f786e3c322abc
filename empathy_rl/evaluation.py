"""`empathy-rl eval`: several systems side by side on a held-out split, with the paper's metrics.

For each system (a model directory, an SFT output directory or a GRPO run directory) one vLLM
`RolloutWorker` actor generates answers to the same prompts with the same seeds (`eval.*`), the
answers are scored by `reward.model.RewardModel` (the scorer training uses) and by the reference
metrics of `empathy_rl.eval_metrics`, per language and overall, with bootstrap intervals over
prompts. `eval_report` writes report.json, report.md and PNG plots; the anonymised texts go to
generations.jsonl, which `empathy-rl rank export` turns into human-ranking sets.

One system's engine runs at a time, so a 2-core machine only ever holds one model; the actor is
killed before the next starts. The Python API is `evaluate_systems(cfg, systems) -> EvalReport`.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from empathy_rl import eval_metrics
from empathy_rl.atomic_io import atomic_write_lines
from empathy_rl.config import EmpathyRLConfig
from empathy_rl.data import CounselingRecord, load_records

log = logging.getLogger("empathy_rl")

GENERATIONS_FILE = "generations.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


class EvalError(ValueError):
    """A system spec, a model directory or the evaluation data cannot be used; the message names it."""


# ---------------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class System:
    """One system to evaluate: a display name, what the user gave, and the model directory it resolved to."""

    name: str
    given: str
    model_dir: str


def resolve_model_dir(path: str | Path) -> Path:
    """The Hugging Face policy directory behind `path`.

    Accepted: a model directory (has config.json); a GRPO run directory (its `checkpoints/latest`
    policy); a checkpoint or `empathy-rl sft` output directory (its `policy/`).
    """
    from empathy_rl.checkpointing import CheckpointStore

    p = Path(path)
    if not p.exists():
        raise EvalError(f"{p} does not exist")
    if (p / "config.json").is_file():
        return p
    if (p / "checkpoints").is_dir():
        latest = CheckpointStore(p / "checkpoints", keep_last=1).latest()
        if latest is not None and (latest / "policy" / "config.json").is_file():
            return latest / "policy"
    if (p / "policy" / "config.json").is_file():
        return p / "policy"
    raise EvalError(
        f"{p}: no model found (looked for config.json, checkpoints/latest -> policy/, policy/); "
        "give a Hugging Face model directory, a run directory or an SFT output directory"
    )


def parse_system(spec: str) -> System:
    """`NAME=PATH` -> System (PATH resolved to its model directory)."""
    name, sep, path = spec.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise EvalError(f"--system {spec!r} must look like NAME=PATH (e.g. grpo=runs/demo)")
    if not all(c.isalnum() or c in "-_." for c in name):
        raise EvalError(f"--system {spec!r}: the name {name!r} may hold letters, digits, '-', '_' and '.' only")
    return System(name, path, str(resolve_model_dir(path)))


def check_systems(systems: Sequence[System]) -> None:
    if not systems:
        raise EvalError("no system to evaluate: pass --system NAME=PATH at least once")
    names = [s.name for s in systems]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EvalError(f"system name(s) {', '.join(repeated)} given more than once; names must be unique")


# ---------------------------------------------------------------------------------- data


def eval_records(cfg: EmpathyRLConfig) -> list[CounselingRecord]:
    """The records of `eval.split` (first `eval.max_prompts`), each with at least one reference."""
    records = load_records(cfg.data.prepared_dir, cfg.eval.split)
    if not records:
        raise EvalError(
            f"split {cfg.eval.split!r} of {cfg.data.prepared_dir} is empty; choose another eval.split or prepare the data "
            "with data.val_fraction / data.test_fraction > 0"
        )
    records = [r for r in records if any(a.strip() for a in r.answers)]
    return records[: cfg.eval.max_prompts] if cfg.eval.max_prompts else records


def scored_answer(output: str) -> tuple[str, bool]:
    """The text the reference metrics score and whether it came from an `<answer>` block.

    The `<answer>` block when the output has one; otherwise the whole output with the CoE tags
    removed, so that a system that never writes the CoE (a base model) is still comparable.
    """
    from empathy_rl import coe

    parsed = coe.parse_coe(output)
    if parsed.answer:
        return parsed.answer, True
    return coe.strip_tags(output), False


# ---------------------------------------------------------------------------------- generation


@dataclass
class Generation:
    """One answer of one system to one record."""

    record_id: str
    sample: int
    text: str  # the full output (CoE and answer)
    finish_reason: str


def _system_config(cfg: EmpathyRLConfig, system: System) -> EmpathyRLConfig:
    sys_cfg = copy.deepcopy(cfg)
    sys_cfg.model.path = system.model_dir
    if cfg.eval.max_response_len is not None:
        sys_cfg.model.max_response_len = cfg.eval.max_response_len
    return sys_cfg


def generate(cfg: EmpathyRLConfig, system: System, records: Sequence[CounselingRecord]) -> list[Generation]:
    """Answers of `system` to `records` from a vLLM rollout actor (started here, killed after)."""
    import ray
    from transformers import AutoTokenizer

    from rollout.prompts import PromptBuilder
    from rollout.vllm_engine import RolloutWorker, engine_env

    sys_cfg = _system_config(cfg, system)
    tokenizer = AutoTokenizer.from_pretrained(sys_cfg.model.tokenizer_path or system.model_dir)
    r = sys_cfg.rollout
    builder = PromptBuilder(tokenizer, sys_cfg.model.max_prompt_len, r.overlong_prompt, r.system_prompt_language,
                            r.system_prompt_style, enable_thinking=r.enable_thinking)
    prompts = builder.build_many(records)
    if builder.counts["dropped"]:
        log.warning("%s: %d prompt(s) dropped as over-long (rollout.overlong_prompt=drop)", system.name, builder.counts["dropped"])
    greedy = cfg.eval.decoding == "greedy"
    n = 1 if greedy else cfg.eval.samples_per_prompt
    temperature = 0.0 if greedy else cfg.eval.temperature
    t0 = time.perf_counter()
    actor = ray.remote(RolloutWorker).options(
        num_cpus=cfg.eval.num_cpus, num_gpus=r.num_gpus_per_worker, runtime_env={"env_vars": engine_env(sys_cfg)},
    ).remote(sys_cfg, system.model_dir, 0)
    try:
        ray.get(actor.get_policy_version.remote(), timeout=cfg.timeouts.startup_s)  # engine up
        candidates = ray.get(actor.generate.remote(prompts, n, temperature, cfg.eval.seed), timeout=cfg.timeouts.generate_s)
    except ray.exceptions.GetTimeoutError as err:
        raise EvalError(f"{system.name}: vLLM engine did not start or answer in time (timeouts.startup_s / timeouts.generate_s)") from err
    finally:
        ray.kill(actor)
    log.info("%s: %d answers to %d prompts in %.1fs", system.name, len(candidates), len(prompts), time.perf_counter() - t0)
    record_of = {p.uid: p.record_id for p in prompts}
    seen: Counter[int] = Counter()
    out = []
    for c in candidates:
        out.append(Generation(record_of[c.prompt_uid], seen[c.prompt_uid], c.text, c.finish_reason))
        seen[c.prompt_uid] += 1
    return out


# ---------------------------------------------------------------------------------- scoring


@dataclass
class EvalReport:
    """Every number of one evaluation. `systems[name][lang]` holds metrics, intervals and reward stats
    for lang in the evaluated languages and "all"; `to_dict()` is what report.json holds."""

    settings: dict[str, Any]
    systems: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    output_dir: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "systems": self.systems}

    def metric(self, system: str, metric: str, language: str = "all") -> float:
        """One number, e.g. `report.metric("grpo", "bleu1", "zh")`."""
        block = self.systems[system][language]
        return block["metrics"][metric] if metric in block["metrics"] else block["reward"][metric]


def _interval(values: np.ndarray, units: Sequence[str], resamples: int, seed: int, confidence: float) -> Optional[tuple[float, float]]:
    """Percentile bootstrap interval of a mean, resampling prompts."""
    if resamples <= 0 or len(values) == 0:
        return None
    keys = sorted(set(units))
    index = {k: i for i, k in enumerate(keys)}
    rows = np.array([index[u] for u in units])
    sums = np.bincount(rows, weights=values, minlength=len(keys))
    sizes = np.bincount(rows, minlength=len(keys)).astype(float)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(keys), len(keys)), minlength=len(keys))
        draws.append(float(counts @ sums / (counts @ sizes)))
    alpha = (1 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def _block(cfg: EmpathyRLConfig, rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Metrics, intervals and reward statistics of a set of scored answers (one system, one language or all)."""
    e = cfg.eval
    stats = [row["stats"] for row in rows]
    units = [row["record_id"] for row in rows]
    metrics = eval_metrics.aggregate(stats)
    intervals = eval_metrics.bootstrap_intervals(stats, units, e.bootstrap_resamples, seed, e.confidence)
    scores = [row["score"] for row in rows]
    crisis_rows = [row for row in rows if row["crisis"]]
    fmt = np.array([s.format for s in scores], dtype=float)
    total = np.array([s.total for s in scores], dtype=float)
    reward = {
        "format_pass_rate": float(fmt.mean()),
        "reward_mean": float(total.mean()),
        "answer_reward_mean": statistics.fmean(s.answer for s in scores),
        "similarity_mean": statistics.fmean(s.similarity for s in scores),
        "crisis_records": len({row["record_id"] for row in crisis_rows}),
        # share of answers to crisis records whose crisis component is positive (points to immediate help)
        "crisis_handled_rate": statistics.fmean(float(row["score"].crisis > 0) for row in crisis_rows) if crisis_rows else None,
        "answer_chars_mean": statistics.fmean(len(row["answer"]) for row in rows),
        "answer_block_rate": statistics.fmean(float(row["from_block"]) for row in rows),
        "truncated_rate": statistics.fmean(float(row["finish_reason"] == "length") for row in rows),
        "failures": dict(sorted(Counter(s.failure for s in scores if s.failure).items())),
    }
    reward_ci = {
        "format_pass_rate": _interval(fmt, units, e.bootstrap_resamples, seed + 1, e.confidence),
        "reward_mean": _interval(total, units, e.bootstrap_resamples, seed + 2, e.confidence),
    }
    return {
        "answers": len(rows), "prompts": len(set(units)), "metrics": metrics, "intervals": intervals,
        "reward": reward, "reward_intervals": reward_ci,
    }


def score_system(
    cfg: EmpathyRLConfig, generations: Sequence[Generation], records: dict[str, CounselingRecord], reward_model,
    meteor: eval_metrics.MeteorSetup,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per-language and overall blocks of one system, and its scored rows (for generations.jsonl)."""
    from reward.types import ScoreRequest

    requests = [
        ScoreRequest(records[g.record_id].query, g.text, records[g.record_id].crisis, language=records[g.record_id].language,
                     references=tuple(records[g.record_id].answers))
        for g in generations
    ]
    scores = reward_model.score(requests)
    rows = []
    for g, score in zip(generations, scores):
        rec = records[g.record_id]
        answer, from_block = scored_answer(g.text)
        stats = eval_metrics.segment_stats(answer, rec.answers, rec.language, cfg.eval.zh_tokenizer, meteor)
        rows.append({"record_id": g.record_id, "sample": g.sample, "language": rec.language, "crisis": rec.crisis,
                     "text": g.text, "answer": answer, "from_block": from_block, "finish_reason": g.finish_reason,
                     "score": score, "stats": stats})
    blocks = {}
    for lang in sorted({row["language"] for row in rows}):
        blocks[lang] = _block(cfg, [row for row in rows if row["language"] == lang], cfg.eval.seed)
    blocks["all"] = _block(cfg, rows, cfg.eval.seed)
    return blocks, rows


def _write_generations(path: Path, records: list[CounselingRecord], rows_by_system: dict[str, list[dict[str, Any]]]) -> None:
    """One line per (record, sample): the anonymised query, references and every system's answer."""
    from empathy_rl.anonymize import anonymize

    index: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for name, rows in rows_by_system.items():
        for row in rows:
            s = row["score"]
            index.setdefault((row["record_id"], row["sample"]), {})[name] = {
                "output": anonymize(row["text"]), "answer": anonymize(row["answer"]), "format": s.format,
                "failure": s.failure, "reward": s.total, "crisis_reward": s.crisis,
            }
    by_id = {r.id: r for r in records}
    order = {r.id: i for i, r in enumerate(records)}
    lines = []
    for (record_id, sample), answers in sorted(index.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        rec = by_id[record_id]
        lines.append(json.dumps({
            "record_id": record_id, "sample": sample, "language": rec.language, "crisis": rec.crisis,
            "query": anonymize(rec.query), "references": [anonymize(a) for a in rec.answers], "answers": answers,
        }, ensure_ascii=False))
    atomic_write_lines(path, lines)


def evaluate_systems(
    cfg: EmpathyRLConfig, systems: Sequence[System | str], output_dir: Optional[str | Path] = None,
    generations: Optional[dict[str, list[Generation]]] = None,
) -> EvalReport:
    """Generate with every system on `eval.split`, score, and write the report into `output_dir`
    (default `eval.output_dir`; None writes nothing when `output_dir=""`).

    `generations` may carry ready answers per system name (then no engine starts for it): the
    metric and report path is the same, which is how tests feed known answers through it.
    """
    import ray

    from empathy_rl.driver import init_ray
    from empathy_rl.eval_report import write_report
    from reward.model import RewardModel

    resolved = [parse_system(s) if isinstance(s, str) else s for s in systems]
    check_systems(resolved)
    records = eval_records(cfg)
    by_id = {r.id: r for r in records}
    meteor = eval_metrics.meteor_setup(cfg.eval.meteor_wordnet)
    languages = sorted({r.language for r in records})
    settings = {
        "split": cfg.eval.split, "prepared_dir": cfg.data.prepared_dir, "prompts": len(records),
        "prompts_per_language": dict(sorted(Counter(r.language for r in records).items())),
        "crisis_prompts": sum(r.crisis for r in records),
        "decoding": cfg.eval.decoding, "temperature": 0.0 if cfg.eval.decoding == "greedy" else cfg.eval.temperature,
        "samples_per_prompt": 1 if cfg.eval.decoding == "greedy" else cfg.eval.samples_per_prompt, "seed": cfg.eval.seed,
        "max_response_len": cfg.eval.max_response_len or cfg.model.max_response_len,
        "tokenisation": eval_metrics.tokenisation_note(languages, cfg.eval.zh_tokenizer),
        "meteor": {"matching": meteor.matching, "wordnet": meteor.source},
        "bleu": "sacrebleu corpus BLEU-n (cumulative, uniform weights, exp smoothing) over all references of each record",
        "rouge_l": "rouge-score ROUGE-L F-measure, best reference, mean over answers",
        "distinct": "distinct n-grams / all n-grams over all answers of a system (Li et al. 2016)",
        "scored_text": "the <answer> block; an output without one is scored on its whole text with the CoE tags removed",
        "bootstrap": {"resamples": cfg.eval.bootstrap_resamples, "confidence": cfg.eval.confidence, "unit": "prompt"},
        "reward": {"answer_mode": cfg.reward.answer_mode, "encoder": cfg.reward.encoder},
        "systems": {s.name: {"given": s.given, "model_dir": s.model_dir} for s in resolved},
    }
    started_ray = False
    given = generations or {}
    if any(s.name not in given for s in resolved) and not ray.is_initialized():
        init_ray(cfg)
        started_ray = True
    report = EvalReport(settings)
    rows_by_system: dict[str, list[dict[str, Any]]] = {}
    try:
        reward_model = RewardModel(cfg.reward)
        from tqdm.auto import tqdm

        for system in tqdm(resolved, desc="eval systems", disable=not cfg.logging.progress_bar):
            gens = given[system.name] if system.name in given else generate(cfg, system, records)
            unknown = sorted({g.record_id for g in gens} - set(by_id))
            if unknown:
                raise EvalError(f"{system.name}: answers for record id(s) not in split {cfg.eval.split!r}: {', '.join(unknown[:3])}")
            blocks, rows = score_system(cfg, gens, by_id, reward_model, meteor)
            report.systems[system.name] = blocks
            rows_by_system[system.name] = rows
            log.info("%s scored: format pass rate %.2f, BLEU-1 %.3f, ROUGE-L %.3f (%d answers)", system.name,
                     blocks["all"]["reward"]["format_pass_rate"], blocks["all"]["metrics"]["bleu1"],
                     blocks["all"]["metrics"]["rouge_l"], blocks["all"]["answers"])
    finally:
        if started_ray and cfg.cluster.address is None:
            ray.shutdown()
    out = Path(cfg.eval.output_dir if output_dir is None else output_dir) if output_dir != "" else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_generations(out / GENERATIONS_FILE, records, rows_by_system)
        write_report(report, out, plots=cfg.eval.plots)
        report.output_dir = str(out)
    return report


def rollout_text_metrics(prompts: Sequence[Any], candidates: Sequence[Any], zh_tokenizer: str = "char", use_wordnet: bool = True) -> dict[str, float]:
    """`eval/text/<metric>_<lang>` for the driver's periodic evaluation (`trainer.eval_text_metrics`):
    the same metrics as `empathy-rl eval`, on the answers the driver already sampled, no intervals."""
    by_uid = {p.uid: p for p in prompts}
    hyps, refs, langs = [], [], []
    for cand in candidates:
        prompt = by_uid[cand.prompt_uid]
        hyps.append(scored_answer(cand.text)[0])
        refs.append(list(prompt.references))
        langs.append(prompt.language)
    blocks = eval_metrics.text_metrics(hyps, refs, langs, zh_tokenizer, eval_metrics.meteor_setup(use_wordnet))
    return {f"eval/text/{metric}_{lang}": float(value) for lang, block in blocks.items() for metric, value in block.items()}
