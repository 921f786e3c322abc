"""`empathy-rl make-tiny-model`: deterministic, offline, loadable by transformers (vLLM: test_grpo_loop)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from empathy_rl import coe
from empathy_rl.tiny_model import TinyModelSpec, build_tiny_model

SMALL = TinyModelSpec(vocab_size=1200, corpus_chars=200_000)


def _digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def test_same_seed_same_files_other_seed_other_weights(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3, spec=SMALL)
    b = build_tiny_model(tmp_path / "b", seed=3, spec=SMALL)
    c = build_tiny_model(tmp_path / "c", seed=4, spec=SMALL)
    assert _digest(a) == _digest(b)
    assert _digest(a)["tokenizer.json"] == _digest(c)["tokenizer.json"]
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]


def test_loads_offline_with_auto_classes(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["head_dim"] >= 32  # vLLM CPU attention
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    for tag in coe.ALL_TAGS:  # one token each, kept when special tokens are skipped
        ids = tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.decode(ids, skip_special_tokens=True) == tag
    text = tok.apply_chat_template(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "我很难过"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\n我很难过<|im_end|>\n<|im_start|>assistant\n"
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]
    assert model.config.tie_word_embeddings and model.config.vocab_size == len(tok)


def test_failure_leaves_no_partial_directory(tmp_path, monkeypatch):
    import transformers

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", broken)
    with pytest.raises(OSError):
        build_tiny_model(tmp_path / "m", seed=0, spec=SMALL)
    assert list(tmp_path.iterdir()) == []
