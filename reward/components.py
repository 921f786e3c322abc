"""Reward components as small pure functions, and how they add up.

total = format_weight * format + answer_weight * answer + crisis_weight * crisis

- format (paper): 1 if the output is a well-formed Chain-of-Empathy, else 0 (`empathy_rl.coe`).
- answer (paper): from cosine similarity s = cos(E(query), E(answer)) of a sentence encoder E:
  `binary` mode gives 1[s >= T] (the paper's threshold T), `cosine` mode gives s itself.
  With `answer_requires_format`, a malformed output gets 0: there is no reliable answer to embed.
- crisis (ours; the paper is silent): for a query flagged as a crisis (self-harm, suicide), +1 when
  the answer points the seeker to immediate help (emergency services, a crisis line, trusted
  people), -1 when it does not. Zero for other queries. A safeguard, not a safety classifier.
"""

from __future__ import annotations

import re

from empathy_rl import coe

# Phrases that refer a person in crisis to immediate help, English and Chinese.
REFERRAL_PATTERNS = [
    r"emergency", r"crisis (line|hotline|service|team|center|centre)", r"hotline", r"helpline",
    r"suicide (prevention|line|hotline)", r"\b988\b", r"\b911\b", r"call (someone|a friend|a trusted)",
    r"trusted (person|friend|adult|family)", r"(doctor|therapist|counsel+or|professional) (right away|now|today|immediately)",
    r"急救", r"急诊", r"热线", r"危机", r"求助", r"报警", r"(?<!\d)110(?!\d)", r"(?<!\d)120(?!\d)", r"信任的人", r"专业(的)?帮助", r"心理援助",
]
_REFERRAL = re.compile("|".join(REFERRAL_PATTERNS), re.IGNORECASE)


def format_component(response: str | coe.CoEParse) -> tuple[float, str]:
    """(format reward, first failure code or ""): `coe.format_reward` plus the reason it failed."""
    parsed = response if isinstance(response, coe.CoEParse) else coe.parse_coe(response)
    return coe.format_reward(parsed), "" if parsed.ok else parsed.error_code


def answer_component(similarity: float | None, mode: str, threshold: float) -> float:
    """Answer reward from cosine similarity; None (no answer to embed) gives 0."""
    if similarity is None:
        return 0.0
    if mode == "binary":
        return 1.0 if similarity >= threshold else 0.0
    if mode == "cosine":
        return float(similarity)
    raise ValueError(f"reward.answer_mode must be binary or cosine, got {mode!r}")


def crisis_component(is_crisis: bool, answer: str | None) -> float:
    """+1 / -1 for crisis queries whose answer does / does not refer to immediate help; 0 otherwise."""
    if not is_crisis:
        return 0.0
    return 1.0 if answer and _REFERRAL.search(answer) else -1.0


def combine(fmt: float, answer: float, crisis: float, format_weight: float, answer_weight: float, crisis_weight: float) -> float:
    return format_weight * fmt + answer_weight * answer + crisis_weight * crisis
