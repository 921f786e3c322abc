"""The driver's reward client: one interface over three ways to reach the reward service.

`reward.service` picks the way:

- `start`: the run deploys its own Serve app and deletes it at shutdown; the trainer names it
  `<run id>-<reward.app_name>` (`empathy_rl.config.reward_app_name`), so runs sharing a cluster each
  own one, and passes that name here as `app_name` (also the app's HTTP route prefix);
- `attach`: a handle to an app already running in the same Ray cluster (`empathy-rl serve-reward`),
  which the run never deletes;
- `url`: the HTTP face of a service anywhere (`reward.service_url`), with the bearer token from the
  variable named by `reward.auth_token_env`.

Every wait has a deadline (`reward.request_timeout_s`) and transient failures (a replica replaced
during a rolling update, a refused connection, a 5xx, a timeout) are retried with exponential
backoff, at most `reward.max_retries` times. What is left raises `RewardServiceError`, whose message
names the reward stage, the chunk and the config key to look at. A bad request (4xx) is never
retried: the same bytes would fail the same way.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, fields
from typing import Any, Callable, Optional, Sequence, TypeVar

from empathy_rl.config import RewardConfig
from reward.types import Score, ScoreRequest

log = logging.getLogger("empathy_rl.reward")
T = TypeVar("T")
_SCORE_FIELDS = tuple(f.name for f in fields(Score))
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class RewardServiceError(RuntimeError):
    """The reward stage failed; the message says where and which config key governs it."""


class _Transient(Exception):
    """One failed attempt worth retrying; `reason` is safe to log (no help-seeker text)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _retrying(cfg: RewardConfig, what: str, attempt_once: Callable[[int], T]) -> T:
    """Run `attempt_once(attempt)` until it returns, retrying `_Transient` failures with backoff."""
    reason = ""
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            delay = cfg.retry_backoff_s * 2 ** (attempt - 1)
            log.warning("reward stage: %s failed (%s); retry %d/%d in %.1fs", what, reason, attempt, cfg.max_retries, delay)
            time.sleep(delay)
        try:
            return attempt_once(attempt)
        except _Transient as err:
            reason = err.reason
    raise RewardServiceError(
        f"reward stage: {what} failed after {cfg.max_retries + 1} attempt(s) (reward.max_retries={cfg.max_retries}): {reason}"
    )


class _HandleBackend:
    """Chunks go out at once through the `DeploymentHandle` (so Serve can batch them), then are collected."""

    def __init__(self, handle: Any, cfg: RewardConfig):
        import ray.exceptions
        from ray.serve import exceptions as serve_errors

        self.handle, self.cfg = handle, cfg
        self.transient = (ray.exceptions.RayActorError, serve_errors.BackPressureError, serve_errors.ReplicaUnavailableError)

    def score_chunks(self, chunks: list[list[ScoreRequest]]) -> list[list[Score]]:
        return self.finish(chunks, self.send(chunks))

    def send(self, chunks: list[list[ScoreRequest]]) -> list[tuple[Any, float]]:
        """Send every chunk now; `finish` collects them (each waits at most its own deadline from sending)."""
        return [(self.handle.score_chunk.remote(chunk), time.monotonic()) for chunk in chunks]

    def finish(self, chunks: list[list[ScoreRequest]], sent: list[tuple[Any, float]]) -> list[list[Score]]:
        return [self._collect(i, chunks, sent[i]) for i in range(len(chunks))]

    def _collect(self, i: int, chunks: list[list[ScoreRequest]], first: tuple[Any, float]) -> list[Score]:
        timeout = self.cfg.request_timeout_s

        def attempt_once(attempt: int) -> list[Score]:
            response, sent_at = first if attempt == 0 else (self.handle.score_chunk.remote(chunks[i]), time.monotonic())
            try:
                return response.result(timeout_s=max(0.0, sent_at + timeout - time.monotonic()))
            except TimeoutError:  # also ray's GetTimeoutError
                response.cancel()
                raise _Transient(f"no answer within reward.request_timeout_s={timeout}s") from None
            except self.transient as err:
                raise _Transient(type(err).__name__) from None
            except Exception as err:  # an error inside the replica: retrying would repeat it
                raise RewardServiceError(
                    f"reward stage: app {self.cfg.app_name!r} failed on chunk {i + 1}/{len(chunks)}: {type(err).__name__}: {err}"
                ) from err

        return _retrying(self.cfg, f"scoring chunk {i + 1}/{len(chunks)} on app {self.cfg.app_name!r}", attempt_once)

    def close(self) -> None:
        pass


class _HttpBackend:
    """`POST <service_url>/score`, one request per chunk, `reward.max_batch_chunks` in flight."""

    def __init__(self, cfg: RewardConfig):
        import requests
        from requests.adapters import HTTPAdapter

        from reward.http_api import token_from_env

        self.cfg = cfg
        self.base = (cfg.service_url or "").rstrip("/")
        self.requests = requests
        self.session = requests.Session()
        self.session.mount(self.base, HTTPAdapter(pool_maxsize=max(cfg.max_batch_chunks, 1)))
        token = token_from_env(cfg)
        self.headers = {"Authorization": f"Bearer {token.get()}"} if token else {}
        self.pool = ThreadPoolExecutor(max_workers=max(cfg.max_batch_chunks, 1), thread_name_prefix="reward-http")
        self._check_ready()

    def _get(self, path: str, what: str) -> Any:
        def attempt_once(_: int) -> Any:
            try:
                reply = self.session.get(self.base + path, headers=self.headers, timeout=self.cfg.request_timeout_s)
            except (self.requests.ConnectionError, self.requests.Timeout) as err:
                raise _Transient(type(err).__name__) from None
            return self._json_or_raise(reply, what)

        return _retrying(self.cfg, f"{what} at {self.base}", attempt_once)

    def _check_ready(self) -> None:
        """Fail at start-up, not at the first step, when the service is unreachable or the token is wrong."""
        self._get("/healthz", "readiness check")
        self.info = self._get("/info", "service info")

    def _json_or_raise(self, reply: Any, what: str) -> Any:
        if reply.status_code == 200:
            return reply.json()
        if reply.status_code in _RETRY_STATUS:
            raise _Transient(f"HTTP {reply.status_code}")
        try:
            err = reply.json()["error"]
            detail = f"{err['code']} at {err['field']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            detail = reply.text[:200]
        hint = ""
        if reply.status_code == 401:
            hint = f" (set the service's token in ${self.cfg.auth_token_env}, the variable named by reward.auth_token_env)"
        elif reply.status_code == 404:
            hint = f" (reward.service_url should end with the app's route prefix, e.g. /{self.cfg.app_name})"
        raise RewardServiceError(f"reward stage: {what} at {self.base}: HTTP {reply.status_code} {detail}{hint}")

    def score_chunks(self, chunks: list[list[ScoreRequest]]) -> list[list[Score]]:
        return self.finish(chunks, self.send(chunks))

    def send(self, chunks: list[list[ScoreRequest]]) -> list[Future]:
        """Queue every chunk's POST on the client's threads; `finish` collects them in order."""
        return [self.pool.submit(self._post, i, chunk, len(chunks)) for i, chunk in enumerate(chunks)]

    def finish(self, chunks: list[list[ScoreRequest]], sent: list[Future]) -> list[list[Score]]:
        # Each POST has its own deadline and retries (_post); this bound only stops a wait that could
        # otherwise hang: every chunk queued ahead may take as long as one chunk's retries.
        per_chunk = (self.cfg.max_retries + 1) * self.cfg.request_timeout_s + self.cfg.retry_backoff_s * 2 ** (self.cfg.max_retries + 1)
        out = []
        for i, future in enumerate(sent):
            try:
                out.append(future.result(timeout=per_chunk * (len(sent) + 1)))
            except FutureTimeout:
                raise RewardServiceError(
                    f"reward stage: chunk {i + 1}/{len(chunks)} at {self.base} not answered within {per_chunk * (len(sent) + 1):g}s "
                    f"(reward.request_timeout_s={self.cfg.request_timeout_s}, reward.max_retries={self.cfg.max_retries})"
                ) from None
        return out

    def _post(self, i: int, chunk: list[ScoreRequest], n: int) -> list[Score]:
        body = {"items": [{**asdict(item), "references": list(item.references)} for item in chunk]}
        what = f"scoring chunk {i + 1}/{n}"

        def attempt_once(_: int) -> list[Score]:
            try:
                reply = self.session.post(self.base + "/score", json=body, headers=self.headers, timeout=self.cfg.request_timeout_s)
            except self.requests.Timeout:
                raise _Transient(f"no answer within reward.request_timeout_s={self.cfg.request_timeout_s}s") from None
            except self.requests.ConnectionError as err:
                raise _Transient(type(err).__name__) from None
            scores = self._json_or_raise(reply, what)["scores"]
            if len(scores) != len(chunk):
                raise RewardServiceError(f"reward stage: {what}: {len(scores)} scores for {len(chunk)} candidates from {self.base}")
            return [Score(**{k: s[k] for k in _SCORE_FIELDS if k in s}) for s in scores]  # a missing required field is a TypeError

        return _retrying(self.cfg, f"{what} at {self.base}", attempt_once)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()


def _attach(app_name: str) -> Any:
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        return serve.get_app_handle(app_name)
    except RayServeException as err:
        raise RewardServiceError(
            f"reward.service=attach: no running Serve application {app_name!r} (reward.app_name) in this Ray cluster "
            f"({err}); start it with `empathy-rl serve-reward` and join its cluster with cluster.address"
        ) from err


class RewardClient:
    """Driver side: `score(items) -> (scores, seconds)` in input order, whichever way the service is reached."""

    def __init__(self, cfg: RewardConfig, start: Optional[bool] = None, http_port: Optional[int] = None, log_level: str = "WARNING"):
        """`start` overrides `reward.service` (True = start, False = attach); `http_port` also serves HTTP (start only)."""
        self.cfg = cfg
        self.app_name = cfg.app_name  # the Serve app it deploys (start) or attaches to; unused by url
        self.mode = cfg.service if start is None else ("start" if start else "attach")
        self.owns_app = False
        self.handle: Any = None
        self._backend: _HandleBackend | _HttpBackend
        if self.mode == "url":
            self._backend = _HttpBackend(cfg)
            return
        if self.mode == "start":
            from reward.serve_app import deploy_reward_app

            self.handle = deploy_reward_app(cfg, http=http_port is not None, http_port=http_port, log_level=log_level)
            self.owns_app = True
        else:
            self.handle = _attach(cfg.app_name)
        self._backend = _HandleBackend(self.handle, cfg)

    def score(self, items: Sequence[ScoreRequest], chunk_size: Optional[int] = None) -> tuple[list[Score], float]:
        """Scores in input order, and the seconds it took (chunks of `reward.chunk_size` by default)."""
        start = time.perf_counter()
        chunk_size = chunk_size or self.cfg.chunk_size
        chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
        scores = [s for chunk in self._backend.score_chunks(chunks) for s in chunk] if chunks else []
        return scores, time.perf_counter() - start

    def submit(self, items: Sequence[ScoreRequest], chunk_size: Optional[int] = None) -> "PendingScores":
        """Send `items` now and return at once; `PendingScores.result()` waits for their scores.

        For streaming (`rollout.stream_rewards`): a group is sent while other groups still generate.
        Every chunk keeps the deadline and retries of `score`.
        """
        chunk_size = chunk_size or self.cfg.chunk_size
        chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
        return PendingScores(self._backend, chunks, self._backend.send(chunks) if chunks else [])

    def shutdown(self) -> None:
        """Delete the app only if this client deployed it; an attached app or a URL service stays up."""
        self._backend.close()
        if self.owns_app:
            from ray import serve

            serve.delete(self.cfg.app_name)
            self.owns_app = False


class PendingScores:
    """Scores of one `RewardClient.submit` call, in input order, once `result()` has collected them."""

    def __init__(self, backend: Any, chunks: list[list[ScoreRequest]], sent: list):
        self.backend, self.chunks, self.sent = backend, chunks, sent

    def result(self) -> list[Score]:
        """Wait for every chunk (each within `reward.request_timeout_s` per attempt, retried as in `score`)."""
        return [s for chunk in self.backend.finish(self.chunks, self.sent) for s in chunk] if self.chunks else []
