"""`empathy_rl.startup.ConcurrentStart`: stages overlap, a failure waits for the others, errors name the stage."""

from __future__ import annotations

import threading
import time

import pytest

from empathy_rl.remote import StageTimeout
from empathy_rl.startup import ConcurrentStart


def test_stages_run_at_the_same_time_and_report_their_seconds():
    barrier = threading.Barrier(3, timeout=5)  # passes only if all three stages are running at once
    starter = ConcurrentStart()
    for name in ("reward service", "learner group", "rollout pool"):
        starter.start(name, barrier.wait, 10, "timeouts.startup_s")
    seconds = starter.wait()
    assert list(seconds) == ["reward service", "learner group", "rollout pool"]
    assert all(0 <= s < 5 for s in seconds.values())


def test_a_failure_waits_for_the_other_stages_and_the_earliest_stage_error_wins():
    finished = []

    def slow_ok():
        time.sleep(0.3)
        finished.append("reward")

    def fail(message):
        def run():
            time.sleep(0.05)
            raise RuntimeError(message)

        return run

    starter = ConcurrentStart()
    starter.start("reward service", slow_ok, 10, "timeouts.startup_s")
    starter.start("learner group", fail("learner rank 0: load_policy failed"), 10, "timeouts.startup_s")
    starter.start("rollout pool", fail("rollout worker 0: vLLM engine start-up failed"), 10, "timeouts.startup_s")
    with pytest.raises(RuntimeError, match="^learner rank 0: load_policy failed"):
        starter.wait()
    assert finished == ["reward"]  # what the reward stage started is assigned before the error goes out


def test_a_stage_past_its_deadline_is_named_with_its_config_key():
    release = threading.Event()
    starter = ConcurrentStart()
    starter.start("reward service", lambda: release.wait(30), 0.2, "timeouts.startup_s")
    starter.start("rollout pool", lambda: None, 10, "timeouts.startup_s")
    try:
        with pytest.raises(StageTimeout) as err:
            starter.wait()
        assert str(err.value) == "reward service: start-up timed out after 0.2 s (timeouts.startup_s)"
        assert err.value.party == "reward service"
    finally:
        release.set()
