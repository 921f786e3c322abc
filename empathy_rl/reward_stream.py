"""The driver's side of `rollout.stream_rewards`: score each group while the others still generate.

The rollout pool hands each finished group to `StreamScorer.on_group`, which sends its G score
requests to the reward service at once (`RewardClient.submit`) and lets one background thread
collect the answers in the order they were sent. `finish` returns the scores in the batch's
candidate order, so the learner gets the same rewards, in the same order, as from scoring the whole
batch after generation. A group delivered twice (its worker died and was re-run) replaces its first
scores. Rollout code never sees the reward client: this module is the connection, and only the
driver uses it.

Timing is kept as seconds since generation started, for `overlap_metrics`: the reward tail (reward
time left after the last group was generated) is what streaming shortens.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Iterable, Optional

from reward.client import RewardServiceError
from reward.types import Score, ScoreRequest
from rollout.types import Candidate, Prompt, RolloutBatch


def score_requests(prompt: Prompt, candidates: Iterable[Candidate]) -> list[ScoreRequest]:
    """One `ScoreRequest` per candidate of `prompt` (query, crisis flag, language, reference answers)."""
    return [ScoreRequest(prompt.query, c.text, prompt.crisis, language=prompt.language, references=prompt.references) for c in candidates]


def overlap_metrics(first_request_s: float, generation_end_s: float, reward_end_s: float) -> dict[str, float]:
    """Per-step reward timing, all in seconds since generation started.

    `timing/reward_tail_s`: reward time after the last group was generated (on the step's critical
    path in sync mode); `timing/reward_overlap_s`: reward time that ran while groups were still
    generating. Scoring after generation gives tail = the whole reward time and overlap = 0.
    """
    return {
        "timing/first_reward_request_s": first_request_s,
        "timing/generation_end_s": generation_end_s,
        "timing/reward_end_s": reward_end_s,
        "timing/reward_tail_s": max(reward_end_s - generation_end_s, 0.0),
        "timing/reward_overlap_s": max(min(reward_end_s, generation_end_s) - first_request_s, 0.0),
    }


class StreamScorer:
    """Collects the scores of one streamed rollout; made right before generation starts."""

    def __init__(self, client: Any, cfg: Any):
        self.client = client
        self.cfg = cfg  # RewardConfig: request_timeout_s, max_retries, retry_backoff_s, chunk_size
        self.start = time.perf_counter()
        self.first_request: Optional[float] = None
        self.last_group: Optional[float] = None
        self.pending: dict[int, Future] = {}
        self.collector = ThreadPoolExecutor(1, thread_name_prefix="reward-stream")

    def on_group(self, prompt: Prompt, candidates: list[Candidate]) -> None:
        """Send one finished group to the reward service now (called from the pool's stream loop)."""
        now = time.perf_counter()
        self.last_group = now
        pending = self.client.submit(score_requests(prompt, candidates))
        if self.first_request is None:
            self.first_request = now
        self.pending[prompt.uid] = self.collector.submit(lambda: (pending.result(), time.perf_counter()))

    def _group_bound_s(self, group_size: int) -> float:
        """Longest one group's scores can take: every chunk's attempts, deadlines and backoff."""
        c = self.cfg
        chunks = -(-group_size // c.chunk_size)
        return chunks * ((c.max_retries + 1) * c.request_timeout_s + c.retry_backoff_s * 2 ** (c.max_retries + 1))

    def finish(self, rollout: RolloutBatch) -> tuple[list[Score], dict[str, float]]:
        """Scores in candidate order and the step's reward timing (`overlap_metrics` plus `time/reward_s`)."""
        generation_end = self.last_group if self.last_group is not None else time.perf_counter()
        deadline = time.monotonic() + self._group_bound_s(rollout.group_size) * max(len(self.pending), 1)
        scores: list[Score] = []
        reward_end = self.start
        try:
            for prompt in rollout.prompts:
                future = self.pending.get(prompt.uid)
                if future is None:
                    raise RewardServiceError(f"reward stage: no score request was sent for prompt uid {prompt.uid} (streamed)")
                try:
                    part, done_at = future.result(timeout=max(deadline - time.monotonic(), 0.0))
                except FutureTimeout:
                    raise RewardServiceError(
                        f"reward stage: streamed scores of prompt uid {prompt.uid} not collected in time "
                        f"(reward.request_timeout_s={self.cfg.request_timeout_s}, reward.max_retries={self.cfg.max_retries})"
                    ) from None
                if len(part) != rollout.group_size:
                    raise RewardServiceError(f"reward stage: {len(part)} scores for a group of {rollout.group_size} (prompt uid {prompt.uid})")
                scores += part
                reward_end = max(reward_end, done_at)
        finally:
            self.close()
        first = self.first_request if self.first_request is not None else generation_end
        timing = overlap_metrics(first - self.start, generation_end - self.start, reward_end - self.start)
        timing["time/reward_s"] = reward_end - first
        return scores, timing

    def close(self) -> None:
        """Stop collecting (a failed generation leaves requests in flight; their answers are dropped)."""
        self.collector.shutdown(wait=False, cancel_futures=True)
