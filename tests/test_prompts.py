"""Tests for `rollout.prompts.PromptBuilder` with a small tokenizer trained in-process (no model files)."""

from __future__ import annotations

import pytest

from empathy_rl import coe
from empathy_rl.data.seed_posts import load_seed_posts
from empathy_rl.data import CounselingRecord
from empathy_rl.tiny_model import EOS_TOKEN, train_tokenizer
from rollout.prompts import PromptBuilder

GEN_PROMPT = "<|im_start|>assistant\n"
EN_QUERY = "Too much overtime\nI work until eleven every night and I am afraid to say no to my manager."
ZH_QUERY = "加班太多，快撑不住了\n最近项目一个接一个，我几乎每天都加班到十一点，周末也要回消息。"
LONG_EN = "I keep lying awake thinking about my exams and my family. " * 40
LONG_ZH = "我最近很难过，觉得身边没有人能理解我，每天晚上都睡不着。" * 30


@pytest.fixture(scope="module")
def tokenizer():
    posts = load_seed_posts()
    texts = [*coe.SYSTEM_PROMPTS.values(), *(p["title"] for p in posts), *(p["description"] for p in posts)]
    return train_tokenizer(texts, vocab_size=800)


@pytest.fixture(scope="module")
def overhead(tokenizer) -> dict[str, int]:
    """Tokens of the system prompt + chat template with an empty query, per language."""
    builder = PromptBuilder(tokenizer, 10_000)
    return {lang: len(builder.render(lang, "")) for lang in ("en", "zh")}


def record(query: str, language: str = "en", rid: str = "r0", crisis: bool = False) -> CounselingRecord:
    return CounselingRecord(
        id=rid, source="test", language=language, title="", description=query, query=query, crisis=crisis
    )


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _text(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language, query", [("en", EN_QUERY), ("zh", ZH_QUERY)], ids=["en", "zh"])
def test_prompt_renders_system_prompt_in_record_language(tokenizer, language: str, query: str) -> None:
    builder = PromptBuilder(tokenizer, 1024)
    prompt = builder.build(5, record(query, language, rid="abc", crisis=True))
    assert prompt is not None
    text = _text(tokenizer, prompt.token_ids)
    assert text == (
        f"<|im_start|>system\n{coe.SYSTEM_PROMPTS[language]}{EOS_TOKEN}\n"
        f"<|im_start|>user\n{query}{EOS_TOKEN}\n{GEN_PROMPT}"
    )
    other = "zh" if language == "en" else "en"
    assert coe.SYSTEM_PROMPTS[other] not in text
    assert text.endswith(GEN_PROMPT)
    gen_ids = _ids(tokenizer, GEN_PROMPT)
    assert list(prompt.token_ids[-len(gen_ids):]) == gen_ids
    assert (prompt.uid, prompt.record_id, prompt.language, prompt.query) == (5, "abc", language, query)
    assert prompt.crisis is True
    assert prompt.truncated is False
    assert isinstance(prompt.token_ids, tuple)
    assert builder.counts == {"built": 1}


@pytest.mark.parametrize("forced, record_language", [("en", "zh"), ("zh", "en")])
def test_system_prompt_language_override(tokenizer, forced: str, record_language: str) -> None:
    builder = PromptBuilder(tokenizer, 1024, language=forced)
    prompt = builder.build(0, record(ZH_QUERY if record_language == "zh" else EN_QUERY, record_language))
    assert prompt is not None
    assert prompt.language == forced
    assert coe.SYSTEM_PROMPTS[forced] in _text(tokenizer, prompt.token_ids)


def test_invalid_overlong_policy(tokenizer) -> None:
    with pytest.raises(ValueError, match="rollout.overlong_prompt"):
        PromptBuilder(tokenizer, 512, overlong="wrap")


# --------------------------------------------------------------------------------------------
# Over-long prompts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language, query", [("en", LONG_EN), ("zh", LONG_ZH)], ids=["en", "zh"])
@pytest.mark.parametrize("room", [1, 17, 60])
def test_overlong_query_is_truncated(tokenizer, overhead, language: str, query: str, room: int) -> None:
    max_len = overhead[language] + room
    builder = PromptBuilder(tokenizer, max_len)
    full = len(builder.render(language, query))
    assert full > max_len  # the test really exercises truncation
    prompt = builder.build(0, record(query, language))
    assert prompt is not None
    assert len(prompt.token_ids) <= max_len
    assert len(prompt.token_ids) > overhead[language]  # some of the query survived
    assert prompt.truncated is True
    assert builder.counts["truncated"] == 1
    assert builder.counts["built"] == 1
    text = _text(tokenizer, prompt.token_ids)
    assert text.endswith(GEN_PROMPT)
    assert coe.SYSTEM_PROMPTS[language] in text  # instructions intact
    kept = text.split("<|im_start|>user\n", 1)[1].split(EOS_TOKEN, 1)[0]
    assert kept and query.startswith(kept)  # the beginning of the query is kept
    assert prompt.query == query  # the reward still sees the whole query


def test_prompt_that_fits_exactly_is_not_truncated(tokenizer) -> None:
    full = len(PromptBuilder(tokenizer, 10_000).render("en", EN_QUERY))
    builder = PromptBuilder(tokenizer, full)
    prompt = builder.build(0, record(EN_QUERY))
    assert prompt is not None and not prompt.truncated
    assert len(prompt.token_ids) == full
    assert "truncated" not in builder.counts
    shorter = PromptBuilder(tokenizer, full - 1).build(0, record(EN_QUERY))
    assert shorter is not None and shorter.truncated and len(shorter.token_ids) <= full - 1


def test_truncation_counts_accumulate(tokenizer, overhead) -> None:
    builder = PromptBuilder(tokenizer, overhead["en"] + 20)
    for i in range(3):
        builder.build(i, record(LONG_EN))
    builder.build(3, record("short"))
    assert builder.counts == {"built": 4, "truncated": 3}


def test_drop_policy(tokenizer, overhead) -> None:
    builder = PromptBuilder(tokenizer, overhead["en"] + 20, overlong="drop")
    assert builder.build(0, record(LONG_EN)) is None
    assert builder.build(1, record(LONG_ZH, "zh")) is None
    assert builder.counts == {"dropped": 2}
    kept = builder.build(2, record("I feel a bit low."))
    assert kept is not None and not kept.truncated
    assert builder.counts == {"dropped": 2, "built": 1}


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("max_len", [1, 50, "overhead"])
def test_max_prompt_len_too_small_for_system_prompt(tokenizer, overhead, language: str, max_len) -> None:
    limit = overhead[language] - 1 if max_len == "overhead" else max_len
    builder = PromptBuilder(tokenizer, limit)
    with pytest.raises(ValueError, match="model.max_prompt_len"):
        builder.build(0, record(LONG_EN if language == "en" else LONG_ZH, language))


# --------------------------------------------------------------------------------------------
# build_many
# --------------------------------------------------------------------------------------------


def test_build_many_consecutive_uids_over_kept(tokenizer, overhead) -> None:
    builder = PromptBuilder(tokenizer, overhead["en"] + 40, overlong="drop")
    records = [
        record("first", rid="a"),
        record(LONG_EN, rid="b"),
        record("第二个", "zh", rid="c"),
        record(LONG_EN, rid="d"),
        record(LONG_EN, rid="e"),
        record("third", rid="f"),
    ]
    prompts = builder.build_many(records)
    assert [p.uid for p in prompts] == [0, 1, 2]
    assert [p.record_id for p in prompts] == ["a", "c", "f"]
    assert [p.language for p in prompts] == ["en", "zh", "en"]
    assert builder.counts == {"built": 3, "dropped": 3}


def test_build_many_truncate_keeps_all(tokenizer, overhead) -> None:
    builder = PromptBuilder(tokenizer, overhead["en"] + 40)
    prompts = builder.build_many([record("first", rid="a"), record(LONG_EN, rid="b"), record("x", rid="c")])
    assert [(p.uid, p.record_id, p.truncated) for p in prompts] == [(0, "a", False), (1, "b", True), (2, "c", False)]
    assert builder.build_many([]) == []


# --------------------------------------------------------------------------------------------
# Tokenizer: CoE tags are single tokens
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", coe.ALL_TAGS)
def test_coe_tag_is_a_single_token(tokenizer, tag: str) -> None:
    ids = _ids(tokenizer, tag)
    assert len(ids) == 1
    assert tokenizer.convert_ids_to_tokens(ids[0]) == tag


def test_coe_tags_survive_encoding_and_skip_special_decoding(tokenizer) -> None:
    text = coe.render_coe(["sad", "lonely", "wants comfort", "listen"], "I am here with you.")
    ids = _ids(tokenizer, text)
    tag_ids = {tokenizer.convert_tokens_to_ids(tag) for tag in coe.ALL_TAGS}
    assert len(tag_ids) == len(coe.ALL_TAGS)
    assert sum(i in tag_ids for i in ids) == len(coe.ALL_TAGS)
    decoded = tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True)
    assert decoded == text  # tags kept, EOS dropped
    assert coe.parse_coe(decoded).ok


# --------------------------------------------------------------------------------------------
# SFT rows go through the same truncation
# --------------------------------------------------------------------------------------------


def test_sft_examples_keep_the_assistant_header_when_cut(tokenizer, overhead) -> None:
    """An over-long SFT query is cut inside the user turn (not at the end of the prompt, which
    would drop the assistant header the model must learn to answer after)."""
    from empathy_rl.coe_data import CoERecord, Review
    from empathy_rl.sft_data import encode_records

    records = [CoERecord("r0", "en", LONG_EN, ("a", "b", "c", "d"), "ok", review=Review(status="accepted"))]
    max_len = overhead["en"] + 20
    builder = PromptBuilder(tokenizer, max_len)
    [example], counts = encode_records(records, builder, tokenizer, max_response_len=64, max_len=10_000)
    prompt, response = list(example.prompt), list(example.response)
    assert len(prompt) <= max_len and _text(tokenizer, prompt).endswith(GEN_PROMPT)
    assert builder.counts["truncated"] == 1 and counts["kept"] == 1
    assert response[-1] == tokenizer.eos_token_id
    assert coe.parse_coe(tokenizer.decode(response[:-1])).ok
    dropped, counts = encode_records(records, PromptBuilder(tokenizer, max_len, overlong="drop"), tokenizer, 64, 10_000)
    assert dropped == [] and counts["prompt_dropped"] == 1
