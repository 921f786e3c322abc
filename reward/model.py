"""`RewardModel`: scoring in process, without Ray Serve.

The Serve deployment (`reward.serve_app`), the `empathy-rl score` command and evaluation all score
through this one class, so a number seen in any of them means the same thing. Importing it does not
import Ray Serve.
"""

from __future__ import annotations

from typing import Sequence

from empathy_rl import coe
from empathy_rl.config import RewardConfig
from reward import components
from reward.types import Score, ScoreRequest


class RewardModel:
    """The encoder plus the pure components of `reward.components`."""

    def __init__(self, cfg: RewardConfig):
        from reward.encoder import SentenceEncoder

        self.cfg = cfg
        needs_encoder = cfg.answer_weight != 0
        self.encoder = SentenceEncoder(cfg.encoder, cfg.encoder_device, cfg.encoder_max_seq_len) if needs_encoder else None

    def score(self, items: Sequence[ScoreRequest]) -> list[Score]:
        """Scores in input order: the format is parsed once per item, and only answers worth scoring
        are embedded (malformed outputs get no answer reward while `answer_requires_format`)."""
        cfg = self.cfg
        parsed = [coe.parse_coe(item.response) for item in items]
        to_embed = [i for i, p in enumerate(parsed) if p.answer and (p.ok or not cfg.answer_requires_format)]
        sims: dict[int, float] = {}
        if self.encoder is not None and to_embed:
            values = self.encoder.cosine([items[i].query for i in to_embed], [parsed[i].answer for i in to_embed])
            sims = dict(zip(to_embed, values))
        scores = []
        for i, (item, p) in enumerate(zip(items, parsed)):
            fmt, failure = components.format_component(p)
            ans = components.answer_component(sims.get(i), cfg.answer_mode, cfg.answer_threshold)
            crisis = components.crisis_component(item.crisis, p.answer if p.ok else None)
            total = components.combine(fmt, ans, crisis, cfg.format_weight, cfg.answer_weight, cfg.crisis_weight)
            scores.append(Score(total, fmt, ans, sims.get(i, 0.0), crisis, failure))
        return scores
