"""The reviewed CoE file as the source of truth: each decision rewrites it atomically and appends to an audit log.

Why the file itself and not a database: the SFT stage reads the same JSONL (`accepted_records`),
so what a reviewer sees, what is saved and what trains are one thing, and a crash loses at most
the decision being written (`write_records` replaces the file in one rename).

Who changed what goes to ``<file>.audit.jsonl``, one JSON object per change, appended after the
file was rewritten::

    {"time": "...Z", "reviewer": "ana", "id": "en-0003", "action": "edit",
     "status": {"old": "draft", "new": "draft"},
     "changes": {"L2": {"old": "...", "new": "..."}, "provenance.source": {"old": "drafted", "new": "edited"}}}

The audit log holds help-seeker-related text (old and new values of an edit), so it stays next to
the data file; the process log gets ids, actions and the reviewer's name only.

Two review servers (two reviewers, one file) are safe, and so is `draft-coe` appending to the file
while it is reviewed: every decision holds an exclusive lock on ``<file>.lock``
(`empathy_rl.file_lock`, which draft-coe takes for each append), re-reads the file when another
process changed it, and refuses a decision taken on a version of the record that is no longer
current (409).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from empathy_rl.coe_data import LAYER_KEYS, STATUSES, CoEDataError, CoERecord, read_records, utc_now, write_records
from empathy_rl.file_lock import LockTimeout, exclusive_lock, lock_path

log = logging.getLogger(__name__)

ACTIONS = ("accept", "reject", "edit", "reopen")
CONTENT_FIELDS = (*LAYER_KEYS, "answer")  # what trains: editing these makes the record "edited" and a draft again
EDITABLE_FIELDS = (*CONTENT_FIELDS, "notes")
MAX_REVIEWER_CHARS = 80


class ReviewError(ValueError):
    """A decision the store refuses; `status` is the HTTP status the page answers with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def check_reviewer(name: str) -> str:
    """A reviewer name: 1-80 printable characters (it is stored in the file and the audit log)."""
    if not isinstance(name, str) or not name.strip():
        raise ReviewError("--reviewer must name the person reviewing (a non-empty name)", 400)
    if len(name) > MAX_REVIEWER_CHARS or any(unicodedata.category(c).startswith("C") for c in name):
        raise ReviewError(f"--reviewer must be at most {MAX_REVIEWER_CHARS} printable characters", 400)
    return name.strip()


def record_version(record: CoERecord) -> str:
    """A short hash of the record's content and review state; a decision names the version it was taken on."""
    return hashlib.sha256(json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def incomplete_reason(record: CoERecord) -> Optional[str]:
    """Why the record cannot be accepted (e.g. "layer L2 is empty"), or None when it is complete."""
    try:
        record.response()
    except ValueError as err:
        return str(err)
    return None


def _field_value(record: CoERecord, name: str) -> str:
    if name in LAYER_KEYS:
        return record.layers[LAYER_KEYS.index(name)]
    return record.answer if name == "answer" else record.review.notes


def _stamp(path: Path) -> Optional[tuple[int, int, int]]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ReviewStore:
    """The records of one JSONL file and the decisions of one reviewer on them."""

    def __init__(self, path: str | os.PathLike[str], reviewer: str, max_field_chars: int = 20000, lock_timeout_s: float = 10.0):
        self.path = Path(path)
        self.reviewer = check_reviewer(reviewer)
        self.max_field_chars = max_field_chars
        self.lock_timeout_s = lock_timeout_s
        self.audit_path = self.path.with_name(self.path.name + ".audit.jsonl")
        self.lock_path = lock_path(self.path)
        self._mutex = threading.Lock()  # the threaded server: one decision at a time in this process
        self._records: list[CoERecord] = read_records(self.path)
        self._stamp = _stamp(self.path)

    # reading -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Re-read the file when another process (a second review server) rewrote it."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        try:
            self._records = read_records(self.path)
        except CoEDataError as err:
            raise ReviewError(f"{self.path} changed on disk and no longer reads: {err}", 409) from None
        self._stamp = stamp

    def records(self) -> list[CoERecord]:
        """A copy of every record, in file order, as the file holds them now."""
        with self._mutex:
            self._refresh()
            return copy.deepcopy(self._records)

    def first_draft(self) -> Optional[int]:
        """0-based position of the first record still in status draft (where a reviewer resumes)."""
        return next((i for i, r in enumerate(self.records()) if r.review.status == "draft"), None)

    def counts(self) -> dict[str, int]:
        """Records per review status, plus `total` and `reviewed` (accepted + rejected)."""
        records = self.records()
        out = {s: sum(r.review.status == s for r in records) for s in STATUSES}
        out["total"] = len(records)
        out["reviewed"] = out["accepted"] + out["rejected"]
        return out

    # deciding ------------------------------------------------------------------------------

    def accept(self, record_id: str, version: Optional[str] = None) -> dict[str, Any]:
        """Mark a complete record accepted (it will train); an incomplete one is refused, naming what is missing."""

        def change(rec: CoERecord) -> dict[str, Any]:
            reason = incomplete_reason(rec)
            if reason is not None:
                hint = " (the teacher's output did not parse: fill in the four layers and the answer from it)" if rec.raw else ""
                raise ReviewError(f"record {rec.id!r} cannot be accepted: {reason}{hint}")
            return self._set_status(rec, "accepted")

        return self._decide(record_id, version, "accept", change)

    def reject(self, record_id: str, version: Optional[str] = None) -> dict[str, Any]:
        """Mark a record rejected (it never trains; it stays in the file with who rejected it)."""
        return self._decide(record_id, version, "reject", lambda rec: self._set_status(rec, "rejected"))

    def reopen(self, record_id: str, version: Optional[str] = None) -> dict[str, Any]:
        """Put an accepted or rejected record back to draft (undo a decision)."""
        return self._decide(record_id, version, "reopen", lambda rec: self._set_status(rec, "draft"))

    def edit(self, record_id: str, fields: Any, version: Optional[str] = None) -> dict[str, Any]:
        """Change layers, answer or notes. A content change sets provenance.source "edited" and makes the record a draft again."""
        new_values = self.check_fields(fields)

        def change(rec: CoERecord) -> dict[str, Any]:
            changes: dict[str, Any] = {}
            for name, value in new_values.items():
                old = _field_value(rec, name)
                if value != old:
                    changes[name] = {"old": old, "new": value}
            if not changes:
                return {}
            layers = list(rec.layers)
            for name, diff in changes.items():
                if name in LAYER_KEYS:
                    layers[LAYER_KEYS.index(name)] = diff["new"]
                elif name == "answer":
                    rec.answer = diff["new"]
                else:
                    rec.review.notes = diff["new"]
            rec.layers = tuple(layers)  # type: ignore[assignment]
            if any(name in CONTENT_FIELDS for name in changes):
                if rec.provenance.source != "edited":
                    changes["provenance.source"] = {"old": rec.provenance.source, "new": "edited"}
                    rec.provenance.source = "edited"  # model and created_at stay: they say where the text began
                if rec.review.status != "draft":  # a decision covers the text it was taken on
                    changes.update(self._set_status(rec, "draft"))
            return changes

        return self._decide(record_id, version, "edit", change)

    def check_fields(self, fields: Any) -> dict[str, str]:
        """Validate an edit's `fields` object; ReviewError (400) names the offending field."""
        if not isinstance(fields, dict) or not fields:
            raise ReviewError(f"field 'fields' must be a non-empty object with keys from {list(EDITABLE_FIELDS)}", 400)
        out: dict[str, str] = {}
        for name, value in fields.items():
            if name not in EDITABLE_FIELDS:
                raise ReviewError(f"field 'fields.{name}' cannot be edited; editable: {list(EDITABLE_FIELDS)}", 400)
            if not isinstance(value, str):
                raise ReviewError(f"field 'fields.{name}' must be a string, got {type(value).__name__}", 400)
            if len(value) > self.max_field_chars:
                raise ReviewError(f"field 'fields.{name}' is {len(value)} characters; the limit is {self.max_field_chars} (review.max_field_chars)", 400)
            out[name] = value.replace("\r\n", "\n").replace("\r", "\n")
        return out

    def _set_status(self, rec: CoERecord, status: str) -> dict[str, Any]:
        old = rec.review.status
        if old == status:
            return {}
        rec.review.status = status
        if status == "draft":
            rec.review.reviewer, rec.review.reviewed_at = None, None
        else:
            rec.review.reviewer, rec.review.reviewed_at = self.reviewer, utc_now()
        return {"review.status": {"old": old, "new": status}}

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive `flock` on `<file>.lock` (`empathy_rl.file_lock`), shared by every review server and draft-coe."""
        try:
            with exclusive_lock(self.lock_path, self.lock_timeout_s):
                yield
        except LockTimeout:
            raise ReviewError(f"{self.lock_path} stayed locked by another review server or draft-coe for {self.lock_timeout_s:g} s "
                              "(review.lock_timeout_s); try again", 503) from None

    def _decide(self, record_id: Any, version: Optional[str], action: str, change: Callable[[CoERecord], dict[str, Any]]) -> dict[str, Any]:
        """Apply `change` to a copy of the record; on a change, rewrite the file, then append the audit line."""
        if not isinstance(record_id, str) or not record_id:
            raise ReviewError("field 'id' must be the record's id (a non-empty string)", 400)
        if version is not None and not isinstance(version, str):
            raise ReviewError("field 'version' must be a string", 400)
        with self._mutex, self._file_lock():
            self._refresh()
            position = next((i for i, r in enumerate(self._records) if r.id == record_id), None)
            if position is None:
                raise ReviewError(f"no record with id {record_id!r} in {self.path}", 404)
            current = self._records[position]
            if version is not None and version != record_version(current):
                raise ReviewError(f"record {record_id!r} changed since this page was loaded (another reviewer?); reload it", 409)
            rec = copy.deepcopy(current)
            changes = change(rec)
            if changes:
                records = [*self._records[:position], rec, *self._records[position + 1:]]
                write_records(self.path, records)
                self._records, self._stamp = records, _stamp(self.path)
                self._audit(record_id, action, current.review.status, rec, changes)
                log.info("review: %s %s by %s", action, record_id, self.reviewer)
            return {"id": record_id, "position": position, "changed": sorted(changes), "status": rec.review.status,
                    "source": rec.provenance.source, "version": record_version(rec), "incomplete": incomplete_reason(rec)}

    def _audit(self, record_id: str, action: str, old_status: str, rec: CoERecord, changes: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"time": utc_now(), "reviewer": self.reviewer, "id": record_id, "action": action,
                                 "status": {"old": old_status, "new": rec.review.status}}
        if action == "edit":
            entry["changes"] = {k: v for k, v in changes.items() if k != "review.status"}
        with self.audit_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
