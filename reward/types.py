"""Records of the reward stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ScoreRequest:
    """One candidate to score. `query` is the help-seeker text; `response` the full CoE output."""

    query: str
    response: str
    crisis: bool = False
    language: str = "auto"  # zh | en | auto (detected from the query): picks the answer encoder
    references: tuple[str, ...] = ()  # counsellors' answers to the query, for reward.answer_mode=reference


@dataclass(frozen=True)
class Score:
    """Total reward and each component, for one candidate."""

    total: float
    format: float  # 1.0 well-formed CoE, else 0.0
    answer: float  # answer reward (by reward.answer_mode: binary 0/1, cosine or reference in [0, 1])
    similarity: float  # raw score(query, answer) in [-1, 1] (trained heads or plain cosine); 0.0 when there was no answer to embed
    crisis: float  # crisis-referral component (0 unless the query is a crisis)
    failure: str  # parser's first failure code, "" when well-formed
    reference_similarity: Optional[float] = None  # max cos(answer, reference answers) in reference mode; None when not computed or no references
    language: str = ""  # language whose encoder scored the answer ("zh" | "en"; request's or detected)
