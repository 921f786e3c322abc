"""The reward service: a Ray Serve deployment with a FastAPI face, and how it is deployed.

The deployment loads the `RewardModel` once per replica and scores chunks of candidates.
`score_chunk` is wrapped in `@serve.batch`, so chunks sent concurrently (from one driver, many
drivers, or HTTP requests) are merged into one encoder call of up to `reward.max_batch_chunks`
chunks. The trainer reaches it through a `DeploymentHandle` (`reward.client.RewardClient`); the HTTP
face (`@serve.ingress`) serves evaluation scripts and training jobs outside the Ray cluster:

    POST /<app_name>/score    {"items": [{"query", "response", "crisis"?, "language"?, "references"?}]}
                              -> {"scores": [{"total", "format", "answer", "similarity", "crisis", "failure"}]}
    GET  /<app_name>/healthz  readiness, no auth (no configuration in it)
    GET  /<app_name>/info     encoder, answer mode and threshold, weights, limits (auth like /score)

Bad input gets a 4xx JSON error naming the field (`reward.http_api`); auth is a bearer token when
the face binds beyond loopback or `reward.require_token` is set. Re-running `deploy_reward_app` with
the same `reward.app_name` and a new config (a new encoder checkpoint, a new threshold) makes Serve
replace the replicas one by one; with `reward.rollout_surge_percent` > 0 the old replicas keep
serving until their replacements are ready, so no request is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from empathy_rl.config import RewardConfig
from reward.http_api import ApiError, Limits, Secret, check_bearer, parse_score_body, server_token, too_large_body
from reward.model import RewardModel
from reward.types import Score, ScoreRequest

log = logging.getLogger("empathy_rl.reward")

api = FastAPI(title="empathy-rl reward", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(ApiError)
async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


@api.exception_handler(Exception)
async def _internal_error(_: Request, err: Exception) -> JSONResponse:
    # The exception type only: its message could quote help-seeker text.
    log.error("reward HTTP request failed: %s", type(err).__name__)
    body = {"error": {"code": "internal_error", "field": "", "message": f"scoring failed ({type(err).__name__}); see the replica log", "errors": []}}
    return JSONResponse(body, status_code=500)


def _json_safe(score: Score) -> dict[str, Any]:
    out = dataclasses.asdict(score)
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite reward component {key}")
    return out


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before any parsing)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large_body(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large_body(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@serve.deployment
@serve.ingress(api)
class RewardDeployment:
    """One replica: a `RewardModel`, the batched scorer and the HTTP routes."""

    def __init__(self, cfg: RewardConfig, token: Optional[Secret] = None):
        self.cfg = cfg
        self.token = token
        self.limits = Limits.from_config(cfg)
        self.model = RewardModel(cfg)
        self.score_chunk.set_max_batch_size(cfg.max_batch_chunks)
        self.score_chunk.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def score_chunk(self, chunks: list[list[ScoreRequest]]) -> list[list[Score]]:
        flat = [item for chunk in chunks for item in chunk]
        scores = await asyncio.get_running_loop().run_in_executor(None, self.model.score, flat) if flat else []
        out, start = [], 0
        for chunk in chunks:
            out.append(scores[start : start + len(chunk)])
            start += len(chunk)
        return out

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/info")
    async def info(self, request: Request) -> dict[str, Any]:
        check_bearer(request.headers.get("authorization"), self.token)
        c = self.cfg
        return {
            "app_name": c.app_name,
            "encoder": c.encoder,
            "answer_mode": c.answer_mode,
            "answer_threshold": c.answer_threshold,
            "thresholds": self.model.thresholds(),  # T per language as applied (config, else stored by train-rm)
            "weights": {"format": c.format_weight, "answer": c.answer_weight, "crisis": c.crisis_weight},
            "limits": dataclasses.asdict(self.limits),
            "auth": self.token is not None,
        }

    @api.post("/score")
    async def score(self, request: Request) -> Response:
        check_bearer(request.headers.get("authorization"), self.token)
        raw = await _read_body(request, self.cfg.max_request_bytes)
        items = parse_score_body(raw, self.limits)
        scores = await self.score_chunk(items) if items else []
        body = json.dumps({"scores": [_json_safe(s) for s in scores]}, allow_nan=False)
        return Response(content=body, media_type="application/json")


def build_reward_app(cfg: RewardConfig, log_level: str = "WARNING", token: Optional[Secret] = None):
    """The Serve application for `serve.run`: replicas or autoscaling, resources and rollout from config.

With `reward.placement_group` every replica gets a placement group of one bundle holding its
`num_cpus_per_replica` / `num_gpus_per_replica` (the replica actor takes exactly that bundle), so
replicas are reserved like the learners and engines; Serve creates and removes the groups.

    Access logs are off: at one line per scored chunk they would bury the driver's step lines.
    """
    scaling: dict[str, Any]
    if cfg.autoscaling:
        scaling = {
            "autoscaling_config": {
                "min_replicas": cfg.autoscaling_min_replicas,
                "max_replicas": cfg.autoscaling_max_replicas,
                "target_ongoing_requests": cfg.autoscaling_target_ongoing_requests,
            }
        }
    else:
        scaling = {"num_replicas": cfg.num_replicas}
    if cfg.placement_group:  # one bundle per replica, exactly the replica actor's resources (Serve reserves and removes it)
        bundle = {k: float(v) for k, v in (("CPU", cfg.num_cpus_per_replica), ("GPU", cfg.num_gpus_per_replica)) if v > 0}
        scaling.update(placement_group_bundles=[bundle], placement_group_strategy="PACK")
    return RewardDeployment.options(
        logging_config={"log_level": log_level, "enable_access_log": False},
        ray_actor_options={"num_cpus": cfg.num_cpus_per_replica, "num_gpus": cfg.num_gpus_per_replica},
        max_ongoing_requests=max(2 * cfg.max_batch_chunks, 8),
        max_surge_percent=cfg.rollout_surge_percent,
        max_constructor_retry_count=3,  # a replica that cannot load is nearly always a config error: fail in minutes, not 20 tries
        **scaling,
    ).bind(cfg, token)


def deploy_reward_app(cfg: RewardConfig, http: bool = False, http_port: Optional[int] = None, log_level: str = "WARNING") -> DeploymentHandle:
    """Deploy (or roll out a new config of) the app `reward.app_name`; returns its handle.

    With `http`, Serve's proxy listens on `reward.http_host`:`http_port or reward.http_port` and the app
    is routed under `/<app_name>`; the token is checked here, before anything starts. Serve's HTTP
    options are per cluster: if Serve already runs, its proxy is kept as it is.
    """
    token = server_token(cfg) if http else None
    if http:
        serve.start(http_options={"host": cfg.http_host, "port": http_port or cfg.http_port})
    else:
        serve.start(http_options={"location": "NoServer"})
    app = build_reward_app(cfg, log_level, token)
    return serve.run(app, name=cfg.app_name, route_prefix="/" + cfg.app_name if http else None)


from reward.client import RewardClient, RewardServiceError  # noqa: E402  (the driver imports the client from here)

__all__ = ["RewardDeployment", "RewardClient", "RewardServiceError", "build_reward_app", "deploy_reward_app", "api"]
