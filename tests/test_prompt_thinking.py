"""Qwen3's chat template opens a `<think>` block unless `enable_thinking=False` is passed. Our model
reasons inside `<empathy_think>`, so the prompt builder must pass the flag from
`rollout.enable_thinking` (default off). The template here mimics Qwen3's branch on the flag."""

from __future__ import annotations

import pytest

from empathy_rl import coe
from empathy_rl.config import load_config
from empathy_rl.data.seed_posts import load_seed_posts
from empathy_rl.tiny_model import train_tokenizer
from rollout.prompts import PromptBuilder

# Like Qwen3's: thinking unless the caller passes enable_thinking=false, in which case an empty
# think block is closed right away; here a model that may think gets an open "<think>\n".
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}"
    "{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    posts = load_seed_posts()
    tok = train_tokenizer([*coe.SYSTEM_PROMPTS.values(), *(p["description"] for p in posts)], vocab_size=600)
    tok.chat_template = THINKING_TEMPLATE
    return tok


def _text(builder: PromptBuilder, tokenizer) -> str:
    return tokenizer.decode(builder.render("en", "I cannot sleep before exams."))


def test_default_prompt_leaves_no_open_think_block(tokenizer):
    cfg = load_config("configs/tiny-cpu.yaml", ["model.path=x"])
    assert cfg.rollout.enable_thinking is False
    text = _text(PromptBuilder(tokenizer, 10_000, enable_thinking=cfg.rollout.enable_thinking), tokenizer)
    assert text.rstrip().endswith("</think>"), text[-80:]  # the template closed the think block
    assert text.count("<think>") == text.count("</think>") == 1  # nothing left open for the model to fill


def test_enable_thinking_true_reaches_the_template(tokenizer):
    cfg = load_config("configs/tiny-cpu.yaml", ["model.path=x", "rollout.enable_thinking=true"])
    text = _text(PromptBuilder(tokenizer, 10_000, enable_thinking=cfg.rollout.enable_thinking), tokenizer)
    assert text.rstrip().endswith("<think>") and "</think>" not in text
