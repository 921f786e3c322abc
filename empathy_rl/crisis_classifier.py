"""A small crisis classifier: logistic regression over character n-grams and English words.

Why it exists: the rules in crisis_rules.yaml only know the phrasings someone wrote down. The
classifier learns which n-grams go with crisis texts in the hand-labelled development sets
(tests/data/crisis_eval.jsonl, tests/data/crisis_dev.jsonl). It is weak (5-fold out-of-fold AUC
0.79), so `empathy_rl.safety` uses it gated: it lifts a text to `concern` only when the rules
found a hit below the concern line (docs/safety.md has the numbers).

Weak labels from the shared data can be added (`--weak-weight`; off by default because they
lowered the cross-validated AUC), taken from the *answers*, never from the help-seeker text:
- counsel-chat (English): the question is positive when its topic is self-harm or domestic
  violence, or when a therapist's answer talks about suicide, a hotline, emergency help or abuse;
- CPsyCoun (Chinese): the client's turns are positive when the counsellor's turns speak of suicide,
  self-harm, crisis lines or violence.
Their negatives also serve as a background set: the build reports how often the model fires on them.

The model is stored as a plain TSV of feature weights (`empathy_rl/assets/crisis_classifier.tsv`,
the strongest 6,000 only, about 60 KB): readable, diffable, and it loads without scikit-learn.
Build it (5-fold cross-validation chooses the threshold, then it trains on everything; ~3 s):

    python -m empathy_rl.crisis_classifier build --weak-data ../shared/data

Inference needs no training data. A text is represented by its distinct features (`ngrams`), each
with value 1/sqrt(number of distinct features of the text); the norm counts every feature, kept
in the file or not, so pruning the file does not shift scores.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from empathy_rl.safety import CrisisAssessment

MODEL_FILE = "crisis_classifier.tsv"
NGRAM_MAX = 3
MAX_CHARS = 4000  # characters of a text used for features (long dialogues are cut)


_WORDS = re.compile(r"[a-z0-9']+")


def ngrams(text: str) -> set[str]:
    """Distinct features of the normalized text (first MAX_CHARS characters): character
    1..NGRAM_MAX-grams (they carry Chinese and misspellings), plus English words and word pairs
    prefixed "w:" (they carry phrasing that spans more than three characters)."""
    norm = " ".join(text[:MAX_CHARS].lower().split())
    out: set[str] = set()
    for n in range(1, NGRAM_MAX + 1):
        out.update(norm[i : i + n] for i in range(len(norm) - n + 1))
    words = _WORDS.findall(norm)
    out.update("w:" + w for w in words)
    out.update(f"w:{a}_{b}" for a, b in zip(words, words[1:]))
    return out


@dataclass(frozen=True)
class CrisisClassifier:
    """Weights per n-gram, a bias, and the probability from which a text counts as `concern`."""

    weights: dict[str, float]
    bias: float
    threshold: float

    def probability(self, text: str) -> float:
        grams = ngrams(text)
        if not grams:
            return 1.0 / (1.0 + math.exp(-self.bias))
        scale = 1.0 / math.sqrt(len(grams))
        z = self.bias + scale * sum(self.weights.get(g, 0.0) for g in grams)
        z = max(-50.0, min(50.0, z))
        return 1.0 / (1.0 + math.exp(-z))

    def to_tsv(self) -> str:
        lines = [f"#bias\t{self.bias:.6f}", f"#threshold\t{self.threshold:.6f}"]
        for gram, weight in sorted(self.weights.items(), key=lambda kv: (-abs(kv[1]), kv[0])):
            lines.append(f"{json.dumps(gram, ensure_ascii=False)}\t{weight:.5f}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_tsv(cls, text: str) -> "CrisisClassifier":
        weights: dict[str, float] = {}
        meta: dict[str, float] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            key, value = line.rsplit("\t", 1)
            if key.startswith("#"):
                meta[key[1:]] = float(value)
            else:
                weights[json.loads(key)] = float(value)
        return cls(weights, meta["bias"], meta["threshold"])


@functools.lru_cache(maxsize=1)
def load_default() -> Optional[CrisisClassifier]:
    """The bundled model, or None when the file is absent (the rules then work alone)."""
    path = resources.files("empathy_rl.assets").joinpath(MODEL_FILE)
    if not path.is_file():
        return None
    return CrisisClassifier.from_tsv(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------- training


def weak_label_patterns() -> dict[str, re.Pattern[str]]:
    from empathy_rl.safety import load_rules_data

    spec = load_rules_data()["classifier"]
    return {"en": re.compile(spec["en_answer"], re.IGNORECASE), "zh": re.compile(spec["zh_answer"])}


def weak_topics() -> set[str]:
    from empathy_rl.safety import load_rules_data

    return set(load_rules_data()["classifier"]["en_topics"])


def counsel_chat_examples(path: Path) -> list[tuple[str, int]]:
    """(question text, weak label) per counsel-chat question."""
    pattern, topics = weak_label_patterns()["en"], weak_topics()
    questions: dict[str, tuple[str, list[str], set[str]]] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            key = row.get("questionLink") or row.get("questionID") or ""
            text = f"{row.get('questionTitle', '')}\n{row.get('questionText', '')}"
            entry = questions.setdefault(key, (text, [], set()))
            entry[1].append(row.get("answerText", ""))
            entry[2].add(row.get("topic", ""))
    return [(text, int(bool(tops & topics) or any(pattern.search(a) for a in answers))) for text, answers, tops in questions.values()]


def cpsycoun_examples(path: Path) -> list[tuple[str, int]]:
    """(client turns joined, weak label from the counsellor's turns) per CPsyCoun dialogue."""
    pattern = weak_label_patterns()["zh"]
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            turns = json.loads(line).get("turns", [])
            client = "\n".join(t["text"] for t in turns if t.get("role") == "client")
            counsellor = "\n".join(t["text"] for t in turns if t.get("role") == "counselor")
            out.append((client, int(bool(pattern.search(counsellor)))))
    return out


def labelled_examples(paths: Iterable[Path]) -> list[tuple[str, int, str]]:
    """(text, label, id) from labelled JSONL files in the crisis_eval format (label 1 for concern
    or urgent): the hand-written development sets."""
    from empathy_rl.crisis_eval import load

    out = []
    for path in paths:
        for item in load(path):
            out.append((item["text"], int(item["level"] != "none"), f"{Path(path).name}:{item['id']}"))
    return out


def train(weak: list[tuple[str, int]], labelled: list[tuple[str, int]], *, c: float = 4.0,
          weak_weight: float = 0.0, keep: int = 6000, min_df: int = 2, threshold: float = 0.5) -> CrisisClassifier:
    """Logistic regression (scikit-learn, L2, balanced classes) over the features of `ngrams`, on
    hand-labelled texts plus, when `weak_weight` > 0, the weak labels (each weak text counts
    `weak_weight` times). The default leaves the weak labels out: in 5-fold cross-validation on
    the development sets they lowered the out-of-fold AUC from 0.79 to 0.72-0.75 (docs/safety.md).
    Keeps the `keep` strongest n-grams; `threshold` is stored in the model (choose it by
    cross-validation, `cross_validate`)."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    weak = weak if weak_weight > 0 else []
    texts = [t for t, _ in weak] + [t for t, _ in labelled]
    labels = np.array([y for _, y in weak] + [y for _, y in labelled], dtype=float)
    weights = np.array([weak_weight] * len(weak) + [1.0] * len(labelled))
    docs = [ngrams(t) for t in texts]
    df: dict[str, int] = {}
    for grams in docs:
        for g in grams:
            df[g] = df.get(g, 0) + 1
    vocab = {g: i for i, g in enumerate(sorted(g for g, n in df.items() if n >= min_df))}
    rows, cols, vals = [], [], []
    for r, grams in enumerate(docs):
        scale = 1.0 / math.sqrt(max(1, len(grams)))
        for g in grams:
            j = vocab.get(g)
            if j is not None:
                rows.append(r)
                cols.append(j)
                vals.append(scale)
    matrix = csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)))
    positives = float(labels.sum())
    balance = np.where(labels > 0, (len(labels) - positives) / max(1.0, positives), 1.0)
    model = LogisticRegression(C=c, max_iter=2000, solver="liblinear")
    model.fit(matrix, labels, sample_weight=weights * balance)
    coef = model.coef_[0]
    inverse = {i: g for g, i in vocab.items()}
    strongest = sorted(range(len(coef)), key=lambda i: -abs(coef[i]))[:keep]
    return CrisisClassifier({inverse[i]: round(float(coef[i]), 5) for i in strongest}, float(model.intercept_[0]), threshold)


def gated(rule_assessment: "CrisisAssessment") -> bool:
    """Whether the classifier may lift this rules-only assessment to `concern`: the rules found
    something (a hit that counts, not negated and not reported) but below the concern line, e.g.
    giving things away alone, a will, recurring thoughts. The classifier alone, without such a
    hit, fired on too many ordinary counselling posts to be used (docs/safety.md)."""
    if rule_assessment.level != "none":
        return False
    return any(ev.source == "rules" and ev.effective > 0 and not ev.negated and not ev.reported for ev in rule_assessment.evidence)


def _fold(key: str, folds: int) -> int:
    return hashlib.sha256(key.encode("utf-8")).digest()[0] % folds


def cross_validate(weak: list[tuple[str, int]], labelled: list[tuple[str, int, str]], folds: int = 5,
                   target_fpr: float = 0.03, weak_weight: float = 0.0, background: Optional[list[str]] = None) -> dict[str, object]:
    """K-fold cross-validation over the hand-labelled texts (folds by a hash of the item id): each
    fold is scored by a model trained on the weak labels and the other folds. The threshold is the
    lowest probability at which the out-of-fold false-positive rate of the classifier alone stays
    <= `target_fpr`. Returns the threshold and the out-of-fold numbers of the classifier alone and
    of rules OR classifier (the rules were revised on these same texts, so the combined numbers are
    in-sample for the rules part).

    `background`: texts that are almost all not crises (the weak negatives of the shared data:
    long, ordinary counselling posts unlike the short development texts). The report gives how
    often the final model fires on them alone and gated (see `gated`): alone it fired on 7% of
    them, which is why `assess_crisis` only uses it gated."""
    from empathy_rl.safety import assess_crisis

    oof: list[tuple[float, int, str]] = []
    for k in range(folds):
        train_part = [(t, y) for t, y, key in labelled if _fold(key, folds) != k]
        test_part = [(t, y, key) for t, y, key in labelled if _fold(key, folds) == k]
        model = train(weak, train_part, weak_weight=weak_weight)
        oof += [(model.probability(t), y, t) for t, y, _ in test_part]
    negatives = sum(1 for _, y, _ in oof if not y)
    positives = len(oof) - negatives
    threshold = 0.99
    for candidate in sorted({round(p, 3) for p, _, _ in oof}):
        fp = sum(1 for p, y, _ in oof if p >= candidate and not y)
        if fp / max(1, negatives) <= target_fpr:
            threshold = max(0.5, candidate)
            break
    background_fire: dict[str, Optional[float]] = {"alone": None, "gated": None}
    if background:
        final = train(weak, [(t, y) for t, y, _ in labelled], weak_weight=weak_weight)
        fired = [t for t in background if final.probability(t) >= threshold]
        background_fire = {"alone": round(len(fired) / len(background), 4),
                           "gated": round(sum(gated(assess_crisis(t, use_classifier=False)) for t in fired) / len(background), 4)}
    assessed = {t: assess_crisis(t, use_classifier=False) for _, _, t in oof}
    rules = {t: a.is_crisis for t, a in assessed.items()}

    def rates(flag: list[tuple[bool, int]]) -> dict[str, float]:
        return {"recall": round(sum(f for f, y in flag if y) / max(1, positives), 4),
                "fpr": round(sum(f for f, y in flag if not y) / max(1, negatives), 4)}

    return {
        "folds": folds, "labelled": len(oof), "positives": positives, "negatives": negatives,
        "weak": len(weak), "weak_positives": sum(y for _, y in weak), "threshold": threshold,
        "background": len(background or []), "background_fire_rate": background_fire,
        "classifier_oof": rates([(p >= threshold, y) for p, y, _ in oof]),
        "rules_in_sample": rates([(rules[t], y) for _, y, t in oof]),
        "rules_or_classifier": rates([(rules[t] or p >= threshold, y) for p, y, t in oof]),
        "rules_or_gated_classifier": rates([(rules[t] or (gated(assessed[t]) and p >= threshold), y) for p, y, t in oof]),
    }


def build(data_dir: Optional[Path], labelled_paths: list[Path], out: Path, folds: int = 5, target_fpr: float = 0.03,
          weak_weight: float = 0.0) -> dict[str, object]:
    """Choose the threshold by cross-validation, then train on everything and write the TSV.
    `data_dir` (../shared/data) gives the weak labels (used for training when `weak_weight` > 0)
    and the background texts that bound the threshold (`cross_validate`)."""
    shared: list[tuple[str, int]] = []
    if data_dir is not None:
        shared = counsel_chat_examples(data_dir / "counsel-chat" / "20200325_counsel_chat.csv")
        shared += cpsycoun_examples(data_dir / "cpsycoun" / "cpsycound_dialogues.jsonl")
    elif weak_weight > 0:
        raise ValueError("--weak-weight > 0 needs --weak-data (the shared data folder, e.g. ../shared/data)")
    weak = shared if weak_weight > 0 else []
    labelled = labelled_examples(labelled_paths)
    background = [t for t, y in shared if not y] or None
    report = cross_validate(weak, labelled, folds=folds, target_fpr=target_fpr, weak_weight=weak_weight, background=background)
    model = train(weak, [(t, y) for t, y, _ in labelled], threshold=float(report["threshold"]),  # type: ignore[arg-type]
                  weak_weight=weak_weight)
    out.write_text(model.to_tsv(), encoding="utf-8")
    return report


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m empathy_rl.crisis_classifier")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="cross-validate, train on ../shared/data + the labelled dev files, write empathy_rl/assets/crisis_classifier.tsv")
    b.add_argument("labelled", type=Path, nargs="*", default=[Path("tests/data/crisis_eval.jsonl"), Path("tests/data/crisis_dev.jsonl")],
                   help="hand-labelled development JSONL files (never a held-out set)")
    b.add_argument("--weak-data", type=Path, default=None,
                   help="folder with counsel-chat/ and cpsycoun/ (e.g. ../shared/data): background texts for the threshold, weak labels for --weak-weight")
    b.add_argument("--weak-weight", type=float, default=0.0, help="weight of each weak-labelled text (0: not used)")
    b.add_argument("--out", type=Path, default=Path(__file__).parent / "assets" / MODEL_FILE)
    b.add_argument("--folds", type=int, default=5)
    b.add_argument("--target-fpr", type=float, default=0.03, help="out-of-fold false-positive rate the threshold may reach")
    args = parser.parse_args(list(argv) if argv is not None else None)
    metrics = build(args.weak_data, args.labelled, args.out, folds=args.folds, target_fpr=args.target_fpr,
                    weak_weight=args.weak_weight)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
