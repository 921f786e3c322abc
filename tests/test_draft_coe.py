"""`empathy-rl draft-coe`: drafting CoE examples with a teacher over HTTP or in-process vLLM.

Fast tests talk to a real HTTP server written here (http.server in a thread) that answers the
OpenAI chat-completions JSON with a valid CoE reply, garbage, or garbage first and CoE later,
depending on a marker word in the seeker's text. The slow test serves the tiny model with vLLM's
own OpenAI-compatible server on CPU, then runs the local in-process teacher.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from empathy_rl import coe
from empathy_rl.cli import main as cli_main
from empathy_rl.coe_data import read_records
from empathy_rl.config import ConfigError, load_config
from empathy_rl.data.records import CounselingRecord, build_query, write_parquet
from empathy_rl.drafting import attempt_seed, clean_reply, done_ids, draft_coe, load_instructions, summary_path
from empathy_rl.openai_compat import EndpointError
from empathy_rl.teacher import TeacherRequest

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "EMPATHY_RL_TEST_TEACHER_KEY"
GARBAGE = "I hear you. Here is some advice without any tags."
VALID = coe.render_coe(
    ("Worried and tired.", "Pressure at work; all-or-nothing thinking.", "Wants understanding.", "Reflect, then explore."),
    "That sounds exhausting. What part of the week weighs on you most?",
)


def _record(rid: str, language: str, title: str, description: str, crisis: bool = False) -> CounselingRecord:
    return CounselingRecord(
        id=rid, source="test", language=language, title=title, description=description,
        query=build_query(title, description), answers=["an answer long enough"], topic="work_stress", crisis=crisis,
    )


# Marker words decide the fake teacher's reply: GOOD -> CoE, FLAKY -> garbage then CoE, BAD -> garbage.
RECORDS = [
    _record("aaaa000000000001", "en", "Work GOOD", "My manager keeps adding tasks and I sleep badly."),
    _record("aaaa000000000002", "zh", "考试 GOOD", "快要考试了，我每天都很焦虑，睡不着觉。"),
    _record("aaaa000000000003", "en", "Exams FLAKY", "I failed a test and feel like I will fail everything."),
    _record("aaaa000000000004", "en", "Alone BAD", "Since moving I have nobody to talk to in the evenings."),
    # The prepared flag is False on purpose: draft-coe runs the configured crisis assessment (safety.*) itself.
    _record("aaaa000000000005", "en", "", "GOOD I have been thinking about killing myself and I wrote a note."),
    # Raw PII, as if a prepared directory came from a tool that does not anonymize.
    _record("aaaa000000000006", "en", "Contact GOOD", "Write to me at sam.lee@example.com, I feel stuck at home."),
]


class FakeTeacher:
    """An OpenAI-compatible /chat/completions server: replies by marker, logs every request."""

    def __init__(self, mode: str = "ok", delay_s: float = 0.0) -> None:
        self.mode = mode
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with teacher.lock:
                    teacher.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if teacher.delay_s:
                    time.sleep(teacher.delay_s)
                if teacher.mode == "http500":
                    self._send(500, {"error": "engine crashed"})
                    return
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": teacher.reply(body)}}]})

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        if "GOOD" in user:
            return VALID
        if "FLAKY" in user:
            return GARBAGE if self.count(user) == 1 else VALID
        return GARBAGE

    def count(self, marker: str) -> int:
        with self.lock:
            return sum(marker in r["body"]["messages"][-1]["content"] for r in self.requests)

    def for_marker(self, marker: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if marker in r["body"]["messages"][-1]["content"]]

    def __enter__(self) -> "FakeTeacher":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    out = tmp_path / "prepared"
    write_parquet(RECORDS, out / "train.parquet")
    write_parquet([_record("bbbb000000000001", "en", "Held out GOOD", "A validation record.")], out / "validation.parquet")
    return out


def _overrides(teacher: FakeTeacher, prepared: Path, out: Path, *extra: str) -> list[str]:
    return [
        "model.path=unused", f"draft.teacher_url={teacher.url}", "draft.teacher_model=fake-teacher",
        f"draft.prepared_dir={prepared}", f"draft.output={out}", "draft.max_attempts=3", "draft.concurrency=2",
        f"draft.teacher_key_env={KEY_ENV}", "logging.progress_bar=false", *extra,
    ]


def test_drafts_retries_marks_failures_and_summarizes(prepared: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(KEY_ENV, "secret-123")
    out = tmp_path / "drafts" / "coe.jsonl"
    with FakeTeacher() as teacher:
        rc = cli_main(["draft-coe", *_overrides(teacher, prepared, out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "drafted 5, failed after retries 1" in printed

    records = {r.id: r for r in read_records(out)}
    assert list(records) == [r.id for r in RECORDS]  # ids are the prepared ids, one line each
    for rid in ("aaaa000000000001", "aaaa000000000002", "aaaa000000000003", "aaaa000000000005", "aaaa000000000006"):
        r = records[rid]
        assert r.review.status == "draft" and r.provenance.source == "drafted" and r.provenance.model == "fake-teacher"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.provenance.created_at or "")
        assert r.response() == VALID and r.raw is None and r.parse_error is None
    failed = records["aaaa000000000004"]
    assert failed.layers == ("", "", "", "") and failed.answer == ""
    assert failed.raw == GARBAGE and failed.parse_error == coe.parse_coe(GARBAGE).error_code == "missing_tag"
    assert failed.review.status == "draft" and not failed.complete

    # Retries: BAD asked max_attempts times with three different seeds, FLAKY twice, GOOD once each.
    bad = teacher.for_marker("BAD")
    assert len(bad) == 3 and len({r["body"]["seed"] for r in bad}) == 3
    assert len(teacher.for_marker("FLAKY")) == 2 and len(teacher.for_marker("GOOD")) == 4
    assert len(teacher.requests) == 9
    # Every request: the configured model, the key from the env var as Bearer, the CoE system prompt
    # plus the bundled instructions, and the seeker's text as the user turn.
    instructions = load_instructions()
    for req in teacher.requests:
        body = req["body"]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer secret-123"
        assert body["model"] == "fake-teacher" and body["temperature"] == 0.7 and body["max_tokens"] == 1024
        system, user = body["messages"]
        lang = "zh" if "考试" in user["content"] else "en"
        assert system == {"role": "system", "content": f"{coe.system_prompt(lang, 'full')}\n\n{instructions[lang]}"}
        assert user["role"] == "user"
    sent_queries = {r["body"]["messages"][1]["content"] for r in teacher.requests}
    assert RECORDS[0].query in sent_queries
    # The anonymizer ran before sending and before writing; the crisis flag came from the configured crisis assessment.
    assert not any("sam.lee@example.com" in q for q in sent_queries)
    assert "[EMAIL]" in records["aaaa000000000006"].query and "sam.lee" not in out.read_text(encoding="utf-8")
    assert [rid for rid, r in records.items() if r.crisis] == ["aaaa000000000005"]

    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert summary["selected"] == 6 and summary["skipped"] == 0
    assert summary["drafted"] == 5 and summary["failed"] == 1 and summary["retried"] == 2
    assert summary["requests"] == 9 and summary["parse_errors"] == {"missing_tag": 4}
    assert summary["crisis"] == 1 and summary["anonymized_changed"] == 1 and summary["teacher"] == "fake-teacher"
    assert summary["error"] is None and summary["seconds"] > 0


def test_resumes_skipping_done_ids_and_a_torn_last_line(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "coe.jsonl"
    with FakeTeacher() as teacher:
        first = draft_coe(load_config(None, _overrides(teacher, prepared, out, "draft.max_records=3")))
        assert (first.selected, first.drafted, first.failed, first.skipped) == (3, 3, 0, 0)
        # A crash in the middle of an append: the last record is cut in half.
        lines = out.read_bytes().splitlines(keepends=True)
        out.write_bytes(b"".join(lines[:2]) + lines[2][:40])
        assert done_ids(out) == {RECORDS[0].id, RECORDS[1].id}  # the torn line was removed
        before = len(teacher.requests)
        second = draft_coe(load_config(None, _overrides(teacher, prepared, out)))
        assert second.skipped == 2 and second.drafted + second.failed == 4
        assert not any(RECORDS[0].query == r["body"]["messages"][1]["content"] for r in teacher.requests[before:])
        third = draft_coe(load_config(None, _overrides(teacher, prepared, out)))
        assert (third.skipped, third.drafted, third.failed, third.requests) == (6, 0, 0, 0)
        assert len(teacher.requests) == before + second.requests
    assert [r.id for r in read_records(out)] == [r.id for r in RECORDS]


def test_split_and_language_filters(prepared: Path, tmp_path: Path) -> None:
    with FakeTeacher() as teacher:
        zh = draft_coe(load_config(None, _overrides(teacher, prepared, tmp_path / "zh.jsonl", "draft.languages=[zh]")))
        val = draft_coe(load_config(None, _overrides(teacher, prepared, tmp_path / "val.jsonl", "draft.split=validation")))
    assert zh.selected == 1 and [r.language for r in read_records(tmp_path / "zh.jsonl")] == ["zh"]
    assert val.drafted == 1 and [r.id for r in read_records(tmp_path / "val.jsonl")] == ["bbbb000000000001"]


def test_prepare_data_output_is_already_anonymized(tmp_path: Path) -> None:
    """prepare-data anonymizes, so the drafting pass of the anonymizer changes nothing on its output."""
    from empathy_rl.config import DataConfig, DataSourceConfig
    from empathy_rl.data import prepare_data

    source = tmp_path / "posts.jsonl"
    rows = [{"id": str(i), "language": "en", "title": f"Stuck GOOD {i}",
             "description": f"Call me on 415-555-01{i:02d} or mail jo{i}@example.org; I feel alone since my move.",
             "answers": ["It sounds lonely to start over somewhere new. " * 4]} for i in range(3)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prepare_data(DataConfig(sources=[DataSourceConfig(path=str(source))], prepared_dir=str(tmp_path / "p"),
                            val_fraction=0.0, test_fraction=0.0), progress=False)
    with FakeTeacher() as teacher:
        summary = draft_coe(load_config(None, _overrides(teacher, tmp_path / "p", tmp_path / "d.jsonl")))
    assert summary.drafted == 3 and summary.anonymized_changed == 0
    assert all("[EMAIL]" in r.query and "[PHONE]" in r.query for r in read_records(tmp_path / "d.jsonl"))


def test_no_authorization_header_without_key(prepared: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeTeacher() as teacher:
        draft_coe(load_config(None, _overrides(teacher, prepared, tmp_path / "d.jsonl", "draft.max_records=1")))
    assert [r["auth"] for r in teacher.requests] == [None]


def test_http_500_stops_with_endpoint_error_naming_url_and_keys(prepared: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "d.jsonl"
    with FakeTeacher(mode="http500") as teacher:
        with pytest.raises(EndpointError) as info:
            draft_coe(load_config(None, _overrides(teacher, prepared, out)))
        message = str(info.value)
        assert f"{teacher.url}/chat/completions answered HTTP 500" in message and "draft.teacher_url" in message
        summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
        assert "HTTP 500" in summary["error"] and summary["drafted"] == 0
        assert cli_main(["draft-coe", *_overrides(teacher, prepared, out)]) == 1
    assert "teacher error" in capsys.readouterr().err and not out.exists()


def test_timeout_stops_with_endpoint_error_naming_url_and_timeout_key(prepared: Path, tmp_path: Path) -> None:
    with FakeTeacher(delay_s=3.0) as teacher:
        start = time.monotonic()
        with pytest.raises(EndpointError) as info:
            draft_coe(load_config(None, _overrides(teacher, prepared, tmp_path / "d.jsonl", "draft.timeout_s=0.5")))
        assert time.monotonic() - start < 3.0
    message = str(info.value)
    assert teacher.url in message and "draft.timeout_s=0.5" in message


def test_teacher_and_config_errors_name_the_keys(prepared: Path, tmp_path: Path) -> None:
    base = ["model.path=unused", f"draft.prepared_dir={prepared}", f"draft.output={tmp_path / 'd.jsonl'}"]
    with pytest.raises(ConfigError, match=r"neither is set.*draft\.teacher_url.*draft\.teacher_path"):
        draft_coe(load_config(None, base))
    with pytest.raises(ConfigError, match=r"both are set"):
        draft_coe(load_config(None, [*base, "draft.teacher_url=http://127.0.0.1:9/v1", "draft.teacher_model=m",
                                     f"draft.teacher_path={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"draft\.teacher_model"):
        draft_coe(load_config(None, [*base, "draft.teacher_url=http://127.0.0.1:9/v1"]))
    with pytest.raises(ConfigError, match=r"draft\.teacher_path=.*config\.json"):
        draft_coe(load_config(None, [*base, f"draft.teacher_path={tmp_path}"]))
    for bad, key in (("draft.languages=[fr]", r"draft\.languages\[0\]"), ("draft.teacher_url=ftp://x", r"draft\.teacher_url"),
                     ("draft.temperature=0", r"draft\.max_attempts=3 with draft\.temperature=0"),
                     ("draft.concurrency=0", r"draft\.concurrency"), ("draft.split=dev", r"draft\.split")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [*base, bad])
    bad_file = tmp_path / "instr.yaml"
    bad_file.write_text("en: only english\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"draft\.instructions_file: .*instr\.yaml.*'zh'"):
        load_instructions(str(bad_file))
    assert not (tmp_path / "d.jsonl").exists()


class _ScriptedTeacher:
    """A teacher object without HTTP: replies from a list (for reply clean-up rules)."""

    name = "scripted"

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.seeds: list[int] = []

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str]:
        self.seeds += [r.seed for r in requests]
        return [self.replies.pop(0) for _ in requests]

    def close(self) -> None:
        pass


def test_think_block_is_stripped_only_when_configured(prepared: Path, tmp_path: Path) -> None:
    thinking = f"<think>\nThe seeker sounds tired.\n</think>\n\n{VALID}"
    assert coe.parse_coe(clean_reply(thinking, True)).ok and not coe.parse_coe(clean_reply(thinking, False)).ok
    over = ["model.path=unused", f"draft.prepared_dir={prepared}", "draft.max_records=1", "logging.progress_bar=false"]
    kept = draft_coe(load_config(None, [*over, f"draft.output={tmp_path / 'a.jsonl'}"]), teacher=_ScriptedTeacher([thinking]))
    assert kept.drafted == 1 and read_records(tmp_path / "a.jsonl")[0].response() == VALID
    strict = _ScriptedTeacher([thinking] * 2)
    cfg = load_config(None, [*over, f"draft.output={tmp_path / 'b.jsonl'}", "draft.strip_think=false", "draft.max_attempts=2"])
    assert draft_coe(cfg, teacher=strict).failed == 1
    record = read_records(tmp_path / "b.jsonl")[0]
    assert record.parse_error == "outside_text" and record.raw == thinking
    assert strict.seeds == [attempt_seed(0, RECORDS[0].id, 0), attempt_seed(0, RECORDS[0].id, 1)] and len(set(strict.seeds)) == 2


# --------------------------------------------------------------------------------------------
# Slow: vLLM's OpenAI-compatible server and the in-process vLLM teacher, on the tiny model
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", VLLM_CACHE_ROOT=str(REPO / ".cache" / "vllm"))
    return env


def _served_requests(url: str) -> float:
    """Finished requests as counted by the vLLM server itself (Prometheus /metrics)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


@pytest.fixture
def vllm_server(tiny_model_dir: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path / "vllm-server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
           "--served-model-name", "tiny-teacher", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "1024", "--max-num-seqs", "8", "--enforce-eager", "--no-enable-chunked-prefill",
           "--seed", "0", "--uvicorn-log-level", "warning"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=_cpu_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy within 240 s:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its engine-core child (own session)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.slow
def test_against_vllm_openai_server_and_local_vllm_teacher(vllm_server: str, bundled_data_dir: Path, tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "served.jsonl"
    over = ["model.path=unused", f"draft.prepared_dir={bundled_data_dir}", "draft.max_records=4", "draft.max_attempts=2",
            "draft.concurrency=2", "draft.temperature=1.0", "draft.max_tokens=48", "draft.prompt_style=compact",
            "logging.progress_bar=false"]
    served_before = _served_requests(vllm_server)
    cfg = load_config(None, [*over, f"draft.teacher_url={vllm_server}", "draft.teacher_model=tiny-teacher", f"draft.output={out}"])
    summary = draft_coe(cfg)
    print(summary.format())  # shown with -s: what the random tiny model managed
    records = read_records(out)
    assert len(records) == 4 and summary.drafted + summary.failed == 4 and summary.skipped == 0
    # Our count of attempts is what the server itself finished; with 2 attempts a record takes 1 or 2
    # requests, and every failed one was retried.
    assert _served_requests(vllm_server) - served_before == summary.requests == 4 + summary.retried
    assert summary.retried >= summary.failed
    for r in records:
        assert r.provenance.source == "drafted" and r.provenance.model == "tiny-teacher" and r.review.status == "draft"
        if r.parse_error is None:
            assert r.complete
        else:  # the random tiny model mostly fails the strict parser
            assert r.raw and r.parse_error in coe.parse_coe(r.raw).codes and r.layers == ("", "", "", "")
    again = draft_coe(cfg)
    assert (again.skipped, again.requests) == (4, 0) and _served_requests(vllm_server) - served_before == summary.requests

    # The local in-process teacher, through the command line in a fresh interpreter (vLLM reads its
    # environment at start-up), on 2 records.
    local_out = tmp_path / "local.jsonl"
    cmd = [sys.executable, "-m", "empathy_rl.cli", "draft-coe", "--prepared-dir", str(bundled_data_dir), "--output", str(local_out),
           *[o for o in over if not o.startswith(("draft.max_records", "draft.prepared_dir"))], "draft.max_records=2",
           f"draft.teacher_path={tiny_model_dir}", "draft.local_max_model_len=1024"]
    done = subprocess.run(cmd, env=_cpu_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    local = read_records(local_out)
    summary_local = json.loads(summary_path(local_out).read_text(encoding="utf-8"))
    print(done.stdout)
    assert [r.id for r in local] == [r.id for r in records[:2]]
    assert all(r.provenance.model == str(tiny_model_dir) for r in local)
    assert summary_local["drafted"] + summary_local["failed"] == 2
    assert summary_local["requests"] == summary_local["drafted"] + 2 * summary_local["failed"]
    assert Counter(r.parse_error is None for r in local)[True] == summary_local["drafted"]
