"""The engine applying decisions through its ports (DESIGN §4-§6, §9).

The engine runs here with the real in-memory history store, a fake workflow sink and a
recording observer, all defined below (fakes, not mocks: each behaves like the system it stands
for). Every call receives its ``now``; nothing reads a clock. The concurrency tests use
threads and events with bounded waits to show that ticks, catch-up and completions of one
CronWorkflow never interleave (Argo's race #12625).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from policies.decision import (
    CronWorkflow,
    ErrorReason,
    History,
    MissedReason,
    Phase,
    SkipReason,
    WorkflowPhase,
    record_claim,
)
from policies.spec import CronWorkflowSpec, StatusSeed
from policies.workflow import render_workflow, workflow_name
from scheduler.core.engine import (
    Completed,
    Engine,
    Error,
    Event,
    Lost,
    Missed,
    RunRecord,
    SinkError,
    SinkUnavailable,
    Skipped,
    Spawned,
    SpawnOutcome,
    SpawnRejected,
    Stopped,
    StoreUnavailable,
    Terminated,
    TickResult,
    Transition,
    spawn_each,
)
from scheduler.core.memory import MemoryHistory

# A Monday, 09:00 UTC; the default schedule fires every 5 minutes.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = "batch/nightly"
BOUND = 2.0  # seconds: the longest any test waits for another thread

WORKFLOW_SPEC: dict[str, Any] = {
    "entrypoint": "main",
    "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def name_at(minutes: float) -> str:
    return workflow_name("nightly", at(minutes))


def make_cron_workflow(**changes: Any) -> CronWorkflow:
    base = CronWorkflowSpec(
        name="nightly",
        namespace="batch",
        uid="5b0a3c1e-0000-4000-8000-000000000001",
        schedules=("*/5 * * * *",),
        workflow_spec=WORKFLOW_SPEC,
    )
    return CronWorkflow.prepare(replace(base, **changes))


# --------------------------------------------------------------------------------------------
# Fakes of the ports


@dataclass
class FakeSink:
    """A workflow API: creates each name once, answers "already exists" after that."""

    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)
    spawn_calls: int = 0
    spawn_errors: list[Exception] = field(default_factory=list)
    terminate_errors: list[Exception] = field(default_factory=list)

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        self.spawn_calls += 1
        if self.spawn_errors:
            raise self.spawn_errors.pop(0)
        workflow = render_workflow(spec, scheduled_at)
        name = workflow["metadata"]["name"]
        if name in self.workflows:
            return False
        self.workflows[name] = workflow
        return True

    def terminate(self, namespace: str, workflow: str) -> None:
        if self.terminate_errors:
            raise self.terminate_errors.pop(0)
        self.terminated.append(workflow)


class BlockingSink(FakeSink):
    """Blocks inside ``spawn`` until released, to hold a tick in the middle of its work."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        self.entered.set()
        if not self.release.wait(BOUND):
            raise TimeoutError("the test never released the sink")
        return super().spawn(spec, scheduled_at)


@dataclass
class RecordingObserver:
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


class Deposed(StoreUnavailable):
    """What a shared store raises when this replica's fencing token is no longer current."""


class DeposedHistory(MemoryHistory):
    """A store whose fencing token is no longer current: every write is refused."""

    def apply(
        self, key: str, seed: History, transition: Transition, runs: Sequence[RunRecord] = ()
    ) -> tuple[History, History]:
        raise Deposed(f"write to {key} refused: this replica does not lead")


class RacedHistory(MemoryHistory):
    """A store in which another replica claims the instant just before each of our claims
    lands (its write comes first): ours finds the instant decided."""

    def apply(
        self, key: str, seed: History, transition: Transition, runs: Sequence[RunRecord] = ()
    ) -> tuple[History, History]:
        if isinstance(transition, partial) and transition.func is record_claim:
            other = partial(transition, claimed_at=transition.keywords["claimed_at"])
            super().apply(key, seed, other)
        return super().apply(key, seed, transition, runs)


@dataclass
class World:
    store: MemoryHistory
    sink: FakeSink
    observer: RecordingObserver
    engine: Engine

    def history(self) -> History:
        loaded = self.store.load(KEY)
        assert loaded is not None
        return loaded


def world(store: MemoryHistory | None = None, sink: FakeSink | None = None) -> World:
    store = MemoryHistory() if store is None else store
    sink = FakeSink() if sink is None else sink
    observer = RecordingObserver()
    return World(store, sink, observer, Engine(store, sink, observer))


def started(cron_workflow: CronWorkflow, **kwargs: Any) -> World:
    """A world in which ``cron_workflow`` was synced at T0 (its cursor at T0)."""
    w = world(**kwargs)
    w.engine.sync(cron_workflow, at(0))
    return w


class Worker:
    """Runs one call in a thread and keeps its result or exception for the test to check."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()

    def join(self) -> object:
        self._thread.join(BOUND)
        assert self.done.is_set(), "the call did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


# --------------------------------------------------------------------------------------------
# Ticks


def test_a_tick_spawns_one_workflow_and_records_it() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)

    result = w.engine.tick(cron_workflow, at(5), at(5))

    spawned = Spawned(time=at(5), key=KEY, scheduled_at=at(5), workflow=name_at(5), created=True)
    assert result == TickResult("Spawned", (spawned,))
    assert w.observer.events == [spawned]
    assert list(w.sink.workflows) == [name_at(5)]
    history = w.history()
    assert history.active == (name_at(5),)
    assert history.last_scheduled_time == at(5)
    assert history.cursor == at(5)
    assert history.phase is Phase.ACTIVE


def test_the_same_instant_ticked_twice_is_decided_once() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)

    first = w.engine.tick(cron_workflow, at(5), at(5))
    second = w.engine.tick(cron_workflow, at(5), at(5) + timedelta(seconds=3))

    assert first.kind == "Spawned"
    assert second == TickResult("AlreadyDecided")
    assert w.sink.spawn_calls == 1
    assert len(w.observer.events) == 1


def test_an_instant_before_the_cursor_is_never_decided() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(10), at(10))

    assert w.engine.tick(cron_workflow, at(5), at(11)) == TickResult("AlreadyDecided")
    assert w.sink.spawn_calls == 1


def test_a_tick_for_a_cron_workflow_the_store_does_not_know_is_still_decided() -> None:
    """A store that lost its keys (DESIGN §9: Redis came back empty) must not silence ticks.

    Without status.lastScheduledTime the history is seeded at "now" (DESIGN §5); the instant
    being ticked at that very moment has not been decided yet and must run.
    """
    cron_workflow = make_cron_workflow()
    w = world()

    result = w.engine.tick(cron_workflow, at(5), at(5))

    assert result.kind == "Spawned"
    assert list(w.sink.workflows) == [name_at(5)]
    assert w.history().active == (name_at(5),)


def test_already_exists_is_a_success_counted_once_at_completion() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    # Another replica created this instant's Workflow before it lost leadership.
    w.sink.workflows[name_at(5)] = render_workflow(cron_workflow.spec, at(5))

    result = w.engine.tick(cron_workflow, at(5), at(5))

    assert result == TickResult(
        "Spawned",
        (Spawned(time=at(5), key=KEY, scheduled_at=at(5), workflow=name_at(5), created=False),),
    )
    assert w.history().active == (name_at(5),)
    assert w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(6))
    assert not w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(7))
    assert (w.history().succeeded, w.history().failed) == (1, 0)


def test_a_rejected_spawn_is_a_submission_error_counted_as_failed() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.sink.spawn_errors.append(SpawnRejected('admission webhook "policy" denied the request'))

    result = w.engine.tick(cron_workflow, at(5), at(5))

    error = Error(
        time=at(5),
        key=KEY,
        reason=ErrorReason.SUBMISSION_ERROR,
        message='Failed to submit Workflow: admission webhook "policy" denied the request',
        scheduled_at=at(5),
        triggered=True,
    )
    assert result == TickResult("Error", (error,))
    assert w.observer.events == [error]
    history = w.history()
    assert (history.failed, history.consecutive_failed) == (1, 1)
    assert history.conditions == {"SubmissionError": error.message}
    assert history.cursor == at(5)
    assert history.active == ()
    assert history.last_scheduled_time is None


def test_a_successful_spawn_clears_the_submission_error() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.sink.spawn_errors.append(SpawnRejected("quota exceeded"))
    w.engine.tick(cron_workflow, at(5), at(5))

    w.engine.tick(cron_workflow, at(10), at(10))

    assert "SubmissionError" not in w.history().conditions
    assert w.history().failed == 1


def test_sink_unavailable_propagates_and_leaves_the_instant_to_catch_up() -> None:
    cron_workflow = make_cron_workflow(starting_deadline_seconds=300)
    w = started(cron_workflow)
    w.sink.spawn_errors.append(SinkUnavailable("connection refused"))

    with pytest.raises(SinkUnavailable):
        w.engine.tick(cron_workflow, at(5), at(5))

    assert w.observer.events == []
    assert w.history().cursor == at(0), "the instant stays undecided: its claim handed back"
    assert (w.history().failed, w.history().active, w.history().intents) == (0, (), {})

    results = w.engine.catch_up(cron_workflow, at(6))

    caught_up = Spawned(
        time=at(6),
        key=KEY,
        scheduled_at=at(5),
        workflow=name_at(5),
        created=True,
        catch_up=True,
    )
    assert [result.kind for result in results] == ["Spawned"]
    assert w.observer.events == [caught_up]
    assert list(w.sink.workflows) == [name_at(5)]


def test_replace_terminates_the_active_run_before_spawning() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Replace")
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    result = w.engine.tick(cron_workflow, at(10), at(10))

    terminated = Terminated(time=at(10), key=KEY, workflow=name_at(5))
    spawned = Spawned(
        time=at(10),
        key=KEY,
        scheduled_at=at(10),
        workflow=name_at(10),
        created=True,
        replaced=(name_at(5),),
    )
    assert result == TickResult("Spawned", (terminated, spawned))
    assert w.observer.events[-2:] == [terminated, spawned]
    assert w.sink.terminated == [name_at(5)]
    assert w.history().active == (name_at(5), name_at(10)), "until it completes"

    assert w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.FAILED, at(10))
    assert w.history().active == (name_at(10),)
    assert w.history().failed == 1


def test_replace_that_cannot_terminate_is_a_run_policy_error() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Replace")
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))
    w.sink.terminate_errors.append(SpawnRejected("forbidden"))

    result = w.engine.tick(cron_workflow, at(10), at(10))

    assert result.kind == "Error"
    error = result.events[-1]
    assert isinstance(error, Error)
    assert error.reason is ErrorReason.SUBMISSION_ERROR
    assert error.message == f"run policy error: error stopping workflow {name_at(5)}: forbidden"
    assert list(w.sink.workflows) == [name_at(5)], "no new Workflow"
    assert w.history().failed == 1
    assert w.history().active == (name_at(5),)


def test_forbid_skips_while_a_run_is_active() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Forbid")
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    result = w.engine.tick(cron_workflow, at(10), at(10))

    skipped = Skipped(
        time=at(10), key=KEY, scheduled_at=at(10), reason=SkipReason.CONCURRENCY_FORBID
    )
    assert result == TickResult("Skipped", (skipped,))
    assert w.history().cursor == at(10)
    assert w.history().last_scheduled_time == at(5)


def test_an_instant_claimed_by_another_replica_first_is_not_spawned() -> None:
    cron_workflow = make_cron_workflow()
    w = world(store=RacedHistory())
    w.engine.sync(cron_workflow, at(0))

    result = w.engine.tick(cron_workflow, at(5), at(5))

    assert result == TickResult("ClaimLost")
    assert w.sink.spawn_calls == 0
    assert w.observer.events == []
    assert w.history().cursor == at(5)  # decided, by the other replica


def test_a_deposed_replica_spawns_nothing() -> None:
    cron_workflow = make_cron_workflow()
    w = world(store=DeposedHistory())

    with pytest.raises(Deposed):
        w.engine.tick(cron_workflow, at(5), at(5))

    assert w.sink.spawn_calls == 0
    assert w.observer.events == []


# --------------------------------------------------------------------------------------------
# Completions and the stop strategy


def test_a_completion_observed_twice_counts_once() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    first = w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.FAILED, at(6))
    second = w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.FAILED, at(7))

    assert (first, second) == (True, False)
    assert w.observer.events[1:] == [
        Completed(time=at(6), key=KEY, workflow=name_at(5), phase=WorkflowPhase.FAILED)
    ]
    history = w.history()
    assert (history.failed, history.consecutive_failed, history.active) == (1, 1, ())


def test_a_completion_of_an_unknown_workflow_is_not_counted() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    counted = w.engine.complete(cron_workflow, "nightly-manual-x7k2", WorkflowPhase.FAILED, at(6))

    assert not counted
    assert w.observer.kinds == ["Spawned"]
    assert (w.history().succeeded, w.history().failed) == (0, 0)
    assert w.history().active == (name_at(5),)


def test_a_deleted_run_leaves_active_uncounted() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Forbid")
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    w.engine.deleted(cron_workflow, name_at(5), at(6))

    assert w.history().active == ()
    assert (w.history().succeeded, w.history().failed) == (0, 0)
    assert not w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(7))
    assert w.engine.tick(cron_workflow, at(10), at(10)).kind == "Spawned"


def test_the_stop_strategy_is_evaluated_after_each_completion_and_stops_once() -> None:
    cron_workflow = make_cron_workflow(stop_expression="cronworkflow.failed >= 1")
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))
    w.engine.tick(cron_workflow, at(10), at(10))

    w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.FAILED, at(11))
    w.engine.complete(cron_workflow, name_at(10), WorkflowPhase.FAILED, at(12))
    result = w.engine.tick(cron_workflow, at(15), at(15))

    assert w.observer.events[2:] == [
        Completed(time=at(11), key=KEY, workflow=name_at(5), phase=WorkflowPhase.FAILED),
        Stopped(time=at(11), key=KEY),
        Completed(time=at(12), key=KEY, workflow=name_at(10), phase=WorkflowPhase.FAILED),
        Skipped(time=at(15), key=KEY, scheduled_at=at(15), reason=SkipReason.STOPPED),
    ]
    assert result.kind == "Skipped"
    history = w.history()
    assert history.phase is Phase.STOPPED
    assert history.failed == 2, "runs still active when it stopped are counted"


def test_a_stop_strategy_true_at_a_tick_stops_before_the_skip() -> None:
    """Counters seeded from status can satisfy the stop strategy before any completion."""
    cron_workflow = make_cron_workflow(
        stop_expression="cronworkflow.succeeded >= 3", status=StatusSeed(succeeded=3)
    )
    w = started(cron_workflow)

    result = w.engine.tick(cron_workflow, at(5), at(5))
    later = w.engine.tick(cron_workflow, at(10), at(10))

    stopped = Stopped(time=at(5), key=KEY)
    skipped = Skipped(time=at(5), key=KEY, scheduled_at=at(5), reason=SkipReason.STOPPED)
    assert result == TickResult("Skipped", (stopped, skipped))
    assert later.events == (
        Skipped(time=at(10), key=KEY, scheduled_at=at(10), reason=SkipReason.STOPPED),
    )
    assert w.observer.kinds.count("Stopped") == 1
    assert w.sink.spawn_calls == 0


def test_a_stop_expression_failing_after_a_completion_is_a_spec_error() -> None:
    """Argo only logs this; here it is also kept as a condition, and counts nothing."""
    cron_workflow = make_cron_workflow(
        # A boolean before the first success, a number (an error) after it.
        stop_expression="cronworkflow.succeeded == 0 ? false : cronworkflow.succeeded"
    )
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(6))

    error = w.observer.events[-1]
    assert isinstance(error, Error)
    assert error.reason is ErrorReason.SPEC_ERROR
    assert error.message.startswith(
        "failed to check CronWorkflow 'nightly' stopping condition: "
        "failed to evaluate stop expression: "
    )
    history = w.history()
    assert (history.succeeded, history.failed) == (1, 0)
    assert history.conditions["SpecError"] == error.message
    assert history.phase is Phase.ACTIVE


def test_a_when_error_is_a_submission_error_at_each_tick() -> None:
    cron_workflow = make_cron_workflow(
        when="{{= (now() - cronworkflow.lastScheduledTime).Seconds() > 60 }}"
    )
    w = started(cron_workflow)

    w.engine.tick(cron_workflow, at(5), at(5))
    w.engine.tick(cron_workflow, at(10), at(10))

    assert w.observer.kinds == ["Error", "Error"]
    for event in w.observer.events:
        assert isinstance(event, Error)
        assert event.reason is ErrorReason.SUBMISSION_ERROR
        assert event.message.startswith("run policy error: ")
        assert not event.triggered
    assert (w.history().failed, w.history().consecutive_failed) == (2, 2)
    assert w.sink.spawn_calls == 0


# --------------------------------------------------------------------------------------------
# sync: seeding, schedule changes, spec errors


def test_sync_seeds_the_cursor_and_counters_from_the_status() -> None:
    status = StatusSeed(succeeded=4, failed=1, last_scheduled_time=at(0), phase="Active")
    cron_workflow = make_cron_workflow(status=status)
    w = world()

    history = w.engine.sync(cron_workflow, at(12))

    assert history.cursor == at(0)
    assert history.last_scheduled_time == at(0)
    assert (history.succeeded, history.failed) == (4, 1)
    assert w.history() == history

    w.engine.catch_up(cron_workflow, at(12))

    assert w.observer.events == [
        Missed(time=at(12), key=KEY, scheduled_at=at(5), reason=MissedReason.SUPERSEDED),
        Missed(time=at(12), key=KEY, scheduled_at=at(10), reason=MissedReason.DEADLINE),
    ]


def test_sync_without_a_last_scheduled_time_starts_the_cursor_at_now() -> None:
    cron_workflow = make_cron_workflow(starting_deadline_seconds=3600)
    w = world()

    history = w.engine.sync(cron_workflow, at(12))

    assert history.cursor == at(12)
    assert w.engine.catch_up(cron_workflow, at(13)) == []
    assert w.observer.events == []


def test_sync_keeps_the_history_of_a_known_cron_workflow() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))
    before = w.history()

    after = w.engine.sync(make_cron_workflow(suspend=True), at(7))

    assert after == before


def test_a_changed_schedule_moves_the_cursor_to_now() -> None:
    """Argo's #7182: a schedule change must not run the new schedule's past instants."""
    old = make_cron_workflow(starting_deadline_seconds=3600)
    w = started(old)
    w.engine.tick(old, at(5), at(5))
    new = make_cron_workflow(schedules=("*/3 * * * *",), starting_deadline_seconds=3600)

    history = w.engine.sync(new, at(7))

    assert history.cursor == at(7)
    assert history.signature == new.signature
    assert w.engine.catch_up(new, at(8)) == [], "09:06 of the new schedule is before the change"
    results = w.engine.catch_up(new, at(10))
    assert [r.kind for r in results] == ["Spawned"], "09:09 is after the change"
    assert w.observer.events[-1] == Spawned(
        time=at(10),
        key=KEY,
        scheduled_at=at(9),
        workflow=name_at(9),
        created=True,
        catch_up=True,
    )


def test_a_changed_time_zone_moves_the_cursor_to_now() -> None:
    utc = make_cron_workflow(schedules=("0 10 * * *",), starting_deadline_seconds=7200)
    w = world()
    w.engine.sync(utc, at(-60))
    # 10:00 in Paris (UTC+1 in March) is 09:00 UTC, between the first sync and the change.
    paris = make_cron_workflow(
        schedules=("0 10 * * *",), timezone="Europe/Paris", starting_deadline_seconds=7200
    )

    history = w.engine.sync(paris, at(30))

    assert history.cursor == at(30)
    assert w.engine.catch_up(paris, at(31)) == []
    assert w.sink.spawn_calls == 0


def test_an_invalid_spec_records_its_spec_error_once_and_a_fix_clears_it() -> None:
    invalid = make_cron_workflow(concurrency_policy="Sometimes")
    w = world()

    w.engine.sync(invalid, at(0))
    w.engine.sync(invalid, at(1))

    error = Error(
        time=at(0),
        key=KEY,
        reason=ErrorReason.SPEC_ERROR,
        message="'Sometimes' is not a valid concurrencyPolicy",
    )
    assert w.observer.events == [error]
    assert w.history().conditions == {"SpecError": error.message}
    assert w.engine.catch_up(invalid, at(60)) == []

    fixed = w.engine.sync(make_cron_workflow(concurrency_policy="Forbid"), at(2))

    assert "SpecError" not in fixed.conditions
    assert w.observer.events == [error]
    assert (fixed.failed, fixed.succeeded) == (0, 0)


def test_a_tick_of_an_invalid_spec_is_a_spec_error_and_spawns_nothing() -> None:
    invalid = make_cron_workflow(schedules=("*/5 * * * *",), concurrency_policy="Sometimes")
    w = world()
    w.engine.sync(invalid, at(0))

    result = w.engine.tick(invalid, at(5), at(5))

    assert result.kind == "Error"
    assert w.sink.spawn_calls == 0
    assert w.history().failed == 0


# --------------------------------------------------------------------------------------------
# Catch-up


def test_catch_up_records_missed_instants_and_runs_the_latest_within_the_deadline() -> None:
    cron_workflow = make_cron_workflow(starting_deadline_seconds=300)
    w = started(cron_workflow)

    results = w.engine.catch_up(cron_workflow, at(17))

    assert [r.kind for r in results] == ["Missed", "Spawned"]
    assert w.observer.events == [
        Missed(time=at(17), key=KEY, scheduled_at=at(5), reason=MissedReason.SUPERSEDED),
        Missed(time=at(17), key=KEY, scheduled_at=at(10), reason=MissedReason.SUPERSEDED),
        Spawned(
            time=at(17),
            key=KEY,
            scheduled_at=at(15),
            workflow=name_at(15),
            created=True,
            catch_up=True,
        ),
    ]
    runs = {(run.scheduled_at, run.decision, run.reason) for run in w.store.recent_runs(KEY)}
    assert runs == {
        (at(5), "Missed", "superseded"),
        (at(10), "Missed", "superseded"),
        (at(15), "Spawned", ""),
    }
    assert w.history().cursor == at(15)
    assert w.engine.catch_up(cron_workflow, at(18)) == [], "decided instants stay decided"


def test_catch_up_beyond_the_deadline_only_records_missed_instants() -> None:
    cron_workflow = make_cron_workflow(starting_deadline_seconds=60)
    w = started(cron_workflow)

    w.engine.catch_up(cron_workflow, at(17))

    assert w.observer.events == [
        Missed(time=at(17), key=KEY, scheduled_at=at(5), reason=MissedReason.SUPERSEDED),
        Missed(time=at(17), key=KEY, scheduled_at=at(10), reason=MissedReason.SUPERSEDED),
        Missed(time=at(17), key=KEY, scheduled_at=at(15), reason=MissedReason.DEADLINE),
    ]
    assert w.sink.spawn_calls == 0
    assert w.history().cursor == at(15)
    assert w.engine.tick(cron_workflow, at(15), at(17)) == TickResult("AlreadyDecided")


def test_a_caught_up_instant_goes_through_every_policy() -> None:
    """Catch-up is a full tick: a Forbid with an active run skips the missed instant."""
    cron_workflow = make_cron_workflow(concurrency_policy="Forbid", starting_deadline_seconds=300)
    w = started(cron_workflow)
    w.engine.tick(cron_workflow, at(5), at(5))

    w.engine.catch_up(cron_workflow, at(11))

    assert w.observer.events[-1] == Skipped(
        time=at(11), key=KEY, scheduled_at=at(10), reason=SkipReason.CONCURRENCY_FORBID
    )


# --------------------------------------------------------------------------------------------
# Serialization (#12625)


def test_a_completion_waits_for_a_tick_of_the_same_cron_workflow() -> None:
    """Argo's #12625 (fixed by its PR #15652): ticks take the same per-key lock as the
    processing that reconciles completions."""
    cron_workflow = make_cron_workflow()
    sink = BlockingSink()
    w = started(cron_workflow, sink=sink)
    sink.release.set()
    w.engine.tick(cron_workflow, at(5), at(5))
    sink.release.clear()
    sink.entered.clear()

    ticking = Worker(lambda: w.engine.tick(cron_workflow, at(10), at(10)))
    assert sink.entered.wait(BOUND), "the tick reached the sink"
    completing = Worker(
        lambda: w.engine.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(10))
    )

    assert not completing.done.wait(0.2), "the completion ran in the middle of a tick"
    sink.release.set()
    assert isinstance(ticking.join(), TickResult)
    assert completing.join() is True
    assert w.observer.kinds == ["Spawned", "Spawned", "Completed"]
    assert w.history().active == (name_at(10),)
    assert w.history().succeeded == 1


def test_a_catch_up_racing_a_tick_does_not_replace_the_run_the_tick_just_created() -> None:
    """Argo's #12625: a resync racing a tick re-ran the instant and, with Replace, terminated
    the Workflow the tick had just created. Here the catch-up waits and finds it decided."""
    cron_workflow = make_cron_workflow(concurrency_policy="Replace", starting_deadline_seconds=120)
    sink = BlockingSink()
    w = started(cron_workflow, sink=sink)
    sink.release.set()
    w.engine.tick(cron_workflow, at(5), at(5))
    sink.release.clear()
    sink.entered.clear()

    ticking = Worker(lambda: w.engine.tick(cron_workflow, at(10), at(10)))
    assert sink.entered.wait(BOUND)
    catching_up = Worker(lambda: w.engine.catch_up(cron_workflow, at(10.5)))

    assert not catching_up.done.wait(0.2), "the catch-up ran in the middle of a tick"
    sink.release.set()
    ticking.join()
    assert catching_up.join() == []
    assert sink.spawn_calls == 2, "one spawn per instant"
    assert sink.terminated == [name_at(5)], "the new run is never terminated"
    assert w.observer.kinds == ["Spawned", "Terminated", "Spawned"]


def test_ticks_of_different_cron_workflows_do_not_wait_for_each_other() -> None:
    blocked = make_cron_workflow()
    other = make_cron_workflow(name="hourly")
    sink = BlockingSink()
    w = world(sink=sink)
    w.engine.sync(blocked, at(0))
    w.engine.sync(other, at(0))

    ticking = Worker(lambda: w.engine.tick(blocked, at(5), at(5)))
    assert sink.entered.wait(BOUND)
    completing = Worker(
        lambda: w.engine.complete(other, "hourly-1", WorkflowPhase.SUCCEEDED, at(5))
    )

    assert completing.done.wait(BOUND), "another CronWorkflow's completion was held up"
    sink.release.set()
    ticking.join()
    assert completing.join() is False


def test_a_long_gap_is_recorded_as_the_newest_missed_instants_and_one_summary() -> None:
    """An engine that lists three missed instants, after two hours away: one ``Missed``
    event sums up the 20 older instants, the three newest are recorded one by one, and the
    cursor moves past all of them."""
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.engine.missed_listed = 3

    w.engine.catch_up(cron_workflow, at(117))

    summary, *listed = w.observer.events
    assert summary == Missed(
        time=at(117),
        key=KEY,
        scheduled_at=at(100),
        reason=MissedReason.SUPERSEDED,
        count=20,
        since=at(5),
    )
    assert [(e.scheduled_at, e.reason) for e in listed if isinstance(e, Missed)] == [
        (at(105), MissedReason.SUPERSEDED),
        (at(110), MissedReason.SUPERSEDED),
        (at(115), MissedReason.DEADLINE),
    ]
    assert w.history().cursor == at(115)
    assert [run.scheduled_at for run in w.store.recent_runs(KEY)] == [at(115), at(110), at(105)]


def test_syncing_a_fleet_together_is_syncing_each() -> None:
    """New, unchanged, rescheduled and invalid CronWorkflows: the same histories and events
    whether synced one by one or together."""
    known = make_cron_workflow(name="known")
    rescheduled = make_cron_workflow(name="rescheduled")
    fleet_now = [
        make_cron_workflow(name="new"),
        known,
        replace_schedule(rescheduled, "0 * * * *"),
        make_cron_workflow(name="invalid", schedules=("61 * * * *",)),
    ]
    worlds = []
    for together in (False, True):
        w = world()
        w.engine.sync(known, at(0))
        w.engine.sync(rescheduled, at(0))
        if together:
            synced = w.engine.sync_many(fleet_now, at(7))
        else:
            synced = [w.engine.sync(cron_workflow, at(7)) for cron_workflow in fleet_now]
        assert synced == [w.store.load(cron_workflow.key) for cron_workflow in fleet_now]
        worlds.append((synced, w.observer.events))

    assert worlds[0] == worlds[1]
    synced, events = worlds[1]
    assert [history.cursor for history in synced] == [at(7), at(0), at(7), at(7)]
    assert [event.kind for event in events] == ["Error"]


def replace_schedule(cron_workflow: CronWorkflow, schedule: str) -> CronWorkflow:
    return CronWorkflow.prepare(replace(cron_workflow.spec, schedules=(schedule,)))


# --------------------------------------------------------------------------------------------
# Ticks in batches


def fleet() -> list[CronWorkflow]:
    """One CronWorkflow per path through a tick, all due at the same instants."""
    return [
        make_cron_workflow(name="plain"),
        make_cron_workflow(name="suspended", suspend=True),
        make_cron_workflow(name="when-false", when="{{= false }}"),
        make_cron_workflow(name="forbid", concurrency_policy="Forbid"),
        make_cron_workflow(name="replace", concurrency_policy="Replace"),
        make_cron_workflow(name="stops", stop_expression="cronworkflow.succeeded >= 1"),
        make_cron_workflow(name="invalid", schedules=("*/5 * * *",)),
        make_cron_workflow(name="bad-when", when="{{= nonsense( }}"),
        make_cron_workflow(name="plain-2", timezone="Europe/Paris"),
    ]


def tick_fleet(batched: bool) -> World:
    """Two instants of the whole fleet, with a completion between them (so that Forbid skips,
    Replace terminates and the stop strategy stops), ticked one by one or in batches."""
    w = world()
    cron_workflows = fleet()
    for cron_workflow in cron_workflows:
        w.engine.sync(cron_workflow, at(0))
    for minutes in (5, 10):
        ticks = [(cron_workflow, at(minutes)) for cron_workflow in cron_workflows]
        if batched:
            w.engine.tick_many(ticks, at(minutes))
        else:
            for cron_workflow, instant in ticks:
                w.engine.tick(cron_workflow, instant, at(minutes))
        stops = next(c for c in cron_workflows if c.key == "batch/stops")
        if minutes == 5:
            w.engine.complete(
                stops, workflow_name("stops", at(5)), WorkflowPhase.SUCCEEDED, at(6), at(5)
            )
    return w


def by_key(events: list[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.key, []).append(event)
    return grouped


def test_a_batch_decides_every_instant_as_ticking_one_by_one_does() -> None:
    """Spawns, skips (suspended, when false, Forbid), a Replace, a stop, a spec error and an
    expression error: the same events per CronWorkflow, histories, recent runs and Workflows
    whether the instants are ticked one by one or in batches."""
    one_by_one, batched = tick_fleet(batched=False), tick_fleet(batched=True)

    assert by_key(batched.observer.events) == by_key(one_by_one.observer.events)
    kinds = {e.kind for e in batched.observer.events}
    assert kinds >= {"Spawned", "Skipped", "Terminated", "Stopped", "Error", "Completed"}
    assert batched.sink.workflows == one_by_one.sink.workflows
    assert batched.sink.terminated == one_by_one.sink.terminated
    for cron_workflow in fleet():
        key = cron_workflow.key
        assert batched.store.load(key) == one_by_one.store.load(key), key
        assert batched.store.recent_runs(key) == one_by_one.store.recent_runs(key), key


def test_a_batch_returns_one_result_per_instant_in_order() -> None:
    plain, suspended = (
        make_cron_workflow(name="plain"),
        make_cron_workflow(name="off", suspend=True),
    )
    w = world()
    w.engine.sync(plain, at(0))
    w.engine.sync(suspended, at(0))

    results = w.engine.tick_many([(suspended, at(5)), (plain, at(5)), (plain, at(5))], at(5))

    assert [r.kind for r in results] == ["Skipped", "Spawned", "AlreadyDecided"]
    assert w.sink.spawn_calls == 1


def test_the_same_cron_workflow_twice_in_a_batch_is_ticked_in_order() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)

    results = w.engine.tick_many([(cron_workflow, at(5)), (cron_workflow, at(10))], at(10))

    assert [r.kind for r in results] == ["Spawned", "Spawned"]
    assert list(w.sink.workflows) == [name_at(5), name_at(10)]
    assert w.history().cursor == at(10)


def test_a_batch_claims_before_spawning_and_spawns_nothing_when_deposed() -> None:
    first, second = make_cron_workflow(name="first"), make_cron_workflow(name="second")
    w = world(store=DeposedHistory())

    with pytest.raises(Deposed):
        w.engine.tick_many([(first, at(5)), (second, at(5))], at(5))

    assert w.sink.spawn_calls == 0
    assert w.observer.events == []


def test_a_batch_spawns_nothing_an_other_replica_claimed_first() -> None:
    first, second = make_cron_workflow(name="first"), make_cron_workflow(name="second")
    w = world(store=RacedHistory())
    w.engine.sync(first, at(0))
    w.engine.sync(second, at(0))

    results = w.engine.tick_many([(first, at(5)), (second, at(5))], at(5))

    assert results == [TickResult("ClaimLost"), TickResult("ClaimLost")]
    assert w.sink.spawn_calls == 0


def test_a_rejected_spawn_in_a_batch_is_a_submission_error_of_that_instant_only() -> None:
    first, second = make_cron_workflow(name="first"), make_cron_workflow(name="second")
    w = world()
    w.engine.sync(first, at(0))
    w.engine.sync(second, at(0))
    w.sink.spawn_errors.append(SpawnRejected("admission webhook denied the request"))

    results = w.engine.tick_many([(first, at(5)), (second, at(5))], at(5))

    assert [r.kind for r in results] == ["Error", "Spawned"]
    error = results[0].events[-1]
    assert isinstance(error, Error)
    assert error.reason is ErrorReason.SUBMISSION_ERROR
    assert error.triggered
    decided = w.store.load("batch/first")
    assert decided is not None
    assert decided.cursor == at(5)
    assert list(w.sink.workflows) == [workflow_name("second", at(5))]


def test_when_the_sink_fails_in_a_batch_the_spawns_made_are_recorded_and_the_rest_wait() -> None:
    """The sink goes away after the first spawn: that run is recorded (it exists), the error
    reaches the caller, and the next instant is left undecided for catch-up."""
    first, second = make_cron_workflow(name="first"), make_cron_workflow(name="second")
    w = world()
    w.engine.sync(first, at(0))
    w.engine.sync(second, at(0))

    class FailingAfterOne(FakeSink):
        def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
            if self.spawn_calls:
                raise SinkUnavailable("the API server is unreachable")
            return super().spawn(spec, scheduled_at)

    w.engine.sink = w.sink = FailingAfterOne()
    with pytest.raises(SinkUnavailable):
        w.engine.tick_many([(first, at(5)), (second, at(5))], at(5))

    recorded = w.store.load("batch/first")
    assert recorded is not None
    assert recorded.active == (workflow_name("first", at(5)),)
    undecided = w.store.load("batch/second")
    assert undecided is not None
    assert undecided.cursor == at(0)
    assert w.observer.kinds == ["Spawned"]


class BatchFakeSink(FakeSink):
    """A sink that creates a batch's Workflows in one call, each with its own outcome."""

    def __init__(self, outcomes: dict[str, SpawnOutcome] | None = None) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.outcomes = outcomes or {}
        """Forced outcomes by CronWorkflow name; the others are created."""

    def spawn_many(self, spawns: Sequence[tuple[CronWorkflowSpec, datetime]]) -> list[SpawnOutcome]:
        self.batches.append([spec.name for spec, _ in spawns])
        return [
            self.outcomes[spec.name] if spec.name in self.outcomes else self.spawn(spec, at_)
            for spec, at_ in spawns
        ]


def test_a_batch_hands_its_claimed_spawns_to_a_batch_sink_in_one_call() -> None:
    names = ("first", "second", "third", "fourth")
    cron_workflows = [make_cron_workflow(name=name) for name in names]
    sink = BatchFakeSink(
        {
            "second": SpawnRejected("admission webhook denied the request"),
            "third": SinkUnavailable("the API server is unreachable"),
            "fourth": False,  # created before (a restart between spawn and record)
        }
    )
    w = world(sink=sink)
    for cron_workflow in cron_workflows:
        w.engine.sync(cron_workflow, at(0))

    with pytest.raises(SinkUnavailable):
        w.engine.tick_many([(cron_workflow, at(5)) for cron_workflow in cron_workflows], at(5))

    assert sink.batches == [list(names)]
    cursors = {name: w.store.load(f"batch/{name}") for name in names}
    assert {name: h.cursor if h else None for name, h in cursors.items()} == {
        "first": at(5),
        "second": at(5),  # decided: a SubmissionError
        "third": at(0),  # undecided: catch-up retries it
        "fourth": at(5),
    }
    assert [(e.kind, e.key) for e in w.observer.events] == [
        ("Error", "batch/second"),
        ("Spawned", "batch/first"),
        ("Spawned", "batch/fourth"),
    ]
    fourth = w.observer.events[-1]
    assert isinstance(fourth, Spawned)
    assert not fourth.created


@pytest.mark.parametrize("batched", [False, True])
def test_with_a_clock_a_spawn_is_reported_when_the_sink_answered(batched: bool) -> None:
    """The lag metric reads the event's time: a batch of thousands takes a while to spawn,
    so the event carries when the sink answered; the record keeps when it was decided."""
    answered = at(5) + timedelta(seconds=2)
    first, second = make_cron_workflow(name="first"), make_cron_workflow(name="second")
    w = world()
    w.engine.clock = lambda: answered
    for cron_workflow in (first, second):
        w.engine.sync(cron_workflow, at(0))

    if batched:
        w.engine.tick_many([(first, at(5)), (second, at(5))], at(5))
    else:
        w.engine.tick(first, at(5), at(5))

    spawned = [event for event in w.observer.events if isinstance(event, Spawned)]
    assert spawned
    assert {event.time for event in spawned} == {answered}
    assert w.store.recent_runs("batch/first")[0].decided_at == at(5)


def test_spawning_one_by_one_stops_at_the_first_unavailable_sink() -> None:
    """Without ``spawn_many`` the spawns are made in order; after an outage the rest are not
    tried and report that outage."""
    sink = FakeSink(spawn_errors=[SpawnRejected("denied"), SinkUnavailable("unreachable")])
    spec = make_cron_workflow().spec
    spawns = [(spec, at(minutes)) for minutes in (5, 10, 15, 20)]

    outcomes = spawn_each(sink, spawns)

    assert [type(outcome) for outcome in outcomes] == [
        SpawnRejected,
        SinkUnavailable,
        SinkUnavailable,
        SinkUnavailable,
    ]
    assert sink.spawn_calls == 2
    assert spawn_each(sink, spawns[:1]) == [True]


def test_a_cron_workflow_busy_elsewhere_is_ticked_after_the_batch_without_blocking_it() -> None:
    """A completion holds one CronWorkflow's lock: the batch decides the others meanwhile and
    waits for that lock only at the end."""
    busy, free = make_cron_workflow(name="busy"), make_cron_workflow(name="free")
    w = world()
    w.engine.sync(busy, at(0))
    w.engine.sync(free, at(0))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with w.engine.serialized(busy.key):
            holding.set()
            release.wait(BOUND)

    holder = Worker(hold)
    assert holding.wait(BOUND)
    batch = Worker(lambda: w.engine.tick_many([(busy, at(5)), (free, at(5))], at(5)))

    assert not batch.done.wait(0.2)
    assert list(w.sink.workflows) == [workflow_name("free", at(5))]
    release.set()
    holder.join()
    results = batch.join()
    assert isinstance(results, list)
    assert [r.kind for r in results] == ["Spawned", "Spawned"]


# --------------------------------------------------------------------------------------------
# The claim records the intent (DESIGN §9): the claim-to-record window


class CrashAfterSpawn(FakeSink):
    """The replica dies right after the sink created the Workflow: its record never lands
    (the store refuses every write from then on, as a successor's fence would)."""

    def __init__(self, store: SeveredHistory) -> None:
        super().__init__()
        self.store = store

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        created = super().spawn(spec, scheduled_at)
        self.store.severed = True
        return created


class SeveredHistory(MemoryHistory):
    """A shared store as one replica sees it: once ``severed``, its writes are refused."""

    severed = False

    def apply(
        self, key: str, seed: History, transition: Transition, runs: Sequence[RunRecord] = ()
    ) -> tuple[History, History]:
        if self.severed:
            raise Deposed(f"write to {key} refused: this replica does not lead")
        return super().apply(key, seed, transition, runs)


def successor_of(store: SeveredHistory, sink: FakeSink) -> tuple[Engine, RecordingObserver]:
    """Another replica on the same store (it leads now) and the same workflow API."""
    shared = MemoryHistory()
    shared._histories = store._histories  # the same data: one store, another writer
    shared._runs = store._runs
    observer = RecordingObserver()
    return Engine(shared, sink, observer), observer


def crashed_after_spawning(
    cron_workflow: CronWorkflow, instant: datetime
) -> tuple[Engine, RecordingObserver]:
    """A leader spawned ``instant`` and died before recording it; its successor."""
    store = SeveredHistory()
    engine = Engine(store, CrashAfterSpawn(store), RecordingObserver())
    engine.sync(cron_workflow, at(0))
    with pytest.raises(Deposed):
        engine.tick(cron_workflow, instant, instant)
    return successor_of(store, FakeSink())


def test_the_sink_is_asked_only_after_the_intent_is_recorded() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    seen: list[History] = []

    class Looking(FakeSink):
        def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
            seen.append(w.history())
            return super().spawn(spec, scheduled_at)

    w.engine.sink = Looking()
    w.engine.tick(cron_workflow, at(5), at(5))

    (claimed,) = seen
    assert claimed.cursor == at(5)
    assert claimed.active == (name_at(5),)
    assert set(claimed.intents) == {name_at(5)}
    assert w.history().intents == {}  # the record resolved it


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_a_crash_between_spawn_and_record_never_runs_the_instant_again(batch: bool) -> None:
    """Issue: a leader stopped after it spawned and before its record landed was followed by
    a successor that claimed and ran the same instant again; its other instants were later
    recorded missed. Now the successor finds the instant decided and the run active."""
    cron_workflow = make_cron_workflow()
    store = SeveredHistory()
    observer = RecordingObserver()
    sink = CrashAfterSpawn(store)
    engine = Engine(store, sink, observer)
    engine.sync(cron_workflow, at(0))

    tick = (
        partial(engine.tick_many, [(cron_workflow, at(5))], at(5))
        if batch
        else partial(engine.tick, cron_workflow, at(5), at(5))
    )
    with pytest.raises(Deposed):
        tick()

    successor, seen = successor_of(store, sink)
    successor.sync(cron_workflow, at(5.5))
    successor.catch_up(cron_workflow, at(6))
    results = successor.tick_many([(cron_workflow, at(5))], at(6))

    assert results == [TickResult("AlreadyDecided")]
    assert sink.spawn_calls == 1
    assert seen.kinds == []  # nothing missed, nothing spawned again
    history = successor.store.load(cron_workflow.key)
    assert history is not None
    assert history.active == (name_at(5),)
    assert set(history.intents) == {name_at(5)}


def test_a_forbid_cronworkflow_waits_for_a_claimed_run_of_unknown_outcome() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Forbid")
    successor, seen = crashed_after_spawning(cron_workflow, at(5))

    result = successor.tick(cron_workflow, at(10), at(10))

    assert result.kind == "Skipped"
    assert seen.events[-1] == Skipped(
        time=at(10),
        key=cron_workflow.key,
        scheduled_at=at(10),
        reason=SkipReason.CONCURRENCY_FORBID,
    )


def test_the_completion_of_a_claimed_run_counts_it_once_and_dates_it() -> None:
    """Reported by any replica: the run ran, so it is counted, and it was spawned."""
    cron_workflow = make_cron_workflow()
    successor, seen = crashed_after_spawning(cron_workflow, at(5))

    first = successor.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(7))
    again = successor.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(8))

    assert (first, again) == (True, False)
    history = successor.store.load(cron_workflow.key)
    assert history is not None
    assert (history.succeeded, history.active, history.intents) == (1, (), {})
    assert history.last_scheduled_time == at(5)
    assert seen.kinds == ["Completed"]


def test_a_run_nobody_can_observe_is_lost_once_with_its_own_event_and_counter() -> None:
    cron_workflow = make_cron_workflow()
    successor, seen = crashed_after_spawning(cron_workflow, at(5))

    assert successor.lose(cron_workflow, name_at(5), at(30)) is True
    assert successor.lose(cron_workflow, name_at(5), at(31)) is False
    late = successor.complete(cron_workflow, name_at(5), WorkflowPhase.SUCCEEDED, at(32))

    history = successor.store.load(cron_workflow.key)
    assert history is not None
    assert (history.lost, history.failed, history.succeeded) == (1, 0, 0)
    assert (history.active, history.intents, late) == ((), {}, False)
    (lost,) = seen.events
    assert isinstance(lost, Lost)
    assert (lost.workflow, lost.scheduled_at, lost.claimed) == (name_at(5), at(5), True)
    runs = successor.store.recent_runs(cron_workflow.key)  # type: ignore[attr-defined]
    assert [(r.decision, r.reason) for r in runs] == [("Lost", "OutcomeUnknown")]


@pytest.mark.parametrize("error", [OSError(24, "Too many open files"), ValueError("bad name")])
def test_an_unexpected_sink_error_fails_that_instant_only(error: Exception) -> None:
    """Issue: an OSError or ValueError of the local executor escaped the engine and abandoned
    every CronWorkflow of the batch, never showing as a SubmissionError."""
    first, second = make_cron_workflow(name="first"), make_cron_workflow(name="second")
    w = world()
    w.engine.sync(first, at(0))
    w.engine.sync(second, at(0))
    w.sink.spawn_errors.append(error)

    results = w.engine.tick_many([(first, at(5)), (second, at(5))], at(5))

    assert [r.kind for r in results] == ["Error", "Spawned"]
    failed = results[0].events[-1]
    assert isinstance(failed, Error)
    assert failed.unexpected
    assert failed.triggered
    assert failed.reason is ErrorReason.SUBMISSION_ERROR
    assert type(error).__name__ in failed.message
    history = w.store.load("batch/first")
    assert history is not None
    assert (history.cursor, history.failed, history.active, history.intents) == (at(5), 1, (), {})
    assert list(w.sink.workflows) == [workflow_name("second", at(5))]


def test_an_unexpected_sink_error_of_a_single_tick_is_a_counted_failure() -> None:
    cron_workflow = make_cron_workflow()
    w = started(cron_workflow)
    w.sink.spawn_errors.append(PermissionError(13, "Permission denied"))

    result = w.engine.tick(cron_workflow, at(5), at(5))

    assert result.kind == "Error"
    assert w.history().failed == 1
    assert w.history().active == ()
    assert isinstance(result.events[-1], Error)
    assert result.events[-1].unexpected
    assert SinkError.__name__ not in result.events[-1].message  # the cause, not the wrapper


# --------------------------------------------------------------------------------------------
# Catch-up goes through the tick order (DESIGN §5)


@pytest.mark.parametrize("missed_listed", [None, 2])
def test_a_suspended_cronworkflow_skips_the_instants_of_a_gap_never_missed(
    missed_listed: int | None,
) -> None:
    cron_workflow = make_cron_workflow(suspend=True, starting_deadline_seconds=600)
    w = started(cron_workflow)
    w.engine.missed_listed = missed_listed

    w.engine.catch_up(cron_workflow, at(31))

    assert "Missed" not in w.observer.kinds
    skipped = [e for e in w.observer.events if isinstance(e, Skipped)]
    assert {e.reason for e in skipped} == {SkipReason.SUSPENDED}
    assert sum(e.count for e in skipped) == 6  # 5, 10, ..., 30
    assert w.history().cursor == at(30)
    assert w.sink.spawn_calls == 0


def test_a_stopped_cronworkflow_skips_the_instants_of_a_gap_as_stopped() -> None:
    cron_workflow = make_cron_workflow(status=StatusSeed(phase="Stopped"))
    w = world()
    w.engine.sync(cron_workflow, at(0))
    w.store.apply(cron_workflow.key, w.history(), lambda h: replace(h, phase=Phase.STOPPED))

    w.engine.catch_up(cron_workflow, at(16))

    assert [(e.kind, getattr(e, "reason", None)) for e in w.observer.events] == [
        ("Skipped", SkipReason.STOPPED)
    ] * 3


def test_a_claimed_run_seen_running_is_adopted_as_spawned() -> None:
    """Kubernetes mode: the Workflow watcher sees the Workflow of a claim whose spawn was
    never recorded (its leader died after the create): it was spawned."""
    cron_workflow = make_cron_workflow()
    successor, _ = crashed_after_spawning(cron_workflow, at(5))

    assert successor.adopt(cron_workflow, name_at(5), at(5), at(6)) is True
    assert successor.adopt(cron_workflow, name_at(5), at(5), at(7)) is False

    history = successor.store.load(cron_workflow.key)
    assert history is not None
    assert (history.active, history.intents) == ((name_at(5),), {})
    assert history.last_scheduled_time == at(5)
