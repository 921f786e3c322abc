"""The reward service on a real local Ray Serve: batching, order, components, HTTP face."""

from __future__ import annotations

import pytest
import ray

from empathy_rl import coe
from empathy_rl.config import RewardConfig
from reward.types import ScoreRequest

pytestmark = pytest.mark.slow

QUERY = "I can't sleep before my exams. I lie awake worrying that I will fail and disappoint my parents."
RELATED = "Exam worry that keeps you awake is exhausting. A short wind-down routine before bed and talking to your parents about the pressure may help you sleep."
UNRELATED = "The recipe needs two eggs, a cup of flour and twenty minutes in a hot oven."


def _coe(answer: str) -> str:
    return coe.render_coe(["worry, fear of failing", "exam pressure", "understanding", "validate, suggest"], answer)


@pytest.fixture(scope="module")
def client():
    from ray import serve

    from reward.serve_app import RewardClient

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False)
    cfg = RewardConfig(answer_mode="cosine", max_batch_chunks=8)
    c = RewardClient(cfg, http_port=port)
    c.port = port
    yield c
    c.shutdown()
    serve.shutdown()
    ray.shutdown()


def test_scores_components_in_input_order(client):
    items = [
        ScoreRequest(QUERY, _coe(RELATED)),
        ScoreRequest(QUERY, _coe(UNRELATED)),
        ScoreRequest(QUERY, "no tags at all"),
        ScoreRequest("I want to end my life.", _coe("Please call your local emergency services or a crisis line now."), crisis=True),
        ScoreRequest("I want to end my life.", _coe("Try to get more sleep."), crisis=True),
    ] * 3  # 15 items -> several chunks scored concurrently and batched together
    scores, seconds = client.score(items, chunk_size=2)
    assert len(scores) == 15 and seconds > 0
    for i in range(0, 15, 5):
        related, unrelated, malformed, referral, no_referral = scores[i : i + 5]
        assert related.format == unrelated.format == 1.0 and related.failure == ""
        assert related.similarity > unrelated.similarity + 0.2
        assert related.answer == pytest.approx(related.similarity)  # cosine mode
        assert malformed.format == 0.0 and malformed.answer == 0.0 and malformed.failure == "missing_tag"
        assert referral.crisis == 1.0 and no_referral.crisis == -1.0
        assert related.total == pytest.approx(1.0 + related.answer)  # format 1 + answer, crisis 0
    assert scores[0] == scores[5] == scores[10]


def test_http_face(client):
    import requests

    body = {"items": [{"query": QUERY, "response": _coe(RELATED)}, {"query": QUERY, "response": "bad"}]}
    reply = requests.post(f"http://127.0.0.1:{client.port}/empathy-reward", json=body, timeout=60).json()
    assert [s["format"] for s in reply["scores"]] == [1.0, 0.0]
    bad = requests.post(f"http://127.0.0.1:{client.port}/empathy-reward", json={"nope": 1}, timeout=60).json()
    assert "error" in bad
