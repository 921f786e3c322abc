"""`empathy-rl draft-coe`: a teacher model drafts Chain-of-Empathy SFT examples for prepared records.

Why: the paper cold-starts the CoE format with SFT on a few hundred examples that a strong model
drafts and professionals review. This module is the drafting half; the review page turns the
drafts into accepted or rejected records, and only accepted ones train.

For each selected prepared record (`draft.split` of the prepared directory, `draft.languages`,
the first `draft.max_records`):

1. The query (title + description, as prepare-data built it) goes through the anonymizer when
   `draft.anonymize` is true. prepare-data already anonymized it, so on its output this pass
   changes nothing (the anonymizer's placeholders hold no digits and match none of its patterns);
   it protects prepared directories written by other tools. The summary counts queries it changed.
2. The teacher gets the CoE system prompt (`coe.system_prompt`, `draft.prompt_style`) followed by
   the drafting instructions of `draft.instructions_file`, and the query as the user turn.
3. The reply (after dropping a leading `<think>` block when `draft.strip_think`) must pass
   `coe.parse_coe`. A reply that does not is retried with a new seed, up to `draft.max_attempts`.
4. The record is appended to `draft.output` at once (`coe_data.append_record`), holding the review
   lock `<output>.lock` (`empathy_rl.file_lock`) for that append only, so `empathy-rl review` can
   be open on the same file meanwhile and neither loses the other's lines: status `draft`,
   provenance `drafted` by the teacher model; or, after the last failed attempt, with empty layers
   and answer, the last reply in `raw` and the parser's error code in `parse_error`.

The job is resumable: ids already in the output (the prepared record's id is the draft's id) are
skipped, so a re-run after a crash or an endpoint error continues where it stopped. A summary with
counts and seconds is printed and written to `<output>.summary.json`.

Records hold help-seeker text: logs carry ids and counts, never queries or replies, at INFO.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml

from empathy_rl import coe
from empathy_rl.anonymize import anonymize
from empathy_rl.atomic_io import atomic_write_json
from empathy_rl.coe_data import CoEDataError, CoERecord, Provenance, Review, append_record, read_records, utc_now
from empathy_rl.config import ConfigError, DraftConfig, EmpathyRLConfig
from empathy_rl.data.records import CounselingRecord, load_records
from empathy_rl.file_lock import LockTimeout, exclusive_lock, lock_path
from empathy_rl.crisis_judge import CrisisJudge
from empathy_rl.teacher import Messages, Teacher, TeacherRequest, check_teacher, make_teacher

log = logging.getLogger(__name__)

INSTRUCTIONS_ASSET = "draft_instructions.yaml"
_THINK_RE = re.compile(r"^\s*<think>.*?</think>", re.S)


@dataclass
class DraftSummary:
    """What one `draft_coe` call did (counts only, no text)."""

    output: str = ""
    teacher: str = ""
    prepared: str = ""  # <prepared_dir>/<split>.parquet
    selected: int = 0  # records after draft.languages and draft.max_records
    skipped: int = 0  # selected records whose id was already in the output
    drafted: int = 0  # records written with a parsed CoE draft
    failed: int = 0  # records written as failed after draft.max_attempts
    retried: int = 0  # records that needed more than one attempt (drafted or failed)
    requests: int = 0  # teacher calls made (attempts over all records)
    parse_errors: Counter[str] = field(default_factory=Counter)  # parser error code -> failed attempts
    crisis: int = 0  # written records flagged (the prepared flag or the configured crisis assessment)
    anonymized_changed: int = 0  # queries the anonymizer changed (0 on prepare-data output)
    seconds: float = 0.0
    error: Optional[str] = None  # why the job stopped early (an endpoint error); a re-run resumes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["parse_errors"] = dict(sorted(self.parse_errors.items()))
        return out

    def format(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.parse_errors.items())) or "none"
        lines = [
            f"CoE drafts in {self.output} (teacher {self.teacher}, from {self.prepared})",
            f"  selected {self.selected}, skipped (already in output) {self.skipped}",
            f"  drafted {self.drafted}, failed after retries {self.failed}, retried {self.retried}",
            f"  teacher requests {self.requests}; failed attempts by parser error: {errors}",
            f"  crisis-flagged {self.crisis}; queries changed by the anonymizer {self.anonymized_changed}",
            f"  {self.seconds:.1f}s",
        ]
        if self.error:
            lines.append(f"  stopped early: {self.error}")
        return "\n".join(lines)


def summary_path(output: str | os.PathLike[str]) -> Path:
    return Path(f"{output}.summary.json")


def load_instructions(path: Optional[str] = None) -> dict[str, str]:
    """The drafting instructions per language (keys en, zh) from `path` or the bundled asset."""
    where = path or f"empathy_rl/assets/{INSTRUCTIONS_ASSET}"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else (
            resources.files("empathy_rl.assets").joinpath(INSTRUCTIONS_ASSET).read_text(encoding="utf-8")
        )
    except OSError as err:
        raise ConfigError(f"draft.instructions_file: cannot read {where}: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"draft.instructions_file: {where} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"draft.instructions_file: {where} must map en and zh to instruction text")
    out: dict[str, str] = {}
    for lang in ("en", "zh"):
        value = data.get(lang)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"draft.instructions_file: {where} needs a non-empty text under key {lang!r}")
        out[lang] = value.strip()
    return out


def build_messages(language: str, query: str, style: str, instructions: dict[str, str]) -> Messages:
    """System: the CoE system prompt plus the drafting instructions; user: the seeker's text."""
    system = f"{coe.system_prompt(language, style)}\n\n{instructions[language]}"
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


def clean_reply(text: str, strip_think: bool) -> str:
    """The reply as the parser should see it: a leading <think>...</think> block dropped if asked."""
    return _THINK_RE.sub("", text, count=1) if strip_think else text


def attempt_seed(base: int, record_id: str, attempt: int) -> int:
    """A sampling seed per (record, attempt): reproducible, and different for every retry."""
    digest = int(hashlib.sha1(f"{record_id}:{attempt}".encode("utf-8")).hexdigest()[:8], 16)
    return (base * 1_000_003 + digest) % 2**31


def done_ids(output: Path, lock_timeout_s: float = DraftConfig.lock_timeout_s) -> set[str]:
    """Ids already in the output. A torn last line (a crash in the middle of an append) is cut off
    first, with a warning: its record is drafted again."""
    if not output.exists():
        return set()
    with exclusive_lock(lock_path(output), lock_timeout_s):  # a review server may be rewriting the file
        data = output.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: the last line was cut off mid-write; removing it (%d bytes) so that record is drafted again",
                        output, len(data) - keep)
            with output.open("r+b") as fh:
                fh.truncate(keep)
    try:
        return {r.id for r in read_records(output)}
    except CoEDataError as err:
        raise CoEDataError(f"{err} (draft.output must be a CoE JSONL file to resume; move it away to start over)") from None


def select_records(cfg: DraftConfig, prepared_dir: str) -> list[CounselingRecord]:
    """Records of `draft.split` in file order, filtered by `draft.languages`, cut to `draft.max_records`."""
    records = load_records(prepared_dir, cfg.split)
    if cfg.languages:
        records = [r for r in records if r.language in cfg.languages]
    if cfg.max_records:
        records = records[: cfg.max_records]
    return records


@dataclass
class _Job:
    """One record on its way to the output."""

    record: CounselingRecord
    query: str
    crisis: bool
    attempts: int = 0
    last_reply: str = ""
    last_error: str = ""


def _write_summary(summary: DraftSummary) -> None:
    atomic_write_json(summary_path(summary.output), summary.to_dict(), indent=2)


def append_draft(output: Path, record: CoERecord, lock_timeout_s: float) -> None:
    """Append one record under `<output>.lock`, the lock a review server holds while it rewrites the
    file: without it an append landing between the server's read and its rename would be lost."""
    try:
        with exclusive_lock(lock_path(output), lock_timeout_s):
            append_record(output, record)
    except LockTimeout as err:
        raise LockTimeout(f"{err} (a review server of {output}?); draft.lock_timeout_s={lock_timeout_s:g}; "
                          "the records before this one are saved: re-run to resume") from None


class _Drafter:
    """Runs the rounds of one job: a chunk of records, attempt after attempt, each written when done."""

    def __init__(self, cfg: DraftConfig, teacher: Teacher, summary: DraftSummary, progress_bar: Any) -> None:
        self.cfg = cfg
        self.teacher = teacher
        self.summary = summary
        self.bar = progress_bar
        self.instructions = load_instructions(cfg.instructions_file)
        self.output = Path(cfg.output)

    def _write(self, job: _Job, parsed: Optional[coe.CoEParse]) -> None:
        r = job.record
        record = CoERecord(
            id=r.id, language=r.language, query=job.query, crisis=job.crisis, topic=r.topic or None,
            provenance=Provenance(source="drafted", model=self.teacher.name, created_at=utc_now()),
            review=Review(status="draft"),
        )
        if parsed is not None:
            record.layers = tuple(parsed.layers)  # type: ignore[assignment]
            record.answer = parsed.answer
            self.summary.drafted += 1
        else:
            record.raw = job.last_reply
            record.parse_error = job.last_error
            self.summary.failed += 1
            log.debug("record %s: no parseable draft after %d attempts (last: %s)", r.id, job.attempts, job.last_error)
        append_draft(self.output, record, self.cfg.lock_timeout_s)
        self.summary.crisis += int(job.crisis)
        self.summary.retried += int(job.attempts > 1)
        self.bar.update(1)

    def run_chunk(self, jobs: list[_Job]) -> None:
        pending = jobs
        for attempt in range(self.cfg.max_attempts):
            requests = [
                TeacherRequest(
                    build_messages(j.record.language, j.query, self.cfg.prompt_style, self.instructions),
                    attempt_seed(self.cfg.seed, j.record.id, attempt),
                )
                for j in pending
            ]
            replies = self.teacher.complete(requests)
            self.summary.requests += len(requests)
            still: list[_Job] = []
            for job, reply in zip(pending, replies):
                job.attempts += 1
                parsed = coe.parse_coe(clean_reply(reply, self.cfg.strip_think))
                if parsed.ok:
                    self._write(job, parsed)
                    continue
                job.last_reply, job.last_error = reply, parsed.error_code
                self.summary.parse_errors[parsed.error_code] += 1
                still.append(job)
            pending = still
            if not pending:
                return
        for job in pending:
            self._write(job, None)


def draft_coe(
    cfg: EmpathyRLConfig, teacher: Optional[Teacher] = None, progress: Optional[bool] = None
) -> DraftSummary:
    """Draft CoE examples for the selected prepared records into `cfg.draft.output` (see module doc).

    `teacher` defaults to the configured one (`make_teacher`), which is closed at the end. An
    `EndpointError` from the teacher stops the job after writing the summary (with `error` set); the
    records finished before it stay in the output, and a re-run skips them.
    """
    d = cfg.draft
    start = time.perf_counter()
    prepared_dir = d.prepared_dir or cfg.data.prepared_dir
    if teacher is None:
        check_teacher(d)
    output = Path(d.output)
    summary = DraftSummary(output=str(output), prepared=str(Path(prepared_dir) / f"{d.split}.parquet"))
    selected = select_records(d, prepared_dir)
    done = done_ids(output, d.lock_timeout_s)
    summary.selected = len(selected)
    todo: list[CounselingRecord] = []
    queued: set[str] = set()
    for record in selected:
        if record.id in done or record.id in queued:
            summary.skipped += 1
            continue
        queued.add(record.id)
        todo.append(record)
    log.info("draft-coe: %d record(s) selected from %s, %d already in %s, %d to draft",
             summary.selected, summary.prepared, summary.skipped, output, len(todo))
    own_teacher = teacher is None
    if todo and teacher is None:
        teacher = make_teacher(d, cfg.cluster.device)
    summary.teacher = teacher.name if teacher is not None else (d.teacher_model or str(d.teacher_url or d.teacher_path))
    show = cfg.logging.progress_bar if progress is None else progress
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="drafting CoE", unit="record", disable=not show)
    try:
        if todo:
            assert teacher is not None
            drafter = _Drafter(d, teacher, summary, bar)
            crisis = CrisisJudge.from_config(cfg.safety)
            for i in range(0, len(todo), d.concurrency):
                drafter.run_chunk([_prepare_job(r, d.anonymize, summary, crisis) for r in todo[i : i + d.concurrency]])
    except Exception as err:
        summary.error = str(err)
        raise
    finally:
        bar.close()
        if own_teacher and teacher is not None:
            teacher.close()
        summary.seconds = round(time.perf_counter() - start, 3)
        _write_summary(summary)
    log.info("draft-coe: drafted %d, failed %d, skipped %d in %.1fs", summary.drafted, summary.failed, summary.skipped, summary.seconds)
    return summary


def _prepare_job(record: CounselingRecord, do_anonymize: bool, summary: DraftSummary, crisis: CrisisJudge) -> _Job:
    """`crisis` is the config's assessor (`safety.*`: rules, classifier, optional judge), the same
    one prepare-data used for `record.crisis`; asked again because the query may come from a file
    prepared with other settings."""
    query = record.query
    if do_anonymize:
        cleaned = anonymize(query)
        summary.anonymized_changed += int(cleaned != query)
        query = cleaned
    return _Job(record, query, bool(record.crisis) or crisis.assess(query, record.language if record.language in ("zh", "en") else None).is_crisis)
