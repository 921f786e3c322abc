"""The reward service: request contract, auth, client retries, `empathy-rl score` and `serve-reward`,
and, on one real local Ray Serve per module (tests marked `slow`), batching, order, components, the
HTTP face on a free loopback port, attach/url clients and a rolling update under load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empathy_rl import coe
from empathy_rl.cli import main
from empathy_rl.config import ConfigError, RewardConfig, is_loopback_host
from reward import components
from reward.http_api import ApiError, Limits, check_bearer, parse_score_body, server_token, Secret
from reward.types import Score, ScoreRequest

QUERY = "I can't sleep before my exams. I lie awake worrying that I will fail and disappoint my parents."
RELATED = "Exam worry that keeps you awake is exhausting. A short wind-down routine before bed and talking to your parents about the pressure may help you sleep."
REFERRAL = (
    "I hear how much pain you are in, and your safety matters most right now. Please call 988 or your local "
    "emergency services now, and ask someone you trust to stay with you."
)
UNRELATED = "The recipe needs two eggs, a cup of flour and twenty minutes in a hot oven."
TOKEN_VAR = "EMPATHY_RL_TEST_REWARD_TOKEN"
TOKEN = "test-token-7c1e"
SCORE_KEYS = {f.name for f in dataclasses.fields(Score)}  # total and every component
assert {"total", "format", "answer", "similarity", "crisis", "failure"} <= SCORE_KEYS
LIMITS = dict(max_items_per_request=8, max_text_chars=1000, max_references=2, max_request_bytes=64 * 1024)


def _coe(answer: str) -> str:
    return coe.render_coe(["worry, fear of failing", "exam pressure", "understanding", "validate, suggest"], answer)


def _item(**over: Any) -> dict[str, Any]:
    return {"query": QUERY, "response": _coe(RELATED), **over}


def _body(*items: dict[str, Any]) -> bytes:
    return json.dumps({"items": list(items)}).encode()


# (body bytes, expected status, expected field): every rejection the HTTP face must give as a 4xx naming the field
BAD_REQUESTS = [
    pytest.param(_body(_item(crisis="false")), 422, "items.0.crisis", id="crisis-as-string"),
    pytest.param(_body(_item(crisis=1)), 422, "items.0.crisis", id="crisis-as-int"),
    pytest.param(_body(_item(), _item(query=5)), 422, "items.1.query", id="query-as-number"),
    pytest.param(_body({"response": "x"}), 422, "items.0.query", id="query-missing"),
    pytest.param(_body(_item(response=None)), 422, "items.0.response", id="response-null"),
    pytest.param(_body(_item(language="fr")), 422, "items.0.language", id="language-unknown"),
    pytest.param(_body(_item(crissis=True)), 422, "items.0.crissis", id="misspelt-field"),
    pytest.param(_body(_item(references="one")), 422, "items.0.references", id="references-not-list"),
    pytest.param(_body(_item(references=["a", 2])), 422, "items.0.references.1", id="reference-not-string"),
    pytest.param(b'{"items": {"query": "q"}}', 422, "items", id="items-not-list"),
    pytest.param(b'{"nope": 1}', 422, "items", id="items-missing"),
    pytest.param(b"[]", 422, "body", id="body-not-object"),
    pytest.param(b'{"items": [{"query": "q", "response": "r", "crisis": NaN}]}', 422, "items.0.crisis", id="crisis-nan"),
    pytest.param(b'{"items": [{"query": "q", "response": "r", "crisis": 1e999}]}', 422, "items.0.crisis", id="crisis-huge-float"),
    pytest.param(b'{"items": ' + b"9" * 5000 + b"}", 400, "body", id="huge-integer"),
    pytest.param(b'{"items": [', 400, "body", id="truncated-json"),
    pytest.param(b"", 400, "body", id="empty-body"),
    pytest.param(b'{"items": [{"query": "\xff\xfe", "response": "r"}]}', 400, "body", id="invalid-utf8"),
    pytest.param(b'{"items": [{"query": "\\ud800", "response": "r"}]}', 400, "body", id="lone-surrogate"),
    pytest.param(b"[" * 5000 + b"]" * 5000, 400, "body", id="deep-nesting"),
    pytest.param(_body(*[_item()] * 9), 413, "items", id="too-many-items"),
    pytest.param(_body(_item(), _item(response="x" * 1001)), 413, "items.1.response", id="text-too-long"),
    pytest.param(_body(_item(references=["a", "b", "c"])), 413, "items.0.references", id="too-many-references"),
    pytest.param(_body(_item(query="q" * 20_000)) + b" " * (64 * 1024), 413, "body", id="body-over-byte-limit"),
]


def _cfg(**over: Any) -> RewardConfig:
    base: dict[str, Any] = dict(answer_mode="cosine", answer_threshold=0.3, max_batch_chunks=8, **LIMITS)
    base.update(over)
    return RewardConfig(**base)


# ------------------------------------------------------------------------------------------------
# The request contract, in process
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, status, field", BAD_REQUESTS)
def test_parser_rejects_bad_bodies_naming_the_field(raw: bytes, status: int, field: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_score_body(raw, Limits.from_config(_cfg()))
    assert (info.value.status, info.value.field) == (status, field)
    assert QUERY not in json.dumps(info.value.body())  # the submitted text is never echoed back


def test_parser_accepts_full_items_in_order() -> None:
    raw = _body(_item(crisis=True, language="en", references=["ref a", "ref b"]), {"query": "q", "response": "r"})
    first, second = parse_score_body(raw, Limits.from_config(_cfg()))
    assert first == ScoreRequest(QUERY, _coe(RELATED), True, "en", ("ref a", "ref b"))
    assert second == ScoreRequest("q", "r", False, "auto", ())
    assert parse_score_body(b'{"items": []}', Limits.from_config(_cfg())) == []  # empty batch: 200 with no scores


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_item_like = st.fixed_dictionaries(
    {"query": st.one_of(st.text(max_size=30), _json_leaf), "response": st.one_of(st.text(max_size=30), _json_leaf)},
    optional={"crisis": _json_leaf, "language": st.sampled_from(["zh", "en", "auto", "fr", ""]) | _json_leaf, "references": st.lists(st.text(max_size=5), max_size=4) | _json_leaf},
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    st.lists(_item_like, max_size=10).map(lambda items: json.dumps({"items": items}).encode()),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_bodies)
def test_parser_property_accepts_or_names_a_4xx(raw: bytes) -> None:
    """Any bytes: either valid items within the limits, or an ApiError with a 4xx status and a field."""
    limits = Limits.from_config(_cfg())
    try:
        items = parse_score_body(raw, limits)
    except ApiError as err:
        assert err.status in (400, 413, 422) and err.field and err.code
        return
    assert len(items) <= limits.max_items
    for item in items:
        assert isinstance(item.query, str) and isinstance(item.response, str) and isinstance(item.crisis, bool)
        assert item.language in ("zh", "en", "auto") and len(item.references) <= limits.max_references


def test_bearer_check() -> None:
    token = Secret(TOKEN)
    check_bearer(f"Bearer {TOKEN}", token)
    check_bearer(None, None)  # auth off
    for header in (None, "", f"Basic {TOKEN}", "Bearer wrong", f"Bearer {TOKEN}x", "Bearer"):
        with pytest.raises(ApiError) as info:
            check_bearer(header, token)
        assert info.value.status == 401 and info.value.field == "Authorization"
    assert TOKEN not in repr(token)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("10.0.0.5", False), ("reward.internal", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_server_token_required_beyond_loopback_or_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_VAR, raising=False)
    assert server_token(_cfg(auth_token_env=TOKEN_VAR)) is None  # loopback, not required
    for cfg in (_cfg(http_host="0.0.0.0", auth_token_env=TOKEN_VAR), _cfg(require_token=True, auth_token_env=TOKEN_VAR)):
        with pytest.raises(ConfigError, match=f"reward.auth_token_env.*|{TOKEN_VAR}") as info:
            server_token(cfg)
        assert TOKEN_VAR in str(info.value) and "reward.auth_token_env" in str(info.value)
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    assert server_token(_cfg(http_host="0.0.0.0", auth_token_env=TOKEN_VAR)).matches(TOKEN)


# ------------------------------------------------------------------------------------------------
# Client retries and timeouts, with a fake handle (no Ray)
# ------------------------------------------------------------------------------------------------


class _FakeResponse:
    def __init__(self, outcome: Any):
        self.outcome, self.cancelled = outcome, False

    def result(self, timeout_s: float | None = None) -> Any:
        assert timeout_s is not None  # every wait is bounded
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        self.cancelled = True


class _FakeHandle:
    """`handle.score_chunk.remote(chunk)` returning scripted outcomes, one per call."""

    def __init__(self, outcomes: list[Any]):
        self.outcomes, self.calls, self.responses = list(outcomes), 0, []
        self.score_chunk = self

    def remote(self, chunk: list[ScoreRequest]) -> _FakeResponse:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        response = _FakeResponse([_score(len(chunk))] * len(chunk) if outcome == "ok" else outcome)
        self.responses.append(response)
        return response


def _score(x: float) -> Score:
    return Score(x, 1.0, 0.0, 0.0, 0.0, "")


def _handle_backend(handle: _FakeHandle, **over: Any):
    from reward.client import _HandleBackend

    return _HandleBackend(handle, _cfg(retry_backoff_s=0.0, **over))


def test_client_retries_transient_failures_then_succeeds() -> None:
    import ray.exceptions

    handle = _FakeHandle([TimeoutError("slow"), ray.exceptions.ActorUnavailableError("restarting", None), "ok"])
    out = _handle_backend(handle, max_retries=2).score_chunks([[ScoreRequest("q", "r")] * 3])
    assert out == [[_score(3)] * 3] and handle.calls == 3
    assert handle.responses[0].cancelled  # a timed-out request is cancelled before it is re-sent


def test_client_gives_up_after_max_retries_naming_the_stage_and_key() -> None:
    from reward.client import RewardServiceError

    handle = _FakeHandle([TimeoutError()] * 3)
    with pytest.raises(RewardServiceError) as info:
        _handle_backend(handle, max_retries=2, request_timeout_s=7.0).score_chunks([[ScoreRequest("q", "r")]])
    message = str(info.value)
    assert message.startswith("reward stage:") and "reward.request_timeout_s=7.0" in message and "reward.max_retries=2" in message
    assert handle.calls == 3


def test_client_does_not_retry_an_error_inside_the_replica() -> None:
    from reward.client import RewardServiceError

    handle = _FakeHandle([ValueError("bug in scoring"), "ok"])
    with pytest.raises(RewardServiceError, match="reward stage: app 'empathy-reward' failed on chunk 1/1"):
        _handle_backend(handle, max_retries=3).score_chunks([[ScoreRequest("q", "r")]])
    assert handle.calls == 1


# ------------------------------------------------------------------------------------------------
# `empathy-rl score` (in process, no Ray) and `empathy-rl serve-reward` refusals
# ------------------------------------------------------------------------------------------------

SCORE_ARGS = ["reward.encoder=minilm", "reward.answer_threshold=0.3", "logging.progress_bar=false"]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "bad_line, needle",
    [
        ('{"query": "q", "response": "r", "crisis": "false"}', "field 'crisis'"),
        ('{"query": "q"}', "field 'response'"),
        ('{"query": "q", "response": "r", "extra": 1}', "field 'extra'"),
        ('{"query": "q", "response": ', "not valid JSON"),
        ("", "empty line"),
    ],
)
def test_score_cli_bad_line_names_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_line: str, needle: str) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"query": "q", "response": "r"}, {"query": "q2", "response": "r2", "id": 7}, bad_line])
    out = tmp_path / "out.jsonl"
    assert main(["score", "--input", str(src), "--output", str(out), *SCORE_ARGS]) == 2
    err = capsys.readouterr().err
    assert f"{src}:3:" in err and needle in err
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # nothing half-written, no temp file left


def test_score_cli_invalid_utf8_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"query": "q", "response": "r"}\n{"query": "\xff", "response": "r"}\n')
    assert main(["score", "--input", str(src), *SCORE_ARGS]) == 2
    assert f"{src}:2: not valid JSON" in capsys.readouterr().err


def test_score_cli_scores_in_order_like_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reward.model import RewardModel

    rows = [
        {"query": QUERY, "response": _coe(RELATED), "id": "a"},
        {"query": QUERY, "response": _coe(UNRELATED)},
        {"query": QUERY, "response": "no tags at all", "crisis": False},
        {"query": "I want to end my life.", "response": _coe(REFERRAL), "crisis": True, "id": 4},
        {"query": "I want to end my life.", "response": _coe("Try to get more sleep."), "crisis": True, "language": "en"},
    ] * 5  # 25 lines: several batches of chunk_size * max_batch_chunks = 4
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "sub" / "out.jsonl"
    assert main(["score", "--input", str(src), "--output", str(out), *SCORE_ARGS, "reward.chunk_size=2", "reward.max_batch_chunks=2"]) == 0
    assert "scored 25 line(s)" in capsys.readouterr().err
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    cfg = RewardConfig(encoder="minilm", answer_threshold=0.3)
    expected = RewardModel(cfg).score([ScoreRequest(r["query"], r["response"], r.get("crisis", False), r.get("language", "auto")) for r in rows])
    assert len(got) == 25
    for line, row, score in zip(got, rows, expected):
        assert line.get("id") == row.get("id")
        assert set(line) - {"id"} == SCORE_KEYS
        assert line["failure"] == score.failure and line["format"] == score.format and line["crisis"] == score.crisis
        assert line["total"] == pytest.approx(score.total, abs=1e-5) and line["similarity"] == pytest.approx(score.similarity, abs=1e-5)
    assert [g["crisis"] for g in got[3:5]] == [1.0, -1.0] and got[2]["failure"] == "missing_tag"
    # stdout when --output is omitted
    assert main(["score", "--input", str(src), *SCORE_ARGS]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p.get("id"), p["failure"], p["crisis"]) for p in printed] == [(g.get("id"), g["failure"], g["crisis"]) for g in got]
    assert [p["total"] for p in printed] == pytest.approx([g["total"] for g in got], abs=1e-5)  # other batch sizes: float noise


def test_score_cli_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--input", str(tmp_path / "none.jsonl"), *SCORE_ARGS]) == 2
    assert "none.jsonl" in capsys.readouterr().err


def test_serve_reward_refuses_open_host_without_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    monkeypatch.delenv(TOKEN_VAR, raising=False)
    ray_before = ray.is_initialized()
    assert main(["serve-reward", "reward.http_host=0.0.0.0", f"reward.auth_token_env={TOKEN_VAR}", "reward.answer_threshold=0.3"]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "reward.http_host='0.0.0.0'" in err and "reward.auth_token_env" in err and TOKEN_VAR in err
    assert main(["serve-reward", "--detach", "reward.answer_threshold=0.3"]) == 2
    assert "cluster.address" in capsys.readouterr().err
    assert ray.is_initialized() == ray_before  # refused before Ray was started


def test_url_mode_config_rules() -> None:
    from empathy_rl.config import load_config

    with pytest.raises(ConfigError, match="reward.service_url"):
        load_config(None, ["model.path=x", "reward.service=url"])
    with pytest.raises(ConfigError, match="reward.max_items_per_request"):
        load_config(None, ["model.path=x", "reward.service=url", "reward.service_url=http://h:8000/empathy-reward", "reward.chunk_size=300"])


def test_reward_placement_group_needs_a_resource() -> None:
    from empathy_rl.config import load_config

    with pytest.raises(ConfigError, match="reward.placement_group=true needs reward.num_cpus_per_replica or reward.num_gpus_per_replica > 0"):
        load_config(None, ["model.path=x", "reward.placement_group=true", "reward.num_cpus_per_replica=0"])
    assert load_config("configs/qwen3-8b.yaml").reward.placement_group  # the GPU preset reserves its replicas


# ------------------------------------------------------------------------------------------------
# On a real local Ray Serve (one Ray per module)
# ------------------------------------------------------------------------------------------------


def _eventually(get: Any, done: Any, tries: int = 50) -> Any:
    """`get()` until `done(value)` or `tries` attempts (bounded; the caller asserts on the last value)."""
    import time

    value = get()
    for _ in range(tries):
        if done(value):
            break
        time.sleep(0.2)
        value = get()
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_port():
    import ray
    from ray import serve

    port = _free_port()
    previous = os.environ.get(TOKEN_VAR)
    os.environ[TOKEN_VAR] = TOKEN
    ray.init(num_cpus=2, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()
    if previous is None:
        os.environ.pop(TOKEN_VAR, None)
    else:
        os.environ[TOKEN_VAR] = previous


@pytest.fixture(scope="module")
def client(serve_port):
    """The run-owned app (start mode) with its HTTP face on loopback, token required."""
    from reward.serve_app import RewardClient

    c = RewardClient(_cfg(require_token=True, auth_token_env=TOKEN_VAR), http_port=serve_port)
    c.url = f"http://127.0.0.1:{serve_port}/empathy-reward"
    yield c
    c.shutdown()


def _post(url: str, raw: bytes, token: str | None = TOKEN):
    import requests

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.post(url, data=raw, headers=headers, timeout=120)


ITEMS = [
    ScoreRequest(QUERY, _coe(RELATED)),
    ScoreRequest(QUERY, _coe(UNRELATED)),
    ScoreRequest(QUERY, "no tags at all"),
    ScoreRequest("I want to end my life.", _coe(REFERRAL), crisis=True),
    ScoreRequest("I want to end my life.", _coe("Try to get more sleep."), crisis=True),
]


def _as_json(items: list[ScoreRequest]) -> bytes:
    return _body(*[{"query": i.query, "response": i.response, "crisis": i.crisis} for i in items])


@pytest.mark.slow
def test_scores_components_in_input_order(client) -> None:
    items = ITEMS * 3  # 15 items -> several chunks scored concurrently and batched together
    start = time.perf_counter()
    scores, seconds = client.score(items, chunk_size=2)
    wall = time.perf_counter() - start
    assert len(scores) == 15 and 0 < seconds <= wall  # the reported time is this call's own
    for i in range(0, 15, 5):
        related, unrelated, malformed, referral, no_referral = scores[i : i + 5]
        assert related.format == unrelated.format == 1.0 and related.failure == ""
        assert related.similarity > unrelated.similarity + 0.2
        assert related.answer == pytest.approx(components.answer_component(related.similarity, "cosine", None))  # cosine mode
        assert malformed.format == 0.0 and malformed.answer == 0.0 and malformed.failure == "missing_tag"
        assert referral.crisis == 1.0 and no_referral.crisis == -1.0
        assert related.total == pytest.approx(1.0 + related.answer)  # format 1 + answer, crisis 0
    assert scores[0] == scores[5] == scores[10]
    assert client.score([])[0] == []


@pytest.mark.slow
def test_http_score_matches_handle_in_order(client) -> None:
    reply = _post(client.url + "/score", _as_json(ITEMS))
    assert reply.status_code == 200
    got = reply.json()["scores"]
    expected, _ = client.score(ITEMS)
    assert [set(s) for s in got] == [SCORE_KEYS] * 5
    for g, e in zip(got, expected):
        assert g["failure"] == e.failure and g["format"] == e.format and g["crisis"] == e.crisis
        assert g["total"] == pytest.approx(e.total, abs=1e-5)
    empty = _post(client.url + "/score", b'{"items": []}')
    assert (empty.status_code, empty.json()) == (200, {"scores": []})


@pytest.mark.slow
@pytest.mark.parametrize("raw, status, field", BAD_REQUESTS)
def test_http_rejects_bad_requests_naming_the_field(client, raw: bytes, status: int, field: str) -> None:
    reply = _post(client.url + "/score", raw)
    assert reply.status_code == status
    assert reply.json()["error"]["field"] == field
    assert reply.headers["content-type"].startswith("application/json")


@pytest.mark.slow
def test_replica_survives_bad_requests(client) -> None:
    import requests

    for param in BAD_REQUESTS:
        assert _post(client.url + "/score", param.values[0]).status_code < 500
    assert requests.get(client.url + "/healthz", timeout=60).json() == {"status": "ok"}
    assert _post(client.url + "/score", _as_json(ITEMS[:1])).status_code == 200
    assert client.score(ITEMS[:2])[0][0].format == 1.0  # the handle path too


@pytest.mark.slow
def test_http_auth(client) -> None:
    import requests

    for token in (None, "wrong", TOKEN + "x"):
        reply = _post(client.url + "/score", _as_json(ITEMS[:1]), token=token)
        assert reply.status_code == 401 and reply.json()["error"]["field"] == "Authorization"
        assert reply.headers["www-authenticate"] == "Bearer"
    assert requests.get(client.url + "/info", timeout=60).status_code == 401
    info = requests.get(client.url + "/info", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()
    assert info["auth"] is True and info["encoder"] == "minilm" and info["limits"]["max_items"] == 8
    assert requests.get(client.url + "/healthz", timeout=60).status_code == 200  # readiness needs no token


_live_items = st.lists(
    st.fixed_dictionaries(
        {"query": st.text(max_size=40), "response": st.one_of(st.text(max_size=40), st.just(_coe(RELATED)))},
        optional={"crisis": st.one_of(st.booleans(), st.text(max_size=3)), "language": st.sampled_from(["zh", "en", "auto", "xx"])},
    ),
    max_size=10,
)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=_live_items)
def test_http_fuzz_never_5xx(client, items: list[dict[str, Any]]) -> None:
    reply = _post(client.url + "/score", _body(*items))
    valid = len(items) <= 8 and all(isinstance(i.get("crisis", False), bool) and i.get("language", "auto") != "xx" for i in items)
    if valid:
        assert reply.status_code == 200 and len(reply.json()["scores"]) == len(items)
    else:
        assert reply.status_code in (413, 422) and reply.json()["error"]["field"].startswith("items")


@pytest.mark.slow
def test_url_and_attach_clients_leave_the_app_running(client) -> None:
    from ray import serve

    from reward.serve_app import RewardClient

    expected, _ = client.score(ITEMS)
    for cfg in (
        _cfg(service="url", service_url=client.url, auth_token_env=TOKEN_VAR),
        _cfg(service="attach"),
    ):
        other = RewardClient(cfg)
        scores, _ = other.score(ITEMS * 2, chunk_size=3)
        assert [s.failure for s in scores] == [e.failure for e in expected] * 2
        assert [s.total for s in scores] == pytest.approx([e.total for e in expected] * 2, abs=1e-5)
        other.shutdown()
        assert "empathy-reward" in serve.status().applications  # neither client deletes what it did not start
    assert client.score(ITEMS[:1])[0][0].format == 1.0


@pytest.mark.slow
def test_replicas_run_in_their_own_placement_groups(serve_port) -> None:
    import ray
    from ray.util.placement_group import placement_group_table

    from reward.serve_app import RewardClient

    app = "reward-placed"
    owned = lambda: [g for g in placement_group_table().values() if app in g["name"]]  # noqa: E731  (Serve names them after the replica)
    placed = RewardClient(_cfg(app_name=app, placement_group=True, num_cpus_per_replica=0.5, num_replicas=1))
    try:
        groups = owned()
        assert [(g["state"], list(g["bundles"].values())) for g in groups] == [("CREATED", [{"CPU": 0.5}])]
        scores, _ = placed.score(ITEMS[:2])
        assert [s.format for s in scores] == [1.0, 1.0]
        bundle_cpu = f"CPU_group_0_{groups[0]['placement_group_id']}"  # the bundle's own resource: the replica holds all of it
        assert ray.cluster_resources()[bundle_cpu] == 0.5 and ray.available_resources().get(bundle_cpu, 0.0) == 0.0
    finally:
        placed.shutdown()
    gone = _eventually(owned, lambda gs: all(g["state"] == "REMOVED" for g in gs))
    assert gone and all(g["state"] == "REMOVED" for g in gone), [(g["name"], g["state"]) for g in gone]


@pytest.mark.slow
def test_url_client_with_wrong_token_and_attach_without_app(client, monkeypatch: pytest.MonkeyPatch) -> None:
    from reward.serve_app import RewardClient, RewardServiceError

    monkeypatch.setenv("EMPATHY_RL_TEST_WRONG_TOKEN", "nope")
    with pytest.raises(RewardServiceError, match="HTTP 401.*EMPATHY_RL_TEST_WRONG_TOKEN.*reward.auth_token_env"):
        RewardClient(_cfg(service="url", service_url=client.url, auth_token_env="EMPATHY_RL_TEST_WRONG_TOKEN", retry_backoff_s=0.0))
    with pytest.raises(RewardServiceError, match="HTTP 404.*route prefix"):
        RewardClient(_cfg(service="url", service_url=client.url + "-typo", auth_token_env=TOKEN_VAR, retry_backoff_s=0.0))
    with pytest.raises(RewardServiceError, match="reward.app_name"):
        RewardClient(_cfg(service="attach", app_name="no-such-reward-app"))


@pytest.mark.slow
def test_serve_reward_rolling_update_under_load(serve_port) -> None:
    """`serve-reward` deploys an app; running it again with a new threshold rolls it out while three
    threads keep scoring (HTTP and handle): every request succeeds, and the app then serves the new config."""
    import requests
    from ray import serve

    from reward.serve_app import RewardClient

    app = "reward-rolling"
    url = f"http://127.0.0.1:{serve_port}/{app}"
    args = ["serve-reward", "--detach", "cluster.address=auto", f"reward.app_name={app}", f"reward.http_port={serve_port}", "reward.answer_mode=binary"]
    assert main([*args, "reward.answer_threshold=-1.0"]) == 0  # every answer passes
    related = ScoreRequest(QUERY, _coe(RELATED))
    handle_client = RewardClient(_cfg(service="attach", app_name=app))
    assert handle_client.score([related])[0][0].answer == 1.0

    updating, done = threading.Event(), threading.Event()
    results: list[tuple[str, bool, bool]] = []  # (path, sent while updating, ok)
    errors: list[str] = []

    def load(path: str) -> None:
        for _ in range(2000):  # bounded; stops soon after the update
            during = updating.is_set()
            try:
                if path == "http":
                    reply = requests.post(url + "/score", data=_as_json(ITEMS), timeout=120)
                    ok = reply.status_code == 200 and len(reply.json()["scores"]) == len(ITEMS)
                    if not ok:
                        errors.append(f"HTTP {reply.status_code}")
                else:
                    ok = len(handle_client.score(ITEMS, chunk_size=2)[0]) == len(ITEMS)
            except Exception as err:  # recorded: the assertion below reports it
                ok = False
                errors.append(f"{path}: {type(err).__name__}: {err}")
            results.append((path, during, ok))
            if done.is_set():
                break

    threads = [threading.Thread(target=load, args=(p,)) for p in ("http", "http", "handle")]
    for t in threads:
        t.start()
    try:
        updating.set()
        assert main([*args, "reward.answer_threshold=1.0"]) == 0  # nothing reaches cos >= 1.0
        updating.clear()
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors and all(ok for _, _, ok in results)
    assert sum(1 for _, during, _ in results if during) >= 3  # the load really overlapped the update
    assert {p for p, _, _ in results} == {"http", "handle"}

    # Afterwards the app serves the new config (a router may need a moment to drop drained replicas).
    info = _eventually(lambda: requests.get(url + "/info", timeout=60).json(), lambda i: i["answer_threshold"] == 1.0)
    assert info["answer_threshold"] == 1.0 and info["thresholds"] == {"zh": 1.0, "en": 1.0} and info["auth"] is False
    reply = _eventually(lambda: requests.post(url + "/score", data=_as_json([related]), timeout=120).json()["scores"][0], lambda r: r["answer"] == 0.0)
    assert reply["format"] == 1.0 and reply["answer"] == 0.0 and reply["similarity"] > 0.3
    score = _eventually(lambda: handle_client.score([related])[0][0], lambda s: s.answer == 0.0)
    assert score.answer == 0.0 and score.similarity == pytest.approx(reply["similarity"], abs=1e-5)
    handle_client.shutdown()
    serve.delete(app)


@pytest.mark.slow
def test_serve_reward_with_a_trained_reward_model(serve_port, reward_model_dir) -> None:
    """A train-rm checkpoint served by `serve-reward`: T per language comes from the checkpoint, and
    HTTP scores a mixed zh/en batch exactly like the in-process `RewardModel` of `empathy-rl score`."""
    import requests
    from ray import serve

    from reward.model import RewardModel

    app = "reward-trained"
    url = f"http://127.0.0.1:{serve_port}/{app}"
    assert main(["serve-reward", "--detach", "cluster.address=auto", f"reward.app_name={app}", f"reward.http_port={serve_port}", f"reward.encoder={reward_model_dir}"]) == 0
    try:
        info = requests.get(url + "/info", timeout=60).json()
        assert info["encoder"] == str(reward_model_dir) and info["answer_threshold"] is None
        assert all(isinstance(t, float) for t in info["thresholds"].values())
        zh_query = "最近工作压力很大，每天加班到很晚，晚上也睡不好，感觉快撑不住了。"
        zh_answer = "听起来你长期加班，身体和情绪都很疲惫。可以试着和领导沟通工作量，也给自己留一点休息的时间。"
        items = [*ITEMS, ScoreRequest(zh_query, _coe(zh_answer)), ScoreRequest(zh_query, _coe(UNRELATED), language="zh")]
        reply = requests.post(url + "/score", data=_body(*[{"query": i.query, "response": i.response, "crisis": i.crisis, "language": i.language} for i in items]), timeout=120)
        assert reply.status_code == 200
        expected = RewardModel(RewardConfig(encoder=str(reward_model_dir))).score(items)
        got = reply.json()["scores"]
        assert [g["language"] for g in got] == [e.language for e in expected] and got[-1]["language"] == "zh"
        assert [g["failure"] for g in got] == [e.failure for e in expected]
        assert [g["total"] for g in got] == pytest.approx([e.total for e in expected], abs=1e-4)
    finally:
        serve.delete(app)


@pytest.mark.slow
def test_serve_reward_holds_its_app_until_stopped(serve_port) -> None:
    """Without --detach the command holds the app and deletes it (only it) when stopped."""
    from ray import serve

    from empathy_rl.config import EmpathyRLConfig, ModelConfig, load_config
    from reward.standalone import serve_reward

    cfg = load_config(
        None,
        ["cluster.address=auto", "reward.app_name=reward-held", f"reward.http_port={serve_port}", "reward.answer_mode=cosine"],
        base=EmpathyRLConfig(model=ModelConfig(path="")),
    )
    stop, lines, seen = threading.Event(), [], []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("  serving until"):  # deployed: look, then ask it to stop
            seen.append(set(serve.status().applications))
            stop.set()

    assert serve_reward(cfg, detach=False, echo=echo, stop=stop) == 0
    assert "reward-held" in seen[0] and "empathy-reward" in seen[0]
    apps = set(serve.status().applications)
    assert "reward-held" not in apps and "empathy-reward" in apps
    assert any(f"http://127.0.0.1:{serve_port}/reward-held" in line for line in lines)
