"""Small slices of ../shared/data for the evaluation and ranking tests: a few counsel-chat questions
(English, several counsellors' answers each, from the CSV's own test split) and a few CPsyCoun
dialogues (Chinese), prepared into Parquet splits with the project's own `prepare_data`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COUNSEL_CHAT = SHARED_DATA / "counsel-chat" / "20200325_counsel_chat.csv"
CPSYCOUN = SHARED_DATA / "cpsycoun" / "cpsycound_dialogues.jsonl"


def prepare_shared_slice(root: Path, en_questions: int = 3, zh_dialogues: int = 8) -> Path:
    """Prepare `en_questions` counsel-chat test questions and `zh_dialogues` CPsyCoun dialogues
    (split by hash, half of them test) into `root/prepared`; skips the test without the data."""
    if not COUNSEL_CHAT.is_file() or not CPSYCOUN.is_file():
        pytest.skip(f"needs {COUNSEL_CHAT} and {CPSYCOUN}")
    from empathy_rl.config import DataConfig, DataSourceConfig
    from empathy_rl.data import prepare_data

    root.mkdir(parents=True, exist_ok=True)
    with COUNSEL_CHAT.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    keep: list[str] = []
    for row in rows:  # questions with at least two answers, so scores are multi-reference
        qid = row["questionID"]
        if row["split"] == "test" and qid not in keep and sum(r["questionID"] == qid for r in rows) >= 2:
            keep.append(qid)
        if len(keep) == en_questions:
            break
    en = root / "counsel_chat_slice.csv"
    with en.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(r for r in rows if r["questionID"] in keep)
    zh = root / "cpsycoun_slice.jsonl"
    with CPSYCOUN.open(encoding="utf-8") as f:
        zh.write_text("".join(next(f) for _ in range(zh_dialogues)), encoding="utf-8")
    out = root / "prepared"
    cfg = DataConfig(
        sources=[DataSourceConfig(path=str(en), adapter="counsel_chat", name="counsel-chat"),
                 DataSourceConfig(path=str(zh), adapter="cpsycoun", name="cpsycoun")],
        prepared_dir=str(out), val_fraction=0.0, test_fraction=0.5, min_answer_chars=20,
    )
    prepare_data(cfg, progress=False)
    return out
