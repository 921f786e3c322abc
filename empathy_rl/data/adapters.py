"""Adapters: raw rows of one source layout -> `RawRecord`s (a help-seeker text and its answers).

An adapter knows the field names and structure of one kind of source and nothing else: it does
not anonymize, filter, detect language or assign splits (that is `prepare.py`'s job), so adding a
new source means adding one function here and one name to `ADAPTERS`.

A row that lacks a required field or has one of the wrong type raises `BadRowError` naming the
file, row and field; `prepare_data` decides whether that stops the run or is counted and skipped.
Each adapter takes `on_bad_row` so that skipping one bad row does not end the whole source.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from empathy_rl.data.readers import BadRowError, OnBadRow, Row, raise_bad_row, type_name

LANGUAGES = ("zh", "en")


@dataclass
class RawRecord:
    """One help-seeker text with its answers, as the source gives it (before anonymization)."""

    row_id: str  # the source's own id for this record: its id field, question link, or row number
    title: str
    description: str
    answers: list[str]
    topic: str = ""
    language: Optional[str] = None  # set when the row or the source layout says so
    split: Optional[str] = None  # set when the source carries its own split


Adapter = Callable[[Iterable[Row], str, OnBadRow], Iterator[RawRecord]]


# --------------------------------------------------------------------------------------------
# Field helpers
# --------------------------------------------------------------------------------------------


def _first_key(row: dict[str, Any], names: tuple[str, ...]) -> Optional[str]:
    """The first of `names` present in `row` with a non-null value."""
    for name in names:
        if row.get(name) is not None:
            return name
    return None


def _string(file: str, number: int, row: dict[str, Any], names: tuple[str, ...], required: bool) -> str:
    key = _first_key(row, names)
    if key is None:
        if required:
            raise BadRowError(file, number, names[0], f"missing (expected one of: {', '.join(names)})")
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise BadRowError(file, number, key, f"expected a string, got {type_name(value)}")
    return value


def _string_list(file: str, number: int, field: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BadRowError(file, number, field, f"expected a list of strings, got {type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRowError(file, number, field, f"expected a list of strings, got {type_name(item)} at index {i}")
    return list(value)


def _shown(value: Any) -> str:
    """A short repr of an unexpected value for error messages (never a long run of user text)."""
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "...'"


def _language(file: str, number: int, row: dict[str, Any]) -> Optional[str]:
    value = row.get("language")
    if value is None or value in ("", "auto"):
        return None
    if value not in LANGUAGES:
        raise BadRowError(file, number, "language", f"expected one of {', '.join(LANGUAGES)}, got {_shown(value)}")
    return str(value)


def _row_id(row: dict[str, Any], number: int) -> str:
    value = row.get("id")
    return str(int(number)) if value is None or value == "" else str(value)


def _each(rows: Iterable[Row], file: str, on_bad: OnBadRow, parse: Callable[[str, int, dict[str, Any]], Any]) -> Iterator[Any]:
    """Apply `parse` to every row, handing `BadRowError`s to `on_bad` so one bad row ends nothing else."""
    for number, row in rows:
        try:
            parsed = parse(file, number, row)
        except BadRowError as err:
            on_bad(err)
            continue
        yield parsed


# --------------------------------------------------------------------------------------------
# generic: one row = one record, common field names
# --------------------------------------------------------------------------------------------

GENERIC_TITLE = ("title", "question", "questionTitle")
GENERIC_DESCRIPTION = ("description", "text", "body", "questionText", "content")
GENERIC_ANSWER = ("answer", "answerText", "response")


def _generic_row(file: str, number: int, row: dict[str, Any]) -> RawRecord:
    title = _string(file, number, row, GENERIC_TITLE, required=False)
    description = _string(file, number, row, GENERIC_DESCRIPTION, required=True)
    if row.get("answers") is not None:
        answers = _string_list(file, number, "answers", row["answers"])
    elif _first_key(row, GENERIC_ANSWER) is not None:
        answers = [_string(file, number, row, GENERIC_ANSWER, required=True)]
    else:
        raise BadRowError(file, number, "answers", f"missing (expected answers or one of: {', '.join(GENERIC_ANSWER)})")
    topic = _string(file, number, row, ("topic",), required=False)
    return RawRecord(_row_id(row, number), title, description, answers, topic, _language(file, number, row))


def generic(rows: Iterable[Row], file: str, on_bad_row: OnBadRow = raise_bad_row) -> Iterator[RawRecord]:
    """One record per row. Fields, first present wins: title|question|questionTitle (optional);
    description|text|body|questionText|content (required); answers (list of strings) or
    answer|answerText|response (one string); optional id, topic, language (zh|en)."""
    return _each(rows, file, on_bad_row, _generic_row)


# --------------------------------------------------------------------------------------------
# counsel_chat: one row per answer, grouped into one record per question
# --------------------------------------------------------------------------------------------

_SPLIT_NAMES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}


@dataclass
class _CounselChatRow:
    key: str
    title: str
    description: str
    answer: str
    topic: str
    split: Optional[str]


def _counsel_chat_row(file: str, number: int, row: dict[str, Any]) -> _CounselChatRow:
    link = _string(file, number, row, ("questionLink",), required=False).strip()
    if link:
        key = link
    else:
        qid = row.get("questionID")
        if qid is None or qid == "":
            raise BadRowError(file, number, "questionID", "missing (and no questionLink to group by)")
        key = str(qid)
    split_value = _string(file, number, row, ("split",), required=False).strip().lower()
    if split_value and split_value not in _SPLIT_NAMES:
        raise BadRowError(file, number, "split", f"expected train, val or test, got {_shown(split_value)}")
    return _CounselChatRow(
        key=key,
        title=_string(file, number, row, ("questionTitle",), required=True),
        description=_string(file, number, row, ("questionText",), required=True),
        answer=_string(file, number, row, ("answerText",), required=True),
        topic=_string(file, number, row, ("topic",), required=False),
        split=_SPLIT_NAMES.get(split_value),
    )


def counsel_chat(rows: Iterable[Row], file: str, on_bad_row: OnBadRow = raise_bad_row) -> Iterator[RawRecord]:
    """counsel-chat CSV (one row per therapist answer) -> one record per question.

    Rows are grouped by `questionLink`, falling back to `questionID` when there is no link: in the
    published CSV `questionID` is numbered per topic, so the same ID names different questions in
    different topics (18 IDs do), while one question listed under two topics keeps its link. The
    answers are the question's distinct `answerText`s in file order; title, description, topic and
    split come from the question's first row. The file's own `split` column (train/val/test) is
    kept, so benchmarks stay comparable with published counsel-chat results.
    """
    groups: "OrderedDict[str, tuple[_CounselChatRow, list[str]]]" = OrderedDict()
    for parsed in _each(rows, file, on_bad_row, _counsel_chat_row):
        first, answers = groups.setdefault(parsed.key, (parsed, []))
        if parsed.answer not in answers:
            answers.append(parsed.answer)
    for key, (first, answers) in groups.items():
        yield RawRecord(key, first.title, first.description, answers, first.topic, None, first.split)


# --------------------------------------------------------------------------------------------
# cpsycoun: a multi-turn dialogue -> one long help-seeker text and one long reply
# --------------------------------------------------------------------------------------------

_ROLES = ("client", "counselor")


def _cpsycoun_row(file: str, number: int, row: dict[str, Any]) -> RawRecord:
    turns = row.get("turns")
    if turns is None:
        raise BadRowError(file, number, "turns", "missing")
    if not isinstance(turns, list):
        raise BadRowError(file, number, "turns", f"expected a list of turns, got {type_name(turns)}")
    said: dict[str, list[str]] = {role: [] for role in _ROLES}
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRowError(file, number, f"turns[{i}]", f"expected an object, got {type_name(turn)}")
        role, text = turn.get("role"), turn.get("text")
        if role not in _ROLES:
            raise BadRowError(file, number, f"turns[{i}].role", f"expected 'client' or 'counselor', got {_shown(role)}")
        if not isinstance(text, str):
            raise BadRowError(file, number, f"turns[{i}].text", f"expected a string, got {type_name(text)}")
        said[role].append(text.strip())
    reply = "\n".join(t for t in said["counselor"] if t)
    description = "\n".join(t for t in said["client"] if t)
    topic = _string(file, number, row, ("topic",), required=False)
    return RawRecord(_row_id(row, number), "", description, [reply] if reply else [], topic, "zh")


def cpsycoun(rows: Iterable[Row], file: str, on_bad_row: OnBadRow = raise_bad_row) -> Iterator[RawRecord]:
    """CPsyCoun dialogues -> Empathy-QA-shaped records: the client's turns joined with newlines
    become one long help-seeker description (no title), and the counselor's turns joined with
    newlines become its single long answer. Language is Chinese."""
    return _each(rows, file, on_bad_row, _cpsycoun_row)


ADAPTERS: dict[str, Adapter] = {"generic": generic, "counsel_chat": counsel_chat, "cpsycoun": cpsycoun}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown data adapter {name!r}; choose one of {', '.join(ADAPTERS)}") from None


def source_label(path: str | Path) -> str:
    """Default source name: the file stem (`data/x.jsonl` -> `x`)."""
    return Path(path).stem
