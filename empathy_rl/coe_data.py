"""CoE SFT examples as data: one JSON object per line, read and written with errors that name the place.

The SFT cold start trains on these records, `empathy-rl draft-coe` writes them (status ``draft``),
and the review page turns drafts into ``accepted`` or ``rejected`` ones. Only accepted records
train. The format is documented in docs/sft.md; a record looks like::

    {"id": "en-0001", "language": "en", "topic": "work_stress", "crisis": false,
     "query": "title\\ndescription",
     "layers": {"L1": "...", "L2": "...", "L3": "...", "L4": "..."},
     "answer": "...",
     "provenance": {"source": "written", "model": null, "created_at": "2026-11-23T23:00:00Z",
                    "parent_id": null},
     "review": {"status": "accepted", "reviewer": "empathy-rl maintainers",
                "reviewed_at": "2026-11-23T23:00:00Z", "notes": ""},
     "raw": null, "parse_error": null}

- ``provenance.source`` is ``written`` (by a person), ``drafted`` (by a teacher model, named in
  ``provenance.model``) or ``edited`` (a draft a reviewer changed).
- ``review.status`` is ``draft``, ``accepted`` or ``rejected``. An accepted record must have four
  non-empty layers and a non-empty answer that render to text the CoE parser accepts.
- A teacher draft that never parsed keeps the teacher's last output in ``raw`` and the parser's
  error in ``parse_error``; its layers and answer are empty strings and it cannot be accepted
  until a reviewer fills them in.

Records hold help-seeker text: callers log ids and counts, never queries, at INFO.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from empathy_rl import coe
from empathy_rl.atomic_io import atomic_write_lines
from empathy_rl.jsonl import iter_jsonl

SOURCES = ("written", "drafted", "edited")
STATUSES = ("draft", "accepted", "rejected")
LANGUAGES = ("zh", "en")
LAYER_KEYS = coe.LAYER_TAGS  # ("L1", "L2", "L3", "L4")


class CoEDataError(ValueError):
    """A record that breaks the format; the message starts with ``file:line`` and names the field."""


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with a trailing Z (seconds precision)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Provenance:
    source: str = "written"  # written | drafted | edited
    model: Optional[str] = None  # the teacher model of a draft
    created_at: Optional[str] = None  # ISO-8601 UTC
    parent_id: Optional[str] = None  # the record this one was derived from (an edit keeps the id; a redraft names its parent)


@dataclass
class Review:
    status: str = "draft"  # draft | accepted | rejected
    reviewer: Optional[str] = None
    reviewed_at: Optional[str] = None  # ISO-8601 UTC
    notes: str = ""


@dataclass
class CoERecord:
    """One SFT example: the help-seeker text, the four CoE layers, the answer, and where it came from."""

    id: str
    language: str
    query: str
    layers: tuple[str, str, str, str] = ("", "", "", "")
    answer: str = ""
    crisis: bool = False
    topic: Optional[str] = None
    provenance: Provenance = field(default_factory=Provenance)
    review: Review = field(default_factory=Review)
    raw: Optional[str] = None  # the teacher's output when it did not parse
    parse_error: Optional[str] = None  # the CoE parser's error code for `raw`

    @property
    def accepted(self) -> bool:
        return self.review.status == "accepted"

    @property
    def complete(self) -> bool:
        """Four non-empty layers and a non-empty answer that render to parseable CoE text."""
        try:
            self.response()
        except ValueError:
            return False
        return True

    def response(self) -> str:
        """The canonical CoE text of this record (``coe.render_coe``); ValueError when incomplete."""
        return coe.render_coe(self.layers, self.answer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "language": self.language,
            "topic": self.topic,
            "crisis": self.crisis,
            "query": self.query,
            "layers": dict(zip(LAYER_KEYS, self.layers)),
            "answer": self.answer,
            "provenance": dataclasses.asdict(self.provenance),
            "review": dataclasses.asdict(self.review),
            "raw": self.raw,
            "parse_error": self.parse_error,
        }

    @classmethod
    def from_dict(cls, obj: Any, where: str = "<record>") -> "CoERecord":
        """Validate and build a record; CoEDataError names ``where`` and the offending field."""
        if not isinstance(obj, dict):
            raise CoEDataError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")

        def need_str(key: str, value: Any, allow_empty: bool = False, optional: bool = False) -> Optional[str]:
            if value is None and optional:
                return None
            if not isinstance(value, str):
                raise CoEDataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
            if not allow_empty and not value.strip():
                raise CoEDataError(f"{where}: field {key!r} is empty")
            return value

        known = {"id", "language", "topic", "crisis", "query", "layers", "answer", "provenance", "review", "raw", "parse_error"}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise CoEDataError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        for key in ("id", "language", "query"):
            if key not in obj:
                raise CoEDataError(f"{where}: missing field {key!r}")
        rid = need_str("id", obj["id"])
        language = need_str("language", obj["language"])
        if language not in LANGUAGES:
            raise CoEDataError(f"{where}: field 'language' must be one of {list(LANGUAGES)}, got {language!r}")
        query = need_str("query", obj["query"])
        crisis = obj.get("crisis", False)
        if not isinstance(crisis, bool):
            raise CoEDataError(f"{where}: field 'crisis' must be true or false, got {crisis!r}")
        topic = need_str("topic", obj.get("topic"), optional=True)
        layers_obj = obj.get("layers", {})
        if not isinstance(layers_obj, dict):
            raise CoEDataError(f"{where}: field 'layers' must be an object with keys {list(LAYER_KEYS)}")
        extra = sorted(set(layers_obj) - set(LAYER_KEYS))
        if extra:
            raise CoEDataError(f"{where}: field 'layers' has unknown key(s) {extra}; expected {list(LAYER_KEYS)}")
        layers = tuple(need_str(f"layers.{k}", layers_obj.get(k, ""), allow_empty=True) for k in LAYER_KEYS)
        answer = need_str("answer", obj.get("answer", ""), allow_empty=True)

        def sub(key: str, kind: type) -> Any:
            value = obj.get(key) or {}
            if not isinstance(value, dict):
                raise CoEDataError(f"{where}: field {key!r} must be an object")
            names = {f.name for f in dataclasses.fields(kind)}
            bad = sorted(set(value) - names)
            if bad:
                raise CoEDataError(f"{where}: field {key!r} has unknown key(s) {bad}; known: {sorted(names)}")
            for name, val in value.items():
                if val is not None and not isinstance(val, str):
                    raise CoEDataError(f"{where}: field '{key}.{name}' must be a string or null, got {type(val).__name__}")
            return kind(**value)

        provenance = sub("provenance", Provenance)
        if provenance.source not in SOURCES:
            raise CoEDataError(f"{where}: field 'provenance.source' must be one of {list(SOURCES)}, got {provenance.source!r}")
        review = sub("review", Review)
        if review.notes is None:
            review.notes = ""
        if review.status not in STATUSES:
            raise CoEDataError(f"{where}: field 'review.status' must be one of {list(STATUSES)}, got {review.status!r}")
        raw = need_str("raw", obj.get("raw"), allow_empty=True, optional=True)
        parse_error = need_str("parse_error", obj.get("parse_error"), optional=True)
        record = cls(rid, language, query, layers, answer, crisis, topic, provenance, review, raw, parse_error)  # type: ignore[arg-type]
        if record.accepted:
            try:
                record.response()
            except ValueError as exc:
                raise CoEDataError(f"{where}: record {rid!r} is accepted but not a complete CoE example: {exc}") from None
        return record


def read_records(path: str | os.PathLike[str]) -> list[CoERecord]:
    """Every record of a JSONL file; CoEDataError names ``file:line`` and the field. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise CoEDataError(f"{path}: no such CoE data file")
    records: list[CoERecord] = []
    seen: dict[str, int] = {}
    for number, obj in iter_jsonl(path, CoEDataError):
        record = CoERecord.from_dict(obj, f"{path}:{number}")
        if record.id in seen:
            raise CoEDataError(f"{path}:{number}: duplicate id {record.id!r} (first on line {seen[record.id]})")
        seen[record.id] = number
        records.append(record)
    return records


def write_records(path: str | os.PathLike[str], records: Iterable[CoERecord]) -> int:
    """Write records atomically (`atomic_io`: temp file + rename), so a crash never leaves a half-written file."""
    return atomic_write_lines(path, (json.dumps(record.to_dict(), ensure_ascii=False) for record in records))


def append_record(path: str | os.PathLike[str], record: CoERecord) -> None:
    """Append one record and flush it (used by long drafting jobs so finished work survives a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def accepted_records(paths: Sequence[str | os.PathLike[str]]) -> list[CoERecord]:
    """The accepted records of several files, in order; ids must be unique across files."""
    out: list[CoERecord] = []
    where: dict[str, str] = {}
    for path in paths:
        for record in read_records(path):
            if record.id in where:
                raise CoEDataError(f"{path}: id {record.id!r} also appears in {where[record.id]}")
            where[record.id] = str(path)
            if record.accepted:
                out.append(record)
    return out


def bundled_path(name: str = "seed_coe.jsonl") -> Path:
    """Path of a CoE data file shipped in ``empathy_rl/assets/coe`` (the tiny demo's SFT examples)."""
    from importlib import resources

    return Path(str(resources.files("empathy_rl.assets").joinpath("coe", name)))
