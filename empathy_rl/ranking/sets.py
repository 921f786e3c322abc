"""Comparison sets: each case is one help-seeker text and the answers of N systems, anonymised and
in a per-case random order; which system sits at which position is written to a separate key
file, so the file raters (or a judge) see names no system.

    <sets_dir>/cases.jsonl   {"case_id", "language", "crisis", "query", "answers": [{"position", "text"}]}
    <sets_dir>/key.json      {"eval_dir", "systems", "cases": {case_id: [system at position 1, 2, ...]}}
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empathy_rl.anonymize import anonymize
from empathy_rl.atomic_io import atomic_write_text
from empathy_rl.jsonl import iter_jsonl

log = logging.getLogger("empathy_rl")

CASES_FILE = "cases.jsonl"
KEY_FILE = "key.json"


class RankingError(ValueError):
    """Unusable ranking input (missing file, bad line, unknown case); the message names it."""


@dataclass(frozen=True)
class Case:
    case_id: str
    language: str
    crisis: bool
    query: str
    answers: tuple[str, ...]  # answer at position i+1


def export_sets(eval_dir: str | Path, sets_dir: str | Path, systems_per_case: int = 0, max_cases: int = 0, seed: int = 0) -> int:
    """Build cases.jsonl and key.json from `eval_dir/generations.jsonl`; returns the number of cases."""
    from empathy_rl.evaluation import GENERATIONS_FILE

    src = Path(eval_dir) / GENERATIONS_FILE
    if not src.is_file():
        raise RankingError(f"{src} does not exist: run `empathy-rl eval --output {eval_dir}` first")
    rng = random.Random(seed)
    cases, key, systems = [], {}, set()
    for number, row in iter_jsonl(src, RankingError):
        try:
            answers: dict[str, Any] = row["answers"]
            query = row["query"]
            case_id = f"{row['record_id']}-{row['sample']}"
            language, crisis = row["language"], bool(row["crisis"])
            texts = {name: a["answer"] for name, a in answers.items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise RankingError(f"{src}:{number}: not a generations line ({type(err).__name__}: {err})") from err
        names = sorted(texts)
        if systems_per_case and systems_per_case < len(names):
            names = rng.sample(names, systems_per_case)
        if len(names) < 2:
            raise RankingError(f"{src}:{number}: case {case_id} has {len(names)} system(s); ranking needs at least 2")
        rng.shuffle(names)
        systems.update(names)
        key[case_id] = names
        cases.append({"case_id": case_id, "language": language, "crisis": crisis, "query": anonymize(query),
                      "answers": [{"position": i + 1, "text": anonymize(texts[n])} for i, n in enumerate(names)]})
        if max_cases and len(cases) == max_cases:
            break
    out = Path(sets_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CASES_FILE, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases))
    atomic_write_text(out / KEY_FILE, json.dumps({"eval_dir": str(eval_dir), "systems": sorted(systems), "cases": key}, indent=2) + "\n")
    log.info("exported %d ranking case(s) of %d system(s) to %s", len(cases), len(systems), out)
    return len(cases)


def load_cases(sets_dir: str | Path) -> list[Case]:
    """The cases, in file order; a bad line raises naming file and line."""
    path = Path(sets_dir) / CASES_FILE
    if not path.is_file():
        raise RankingError(f"{path} does not exist: run `empathy-rl rank export` first")
    cases = []
    for number, row in iter_jsonl(path, RankingError):
        try:
            answers = sorted(row["answers"], key=lambda a: a["position"])
            if [a["position"] for a in answers] != list(range(1, len(answers) + 1)):
                raise ValueError("positions must be 1..N")
            cases.append(Case(str(row["case_id"]), row["language"], bool(row["crisis"]), row["query"], tuple(a["text"] for a in answers)))
        except (KeyError, TypeError, ValueError) as err:
            raise RankingError(f"{path}:{number}: bad case line ({type(err).__name__}: {err})") from err
    if not cases:
        raise RankingError(f"{path} holds no case")
    return cases


def load_key(sets_dir: str | Path) -> dict[str, list[str]]:
    """case_id -> system names by position."""
    path = Path(sets_dir) / KEY_FILE
    if not path.is_file():
        raise RankingError(f"{path} does not exist: run `empathy-rl rank export` first")
    try:
        return {str(k): list(v) for k, v in json.loads(path.read_text(encoding="utf-8"))["cases"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise RankingError(f"{path}: not a ranking key file ({type(err).__name__})") from err
