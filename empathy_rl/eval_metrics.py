"""Reference-based text metrics of the Empathy-R1 paper: BLEU-1..4, ROUGE-L, METEOR, Distinct-1/2.

Pure (no Ray, no model): the `eval` command, the driver's optional evaluation hook and the tests
all call this module, so a number means the same wherever it is printed.

Why these implementations:
- BLEU is sacrebleu's (`tokenize="none"` on our tokens joined by spaces, its default `exp`
  smoothing). Per-answer statistics (matched / total n-grams, hypothesis length, closest reference
  length) come from `BLEU.sentence_score`, and the corpus score from the summed statistics with the
  public `BLEU.compute_bleu`, which is what `corpus_score` does; summing per answer is what lets
  the bootstrap resample prompts without re-reading the texts. BLEU-n is the cumulative BLEU with
  uniform weights over 1..n-grams (`max_ngram_order=n`).
- ROUGE-L is rouge-score's `RougeScorer(["rougeL"]).score_multi` (F-measure, best reference),
  given our tokeniser so that Chinese is scored on characters instead of being dropped by its
  ASCII-only default tokeniser.
- METEOR is NLTK's `meteor_score` (best reference). Its synonym stage needs WordNet, which NLTK
  normally downloads; here it comes from Debian's `wordnet-base` when installed (see
  `wordnet_reader`), otherwise METEOR runs with exact + stem matching only, and every report
  says which. Chinese always runs exact + stem (WordNet is English; Porter stemming leaves
  characters unchanged).
- Distinct-n (Li et al., 2016) has no standard package; it is the number of distinct n-grams over
  the number of n-grams across all answers of a system, computed here.

Multi-reference: every record carries several counsellors' answers; BLEU takes all of them,
ROUGE-L and METEOR the best-matching one. Tokenisation: Chinese on characters (or jieba words with
`zh_tokenizer="jieba"`), English on lowercased words; `TOKENISATION` says exactly what, for reports.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "meteor", "distinct1", "distinct2")
METRIC_LABELS = {
    "bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L",
    "meteor": "METEOR", "distinct1": "Distinct-1", "distinct2": "Distinct-2",
}
ZH_TOKENIZERS = ("char", "jieba")

# A CJK ideograph (BMP blocks + extension A + compatibility), one token each in "char" mode.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_CHAR_RE = re.compile(rf"[{_CJK}]|[A-Za-z0-9]+")
_EN_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

TOKENISATION = {
    "zh:char": "Chinese: one token per CJK character, runs of Latin letters/digits as one token, punctuation dropped",
    "zh:jieba": "Chinese: jieba words (precise mode), punctuation and spaces dropped",
    "en": "English: lowercased words (regex [a-z0-9]+('[a-z]+)?), punctuation dropped",
}


class MetricsError(ValueError):
    """Bad input to the metrics (an unknown tokeniser or language); the message names it."""


def tokenize(text: str, language: str, zh_tokenizer: str = "char") -> list[str]:
    """Tokens the metrics count: Chinese characters (or jieba words), English lowercased words."""
    if language == "zh":
        if zh_tokenizer == "char":
            return _ZH_CHAR_RE.findall(text.lower())
        if zh_tokenizer == "jieba":
            return [w for w in _jieba().lcut(text.lower()) if _ZH_CHAR_RE.search(w)]
        raise MetricsError(f"eval.zh_tokenizer={zh_tokenizer!r} is not allowed; choose one of {', '.join(ZH_TOKENIZERS)}")
    if language == "en":
        return _EN_WORD_RE.findall(text.lower())
    raise MetricsError(f"language {language!r} has no tokeniser; use zh or en")


@functools.lru_cache(maxsize=1)
def _jieba():
    try:
        import jieba
    except ImportError as err:  # optional segmenter
        raise MetricsError("eval.zh_tokenizer=jieba needs the jieba package (pip install jieba)") from err
    jieba.setLogLevel(logging.WARNING)
    return jieba


def tokenisation_note(languages: Iterable[str], zh_tokenizer: str) -> dict[str, str]:
    """The tokenisation description per language, as stated in reports."""
    return {lang: TOKENISATION[f"zh:{zh_tokenizer}" if lang == "zh" else "en"] for lang in sorted(set(languages))}


# ---------------------------------------------------------------------------------- WordNet

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)); Debian's wordnet-base leaves the
# `lexnames` file out, and NLTK's reader needs it, so it is written next to a copy of the data.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object noun.person "
    "noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption "
    "verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative "
    "verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
DEBIAN_WORDNET = Path("/usr/share/wordnet")
_WORDNET_FILES = tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("adj", "adv", "noun", "verb")) + tuple(
    f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb")
)


@dataclass(frozen=True)
class MeteorSetup:
    """What METEOR matches with: the WordNet reader (None = exact + stem only) and where it came from."""

    wordnet: Any
    source: str

    @property
    def matching(self) -> str:
        return "exact + stem + WordNet synonyms" if self.wordnet is not None else "exact + stem only (no WordNet available)"


class _NoSynonyms:
    """A WordNet stand-in with no synsets: METEOR then matches exact words and stems only."""

    def synsets(self, word: str) -> list:
        return []


def _cache_root() -> Path:
    root = os.environ.get("EMPATHY_RL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "empathy-rl")
    return Path(root)


def _wordnet_from_debian(source: Path, cache: Path) -> Optional[Path]:
    """Copy Debian's WordNet 3.0 files into `cache/nltk_data/corpora/wordnet` with a `lexnames` file.

    A copy, not symlinks: NLTK's path sandbox resolves links and refuses files outside its data roots.
    """
    if not all((source / name).is_file() for name in _WORDNET_FILES):
        return None
    target = cache / "nltk_data" / "corpora" / "wordnet"
    if (target / "lexnames").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for name in _WORDNET_FILES:
            shutil.copyfile(source / name, staging / name)
        lines = [f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}" for i, name in enumerate(_LEXNAMES)]
        (staging / "lexnames").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not (target / "lexnames").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=4)
def meteor_setup(use_wordnet: bool = True, debian_dir: str = str(DEBIAN_WORDNET)) -> MeteorSetup:
    """NLTK's own WordNet if installed, else Debian's `wordnet-base` (copied once into the cache),
    else none (exact + stem matching). Never downloads anything."""
    if not use_wordnet:
        return MeteorSetup(None, "disabled (eval.meteor_wordnet=false)")
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        found = nltk.data.find("corpora/wordnet")
        root, source = Path(str(found)), f"NLTK data ({found})"
    except LookupError:
        try:
            copied = _wordnet_from_debian(Path(debian_dir), _cache_root())
        except OSError as err:
            log.warning("METEOR: could not copy WordNet from %s (%s); exact + stem matching only", debian_dir, err)
            copied = None
        if copied is None:
            return MeteorSetup(None, f"none (no NLTK wordnet corpus, no Debian wordnet-base in {debian_dir})")
        data_root = str(copied.parent.parent)
        if data_root not in nltk.data.path:
            nltk.data.path.append(data_root)  # NLTK's path sandbox only opens files under its data roots
        root, source = copied, f"WordNet 3.0 from Debian wordnet-base ({debian_dir})"
    class EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            """No mapping to other WordNet versions: that serves the multilingual (OMW) data, and
            needs `index.sense`, which wordnet-base leaves out; English synonyms need neither."""
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available": we use English only
        warnings.simplefilter("ignore", UserWarning)
        reader = EnglishWordNet(str(root), None)
    return MeteorSetup(reader, source)


# ---------------------------------------------------------------------------------- per answer


@dataclass
class SegmentStats:
    """Everything the corpus metrics need from one generated answer against its references."""

    bleu_correct: list[int]  # matched 1..4-grams (clipped by the references)
    bleu_total: list[int]  # 1..4-grams in the hypothesis
    sys_len: int  # hypothesis tokens
    ref_len: int  # length of the reference closest in length (BLEU's brevity penalty)
    rouge_l: float  # ROUGE-L F-measure against the best reference
    meteor: float  # METEOR against the best reference
    ngrams: dict[int, list[tuple[str, ...]]] = field(default_factory=dict)  # n -> this answer's n-grams (Distinct-n)


@functools.lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics.bleu import BLEU

    logging.getLogger("sacrebleu").setLevel(logging.ERROR)  # its sentence-level smoothing advice does not apply: we sum statistics
    return BLEU(tokenize="none", force=True, max_ngram_order=4)


class _Tokens:
    """rouge-score tokeniser for text that is already tokens joined by single spaces."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


@functools.lru_cache(maxsize=1)
def _rouge():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], tokenizer=_Tokens())


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def segment_stats(
    hypothesis: str, references: Sequence[str], language: str, zh_tokenizer: str = "char", meteor: Optional[MeteorSetup] = None
) -> SegmentStats:
    """Score one answer against the counsellors' answers to the same question."""
    from nltk.translate.meteor_score import meteor_score

    refs = [r for r in references if r.strip()]
    if not refs:
        raise MetricsError("an answer has no reference: every evaluated record needs at least one counsellor answer")
    hyp_tokens = tokenize(hypothesis, language, zh_tokenizer)
    ref_tokens = [tokenize(r, language, zh_tokenizer) for r in refs]
    hyp_text = " ".join(hyp_tokens)
    ref_texts = [" ".join(t) for t in ref_tokens]
    bleu = _bleu().sentence_score(hyp_text, ref_texts)
    rouge = max((_rouge().score(ref, hyp_text)["rougeL"].fmeasure for ref in ref_texts), default=0.0) if hyp_tokens else 0.0
    wordnet = meteor.wordnet if meteor is not None and meteor.wordnet is not None and language == "en" else _NoSynonyms()
    met = meteor_score([t for t in ref_tokens if t], hyp_tokens, wordnet=wordnet) if hyp_tokens and any(ref_tokens) else 0.0
    return SegmentStats(
        bleu_correct=list(bleu.counts), bleu_total=list(bleu.totals), sys_len=bleu.sys_len, ref_len=bleu.ref_len,
        rouge_l=float(rouge), meteor=float(met), ngrams={n: _ngrams(hyp_tokens, n) for n in (1, 2)},
    )


# ---------------------------------------------------------------------------------- corpus level


def corpus_bleu(correct: Sequence[float], total: Sequence[float], sys_len: float, ref_len: float, order: int) -> float:
    """Cumulative BLEU-`order` in [0, 1] from summed statistics (sacrebleu's formula and smoothing)."""
    from sacrebleu.metrics.bleu import BLEU

    score = BLEU.compute_bleu(
        correct=[int(c) for c in correct[:order]], total=[int(t) for t in total[:order]], sys_len=int(sys_len),
        ref_len=int(ref_len), smooth_method="exp", max_ngram_order=order,
    )
    return score.score / 100.0


def aggregate(stats: Sequence[SegmentStats]) -> dict[str, float]:
    """Corpus metrics of a set of answers: BLEU from summed statistics, mean ROUGE-L and METEOR,
    Distinct-n over all answers, mean answer length in tokens."""
    if not stats:
        return {}
    correct = np.sum([s.bleu_correct for s in stats], axis=0)
    total = np.sum([s.bleu_total for s in stats], axis=0)
    sys_len = sum(s.sys_len for s in stats)
    ref_len = sum(s.ref_len for s in stats)
    out = {f"bleu{n}": corpus_bleu(correct, total, sys_len, ref_len, n) for n in (1, 2, 3, 4)}
    out["rouge_l"] = float(np.mean([s.rouge_l for s in stats]))
    out["meteor"] = float(np.mean([s.meteor for s in stats]))
    for n in (1, 2):
        grams = [g for s in stats for g in s.ngrams[n]]
        out[f"distinct{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    out["answer_tokens"] = sys_len / len(stats)
    return out


class BootstrapData:
    """Per-answer statistics arranged so that a resample of prompts costs a few array sums.

    `units[i]` is the prompt of answer i; a resample draws prompts with replacement and keeps all
    of a drawn prompt's answers (samples per prompt stay together), so the interval reflects how
    the score would move with other prompts from the same distribution.
    """

    def __init__(self, stats: Sequence[SegmentStats], units: Sequence[str]):
        from scipy import sparse

        if len(stats) != len(units):
            raise MetricsError(f"{len(stats)} answers but {len(units)} prompt keys")
        keys = sorted(set(units))
        index = {k: i for i, k in enumerate(keys)}
        self.n_units = len(keys)
        rows = np.array([index[u] for u in units])
        # unit x answer incidence: resampled weights of answers = unit counts @ membership
        self.membership = sparse.csr_matrix((np.ones(len(units)), (rows, np.arange(len(units)))), shape=(len(keys), len(units)))
        self.bleu = np.array([[*s.bleu_correct, *s.bleu_total, s.sys_len, s.ref_len] for s in stats], dtype=float)
        self.rouge = np.array([s.rouge_l for s in stats])
        self.meteor = np.array([s.meteor for s in stats])
        self.grams: dict[int, Any] = {}
        self.gram_totals: dict[int, np.ndarray] = {}
        for n in (1, 2):
            vocab: dict[tuple[str, ...], int] = {}
            r, c = [], []
            for i, s in enumerate(stats):
                for g in set(s.ngrams[n]):
                    r.append(i)
                    c.append(vocab.setdefault(g, len(vocab)))
            self.grams[n] = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(stats), max(len(vocab), 1)))
            self.gram_totals[n] = np.array([len(s.ngrams[n]) for s in stats], dtype=float)

    def metrics(self, unit_counts: np.ndarray) -> dict[str, float]:
        """The corpus metrics with prompt i counted `unit_counts[i]` times."""
        w = self.membership.T @ unit_counts  # weight of each answer
        n = w.sum()
        b = w @ self.bleu
        out = {f"bleu{k}": corpus_bleu(b[0:4], b[4:8], b[8], b[9], k) for k in (1, 2, 3, 4)}
        out["rouge_l"] = float(w @ self.rouge / n)
        out["meteor"] = float(w @ self.meteor / n)
        for k in (1, 2):
            total = float(w @ self.gram_totals[k])
            distinct = int(((self.grams[k].T @ w) > 0).sum())
            out[f"distinct{k}"] = distinct / total if total else 0.0
        return out


def bootstrap_intervals(
    stats: Sequence[SegmentStats], units: Sequence[str], resamples: int, seed: int, confidence: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric, resampling prompts (`units`) with replacement."""
    if resamples <= 0 or not stats:
        return {}
    data = BootstrapData(stats, units)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, data.n_units, data.n_units), minlength=data.n_units).astype(float)
        for key, value in data.metrics(counts).items():
            draws[key].append(value)
    alpha = (1 - confidence) / 2
    return {k: (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) for k, v in draws.items()}


def text_metrics(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], languages: Sequence[str], zh_tokenizer: str = "char",
    meteor: Optional[MeteorSetup] = None,
) -> dict[str, dict[str, float]]:
    """Metrics per language and over all answers ("all"), without intervals (the driver's hook).

    Answers with no reference are skipped and counted under "skipped_no_reference".
    """
    meteor = meteor if meteor is not None else meteor_setup()
    by_lang: dict[str, list[SegmentStats]] = {}
    skipped = 0
    for hyp, refs, lang in zip(hypotheses, references, languages):
        if not any(r.strip() for r in refs):
            skipped += 1
            continue
        by_lang.setdefault(lang, []).append(segment_stats(hyp, refs, lang, zh_tokenizer, meteor))
    out = {lang: aggregate(stats) for lang, stats in sorted(by_lang.items())}
    everything = [s for stats in by_lang.values() for s in stats]
    if everything:
        out["all"] = aggregate(everything)
    out.setdefault("all", {})["skipped_no_reference"] = float(skipped)
    return out


def finite(value: float) -> Optional[float]:
    """JSON-safe float (None for NaN/inf)."""
    return value if math.isfinite(value) else None
