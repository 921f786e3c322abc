"""Build a tiny Qwen3 policy and its tokenizer offline, deterministically from a seed.

Nothing here touches a model hub: the tokenizer is a byte-level BPE trained locally on counseling
text (the shared data when present, plus our bundled posts, CoE SFT examples and system
prompts), with the CoE tags as single added tokens and a ChatML chat template; the model is a
randomly initialised `Qwen3ForCausalLM` built from a config. Tests and the demo use it so that the
whole stack (transformers, vLLM, DeepSpeed) runs on a 2-core CPU with the same code as Qwen3-8B.

vLLM's CPU attention supports head sizes 32..512 only, so `head_dim` stays >= 32 even though the
hidden size is 64.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch

from empathy_rl import coe

log = logging.getLogger(__name__)

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = (PAD_TOKEN, "<|im_start|>", EOS_TOKEN)

# ChatML, as Qwen uses it: the model learns "<|im_start|>assistant\n ... <|im_end|>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Size of the tiny model. The defaults train to a usable CoE format in about a minute on CPU."""

    vocab_size: int = 6000  # BPE vocabulary before special/added tokens
    hidden_size: int = 64
    intermediate_size: int = 192
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32  # >= 32 for vLLM's CPU attention
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = True
    corpus_chars: int = 3_000_000  # cap on tokenizer training text, for speed and determinism
    bundled_repeats: int = 20  # times the bundled text enters the tokenizer corpus (see tokenizer_corpus)


def default_shared_data_dir() -> Optional[Path]:
    """`../shared/data` beside the repository checkout, if present."""
    candidate = Path(__file__).resolve().parents[2] / "shared" / "data"
    return candidate if candidate.is_dir() else None


def _shared_texts(shared: Path) -> Iterator[str]:
    chat = shared / "counsel-chat" / "20200325_counsel_chat.csv"
    if chat.is_file():
        with chat.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                for key in ("questionTitle", "questionText", "answerText"):
                    if row.get(key):
                        yield row[key]
    for name in ("cpsycoun/cpsycound_dialogues.jsonl", "cpsycoun/cpsycoune_eval.jsonl"):
        path = shared / name
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    for turn in json.loads(line).get("turns", []):
                        yield turn.get("text", "")


def _bundled_texts() -> Iterator[str]:
    from empathy_rl.coe_data import accepted_records, bundled_path
    from empathy_rl.data.seed_posts import load_seed_posts

    yield from coe.SYSTEM_PROMPTS.values()
    yield from coe.COMPACT_SYSTEM_PROMPTS.values()
    for post in load_seed_posts():
        yield post.get("title", "")
        yield post.get("description", "")
        yield from post.get("answers", [])
    for record in accepted_records([bundled_path()]):  # the bundled CoE SFT examples
        yield record.query
        yield record.response()


def tokenizer_corpus(shared_data: Optional[Path], max_chars: int, bundled_repeats: int = 1) -> list[str]:
    """Training text for the tokenizer: bundled text always, then shared data up to `max_chars`.

    Bundled text comes first and is never cut, so the CoE vocabulary is learned even on a machine
    without `../shared`. It enters `bundled_repeats` times (fewer if that would pass `max_chars`,
    but at least once): BPE merges by frequency, so repeating the demo's own text (system prompts,
    seed posts, CoE examples) gives its words single tokens. Measured with 20 repeats against 1:
    prompts 16-25% and CoE responses 20% fewer tokens, so every stage on the tiny model runs on
    fewer tokens and SFT samples fewer tokens that can go wrong (docs/benchmarks.md, "SFT cold
    start"). Shared text is shuffled deterministically and fills the rest of the budget.
    """
    bundled = [t for t in _bundled_texts() if t]
    size = sum(map(len, bundled))
    texts = bundled * max(1, min(bundled_repeats, max_chars // max(size, 1)))  # repeats within the budget, at least once
    budget = max_chars - sum(map(len, texts))
    if shared_data is not None and budget > 0:
        extra = [t for t in _shared_texts(shared_data) if t]
        random.Random(0).shuffle(extra)
        for text in extra:
            if budget <= 0:
                break
            texts.append(text[:budget])
            budget -= len(text)
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE with ChatML special tokens and the CoE tags as single (non-special) tokens.

    The tags are added tokens but not *special* ones: vLLM and `decode(skip_special_tokens=True)`
    keep them in the text, which the format reward must see.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(tag, normalized=False, special=False) for tag in coe.ALL_TAGS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=["<|im_start|>"],
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    spec: TinyModelSpec = TinyModelSpec(),
    shared_data: Optional[Path] = None,
    use_shared_data: bool = True,
) -> Path:
    """Write a tiny Qwen3 checkpoint (model, tokenizer, chat template, generation config) to `out_dir`.

    The same seed, spec and corpus give the same files. The directory is assembled in a temporary
    sibling and moved into place at the end, so a failure never leaves a half-written model.
    """
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    if use_shared_data and shared_data is None:
        shared_data = default_shared_data_dir()
    texts = tokenizer_corpus(shared_data if use_shared_data else None, spec.corpus_chars, spec.bundled_repeats)
    log.info("training tokenizer on %d texts (%d chars)", len(texts), sum(map(len, texts)))
    tokenizer = train_tokenizer(texts, spec.vocab_size)

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny model: %d parameters, vocab %d -> %s", n_params, len(tokenizer), out_dir)
    return out_dir
