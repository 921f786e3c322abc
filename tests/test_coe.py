"""Tests for the Chain-of-Empathy format: strict parser, format reward, renderer, prompts."""

from __future__ import annotations

import random

import pytest

from empathy_rl.coe import (
    ALL_TAGS,
    ANSWER_CLOSE,
    ANSWER_OPEN,
    LAYER_NAMES,
    LAYER_TAGS,
    SYSTEM_PROMPTS,
    THINK_CLOSE,
    THINK_OPEN,
    CoEParse,
    detect_language,
    extract_answer,
    format_reward,
    parse_coe,
    render_coe,
    system_prompt,
)

EN_LAYERS = (
    "Sadness and loneliness after moving to a new city.",
    "Lost her support network; may be overgeneralizing ('nobody will ever like me').",
    "Wants understanding more than advice.",
    "Active listening; NURSE: name the loneliness, respect the effort.",
)
EN_ANSWER = "Moving somewhere new and feeling alone is really hard. It makes sense you feel this way."
ZH_LAYERS = (
    "焦虑、自责",
    "考试失利，可能存在“全或无”思维",
    "希望被理解和认可",
    "积极倾听，命名情绪并给予支持",
)
ZH_ANSWER = "考试没考好让你很难受，这种失落是可以理解的。"

EN = render_coe(EN_LAYERS, EN_ANSWER)
ZH = render_coe(ZH_LAYERS, ZH_ANSWER)


def _compact(layers: tuple[str, ...], answer: str) -> str:
    """A well-formed output on one line, without any whitespace between tags."""
    blocks = "".join(f"<{n}>{t}</{n}>" for n, t in zip(LAYER_TAGS, layers))
    return f"{THINK_OPEN}{blocks}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


ZH_COMPACT = _compact(ZH_LAYERS, ZH_ANSWER)
EN_MINI = _compact(("a", "b", "c", "d"), "e")
ZH_MINI = _compact(("甲", "乙", "丙", "丁"), "戊")


def _without_block(text: str, name: str) -> str:
    """Remove the whole <name>...</name> block."""
    start, end = text.index(f"<{name}>"), text.index(f"</{name}>") + len(f"</{name}>")
    return text[:start] + text[end:]


def _swap_layers(text: str, a: str, b: str) -> str:
    """Exchange the whole <a>...</a> and <b>...</b> blocks."""

    def block(name: str) -> str:
        return text[text.index(f"<{name}>") : text.index(f"</{name}>") + len(f"</{name}>")]

    first, second = block(a), block(b)
    return text.replace(first, "\0").replace(second, first).replace("\0", second)


def _tag_id(tag: str) -> str:
    """A pytest-id-friendly tag name: "</L1>" -> "close_L1"."""
    return tag.replace("</", "close_").strip("<>")


# (id, text, expected reward, expected error code or None to skip the code check)
CASES = [
    # Well-formed.
    ("en_canonical", EN, 1.0, "ok"),
    ("zh_canonical", ZH, 1.0, "ok"),
    ("zh_compact_one_line", ZH_COMPACT, 1.0, "ok"),
    ("en_crlf", EN.replace("\n", "\r\n"), 1.0, "ok"),
    ("zh_bare_cr", ZH.replace("\n", "\r"), 1.0, "ok"),
    ("en_leading_trailing_ws", "\n\n  \t" + EN + "\n \n", 1.0, "ok"),
    ("zh_ideographic_spaces", ZH_COMPACT.replace("><", ">\u3000<"), 1.0, "ok"),
    ("en_multiline_layer_text", EN.replace("Wants understanding", "Wants\n\nunderstanding"), 1.0, "ok"),
    ("en_trailing_im_end", EN + "<|im_end|>", 1.0, "ok"),
    ("zh_trailing_eos_markers_ws", ZH + "\n<|im_end|><|endoftext|>\n", 1.0, "ok"),
    ("zh_fullwidth_brackets_inside_text", ZH.replace("焦虑", "＜焦虑＞"), 1.0, "ok"),
    # Missing tags.
    *[(f"en_missing_{_tag_id(t)}", EN.replace(t, "", 1), 0.0, "missing_tag") for t in ALL_TAGS[:-1]],
    ("zh_unclosed_answer_first", "<answer>戊" + ZH_MINI.split("<answer>")[0], 0.0, "missing_tag"),
    ("zh_missing_L3_block", _without_block(ZH, "L3"), 0.0, "missing_tag"),
    ("en_no_think_wrapper", EN.replace(THINK_OPEN, "").replace(THINK_CLOSE, ""), 0.0, "missing_tag"),
    ("en_plain_text", "I'm so sorry you're going through this.", 0.0, "missing_tag"),
    ("zh_plain_text", "听起来你最近压力很大。", 0.0, "missing_tag"),
    ("zh_fullwidth_bracket_tag", ZH.replace("<L2>", "＜L2＞"), 0.0, "missing_tag"),
    ("en_angle_bracket_tag", EN.replace("</L4>", "〈/L4〉"), 0.0, "missing_tag"),
    ("en_uppercase_tag", EN.replace("<answer>", "<ANSWER>"), 0.0, "missing_tag"),
    ("en_tag_with_attribute", EN.replace("<L1>", '<L1 type="emotion">'), 0.0, "missing_tag"),
    ("en_space_inside_tag", EN.replace("<L4>", "< L4>"), 0.0, "missing_tag"),
    # Duplicates.
    ("en_duplicated_answer", EN + "\n<answer>Take care.</answer>", 0.0, "duplicate_tag"),
    ("zh_duplicated_layer", ZH.replace("</L2>", "</L2>\n<L2>再想一次</L2>"), 0.0, "duplicate_tag"),
    ("zh_duplicated_whole_output", ZH + "\n" + ZH, 0.0, "duplicate_tag"),
    # Order and nesting.
    ("en_L2_before_L1", _swap_layers(EN, "L1", "L2"), 0.0, "misordered"),
    ("zh_L4_before_L3", _swap_layers(ZH, "L3", "L4"), 0.0, "misordered"),
    ("en_answer_before_think", "<answer>e</answer>" + EN_MINI.split("<answer>")[0], 0.0, "misordered"),
    (
        "zh_L4_outside_think",
        ZH_MINI.replace("<L4>丁</L4></empathy_think>", "</empathy_think><L4>丁</L4>"),
        0.0,
        "misordered",
    ),
    ("en_close_before_open", EN_MINI.replace("<L3>c</L3>", "</L3>c<L3>"), 0.0, "misordered"),
    ("en_nested_L2_in_L1", EN_MINI.replace("a</L1><L2>b</L2>", "a<L2>b</L2></L1>"), 0.0, "nested"),
    ("zh_answer_inside_L4", ZH_MINI.replace("</L4></empathy_think>", "") + "</L4></empathy_think>", 0.0, "nested"),
    ("zh_answer_inside_think", ZH_MINI.replace("</empathy_think>", "") + "</empathy_think>", 0.0, "misordered"),
    # Empty blocks.
    ("en_empty_layer", EN.replace(EN_LAYERS[3], ""), 0.0, "empty_layer"),
    ("zh_whitespace_layer", ZH.replace(ZH_LAYERS[0], " \n\u3000"), 0.0, "empty_layer"),
    ("en_whitespace_only_answer", EN.replace(EN_ANSWER, "  \n\t"), 0.0, "empty_answer"),
    ("zh_empty_answer", ZH.replace(ZH_ANSWER, ""), 0.0, "empty_answer"),
    # Text outside the tags.
    ("en_text_before", "Sure! Here is my reply:\n" + EN, 0.0, "outside_text"),
    ("zh_text_after", ZH + "\n希望对你有帮助。", 0.0, "outside_text"),
    ("en_text_between_layers", EN.replace("</L2>\n<L3>", "</L2>\nthinking...\n<L3>"), 0.0, "outside_text"),
    ("zh_text_between_think_and_answer", ZH.replace("<answer>", "回复：<answer>"), 0.0, "outside_text"),
    ("en_eos_marker_in_middle", EN.replace(THINK_CLOSE, THINK_CLOSE + "<|im_end|>"), 0.0, "outside_text"),
    ("en_text_after_eos_marker", EN + "<|im_end|>extra", 0.0, "outside_text"),
    # Truncation.
    ("en_cut_mid_layer", EN[: EN.index(EN_LAYERS[2]) + 10], 0.0, "truncated"),
    ("zh_cut_mid_answer", ZH[: ZH.index(ZH_ANSWER) + 5], 0.0, "truncated"),
    ("en_cut_inside_closing_tag", EN[: EN.index("</L4>") + 3], 0.0, "truncated"),
    ("zh_cut_after_answer_open", ZH[: ZH.index(ANSWER_OPEN) + len(ANSWER_OPEN)], 0.0, "truncated"),
    ("en_cut_after_think", EN[: EN.index(ANSWER_OPEN)], 0.0, "missing_tag"),
    # Empty input.
    ("empty_string", "", 0.0, "empty"),
    ("whitespace_only", " \n\u3000\t", 0.0, "empty"),
    ("only_eos_marker", "<|im_end|>", 0.0, "empty"),
]


@pytest.mark.parametrize(("text", "reward", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_and_format_reward(text: str, reward: float, code: str | None) -> None:
    parsed = parse_coe(text)
    assert format_reward(text) == reward
    assert parsed.ok == (reward == 1.0)
    assert len(parsed.layers) == 4
    assert bool(parsed.errors) == (not parsed.ok)
    assert len(parsed.codes) == len(parsed.errors)
    if code is not None:
        assert parsed.error_code == code, parsed.errors


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_well_formed_fields_are_stripped() -> None:
    parsed = parse_coe("\u3000" + ZH_COMPACT.replace("<L1>", "<L1>\n  ").replace("</answer>", " \n</answer>"))
    assert parsed == CoEParse(ok=True, layers=ZH_LAYERS, answer=ZH_ANSWER, errors=(), codes=())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (EN.replace("<L3>", ""), "missing <L3>"),
        (EN + "<answer>again</answer>", "duplicated <answer>"),
        (_swap_layers(EN, "L1", "L2"), "<L2> before <L1>"),
        (EN.replace(EN_LAYERS[3], ""), "empty <L4>"),
        (EN[: EN.index(EN_ANSWER) + 4], "unclosed <answer> (output cut off?)"),
        (EN.replace("</L1>\n<L2>", "\n<L2>").replace("</L2>", "</L2></L1>"), "nested tag <L2> inside <L1>"),
        ("Hello there! " + EN, "text outside tags: 'Hello there!'"),
        ("A very long preamble before the tags. " + EN, "text outside tags: 'A very long preamble...'"),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    assert parse_coe(text).errors[0] == message


def test_best_effort_fields_on_failure() -> None:
    parsed = parse_coe("Intro. " + EN)
    assert not parsed.ok
    assert parsed.layers == EN_LAYERS
    assert parsed.answer == EN_ANSWER
    cut = parse_coe(EN[: EN.index("<L3>")])
    assert cut.layers == (EN_LAYERS[0], EN_LAYERS[1], "", "")
    assert cut.answer == ""


def test_constants() -> None:
    assert ALL_TAGS == (
        "<empathy_think>", "<L1>", "</L1>", "<L2>", "</L2>", "<L3>", "</L3>", "<L4>", "</L4>",
        "</empathy_think>", "<answer>", "</answer>",
    )
    assert set(LAYER_NAMES) == set(LAYER_TAGS)
    assert "appraisal" in LAYER_NAMES["L1"] and "bias" in LAYER_NAMES["L2"]


@pytest.mark.parametrize(
    ("layers", "answer"), [(EN_LAYERS, EN_ANSWER), (ZH_LAYERS, ZH_ANSWER)], ids=["en", "zh"]
)
def test_render_round_trip(layers: tuple[str, ...], answer: str) -> None:
    text = render_coe(layers, answer)
    parsed = parse_coe(text)
    assert parsed.ok and parsed.layers == layers and parsed.answer == answer
    assert text.splitlines()[0] == THINK_OPEN and text.splitlines()[-1].startswith(ANSWER_OPEN)
    assert len(text.splitlines()) == 7 and not text.endswith("\n")


def test_render_strips_and_normalizes() -> None:
    text = render_coe(["  a\r\nb ", "b", "c", "d"], "\tanswer\n")
    assert parse_coe(text).layers == ("a\nb", "b", "c", "d")
    assert extract_answer(text) == "answer"


@pytest.mark.parametrize(
    ("layers", "answer", "match"),
    [
        (EN_LAYERS[:3], EN_ANSWER, "4 layers"),
        ((*EN_LAYERS, "extra"), EN_ANSWER, "4 layers"),
        ("abcd", EN_ANSWER, "4 layers"),
        (("a", " \n", "c", "d"), EN_ANSWER, "layer L2 is empty"),
        (("a", "b", "c", "d"), "\u3000", "answer is empty"),
        (("a", "b", "see <L1> here", "d"), EN_ANSWER, "layer L3 contains the CoE tag <L1>"),
        (("a", "b", "c", "d"), "ok</answer>", "answer contains"),
        (("a", "b", "c", None), EN_ANSWER, "layer L4 must be a string"),
    ],
)
def test_render_errors(layers, answer, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_coe(layers, answer)


def test_extract_answer() -> None:
    assert extract_answer(EN) == EN_ANSWER
    assert extract_answer(ZH + "<|im_end|>") == ZH_ANSWER
    assert extract_answer("Preface " + ZH) is None
    assert extract_answer(ZH[:-3]) is None
    assert extract_answer("") is None


@pytest.mark.parametrize("language", ["en", "zh"])
def test_system_prompt(language: str) -> None:
    prompt = system_prompt(language)
    assert prompt == SYSTEM_PROMPTS[language]
    for tag in ALL_TAGS:
        assert tag in prompt
    assert "NURSE" in prompt
    assert len(prompt) <= (700 if language == "en" else 300)
    assert detect_language(prompt) == language


def test_system_prompt_safety_content() -> None:
    assert "suicide" in SYSTEM_PROMPTS["en"] and "crisis line" in SYSTEM_PROMPTS["en"]
    assert "自杀" in SYSTEM_PROMPTS["zh"] and "危机热线" in SYSTEM_PROMPTS["zh"]


def test_system_prompt_unknown_language() -> None:
    with pytest.raises(ValueError, match="'en', 'zh'"):
        system_prompt("fr")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I feel anxious all the time.", "en"),
        ("我最近总是很焦虑。", "zh"),
        ("我今天用Python写了一个script", "zh"),
        ("I love 中 food very much indeed", "en"),
        ("", "en"),
        ("  \u3000 ", "en"),
        (ZH, "zh"),
        (EN, "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


FUZZ_PIECES = [
    *ALL_TAGS, "<|im_end|>", "<|endoftext|>", "＜L1＞", "<L5>", "</", "<", ">", "L1", "answer",
    "\n", "\r\n", "\r", " ", "\u3000", "\t", "hi", "难过", "\0", "\ud800", "<<L1>>", "<L1 x>",
]


def _fuzz_text(rng: random.Random) -> str:
    """Either random tag soup, or a well-formed output with a few random edits (often still ok)."""
    if rng.random() < 0.5:
        return "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(0, 30)))
    parts = []
    for tag in ALL_TAGS:
        holds_text = tag[1:-1] in (*LAYER_TAGS, "answer")
        parts += [tag, rng.choice(["hi", "难过", " x \n y "] if holds_text else ["", "\n", "\u3000"])]
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        index = rng.randrange(len(parts))
        if rng.random() < 0.5:
            del parts[index]
        else:
            parts.insert(index, rng.choice(FUZZ_PIECES))
    return "".join(parts)


def test_fuzz_never_raises() -> None:
    rng = random.Random(1234)
    well_formed = 0
    for _ in range(3000):
        text = _fuzz_text(rng)
        parsed = parse_coe(text)
        assert format_reward(text) in (0.0, 1.0)
        assert isinstance(parsed.error_code, str) and len(parsed.layers) == 4
        assert parsed.ok == (parsed.error_code == "ok")
        if parsed.ok:
            well_formed += 1
            assert parse_coe(render_coe(parsed.layers, parsed.answer)) == parsed
    assert 0 < well_formed < 3000


def test_strip_tags_removes_every_tag_and_collapses_space():
    from empathy_rl.coe import strip_tags

    assert strip_tags("<empathy_think>\n<L1>sad</L1></empathy_think>  <answer>hi  there</answer>") == "sad hi there"
    assert strip_tags("<L5>x</L5> <answer") == "<L5>x</L5> <answer"  # not CoE tags: kept
