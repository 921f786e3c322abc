"""`empathy-rl serve-reward`: the reward service as a standalone Serve application.

Training jobs reach it by app name (`reward.service=attach`, same Ray cluster) or by URL
(`reward.service=url`). Running the command again with the same `reward.app_name` and a changed
config (`reward.encoder=NEW_CHECKPOINT`, a new `reward.answer_threshold`) rolls the new config out:
Serve replaces the replicas one by one and, with `reward.rollout_surge_percent` > 0, keeps the old
ones serving until their replacements are ready, so jobs scoring meanwhile lose no request.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

from empathy_rl.config import ConfigError, EmpathyRLConfig
from reward.http_api import auth_required, server_token


def service_url(cfg: EmpathyRLConfig) -> str:
    r = cfg.reward
    host = f"[{r.http_host}]" if ":" in r.http_host else r.http_host
    return f"http://{host}:{r.http_port}/{r.app_name}"


def deploy(cfg: EmpathyRLConfig) -> str:
    """Join or start Ray, deploy (or update) the app with its HTTP face; returns the service URL."""
    from empathy_rl.driver import init_ray
    from reward.serve_app import deploy_reward_app

    server_token(cfg.reward)  # refuse before Ray starts: beyond loopback without a token is a config error
    init_ray(cfg)
    deploy_reward_app(cfg.reward, http=True, log_level=cfg.logging.actor_log_level)
    return service_url(cfg)


def serve_reward(cfg: EmpathyRLConfig, detach: bool, echo: Callable[[str], None] = print, stop: Optional[threading.Event] = None) -> int:
    """Deploy, say how to reach it, then either return (`detach`) or hold the app until interrupted.

    A Ray cluster started by this command ends with it, so `--detach` needs `cluster.address`
    (an existing cluster, where the app outlives the command).
    """
    if detach and cfg.cluster.address is None:
        raise ConfigError("serve-reward --detach needs cluster.address (a local Ray cluster started by this command would end with it)")
    url = deploy(cfg)
    r = cfg.reward
    auth = f"bearer token from ${r.auth_token_env}" if auth_required(r) else "none (loopback only)"
    echo(f"reward service {r.app_name!r} running: encoder {r.encoder}, answer mode {r.answer_mode}")
    echo(f"  HTTP   POST {url}/score   GET {url}/healthz   (auth: {auth})")
    echo(f"  trainer: reward.service=attach reward.app_name={r.app_name} (same Ray cluster) or reward.service=url reward.service_url={url}")
    if detach:
        return 0
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    echo("  serving until Ctrl-C / SIGTERM; roll out a new config by running serve-reward again with cluster.address=auto --detach")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _teardown(cfg)
    return 0


def _teardown(cfg: EmpathyRLConfig) -> None:
    import ray
    from ray import serve

    serve.delete(cfg.reward.app_name)
    if cfg.cluster.address is None and ray.is_initialized():
        ray.shutdown()
