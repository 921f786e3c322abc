"""The reward service: a Ray Serve deployment, its HTTP face, and the driver's client.

The deployment loads the sentence encoder once per replica and scores chunks of candidates.
`score_chunk` is wrapped in `@serve.batch`, so chunks sent concurrently (from one driver or many)
are merged into one encoder call of up to `reward.max_batch_size` chunks. The driver's
`RewardClient` splits a step's candidates into chunks and sends them through a
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

from empathy_rl import coe
from empathy_rl.config import RewardConfig
from reward import components
from reward.types import Score, ScoreRequest


class RewardModel:
    """Scoring without Serve: the encoder plus the components. The deployment wraps one of these."""

    def __init__(self, cfg: RewardConfig):
        from reward.encoder import SentenceEncoder

        self.cfg = cfg
        needs_encoder = cfg.answer_weight != 0
        self.encoder = SentenceEncoder(cfg.encoder, cfg.encoder_device, cfg.encoder_max_seq_len) if needs_encoder else None

    def score(self, items: Sequence[ScoreRequest]) -> list[Score]:
        cfg = self.cfg
        parsed = [coe.parse_coe(item.response) for item in items]
        # Embed only what has an answer to score; malformed outputs get no answer reward by default.
        to_embed = [
            i for i, p in enumerate(parsed) if p.answer and (p.ok or not cfg.answer_requires_format)
        ]
        sims: dict[int, float] = {}
        if self.encoder is not None and to_embed:
            values = self.encoder.cosine([items[i].query for i in to_embed], [parsed[i].answer for i in to_embed])
            sims = dict(zip(to_embed, values))
        scores = []
        for i, (item, p) in enumerate(zip(items, parsed)):
            fmt = 1.0 if p.ok else 0.0
            ans = components.answer_component(sims.get(i), cfg.answer_mode, cfg.answer_threshold)
            crisis = components.crisis_component(item.crisis, p.answer if p.ok else None)
            total = components.combine(fmt, ans, crisis, cfg.format_weight, cfg.answer_weight, cfg.crisis_weight)
            scores.append(Score(total, fmt, ans, sims.get(i, 0.0), crisis, "" if p.ok else p.error_code))
        return scores


@serve.deployment
class RewardDeployment:
    def __init__(self, cfg: RewardConfig):
        self.model = RewardModel(cfg)
        self.score_chunk.set_max_batch_size(cfg.max_batch_size)
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
        max_ongoing_requests=max(2 * cfg.max_batch_size, 8),
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

    def score(self, items: Sequence[ScoreRequest], chunk_size: int = 8) -> tuple[list[Score], float]:
        """Scores in input order, and the seconds it took."""
        start = time.perf_counter()
        chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
        responses = [self.handle.score_chunk.remote(chunk) for chunk in chunks]
        scores = [s for r in responses for s in r.result()]
        return scores, time.perf_counter() - start

    def shutdown(self) -> None:
        serve.delete(self.cfg.app_name)
