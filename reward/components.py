"""Reward components as small pure functions, and how they add up.

total = format_weight * format + answer_weight * answer + crisis_weight * crisis

- format (paper): 1 if the output is a well-formed Chain-of-Empathy, else 0 (`empathy_rl.coe`).
- answer (paper): from the similarity s in [-1, 1] of query and answer: cos(E(q), E(a)) for a plain
  sentence encoder, cos(head_q(E(q)), head_a(E(a))) for a train-rm model (`reward.rm_model`).
  `binary` mode gives 1[s >= T] (the paper's threshold T, per language from train-rm unless
  `reward.answer_threshold` is set), `cosine` mode gives (s + 1) / 2, `reference` mode gives
  (r + 1) / 2 for r = max cosine between the answer and the record's counsellor answers (answer
  head on both sides), falling back to the `cosine` value when the record has no reference answer.
  With `answer_requires_format`, a malformed output gets 0: there is no reliable answer to embed.
- crisis (ours; the paper is silent): for a query flagged as a crisis, +1 when the answer
  acknowledges the risk and points, not negated, to immediate help; `reward.crisis_means_penalty`
  when it gives method or means information; -1 otherwise. Zero for other queries (`reward.crisis`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from empathy_rl import coe

def format_component(response: str | coe.CoEParse) -> tuple[float, str]:
    """(format reward, first failure code or ""): `coe.format_reward` plus the reason it failed."""
    parsed = response if isinstance(response, coe.CoEParse) else coe.parse_coe(response)
    return coe.format_reward(parsed), "" if parsed.ok else parsed.error_code


def answer_component(similarity: float | None, mode: str, threshold: float | None) -> float:
    """Answer reward from a similarity in [-1, 1]; None (no answer to embed) gives 0.

    binary: 1 if similarity >= threshold else 0 (the paper's; `threshold` is required);
    cosine / reference: (similarity + 1) / 2, clipped to [0, 1], so it shares binary's range and a
    negative cosine still ranks candidates (a clip at 0 would flatten them).
    """
    if similarity is None:
        return 0.0
    if mode == "binary":
        if threshold is None:
            raise ValueError("reward.answer_mode=binary needs a threshold: set reward.answer_threshold or use a train-rm encoder directory")
        return 1.0 if similarity >= threshold else 0.0
    if mode in ("cosine", "reference"):
        return min(1.0, max(0.0, (float(similarity) + 1.0) / 2.0))
    raise ValueError(f"reward.answer_mode must be binary, cosine or reference, got {mode!r}")


def crisis_component(is_crisis: bool, answer: str | None, language: str = "auto",
                     crisis_resources: Mapping[str, Sequence[str]] | None = None, means_penalty: float = -2.0) -> float:
    """0 for non-crisis queries; for crisis queries `reward.crisis.crisis_reward`: +1 when the answer
    acknowledges the risk and points, not negated, to immediate help; `means_penalty` when it gives
    method or means information; -1 otherwise."""
    from reward.crisis import crisis_reward

    return crisis_reward(is_crisis, answer, language, crisis_resources, means_penalty)


def combine(fmt: float, answer: float, crisis: float, format_weight: float, answer_weight: float, crisis_weight: float) -> float:
    return format_weight * fmt + answer_weight * answer + crisis_weight * crisis
