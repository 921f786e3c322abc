"""`RewardModel`: scoring in process, without Ray Serve.

The Serve deployment (`reward.serve_app`), the `empathy-rl score` command and evaluation all score
through this one class, so a number seen in any of them means the same thing. Importing it does not
import Ray Serve.

The answer encoder is picked per item by language (`ScoreRequest.language`; "auto" = detected from
the query), so a mixed zh/en batch is scored by the right per-language model of a train-rm
directory. The threshold T of `binary` mode is `reward.answer_threshold` when set, else the T that
train-rm stored for the item's language.
"""

from __future__ import annotations

from typing import Optional, Sequence

from empathy_rl import coe
from empathy_rl.config import ConfigError, RewardConfig
from reward import components
from reward.types import Score, ScoreRequest

LANGUAGES = ("zh", "en")


def item_language(item: ScoreRequest) -> str:
    """The item's language: its own when it is zh/en, else detected from the query."""
    return item.language if item.language in LANGUAGES else coe.detect_language(item.query)


class RewardModel:
    """The encoder plus the pure components of `reward.components`."""

    def __init__(self, cfg: RewardConfig):
        from reward.encoder import load_answer_encoder

        self.cfg = cfg
        needs_encoder = cfg.answer_weight != 0
        self.encoder = (
            load_answer_encoder(cfg.encoder, cfg.encoder_device, cfg.encoder_max_seq_len, cfg.query_cache_size, cfg.encoder_batch_size)
            if needs_encoder
            else None
        )
        if self.encoder is not None and cfg.answer_mode == "binary" and cfg.answer_threshold is None:
            if all(self.encoder.threshold(lang) is None for lang in LANGUAGES):
                raise ConfigError(
                    f"reward.answer_threshold is unset and reward.encoder={cfg.encoder!r} stores no threshold T: set "
                    "reward.answer_threshold (binary mode needs T), or point reward.encoder at a directory written by "
                    "`empathy-rl train-rm`"
                )

    def threshold(self, language: str) -> Optional[float]:
        """T for `language`: the configured one, else the one stored with the encoder (None if neither)."""
        if self.cfg.answer_threshold is not None:
            return self.cfg.answer_threshold
        return self.encoder.threshold(language) if self.encoder is not None else None

    def thresholds(self) -> dict[str, Optional[float]]:
        """T per language, as `score` applies it (for /info and logs)."""
        return {lang: self.threshold(lang) for lang in LANGUAGES}

    def score(self, items: Sequence[ScoreRequest]) -> list[Score]:
        """Scores in input order: the format is parsed once per item, and only answers worth scoring
        are embedded (malformed outputs get no answer reward while `answer_requires_format`)."""
        cfg = self.cfg
        parsed = [coe.parse_coe(item.response) for item in items]
        languages = [item_language(item) for item in items]
        to_embed = [i for i, p in enumerate(parsed) if p.answer and (p.ok or not cfg.answer_requires_format)]
        sims: dict[int, float] = {}
        refs: dict[int, Optional[float]] = {}
        if self.encoder is not None and to_embed:
            langs = [languages[i] for i in to_embed]
            answers = [parsed[i].answer for i in to_embed]
            values = self.encoder.similarity([items[i].query for i in to_embed], answers, langs)
            sims = dict(zip(to_embed, values))
            if cfg.answer_mode == "reference":
                ref_values = self.encoder.reference_similarity(answers, [tuple(items[i].references) for i in to_embed], langs)
                refs = dict(zip(to_embed, ref_values))
        scores = []
        for i, (item, p) in enumerate(zip(items, parsed)):
            fmt, failure = components.format_component(p)
            ref = refs.get(i)
            # reference mode without references (a record with no counsellor answer): the query score
            basis = ref if cfg.answer_mode == "reference" and ref is not None else sims.get(i)
            threshold = self.threshold(languages[i]) if cfg.answer_mode == "binary" and i in sims else None
            ans = components.answer_component(basis, cfg.answer_mode, threshold)
            crisis = components.crisis_component(item.crisis, p.answer if p.ok else None, languages[i], cfg.crisis_resources, cfg.crisis_means_penalty)
            total = components.combine(fmt, ans, crisis, cfg.format_weight, cfg.answer_weight, cfg.crisis_weight)
            scores.append(Score(total, fmt, ans, sims.get(i, 0.0), crisis, failure, ref, languages[i]))
        return scores
