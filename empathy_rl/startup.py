"""Start the run's services at the same time, each with a deadline that names it.

Why: the reward service (a Serve app loading an encoder), the learner group (Ray actors, a torch
rendezvous, DeepSpeed engines) and the rollout pool (vLLM engines) do not depend on each other, yet
started one after another their start-up times add up (35-80 s on the tiny preset, issue 13). Each
stage's constructor already waits on its own actors with its own timeouts; here every stage runs in
its own thread, so their waits overlap, and the driver waits for all of them.

Failure rules, so that a failed start never leaves anything behind:
- a stage that raises or passes its deadline fails the start-up, but only after every other stage
  has finished or passed its own deadline: whatever they started is then assigned to the driver,
  whose `shutdown()` removes it;
- of several failures, the one of the earliest stage in start order is raised (a bad model path
  fails the learner and the rollout engines alike; the learner's error is the one reported);
- a deadline raises `StageTimeout` "<stage>: start-up timed out after N s (<config key>)". The
  stage's thread is a daemon: one stuck in a call without a deadline cannot keep the process alive.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from empathy_rl.remote import StageTimeout

log = logging.getLogger("empathy_rl")


@dataclass
class _Stage:
    name: str
    timeout_s: float
    key: str
    started: float
    thread: threading.Thread
    error: Optional[BaseException] = None
    seconds: Optional[float] = None
    done: threading.Event = field(default_factory=threading.Event)


class ConcurrentStart:
    """`start()` each stage (it runs at once, in a thread), then `wait()` for all of them."""

    def __init__(self) -> None:
        self.stages: list[_Stage] = []

    def start(self, name: str, fn: Callable[[], None], timeout_s: float, key: str) -> None:
        """Run `fn` in a daemon thread now; `timeout_s` (set by config `key`) counts from this call."""

        def run() -> None:
            try:
                fn()
            except BaseException as err:  # noqa: BLE001  (handed to the waiting thread)
                stage.error = err
            finally:
                stage.seconds = time.perf_counter() - stage.started
                stage.done.set()

        thread = threading.Thread(target=run, name=f"start-{name}", daemon=True)
        stage = _Stage(name, timeout_s, key, time.perf_counter(), thread)
        self.stages.append(stage)
        thread.start()

    def settle(self) -> list[BaseException]:
        """Wait until every stage has finished or passed its deadline; the errors, in start order."""
        errors: list[BaseException] = []
        for stage in self.stages:
            left = stage.started + stage.timeout_s - time.perf_counter()
            if not stage.done.wait(max(left, 0.0)):
                errors.append(StageTimeout(f"{stage.name}: start-up timed out after {stage.timeout_s:g} s ({stage.key})", stage.name, "start-up"))
            elif stage.error is not None:
                errors.append(stage.error)
        return errors

    def wait(self) -> dict[str, float]:
        """Seconds per stage once all are up; raises the first failure in start order (see the module doc)."""
        errors = self.settle()
        if errors:
            for extra in errors[1:]:
                log.warning("start-up: another stage failed too: %s: %s", type(extra).__name__, extra)
            raise errors[0]
        return {stage.name: float(stage.seconds or 0.0) for stage in self.stages}
