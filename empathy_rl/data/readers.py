"""Raw rows out of JSONL, JSON, CSV and Parquet files, with exact locations for error messages.

Every reader yields `(row_number, row_dict)`. The row number is a `RowNumber`: an `int` that also
knows how to describe itself ("line 7", "row 5 (line 9)", "index 3"), so a `BadRowError` raised
much later by an adapter can still point a user at the right place in the file. JSONL and CSV are
read with the standard library on purpose: it gives line-accurate positions, which bulk loaders
such as `datasets` do not.

A row that cannot be read at all (a JSONL line that is not JSON, a CSV row with the wrong number
of columns, a JSON item that is not an object) is a *bad row*: it is passed to `on_bad_row`,
which either raises it (stop) or counts it (skip); without a callback the reader raises.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pyarrow.parquet as pq

FORMATS = ("jsonl", "json", "csv", "parquet")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_CSV_FIELD_LIMIT = 2**31 - 1  # long counseling texts exceed csv's default 128 KiB field limit


class DataError(ValueError):
    """A data file cannot be used as a whole (missing, unknown format, not parseable)."""


class RowNumber(int):
    """A row's position in its file that also says in which unit it counts (line, row, index)."""

    unit: str
    line: Optional[int]

    def __new__(cls, value: int, unit: str = "row", line: Optional[int] = None) -> "RowNumber":
        obj = super().__new__(cls, value)
        obj.unit = unit
        obj.line = line
        return obj

    def describe(self) -> str:
        text = f"{self.unit} {int(self)}"
        if self.line is not None and self.unit != "line":
            text += f" (line {self.line})"
        return text


def describe_row(row: int) -> str:
    """'line 7' for a `RowNumber` from a JSONL file, 'row 7' for a plain int."""
    return row.describe() if isinstance(row, RowNumber) else f"row {row}"


class BadRowError(DataError):
    """One row is unusable. The message names the file, the row and, where known, the field.

    Example: ``data/x.jsonl line 7: field 'answers': expected a list of strings, got int``.
    """

    def __init__(self, file: str | Path, row: int, field: Optional[str], reason: str) -> None:
        self.file = str(file)
        self.row = row
        self.field = field
        self.reason = reason
        where = f"{self.file} {describe_row(row)}"
        what = f"field '{field}': {reason}" if field else reason
        super().__init__(f"{where}: {what}")

    def __reduce__(self) -> tuple[Any, ...]:  # keep the four arguments when pickled (Ray, multiprocessing)
        return (type(self), (self.file, self.row, self.field, self.reason))


OnBadRow = Callable[[BadRowError], None]
Row = tuple[int, dict[str, Any]]


def raise_bad_row(err: BadRowError) -> None:
    """The default `on_bad_row`: stop at the first bad row."""
    raise err


def resolve_format(path: str | Path, fmt: str = "auto") -> str:
    """The reader to use: `fmt` unless it is "auto", else the file extension's format."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(f"{path}: unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        known = ", ".join(sorted(_EXTENSIONS))
        raise DataError(f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
                        f"use one of {known} or set the source's format")
    return _EXTENSIONS[suffix]


def read_rows(path: str | Path, fmt: str = "auto", on_bad_row: Optional[OnBadRow] = None) -> Iterator[Row]:
    """Yield `(row_number, row)` for every readable row of `path`; bad rows go to `on_bad_row`."""
    resolved = resolve_format(path, fmt)
    if not Path(path).is_file():
        raise DataError(f"{path}: data file does not exist")
    on_bad = on_bad_row or raise_bad_row
    readers = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}
    return readers[resolved](path, on_bad)


def _read_jsonl(path: str | Path, on_bad: OnBadRow) -> Iterator[Row]:
    # bytes, decoded line by line: a line with invalid UTF-8 is one bad row, not the end of the file
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            number = RowNumber(line_no, "line")
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                on_bad(BadRowError(path, number, None, f"not valid UTF-8 (byte {err.start})"))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                on_bad(BadRowError(path, number, None, f"not valid JSON ({err.msg} at column {err.colno})"))
                continue
            except RecursionError:
                on_bad(BadRowError(path, number, None, "JSON nested too deeply"))
                continue
            if not isinstance(row, dict):
                on_bad(BadRowError(path, number, None, f"expected a JSON object, got {type_name(row)}"))
                continue
            yield number, row


def _read_json(path: str | Path, on_bad: OnBadRow) -> Iterator[Row]:
    with open(path, encoding="utf-8-sig") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from err
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from err
        except RecursionError as err:
            raise DataError(f"{path}: JSON nested too deeply") from err
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects or {{\"data\": [...]}}, got {type_name(data)}")
    for index, row in enumerate(data):
        number = RowNumber(index, "index")
        if not isinstance(row, dict):
            on_bad(BadRowError(path, number, None, f"expected a JSON object, got {type_name(row)}"))
            continue
        yield number, row


def _read_csv(path: str | Path, on_bad: OnBadRow) -> Iterator[Row]:
    try:
        yield from _read_csv_rows(path, on_bad)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}); save the file as UTF-8") from err
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from err


def _read_csv_rows(path: str | Path, on_bad: OnBadRow) -> Iterator[Row]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty CSV file (no header row)")
        previous_line = reader.line_num
        for row_no, values in enumerate(reader, start=1):
            number = RowNumber(row_no, "row", line=previous_line + 1)
            previous_line = reader.line_num
            if not values:  # a blank line
                continue
            if len(values) != len(header):
                on_bad(BadRowError(path, number, None, f"expected {len(header)} columns, got {len(values)}"))
                continue
            yield number, dict(zip(header, values))


def _read_parquet(path: str | Path, on_bad: OnBadRow) -> Iterator[Row]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid and friends for non-Parquet bytes
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    index = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield RowNumber(index, "row index"), row
            index += 1


def type_name(value: Any) -> str:
    """The short type name used in error messages: str, int, list, dict, null..."""
    return "null" if value is None else type(value).__name__
