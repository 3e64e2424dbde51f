"""What the local executor's tests share: the ``on_finished`` callback that collects runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from scheduler.adapters.local.executor import RunFinished

__all__ = ["BOUND", "Completions", "wait_until"]

BOUND = 10.0
"""Seconds: the longest any executor test waits for a run."""


class Completions:
    """The ``on_finished`` callback: collects every reported run."""

    def __init__(self) -> None:
        self.runs: list[RunFinished] = []
        self._changed = threading.Condition()

    def __call__(self, run: RunFinished) -> None:
        with self._changed:
            self.runs.append(run)
            self._changed.notify_all()

    def wait(self, count: int = 1, timeout: float = BOUND) -> list[RunFinished]:
        """The runs reported, once there are ``count`` of them (fails after ``timeout``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.runs) >= count, timeout):
                pytest.fail(f"expected {count} completions within {timeout}s, got {self.runs}")
            return list(self.runs)

    def one(self) -> RunFinished:
        (run,) = self.wait(1)
        return run

    def of(self, workflow: str) -> RunFinished:
        """The report of that run, once it came (exactly one)."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: any(run.workflow == workflow for run in self.runs), BOUND
            ):
                pytest.fail(f"{workflow} was not reported within {BOUND}s: {self.runs}")
            (run,) = [run for run in self.runs if run.workflow == workflow]
            return run


def wait_until(condition: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
