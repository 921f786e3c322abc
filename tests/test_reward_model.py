"""`RewardModel` answer modes, per-language thresholds and encoder choice, with a scripted encoder
(no model loading), plus the config error for a plain encoder without T."""

from __future__ import annotations

from typing import Optional, Sequence

import pytest

from empathy_rl.coe import render_coe
from empathy_rl.config import ConfigError, RewardConfig
from reward import encoder as encoder_module
from reward.model import RewardModel, item_language
from reward.types import ScoreRequest

LAYERS = ("feeling", "cause", "intent", "strategy")


def coe(answer: str) -> str:
    return render_coe(LAYERS, answer)


class ScriptedEncoder:
    """similarity = a number written into the answer ("s=0.3 ..."); records the languages it saw."""

    def __init__(self, thresholds: dict[str, Optional[float]]):
        self.thresholds = thresholds
        self.calls: list[list[str]] = []

    @staticmethod
    def _value(text: str) -> float:
        return float(text.split()[0].removeprefix("s="))

    def similarity(self, queries: Sequence[str], answers: Sequence[str], languages: Sequence[str]) -> list[float]:
        self.calls.append(list(languages))
        return [self._value(a) for a in answers]

    def reference_similarity(self, answers, references, languages) -> list[Optional[float]]:
        return [max(self._value(r) for r in refs) if refs else None for refs in references]

    def threshold(self, language: str) -> Optional[float]:
        return self.thresholds.get(language)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    def make(thresholds: dict[str, Optional[float]], **cfg) -> tuple[RewardModel, ScriptedEncoder]:
        enc = ScriptedEncoder(thresholds)
        monkeypatch.setattr(encoder_module, "load_answer_encoder", lambda *a, **k: enc)
        return RewardModel(RewardConfig(**cfg)), enc

    return make


def test_binary_uses_the_stored_threshold_per_language(scripted) -> None:
    model, enc = scripted({"en": 0.5, "zh": 0.2})
    scores = model.score([
        ScoreRequest("I feel alone", coe("s=0.3 answer"), language="en"),
        ScoreRequest("我很孤独", coe("s=0.3 回答"), language="zh"),
        ScoreRequest("我很孤独，没人理解我", coe("s=0.3 回答")),  # auto -> zh
    ])
    assert [s.answer for s in scores] == [0.0, 1.0, 1.0]
    assert [s.language for s in scores] == ["en", "zh", "zh"]
    assert enc.calls == [["en", "zh", "zh"]]
    assert model.thresholds() == {"zh": 0.2, "en": 0.5}


def test_configured_threshold_overrides_the_stored_one(scripted) -> None:
    model, _ = scripted({"en": 0.5, "zh": 0.2}, answer_threshold=0.4)
    scores = model.score([ScoreRequest("q", coe("s=0.45 a"), language="en"), ScoreRequest("问", coe("s=0.3 答"), language="zh")])
    assert [s.answer for s in scores] == [1.0, 0.0]


def test_cosine_mode_rescales(scripted) -> None:
    model, _ = scripted({}, answer_mode="cosine")
    (score,) = model.score([ScoreRequest("q", coe("s=-0.2 a"), language="en")])
    assert score.answer == pytest.approx(0.4) and score.similarity == pytest.approx(-0.2)
    assert score.total == pytest.approx(1.0 + 0.4)


def test_reference_mode_uses_references_and_falls_back_without(scripted) -> None:
    model, _ = scripted({}, answer_mode="reference")
    with_refs, without = model.score([
        ScoreRequest("q", coe("s=0.1 a"), language="en", references=("s=0.2 r1", "s=0.8 r2")),
        ScoreRequest("q", coe("s=0.1 a"), language="en"),
    ])
    assert with_refs.reference_similarity == pytest.approx(0.8) and with_refs.answer == pytest.approx(0.9)
    assert without.reference_similarity is None and without.answer == pytest.approx(0.55)  # the cosine value


def test_malformed_output_is_not_embedded(scripted) -> None:
    model, enc = scripted({"en": 0.0})
    (score,) = model.score([ScoreRequest("q", "s=0.9 no tags at all", language="en")])
    assert score.format == 0.0 and score.answer == 0.0 and enc.calls == []


def test_binary_without_any_threshold_is_a_config_error(scripted) -> None:
    with pytest.raises(ConfigError, match="reward.answer_threshold"):
        scripted({"en": None, "zh": None})


def test_minilm_without_threshold_names_the_key() -> None:
    with pytest.raises(ConfigError, match="reward.answer_threshold"):
        RewardModel(RewardConfig(encoder="minilm", answer_mode="binary"))


def test_item_language() -> None:
    assert item_language(ScoreRequest("hello there", "x")) == "en"
    assert item_language(ScoreRequest("你好，我最近很难过", "x")) == "zh"
    assert item_language(ScoreRequest("你好，我最近很难过", "x", language="en")) == "en"
