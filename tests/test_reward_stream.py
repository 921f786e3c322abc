"""Ordering and merging of streamed rollouts (`rollout.stream_rewards`), without Ray: groups arrive in
finish order and possibly twice (a re-run worker), and the batch and its scores still come out in
prompt order, with the last delivery of each group."""

from __future__ import annotations

import threading
import time

import pytest

from empathy_rl.config import RewardConfig
from empathy_rl.reward_stream import StreamScorer, overlap_metrics
from reward.types import Score
from rollout.streaming import GroupAssembler
from rollout.types import Candidate, Prompt, RolloutBatch

G = 2


def _prompt(uid: int) -> Prompt:
    return Prompt(uid=uid, record_id=f"r{uid}", language="en", query=f"query {uid}", token_ids=(1, 2, 3))


def _group(uid: int, tag: str = "") -> list[Candidate]:
    return [Candidate(uid, [uid, k], [-0.1, -0.2], f"answer {uid}.{k}{tag}", "stop", 0, 0) for k in range(G)]


def test_assembler_returns_groups_in_prompt_order_with_the_last_delivery():
    prompts = [_prompt(u) for u in (5, 3, 9)]
    asm = GroupAssembler(prompts, G)
    for uid in (9, 5):
        assert asm.add(_group(uid)).uid == uid
    assert asm.missing() == [3]
    with pytest.raises(RuntimeError, match="unanswered"):
        asm.candidates()
    asm.add(_group(3))
    asm.add(_group(5, tag="-rerun"))  # a worker re-ran its share: the later group wins
    out = asm.candidates()
    assert [c.prompt_uid for c in out] == [5, 5, 3, 3, 9, 9]
    assert [c.text for c in out[:2]] == ["answer 5.0-rerun", "answer 5.1-rerun"]


@pytest.mark.parametrize(
    "group, match",
    [(_group(7), "did not send"), (_group(5)[:1], "must hold 2"), ([*_group(5)[:1], *_group(3)[:1]], "one prompt")],
)
def test_assembler_refuses_groups_it_cannot_place(group, match):
    asm = GroupAssembler([_prompt(5), _prompt(3)], G)
    with pytest.raises(RuntimeError, match=match):
        asm.add(group)


def test_overlap_metrics():
    m = overlap_metrics(first_request_s=1.0, generation_end_s=4.0, reward_end_s=5.5)
    assert m["timing/reward_tail_s"] == 1.5 and m["timing/reward_overlap_s"] == 3.0
    after = overlap_metrics(4.0, 4.0, 6.0)  # scored after generation: all tail, no overlap
    assert after["timing/reward_tail_s"] == 2.0 and after["timing/reward_overlap_s"] == 0.0


class _Pending:
    def __init__(self, items, delay):
        self.items, self.delay = items, delay

    def result(self):
        time.sleep(self.delay)
        return [Score(float(len(i.response)), 1.0, 0.0, 0.0, 0.0, None) for i in self.items]


class _FakeClient:
    """Scores a response by its length, after `delay` seconds; records when each group was sent."""

    def __init__(self, delay: float):
        self.delay = delay
        self.sent: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def submit(self, items):
        with self.lock:
            self.sent.append((items[0].response, time.perf_counter()))
        return _Pending(list(items), self.delay)


def test_stream_scorer_scores_in_candidate_order_and_keeps_the_rerun_groups_scores():
    prompts = [_prompt(u) for u in (0, 1, 2)]
    client = _FakeClient(delay=0.05)
    scorer = StreamScorer(client, RewardConfig())
    for uid, tag in ((2, ""), (0, ""), (0, "-rerun!"), (1, "")):
        scorer.on_group(prompts[uid], _group(uid, tag))
        time.sleep(0.02)  # the next group finishes a little later
    batch = RolloutBatch(prompts, [c for u in (0, 1, 2) for c in _group(u, "-rerun!" if u == 0 else "")], G)
    scores, timing = scorer.finish(batch)
    assert [s.total for s in scores] == [float(len(c.text)) for c in batch.candidates]
    assert len(client.sent) == 4  # the re-run group was scored again
    assert 0.0 <= timing["timing/first_reward_request_s"] < timing["timing/generation_end_s"]
    assert timing["timing/reward_overlap_s"] > 0.0
    assert timing["timing/reward_end_s"] >= timing["timing/generation_end_s"]


def test_stream_scorer_names_a_group_that_was_never_sent():
    from reward.client import RewardServiceError

    prompts = [_prompt(0), _prompt(1)]
    scorer = StreamScorer(_FakeClient(delay=0.0), RewardConfig())
    scorer.on_group(prompts[0], _group(0))
    with pytest.raises(RewardServiceError, match="prompt uid 1"):
        scorer.finish(RolloutBatch(prompts, _group(0) + _group(1), G))
