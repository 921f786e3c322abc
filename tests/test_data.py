"""Readers, adapters, `prepare_data` and the prepared Parquet schema."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from empathy_rl.config import DataConfig, DataSourceConfig, SafetyConfig
from empathy_rl.data import (
    PREPARED_SCHEMA,
    BadRowError,
    CounselingRecord,
    DataError,
    PreparedDataError,
    load_records,
    prepare_data,
    read_parquet,
    write_parquet,
)
from empathy_rl.data.adapters import RawRecord, counsel_chat, cpsycoun, generic, get_adapter
from empathy_rl.data.prepare import assign_split, normalize_query
from empathy_rl.data.readers import read_rows
from empathy_rl.data.records import build_query, record_id

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LONG_EN = "Thank you for sharing this. It sounds like you have been carrying a lot on your own for a long time, and that is hard."
LONG_ZH = "谢谢你愿意说出来。听起来你一个人承受了很多，这真的很不容易。我们可以一起慢慢看看，是什么让你最难受，又有什么能让你感到一点支持和安慰。"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def qa(i: int, description: str | None = None, **extra: Any) -> dict[str, Any]:
    row = {"id": f"q{i}", "title": f"Question {i}", "description": description or f"I have felt low for {i} weeks and I do not know why.",
           "answers": [LONG_EN]}
    row.update(extra)
    return row


def data_cfg(tmp_path: Path, *sources: DataSourceConfig, **kw: Any) -> DataConfig:
    kw.setdefault("min_answer_chars", 50)
    return DataConfig(sources=list(sources), prepared_dir=str(tmp_path / "prepared"), **kw)


def rows_of(path: Path, fmt: str = "auto") -> list[tuple[int, dict[str, Any]]]:
    return list(read_rows(path, fmt))


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def test_jsonl_rows_are_numbered_by_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    rows = rows_of(path)
    assert [(int(n), r) for n, r in rows] == [(1, {"a": 1}), (3, {"a": 2})]
    assert rows[1][0].describe() == "line 3"


def test_jsonl_bad_lines_are_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{not json\n[1, 2]\n{"a": 4}\n', encoding="utf-8")
    with pytest.raises(BadRowError, match=r"x\.jsonl line 2: not valid JSON"):
        rows_of(path)
    bad: list[BadRowError] = []
    rows = list(read_rows(path, on_bad_row=bad.append))
    assert [int(n) for n, _ in rows] == [1, 4]
    assert [int(e.row) for e in bad] == [2, 3]
    assert "line 3: expected a JSON object, got list" in str(bad[1])


def test_json_list_and_data_wrapper(tmp_path: Path) -> None:
    plain = tmp_path / "a.json"
    plain.write_text(json.dumps([{"a": 1}, {"a": 2}]), encoding="utf-8")
    wrapped = tmp_path / "b.json"
    wrapped.write_text(json.dumps({"data": [{"a": 1}, 5]}), encoding="utf-8")
    assert [(int(n), r) for n, r in rows_of(plain)] == [(0, {"a": 1}), (1, {"a": 2})]
    bad: list[BadRowError] = []
    assert len(list(read_rows(wrapped, on_bad_row=bad.append))) == 1
    assert str(bad[0]).endswith("b.json index 1: expected a JSON object, got int")
    broken = tmp_path / "c.json"
    broken.write_text('[{"a": 1},\n oops]', encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.json line 2: not valid JSON"):
        rows_of(broken)


def test_csv_rows_know_their_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "text"])
        writer.writerow(["t1", "one line"])
        writer.writerow(["t2", "two\nlines"])
        writer.writerow(["t3", "after"])
    rows = rows_of(path)
    assert [r["title"] for _, r in rows] == ["t1", "t2", "t3"]
    assert [n.describe() for n, _ in rows] == ["row 1 (line 2)", "row 2 (line 3)", "row 3 (line 5)"]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("t4,x,extra\n")
    with pytest.raises(BadRowError, match=r"x\.csv row 4 \(line 6\): expected 2 columns, got 3"):
        rows_of(path)


def test_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "answers": [["x"], ["y", "z"]]}), path)
    rows = rows_of(path)
    assert [r for _, r in rows] == [{"text": "a", "answers": ["x"]}, {"text": "b", "answers": ["y", "z"]}]
    assert rows[1][0].describe() == "row index 1"


def test_format_from_config_and_unknown_extension(tmp_path: Path) -> None:
    odd = tmp_path / "data.txt"
    write_jsonl(odd, [{"a": 1}])
    with pytest.raises(DataError, match=r"data\.txt: cannot tell the format"):
        rows_of(odd)
    assert [r for _, r in rows_of(odd, "jsonl")] == [{"a": 1}]
    with pytest.raises(DataError, match="does not exist"):
        rows_of(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------------------------
# adapters
# --------------------------------------------------------------------------------------------


def test_generic_field_names(tmp_path: Path) -> None:
    rows = [
        (1, {"title": "T", "description": "D", "answers": ["a1", "a2"], "topic": "work", "language": "en", "id": 7}),
        (2, {"question": "Q", "text": "body text", "answer": "one"}),
        (3, {"questionTitle": "QT", "questionText": "QX", "answerText": "A"}),
        (4, {"content": "only content", "response": "R"}),
    ]
    records = list(generic(rows, "f.jsonl"))
    assert records[0] == RawRecord("7", "T", "D", ["a1", "a2"], "work", "en", None)
    assert (records[1].title, records[1].description, records[1].answers, records[1].row_id) == ("Q", "body text", ["one"], "2")
    assert (records[2].title, records[2].description, records[2].answers) == ("QT", "QX", ["A"])
    assert (records[3].title, records[3].description, records[3].answers) == ("", "only content", ["R"])


@pytest.mark.parametrize(
    "row, message",
    [
        ({"description": "d", "answers": 3}, "field 'answers': expected a list of strings, got int"),
        ({"description": "d", "answers": ["ok", 5]}, "field 'answers': expected a list of strings, got int at index 1"),
        ({"description": 12, "answers": []}, "field 'description': expected a string, got int"),
        ({"title": "t", "answers": ["a"]}, "field 'description': missing"),
        ({"description": "d"}, "field 'answers': missing"),
        ({"description": "d", "answers": [], "language": "fr"}, "field 'language': expected one of zh, en"),
    ],
)
def test_generic_bad_rows(row: dict[str, Any], message: str) -> None:
    from empathy_rl.data.readers import RowNumber

    with pytest.raises(BadRowError) as info:
        list(generic([(RowNumber(7, "line"), row)], "data/x.jsonl"))
    assert str(info.value).startswith(f"data/x.jsonl line 7: {message}")


def test_generic_skip_keeps_going() -> None:
    bad: list[BadRowError] = []
    rows = [(1, {"description": 1}), (2, {"description": "d", "answers": ["a"]})]
    assert [r.row_id for r in generic(rows, "f", bad.append)] == ["2"]
    assert len(bad) == 1 and bad[0].field == "description"


def test_counsel_chat_groups_answers_per_question() -> None:
    def row(qid: str, link: str, answer: str, split: str = "train", topic: str = "depression") -> dict[str, str]:
        return {"questionID": qid, "questionTitle": f"title {link}", "questionText": f"text {link}", "questionLink": link,
                "topic": topic, "answerText": answer, "split": split}

    rows = list(enumerate([
        row("1", "L1", "a"), row("2", "L2", "b", "val"), row("1", "L1", "c"),
        row("1", "L3", "d", "test"),  # same ID, different question (IDs are per topic in the real CSV)
        row("9", "L1", "a", topic="diagnosis"),  # the same question listed under a second topic
    ], start=1))
    records = list(counsel_chat(rows, "cc.csv"))
    assert [(r.row_id, r.answers, r.split) for r in records] == [("L1", ["a", "c"], "train"), ("L2", ["b"], "validation"),
                                                                ("L3", ["d"], "test")]
    assert (records[0].title, records[0].description, records[0].topic) == ("title L1", "text L1", "depression")
    no_link = [(1, {"questionID": "5", "questionTitle": "t", "questionText": "x", "answerText": "a"})]
    assert [(r.row_id, r.split) for r in counsel_chat(no_link, "cc.csv")] == [("5", None)]
    with pytest.raises(BadRowError, match="field 'split'"):
        list(counsel_chat([(1, dict(row("1", "L", "a"), split="dev"))], "cc.csv"))
    with pytest.raises(BadRowError, match="field 'answerText': missing"):
        list(counsel_chat([(1, {"questionID": "1", "questionTitle": "t", "questionText": "x"})], "cc.csv"))


def test_cpsycoun_joins_turns() -> None:
    row = {"id": "case_1", "topic": "Career", "turns": [
        {"role": "client", "text": "我最近很焦虑。"}, {"role": "counselor", "text": "听起来你压力很大。"},
        {"role": "client", "text": "工作太多了。"}, {"role": "counselor", "text": "我们一起看看。"},
    ]}
    (record,) = cpsycoun([(1, row)], "c.jsonl")
    assert record == RawRecord("case_1", "", "我最近很焦虑。\n工作太多了。", ["听起来你压力很大。\n我们一起看看。"], "Career", "zh", None)
    with pytest.raises(BadRowError, match=r"field 'turns\[1\]\.role': expected 'client' or 'counselor', got 'bot'"):
        list(cpsycoun([(1, {"turns": [{"role": "client", "text": "x"}, {"role": "bot", "text": "y"}]})], "c.jsonl"))
    with pytest.raises(BadRowError, match="field 'turns': expected a list of turns, got str"):
        list(cpsycoun([(1, {"turns": "hello"})], "c.jsonl"))


def test_unknown_adapter() -> None:
    with pytest.raises(ValueError, match="unknown data adapter 'nope'"):
        get_adapter("nope")


# --------------------------------------------------------------------------------------------
# records and schema
# --------------------------------------------------------------------------------------------


def make_record(i: int, **kw: Any) -> CounselingRecord:
    fields: dict[str, Any] = dict(id=record_id("s", str(i)), source="s", language="en", title=f"t{i}", description=f"d{i}",
                                  query=build_query(f"t{i}", f"d{i}"), answers=[f"a{i}", "b"], topic="", crisis=i % 2 == 0,
                                  split="train")
    fields.update(kw)
    return CounselingRecord(**fields)


def test_parquet_round_trip(tmp_path: Path) -> None:
    records = [make_record(i) for i in range(3)] + [make_record(3, answers=[])]
    path = tmp_path / "out" / "train.parquet"
    write_parquet(records, path)
    assert pq.read_schema(path).names == PREPARED_SCHEMA.names
    assert read_parquet(path) == records
    assert [p.name for p in path.parent.iterdir()] == ["train.parquet"]  # no temp file left behind
    write_parquet([], tmp_path / "empty.parquet")
    assert read_parquet(tmp_path / "empty.parquet") == []


def test_read_parquet_names_file_and_column(tmp_path: Path) -> None:
    table = pa.Table.from_pylist([vars(make_record(1))], schema=PREPARED_SCHEMA)
    missing = tmp_path / "missing_col.parquet"
    pq.write_table(table.drop_columns(["query"]), missing)
    with pytest.raises(PreparedDataError, match=r"missing_col\.parquet: column 'query' is missing"):
        read_parquet(missing)
    mistyped = tmp_path / "mistyped.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("answers"), "answers", pa.array(["one"])), mistyped)
    with pytest.raises(PreparedDataError, match=r"mistyped\.parquet: column 'answers' has type string, expected list<string>"):
        read_parquet(mistyped)


def test_load_records_missing_split(tmp_path: Path) -> None:
    with pytest.raises(PreparedDataError, match="run `empathy-rl prepare-data` first"):
        load_records(tmp_path, "train")


def test_query_building_and_ids() -> None:
    assert build_query(" Title ", " body ") == "Title\nbody"
    assert build_query("", "body") == "body"
    assert record_id("src", "1") == record_id("src", "1") != record_id("src2", "1")
    assert len(record_id("src", "1")) == 16


# --------------------------------------------------------------------------------------------
# prepare_data
# --------------------------------------------------------------------------------------------


def test_filters_dedup_and_counts(tmp_path: Path) -> None:
    rows = [
        qa(1),
        qa(2, description="short", title=""),  # query "short" < 10 chars
        qa(3, answers=["too short", "also short"]),  # no answer >= 50 chars
        qa(4, answers=["short", LONG_EN]),  # keeps only the long answer
        qa(5, title="QUESTION 1", description="I  have felt low for 1 weeks and I do not know why."),  # duplicate of q1
        qa(6, title="Ｑｕｅｓｔｉｏｎ 1", description=qa(1)["description"]),  # full-width duplicate of q1 after NFKC
        qa(7, description="我最近睡不好，总觉得活着没意思，也不知道该和谁说。", title="", answers=[LONG_ZH]),
    ]
    src = DataSourceConfig(path=str(write_jsonl(tmp_path / "qa.jsonl", rows)), adapter="generic")
    summary = prepare_data(data_cfg(tmp_path, src), progress=False)
    assert summary.rows_read == {"qa": 7}
    assert summary.records_built == {"qa": 7}
    assert summary.dropped == {"query_too_short": 1, "no_answer_long_enough": 1, "duplicate": 2}
    assert summary.records_kept == 3 == sum(summary.splits.values())
    assert summary.answers_dropped_short == 1
    assert summary.languages == {"en": 2, "zh": 1}
    assert summary.crisis == 1
    records = [r for split in ("train", "validation", "test") for r in load_records(tmp_path / "prepared", split)]
    by_id = {r.id: r for r in records}
    assert set(by_id) == {record_id("qa", f"q{i}") for i in (1, 4, 7)}
    assert by_id[record_id("qa", "q4")].answers == [LONG_EN]
    zh = by_id[record_id("qa", "q7")]
    assert (zh.language, zh.crisis, zh.title, zh.query) == ("zh", True, "", zh.description)
    assert by_id[record_id("qa", "q1")].query == "Question 1\nI have felt low for 1 weeks and I do not know why."
    saved = json.loads((tmp_path / "prepared" / "summary.json").read_text(encoding="utf-8"))
    assert saved["summary"]["dropped"] == {"duplicate": 2, "no_answer_long_enough": 1, "query_too_short": 1}
    text = summary.format()
    assert "records kept: 3" in text and "duplicate 2" in text and "I have felt" not in text


def test_per_source_min_answer_and_language_override(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [qa(1, answers=["a short but fine reply"])])
    strict = DataSourceConfig(path=str(path), adapter="generic")
    lenient = DataSourceConfig(path=str(path), adapter="generic", name="lenient", min_answer_chars=5, language="zh")
    summary = prepare_data(data_cfg(tmp_path, strict, lenient), progress=False)
    assert summary.kept_per_source == {"qa": 0, "lenient": 1}
    assert summary.languages == {"zh": 1}


def test_duplicate_source_names_are_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [qa(1)])
    src = DataSourceConfig(path=str(path), adapter="generic")
    with pytest.raises(DataError, match="both named 'qa'"):
        prepare_data(data_cfg(tmp_path, src, src), progress=False)


def splits_by_id(prepared: Path) -> dict[str, str]:
    return {r.id: r.split for split in ("train", "validation", "test") for r in load_records(prepared, split)}


def test_splits_are_deterministic_and_stable_under_growth(tmp_path: Path) -> None:
    rows = [qa(i) for i in range(200)]
    src = DataSourceConfig(path=str(write_jsonl(tmp_path / "qa.jsonl", rows)), adapter="generic")
    cfg = data_cfg(tmp_path, src, val_fraction=0.2, test_fraction=0.2)
    prepare_data(cfg, progress=False)
    first = splits_by_id(tmp_path / "prepared")
    prepare_data(cfg, progress=False)
    assert splits_by_id(tmp_path / "prepared") == first
    assert set(first.values()) == {"train", "validation", "test"}
    # more records, shuffled order: the old ones keep their split
    write_jsonl(tmp_path / "qa.jsonl", [qa(i) for i in range(250)][::-1])
    prepare_data(cfg, progress=False)
    grown = splits_by_id(tmp_path / "prepared")
    assert len(grown) == 250 and all(grown[k] == v for k, v in first.items())
    # another seed moves records
    prepare_data(data_cfg(tmp_path, src, val_fraction=0.2, test_fraction=0.2, split_seed=99), progress=False)
    assert splits_by_id(tmp_path / "prepared") != grown


def test_split_fractions() -> None:
    splits = [assign_split(f"id{i}", 1234, 0.1, 0.05) for i in range(20000)]
    assert abs(splits.count("validation") / 20000 - 0.1) < 0.01
    assert abs(splits.count("test") / 20000 - 0.05) < 0.01
    assert assign_split("x", 1, 0.0, 0.0) == "train"


def test_normalize_query() -> None:
    assert normalize_query("  Ｈｅｌｌｏ\n\tWorld ") == "hello world"


def test_bad_row_error_leaves_prepared_dir_untouched(tmp_path: Path) -> None:
    good = DataSourceConfig(path=str(write_jsonl(tmp_path / "good.jsonl", [qa(1), qa(2)])), adapter="generic")
    prepare_data(data_cfg(tmp_path, good), progress=False)
    prepared = tmp_path / "prepared"
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    bad_path = write_jsonl(tmp_path / "bad.jsonl", [qa(3), qa(4), {"description": "d", "answers": 5}])
    bad = DataSourceConfig(path=str(bad_path), adapter="generic")
    with pytest.raises(BadRowError) as info:
        prepare_data(data_cfg(tmp_path, bad), progress=False)
    assert str(info.value) == f"{bad_path} line 3: field 'answers': expected a list of strings, got int"
    assert (info.value.file, int(info.value.row), info.value.field) == (str(bad_path), 3, "answers")
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl", "prepared"]  # no staging left


def test_bad_rows_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([json.dumps(qa(1)), "{broken", json.dumps({"description": 3, "answers": []}),
                               json.dumps(qa(2))]) + "\n", encoding="utf-8")
    cfg = data_cfg(tmp_path, DataSourceConfig(path=str(path), adapter="generic"), on_bad_row="skip")
    with caplog.at_level(logging.WARNING):
        summary = prepare_data(cfg, progress=False)
    assert summary.rows_read == {"mixed": 4}
    assert summary.dropped == {"bad_row": 2}
    assert summary.records_kept == 2
    assert len(summary.bad_row_examples) == 2 and "line 3: field 'description'" in summary.bad_row_examples[1]
    assert "mixed.jsonl line 2" in caplog.text


def test_anonymized_before_writing_and_not_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    email = "helpseeker.secret@example.org"
    row = qa(1, description=f"Please write to me at {email}, I feel so alone lately.",
             answers=[LONG_EN + " Or call 555-123-4567."])
    src = DataSourceConfig(path=str(write_jsonl(tmp_path / "qa.jsonl", [row])), adapter="generic")
    cfg = data_cfg(tmp_path, src, val_fraction=0.0, test_fraction=0.0)
    with caplog.at_level(logging.DEBUG):
        prepare_data(cfg, progress=True)
    prepared = tmp_path / "prepared"
    for path in prepared.iterdir():
        assert email.encode() not in path.read_bytes()
    (record,) = load_records(prepared, "train")
    assert "[EMAIL]" in record.description and "[EMAIL]" in record.query
    assert record.answers[0].endswith("Or call [PHONE].")
    # the byte check is meaningful: the same text written without anonymization is visible
    write_parquet([make_record(1, description=email)], tmp_path / "control.parquet")
    assert email.encode() in (tmp_path / "control.parquet").read_bytes()
    captured = capsys.readouterr()
    for output in (caplog.text, captured.out, captured.err):
        assert email not in output and "feel so alone" not in output


# --------------------------------------------------------------------------------------------
# the real shared data
# --------------------------------------------------------------------------------------------


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared data {path} is not available")
    return path


def test_counsel_chat_real_file() -> None:
    path = shared_file("counsel-chat/20200325_counsel_chat.csv")
    records = list(counsel_chat(read_rows(path), str(path)))
    assert 700 <= len(records) <= 900  # 824 distinct questions (815 question IDs, reused across topics)
    assert all(r.answers and r.title and r.description for r in records)
    assert sum(len(r.answers) for r in records) >= 2000
    assert {r.split for r in records} == {"train", "validation", "test"}
    assert len({r.topic for r in records}) >= 25


def test_cpsycoun_eval_real_file() -> None:
    path = shared_file("cpsycoun/cpsycoune_eval.jsonl")
    records = list(cpsycoun(read_rows(path), str(path)))
    assert len(records) == 45
    assert len({r.topic for r in records}) == 9
    assert all(r.language == "zh" and r.title == "" and len(r.answers) == 1 for r in records)
    assert all(len(r.description) >= 100 and len(r.answers[0]) >= 100 for r in records)


def test_prepare_real_sources(tmp_path: Path) -> None:
    chat = shared_file("counsel-chat/20200325_counsel_chat.csv")
    eval_ = shared_file("cpsycoun/cpsycoune_eval.jsonl")
    cfg = DataConfig(
        sources=[DataSourceConfig(path=str(chat), adapter="counsel_chat", name="counsel_chat"),
                 DataSourceConfig(path=str(eval_), adapter="cpsycoun", name="cpsycoune")],
        prepared_dir=str(tmp_path / "prepared"),
    )
    # rules-only crisis flags: the encoder classifier adds ~2.4 min here (docs/safety.md, "Cost");
    # its prepare-data path is tested in tests/test_crisis_judge.py
    summary = prepare_data(cfg, progress=False, safety=SafetyConfig(classifier=False))
    assert summary.rows_read == {"counsel_chat": 2129, "cpsycoune": 45}
    assert summary.kept_per_source["counsel_chat"] >= 700
    assert summary.kept_per_source["cpsycoune"] == 45
    assert summary.languages == {"en": summary.kept_per_source["counsel_chat"], "zh": 45}
    assert summary.crisis > 0
    train = load_records(tmp_path / "prepared", "train")
    assert all(len(a) >= 100 for r in train for a in r.answers)
