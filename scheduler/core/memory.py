"""An in-memory history store: the reference implementation of the store contract.

``cronwf simulate`` and the unit tests use it: it applies the pure transitions of
:mod:`policies.decision` directly, which makes it both the fastest store and the executable
statement of what every other store (Redis) must do. It holds no fencing token: in one process
there is nobody to be deposed by.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from policies.decision import History
from scheduler.core.engine import OneByOne, RunRecord, Transition

__all__ = ["DEFAULT_RECENT_RUNS", "MemoryHistory", "merge_run"]

DEFAULT_RECENT_RUNS = 100


def merge_run(old: RunRecord, new: RunRecord) -> RunRecord:
    """A later record of the same instant refines an earlier one; empty fields keep the old."""
    return replace(
        old,
        decision=new.decision or old.decision,
        workflow=new.workflow or old.workflow,
        reason=new.reason or old.reason,
        phase=new.phase or old.phase,
        finished_at=new.finished_at or old.finished_at,
        decided_at=old.decided_at,
    )


class MemoryHistory(OneByOne):
    """Histories in a dict, recent runs in a bounded ordered dict per CronWorkflow."""

    def __init__(self, recent_runs: int = DEFAULT_RECENT_RUNS) -> None:
        self._histories: dict[str, History] = {}
        self._runs: dict[str, OrderedDict[datetime, RunRecord]] = {}
        self._recent_runs = recent_runs
        self._lock = threading.Lock()

    def load(self, key: str) -> History | None:
        return self._histories.get(key)

    def apply(
        self,
        key: str,
        seed: History,
        transition: Transition,
        runs: Sequence[RunRecord] = (),
    ) -> tuple[History, History]:
        with self._lock:
            before = self._histories.get(key, seed)
            after = transition(before)
            self._histories[key] = after
            if runs:
                self._record_runs(key, runs)
            return before, after

    def _record_runs(self, key: str, runs: Sequence[RunRecord]) -> None:
        recent = self._runs.setdefault(key, OrderedDict())
        for run in runs:
            old = recent.get(run.scheduled_at)
            if old is not None:
                recent[run.scheduled_at] = merge_run(old, run)
                continue
            newest = next(reversed(recent), None)
            recent[run.scheduled_at] = run
            if newest is not None and run.scheduled_at < newest:
                # Rare (a late record of an old instant): restore the order by instant.
                ordered = sorted(recent.items())
                recent.clear()
                recent.update(ordered)
        while len(recent) > self._recent_runs:
            recent.popitem(last=False)  # the oldest instant: keep the newest, as every store does

    def forget(self, key: str) -> None:
        with self._lock:
            self._histories.pop(key, None)
            self._runs.pop(key, None)

    def recent_runs(self, key: str) -> list[RunRecord]:
        """The recent runs of ``key``, newest first."""
        return sorted(self._runs.get(key, {}).values(), key=lambda r: r.scheduled_at, reverse=True)
