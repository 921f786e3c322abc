"""`RolloutWorker` runs with `max_concurrency=2` (the driver polls the version meanwhile), so a weight
push could reach the same `LLM` while `generate` runs. The worker must serialise them. The vLLM
engine is replaced by a stand-in that records overlapping calls; no engine starts."""

from __future__ import annotations

import threading

import torch

from empathy_rl.config import load_config
from empathy_rl.weight_buckets import pack_all
from rollout.types import Prompt
from rollout.vllm_engine import RolloutWorker


class _Completion:
    def __init__(self):
        self.token_ids = [5]
        self.logprobs = [{5: type("L", (), {"logprob": -0.5})()}]
        self.text = "x"
        self.finish_reason = "stop"


class _Output:
    outputs = [_Completion()]


class _FakeLLM:
    """Blocks inside `generate` until released, and records whether a reload ran meanwhile."""

    def __init__(self):
        self.in_generate = threading.Event()
        self.release = threading.Event()
        self.reload_started = threading.Event()
        self.overlapped = False
        self.active = 0
        self.lock = threading.Lock()

    def _enter(self):
        with self.lock:
            self.active += 1
            if self.active > 1:
                self.overlapped = True

    def _leave(self):
        with self.lock:
            self.active -= 1

    def generate(self, inputs, params, use_tqdm=False):
        self._enter()
        self.in_generate.set()
        self.release.wait(30)
        self._leave()
        return [_Output() for _ in inputs]

    def collective_rpc(self, method, args=()):
        self.reload_started.set()
        self._enter()
        self._leave()
        return [None]

    def reset_prefix_cache(self):
        pass


class _LocalRef:
    """What `ray.get` returns for a bucket: a numpy array (the test patches `ray.get`)."""


def test_weight_push_waits_for_a_running_generate(monkeypatch):
    import ray

    cfg = load_config("configs/tiny-cpu.yaml", ["model.path=x"])
    worker = RolloutWorker.__new__(RolloutWorker)  # no vLLM engine: only the locking is under test
    worker.cfg, worker.worker_index, worker.policy_version = cfg, 0, 0
    worker._llm_lock = threading.Lock()
    worker.llm = _FakeLLM()
    index, buf = pack_all([("w", torch.ones(4))], 1024)[0]
    monkeypatch.setattr(ray, "get", lambda refs, **_: [buf.numpy() for _ in refs])

    prompt = Prompt(0, "r0", "en", "q", (1, 2, 3), False, False)
    out: dict[str, object] = {}
    gen = threading.Thread(target=lambda: out.setdefault("gen", worker.generate([prompt], 1, 1.0, 0)))
    gen.start()
    assert worker.llm.in_generate.wait(30)
    push = threading.Thread(target=lambda: out.setdefault("push", worker.update_weights(1, [(index.to_wire(), _LocalRef())])))
    push.start()
    # While generate holds the engine, the push must not reach it (without the lock it would at once).
    assert not worker.llm.reload_started.wait(1.0), "a weight reload ran while generate was using the engine"
    assert worker.get_policy_version() == 0  # version polling is not blocked by the running generate
    worker.llm.release.set()
    gen.join(30)
    push.join(30)
    assert not worker.llm.overlapped and worker.llm.reload_started.is_set()
    assert [c.policy_version for c in out["gen"]] == [0]  # candidates carry the weights they came from
    assert worker.get_policy_version() == 1
