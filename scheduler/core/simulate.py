"""``cronwf simulate``: the real engine on a virtual clock (SIMULATE.md is the contract).

An SRE asks what a stop strategy or a downtime will do before deploying it. The answer must
come from the code that will run, so this module only supplies what a cluster would: a
virtual clock, an in-memory history store and a workflow controller that finishes each
Workflow after ``--run-duration`` with the next of ``--outcomes``. Everything else (policies,
tick order, catch-up, counters, stop strategy) is :class:`scheduler.core.engine.Engine`.

The clock jumps from one interesting instant to the next (a scheduled instant, a Workflow
finishing, the end of a downtime), so a year of ``* * * * *`` is 525,600 steps, not 31 million
seconds. Events are streamed as they happen, so memory stays flat however long the window.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from policies.decision import CronWorkflow, History, Phase, WorkflowPhase, seed_history
from policies.spec import CronWorkflowSpec
from policies.workflow import rfc3339, workflow_name
from scheduler.core.engine import (
    Completed,
    Engine,
    Error,
    Event,
    Missed,
    Skipped,
    Spawned,
    Stopped,
    Terminated,
)
from scheduler.core.memory import MemoryHistory

__all__ = [
    "DownWindow",
    "SimulationError",
    "Simulator",
    "event_json",
    "parse_duration",
    "parse_time",
]


class SimulationError(ValueError):
    """Bad simulation input (times, durations, outcomes); the message says what to write."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``12m``, ``1h``, ``1h30m`` or plain seconds."""
    value = text.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    position = 0
    seconds = 0.0
    for match in _DURATION.finditer(value):
        if match.start() != position:
            break
        number, unit = match.groups()
        seconds += float(number) * {"h": 3600, "m": 60, "s": 1}[unit]
        position = match.end()
    if not value or position != len(value):
        raise SimulationError(
            f"invalid duration {text!r}: write seconds or a duration such as 90s, 12m, 1h30m"
        )
    return timedelta(seconds=seconds)


def parse_time(text: str, what: str) -> datetime:
    """An RFC 3339 time with an offset, as UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SimulationError(
            f"{what}: invalid time {text!r}: write RFC 3339, e.g. 2026-03-08T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise SimulationError(
            f"{what}: time {text!r} has no UTC offset: write e.g. {text}Z or {text}+01:00"
        )
    return parsed.astimezone(UTC)


def parse_outcomes(text: str) -> tuple[WorkflowPhase, ...]:
    """``Succeeded,Failed,...``; the phases of the 1st, 2nd... Workflow of each CronWorkflow."""
    phases: list[WorkflowPhase] = []
    for raw in text.split(","):
        name = raw.strip()
        matches = [p for p in WorkflowPhase if p.value.lower() == name.lower()]
        if not matches:
            allowed = ", ".join(p.value for p in WorkflowPhase)
            raise SimulationError(f"--outcomes: unknown phase {name!r}: use {allowed}")
        phases.append(matches[0])
    return tuple(phases)


@dataclass(frozen=True)
class DownWindow:
    """The scheduler is not running in ``[start, end)``."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, text: str) -> DownWindow:
        parts = text.split("/")
        if len(parts) != 2:
            raise SimulationError(
                f"--down {text!r}: write START/END, e.g. 2026-03-08T10:00:00Z/2026-03-08T10:05:00Z"
            )
        start = parse_time(parts[0], "--down")
        end = parse_time(parts[1], "--down")
        if end <= start:
            raise SimulationError(f"--down {text!r}: the end must be after the start")
        return cls(start, end)


# --------------------------------------------------------------------------------------------
# The simulated world


@dataclass
class _Run:
    key: str
    workflow: str
    scheduled_at: datetime
    finish: datetime
    phase: WorkflowPhase
    done: bool = False


class _Controller:
    """A workflow controller: each Workflow ends ``run_duration`` after its creation with the
    next outcome of its CronWorkflow; a terminated one ends ``Failed`` at once."""

    def __init__(self, outcomes: Sequence[WorkflowPhase], run_duration: timedelta) -> None:
        self.now = datetime.min.replace(tzinfo=UTC)
        self._outcomes = outcomes
        self._run_duration = run_duration
        self._spawned: dict[str, int] = {}
        self._runs: dict[tuple[str, str], _Run] = {}
        self._pending: list[tuple[datetime, str, int, _Run]] = []
        self._sequence = 0
        self.terminated: list[_Run] = []

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        name = workflow_name(spec.name, scheduled_at)
        if (spec.namespace, name) in self._runs:
            return False
        count = self._spawned.get(spec.key, 0)
        self._spawned[spec.key] = count + 1
        phase = self._outcomes[min(count, len(self._outcomes) - 1)]
        run = _Run(spec.key, name, scheduled_at, self.now + self._run_duration, phase)
        self._runs[(spec.namespace, name)] = run
        self._push(run)
        return True

    def terminate(self, namespace: str, workflow: str) -> None:
        run = self._runs.get((namespace, workflow))
        if run is None or run.done or run.finish <= self.now:
            return  # gone or already finished: fine, as with Argo
        run.finish, run.phase = self.now, WorkflowPhase.FAILED
        self.terminated.append(run)

    def _push(self, run: _Run) -> None:
        self._sequence += 1
        heapq.heappush(self._pending, (run.finish, run.key, self._sequence, run))

    def next_finish(self) -> datetime | None:
        while self._pending and self._pending[0][3].done:
            heapq.heappop(self._pending)
        return self._pending[0][0] if self._pending else None

    def finished_by(self, t: datetime) -> Iterator[_Run]:
        """Runs finished at or before ``t``, in time order, then CronWorkflow order."""
        while self._pending and self._pending[0][0] <= t:
            finish, _, _, run = heapq.heappop(self._pending)
            if run.done or run.finish != finish:
                continue  # terminated earlier; handled with its tick
            run.done = True
            self._forget(run)
            yield run

    def take_terminated(self) -> list[_Run]:
        runs, self.terminated = self.terminated, []
        for run in runs:
            run.done = True
            self._forget(run)
        return runs

    def _forget(self, run: _Run) -> None:
        # A finished run is never spawned again (the cursor has passed its instant), so
        # forgetting it keeps a year-long simulation's memory flat.
        namespace = run.key.partition("/")[0]
        self._runs.pop((namespace, run.workflow), None)


class _Collector:
    """The engine's observer: hands each event to the output as it happens."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def emit(self, event: Event) -> None:
        self._write(event)


def event_json(event: Event) -> dict[str, Any]:
    """An event in SIMULATE.md's JSON shape."""
    data: dict[str, Any] = {
        "time": rfc3339(event.time),
        "cronWorkflow": event.key,
        "event": event.kind,
    }
    if isinstance(event, Spawned):
        data |= {"scheduledTime": rfc3339(event.scheduled_at), "workflow": event.workflow}
    elif isinstance(event, Skipped | Missed):
        data |= {"scheduledTime": rfc3339(event.scheduled_at), "reason": event.reason.value}
    elif isinstance(event, Terminated):
        data |= {"workflow": event.workflow}
    elif isinstance(event, Completed):
        data |= {"workflow": event.workflow, "phase": event.phase.value}
    elif isinstance(event, Error):
        data |= {"reason": event.reason.value, "message": event.message}
    elif not isinstance(event, Stopped):
        raise TypeError(f"unknown event {event!r}")
    return data


def final_json(history: History) -> dict[str, Any]:
    return {
        "succeeded": history.succeeded,
        "failed": history.failed,
        "consecutiveSucceeded": history.consecutive_succeeded,
        "consecutiveFailed": history.consecutive_failed,
        "phase": history.phase.value,
        "lastScheduledTime": (
            rfc3339(history.last_scheduled_time) if history.last_scheduled_time else None
        ),
        "active": list(history.active),
    }


# --------------------------------------------------------------------------------------------
# The simulation


@dataclass
class Simulator:
    """Runs CronWorkflows through the engine from ``start`` to ``end`` (both included)."""

    cron_workflows: Sequence[CronWorkflow]
    start: datetime
    end: datetime
    outcomes: Sequence[WorkflowPhase] = (WorkflowPhase.SUCCEEDED,)
    run_duration: timedelta = timedelta(seconds=30)
    down: Sequence[DownWindow] = ()
    store: MemoryHistory = field(default_factory=MemoryHistory)

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise SimulationError("--end must not be before --start")
        if not self.outcomes:
            raise SimulationError("--outcomes needs at least one phase")

    def run(self, emit: Any) -> dict[str, History]:
        """Simulate, calling ``emit(event)`` for each event; returns the final histories."""
        controller = _Controller(self.outcomes, self.run_duration)
        engine = Engine(self.store, controller, _Collector(emit))
        by_key = {cw.key: cw for cw in sorted(self.cron_workflows, key=lambda cw: cw.key)}
        for cw in by_key.values():
            # The cursor starts just before the window unless the status carries one. Only
            # the counters and lastScheduledTime are taken from the status (SIMULATE.md):
            # runs listed as active there are unknown to the simulated controller.
            seed = replace(
                seed_history(cw, self.start - timedelta(seconds=1)), active=(), phase=Phase.NONE
            )
            self.store.apply(cw.key, seed, lambda h: h)
            engine.sync(cw, self.start)
        for up_start, up_end, closed in self._up_intervals():
            controller.now = up_start
            for run in controller.finished_by(up_start):
                self._complete(engine, by_key, run, up_start)
            for cw in by_key.values():
                engine.catch_up(cw, up_start)
                for run in controller.take_terminated():
                    self._complete(engine, by_key, run, up_start)
            self._run_interval(engine, controller, by_key, up_start, up_end, closed)
        return {key: self.store.load(key) or History() for key in by_key}

    def _up_intervals(self) -> Iterator[tuple[datetime, datetime, bool]]:
        """``(start, end, end_included)`` of the times the scheduler runs, in order."""
        cursor = self.start
        for window in sorted(self.down, key=lambda w: w.start):
            if window.end <= cursor:
                continue
            if window.start > cursor:
                yield cursor, min(window.start, self.end), window.start > self.end
                if window.start > self.end:
                    return
            cursor = max(cursor, window.end)
            if cursor > self.end:
                return
        yield cursor, self.end, True

    def _run_interval(
        self,
        engine: Engine,
        controller: _Controller,
        by_key: dict[str, CronWorkflow],
        up_start: datetime,
        up_end: datetime,
        closed: bool,
    ) -> None:
        timers: list[tuple[int, str]] = []
        first = int(up_start.timestamp()) - 1
        for key, cw in by_key.items():
            if cw.schedule is not None:
                following = cw.schedule.next_after_ts(first)
                if following is not None:
                    timers.append((following, key))
        heapq.heapify(timers)
        end_ts = up_end.timestamp()

        def inside(ts: float) -> bool:
            return ts <= end_ts if closed else ts < end_ts

        while True:
            tick_ts = timers[0][0] if timers else None
            finish = controller.next_finish()
            candidates = [t for t in (tick_ts, finish.timestamp() if finish else None) if t]
            if not candidates:
                return
            now_ts = min(candidates)
            if not inside(now_ts):
                return
            now = datetime.fromtimestamp(now_ts, UTC)
            controller.now = now
            for run in controller.finished_by(now):
                self._complete(engine, by_key, run, now)
            while timers and timers[0][0] == now_ts:
                _, key = heapq.heappop(timers)
                cw = by_key[key]
                engine.tick(cw, now, now)
                for run in controller.take_terminated():
                    self._complete(engine, by_key, run, now)
                assert cw.schedule is not None
                following = cw.schedule.next_after_ts(int(now_ts))
                if following is not None:
                    heapq.heappush(timers, (following, key))

    @staticmethod
    def _complete(
        engine: Engine, by_key: dict[str, CronWorkflow], run: _Run, now: datetime
    ) -> None:
        engine.complete(
            by_key[run.key],
            run.workflow,
            run.phase,
            now,
            scheduled_at=run.scheduled_at,
            finished_at=run.finish,
        )


# --------------------------------------------------------------------------------------------
# Output


def write_json(simulator: Simulator, out: IO[str]) -> None:
    """Stream ``{"events": [...], "final": {...}}``."""
    out.write('{"events": [')
    first = True

    def emit(event: Event) -> None:
        nonlocal first
        out.write(("\n" if first else ",\n") + json.dumps(event_json(event)))
        first = False

    final = simulator.run(emit)
    out.write("\n],\n")
    finals = {key: final_json(history) for key, history in final.items()}
    out.write(f'"final": {json.dumps(finals, indent=2)}}}\n')


def _details(data: dict[str, Any]) -> str:
    skip = {"time", "cronWorkflow", "event"}
    return "  ".join(f"{k}={v}" for k, v in data.items() if k not in skip)


def write_text(simulator: Simulator, out: IO[str]) -> None:
    """A readable table, one line per event, then the final state of each CronWorkflow."""
    out.write(f"{'TIME':<21} {'CRONWORKFLOW':<32} {'EVENT':<11} DETAILS\n")

    def emit(event: Event) -> None:
        data = event_json(event)
        line = f"{data['time']:<21} {data['cronWorkflow']:<32} {data['event']:<11} "
        out.write((line + _details(data)).rstrip() + "\n")

    final = simulator.run(emit)
    out.write("\nFINAL\n")
    for key, history in final.items():
        state = final_json(history)
        active = ",".join(state["active"]) or "-"
        out.write(
            f"{key}: phase={state['phase'] or '-'} succeeded={state['succeeded']} "
            f"failed={state['failed']} consecutiveSucceeded={state['consecutiveSucceeded']} "
            f"consecutiveFailed={state['consecutiveFailed']} "
            f"lastScheduledTime={state['lastScheduledTime'] or '-'} active={active}\n"
        )
