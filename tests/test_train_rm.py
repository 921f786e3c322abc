"""`empathy-rl train-rm` end to end: a real Ray Train run on small slices of the shared data (the
session fixture `reward_model_dir`), its directory layout and report, loading it into the
`RewardModel`, mixed zh/en batches, and the ranking a reward must get right on held-out queries:
a real counsellor answer above an echo of the query and above an off-topic text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy_rl.cli import main
from empathy_rl.coe import render_coe
from empathy_rl.config import RewardConfig
from empathy_rl.data import load_records
from reward import rm_data
from reward.rm_model import FORMAT, FORMAT_VERSION, RewardModelFormatError, read_metadata
from reward.types import ScoreRequest

from tests.conftest import reward_model_config

LAYERS = ("feeling", "cause", "intent", "strategy")


def _held_out(reward_model_dir: Path, language: str, n: int = 30) -> list:
    records = load_records(reward_model_dir.parent / "data", "test")
    return [r for r in records if r.language == language and r.answers][:n]


# ------------------------------------------------------------------------------ fast: errors


def test_train_rm_names_a_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "counsel_chat.csv"
    code = main(["train-rm", "--config", "configs/tiny-cpu.yaml", f"reward_model.prepared_dir={tmp_path / 'prep'}",
                 f"reward_model.sources=[{{path: {missing}, adapter: counsel_chat}}]"])
    assert code == 2
    err = capsys.readouterr().err
    assert "reward_model.sources[0].path" in err and str(missing) in err


def test_train_rm_without_data_or_sources_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train-rm", "--config", "configs/tiny-cpu.yaml", f"reward_model.prepared_dir={tmp_path / 'prep'}", "reward_model.sources=[]"])
    assert code == 2
    assert "reward_model.sources is empty" in capsys.readouterr().err


def test_not_a_reward_model_dir(tmp_path: Path) -> None:
    with pytest.raises(RewardModelFormatError, match="reward_model.json does not exist"):
        read_metadata(tmp_path)
    (tmp_path / "reward_model.json").write_text(json.dumps({"format": FORMAT, "format_version": 99, "languages": {"en": {}}}))
    with pytest.raises(RewardModelFormatError, match="format_version 99"):
        read_metadata(tmp_path)


# ------------------------------------------------------------------------------ slow: a real run


@pytest.mark.slow
def test_layout_and_report(reward_model_dir: Path) -> None:
    meta = read_metadata(reward_model_dir)
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION
    assert set(meta["languages"]) == {"en", "zh"}
    assert meta["languages"]["en"]["encoder"] == "minilm" and meta["languages"]["zh"]["encoder"] == "tfidf"
    for lang, spec in meta["languages"].items():
        assert -1 <= spec["threshold"] <= 1
        assert (reward_model_dir / lang / "model.safetensors").is_file()
    assert (reward_model_dir / "zh" / "tfidf.json").is_file()
    assert meta["margin"] == pytest.approx(0.2)
    assert meta["training"]["data"]["en"]["negatives"]["same_topic"] > 0  # counsel-chat has topics
    assert "same_topic" not in meta["training"]["data"]["zh"]["negatives"]  # CPsyCoun has none
    report = json.loads((reward_model_dir / "report.json").read_text())
    assert "## en" in (reward_model_dir / "report.md").read_text()
    for lang in ("en", "zh"):
        before, after = report["languages"][lang]["before"], report["languages"][lang]["after"]
        # identity heads: an exact echo scores cos = 1, so no real answer can beat it before training
        assert before["pairwise"]["echo_exact"] == 0.0
        assert after["pairwise"]["echo_exact"] > 0.8, (lang, after)
        assert after["auc"] > before["auc"], (lang, before["auc"], after["auc"])


@pytest.mark.slow
def test_real_answers_beat_echoes_and_off_topic_on_held_out_queries(reward_model_dir: Path) -> None:
    from reward.encoder import TrainedRewardEncoder

    enc = TrainedRewardEncoder(reward_model_dir)
    for lang in ("en", "zh"):
        records = _held_out(reward_model_dir, lang)
        assert len(records) >= 10, lang
        queries = [r.query for r in records]
        real = enc.similarity(queries, [r.answers[0] for r in records], [lang] * len(records))
        echo = enc.similarity(queries, queries, [lang] * len(records))
        offtopic = rm_data.offtopic_texts(lang)
        off = enc.similarity(queries, [offtopic[i % len(offtopic)] for i in range(len(records))], [lang] * len(records))
        beats_echo = sum(r > e for r, e in zip(real, echo)) / len(records)
        beats_off = sum(r > o for r, o in zip(real, off)) / len(records)
        assert beats_echo >= 0.75, (lang, beats_echo)
        assert beats_off >= 0.75, (lang, beats_off)


@pytest.mark.slow
def test_reward_model_scores_a_mixed_batch_per_language(reward_model_dir: Path) -> None:
    from reward.encoder import TrainedRewardEncoder
    from reward.model import RewardModel

    en, zh = _held_out(reward_model_dir, "en", 3), _held_out(reward_model_dir, "zh", 3)
    mixed = [r for pair in zip(en, zh) for r in pair]
    items = [ScoreRequest(r.query, render_coe(LAYERS, r.answers[0]), references=tuple(r.answers)) for r in mixed]  # language auto
    model = RewardModel(RewardConfig(encoder=str(reward_model_dir), answer_mode="binary"))
    scores = model.score(items)
    assert [s.language for s in scores] == [r.language for r in mixed]
    enc = TrainedRewardEncoder(reward_model_dir)
    for r, s in zip(mixed, scores):
        alone = enc.scorers[r.language].similarity([r.query], [r.answers[0]])[0]
        assert s.similarity == pytest.approx(alone, abs=1e-5)
        t = enc.threshold(r.language)
        assert s.answer == (1.0 if s.similarity >= t else 0.0)
    assert model.thresholds()["zh"] != model.thresholds()["en"]
    # reference mode: the candidate is one of the references, so the best reference cosine is 1
    ref = RewardModel(RewardConfig(encoder=str(reward_model_dir), answer_mode="reference")).score(items)
    assert all(s.reference_similarity == pytest.approx(1.0, abs=1e-4) and s.answer == pytest.approx(1.0, abs=1e-4) for s in ref)


@pytest.mark.slow
def test_train_rm_reuses_prepared_data(reward_model_dir: Path, tmp_path: Path) -> None:
    """The config a second run would use points at the same prepared data (no re-preparation)."""
    cfg = reward_model_config(reward_model_dir.parent)
    from reward.rm_train import ensure_prepared

    before = (reward_model_dir.parent / "data" / "train.parquet").stat().st_mtime_ns
    assert ensure_prepared(cfg, progress=False) == Path(cfg.reward_model.prepared_dir)
    assert (reward_model_dir.parent / "data" / "train.parquet").stat().st_mtime_ns == before
