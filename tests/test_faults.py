"""Faults during a real run on one local Ray cluster (two vLLM rollout actors, Serve reward, DeepSpeed
learner), in order on one trainer:

1. a rollout actor killed in the middle of generation is restarted, gets the current weights, and
   its prompts are issued again: the batch has every group, in prompt order, exactly as an
   undisturbed generation with the same seeds; training then goes on;
2. the same with `rollout.stream_rewards`: killed after it streamed a group, the worker streams its
   whole share again, each re-delivered group replaces the earlier one and its scores, and the
   scores are those of scoring the batch after generation;
3. a rollout actor killed between two calls (restarted by Ray with the start policy) gets the
   current weights before the next call sends it prompts;
4. a reward replica killed between steps is replaced by Serve while the client retries;
5. with `trainer.learner_restarts`, a killed learner is rebuilt from the last checkpoint and the step
   is redone with the same records;
6. without it, a learner killed after a checkpoint stops the next step with an error naming it, the
   checkpoint stays intact and resumable, and shutdown removes the run's actors.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import ray

from empathy_rl.config import load_config, run_scoped

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
PROMPTS = 4


@pytest.fixture(scope="module")
def trainer(tiny_model_dir, bundled_data_dir, tmp_path_factory):
    from empathy_rl.driver import GRPOTrainer

    cfg = load_config(
        REPO / "configs" / "tiny-cpu.yaml",
        [
            f"model.path={tiny_model_dir}", f"data.prepared_dir={bundled_data_dir}",
            f"trainer.run_dir={tmp_path_factory.mktemp('faults') / 'run'}",
            "reward.encoder=minilm", "reward.answer_threshold=0.1", "reward.max_retries=8", "reward.retry_backoff_s=0.5",
            "warmstart.run_sft=false", "trainer.eval_every=0", f"trainer.prompts_per_step={PROMPTS}", "trainer.total_steps=4",
            "rollout.num_workers=2", "rollout.max_restarts=3", "cluster.include_dashboard=true",  # the state API finds running tasks
            "rollout.max_num_seqs=8",  # 2 groups decoded at a time: a stream yields in waves, so a kill can fall between two
            "logging.progress_bar=false",
        ],
    )
    t = GRPOTrainer(cfg)
    t.setup()
    yield t
    t.shutdown()


def _running_generate_on(worker_index: int, trainer, method: str = "generate") -> bool:
    from ray.util.state import list_tasks

    actor_id = trainer.pool.workers[worker_index]._actor_id.hex()
    tasks = list_tasks(
        address=ray.get_runtime_context().gcs_address,  # this cluster, not another one on the machine
        filters=[("name", "=", f"RolloutWorker.{method}"), ("state", "=", "RUNNING")], raise_on_missing_output=False,
    )
    return any(t.actor_id == actor_id for t in tasks)


def test_rollout_actor_killed_mid_generation_is_restarted_and_its_prompts_reissued(trainer):
    prompts = trainer.prompts.build_many(trainer.loader.records[:PROMPTS]) * 8  # long enough to be caught running
    prompts = [dataclasses.replace(p, uid=i) for i, p in enumerate(prompts)]
    version = trainer.pool.version
    out: dict = {}
    gen = threading.Thread(target=lambda: out.setdefault("batch", trainer.pool.generate(prompts, seed=4242)))
    gen.start()
    try:
        for _ in range(600):  # bounded: at most about a minute of polling
            if _running_generate_on(1, trainer) or not gen.is_alive():
                break
            time.sleep(0.1)
        assert gen.is_alive(), "generation ended before the kill: make the batch longer"
        ray.kill(trainer.pool.workers[1], no_restart=False)
    finally:
        gen.join()
    batch = out["batch"]
    assert trainer.pool.restarts == 1
    assert len(batch.candidates) == len(prompts) * trainer.cfg.rollout.group_size
    assert [c.prompt_uid for c in batch.candidates] == [p.uid for p in prompts for _ in range(trainer.cfg.rollout.group_size)]
    assert {c.policy_version for c in batch.candidates} == {version}
    assert {c.worker for c in batch.candidates} == {0, 1}
    assert trainer.pool.versions() == [version, version]
    undisturbed = trainer.pool.generate(prompts, seed=4242)
    assert [c.token_ids for c in batch.candidates] == [c.token_ids for c in undisturbed.candidates]

    result = trainer.train_step()  # the run goes on: a full step with every group
    assert result.metrics["rollout/candidates"] == PROMPTS * trainer.cfg.rollout.group_size
    assert result.metrics["rollout/worker_restarts_total"] == 1.0


def test_rollout_actor_killed_mid_stream_is_restarted_and_each_group_scored_once(trainer, monkeypatch):
    from empathy_rl.reward_stream import StreamScorer

    # ~16 prompts a worker: ~8 waves of 2 groups, so the kill after the first wave lands mid-stream (with 3 waves the
    # stream once ended before the kill in CI)
    prompts = trainer.prompts.build_many(trainer.loader.records[:PROMPTS]) * 8
    prompts = [dataclasses.replace(p, uid=100 + i) for i, p in enumerate(prompts)]
    worker1 = [p.uid for p in trainer.pool._shards(prompts)[1]]
    G = trainer.cfg.rollout.group_size
    version, restarts = trainer.pool.version, trainer.pool.restarts
    deliveries: list[tuple[str, int, int]] = []  # (round, prompt uid, worker) per group handed to the scorer
    scorers: list[StreamScorer] = []
    phase = {"round": "first"}
    streamed_from_1 = threading.Event()
    on_group, on_restart = StreamScorer.on_group, trainer.pool.on_restart

    def recording_on_group(self, prompt, candidates):
        if not scorers:
            scorers.append(self)
        deliveries.append((phase["round"], prompt.uid, candidates[0].worker))
        if candidates[0].worker == 1:
            streamed_from_1.set()
        on_group(self, prompt, candidates)

    def recording_on_restart():
        on_restart()
        phase["round"] = "reissue"

    monkeypatch.setattr(StreamScorer, "on_group", recording_on_group)
    monkeypatch.setattr(trainer.pool, "on_restart", recording_on_restart)
    out: dict = {}
    gen = threading.Thread(target=lambda: out.setdefault("scored", trainer._generate_streamed(prompts, seed=5151)))
    gen.start()
    try:
        assert streamed_from_1.wait(timeout=120), "rollout worker 1 streamed no group within 120 s"
        assert _running_generate_on(1, trainer, "generate_stream") and gen.is_alive(), "worker 1 finished its stream before the kill"
        ray.kill(trainer.pool.workers[1], no_restart=False)
    finally:
        gen.join()
    scored = out["scored"]
    rollout = scored.rollout
    assert trainer.pool.restarts == restarts + 1
    assert [c.prompt_uid for c in rollout.candidates] == [p.uid for p in prompts for _ in range(G)]
    assert {c.policy_version for c in rollout.candidates} == {version} and trainer.pool.versions() == [version, version]
    first = [uid for r, uid, _ in deliveries if r == "first"]
    reissued = [uid for r, uid, _ in deliveries if r == "reissue"]
    assert len(first) == len(set(first)) and set(worker1) & set(first), deliveries  # some of worker 1's groups came before the kill
    assert sorted(reissued) == sorted(worker1), deliveries  # its whole share streamed again, once
    assert set(first) | set(reissued) == {p.uid for p in prompts}
    assert all(w == 1 for r, _, w in deliveries if r == "reissue")
    assert sorted(scorers[0].pending) == sorted(p.uid for p in prompts)  # one score future per group: a re-delivery replaced the first
    plain_scores, _ = trainer._score(rollout)
    assert len(scored.scores) == len(rollout.candidates) == len(plain_scores)
    assert [s.total for s in scored.scores] == [s.total for s in plain_scores]
    assert [s.format for s in scored.scores] == [s.format for s in plain_scores]
    assert [s.similarity for s in scored.scores] == pytest.approx([s.similarity for s in plain_scores], abs=1e-5)
    undisturbed = trainer.pool.generate(prompts, seed=5151)
    assert [c.token_ids for c in rollout.candidates] == [c.token_ids for c in undisturbed.candidates]


def test_rollout_actor_killed_between_steps_gets_the_current_weights_before_generating(trainer):
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    prompts = trainer.prompts.build_many(trainer.loader.records[:PROMPTS])
    version, restarts = trainer.pool.version, trainer.pool.restarts
    assert version > 0, "the earlier tests trained a step: the pool is past the start policy"
    worker = trainer.pool.workers[1]
    ray.kill(worker, no_restart=False)
    for _ in range(120):  # bounded: Ray restarts the actor (a vLLM engine start) with the start policy, version 0
        try:
            if ray.get(worker.get_policy_version.remote(), timeout=10) == 0:
                break
        except (RayActorError, ActorUnavailableError, GetTimeoutError):
            pass
        time.sleep(1.0)
    else:
        pytest.fail("rollout worker 1 did not come back at version 0 within ~2 min")
    batch = trainer.pool.generate(prompts, seed=6161)  # the check before sending prompts pushes the current weights
    assert trainer.pool.restarts == restarts + 1
    assert {c.policy_version for c in batch.candidates} == {version}
    assert trainer.pool.versions() == [version, version]
    undisturbed = trainer.pool.generate(prompts, seed=6161)
    assert [c.token_ids for c in batch.candidates] == [c.token_ids for c in undisturbed.candidates]


def test_reward_replica_killed_is_replaced_and_the_step_completes(trainer):
    from ray.util.state import list_actors

    app = trainer.reward.app_name  # the run's own app: <run id>-<reward.app_name>
    address = ray.get_runtime_context().gcs_address
    replicas = [a for a in list_actors(address=address, filters=[("state", "=", "ALIVE")]) if (a.class_name or "").startswith(f"ServeReplica:{app}:")]
    assert len(replicas) == 1
    ray.kill(ray.get_actor(replicas[0].name, namespace="serve"), no_restart=True)
    result = trainer.train_step()
    assert result.metrics["rollout/candidates"] == PROMPTS * trainer.cfg.rollout.group_size
    alive = [a for a in list_actors(address=address, filters=[("state", "=", "ALIVE")]) if (a.class_name or "").startswith(f"ServeReplica:{app}:")]
    assert [a.name for a in alive] != [replicas[0].name] and len(alive) == 1


def test_learner_killed_with_learner_restarts_is_rebuilt_from_the_last_checkpoint(trainer, bundled_data_dir):
    from empathy_rl.data import load_records
    from empathy_rl.prompt_loader import PromptLoader

    saved = trainer.save()
    at = trainer.step
    trainer.cfg.trainer.learner_restarts = 1
    try:
        ray.kill(trainer.learner.workers[0])
        result = trainer.run_step()  # the step fails in the learner, goes back to `saved`, and is redone
    finally:
        trainer.cfg.trainer.learner_restarts = 0
    assert trainer.learner_restarts == 1 and result.step == at + 1 == trainer.step
    assert result.metrics["rollout/candidates"] == PROMPTS * trainer.cfg.rollout.group_size
    assert trainer.pool.versions() == [trainer.version] * 2 and trainer.version == at + 1
    loader = PromptLoader(load_records(bundled_data_dir, "train"), seed=0)
    draws = [[r.id for r in loader.next_batch(PROMPTS)] for _ in range(at + 1)]
    assert result.record_ids == draws[at]  # the redone step drew the same records, none skipped
    assert trainer.run.store.latest() == saved


def test_learner_killed_stops_the_run_naming_it_and_the_checkpoint_stays_resumable(trainer):
    from empathy_rl.checkpointing import read_state, resolve_resume
    from empathy_rl.remote import StageFailed

    saved = trainer.save()
    ray.kill(trainer.learner.workers[0])
    with pytest.raises(StageFailed, match=r"^learner rank 0: train_step failed"):
        trainer.train_step()
    assert resolve_resume(trainer.run.path, "auto") == saved
    assert read_state(saved)["step"] == trainer.step and (saved / "deepspeed").is_dir() and (saved / "policy").is_dir()
    engines = {run_scoped(trainer.cfg, f"rollout-{i}") for i in range(2)}
    assert engines <= set(ray.util.list_named_actors())  # the run's actors carry its run id
    trainer.pool.shutdown()
    trainer.learner.shutdown()
    for _ in range(50):  # killing is asynchronous: bounded polling
        left = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(run_scoped(trainer.cfg, ""))]
        if not left:
            break
        time.sleep(0.2)
    assert not left
