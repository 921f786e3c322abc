"""Crisis detection: flag help-seeker texts that mention suicide or self-harm.

Counseling data contains people at risk. Every prepared record carries a `crisis` flag so that
training metrics, evaluation and any demo can treat those texts with care (report them separately,
show `CRISIS_RESOURCES`, never print them casually). The flag is for care, not for blocking.

The detector is a plain lexicon of Chinese and English expressions (`CRISIS_LEXICON`), matched
without regard to negation: "I've never thought about suicide" is flagged too. False positives
are the accepted price of not missing someone; a classifier would hide why a text was flagged.

`crisis_terms` says which lexicon entries matched, for aggregate metrics. The terms quote the
help-seeker's situation, so callers must not log them at INFO.
"""

from __future__ import annotations

import re

# Chinese entries are matched as substrings (Chinese has no word boundaries).
ZH_TERMS: tuple[str, ...] = (
    "自杀", "自尽", "轻生", "寻死", "想死", "去死", "不想活", "活不下去", "活着没意思", "活着没有意思",
    "活着没什么意思", "活着没意义", "活着有什么意思", "活下去的意义", "结束生命", "结束自己的生命",
    "结束我的生命", "了结自己", "一了百了", "死了算了", "死了就好了", "离开这个世界", "割腕", "自残",
    "自伤", "伤害自己", "跳楼", "跳河", "跳桥", "上吊", "卧轨", "烧炭", "服毒", "喝农药", "吞药",
    "安眠药", "遗书", "活着没有意义", "结束自己", "跳下去", "如果我消失了", "我消失了", "拖累了所有人",
    "不想再活", "活着好累", "想消失",
)

# English entries: label -> regex over lowercased text with straight apostrophes.
EN_TERMS: dict[str, str] = {
    "suicide": r"\bsuicid(?:e|es|al|ality)\b",
    "kill myself": r"\bkill(?:s|ed|ing)?\s+my\s*self\b",
    "end my life": r"\bend(?:s|ed|ing)?\s+(?:my|his|her|their)\s+(?:own\s+)?life\b",
    "take my own life": r"\btak(?:e|es|ing)\s+my\s+own\s+life\b|\btook\s+my\s+own\s+life\b",
    "end it all": r"\bend(?:ing)?\s+it\s+all\b",
    "self-harm": r"\bself[\s-]?(?:harm|harming|injury|injuring|mutilation)\b",
    "hurt myself": r"\bhurt(?:s|ing)?\s+my\s*self\b",
    "cutting myself": r"\bcut(?:s|ting)?\s+my\s*self\b",
    "don't want to live": r"\b(?:don't|do\s+not|didn't|did\s+not)\s+want\s+to\s+(?:live|be\s+alive|exist)\b",
    "want to die": r"\b(?:want(?:ed)?\s+to|wanna)\s+die\b",
    "better off dead": r"\bbetter\s+off\s+dead\b",
    "no reason to live": r"\bno\s+reason\s+to\s+(?:live|go\s+on)\b|\bnot\s+worth\s+living\b",
    "overdose": r"\boverdos(?:e|ed|es|ing)\b",
    "hang myself": r"\bhang(?:ing)?\s+my\s*self\b",
    "burn myself": r"\bburn(?:s|ed|ing)?\s+(?:my\s*self|my\s+(?:arm|arms|skin|leg|legs|wrist|wrists))\b",
    "don't want to be here": r"\b(?:don't|do\s+not)\s+want\s+to\s+be\s+(?:here|around|alive)(?:\s+anymore)?\b",
    "better off without me": r"\bbetter\s+off\s+without\s+me\b",
    "take all my pills": r"\b(?:tak(?:e|ing)|swallow(?:ing)?)\s+(?:all\s+)?(?:my|the|those)\s+(?:sleeping\s+)?pills\b|\bpills\s+on\s+the\s+table\b",
    "disappear": r"\b(?:want\s+to|just|quietly)\s+disappear\b",
}

CRISIS_LEXICON: tuple[str, ...] = ZH_TERMS + tuple(EN_TERMS)  # every entry, for docs and metrics

_EN_PATTERNS = {label: re.compile(pattern) for label, pattern in EN_TERMS.items()}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})

CRISIS_RESOURCES: dict[str, str] = {
    "en": (
        "If you are thinking about suicide or hurting yourself, or you are in danger right now, please "
        "contact your local emergency services or a suicide and crisis line in your country now. You "
        "do not have to go through this alone: reaching out to someone you trust can help."
    ),
    "zh": (
        "如果你正在考虑自杀或伤害自己，或者此刻处于危险之中，请立即拨打当地的急救电话，或联系你所在地区的"
        "心理危机干预热线。你不必独自承受这一切，向你信任的人求助会有帮助。"
    ),
}


def crisis_terms(text: str) -> list[str]:
    """The lexicon entries found in `text`, in lexicon order (for metrics; do not log at INFO)."""
    if not text:
        return []
    found = [term for term in ZH_TERMS if term in text]
    lowered = " ".join(text.translate(_APOSTROPHES).lower().split())
    found += [label for label, pattern in _EN_PATTERNS.items() if pattern.search(lowered)]
    return found


def detect_crisis(text: str) -> bool:
    """True when `text` mentions suicide or self-harm in any lexicon form (negation is ignored)."""
    return bool(crisis_terms(text))


def crisis_resources(language: str) -> str:
    """The crisis-resources message in `language` ("zh" or "en"; anything else gets English)."""
    return CRISIS_RESOURCES.get(language, CRISIS_RESOURCES["en"])
