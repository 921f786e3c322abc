"""A small crisis classifier: logistic regression over character n-grams, trained on weak labels.

Why it exists: the rules in crisis_rules.yaml only know the phrasings someone wrote down. The
classifier learns which character n-grams go with texts that counsellors treated as a crisis, so
it can raise a text the rules missed to `concern` (never to `urgent`; see `empathy_rl.safety`).

Weak labels, taken from the *answers*, never from the help-seeker text it learns from (so it does
not simply relearn the rules; patterns in crisis_rules.yaml under `classifier`):
- counsel-chat (English): the question is positive when its topic is self-harm or domestic
  violence, or when a therapist's answer talks about suicide, a hotline, emergency help or abuse;
- CPsyCoun (Chinese): the client's turns are positive when the counsellor's turns speak of suicide,
  self-harm, crisis lines or violence.

The model is stored as a plain TSV of n-gram weights (`empathy_rl/assets/crisis_classifier.tsv`,
the strongest n-grams only, about 100 KB): readable, diffable, and it loads without torch. Build it
from the shared data (a few seconds on 2 cores):

    python -m empathy_rl.crisis_classifier build ../shared/data

Inference needs no training data, so tests and runs without ../shared/data still work. A text is
represented by its distinct 1-3 character n-grams (lower-cased, whitespace collapsed), each with
value 1/sqrt(number of distinct n-grams of the text); the norm counts every n-gram, kept in the
file or not, so pruning the file does not shift scores.
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
from typing import Iterable, Optional

MODEL_FILE = "crisis_classifier.tsv"
NGRAM_MAX = 3
MAX_CHARS = 4000  # characters of a text used for features (long dialogues are cut)


def ngrams(text: str) -> set[str]:
    """Distinct character 1..NGRAM_MAX-grams of the normalized text (first MAX_CHARS characters)."""
    norm = " ".join(text[:MAX_CHARS].lower().split())
    out: set[str] = set()
    for n in range(1, NGRAM_MAX + 1):
        out.update(norm[i : i + n] for i in range(len(norm) - n + 1))
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


def _held_out(text: str) -> bool:
    return hashlib.sha256(text.encode("utf-8")).digest()[0] < 51  # about 20%


def train(examples: list[tuple[str, int]], epochs: int = 40, l2: float = 1e-4, keep: int = 6000, min_df: int = 3,
          target_precision: float = 0.8, seed: int = 0) -> tuple[CrisisClassifier, dict[str, float]]:
    """Fit the model on ~80% of `examples` (split by a hash of the text), choose the threshold on
    the rest as the lowest probability at which precision reaches `target_precision`, and keep the
    `keep` strongest n-grams. Returns the model and held-out metrics."""
    import torch

    train_set = [(t, y) for t, y in examples if not _held_out(t)]
    held_out = [(t, y) for t, y in examples if _held_out(t)]
    docs = [ngrams(t) for t, _ in train_set]
    df: dict[str, int] = {}
    for grams in docs:
        for g in grams:
            df[g] = df.get(g, 0) + 1
    vocab = {g: i for i, g in enumerate(sorted(g for g, c in df.items() if c >= min_df))}

    def batch(doc_grams: list[set[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, offsets, values = [], [], []
        for grams in doc_grams:
            offsets.append(len(ids))
            scale = 1.0 / math.sqrt(max(1, len(grams)))
            for g in grams:
                if g in vocab:
                    ids.append(vocab[g])
                    values.append(scale)
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long), torch.tensor(values)

    torch.manual_seed(seed)
    ids, offsets, values = batch(docs)
    labels = torch.tensor([float(y) for _, y in train_set])
    bag = torch.nn.EmbeddingBag(len(vocab), 1, mode="sum")
    torch.nn.init.zeros_(bag.weight)
    bias = torch.nn.Parameter(torch.zeros(1))
    positives = float(labels.sum())
    pos_weight = torch.tensor((len(labels) - positives) / max(1.0, positives))
    optimizer = torch.optim.Adam([bag.weight, bias], lr=0.05)
    for _ in range(epochs):
        optimizer.zero_grad()
        logits = bag(ids, offsets, per_sample_weights=values).squeeze(-1) + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
        loss = loss + l2 * bag.weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    weights = bag.weight.detach().squeeze(-1).tolist()
    inverse = {i: g for g, i in vocab.items()}
    strongest = sorted(range(len(weights)), key=lambda i: -abs(weights[i]))[:keep]
    model = CrisisClassifier({inverse[i]: round(weights[i], 5) for i in strongest}, float(bias.item()), 0.5)
    probs = [(model.probability(t), y) for t, y in held_out]
    threshold = _threshold(probs, target_precision)
    model = CrisisClassifier(model.weights, model.bias, threshold)
    tp = sum(1 for p, y in probs if p >= threshold and y)
    fp = sum(1 for p, y in probs if p >= threshold and not y)
    pos = sum(y for _, y in probs)
    metrics = {"train": len(train_set), "held_out": len(held_out), "held_out_positives": pos,
               "precision": tp / max(1, tp + fp), "recall": tp / max(1, pos), "threshold": threshold}
    return model, metrics


def _threshold(probs: list[tuple[float, int]], target_precision: float) -> float:
    """Lowest probability among the candidates at which held-out precision reaches the target
    (0.99 if none does: then the classifier practically never fires alone)."""
    for candidate in sorted({round(p, 3) for p, _ in probs}):
        chosen = [y for p, y in probs if p >= candidate]
        if len(chosen) >= 3 and sum(chosen) / len(chosen) >= target_precision:
            return max(0.5, candidate)
    return 0.99


def build(data_dir: Path, out: Path) -> dict[str, float]:
    """Train on the shared data in `data_dir` and write the TSV model to `out`."""
    examples = counsel_chat_examples(data_dir / "counsel-chat" / "20200325_counsel_chat.csv")
    examples += cpsycoun_examples(data_dir / "cpsycoun" / "cpsycound_dialogues.jsonl")
    model, metrics = train(examples)
    out.write_text(model.to_tsv(), encoding="utf-8")
    return metrics


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m empathy_rl.crisis_classifier")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train on ../shared/data and write empathy_rl/assets/crisis_classifier.tsv")
    b.add_argument("data_dir", type=Path, help="folder with counsel-chat/ and cpsycoun/ (e.g. ../shared/data)")
    b.add_argument("--out", type=Path, default=Path(__file__).parent / "assets" / MODEL_FILE)
    args = parser.parse_args(list(argv) if argv is not None else None)
    metrics = build(args.data_dir, args.out)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
