"""`empathy-rl train-rm`: train the answer-reward model with a triplet loss on Ray Train.

Stages, in order (the driver does everything except the gradient steps):
1. data: `reward_model.prepared_dir` (prepared by `prepare-data`'s pipeline from
   `reward_model.sources` when it has no train.parquet yet);
2. triples from the train split, evaluation sets from the calibration and eval splits (`rm_data`);
3. the untrained model (identity heads) is scored on both held-out sets ("before");
4. a Ray Train `TorchTrainer` runs `_train_loop` on `reward_model.num_workers` workers: each takes a
   shard of the triples, gradients are all-reduced every step (one step covers every language), and
   rank 0 reports a checkpoint after the last epoch;
5. the trained model is loaded from that checkpoint, T is calibrated per language on the
   calibration split, both held-out sets are scored again ("after");
6. the output directory (`rm_model` layout) is assembled in a temporary sibling and moved into
   place, `reward_model.json` last, so an interrupted run never leaves a half-written model.

Ray Train V2 (the default of Ray 2.60, `RAY_TRAIN_V2_ENABLED` unset or 1) is what this targets:
storage must be a local or shared directory, every worker calls `ray.train.report` each epoch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from empathy_rl.config import ConfigError, DataConfig, EmpathyRLConfig, SafetyConfig
from empathy_rl.data import CounselingRecord, load_records, prepare_data
from reward import rm_eval
from reward.rm_data import EvalSet, TripleSet, build_eval_set, build_triples, select_records
from reward.rm_model import FORMAT, FORMAT_VERSION, METADATA_FILE, TfidfFeaturizer, build_scorer, load_language, save_language

log = logging.getLogger(__name__)


class RewardModelTrainingError(RuntimeError):
    """A stage of train-rm failed; the message names the stage."""


# ------------------------------------------------------------------------------ data


def ensure_prepared(cfg: EmpathyRLConfig, progress: bool = True) -> Path:
    """`reward_model.prepared_dir`, prepared from `reward_model.sources` when it has no train split."""
    rm = cfg.reward_model
    prepared = Path(rm.prepared_dir)
    if (prepared / "train.parquet").is_file():
        log.info("train-rm: using prepared records in %s", prepared)
        return prepared
    if not rm.sources:
        raise ConfigError(f"reward_model.prepared_dir={prepared} has no train.parquet and reward_model.sources is empty; "
                          "name the raw data to train on (see configs/tiny-cpu.yaml)")
    for i, source in enumerate(rm.sources):
        if not Path(source.path).is_file():
            raise FileNotFoundError(
                f"reward_model.sources[{i}].path: {source.path} does not exist. train-rm needs counselling data "
                "(the shared counsel-chat / CPsyCoun files); without it, score with reward.encoder=minilm and set "
                "reward.answer_threshold"
            )
    data = DataConfig(
        sources=list(rm.sources), prepared_dir=str(prepared), min_answer_chars=cfg.data.min_answer_chars,
        min_query_chars=cfg.data.min_query_chars, dedup=cfg.data.dedup, val_fraction=rm.val_fraction,
        test_fraction=rm.test_fraction, split_seed=cfg.data.split_seed, on_bad_row=cfg.data.on_bad_row,
    )
    # The reward model never reads the `crisis` flag, so its (large) prepared set is flagged by the
    # rules alone: the encoder classifier costs ~10-40 ms per text window, minutes on the shared data.
    summary = prepare_data(data, progress=progress, safety=SafetyConfig(classifier=False))
    log.info("train-rm: prepared %d records into %s (splits %s)", summary.records_kept, prepared, dict(summary.splits))
    return prepared


# ------------------------------------------------------------------------------ the Ray Train loop


def _batch_rows(perm: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    """Rows of one step, wrapping around: every worker and language runs the same number of steps."""
    n = perm.numel()
    idx = torch.arange(step * batch_size, (step + 1) * batch_size) % n
    return perm[idx]


def _train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. Triples are sharded by rank; all ranks step in lockstep."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"])
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    worker_log = logging.getLogger("ray.train.empathy_rl")  # Ray Train's worker handlers show it once on the driver
    say = (lambda msg: worker_log.info("[train-rm] %s", msg)) if rank == 0 else (lambda msg: None)

    jobs: dict[str, dict[str, Any]] = {}
    for lang, job in config["languages"].items():
        scorer = build_scorer(job["spec"], featurizer=job["featurizer"], device=str(device),
                              max_text_chars=config["max_text_chars"], seed=config["seed"])
        triples = job["triples"][rank::world]
        texts = list(dict.fromkeys(t for tr in triples for t in tr[:3]))
        index = {t: i for i, t in enumerate(texts)}
        start = time.perf_counter()
        feats = scorer.featurize(texts)
        say(f"{lang}: {len(triples)} triples, {len(texts)} texts encoded by {job['spec']['encoder']} in {time.perf_counter() - start:.1f}s")
        cols = [torch.tensor([index[tr[c]] for tr in triples], dtype=torch.long) for c in range(3)]
        per_rank = math.ceil(job["total"] / world)
        jobs[lang] = {"scorer": scorer, "feats": feats, "cols": cols, "steps": math.ceil(per_rank / config["batch_size"])}

    for job in jobs.values():  # one optimizer per language: a language whose triples ran out stops stepping
        job["params"] = [p for p in job["scorer"].parameters() if p.requires_grad]
        job["opt"] = torch.optim.AdamW(job["params"], lr=config["lr"], weight_decay=config["weight_decay"])
    steps = max(job["steps"] for job in jobs.values())
    margin, bs = config["margin"], config["batch_size"]
    for epoch in range(1, config["epochs"] + 1):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(config["seed"] * 1000 + epoch * 31 + rank)
        perms = {lang: torch.randperm(len(job["cols"][0]), generator=gen) for lang, job in jobs.items()}
        sums = {lang: [0.0, 0.0, 0] for lang in jobs}  # loss, correct, count
        for step in range(steps):
            loss = torch.zeros((), device=device)
            active = [lang for lang, job in jobs.items() if step < job["steps"]]  # the same on every rank
            for lang in active:
                job = jobs[lang]
                rows = _batch_rows(perms[lang], step, bs)
                scorer, feats, (qc, pc, nc) = job["scorer"], job["feats"], job["cols"]
                q = scorer.embed_queries(feats.take(qc[rows], device))
                pos = (q * scorer.embed_answers(feats.take(pc[rows], device))).sum(-1)
                neg = (q * scorer.embed_answers(feats.take(nc[rows], device))).sum(-1)
                lang_loss = F.relu(margin - pos + neg).mean()
                loss = loss + lang_loss
                s = sums[lang]
                s[0] += float(lang_loss.detach()) * len(rows)
                s[1] += float((pos > neg).sum())
                s[2] += len(rows)
            for lang in active:
                jobs[lang]["opt"].zero_grad(set_to_none=False)
            loss.backward()
            for lang in active:
                if world > 1:
                    for p in jobs[lang]["params"]:
                        dist.all_reduce(p.grad)
                        p.grad /= world
                jobs[lang]["opt"].step()
        metrics: dict[str, Any] = {"epoch": epoch, "epoch_seconds": time.perf_counter() - t0}
        for lang, (l_sum, correct, count) in sums.items():
            metrics[f"loss_{lang}"] = l_sum / max(count, 1)
            metrics[f"train_accuracy_{lang}"] = correct / max(count, 1)
        say(f"epoch {epoch}/{config['epochs']} " + " ".join(
            f"{lang}: loss {metrics[f'loss_{lang}']:.4f} acc {metrics[f'train_accuracy_{lang}']:.3f}" for lang in jobs
        ) + f" ({metrics['epoch_seconds']:.1f}s)")
        checkpoint = None
        if epoch == config["epochs"] and rank == 0:
            out = Path(tempfile.mkdtemp(prefix="rm-ckpt-"))
            for lang, job in jobs.items():
                save_language(job["scorer"], out / lang)
            checkpoint = ray.train.Checkpoint.from_directory(str(out))
        ray.train.report(metrics, checkpoint=checkpoint)


def _fit(cfg: EmpathyRLConfig, loop_config: dict[str, Any], name: str) -> tuple[Path, float, list[dict[str, Any]]]:
    """Run the TorchTrainer; returns (checkpoint directory, fit seconds, last reported metrics)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    rm = cfg.reward_model
    resources = {"CPU": rm.num_cpus_per_worker, **({"GPU": 1} if rm.use_gpu else {})}
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=rm.num_workers, use_gpu=rm.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(Path(rm.storage_path).resolve()), failure_config=FailureConfig(max_failures=0)),
    )
    start = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-rm-fit")
    future = pool.submit(trainer.fit)
    try:
        result = future.result(timeout=rm.fit_timeout_s)
    except concurrent.futures.TimeoutError as err:
        raise RewardModelTrainingError(
            f"train-rm: Ray Train fit did not finish within reward_model.fit_timeout_s={rm.fit_timeout_s:g}s"
        ) from err
    except Exception as err:
        raise RewardModelTrainingError(f"train-rm: Ray Train fit failed: {err}") from err
    finally:
        pool.shutdown(wait=False)
    seconds = time.perf_counter() - start
    if result.error is not None:
        raise RewardModelTrainingError(f"train-rm: Ray Train fit failed: {result.error}")
    if result.checkpoint is None:
        raise RewardModelTrainingError("train-rm: Ray Train fit finished without a checkpoint")
    return Path(result.checkpoint.path), seconds, [result.metrics or {}]


# ------------------------------------------------------------------------------ the driver


def _language_spec(cfg: EmpathyRLConfig, lang: str, train: TripleSet) -> tuple[dict[str, Any], TfidfFeaturizer | None]:
    rm = cfg.reward_model
    kind = rm.encoder_en if lang == "en" else rm.encoder_zh
    if kind == "minilm":
        return {"encoder": "minilm", "base": "minilm", "max_seq_len": rm.minilm_max_seq_len}, None
    texts = list(dict.fromkeys(t for tr in train.triples for t in (tr.query, tr.positive)))
    featurizer = TfidfFeaturizer.fit(texts, rm.tfidf_ngram_max, rm.tfidf_max_features, rm.tfidf_min_df)
    return {"encoder": "tfidf", "dim": rm.projection_dim, "train_projection": rm.tfidf_train_projection}, featurizer


def _records(prepared: Path, split: str) -> list[CounselingRecord]:
    return load_records(prepared, split)


def train_reward_model(cfg: EmpathyRLConfig, progress: bool = True) -> dict[str, Any]:
    """The whole of train-rm. Returns the report (also written as report.json / report.md)."""
    from empathy_rl.driver import init_ray

    rm = cfg.reward_model
    t_start = time.perf_counter()
    prepared = ensure_prepared(cfg, progress)
    splits = {s: _records(prepared, s) for s in dict.fromkeys(("train", rm.calibration_split, rm.eval_split))}

    triples: dict[str, TripleSet] = {}
    held_out: dict[str, dict[str, EvalSet]] = {}
    for lang in rm.languages:
        train_records = select_records(splits["train"], lang, rm.max_train_queries, rm.seed)
        ts = build_triples(train_records, lang, rm.negatives, seed=rm.seed, truncate_ratio=rm.echo_truncate_ratio, max_chars=rm.max_text_chars)
        if not ts.triples:
            raise RewardModelTrainingError(f"train-rm: no {lang} training triples in {prepared}/train.parquet "
                                           f"(records of language {lang}: {len(train_records)}); drop {lang} from reward_model.languages or add data")
        triples[lang] = ts
        held_out[lang] = {}
        for role, split in (("calibration", rm.calibration_split), ("eval", rm.eval_split)):
            es = build_eval_set(select_records(splits[split], lang, rm.max_eval_queries, rm.seed), lang, split,
                                seed=rm.seed, truncate_ratio=rm.echo_truncate_ratio, max_chars=rm.max_text_chars)
            if len(es.queries) < 2:
                raise RewardModelTrainingError(f"train-rm: the {split} split of {prepared} has {len(es.queries)} {lang} record(s); "
                                               "evaluation needs at least 2 (raise reward_model.val_fraction / test_fraction)")
            held_out[lang][role] = es
        log.info("train-rm: %s: %s; calibration %d queries (%s), eval %d queries (%s)", lang, ts.summary(),
                 len(held_out[lang]["calibration"].queries), rm.calibration_split, len(held_out[lang]["eval"].queries), rm.eval_split)

    specs, featurizers, before, caches = {}, {}, {}, {}
    for lang in rm.languages:
        specs[lang], featurizers[lang] = _language_spec(cfg, lang, triples[lang])
        initial = build_scorer(specs[lang], featurizer=featurizers[lang], max_text_chars=rm.max_text_chars, seed=rm.seed)
        caches[lang] = {role: rm_eval.FeatureCache(initial, es) for role, es in held_out[lang].items()}
        before[lang] = {role: rm_eval.score_eval_set(initial, es, caches[lang][role]) for role, es in held_out[lang].items()}
        log.info("train-rm: %s: scored the untrained model on held-out data", lang)

    loop_config = {
        "languages": {
            lang: {"spec": specs[lang], "featurizer": featurizers[lang], "total": len(triples[lang].triples),
                   "triples": [(t.query, t.positive, t.negative, t.kind) for t in triples[lang].triples]}
            for lang in rm.languages
        },
        "seed": rm.seed, "epochs": rm.epochs, "batch_size": rm.batch_size, "lr": rm.lr, "weight_decay": rm.weight_decay,
        "margin": rm.margin, "max_text_chars": rm.max_text_chars, "threads": 0 if rm.use_gpu else max(1, int(rm.num_cpus_per_worker)),
    }
    # Ray Train V2's PlacementGroupCleaner polls the controller through the State API, which needs
    # the dashboard; without it a local run logs "Failed to query Ray Train Controller actor state"
    # every few seconds. So a local cluster started for train-rm always has the dashboard (~2 s).
    init_ray(dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, include_dashboard=True)))
    name = f"train-rm-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log.info("train-rm: Ray Train fit on %d worker(s), %d epochs", rm.num_workers, rm.epochs)
    ckpt_dir, fit_seconds, last_metrics = _fit(cfg, loop_config, name)

    out = Path(rm.output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        languages_meta, report_langs = {}, {}
        for lang in rm.languages:
            shutil.copytree(ckpt_dir / lang, staging / lang)
            scorer = load_language(staging / lang, specs[lang], max_text_chars=rm.max_text_chars)
            after = {role: rm_eval.score_eval_set(scorer, es, caches[lang][role]) for role, es in held_out[lang].items()}
            t_before, _ = rm_eval.calibrate_threshold(before[lang]["calibration"].positives,
                                                      before[lang]["calibration"].negative_values(rm_eval.CALIBRATION_EXCLUDES))
            t_after, bacc = rm_eval.calibrate_threshold(after["calibration"].positives,
                                                        after["calibration"].negative_values(rm_eval.CALIBRATION_EXCLUDES))
            languages_meta[lang] = {**scorer.backbone.spec(), "threshold": round(t_after, 6),
                                    "threshold_criterion": "max balanced accuracy on the calibration split",
                                    "calibration_split": rm.calibration_split, "calibration_balanced_accuracy": round(bacc, 4)}
            report_langs[lang] = {
                "encoder": specs[lang]["encoder"], "threshold": round(t_after, 4), "threshold_before": round(t_before, 4),
                "calibration_split": rm.calibration_split, "calibration_balanced_accuracy": round(bacc, 4),
                "eval_split": rm.eval_split, "train": triples[lang].summary(),
                "before": rm_eval.eval_metrics(before[lang]["eval"], t_before),
                "after": rm_eval.eval_metrics(after["eval"], t_after),
                "calibration_before": rm_eval.eval_metrics(before[lang]["calibration"], t_before),
                "calibration_after": rm_eval.eval_metrics(after["calibration"], t_after),
            }
            a = report_langs[lang]["after"]
            log.info("train-rm: %s after training on %s: real>random %s, real>echo %s, real>off_topic %s, AUC %s, T %.3f",
                     lang, rm.eval_split, a["pairwise"].get("random"), a["echo_below_real"], a["pairwise"].get("off_topic"), a["auc"], t_after)
        training = {
            "prepared_dir": str(prepared), "negatives": list(rm.negatives), "margin": rm.margin, "epochs": rm.epochs,
            "batch_size": rm.batch_size, "lr": rm.lr, "num_workers": rm.num_workers, "seed": rm.seed,
            "train_seconds": round(fit_seconds, 1), "total_seconds": round(time.perf_counter() - t_start, 1),
            "last_epoch": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in last_metrics[-1].items()},
            "data": {lang: triples[lang].summary() for lang in rm.languages},
        }
        report = {"languages": report_langs, "training": training}
        rm_eval.write_reports(staging, report)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "languages": languages_meta, "margin": rm.margin,
                "max_text_chars": rm.max_text_chars, "training": training}
        (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report["output_dir"] = str(out)
    return report
