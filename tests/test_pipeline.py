"""The pipeline's bookkeeping: which stages run, which skip, and why (fast, no Ray).

The stage bodies are replaced by small functions that write each stage's done marker, so these
tests exercise only the orchestration (fingerprints, records, --from, backups). The real stages
run end to end in tests/test_grpo_loop.py through the same `Pipeline`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy_rl.config import ConfigError, load_config
from empathy_rl.pipeline import STAGES, Pipeline, PipelineError, files_digest

REPO = Path(__file__).resolve().parents[1]


def _cfg(root: Path, *extra: str):
    (root / "model").mkdir(parents=True, exist_ok=True)
    if not (root / "model" / "config.json").exists():
        (root / "model" / "config.json").write_text("{}")
    coe = root / "coe.jsonl"
    if not coe.exists():
        coe.write_text("")
    return load_config(REPO / "configs" / "tiny-cpu.yaml", [
        f"model.path={root / 'model'}",
        f"data.prepared_dir={root / 'data'}",
        f"sft.output_dir={root / 'sft'}",
        f"sft.data=[{coe}]",
        f"reward_model.output_dir={root / 'rm'}",
        f"reward_model.prepared_dir={root / 'rm-data'}",
        f"reward.encoder={root / 'rm'}",
        f"trainer.run_dir={root / 'run'}",
        f"eval.output_dir={root / 'eval'}",
        f"pipeline.state_dir={root / 'state'}",
        "logging.progress_bar=false",
        "warmstart.run_sft=false",  # the pipeline's own sft stage feeds grpo
        *extra,
    ])


class Recorder:
    """Replaces each stage body: records the call and writes the stage's done marker."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.calls: list[str] = []
        for name, stage in pipeline.stages.items():
            stage.run = self._runner(name, stage)

    def _runner(self, name, stage):
        def run():
            self.calls.append(name)
            stage.done_marker.parent.mkdir(parents=True, exist_ok=True)
            stage.done_marker.write_text(json.dumps({"stage": name}))
            return {"ok": True}

        return run


def _run(cfg, force_from=None) -> list[str]:
    p = Pipeline(cfg, progress=False)
    rec = Recorder(p)
    p.run(force_from)
    return rec.calls


def test_first_run_runs_all_then_everything_skips(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    assert _run(cfg) == list(STAGES)
    assert _run(cfg) == []
    plan = dict(Pipeline(cfg, progress=False).plan())
    assert all(d.startswith("skip") for d in plan.values()), plan
    record = json.loads((tmp_path / "state" / "sft.json").read_text())
    assert record["stage"] == "sft" and record["summary"] == {"ok": True} and len(record["fingerprint"]) == 16


def test_changed_input_reruns_that_stage_and_the_ones_after_it(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    _run(cfg)
    # a GRPO-only key: prepare-data, sft and train-rm stay
    assert _run(_cfg(tmp_path, "algorithm.kl_beta=0.05")) == ["grpo", "eval"]
    # an eval-only key: only eval
    assert _run(_cfg(tmp_path, "algorithm.kl_beta=0.05", "eval.seed=3")) == ["eval"]
    # a changed SFT data file: sft, then grpo and eval that depend on it
    (tmp_path / "coe.jsonl").write_text("\n")
    assert _run(_cfg(tmp_path, "algorithm.kl_beta=0.05", "eval.seed=3")) == ["sft", "grpo", "eval"]
    # a changed base model file: sft again (train-rm does not read the policy)
    (tmp_path / "model" / "config.json").write_text('{"x": 1}')
    assert _run(_cfg(tmp_path, "algorithm.kl_beta=0.05", "eval.seed=3")) == ["sft", "grpo", "eval"]


def test_logging_and_timeouts_do_not_rerun_anything(tmp_path) -> None:
    _run(_cfg(tmp_path))
    assert _run(_cfg(tmp_path, "logging.level=DEBUG", "timeouts.generate_s=999")) == []


def test_from_forces_that_stage_and_later_ones(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    _run(cfg)
    assert _run(cfg, "train-rm") == ["train-rm", "grpo", "eval"]
    assert _run(cfg, "eval") == ["eval"]
    with pytest.raises(ConfigError, match="--from 'nope'"):
        _run(cfg, "nope")


def test_missing_output_reruns_even_with_a_record(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    _run(cfg)
    (tmp_path / "rm" / "reward_model.json").unlink()
    plan = dict(Pipeline(cfg, progress=False).plan())
    assert plan["train-rm"].startswith("run: output") and plan["grpo"] == "run: upstream stage train-rm runs"
    assert _run(cfg) == ["train-rm", "grpo", "eval"]


def test_rebuilt_output_is_backed_up_or_replaced(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    _run(cfg)
    (tmp_path / "sft" / "keep.txt").write_text("earlier work")
    _run(cfg, "sft")
    backups = list(tmp_path.glob("sft.bak-*"))
    assert len(backups) == 1 and (backups[0] / "keep.txt").read_text() == "earlier work"
    cfg = _cfg(tmp_path, "pipeline.on_rerun=replace")
    (tmp_path / "sft" / "keep.txt").write_text("scratch")
    _run(cfg, "sft")
    assert not (tmp_path / "sft" / "keep.txt").exists() and len(list(tmp_path.glob("sft.bak-*"))) == 1


def test_a_failed_stage_leaves_no_record_and_names_itself(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    _run(cfg)
    p = Pipeline(_cfg(tmp_path, "eval.seed=9"), progress=False)
    Recorder(p)

    def boom():
        raise RuntimeError("disk full")

    p.stages["eval"].run = boom
    with pytest.raises(PipelineError, match="stage 'eval' failed: RuntimeError: disk full"):
        p.run()
    assert not (tmp_path / "state" / "eval.json").exists()
    assert _run(cfg) == ["eval"]  # the next run redoes only what failed


def test_disabled_stages_are_not_run_and_their_outputs_become_inputs(tmp_path) -> None:
    cfg = _cfg(tmp_path, "pipeline.stages=[grpo,eval]", f"warmstart.policy={tmp_path / 'model'}")
    assert _run(cfg) == ["grpo", "eval"]
    assert _run(cfg) == []
    (tmp_path / "model" / "config.json").write_text('{"changed": true}')  # the start policy is now an input file
    assert _run(cfg) == ["grpo", "eval"]


def test_unknown_stage_and_bad_on_rerun_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="pipeline.stages"):
        Pipeline(_cfg(tmp_path, "pipeline.stages=[sft,polish]"))
    with pytest.raises(ConfigError, match="pipeline.on_rerun"):
        _cfg(tmp_path, "pipeline.on_rerun=keep")


def test_a_reward_encoder_that_is_not_the_trained_one_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="reward.encoder=.*reward_model.output_dir"):
        Pipeline(_cfg(tmp_path, "reward.encoder=minilm"))
    Pipeline(_cfg(tmp_path, "reward.encoder=minilm", "pipeline.stages=[sft,grpo]"))  # no train-rm: any encoder


def test_corrupt_record_names_the_file(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "prepare-data.json").write_text("{not json")
    with pytest.raises(PipelineError, match="prepare-data.json: not valid JSON"):
        Pipeline(cfg, progress=False).plan()


def test_files_digest_hashes_content_and_marks_missing(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("x")
    first = files_digest([tmp_path / "d", tmp_path / "gone"])
    assert first[str(tmp_path / "gone")] == "missing" and first[str(tmp_path / "d" / "a")].startswith("sha256=")
    (tmp_path / "d" / "a").write_text("y")
    assert files_digest([tmp_path / "d"]) != {k: v for k, v in first.items() if "gone" not in k}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_real_stages_run_then_skip_then_rerun_from_grpo(tiny_model_dir, bundled_data_dir, tmp_path) -> None:
    """The real stages (Ray Train SFT, GRPO on Ray with vLLM + Serve + DeepSpeed, eval) through the
    pipeline, kept tiny: a second invocation runs nothing, `--from grpo` re-runs grpo and eval."""
    from empathy_rl.config import load_config

    root = tmp_path
    cfg = load_config(REPO / "configs" / "tiny-cpu.yaml", [
        f"model.path={tiny_model_dir}",
        f"data.prepared_dir={bundled_data_dir}",
        f"sft.output_dir={root / 'sft'}", f"sft.storage_path={root / 'ray-train'}", "sft.max_steps=8",
        "reward.encoder=minilm", "reward.answer_threshold=0.1",
        f"trainer.run_dir={root / 'run'}", "trainer.total_steps=1", "trainer.prompts_per_step=2", "trainer.eval_every=0",
        f"eval.output_dir={root / 'eval'}", "eval.max_prompts=2",
        f"pipeline.state_dir={root / 'state'}", "pipeline.stages=[sft,grpo,eval]",
        "logging.progress_bar=false", "warmstart.run_sft=false",
    ])
    first = Pipeline(cfg, progress=False).run()
    assert [r.get("skipped", False) for r in first.values()] == [False, False, False]
    assert (root / "sft" / "policy" / "config.json").is_file() and (root / "eval" / "report.json").is_file()
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["start_policy"] == str(root / "sft" / "policy")  # GRPO started from the SFT stage's policy
    second = Pipeline(cfg, progress=False).run()
    assert all(r["skipped"] for r in second.values())
    third = Pipeline(cfg, progress=False).run("grpo")
    assert [name for name, r in third.items() if not r.get("skipped")] == ["grpo", "eval"]
    assert list(root.glob("run.bak-*")), "the earlier GRPO run directory is kept (pipeline.on_rerun=backup)"
