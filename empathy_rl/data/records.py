"""The prepared-record schema: what `prepare-data` writes and what training and evaluation read.

One fixed Parquet schema for every source, so the trainer never needs to know where a record came
from. Files are written atomically (temp file + `os.replace`) so a reader never sees half a file,
and read back with a schema check that names the file and the offending column instead of failing
somewhere deep in training.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from empathy_rl.atomic_io import atomic_writer
from empathy_rl.data.readers import DataError

SPLITS = ("train", "validation", "test")


@dataclass
class CounselingRecord:
    """One help-seeker text with its counselor answers, anonymized and ready for training."""

    id: str  # sha1(source + source row id), first 16 hex: stable across runs
    source: str  # source name (config `name`, else the file stem)
    language: str  # "zh" | "en"
    title: str  # "" when the source has no title
    description: str
    query: str  # what the model sees: title + "\n" + description, or the description alone
    answers: list[str] = field(default_factory=list)
    topic: str = ""  # "" if unknown
    crisis: bool = False  # safety.detect_crisis(query): flags for care, never blocks
    split: str = "train"  # "train" | "validation" | "test"


PREPARED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("answers", pa.list_(pa.string()), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("crisis", pa.bool_(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)


def record_id(source: str, row_id: str) -> str:
    """Stable record id: first 16 hex digits of sha1("<source>\\x00<row id>")."""
    return hashlib.sha1(f"{source}\x00{row_id}".encode("utf-8")).hexdigest()[:16]


def build_query(title: str, description: str) -> str:
    """The text the model sees: the title and description on separate lines (no empty title line)."""
    title, description = title.strip(), description.strip()
    return f"{title}\n{description}" if title else description


class PreparedDataError(DataError):
    """A prepared Parquet file is missing or does not match `PREPARED_SCHEMA`."""


def write_parquet(records: Iterable[CounselingRecord], path: str | Path) -> None:
    """Write `records` to `path` with `PREPARED_SCHEMA`, atomically (`empathy_rl.atomic_io`: temp file, then `os.replace`)."""
    path = Path(path)
    table = pa.Table.from_pylist([dataclasses.asdict(r) for r in records], schema=PREPARED_SCHEMA)
    with atomic_writer(path, binary=True) as fh:
        pq.write_table(table, fh)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_string_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string(t.value_type)


_TYPE_CHECKS: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "answers": (_is_string_list, "list<string>"),
    "crisis": (pa.types.is_boolean, "bool"),
}


def check_schema(schema: pa.Schema, path: str | Path) -> None:
    """Raise `PreparedDataError` naming `path` and the first missing or mistyped column."""
    for expected in PREPARED_SCHEMA:
        if expected.name not in schema.names:
            raise PreparedDataError(f"{path}: column '{expected.name}' is missing; was it written by `empathy-rl prepare-data`?")
        check, wanted = _TYPE_CHECKS.get(expected.name, (_is_string, "string"))
        actual = schema.field(expected.name).type
        if not check(actual):
            raise PreparedDataError(f"{path}: column '{expected.name}' has type {actual}, expected {wanted}")


def read_parquet(path: str | Path) -> list[CounselingRecord]:
    """Read a prepared file back into records, checking columns, types and nulls first."""
    path = Path(path)
    if not path.is_file():
        raise PreparedDataError(f"{path}: prepared data file does not exist")
    check_schema(pq.read_schema(path), path)
    table = pq.read_table(path, columns=PREPARED_SCHEMA.names)
    for name in PREPARED_SCHEMA.names:
        nulls = table.column(name).null_count
        if nulls:
            raise PreparedDataError(f"{path}: column '{name}' has {nulls} null value(s)")
    inner_nulls = pc.list_flatten(table.column("answers")).null_count
    if inner_nulls:
        raise PreparedDataError(f"{path}: column 'answers' has {inner_nulls} null answer(s)")
    return [CounselingRecord(**row) for row in table.to_pylist()]


def load_records(prepared_dir: str | Path, split: str) -> list[CounselingRecord]:
    """The records of one split of a prepared directory (e.g. `runs/data`, "train")."""
    path = Path(prepared_dir) / f"{split}.parquet"
    if not path.is_file():
        raise PreparedDataError(f"{path} does not exist: run `empathy-rl prepare-data` first "
                                f"(splits are {', '.join(SPLITS)})")
    return read_parquet(path)
