"""The run as a service on one shared local Ray cluster: set-up that fails half way removes exactly
what the run started (its reward app, actors, placement groups) and leaves the cluster up; a remote
wait that passes its deadline names the actor, the stage and the config key; step metrics reach the
node's Prometheus endpoint with the run's tag."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
import ray

from empathy_rl.config import load_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def metrics_port():
    from empathy_rl.driver import _cluster_env

    port = _free_port()
    ray.init(num_cpus=2, namespace="empathy-rl", include_dashboard=False, _metrics_export_port=port, runtime_env={"env_vars": _cluster_env()})
    yield port
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def _cfg(tiny_model_dir, bundled_data_dir, run_dir, app, *extra):
    return [
        f"model.path={tiny_model_dir}", f"data.prepared_dir={bundled_data_dir}", f"trainer.run_dir={run_dir}",
        "reward.encoder=minilm", "reward.answer_threshold=0.1", f"reward.app_name={app}",
        "warmstart.run_sft=false", "trainer.eval_every=0", "logging.progress_bar=false", *extra,
    ]


def _eventually(check, tries: int = 50, delay: float = 0.2):
    """`check()` until it is truthy, at most `tries` times (killing an actor is asynchronous in Ray)."""
    for _ in range(tries):
        value = check()
        if value:
            return value
        time.sleep(delay)
    return check()


def _assert_run_left_nothing(cfg) -> None:
    """Nothing named with the run's id is left: its reward app, actors, placement groups (which it did reserve)."""
    from ray import serve
    from ray.util.placement_group import placement_group_table

    from empathy_rl.config import reward_app_name, run_id

    prefix = run_id(cfg) + "-"
    assert reward_app_name(cfg) == prefix + cfg.reward.app_name
    assert not [name for name in serve.status().applications if name.startswith(prefix)]
    run_actors = lambda: [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]  # noqa: E731
    assert _eventually(lambda: not run_actors()), run_actors()
    groups = [g for g in placement_group_table().values() if g["name"].startswith(prefix)]
    assert groups and all(g["state"] == "REMOVED" for g in groups), [(g["name"], g["state"]) for g in groups]
    assert ray.is_initialized()  # the run joined this cluster and must not shut it down


def test_setup_failing_in_the_constructor_after_the_reward_app_started_removes_it(metrics_port, tiny_model_dir, bundled_data_dir, tmp_path):
    from ray import serve

    from empathy_rl.config import run_id
    from empathy_rl.driver import GRPOTrainer
    from empathy_rl.placement import PlacementError

    app = "reward-setup-fail-1"
    cfg = load_config(
        REPO / "configs" / "tiny-cpu.yaml",
        _cfg(tiny_model_dir, bundled_data_dir, tmp_path / "run", app, "learner.num_cpus_per_worker=8", "cluster.placement_timeout_s=3"),
    )
    seen = {}
    real = GRPOTrainer._start_services

    def spy(self):  # record that the reward app was up before the failure
        try:
            real(self)
        finally:
            seen["apps"] = set(serve.status().applications)

    GRPOTrainer._start_services = spy
    try:
        with pytest.raises(PlacementError, match="learner group"):
            GRPOTrainer(cfg)
    finally:
        GRPOTrainer._start_services = real
    assert f"{run_id(cfg)}-{app}" in seen["apps"]  # the run's own app, named with its run id
    _assert_run_left_nothing(cfg)


def test_learner_failing_to_load_its_model_stops_the_run_and_removes_everything(metrics_port, tiny_model_dir, bundled_data_dir, tmp_path):
    from empathy_rl.cli import main
    from empathy_rl.remote import StageFailed

    app = "reward-setup-fail-2"
    args = _cfg(tiny_model_dir, bundled_data_dir, tmp_path / "run", app, f"model.tokenizer_path={tiny_model_dir}")
    args[0] = f"model.path={tmp_path / 'no-such-model'}"
    with pytest.raises(StageFailed, match=r"^learner rank 0: load_policy failed"):
        main(["grpo", "--config", str(REPO / "configs" / "tiny-cpu.yaml"), *args])
    _assert_run_left_nothing(load_config(REPO / "configs" / "tiny-cpu.yaml", args))


@ray.remote(num_cpus=0)
class _Stuck:
    def wait(self) -> None:
        time.sleep(120)


def test_a_remote_wait_past_its_deadline_names_actor_stage_and_key(metrics_port):
    from empathy_rl.remote import StageTimeout, wait_named

    stuck = _Stuck.remote()
    try:
        with pytest.raises(StageTimeout) as err:
            wait_named([("rollout worker 0", ray.put(1)), ("rollout worker 1", stuck.wait.remote())], "generate", 1.0, "timeouts.generate_s")
        assert str(err.value) == "rollout worker 1: generate timed out after 1 s (timeouts.generate_s)"
    finally:
        ray.kill(stuck)


def test_step_metrics_reach_the_prometheus_endpoint_tagged_with_the_run(metrics_port):
    from empathy_rl.metrics_export import EXPORTED, RayMetrics, prometheus_name

    record = {m.key: float(i + 1) for i, m in enumerate(EXPORTED)}
    RayMetrics("prom-test-run").record({"phase": "grpo", **record})

    def scrape() -> dict[str, float]:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        except OSError:
            return {}
        found = {}
        for line in text.splitlines():
            if line.startswith("ray_empathy_rl_") and 'run="prom-test-run"' in line:
                found[line.split("{", 1)[0]] = float(line.rsplit(" ", 1)[1])
        return found if len(found) >= len(EXPORTED) else {}

    found = _eventually(scrape, tries=60, delay=1.0)
    assert {prometheus_name(m): record[m.key] for m in EXPORTED} == {k: v for k, v in found.items() if k in {prometheus_name(m) for m in EXPORTED}}
