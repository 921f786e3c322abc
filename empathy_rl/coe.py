"""The Chain-of-Empathy (CoE) output format: constants, strict parser, renderer and system prompts.

A policy answer in empathy-rl is expected to look exactly like this::

    <empathy_think>
    <L1>emotions in context (appraisal)</L1>
    <L2>causes and possible cognitive biases</L2>
    <L3>the seeker's intent: validation, understanding or advice</L3>
    <L4>response strategy (active listening, NURSE)</L4>
    </empathy_think>
    <answer>the reply to the seeker</answer>

The twelve tags in ``ALL_TAGS`` are added to the tokenizer as single tokens.

Why the parser is strict: Empathy-R1 trains with a *binary* format reward (1 if the output follows
the template, 0 otherwise). A lenient parser would hand out format reward for outputs that a
downstream reader cannot split into reasoning and reply, and the policy quickly learns to exploit
any slack (chatter before the tags, repeated blocks, a missing layer). So ``parse_coe`` accepts only
the exact template: every tag exactly once, in order, no nesting, non-empty layers and answer, and
nothing but whitespace outside the tags. The only normalizations are newline style (``\\r\\n`` and
``\\r`` become ``\\n``), any Unicode whitespace counting as whitespace (e.g. the ideographic space
U+3000), and dropping a trailing end-of-sequence marker (``<|im_end|>``, ``<|endoftext|>``) that
appears when special tokens are not skipped during decoding. Tags are exact and case-sensitive: a
tag written with full-width brackets (``＜L1＞``), in upper case or with attributes is not a tag.

When an output is rejected, ``CoEParse.errors`` says why in words and ``CoEParse.error_code`` gives
a short machine code for the first problem, for counting failure reasons in metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

THINK_OPEN = "<empathy_think>"
THINK_CLOSE = "</empathy_think>"
LAYER_TAGS = ("L1", "L2", "L3", "L4")
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

ALL_TAGS: tuple[str, ...] = (
    THINK_OPEN,
    *(t for name in LAYER_TAGS for t in (f"<{name}>", f"</{name}>")),
    THINK_CLOSE,
    ANSWER_OPEN,
    ANSWER_CLOSE,
)

LAYER_NAMES: dict[str, str] = {
    "L1": "emotions in context (appraisal)",
    "L2": "causes and possible cognitive biases",
    "L3": "the seeker's intent: validation, understanding or advice",
    "L4": "response strategy (active listening, NURSE)",
}

EOS_MARKERS = ("<|im_end|>", "<|endoftext|>")

# Error codes, one per failure category (``CoEParse.error_code``).
OK = "ok"
EMPTY = "empty"
MISSING_TAG = "missing_tag"
DUPLICATE_TAG = "duplicate_tag"
TRUNCATED = "truncated"
NESTED = "nested"
MISORDERED = "misordered"
OUTSIDE_TEXT = "outside_text"
EMPTY_LAYER = "empty_layer"
EMPTY_ANSWER = "empty_answer"

_TAG_RE = re.compile(r"</?(?:empathy_think|L[1-4]|answer)>")
# Tags whose content is free text: the four layers and the answer (empathy_think holds only layers).
_LEAF_NAMES = (*LAYER_TAGS, "answer")
_QUOTE_CHARS = 20


@dataclass(frozen=True)
class CoEParse:
    """Result of ``parse_coe``.

    ``layers`` always has four entries and ``answer`` is a string; both are stripped, and filled
    on a best-effort basis ("" where a block is missing) when ``ok`` is False. ``errors`` holds
    human-readable reasons and ``codes`` the matching machine codes, both empty when ``ok``.
    """

    ok: bool
    layers: tuple[str, ...]
    answer: str
    errors: tuple[str, ...]
    codes: tuple[str, ...] = ()

    @property
    def error_code(self) -> str:
        """Machine code of the first error (e.g. ``"missing_tag"``), or ``"ok"`` when well-formed."""
        return self.codes[0] if self.codes else OK


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _normalize(text: str) -> str:
    """Unify newlines and drop trailing end-of-sequence markers (and whitespace around them)."""
    text = _normalize_newlines(text).rstrip()
    stripped = True
    while stripped:
        stripped = False
        for marker in EOS_MARKERS:
            if text.endswith(marker):
                text = text[: -len(marker)].rstrip()
                stripped = True
    return text


def _quote(snippet: str) -> str:
    snippet = snippet.strip()
    if len(snippet) > _QUOTE_CHARS:
        snippet = snippet[:_QUOTE_CHARS] + "..."
    return repr(snippet)


def _block(text: str, tokens: list[re.Match[str]], name: str) -> str:
    """Stripped text between the first ``<name>`` and the first ``</name>`` after it, else ""."""
    open_tag, close_tag = f"<{name}>", f"</{name}>"
    start = next((m for m in tokens if m.group() == open_tag), None)
    if start is None:
        return ""
    end = next((m for m in tokens if m.group() == close_tag and m.start() >= start.end()), None)
    return text[start.end() : end.start()].strip() if end is not None else ""


def _tag_errors(tokens: list[re.Match[str]]) -> list[tuple[str, str]]:
    """Missing, duplicated and unclosed tags, in template order."""
    seq = [m.group() for m in tokens]
    if seq and seq == list(ALL_TAGS[: len(seq)]) and not seq[-1].startswith("</"):
        return [(TRUNCATED, f"unclosed {seq[-1]} (output cut off?)")]
    errors = []
    for tag in ALL_TAGS:
        count = seq.count(tag)
        if count > 1:
            errors.append((DUPLICATE_TAG, f"duplicated {tag}"))
        elif count == 0:
            opener = tag.replace("</", "<")
            if tag.startswith("</") and seq.count(opener) == 1 and seq[-1] == opener:
                errors.append((TRUNCATED, f"unclosed {opener} (output cut off?)"))
            else:
                errors.append((MISSING_TAG, f"missing {tag}"))
    return errors


def _structure_errors(seq: list[str], pos: dict[str, int]) -> list[tuple[str, str]]:
    """Nesting and ordering errors, given that every tag occurs exactly once."""
    for name in _LEAF_NAMES:
        start, end = pos[f"<{name}>"], pos[f"</{name}>"]
        inner = seq[start + 1 : end]
        if inner:
            return [(NESTED, f"nested tag {inner[0]} inside <{name}>")]
    for got, expected in zip(seq, ALL_TAGS):
        if got != expected:
            return [(MISORDERED, f"{got} before {expected}")]
    return []


def _content_errors(text: str, tokens: list[re.Match[str]]) -> list[tuple[str, str]]:
    """Empty blocks and non-whitespace text outside the tags, in document order."""
    errors = []
    bounds = [0, *(x for m in tokens for x in (m.start(), m.end())), len(text)]
    for i in range(len(tokens) + 1):
        gap = text[bounds[2 * i] : bounds[2 * i + 1]]
        opener = tokens[i - 1].group() if i > 0 else ""
        name = opener[1:-1]
        if name in _LEAF_NAMES:
            if not gap.strip():
                errors.append((EMPTY_ANSWER if name == "answer" else EMPTY_LAYER, f"empty {opener}"))
        elif gap.strip():
            errors.append((OUTSIDE_TEXT, f"text outside tags: {_quote(gap)}"))
    return errors


def parse_coe(text: str) -> CoEParse:
    """Strictly parse a CoE output; never raises. See the module docstring for the rules.

    Checks run in stages and only the first failing stage reports: empty output; missing,
    duplicated or unclosed tags (an output that is a correct prefix of the template ending inside
    a block is reported as one ``truncated`` error); nesting, then tag order; finally empty blocks
    and text outside the tags, in document order.
    """
    text = _normalize(text if isinstance(text, str) else "")
    tokens = list(_TAG_RE.finditer(text))
    seq = [m.group() for m in tokens]
    if not text.strip():
        errors = [(EMPTY, "empty output")]
    elif not tokens:
        errors = [(MISSING_TAG, "no CoE tags found")]
    else:
        errors = _tag_errors(tokens)
        if not errors:
            errors = _structure_errors(seq, {tag: i for i, tag in enumerate(seq)})
        if not errors:
            errors = _content_errors(text, tokens)
    return CoEParse(
        ok=not errors,
        layers=tuple(_block(text, tokens, name) for name in LAYER_TAGS),
        answer=_block(text, tokens, "answer"),
        errors=tuple(message for _, message in errors),
        codes=tuple(code for code, _ in errors),
    )


def format_reward(text: str | CoEParse) -> float:
    """Binary format reward (the paper's): 1.0 if ``text`` is a well-formed CoE output, else 0.0.

    Accepts an existing ``CoEParse`` so that callers that also need the answer parse once.
    """
    parsed = text if isinstance(text, CoEParse) else parse_coe(text)
    return 1.0 if parsed.ok else 0.0


def extract_answer(text: str) -> str | None:
    """The stripped ``<answer>`` text of a well-formed CoE output, or None if it is malformed."""
    parsed = parse_coe(text)
    return parsed.answer if parsed.ok else None


def strip_tags(text: str) -> str:
    """``text`` with every CoE tag removed and whitespace collapsed (for scoring untagged output)."""
    return " ".join(_TAG_RE.sub(" ", text).split())


def render_coe(layers: Sequence[str], answer: str) -> str:
    """Build the canonical CoE text (one tag block per line, no trailing newline).

    Texts are stripped and their newlines normalized, so ``parse_coe(render_coe(l, a))`` returns
    exactly those texts. Raises ValueError for a wrong layer count, an empty layer or answer, or a
    CoE tag inside one of them.
    """
    if isinstance(layers, str) or len(layers) != len(LAYER_TAGS):
        count = "a string" if isinstance(layers, str) else len(layers)
        raise ValueError(f"expected {len(LAYER_TAGS)} layers (L1..L4), got {count}")
    parts = [*zip(LAYER_TAGS, layers), ("answer", answer)]
    clean = []
    for name, body in parts:
        label = f"layer {name}" if name != "answer" else "answer"
        if not isinstance(body, str):
            raise ValueError(f"{label} must be a string, got {type(body).__name__}")
        body = _normalize_newlines(body).strip()
        if not body:
            raise ValueError(f"{label} is empty")
        tag = _TAG_RE.search(body)
        if tag:
            raise ValueError(f"{label} contains the CoE tag {tag.group()}")
        clean.append(body)
    lines = [THINK_OPEN, *(f"<{n}>{b}</{n}>" for n, b in zip(LAYER_TAGS, clean)), THINK_CLOSE]
    return "\n".join([*lines, f"{ANSWER_OPEN}{clean[-1]}{ANSWER_CLOSE}"])


SYSTEM_PROMPTS: dict[str, str] = {
    "en": (
        "You are a warm, supportive mental-health counselor. First reason through four layers inside "
        "<empathy_think>, then reply inside <answer>, exactly in this format:\n"
        "<empathy_think>\n"
        "<L1>the seeker's emotions in context (appraisal)</L1>\n"
        "<L2>their causes and possible cognitive biases</L2>\n"
        "<L3>the seeker's intent: validation, understanding or advice</L3>\n"
        "<L4>your strategy, e.g. active listening or NURSE (Naming, Understanding, Respecting, "
        "Supporting, Exploring)</L4>\n"
        "</empathy_think>\n"
        "<answer>your reply to the seeker</answer>\n"
        "Any sign of self-harm or suicide is the priority: acknowledge it directly and encourage "
        "contacting local emergency services or a crisis line, and people they trust."
    ),
    "zh": (
        "你是一位温暖、给人支持的心理咨询师。先在<empathy_think>中分四层思考，"
        "再在<answer>中回复求助者，严格按以下格式输出：\n"
        "<empathy_think>\n"
        "<L1>求助者在情境中的情绪（评价）</L1>\n"
        "<L2>情绪的原因及可能的认知偏差</L2>\n"
        "<L3>求助者的意图：寻求认可、理解还是建议</L3>\n"
        "<L4>回应策略，如积极倾听或NURSE（命名、理解、尊重、支持、探索）</L4>\n"
        "</empathy_think>\n"
        "<answer>给求助者的回复</answer>\n"
        "一旦出现自伤或自杀的迹象，务必优先处理：直接回应，"
        "并鼓励对方联系当地急救服务或心理危机热线，以及身边信任的人。"
    ),
}


# One-line variants for small models with short context (the tiny CPU preset): the same order of
# layers and the same crisis instruction, a quarter of the tokens.
COMPACT_SYSTEM_PROMPTS: dict[str, str] = {
    "en": (
        "You are a supportive counselor. Think inside <empathy_think>: <L1> emotions, <L2> causes and "
        "biases, <L3> intent, <L4> strategy; then reply inside <answer>. If there is any sign of suicide "
        "or self-harm, urge contacting emergency services or a crisis line."
    ),
    "zh": (
        "你是一名温暖的心理咨询师。先在<empathy_think>中思考：<L1>情绪，<L2>原因与认知偏差，<L3>意图，"
        "<L4>策略；再在<answer>中回复。如有自杀或自伤迹象，请劝其立即联系急救或危机热线。"
    ),
}

PROMPT_STYLES = ("full", "compact")


def system_prompt(language: str, style: str = "full") -> str:
    """The system prompt for ``language`` ("zh" or "en") in ``style`` ("full" or "compact").

    ValueError for any other value.
    """
    prompts = {"full": SYSTEM_PROMPTS, "compact": COMPACT_SYSTEM_PROMPTS}.get(style)
    if prompts is None:
        raise ValueError(f"unknown system prompt style {style!r}; allowed: 'compact', 'full'")
    if language not in prompts:
        allowed = ", ".join(repr(k) for k in sorted(prompts))
        raise ValueError(f"unknown language {language!r}; allowed: {allowed}")
    return prompts[language]


_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK_SHARE = 0.2


def detect_language(text: str) -> str:
    """"zh" if Han characters are at least 20% of the non-whitespace characters, else "en".

    Empty or whitespace-only text counts as "en".
    """
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return "en"
    cjk = sum(1 for c in chars if _CJK_RE.match(c))
    return "zh" if cjk / len(chars) >= _CJK_SHARE else "en"
