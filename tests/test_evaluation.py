"""`empathy-rl eval`: system resolution, the report on real held-out data (zh + en) with known
answers, and (slow) generation by the vLLM rollout actor with the tiny model, through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from empathy_rl.coe import render_coe
from empathy_rl.config import EmpathyRLConfig, ModelConfig, load_config
from empathy_rl.evaluation import EvalError, Generation, System, eval_records, evaluate_systems, parse_system, resolve_model_dir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-cpu.yaml"


def _cfg(prepared: Path, *overrides: str) -> EmpathyRLConfig:
    return load_config(TINY, [
        f"data.prepared_dir={prepared}", "eval.split=test", "reward.answer_weight=0",  # no encoder: format + crisis only
        "eval.bootstrap_resamples=200", "logging.progress_bar=false", *overrides,
    ], base=EmpathyRLConfig(model=ModelConfig(path="")))


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}", encoding="utf-8")
    return path


def test_system_paths_resolve(tmp_path: Path) -> None:
    model = _model(tmp_path / "base")
    assert resolve_model_dir(model) == model
    sft = _model(tmp_path / "sft" / "policy")
    assert resolve_model_dir(tmp_path / "sft") == sft  # an `empathy-rl sft` output directory
    (tmp_path / "run").mkdir()
    with pytest.raises(EvalError, match="no model found"):
        resolve_model_dir(tmp_path / "run")  # a run without checkpoints has no model of its own
    step = _model(tmp_path / "run" / "checkpoints" / "step-5" / "policy")
    (step.parent / "trainer_state.json").write_text('{"step": 5}', encoding="utf-8")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-5", encoding="utf-8")
    assert resolve_model_dir(tmp_path / "run") == step
    assert parse_system(f"grpo={tmp_path / 'run'}") == System("grpo", str(tmp_path / "run"), str(step))
    with pytest.raises(EvalError, match="does not exist"):
        resolve_model_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="no model found"):
        resolve_model_dir(tmp_path / "empty")
    for bad in ("grpo", "=x", "a b=x"):
        with pytest.raises(EvalError, match="--system"):
            parse_system(bad)


def test_report_tells_the_better_system_on_shared_data(tmp_path: Path) -> None:
    """Known answers through the whole metric/report path on held-out counsel-chat (en) and CPsyCoun
    (zh) records: a counsellor's answer beats an answer to another question, per language."""
    from shared_slice import prepare_shared_slice

    prepared = prepare_shared_slice(tmp_path / "data")
    cfg = _cfg(prepared)
    records = eval_records(cfg)
    assert {r.language for r in records} == {"en", "zh"}
    coe = lambda a: render_coe(["feel", "cause", "intent", "plan"], a)  # noqa: E731
    same_lang = [[o for o in records if o.language == r.language and o.id != r.id][0] for r in records]
    good = [Generation(r.id, 0, coe(r.answers[0] + " Call me at 13812345678."), "stop") for r in records]
    bad = [Generation(r.id, 0, coe(o.answers[0]), "stop") for r, o in zip(records, same_lang)]
    broken = [Generation(r.id, 0, "no tags " + r.answers[0][:50], "length") for r in records]
    out = tmp_path / "eval"
    systems = [System("counsellor", "-", "-"), System("other-question", "-", "-"), System("broken", "-", "-")]
    report = evaluate_systems(cfg, systems, out, generations={"counsellor": good, "other-question": bad, "broken": broken})
    for lang in ("en", "zh", "all"):
        for metric in ("bleu1", "bleu4", "rouge_l", "meteor"):
            assert report.metric("counsellor", metric, lang) > report.metric("other-question", metric, lang), (lang, metric)
        lo_good = report.systems["counsellor"][lang]["intervals"]["rouge_l"][0]
        hi_bad = report.systems["other-question"][lang]["intervals"]["rouge_l"][1]
        assert lo_good > hi_bad, lang  # intervals separate
    assert report.metric("counsellor", "format_pass_rate") == 1.0
    assert report.metric("broken", "format_pass_rate") == 0.0
    assert report.systems["broken"]["all"]["reward"]["failures"] == {"missing_tag": len(records)}
    assert report.systems["broken"]["all"]["reward"]["answer_block_rate"] == 0.0
    assert report.systems["broken"]["all"]["reward"]["truncated_rate"] == 1.0
    crisis = report.systems["counsellor"]["all"]["reward"]
    assert crisis["crisis_records"] == sum(r.crisis for r in records)
    # files: JSON with the same numbers, Markdown with one table per metric, PNGs, anonymised answers
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["systems"]["counsellor"]["zh"]["metrics"]["bleu1"] == pytest.approx(report.metric("counsellor", "bleu1", "zh"))
    assert data["settings"]["tokenisation"]["zh"].startswith("Chinese: one token per CJK character")
    assert "METEOR" in data["settings"]["meteor"]["matching"] or "stem" in data["settings"]["meteor"]["matching"]
    md = (out / "report.md").read_text(encoding="utf-8")
    for title in ("## BLEU-1", "## BLEU-4", "## ROUGE-L", "## METEOR", "## Distinct-2", "## format pass rate", "## crisis handled rate"):
        assert title in md
    assert "| counsellor |" in md and "tokenisation, zh" in md
    for png in ("metrics.png", "reward.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(line) for line in (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(records) and set(lines[0]["answers"]) == {"counsellor", "other-question", "broken"}
    text = (out / "generations.jsonl").read_text(encoding="utf-8")
    assert "13812345678" not in text  # the anonymizer ran on every exported text


def test_bad_split_and_unknown_records_are_named(tmp_path: Path) -> None:
    from shared_slice import prepare_shared_slice

    prepared = prepare_shared_slice(tmp_path / "data", en_questions=2, zh_dialogues=4)
    with pytest.raises(EvalError, match="split 'validation'.*empty"):
        eval_records(_cfg(prepared, "eval.split=validation"))
    cfg = _cfg(prepared)
    with pytest.raises(EvalError, match="not in split 'test'"):
        evaluate_systems(cfg, [System("a", "-", "-")], "", generations={"a": [Generation("nope", 0, "x", "stop")]})


@pytest.mark.slow
def test_eval_cli_generates_with_vllm_actor(tmp_path: Path, tiny_model_dir: Path, bundled_data_dir: Path, capsys) -> None:
    """Two systems with the same weights (a model directory and a warm-start directory holding a
    copy) through `empathy-rl eval`: greedy decoding with a fixed seed gives identical answers."""
    from empathy_rl.cli import main

    shutil.copytree(tiny_model_dir, tmp_path / "ws" / "policy")
    out = tmp_path / "eval"
    argv = ["eval", "--config", str(TINY), "--system", f"base={tiny_model_dir}", "--system", f"warm={tmp_path / 'ws'}",
            "--split", "validation", "--output", str(out), f"data.prepared_dir={bundled_data_dir}",
            f"model.tokenizer_path={tiny_model_dir}", "eval.max_prompts=4", "eval.max_response_len=24",
            "reward.answer_weight=0", "eval.bootstrap_resamples=50", "eval.decoding=greedy", "eval.samples_per_prompt=1", "cluster.num_cpus=2", "logging.progress_bar=false"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "BLEU-1" in printed and "base" in printed and "warm" in printed
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["settings"]["prompts"] == 4 and data["settings"]["decoding"] == "greedy"
    assert data["settings"]["systems"]["warm"]["model_dir"] == str(tmp_path / "ws" / "policy")
    assert data["systems"]["base"]["all"]["metrics"] == data["systems"]["warm"]["all"]["metrics"]
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4
    assert all(r["answers"]["base"]["output"] == r["answers"]["warm"]["output"] for r in rows)


def test_driver_hook_scores_rollout_answers() -> None:
    """`trainer.eval_text_metrics`: the driver's sampled candidates go through the same metrics."""
    from empathy_rl.evaluation import rollout_text_metrics
    from rollout.types import Candidate, Prompt

    prompts = [Prompt(0, "r0", "en", "q", (1,), references=("i hear how hard this is",)),
               Prompt(1, "r1", "zh", "问", (1,), references=("我听到了你的难过",))]
    answer = lambda a: render_coe(["a", "b", "c", "d"], a)  # noqa: E731
    cands = [Candidate(0, [1], [0.0], answer("i hear how hard this is"), "stop", 0, 0),
             Candidate(1, [1], [0.0], answer("我听到了你的难过"), "stop", 0, 0)]
    out = rollout_text_metrics(prompts, cands, use_wordnet=False)
    assert out["eval/text/bleu1_en"] == pytest.approx(1.0) and out["eval/text/rouge_l_zh"] == pytest.approx(1.0)
    assert out["eval/text/bleu4_all"] == pytest.approx(1.0) and out["eval/text/skipped_no_reference_all"] == 0.0
