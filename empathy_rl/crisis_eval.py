"""Measure `assess_crisis` on a labelled evaluation set: recall and false-positive rate per
language, category, kind and split (docs/safety.md reports the numbers; tests hold them).

    python -m empathy_rl.crisis_eval tests/data/crisis_eval.jsonl

A text counts as flagged when its assessed level is `concern` or above. Recall is over texts
labelled `concern` or `urgent`, the false-positive rate over texts labelled `none`. Per category,
recall asks that the labelled category is among the assessed categories; per kind, the share of
texts whose flag is right. The report holds counts and ids, never the texts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from empathy_rl.jsonl import iter_jsonl
from empathy_rl.safety import LEVELS, CrisisAssessment, assess_crisis


REQUIRED = ("id", "language", "level", "text")  # `categories`, `kind` and `split` are optional


class EvalDataError(ValueError):
    """A labelled file is malformed; the message names the file, line and field."""


def load(path: str | Path) -> list[dict[str, Any]]:
    """Labelled items of a JSONL file. `text`, `id`, `language` (zh or en) and `level` are required;
    `categories` defaults to [], `kind` to "unspecified", and `split` may be absent (any file with
    these keys can be reported, e.g. a blind held-out set without splits)."""
    items = []
    for number, item in iter_jsonl(path, EvalDataError):
        if not isinstance(item, dict):
            raise EvalDataError(f"{path}:{number}: expected a JSON object")
        for key in REQUIRED:
            if not isinstance(item.get(key), str):
                raise EvalDataError(f"{path}:{number}: field {key!r} missing or not a string")
        if item["level"] not in LEVELS:
            raise EvalDataError(f"{path}:{number}: field 'level' is {item['level']!r}, expected one of {LEVELS}")
        if item["language"] not in ("zh", "en"):
            raise EvalDataError(f"{path}:{number}: field 'language' is {item['language']!r}, expected zh or en")
        categories = item.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise EvalDataError(f"{path}:{number}: field 'categories' must be a list of strings")
        item["categories"] = categories
        item["kind"] = str(item.get("kind") or "unspecified")
        items.append(item)
    return items


def _rate(hits: int, total: int) -> Optional[float]:
    return None if total == 0 else round(hits / total, 4)


def evaluate(items: list[dict[str, Any]], use_classifier: bool = True,
             assess: Optional[Callable[[dict[str, Any]], CrisisAssessment]] = None) -> dict[str, Any]:
    """Metrics over `items` (see the module docstring); `missed` and `false_alarms` list ids.
    `assess` replaces the default assessment (used by cross-validation to plug in a classifier
    trained without the item's fold)."""
    rows = []
    for item in items:
        if assess is not None:
            result = assess(item)
        else:
            result = assess_crisis(item["text"], item["language"], use_classifier=use_classifier)
        rows.append((item, result))

    def summary(subset: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
        pos = [(i, r) for i, r in subset if i["level"] != "none"]
        neg = [(i, r) for i, r in subset if i["level"] == "none"]
        return {
            "positives": len(pos), "negatives": len(neg),
            "recall": _rate(sum(r.is_crisis for _, r in pos), len(pos)),
            "fpr": _rate(sum(r.is_crisis for _, r in neg), len(neg)),
            "urgent_recall": _rate(sum(r.level == "urgent" for i, r in pos if i["level"] == "urgent"),
                                   sum(i["level"] == "urgent" for i, _ in pos)),
            "level_accuracy": _rate(sum(r.level == i["level"] for i, r in subset), len(subset)),
        }

    report: dict[str, Any] = {"all": summary(rows)}
    for key in ("language", "split"):
        for value in sorted({i[key] for i, _ in rows if key in i}):
            report[f"{key}={value}"] = summary([(i, r) for i, r in rows if i.get(key) == value])
    for value in sorted({(i["language"], i["split"]) for i, _ in rows if "split" in i}):
        report[f"language={value[0]},split={value[1]}"] = summary([(i, r) for i, r in rows if (i["language"], i.get("split")) == value])
    categories = sorted({c for i, _ in rows for c in i["categories"]})
    for category in categories:
        for language in sorted({i["language"] for i, _ in rows}):
            labelled = [(i, r) for i, r in rows if category in i["categories"] and i["language"] == language]
            report[f"category={category},language={language}"] = {
                "positives": len(labelled),
                "recall": _rate(sum(r.is_crisis for _, r in labelled), len(labelled)),
                "category_recall": _rate(sum(category in r.categories for _, r in labelled), len(labelled)),
            }
    for kind in sorted({i["kind"] for i, _ in rows}):
        subset = [(i, r) for i, r in rows if i["kind"] == kind]
        report[f"kind={kind}"] = {"n": len(subset), "flag_correct": _rate(sum(r.is_crisis == (i["level"] != "none") for i, r in subset), len(subset))}
    report["missed"] = [i["id"] for i, r in rows if i["level"] != "none" and not r.is_crisis]
    report["false_alarms"] = [i["id"] for i, r in rows if i["level"] == "none" and r.is_crisis]
    report["level_confusion"] = {f"{a}->{b}": sum(1 for i, r in rows if i["level"] == a and r.level == b) for a in LEVELS for b in LEVELS}
    return report


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m empathy_rl.crisis_eval")
    parser.add_argument("path", type=Path, help="JSONL with id, text, language, level and optionally categories, kind, split")
    parser.add_argument("--no-classifier", action="store_true", help="rules only")
    args = parser.parse_args(list(argv) if argv is not None else None)
    print(json.dumps(evaluate(load(args.path), use_classifier=not args.no_classifier), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
