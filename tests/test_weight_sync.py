"""`empathy_rl.weight_sync` on a local Ray cluster, with small stand-in actors for the learner
and the rollout workers: a sync whose party hangs must stop at `sync.timeout_s` and say which stage
and which worker; a party that dies must be named at once; NCCL failures tear the group down.
The real object-store path is exercised end to end in tests/test_multiprocess_engine.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray

from empathy_rl.config import load_config
from empathy_rl.weight_sync import WeightSync, WeightSyncError, wait_all


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, namespace="test-weight-sync")
    yield
    ray.shutdown()


@ray.remote(num_cpus=0, max_concurrency=2)
class FakeRollout:
    def __init__(self, hang: bool):
        self.hang = hang
        self.never = threading.Event()
        self.closed = 0

    def update_weights(self, version, bucket_refs, verify):
        if self.hang:
            self.never.wait()  # a reload that never returns
        return f"ok-{version}-{len(bucket_refs)}"

    def receive_weights_nccl(self, version, indexes):
        if self.hang:
            self.never.wait()
        return None

    def close_weight_group(self):
        self.closed += 1

    def ready(self):
        return True

    def closed_count(self):
        return self.closed


@ray.remote(num_cpus=0)
class FakeLearner:
    def export_to_object_store(self):
        return [({"format": "x"}, ray.put(np.zeros(4, dtype=np.uint8)))]

    def close_weight_group(self):
        return None

    def ready(self):
        return True


class FakePool:
    def __init__(self, workers):
        self.workers = workers
        self.version = 0

    def update_refs(self, version, bucket_refs, verify=False):
        return [w.update_weights.remote(version, bucket_refs, verify) for w in self.workers]

    def receive_nccl_refs(self, version, indexes):
        return [w.receive_weights_nccl.remote(version, indexes) for w in self.workers]

    def close_weight_group_refs(self):
        return [w.close_weight_group.remote() for w in self.workers]

    def mark_version(self, version):
        self.version = version


class FakeLearnerGroup:
    def __init__(self):
        self.workers = [FakeLearner.remote()]

    def export_refs(self):
        return [w.export_to_object_store.remote() for w in self.workers]

    def bucket_plan_ref(self):
        return ray.put([])

    def broadcast_refs(self):
        return [ray.put(None)]

    def close_weight_group_refs(self):
        return [w.close_weight_group.remote() for w in self.workers]


def _sync(transport: str, hang: list[bool], timeout: float = 5.0):
    overrides = ["model.path=x", f"sync.timeout_s={timeout}"]
    if transport == "nccl":
        overrides += ["cluster.device=cuda", "sync.transport=nccl"]
    cfg = load_config("configs/tiny-cpu.yaml", overrides)
    pool = FakePool([FakeRollout.remote(h) for h in hang])
    learner = FakeLearnerGroup()
    ray.get([w.ready.remote() for w in pool.workers + learner.workers])  # start-up is not part of the timeout under test
    sync = WeightSync(cfg, learner, pool)
    sync.group_ready = transport == "nccl"  # as after setup(); set-up itself needs GPUs
    return sync, pool


def test_object_store_sync_succeeds_and_marks_the_version(local_ray):
    sync, pool = _sync("object_store", [False, False], timeout=60)
    assert sync.push(3) == ["ok-3-1", "ok-3-1"]
    assert pool.version == 3
    # one call per learner rank and per rollout worker, whatever the buckets hold
    assert sync.last_push["calls"] == 1 + 2 and sync.last_push["buckets"] == 1


def test_object_store_sync_that_hangs_names_stage_and_worker(local_ray):
    sync, pool = _sync("object_store", [False, True])
    with pytest.raises(WeightSyncError, match=r"weight sync \(object-store reload\) timed out after 5 s on rollout worker 1 \(sync.timeout_s\)"):
        sync.push(1)
    assert pool.version == 0  # a failed sync does not advance the version


def test_a_dead_rollout_worker_is_named(local_ray):
    sync, pool = _sync("object_store", [False, False], timeout=60)
    ray.kill(pool.workers[0])
    with pytest.raises(WeightSyncError, match=r"weight sync \(object-store reload\) failed on rollout worker 0"):
        sync.push(1)


def test_nccl_sync_that_hangs_tears_the_group_down(local_ray):
    sync, pool = _sync("nccl", [True, False])
    with pytest.raises(WeightSyncError, match=r"weight sync \(nccl broadcast\) timed out after 5 s on rollout worker 0"):
        sync.push(1)
    assert not sync.group_ready
    assert ray.get(pool.workers[1].closed_count.remote()) == 1  # torn down where it could be
    with pytest.raises(WeightSyncError, match="no weight group"):
        sync.push(2)  # no silent retry on a half-open communicator


def test_wait_all_returns_results_in_order(local_ray):
    refs = [ray.put(i) for i in range(3)]
    assert wait_all([(f"party {i}", r) for i, r in enumerate(refs)], "test", 5) == [0, 1, 2]


def test_ray_put_copies_a_numpy_view_so_the_packing_buffer_can_be_reused(local_ray):
    """The learner overwrites its packing buffer with the next bucket right after `ray.put`; that is
    only sound while `ray.put` copies the bytes into the object store rather than keeping a view."""
    import torch

    scratch = torch.arange(2**20, dtype=torch.int32).view(torch.uint8)  # 4 MiB: an object-store object
    ref = ray.put(scratch.numpy())
    expected = scratch.clone()
    scratch.zero_()
    assert np.array_equal(ray.get(ref, timeout=30), expected.numpy())
