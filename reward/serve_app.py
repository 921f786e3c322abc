"""The reward service: a Ray Serve deployment, its HTTP face, and the driver's client.

The deployment loads the sentence encoder once per replica and scores chunks of candidates.
`score_chunk` is wrapped in `@serve.batch`, so chunks sent concurrently (from one driver or many)
are merged into one encoder call of up to `reward.max_batch_chunks` chunks. The driver's
`RewardClient` splits a step's candidates into chunks of `reward.chunk_size` and sends them through a
`DeploymentHandle`; Serve spreads them over `reward.num_replicas` replicas.

HTTP: `POST /` with `{"items": [{"query": ..., "response": ..., "crisis": false}, ...]}` returns
`{"scores": [{"total": ..., "format": ..., ...}, ...]}`; useful for evaluation scripts and for
checking a deployed reward by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Sequence

from ray import serve

from empathy_rl.config import RewardConfig
from reward.model import RewardModel
from reward.types import Score, ScoreRequest


@serve.deployment
class RewardDeployment:
    def __init__(self, cfg: RewardConfig):
        self.model = RewardModel(cfg)
        self.score_chunk.set_max_batch_size(cfg.max_batch_chunks)
        self.score_chunk.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def score_chunk(self, chunks: list[list[ScoreRequest]]) -> list[list[Score]]:
        flat = [item for chunk in chunks for item in chunk]
        scores = await asyncio.get_running_loop().run_in_executor(None, self.model.score, flat)
        out, start = [], 0
        for chunk in chunks:
            out.append(scores[start : start + len(chunk)])
            start += len(chunk)
        return out

    async def __call__(self, request) -> dict:
        body = await request.json()
        try:
            items = [ScoreRequest(str(x["query"]), str(x["response"]), bool(x.get("crisis", False))) for x in body["items"]]
        except (KeyError, TypeError) as err:
            return {"error": f"expected {{'items': [{{'query', 'response', 'crisis'?}}]}}: {err!r}"}
        scores = await self.score_chunk(items)
        return {"scores": [dataclasses.asdict(s) for s in scores]}


def build_reward_app(cfg: RewardConfig, log_level: str = "WARNING"):
    """The Serve application for `serve.run` (or a Serve config file on a cluster).

    Access logs are off: at one line per scored chunk they would bury the driver's step lines.
    """
    return RewardDeployment.options(
        logging_config={"log_level": log_level, "enable_access_log": False},
        num_replicas=cfg.num_replicas,
        ray_actor_options={"num_cpus": cfg.num_cpus_per_replica, "num_gpus": cfg.num_gpus_per_replica},
        max_ongoing_requests=max(2 * cfg.max_batch_chunks, 8),
    ).bind(cfg)


class RewardClient:
    """Driver side: scores a step's candidates through a `DeploymentHandle`."""

    def __init__(self, cfg: RewardConfig, start: bool = True, http_port: int | None = None, log_level: str = "WARNING"):
        """Start (or, with `start=False`, attach to) the reward app; `http_port` also serves HTTP."""
        self.cfg = cfg
        http = http_port is not None
        if start:
            serve.start(http_options={"host": "127.0.0.1", "port": http_port} if http else {"location": "NoServer"})
            app = build_reward_app(cfg, log_level)
            self.handle = serve.run(app, name=cfg.app_name, route_prefix="/" + cfg.app_name if http else None)
        else:
            self.handle = serve.get_app_handle(cfg.app_name)

    def score(self, items: Sequence[ScoreRequest], chunk_size: int | None = None) -> tuple[list[Score], float]:
        """Scores in input order, and the seconds it took (chunks of `reward.chunk_size` by default)."""
        start = time.perf_counter()
        chunk_size = chunk_size or self.cfg.chunk_size
        chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
        responses = [self.handle.score_chunk.remote(chunk) for chunk in chunks]
        scores = [s for r in responses for s in r.result()]
        return scores, time.perf_counter() - start

    def shutdown(self) -> None:
        serve.delete(self.cfg.app_name)
