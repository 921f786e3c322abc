"""Optional LLM crisis judge through any OpenAI-compatible endpoint (config section `safety`).

Why: rules and the small classifier only know phrasings someone wrote down; a capable LLM reads
indirect risk better. Why optional and cautious: an endpoint may be absent, slow or wrong, and
`assess_crisis` must keep working offline. So:

- `safety.judge_mode=off` (default): no request is made.
- `escalate_only`: the judge can only raise the level (and add categories) beyond rules +
  classifier, never lower it. A judge that misses a crisis then costs nothing; a judge that sees
  one the rules missed adds care. This is the safe direction for a flag that asks for care and
  never blocks.
- `override`: the judge's level and categories replace the rules' (for a cluster that has
  validated its judge on labelled data; it can also clear a rules false alarm).

Every failure (unreachable, timeout, HTTP error, an answer that is not the strict JSON
`{"level": ..., "categories": [...]}`) falls back to rules + classifier and is counted in
`CrisisJudge.stats` (`calls`, `failures`, `raised`, `lowered`). The help-seeker text goes to the
endpoint and nowhere else; nothing here logs it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Optional

from empathy_rl.openai_compat import EndpointError, chat_completion
from empathy_rl.safety import CATEGORIES, LEVELS, CrisisAssessment, Evidence, assess_crisis

PROMPT_FILE = "crisis_judge_prompt.txt"
MODES = ("off", "escalate_only", "override")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class JudgeAnswerError(ValueError):
    """The judge answered, but not with the strict JSON object the prompt asks for."""


def system_prompt() -> str:
    """The judge's instructions (empathy_rl/assets/crisis_judge_prompt.txt)."""
    return resources.files("empathy_rl.assets").joinpath(PROMPT_FILE).read_text(encoding="utf-8")


def parse_answer(content: str) -> tuple[str, tuple[str, ...]]:
    """(level, categories) from the judge's answer: one JSON object with a `level` of none,
    concern or urgent and `categories` a list of known categories (a ```json fence is tolerated,
    nothing else)."""
    match = _FENCE.match(content)
    body = match.group(1) if match else content.strip()
    try:
        data: Any = json.loads(body)
    except json.JSONDecodeError as err:
        raise JudgeAnswerError(f"crisis judge answer is not JSON ({err.msg})") from err
    if not isinstance(data, dict):
        raise JudgeAnswerError("crisis judge answer is not a JSON object")
    level = data.get("level")
    if level not in LEVELS:
        raise JudgeAnswerError(f"crisis judge answer has level {level!r}, expected one of {LEVELS}")
    categories = data.get("categories", [])
    if not isinstance(categories, list) or any(c not in CATEGORIES for c in categories):
        raise JudgeAnswerError(f"crisis judge answer has categories {categories!r}, expected a list of {CATEGORIES}")
    return level, tuple(c for c in CATEGORIES if c in categories) if level != "none" else ()


@dataclass
class CrisisJudge:
    """Rules + classifier, then (unless mode is off) one judge request per text."""

    url: Optional[str]
    model: str
    mode: str = "escalate_only"
    timeout_s: float = 20.0
    key_env: Optional[str] = None
    max_chars: int = 4000
    use_classifier: bool = True  # passed to assess_crisis (safety.classifier)
    classifier_threshold: Optional[float] = None  # safety.classifier_threshold (None: the model file's)
    classifier_veto: Optional[float] = None  # safety.classifier_veto (None: the model file's)
    classifier_model: str = "sensitive"  # safety.classifier_model
    classifier_urgent: bool = True  # safety.classifier_urgent
    classifier_urgent_threshold: Optional[float] = None  # safety.classifier_urgent_threshold (None: the model file's)
    stats: dict[str, int] = field(default_factory=lambda: {"calls": 0, "failures": 0, "raised": 0, "lowered": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"safety.judge_mode={self.mode!r} must be one of {MODES}")
        if self.mode != "off" and not self.url:
            raise ValueError(f"safety.judge_mode={self.mode} needs safety.judge_url")

    @classmethod
    def from_config(cls, safety: Any) -> "CrisisJudge":
        """From the `safety` config section (empathy_rl/config.py SafetyConfig)."""
        return cls(url=safety.judge_url, model=safety.judge_model, mode=safety.judge_mode, timeout_s=float(safety.judge_timeout_s),
                   key_env=safety.judge_key_env or None, max_chars=int(safety.judge_max_chars),
                   use_classifier=bool(safety.classifier), classifier_threshold=safety.classifier_threshold,
                   classifier_veto=safety.classifier_veto, classifier_model=safety.classifier_model,
                   classifier_urgent=bool(safety.classifier_urgent), classifier_urgent_threshold=safety.classifier_urgent_threshold)

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def assess(self, text: str, language: Optional[str] = None) -> CrisisAssessment:
        """`assess_crisis(text, language)`, adjusted by the judge as `mode` says; on any judge
        failure the rules + classifier assessment is returned unchanged (and counted)."""
        base = assess_crisis(text, language, use_classifier=self.use_classifier, threshold=self.classifier_threshold,
                             veto=self.classifier_veto, classifier_model=self.classifier_model, urgent=self.classifier_urgent,
                             urgent_threshold=self.classifier_urgent_threshold)
        if self.mode == "off" or not text.strip():
            return base
        self._count("calls")
        messages = [{"role": "system", "content": system_prompt()}, {"role": "user", "content": text[: self.max_chars]}]
        try:
            content = chat_completion(str(self.url), self.model, messages, timeout_s=self.timeout_s, key_env=self.key_env,
                                      temperature=0.0, max_tokens=64, hint="(safety.judge_url, safety.judge_model)")
            level, categories = parse_answer(content)
        except (EndpointError, JudgeAnswerError):
            self._count("failures")
            return base
        return self._combine(base, level, categories, len(text))

    def _combine(self, base: CrisisAssessment, level: str, categories: tuple[str, ...], length: int) -> CrisisAssessment:
        rank = LEVELS.index
        if self.mode == "escalate_only":
            new_level = max(base.level, level, key=rank)
            new_categories = tuple(c for c in CATEGORIES if c in base.categories or (rank(level) > 0 and c in categories))
        else:
            new_level, new_categories = level, categories
        if new_level == base.level and new_categories == base.categories:
            return base
        if rank(new_level) != rank(base.level):
            self._count("raised" if rank(new_level) > rank(base.level) else "lowered")
        judged = Evidence("judge", "judge", "", "", (0, length), float(rank(level)), float(rank(level)) / 2.0)
        return replace(base, level=new_level, categories=new_categories, evidence=base.evidence + (judged,))
