"""The optional LLM crisis judge against a real local HTTP server speaking the OpenAI chat format:
success, malformed answer, timeout and HTTP 500 (failures fall back to rules + classifier)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from empathy_rl.config import ConfigError, load_config
from empathy_rl.crisis_judge import CrisisJudge, JudgeAnswerError, parse_answer
from empathy_rl.safety import assess_crisis

# What the server answers, chosen by the requested model name.
ANSWERS = {
    "urgent-suicide": '{"level": "urgent", "categories": ["suicide"]}',
    "fenced-concern": '```json\n{"level": "concern", "categories": ["self_harm"]}\n```',
    "none": '{"level": "none", "categories": []}',
    "malformed": "I think this person is at risk.",
    "bad-level": '{"level": "high", "categories": ["suicide"]}',
}


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        model = body["model"]
        if model == "error500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        if model == "slow":
            time.sleep(1.5)
        content = ANSWERS.get(model, ANSWERS["none"])
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        try:
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out first (the timeout test)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


MISSED = "Honestly I'm just so tired of everything lately."  # the rules see nothing here


def test_success_escalates_and_sends_the_prompt(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CRISIS_KEY", "secret-token")
    assert assess_crisis(MISSED).level == "none"
    judge = CrisisJudge(server_url, "urgent-suicide", key_env="TEST_CRISIS_KEY")
    result = judge.assess(MISSED, "en")
    assert result.level == "urgent" and result.categories == ("suicide",)
    assert result.evidence[-1].source == "judge"
    assert judge.stats == {"calls": 1, "failures": 0, "raised": 1, "lowered": 0}
    sent = _Handler.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer secret-token"
    assert sent["body"]["messages"][0]["role"] == "system" and "JSON" in sent["body"]["messages"][0]["content"]
    assert sent["body"]["messages"][1]["content"] == MISSED


def test_escalate_only_never_lowers_but_override_does(server_url: str) -> None:
    text = "I want to kill myself"
    assert CrisisJudge(server_url, "none").assess(text).level == "urgent"
    override = CrisisJudge(server_url, "none", mode="override")
    assert override.assess(text).level == "none" and override.stats["lowered"] == 1
    fenced = CrisisJudge(server_url, "fenced-concern").assess(MISSED)
    assert fenced.level == "concern" and fenced.categories == ("self_harm",)


@pytest.mark.parametrize("model", ["malformed", "bad-level", "error500"])
def test_bad_answers_fall_back_to_rules_and_are_counted(server_url: str, model: str) -> None:
    judge = CrisisJudge(server_url, model)
    for text in (MISSED, "I want to kill myself"):
        assert judge.assess(text).level == assess_crisis(text).level
    assert judge.stats["calls"] == 2 and judge.stats["failures"] == 2 and judge.stats["raised"] == 0


def test_timeout_falls_back_quickly(server_url: str) -> None:
    judge = CrisisJudge(server_url, "slow", timeout_s=0.3)
    start = time.monotonic()
    assert judge.assess("我想自杀").level == "urgent"
    assert time.monotonic() - start < 1.4
    assert judge.stats["failures"] == 1


def test_unreachable_endpoint_and_off_mode() -> None:
    judge = CrisisJudge("http://127.0.0.1:9/v1", "m", timeout_s=0.5)  # port 9 (discard): refused
    assert judge.assess(MISSED).level == "none" and judge.stats["failures"] == 1
    off = CrisisJudge(None, "", mode="off")
    assert off.assess("I want to kill myself").level == "urgent" and off.stats["calls"] == 0


def test_parse_answer_is_strict() -> None:
    assert parse_answer('{"level": "concern", "categories": ["abuse", "suicide"]}') == ("concern", ("suicide", "abuse"))
    assert parse_answer('{"level": "none", "categories": ["suicide"]}') == ("none", ())
    for bad in ("", "[]", '{"level": "urgent", "categories": "suicide"}', '{"level": "urgent", "categories": ["drugs"]}',
                'Sure! {"level": "urgent"}'):
        with pytest.raises(JudgeAnswerError):
            parse_answer(bad)


def test_config_keys() -> None:
    base = ["model.path=unused"]
    cfg = load_config(overrides=base)
    assert cfg.safety.judge_mode == "off" and cfg.safety.judge_url is None
    judge = CrisisJudge.from_config(load_config(overrides=[*base, "safety.judge_mode=escalate_only", "safety.judge_url=http://127.0.0.1:8000/v1",
                                                           "safety.judge_model=m", "safety.judge_timeout_s=3"]).safety)
    assert judge.mode == "escalate_only" and judge.timeout_s == 3.0
    with pytest.raises(ConfigError, match="safety.judge_url"):
        load_config(overrides=[*base, "safety.judge_mode=escalate_only"])
    with pytest.raises(ConfigError, match="safety.judge_mode"):
        load_config(overrides=[*base, "safety.judge_mode=sometimes"])


def test_prepare_data_takes_the_crisis_flag_from_the_configured_judge(server_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """prepare-data assesses every record through CrisisJudge.from_config(cfg.safety): with a judge
    that answers urgent, every record is flagged; with the judge off, only the rules and the
    classifier decide (an ordinary work-stress post stays unflagged with the rules alone)."""
    import json

    from empathy_rl.config import DataConfig, DataSourceConfig, SafetyConfig
    from empathy_rl.data.prepare import prepare_data

    source = tmp_path / "posts.jsonl"
    answer = "It sounds like the overtime has worn you down; it makes sense to feel emptied out. " * 2
    source.write_text(json.dumps({"id": "p1", "title": "Work", "description": "Too much overtime at work lately, I can't keep up with it.",
                                  "answers": [answer]}) + "\n", encoding="utf-8")

    def run(safety: SafetyConfig, name: str) -> int:
        cfg = DataConfig(sources=[DataSourceConfig(path=str(source), adapter="generic")], prepared_dir=str(tmp_path / name),
                         min_answer_chars=50, val_fraction=0.0, test_fraction=0.0)
        return prepare_data(cfg, progress=False, safety=safety).crisis

    assert run(SafetyConfig(classifier=False), "rules") == 0
    assert run(SafetyConfig(judge_mode="escalate_only", judge_url=server_url, judge_model="urgent-suicide"), "judged") == 1
