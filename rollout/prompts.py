"""Turn prepared records into chat-formatted prompts with the CoE system prompt.

The prompt is `[system: CoE instructions in the record's language, user: the query]` rendered with
the tokenizer's chat template and the generation prompt. A prompt longer than
`model.max_prompt_len` is either truncated (the query is cut, so the instructions and the template
stay intact) or dropped, by `rollout.overlong_prompt`; both are counted.

`enable_thinking` goes to the chat template. Qwen3's template opens a `<think>` block unless it is
False; our model reasons inside `<empathy_think>` instead, and a stray think block would cost
response tokens and fail the format check. Templates without the flag ignore it.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from empathy_rl import coe
from empathy_rl.data import CounselingRecord
from rollout.types import Prompt


class PromptBuilder:
    def __init__(
        self, tokenizer, max_prompt_len: int, overlong: str = "truncate", language: str = "auto", style: str = "full",
        enable_thinking: bool = False,
    ):
        if overlong not in ("truncate", "drop"):
            raise ValueError(f"rollout.overlong_prompt must be truncate or drop, got {overlong!r}")
        self.tokenizer = tokenizer
        self.max_prompt_len = max_prompt_len
        self.overlong = overlong
        self.language = language
        self.style = style
        self.enable_thinking = enable_thinking
        self.counts: Counter[str] = Counter()  # built, truncated, dropped

    def render(self, language: str, query: str) -> list[int]:
        """Token ids of the chat-formatted prompt (system + user + generation prompt), uncut."""
        messages = [
            {"role": "system", "content": coe.system_prompt(language, self.style)},
            {"role": "user", "content": query},
        ]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=self.enable_thinking
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def fit(self, language: str, query: str) -> tuple[list[int], bool] | None:
        """Prompt token ids within `max_prompt_len` and whether the query was cut, applying the
        over-long policy; None when the prompt is too long and the policy is `drop`. Counted.

        Every path that turns a query into a prompt (GRPO rollout, SFT, evaluation) goes
        through here, so an over-long query is cut inside the user turn and the chat template's
        assistant header always survives.
        """
        ids = self.render(language, query)
        truncated = False
        if len(ids) > self.max_prompt_len:
            if self.overlong == "drop":
                self.counts["dropped"] += 1
                return None
            ids = self._truncate(language, query, len(ids))
            truncated = True
            self.counts["truncated"] += 1
        self.counts["built"] += 1
        return ids, truncated

    def build(self, uid: int, record: CounselingRecord) -> Prompt | None:
        """One prompt, or None when it is too long and the policy is `drop`."""
        language = record.language if self.language == "auto" else self.language
        fitted = self.fit(language, record.query)
        if fitted is None:
            return None
        ids, truncated = fitted
        return Prompt(uid, record.id, language, record.query, tuple(ids), record.crisis, truncated, tuple(record.answers))

    def _truncate(self, language: str, query: str, full_len: int) -> list[int]:
        """Cut the query's tokens so that the whole prompt fits; keep its beginning (title first)."""
        query_ids = self.tokenizer(query, add_special_tokens=False)["input_ids"]
        overhead = full_len - len(query_ids)
        budget = self.max_prompt_len - overhead
        if budget < 1:
            raise ValueError(
                f"model.max_prompt_len={self.max_prompt_len} cannot hold the {language} system prompt and chat "
                f"template ({overhead} tokens); raise model.max_prompt_len"
            )
        # Decoding a token prefix can end mid-character for byte-level BPE; shrink until it fits.
        for keep in range(budget, 0, -1):
            cut = self.tokenizer.decode(query_ids[:keep], skip_special_tokens=True).rstrip("\ufffd")
            ids = self.render(language, cut)
            if len(ids) <= self.max_prompt_len:
                return ids
        raise ValueError(f"cannot fit a prompt into model.max_prompt_len={self.max_prompt_len}")

    def build_many(self, records: Sequence[CounselingRecord]) -> list[Prompt]:
        """Prompts for `records` in order, uids 0..n-1 over the kept ones."""
        prompts: list[Prompt] = []
        for record in records:
            prompt = self.build(len(prompts), record)
            if prompt is not None:
                prompts.append(prompt)
        return prompts
