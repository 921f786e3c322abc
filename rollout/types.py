"""Records produced by the rollout stage. Plain dataclasses: cheap to pickle across Ray."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prompt:
    """One query, already rendered with the chat template and tokenized."""

    uid: int  # position in the step's prompt list; candidates point back to it
    record_id: str  # prepared-record id (never the text) for logs and sample dumps
    language: str  # "zh" | "en"
    query: str  # the help-seeker text (used by the reward; never logged at INFO)
    token_ids: tuple[int, ...]
    crisis: bool = False
    truncated: bool = False  # the query was cut to fit model.max_prompt_len
    references: tuple[str, ...] = ()  # the record's counsellor answers (reward.answer_mode=reference; never logged)


@dataclass
class Candidate:
    """One sampled response to one prompt."""

    prompt_uid: int
    token_ids: list[int]  # response tokens, including the end-of-sequence token when one was sampled
    logprobs: list[float]  # vLLM's log-probs of those tokens under the sampling distribution
    text: str  # decoded response (special tokens skipped, CoE tags kept)
    finish_reason: str  # "stop" (end of sequence) | "length" (cut at max_response_len)
    policy_version: int  # weights version that produced it
    worker: int  # rollout worker index


@dataclass
class RolloutBatch:
    """All candidates of one step, grouped: candidates[i*G:(i+1)*G] answer prompts[i]."""

    prompts: list[Prompt]
    candidates: list[Candidate]
    group_size: int
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.candidates) != len(self.prompts) * self.group_size:
            raise ValueError(
                f"rollout batch has {len(self.candidates)} candidates for {len(self.prompts)} prompts x G={self.group_size}"
            )
