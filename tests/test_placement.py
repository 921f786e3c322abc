"""Placement groups on a local 2-CPU Ray cluster: the bundles each layout reserves, and that actors
started through `ActorSlot`s run inside them (the GPU layouts are the same code with GPU entries)."""

from __future__ import annotations

import pytest
import ray

from empathy_rl.config import load_config
from empathy_rl.placement import Placement, PlacementError, engine_bundles, learner_bundles


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, namespace="test-placement")
    yield
    ray.shutdown()


@ray.remote
class Probe:
    def placement(self) -> tuple[str | None, str]:
        ctx = ray.get_runtime_context()
        return ctx.get_placement_group_id(), ctx.get_assigned_resources()


def _cfg(*overrides: str):
    return load_config("configs/tiny-cpu.yaml", ["model.path=x", *overrides])


def _table(group) -> dict:
    return ray.util.placement_group_table(group)


def test_bundle_specs_for_both_layouts():
    split = _cfg("rollout.num_workers=2", "learner.num_workers=2", "trainer.prompts_per_step=2")
    assert learner_bundles(split) == [{"CPU": 1.0}, {"CPU": 1.0}]
    assert engine_bundles(split) == [{"CPU": 0.5}]
    colocated = _cfg("cluster.layout=colocated", "rollout.num_workers=2", "learner.num_workers=2", "learner.num_cpus_per_worker=0.5", "trainer.prompts_per_step=2")
    assert learner_bundles(colocated) == [{"CPU": 1.0}, {"CPU": 1.0}]  # learner 0.5 + its engine's 0.5
    gpu = _cfg(
        "cluster.device=cuda", "rollout.tensor_parallel_size=2", "rollout.num_gpus_per_worker=2", "rollout.num_cpus_per_worker=4",
        "learner.num_gpus_per_worker=1", "learner.backend=nccl",
    )
    assert engine_bundles(gpu) == [{"CPU": 4.0, "GPU": 1.0}, {"GPU": 1.0}]  # one bundle per TP worker
    assert learner_bundles(gpu) == [{"CPU": 1.0, "GPU": 1.0}]


def test_split_layout_places_each_engine_in_its_own_group(local_ray):
    cfg = _cfg("rollout.num_workers=2", "rollout.num_cpus_per_worker=0.25", "learner.num_workers=2", "learner.num_cpus_per_worker=0.5", "trainer.prompts_per_step=2")
    placement = Placement(cfg)
    try:
        assert len(placement.groups) == 3
        learner_table = _table(placement.learner_group)
        assert learner_table["state"] == "CREATED" and list(learner_table["bundles"].values()) == [{"CPU": 0.5}, {"CPU": 0.5}]
        engines = [_table(g) for g in placement.engine_groups]
        assert [list(t["bundles"].values()) for t in engines] == [[{"CPU": 0.25}], [{"CPU": 0.25}]]
        assert len({t["placement_group_id"] for t in engines}) == 2
        learners = [Probe.options(**placement.learner_slot(r).options()).remote() for r in range(2)]
        slots = [placement.rollout_slot(i) for i in range(2)]
        rollouts = [Probe.options(**s.options()).remote() for s in slots]
        where = ray.get([p.placement.remote() for p in learners + rollouts])
        assert [w[0] for w in where[:2]] == [learner_table["placement_group_id"]] * 2
        assert [w[0] for w in where[2:]] == [t["placement_group_id"] for t in engines]
        assert all(s.env["RAY_ADDRESS"] and "VLLM_RAY_BUNDLE_INDICES" not in s.env for s in slots)  # TP 1
        for p in learners + rollouts:
            ray.kill(p)
    finally:
        placement.remove()


def test_colocated_layout_shares_one_group(local_ray):
    cfg = _cfg(
        "cluster.layout=colocated", "rollout.num_workers=2", "rollout.num_cpus_per_worker=0.25",
        "learner.num_workers=2", "learner.num_cpus_per_worker=0.5", "trainer.prompts_per_step=2",
    )
    placement = Placement(cfg)
    try:
        assert len(placement.groups) == 1
        table = _table(placement.shared)
        assert list(table["bundles"].values()) == [{"CPU": 0.75}, {"CPU": 0.75}]
        probes = [Probe.options(**placement.learner_slot(r).options()).remote() for r in range(2)]
        probes += [Probe.options(**placement.rollout_slot(i).options()).remote() for i in range(2)]
        assert {w[0] for w in ray.get([p.placement.remote() for p in probes])} == {table["placement_group_id"]}
        for p in probes:
            ray.kill(p)
    finally:
        placement.remove()


def test_a_group_the_cluster_cannot_hold_fails_with_what_it_asked(local_ray):
    cfg = _cfg("learner.num_cpus_per_worker=3", "cluster.placement_timeout_s=1")
    with pytest.raises(PlacementError, match="learner group not ready after 1 s.*'CPU': 3.0"):
        Placement(cfg, roles=("learner",))
    assert all(t["state"] == "REMOVED" for t in ray.util.placement_group_table().values())


def test_run_names_are_disjoint_across_run_directories(tmp_path):
    from empathy_rl.config import ConfigError, reward_app_name, run_id, run_scoped
    from learner.group import learner_actor_name
    from rollout.pool import rollout_actor_name

    def names(cfg) -> set[str]:
        return {learner_actor_name(cfg, 0), rollout_actor_name(cfg, 0), run_scoped(cfg, "learner-group"), reward_app_name(cfg)}

    a = _cfg(f"trainer.run_dir={tmp_path / 'a' / 'run'}")
    b = _cfg(f"trainer.run_dir={tmp_path / 'b' / 'run'}")  # same basename, other directory
    assert run_id(a).startswith("run-") and run_id(a) != run_id(b)
    assert run_id(a) == run_id(_cfg(f"trainer.run_dir={tmp_path / 'a' / 'run'}"))  # stable: a resumed run gets its names back
    assert not names(a) & names(b)
    assert learner_actor_name(a, 1) == f"{run_id(a)}-learner-1" and reward_app_name(a) == f"{run_id(a)}-empathy-reward"
    assert reward_app_name(_cfg("reward.service=attach")) == "empathy-reward"  # a shared service keeps its name
    named = _cfg("trainer.run_name=exp-7")
    assert rollout_actor_name(named, 2) == "exp-7-rollout-2" and reward_app_name(named) == "exp-7-empathy-reward"
    assert run_id(_cfg("trainer.run_dir=runs/my run!")).startswith("my-run-")
    with pytest.raises(ConfigError, match="trainer.run_name='a/b'"):
        _cfg("trainer.run_name=a/b")


def test_two_runs_reserve_their_own_groups_side_by_side(local_ray, tmp_path):
    from empathy_rl.config import run_id

    runs = [_cfg(f"trainer.run_dir={tmp_path / name}", "learner.num_cpus_per_worker=0.25", "rollout.num_cpus_per_worker=0.25") for name in ("one", "two")]
    placements = [Placement(cfg) for cfg in runs]
    try:
        for cfg, placement in zip(runs, placements):
            names = {_table(group)["name"] for _, group in placement.groups}
            assert names == {f"{run_id(cfg)}-learner-group", f"{run_id(cfg)}-rollout-engine-0"}
            assert all(_table(group)["state"] == "CREATED" for _, group in placement.groups)
    finally:
        for placement in placements:
            placement.remove()
