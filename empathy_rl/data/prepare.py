"""`prepare-data`: raw sources -> anonymized, filtered, de-duplicated, split Parquet files.

Pipeline per record, in this order (each drop is counted under its reason):
  read row -> adapter -> anonymize (before anything else touches the text) -> query length
  ("query_too_short") -> answer lengths ("no_answer_long_enough") -> repeated id ("duplicate_id")
  -> repeated normalized query ("duplicate") -> language -> crisis flag -> split.

Splits are a hash of (split_seed, record id) mapped into [0, 1), not positions in the file, so
adding or removing records never moves the others between splits. Sources that carry their own
split (the counsel-chat CSV's `split` column) keep it, so published counsel-chat splits stay
comparable; `val_fraction`/`test_fraction` apply to every other record.

Output is all-or-nothing: the four files are written into a temporary sibling directory and moved
into `prepared_dir` only after all of them were written, `summary.json` last, so a failure (a bad
row under `on_bad_row=error`, a full disk) leaves an existing `prepared_dir` as it was.

Logging carries counts and ids only: help-seeker text is never logged at INFO.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from empathy_rl.anonymize import anonymize_record
from empathy_rl.coe import detect_language
from empathy_rl.config import DataConfig, DataSourceConfig
from empathy_rl.data.adapters import RawRecord, get_adapter, source_label
from empathy_rl.data.readers import BadRowError, DataError, Row, read_rows
from empathy_rl.data.records import SPLITS, CounselingRecord, build_query, record_id, write_parquet

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
_MAX_BAD_ROW_EXAMPLES = 5


@dataclass
class PrepareSummary:
    """What `prepare_data` read, kept, dropped and wrote (counts only, no text)."""

    prepared_dir: str = ""
    rows_read: dict[str, int] = field(default_factory=dict)  # raw rows per source (bad ones included)
    records_built: dict[str, int] = field(default_factory=dict)  # records per source before filtering
    kept_per_source: dict[str, int] = field(default_factory=dict)
    records_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> records (bad_row counts rows)
    answers_dropped_short: int = 0  # answers removed by min_answer_chars from records that were kept
    splits: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    crisis: int = 0  # kept records whose query mentions suicide or self-harm
    bad_row_examples: list[str] = field(default_factory=list)  # first few bad-row messages (file, row, field)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("dropped", "splits", "languages"):
            out[key] = dict(sorted(getattr(self, key).items()))
        return out

    def format(self) -> str:
        """A human-readable multi-line summary for the terminal."""
        lines = [f"prepared data in {self.prepared_dir}"]
        for name, rows in self.rows_read.items():
            lines.append(f"  source {name}: {rows} rows read, {self.records_built.get(name, 0)} records built, "
                         f"{self.kept_per_source.get(name, 0)} kept")
        lines.append(f"  records kept: {self.records_kept}")
        lines.append("  splits: " + ", ".join(f"{s} {self.splits.get(s, 0)}" for s in SPLITS))
        lines.append("  languages: " + (", ".join(f"{k} {v}" for k, v in sorted(self.languages.items())) or "none"))
        lines.append(f"  crisis-flagged records: {self.crisis}")
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        lines.append(f"  dropped: {dropped}")
        if self.answers_dropped_short:
            lines.append(f"  short answers removed from kept records: {self.answers_dropped_short}")
        for message in self.bad_row_examples:
            lines.append(f"  bad row: {message}")
        return "\n".join(lines)


def normalize_query(text: str) -> str:
    """The de-duplication key: NFKC, lowercase, runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def assign_split(record_id_: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split from a hash of (seed, id): stable across runs, machines and data growth."""
    digest = hashlib.sha256(f"{seed}:{record_id_}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "validation"
    return "train"


def source_name(source: DataSourceConfig) -> str:
    return source.name or source_label(source.path)


def _check_sources(cfg: DataConfig) -> None:
    if not cfg.sources:
        raise DataError("data.sources is empty: add at least one source (path, adapter) to the config")
    seen: dict[str, int] = {}
    for i, source in enumerate(cfg.sources):
        name = source_name(source)
        if name in seen:
            raise DataError(f"data.sources[{seen[name]}] and data.sources[{i}] are both named {name!r}; "
                            f"set data.sources[{i}].name so record ids stay distinct")
        seen[name] = i
        get_adapter(source.adapter)
        if not Path(source.path).is_file():
            raise DataError(f"data.sources[{i}].path: {source.path} does not exist")


class _Preparer:
    """Holds the running state of one `prepare_data` call (counts, seen keys, kept records)."""

    def __init__(self, cfg: DataConfig, progress: bool, safety: Any = None) -> None:
        from empathy_rl.config import SafetyConfig
        from empathy_rl.crisis_judge import CrisisJudge

        self.cfg = cfg
        # rules + encoder classifier (+ the LLM judge when safety.judge_mode is not off)
        self.crisis = CrisisJudge.from_config(safety if safety is not None else SafetyConfig())
        self.progress = progress
        self.summary = PrepareSummary(prepared_dir=str(cfg.prepared_dir))
        self.kept: list[CounselingRecord] = []
        self.seen_ids: set[str] = set()
        self.seen_queries: set[str] = set()

    # -- bad rows --------------------------------------------------------------------------

    def on_bad_row(self, err: BadRowError) -> None:
        if self.cfg.on_bad_row == "error":
            raise err
        self.summary.dropped["bad_row"] += 1
        if len(self.summary.bad_row_examples) < _MAX_BAD_ROW_EXAMPLES:
            self.summary.bad_row_examples.append(str(err))
        logger.warning("skipping bad row: %s", err)

    # -- reading -----------------------------------------------------------------------------

    def _rows(self, source: DataSourceConfig, name: str) -> Iterator[Row]:
        def on_unreadable(err: BadRowError) -> None:
            self.summary.rows_read[name] += 1
            self.on_bad_row(err)

        rows: Iterable[Row] = read_rows(source.path, source.format, on_unreadable)
        if self.progress:
            from tqdm import tqdm

            rows = tqdm(rows, desc=f"reading {name}", unit="row", leave=False)
        for row in rows:
            self.summary.rows_read[name] += 1
            yield row

    def add_source(self, source: DataSourceConfig) -> None:
        name = source_name(source)
        self.summary.rows_read[name] = 0
        self.summary.records_built[name] = 0
        self.summary.kept_per_source[name] = 0
        adapter = get_adapter(source.adapter)
        min_answer = self.cfg.min_answer_chars if source.min_answer_chars is None else source.min_answer_chars
        for raw in adapter(self._rows(source, name), str(source.path), self.on_bad_row):
            self.summary.records_built[name] += 1
            record = self._keep(raw, source, name, min_answer)
            if record is not None:
                self.kept.append(record)
                self.summary.kept_per_source[name] += 1
        logger.info("source %s: %d rows read, %d records built, %d kept", name, self.summary.rows_read[name],
                    self.summary.records_built[name], self.summary.kept_per_source[name])

    # -- one record --------------------------------------------------------------------------

    def _drop(self, reason: str, rid: str) -> None:
        self.summary.dropped[reason] += 1
        logger.debug("dropped record %s: %s", rid, reason)

    def _keep(self, raw: RawRecord, source: DataSourceConfig, name: str, min_answer: int) -> Optional[CounselingRecord]:
        rid = record_id(name, raw.row_id)
        title, description = raw.title.strip(), raw.description.strip()
        record = anonymize_record(CounselingRecord(
            id=rid, source=name, language="", title=title, description=description,
            query=build_query(title, description), answers=[a.strip() for a in raw.answers], topic=raw.topic.strip(),
        ))
        if len(record.query) < self.cfg.min_query_chars:
            self._drop("query_too_short", rid)
            return None
        long_enough = [a for a in record.answers if len(a) >= min_answer]
        if not long_enough:
            self._drop("no_answer_long_enough", rid)
            return None
        if rid in self.seen_ids:
            self._drop("duplicate_id", rid)
            return None
        self.seen_ids.add(rid)
        key = normalize_query(record.query)
        if self.cfg.dedup and key in self.seen_queries:
            self._drop("duplicate", rid)
            return None
        self.seen_queries.add(key)
        self.summary.answers_dropped_short += len(record.answers) - len(long_enough)
        language = source.language if source.language != "auto" else raw.language or detect_language(record.query)
        split = raw.split or assign_split(rid, self.cfg.split_seed, self.cfg.val_fraction, self.cfg.test_fraction)
        return dataclasses.replace(record, answers=long_enough, language=language,
                                   crisis=self.crisis.assess(record.query, language if language in ("zh", "en") else None).is_crisis,
                                   split=split)

    # -- writing -----------------------------------------------------------------------------

    def write(self) -> None:
        for record in self.kept:
            self.summary.splits[record.split] += 1
            self.summary.languages[record.language] += 1
            self.summary.crisis += int(record.crisis)
        self.summary.records_kept = len(self.kept)
        _write_atomically(Path(self.cfg.prepared_dir), self.kept, self.summary, self.cfg)


def _write_atomically(target: Path, records: list[CounselingRecord], summary: PrepareSummary, cfg: DataConfig) -> None:
    """Write every output into a temporary sibling directory, then move the files into `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        names = []
        for split in SPLITS:
            write_parquet([r for r in records if r.split == split], staging / f"{split}.parquet")
            names.append(f"{split}.parquet")
        payload = {"summary": summary.to_dict(), "config": dataclasses.asdict(cfg)}
        (staging / SUMMARY_FILE).write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        names.append(SUMMARY_FILE)  # last: its presence means the split files beside it are complete
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_data(cfg: DataConfig, progress: bool = True, safety: Any = None) -> PrepareSummary:
    """Read every source in `cfg.sources`, build anonymized records, filter, de-duplicate, split,
    and write {train,validation,test}.parquet and summary.json into `cfg.prepared_dir`.

    Raises `BadRowError` (nothing written) on the first bad row when `cfg.on_bad_row == "error"`,
    and `DataError` for a missing file, an unknown format or duplicate source names.
    `safety` (the config's `safety` section; None = its defaults) says how the `crisis` flag is
    assessed: rules, encoder classifier, optional LLM judge.
    """
    _check_sources(cfg)
    preparer = _Preparer(cfg, progress, safety)
    for source in cfg.sources:
        preparer.add_source(source)
    preparer.write()
    summary = preparer.summary
    logger.info("prepared %d records (%s) into %s; dropped %s; %d crisis-flagged", summary.records_kept,
                ", ".join(f"{s} {summary.splits.get(s, 0)}" for s in SPLITS), cfg.prepared_dir,
                dict(summary.dropped) or "none", summary.crisis)
    if preparer.crisis.mode != "off":
        logger.info("crisis judge: %s", preparer.crisis.stats)  # counts only, never texts
    return summary
