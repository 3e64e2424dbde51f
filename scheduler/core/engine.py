"""The engine: applies the pure decisions of :mod:`policies.decision` through small ports.

The engine is the one place where a decision becomes an effect: a history change, a spawned
or terminated Workflow, an event. It never sleeps, and every call receives ``now``; the one
clock it may be given (``clock``) only dates the ``Spawned`` events. That is why ``cronwf
simulate`` can drive it on a virtual clock and why ``serve`` (APScheduler timer, Redis,
Kubernetes) runs the same code.

Ports, defined here by their user (the adapters implement them):

* :class:`HistoryStore`: the history of each CronWorkflow, changed by pure transitions
  applied atomically (:meth:`HistoryStore.apply`); in a shared store every change is fenced.
* :class:`Sink`: spawns and terminates Workflows.
* :class:`Observer`: receives every :class:`Event` (logs, metrics, Kubernetes Events,
  ``simulate`` output).

Exactly-once: an instant is decided at most once because the cursor only moves forward and
every transition is idempotent; a Workflow is created at most once because its name is the
instant, and because the sink is asked only after the **claim** recorded the intent to spawn
(:func:`~policies.decision.record_claim`: the cursor moves to the instant and the run is
active, in one fenced atomic write). A leader that dies or is cut off between its claim and
its record leaves an intent that no successor spawns again: a completion report or an
adoption resolves it, or in the end it is lost (:meth:`Engine.lose`). A run is counted at most
once because only an active run can complete. Ticks of one CronWorkflow, catch-up and
completion handling are serialized with a lock per CronWorkflow.

Errors: a bad spec or expression is the user's (an ``Error`` event, a condition, the tick is
decided); :class:`StoreUnavailable` and :class:`SinkUnavailable` are the world's: the instant
stays undecided (a claim already made is handed back when the sink created nothing), the
exception propagates, and catch-up decides it once the world is back. Any other exception of
the sink is a failure of that one instant (:class:`SinkError`, a ``SubmissionError``): it
never touches the other CronWorkflows of a batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple, Protocol, runtime_checkable

from policies.decision import (
    CatchUp,
    CronWorkflow,
    ErrorReason,
    Fail,
    History,
    LostReason,
    MissedReason,
    Skip,
    SkipReason,
    Spawn,
    TickDecision,
    WorkflowPhase,
    claimable,
    clear_spec_error,
    decide,
    evaluate_stop,
    plan_catch_up,
    record_claim,
    record_completion,
    record_deleted,
    record_error,
    record_lost,
    record_missed,
    record_skip,
    record_spawn,
    record_stopped,
    release_claim,
    reset_cursor,
    seed_history,
    stop_error_message,
)
from policies.expressions import ExpressionError
from policies.spec import CronWorkflowSpec
from policies.workflow import scheduled_time_of

__all__ = [
    "BatchSink",
    "Change",
    "Claim",
    "Completed",
    "Engine",
    "Error",
    "Event",
    "HistoryStore",
    "Lost",
    "Missed",
    "Observer",
    "OneByOne",
    "RunRecord",
    "RunReport",
    "RunReports",
    "Sink",
    "SinkError",
    "SinkUnavailable",
    "Skipped",
    "SpawnOutcome",
    "SpawnRejected",
    "Spawned",
    "Stopped",
    "StoreUnavailable",
    "Terminated",
    "TickResult",
    "Transition",
    "spawn_each",
    "spawn_outcome",
]


# --------------------------------------------------------------------------------------------
# Exceptions


class StoreUnavailable(Exception):
    """The history store cannot be reached; nothing was changed."""


class SinkUnavailable(Exception):
    """The workflow sink cannot be reached right now; retrying later may succeed."""


class SpawnRejected(Exception):
    """The sink refused the Workflow for good (invalid, forbidden): a ``SubmissionError``."""


class SinkError(SpawnRejected):
    """The sink failed in a way it does not expect (a bug, a full disk, too many open files):
    a ``SubmissionError`` of that one instant, flagged as unexpected so that a service whose
    every spawn fails this way says it is not ready."""


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something the engine did to one CronWorkflow at ``time``."""

    time: datetime
    key: str

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class Spawned(Event):
    scheduled_at: datetime
    workflow: str
    created: bool
    """False when the Workflow already existed (this instant was spawned before)."""
    catch_up: bool = False
    replaced: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Skipped(Event):
    """``scheduled_at`` was decided and not run; with ``count`` > 1, the ``count`` instants
    from ``since`` to ``scheduled_at`` were (a suspended CronWorkflow's long gap, summed up)."""

    scheduled_at: datetime
    reason: SkipReason
    count: int = 1
    since: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Missed(Event):
    """``scheduled_at`` was missed; with ``count`` > 1, the ``count`` instants from ``since``
    to ``scheduled_at`` were (the older instants of a long gap, summed up in one event)."""

    scheduled_at: datetime
    reason: MissedReason
    count: int = 1
    since: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Lost(Event):
    """An active run nobody can observe any more was given up on (DESIGN §9)."""

    workflow: str
    scheduled_at: datetime | None
    reason: LostReason
    claimed: bool
    """True when its spawn was never recorded (it may never have been created)."""


@dataclass(frozen=True, kw_only=True)
class Terminated(Event):
    workflow: str


@dataclass(frozen=True, kw_only=True)
class Completed(Event):
    workflow: str
    phase: WorkflowPhase


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Error(Event):
    reason: ErrorReason
    message: str
    scheduled_at: datetime | None = None
    triggered: bool = False
    """True when the tick had passed every policy and failed at submission."""
    expression: bool = False
    """True when a ``when`` or stop expression failed to evaluate."""
    unexpected: bool = False
    """True when the sink failed unexpectedly (:class:`SinkError`)."""


# --------------------------------------------------------------------------------------------
# Ports


@dataclass(frozen=True)
class RunRecord:
    """One entry of a CronWorkflow's recent runs, keyed by its scheduled instant.

    ``decision`` is ``Spawned``, ``Skipped``, ``Missed``, ``Error`` or ``Lost``; ``reason``
    the skip, missed or lost reason or the error type; ``phase`` the final phase of a spawned
    run, once known.
    Recording a run with the same instant again merges the non-empty fields.
    """

    scheduled_at: datetime
    decision: str
    decided_at: datetime
    workflow: str = ""
    reason: str = ""
    phase: str = ""
    finished_at: datetime | None = None


Transition = Callable[[History], History]


class Change(NamedTuple):
    """One :meth:`HistoryStore.apply`, as an item of :meth:`HistoryStore.apply_many`."""

    key: str
    seed: History
    transition: Transition
    runs: Sequence[RunRecord] = ()


class Claim(NamedTuple):
    """The claim of one instant, as an item of :meth:`HistoryStore.claim_many`."""

    key: str
    seed: History
    scheduled_at: datetime
    workflow: str
    claimed_at: datetime

    def change(self) -> Change:
        """The claim as the history change it is (:func:`~policies.decision.record_claim`)."""
        transition = partial(
            record_claim,
            scheduled_at=self.scheduled_at,
            workflow=self.workflow,
            claimed_at=self.claimed_at,
        )
        return Change(self.key, self.seed, transition)


class HistoryStore(Protocol):
    """Where the history of every CronWorkflow lives (in memory or in Redis)."""

    def load(self, key: str) -> History | None:
        """The stored history, or None when the store knows nothing of ``key``."""

    def apply(
        self,
        key: str,
        seed: History,
        transition: Transition,
        runs: Sequence[RunRecord] = (),
    ) -> tuple[History, History]:
        """Atomically replace the history (``seed`` when absent) by ``transition`` of it and
        upsert ``runs``; returns (before, after). A shared store refuses the write of a
        replica that does not lead (``FencedOut``) in the same atomic step."""

    def claim_many(self, claims: Sequence[Claim]) -> list[bool]:
        """Record the intent to spawn each claimed instant, each as one atomic (and in a shared
        store fenced) write of :meth:`Claim.change`; whether each was granted: its instant was
        undecided. The answers in the same order; claims are of distinct keys."""

    def load_many(self, keys: Sequence[str]) -> list[History | None]:
        """:meth:`load` of each key, in one round trip where the store can."""

    def apply_many(self, changes: Sequence[Change]) -> list[tuple[History, History]]:
        """:meth:`apply` of each change (of distinct keys), in one round trip where the store
        can. Each change is atomic, the batch is not: when it raises, any of them may have
        been applied (each is idempotent, so deciding again is safe)."""

    def forget(self, key: str) -> None:
        """Remove everything stored for a deleted CronWorkflow."""

    def drop_cache(self) -> None:
        """Forget every copy of a stored history kept to save reads: called whenever this
        replica takes or loses the lead, so that nothing read under another lead is trusted."""

    def mark(self) -> bool:
        """Make sure the store carries the mark of its data; True when the mark was missing:
        the store is new, or it lost its data (restarted empty, flushed). Not fenced."""


@dataclass(frozen=True)
class RunReport:
    """A run's end, learned by a replica that cannot record it (it does not lead), for the
    leader to count (DESIGN §9: every run that ran is counted once, by whoever learns its
    end)."""

    key: str
    workflow: str
    scheduled_at: datetime
    phase: WorkflowPhase
    finished_at: datetime


class RunReports(Protocol):
    """Where replicas leave the ends of runs for the leader (a queue in the shared store)."""

    def report(self, run: RunReport) -> None:
        """Leave one report; raises :class:`StoreUnavailable`. Not fenced: any replica may."""

    def take(self, limit: int) -> tuple[int, list[RunReport]]:
        """The oldest entries (at most ``limit``), without removing them: how many were
        read (for :meth:`done`) and the reports among them."""

    def done(self, count: int) -> None:
        """Remove the ``count`` oldest reports, once they were recorded. Reports are counted
        idempotently, so one taken twice (a leader died before ``done``) does no harm."""


class _SingleCalls(Protocol):
    def load(self, key: str) -> History | None: ...

    def apply(
        self, key: str, seed: History, transition: Transition, runs: Sequence[RunRecord] = ()
    ) -> tuple[History, History]: ...


class OneByOne:
    """The batch methods of :class:`HistoryStore` as loops of the single ones: for stores
    where calls share nothing worth sharing (in memory), and for wrappers in tests."""

    def load_many(self: _SingleCalls, keys: Sequence[str]) -> list[History | None]:
        return [self.load(key) for key in keys]

    def apply_many(self: _SingleCalls, changes: Sequence[Change]) -> list[tuple[History, History]]:
        return [self.apply(*change) for change in changes]

    def claim_many(self: _SingleCalls, claims: Sequence[Claim]) -> list[bool]:
        return [claimable(self.apply(*claim.change())[0], claim.scheduled_at) for claim in claims]

    def drop_cache(self) -> None:
        """Nothing cached: the store is the only copy."""

    def mark(self) -> bool:
        """A store in this process cannot lose its data behind the process's back."""
        return False


class Sink(Protocol):
    """Where Workflows are created and terminated."""

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        """Create the Workflow of ``scheduled_at`` (DESIGN §7); True if created, False if it
        already existed. Raises :class:`SpawnRejected` or :class:`SinkUnavailable`."""

    def terminate(self, namespace: str, workflow: str) -> None:
        """Stop a running Workflow; one that is gone or already finished is fine.

        Raises :class:`SpawnRejected` or :class:`SinkUnavailable`."""


SpawnOutcome = bool | SpawnRejected | SinkUnavailable
"""What :meth:`Sink.spawn` returned (created, or existed already), or the error it raised."""


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that can create several Workflows at once (a remote API: the requests overlap)."""

    def spawn_many(self, spawns: Sequence[tuple[CronWorkflowSpec, datetime]]) -> list[SpawnOutcome]:
        """:meth:`spawn` of each ``(spec, scheduled_at)``, the outcome of each in order.

        Once one meets :class:`SinkUnavailable`, those not yet started are not attempted
        and get that error. An unexpected exception of one is its :class:`SinkError`."""


def spawn_outcome(sink: Sink, spec: CronWorkflowSpec, scheduled_at: datetime) -> SpawnOutcome:
    """What :meth:`Sink.spawn` returned or raised; an exception the sink did not mean to
    raise is a :class:`SinkError` of this instant alone."""
    try:
        return sink.spawn(spec, scheduled_at)
    except (SpawnRejected, SinkUnavailable) as error:
        return error
    except Exception as error:
        return _unexpected(error, f"creating the Workflow of {spec.key}")


def _unexpected(error: Exception, what: str) -> SinkError:
    wrapped = SinkError(f"unexpected error {what}: {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def spawn_each(
    sink: Sink, spawns: Sequence[tuple[CronWorkflowSpec, datetime]]
) -> list[SpawnOutcome]:
    """:meth:`BatchSink.spawn_many` one at a time, with any sink."""
    outcomes: list[SpawnOutcome] = []
    for spec, scheduled_at in spawns:
        outcome = spawn_outcome(sink, spec, scheduled_at)
        if isinstance(outcome, SinkUnavailable):
            outcomes += [outcome] * (len(spawns) - len(outcomes))
            break
        outcomes.append(outcome)
    return outcomes


class Observer(Protocol):
    def emit(self, event: Event) -> None:
        """Receive one event; must not raise."""


# --------------------------------------------------------------------------------------------
# The engine


@dataclass(frozen=True)
class TickResult:
    """What a tick did: an event's kind, or ``AlreadyDecided`` / ``ClaimLost``."""

    kind: str
    events: tuple[Event, ...] = ()


_SEED_BATCH = 1_000  # histories seeded in one round trip when taking the lead
_ALREADY_DECIDED = TickResult("AlreadyDecided")
_CLAIM_LOST = TickResult("ClaimLost")


@dataclass
class Engine:
    """Applies decisions to a store and a sink, and reports every event to an observer."""

    store: HistoryStore
    sink: Sink
    observer: Observer
    missed_listed: int | None = None
    """At most this many missed instants of one catch-up are recorded and reported one by
    one, the newest; older ones are counted in one :class:`Missed` event. None: all."""
    clock: Callable[[], datetime] | None = None
    """When given, a :class:`Spawned` event is dated when the sink answered rather than
    ``now`` (when the tick began): a batch of thousands takes a second to spawn, and the lag
    metric must see it."""
    _locks: dict[str, threading.RLock] = field(default_factory=dict, init=False, repr=False)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @contextmanager
    def serialized(self, key: str) -> Iterator[None]:
        """Hold the lock of one CronWorkflow (ticks, catch-up and completions take it).

        Reentrant, so that an adapter may hold it around a check and an engine call."""
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:
            yield

    # -- spec lifecycle ---------------------------------------------------------------------

    def sync(self, cron_workflow: CronWorkflow, now: datetime) -> History:
        """Take a new or changed spec into account (call on every add or change).

        Seeds the history of a CronWorkflow the store does not know, moves the cursor to
        ``now`` when the schedules or time zone changed, and records or clears ``SpecError``.
        """
        key = cron_workflow.key
        with self.serialized(key):
            seed = seed_history(cron_workflow, now)
            history = self.store.load(key)
            if history is None:
                _, history = self.store.apply(key, seed, _same)
            if cron_workflow.valid and history.signature != cron_workflow.signature:
                signature = cron_workflow.signature
                _, history = self.store.apply(key, seed, lambda h: reset_cursor(h, signature, now))
            if not cron_workflow.valid:
                message = cron_workflow.validation.errors[0]
                if history.conditions.get(ErrorReason.SPEC_ERROR) != message:
                    fail = Fail(ErrorReason.SPEC_ERROR, message)
                    _, history = self.store.apply(key, seed, lambda h: record_error(h, None, fail))
                    self.observer.emit(
                        Error(time=now, key=key, reason=fail.reason, message=fail.message)
                    )
            elif ErrorReason.SPEC_ERROR in history.conditions:
                _, history = self.store.apply(key, seed, clear_spec_error)
            return history

    def sync_many(self, cron_workflows: Sequence[CronWorkflow], now: datetime) -> list[History]:
        """:meth:`sync` of each. Taking the lead over a large fleet reads every history: they
        are read in one round trip first, and a leader's store then answers each sync's own
        read (under its lock, so never stale) from what it just read."""
        stored = self.store.load_many([cron_workflow.key for cron_workflow in cron_workflows])
        # Histories to seed are written together too: seeding is the identity on whatever is
        # stored by then, so doing it outside the CronWorkflow's lock is harmless.
        seeds = [
            Change(cron_workflow.key, seed_history(cron_workflow, now), _same)
            for cron_workflow, history in zip(cron_workflows, stored, strict=True)
            if history is None
        ]
        for start in range(0, len(seeds), _SEED_BATCH):
            self.store.apply_many(seeds[start : start + _SEED_BATCH])
        return [self.sync(cron_workflow, now) for cron_workflow in cron_workflows]

    def forget(self, key: str) -> None:
        """The CronWorkflow was deleted: drop its history."""
        with self.serialized(key):
            self.store.forget(key)
        with self._locks_guard:
            self._locks.pop(key, None)

    # -- ticks ------------------------------------------------------------------------------

    def tick(
        self, cron_workflow: CronWorkflow, scheduled_at: datetime, now: datetime
    ) -> TickResult:
        """Decide and apply one scheduled instant."""
        with self.serialized(cron_workflow.key):
            return self._tick(cron_workflow, scheduled_at, now, catch_up=False)

    def catch_up(self, cron_workflow: CronWorkflow, now: datetime) -> list[TickResult]:
        """Decide the instants that passed unticked, in (cursor, now) (DESIGN §5)."""
        with self.serialized(cron_workflow.key):
            return self._catch_up(cron_workflow, now, until=now)

    def _catch_up(
        self, cron_workflow: CronWorkflow, now: datetime, *, until: datetime
    ) -> list[TickResult]:
        key = cron_workflow.key
        seed = seed_history(cron_workflow, now)
        history = self.store.load(key) or seed
        if not cron_workflow.valid or history.cursor is None:
            return []
        plan = plan_catch_up(cron_workflow, history.cursor, now, until, self.missed_listed)
        results: list[TickResult] = []
        if plan.cursor is None:
            return results
        # Instants that passed unticked go through the tick order (DESIGN §5): those of a
        # suspended or stopped CronWorkflow are skipped with that reason, never missed.
        probe = decide(cron_workflow, history, plan.cursor, now)
        if isinstance(probe.outcome, Skip) and probe.outcome.reason in _GAP_SKIPS:
            if probe.stop:
                self.store.apply(key, seed, record_stopped)
                self.observer.emit(Stopped(time=now, key=key))
            skip = probe.outcome.reason
            listed = [*(instant for instant, _ in plan.missed), *([plan.run] if plan.run else [])]
            results.append(self._record_gap(key, seed, plan, [(t, skip) for t in listed], now))
            return results
        if plan.missed or plan.unlisted:
            results.append(self._record_gap(key, seed, plan, list(plan.missed), now))
        if plan.run is not None:
            results.append(self._tick(cron_workflow, plan.run, now, catch_up=True))
        return results

    def _record_gap(
        self,
        key: str,
        seed: History,
        plan: CatchUp,
        listed: Sequence[tuple[datetime, MissedReason | SkipReason]],
        now: datetime,
    ) -> TickResult:
        """Record the instants of a gap, each missed or skipped for its reason: the newest
        (``listed``) one by one, the older ones of the plan summed up in one event."""
        skipped = any(isinstance(reason, SkipReason) for _, reason in listed)
        decision = "Skipped" if skipped else "Missed"
        runs = [
            RunRecord(instant, decision, now, reason=reason.value) for instant, reason in listed
        ]
        instants = tuple(instant for instant, _ in listed)
        if plan.unlisted_until is not None:
            instants = (plan.unlisted_until, *instants)
        self.store.apply(key, seed, partial(record_missed, instants=instants), runs)
        events = [_gap_event(key, now, instant, reason) for instant, reason in listed]
        if plan.unlisted_until is not None:
            older = listed[0][1] if skipped else MissedReason.SUPERSEDED
            summary = _gap_event(key, now, plan.unlisted_until, older)
            events.insert(0, replace(summary, count=plan.unlisted, since=plan.unlisted_since))
        for event in events:
            self.observer.emit(event)
        return TickResult(decision, tuple(events))

    def _tick(
        self, cron_workflow: CronWorkflow, scheduled_at: datetime, now: datetime, *, catch_up: bool
    ) -> TickResult:
        prepared = self._prepare(cron_workflow, scheduled_at, now, catch_up=catch_up)
        if isinstance(prepared, TickResult):
            return prepared
        return self._carry_out(prepared, now)

    def _prepare(
        self, cron_workflow: CronWorkflow, scheduled_at: datetime, now: datetime, *, catch_up: bool
    ) -> _Prepared | TickResult:
        """Decide one instant (changing nothing, except deciding the instants before it that
        nobody decided); a :class:`TickResult` when there is nothing left to do."""
        key = cron_workflow.key
        # Without a stored history (no sync yet, or a store that came back empty) this very
        # instant is the first one to decide.
        stored = self.store.load(key)
        seed = stored or seed_history(cron_workflow, scheduled_at - timedelta(seconds=1))
        history = seed
        if history.cursor is not None and history.cursor >= scheduled_at:
            return _ALREADY_DECIDED
        schedule = cron_workflow.schedule
        if not catch_up and schedule is not None and history.cursor is not None:
            following = schedule.next_after_ts(int(history.cursor.timestamp()))
            if following is not None and following < scheduled_at.timestamp():
                # Instants before this one that nobody decided (a tick racing the catch-up
                # after an election or an outage): the catch-up rule decides them first.
                self._catch_up(cron_workflow, now, until=scheduled_at)
                history = self.store.load(key) or history
        decision = decide(cron_workflow, history, scheduled_at, now)
        return _Prepared(cron_workflow, scheduled_at, seed, decision, catch_up)

    def _carry_out(self, prepared: _Prepared, now: datetime) -> TickResult:
        """Apply a decision on its own: the path of every outcome, the batch's exceptions."""
        cron_workflow, scheduled_at, seed = prepared.cron_workflow, prepared.at, prepared.seed
        key = cron_workflow.key
        events: list[Event] = []
        if prepared.decision.stop:
            self.store.apply(key, seed, record_stopped)
            events.append(Stopped(time=now, key=key))
            self.observer.emit(events[-1])
        outcome = prepared.decision.outcome
        if isinstance(outcome, Skip):
            change, skipped = _skipped(prepared, outcome, now)
            self.store.apply(*change)
            return self._emit(events, skipped)
        if isinstance(outcome, Fail):
            return self._fail(cron_workflow, seed, scheduled_at, now, outcome, events)
        return self._spawn(
            cron_workflow, seed, scheduled_at, now, outcome, events, prepared.catch_up
        )

    # -- ticks in batches -------------------------------------------------------------------

    def tick_many(
        self, ticks: Sequence[tuple[CronWorkflow, datetime]], now: datetime
    ) -> list[TickResult]:
        """:meth:`tick` of each ``(cron_workflow, scheduled_at)``, with the store's round
        trips shared: the claims of every instant to spawn go in one batch, and the records
        of every spawn and skip in another. The timer hands over the instants due together
        (a whole fleet on ``0 * * * *``), where the round trips, not the decisions, cost.

        The outcome of each tick is what :meth:`tick` would decide. What a batch cannot
        share takes the one-by-one path: an instant whose CronWorkflow is busy elsewhere (a
        completion being counted) or appears twice, a stop, a ``Replace`` that terminates,
        a failure. On an exception (store or sink unavailable) the instants not yet
        recorded stay undecided, as with :meth:`tick`; spawns already made are recorded
        first when the sink fails, so that the store lists them as active.
        """
        results: list[TickResult | None] = [None] * len(ticks)
        held: list[threading.RLock] = []
        taken: set[str] = set()
        later: list[int] = []
        batch: list[tuple[int, _Prepared]] = []
        try:
            for index, (cron_workflow, scheduled_at) in enumerate(ticks):
                key = cron_workflow.key
                lock = None if key in taken else self._try_lock(key)
                if lock is None:
                    later.append(index)
                    continue
                taken.add(key)
                held.append(lock)
                prepared = self._prepare(cron_workflow, scheduled_at, now, catch_up=False)
                if isinstance(prepared, TickResult):
                    results[index] = prepared
                elif prepared.shareable:
                    batch.append((index, prepared))
                else:
                    results[index] = self._carry_out(prepared, now)
            for index, result in self._carry_out_together(batch, now):
                results[index] = result
        finally:
            for lock in held:
                lock.release()
        for index in later:
            cron_workflow, scheduled_at = ticks[index]
            results[index] = self.tick(cron_workflow, scheduled_at, now)
        return [result for result in results if result is not None]

    def _try_lock(self, key: str) -> threading.RLock | None:
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.RLock())
        return lock if lock.acquire(blocking=False) else None

    def _carry_out_together(
        self, batch: Sequence[tuple[int, _Prepared]], now: datetime
    ) -> list[tuple[int, TickResult]]:
        """Skips and plain spawns of distinct CronWorkflows: claim together, spawn one by
        one, record together, then report."""
        done: list[tuple[int, TickResult]] = []
        records: list[tuple[int, Change, Event]] = []
        spawns: list[tuple[int, _Prepared, Spawn]] = []
        for index, prepared in batch:
            outcome = prepared.decision.outcome
            if isinstance(outcome, Spawn):
                spawns.append((index, prepared, outcome))
                continue
            assert isinstance(outcome, Skip)
            records.append((index, *_skipped(prepared, outcome, now)))
        claims = [
            Claim(p.cron_workflow.key, p.seed, p.at, spawn.workflow, now) for _, p, spawn in spawns
        ]
        claimed = self.store.claim_many(claims) if claims else []
        granted: list[tuple[int, _Prepared, Spawn]] = []
        for item, was_claimed in zip(spawns, claimed, strict=True):
            if was_claimed:
                granted.append(item)
            else:
                done.append((item[0], _CLAIM_LOST))
        outcomes = self._spawn_all([(p.cron_workflow.spec, p.at) for _, p, _ in granted])
        spawned_at = self.clock() if self.clock is not None else now
        unavailable: SinkUnavailable | None = None
        released: list[Change] = []
        for (index, prepared, spawn), made in zip(granted, outcomes, strict=True):
            cron_workflow, scheduled_at = prepared.cron_workflow, prepared.at
            if isinstance(made, SpawnRejected):
                fail = _rejected(made)
                result = self._fail(
                    cron_workflow,
                    prepared.seed,
                    scheduled_at,
                    now,
                    fail,
                    [],
                    triggered=True,
                    workflow=spawn.workflow,
                    unexpected=isinstance(made, SinkError),
                )
                done.append((index, result))
            elif isinstance(made, SinkUnavailable):
                # Nothing was created: the claim is handed back, and catch-up decides the
                # instant once the sink is back.
                unavailable = unavailable or made
                released.append(_release(cron_workflow.key, prepared.seed, spawn.workflow))
            else:
                spawned = _spawned(
                    cron_workflow.key, prepared.seed, scheduled_at, spawn, made, now, spawned_at
                )
                records.append((index, *spawned))
        if records or released:
            self.store.apply_many([change for _, change, _ in records] + released)
        for index, _, recorded in records:
            self.observer.emit(recorded)
            done.append((index, TickResult(recorded.kind, (recorded,))))
        if unavailable is not None:
            raise unavailable
        return done

    def _spawn_all(self, spawns: Sequence[tuple[CronWorkflowSpec, datetime]]) -> list[SpawnOutcome]:
        if len(spawns) > 1 and isinstance(self.sink, BatchSink):
            return self.sink.spawn_many(spawns)
        return spawn_each(self.sink, spawns)

    def _spawn(
        self,
        cron_workflow: CronWorkflow,
        seed: History,
        scheduled_at: datetime,
        now: datetime,
        spawn: Spawn,
        events: list[Event],
        catch_up: bool,
    ) -> TickResult:
        key = cron_workflow.key
        spec = cron_workflow.spec
        claim = Claim(key, seed, scheduled_at, spawn.workflow, now)
        if not self.store.claim_many([claim])[0]:
            return _CLAIM_LOST
        failed = partial(
            self._fail, cron_workflow, seed, scheduled_at, now, workflow=spawn.workflow
        )
        try:
            for workflow in spawn.terminate:
                try:
                    self.sink.terminate(spec.namespace, workflow)
                except SpawnRejected as error:
                    message = f"run policy error: error stopping workflow {workflow}: {error}"
                    return failed(Fail(ErrorReason.SUBMISSION_ERROR, message), events)
                except SinkUnavailable:
                    raise
                except Exception as error:
                    message = "run policy error: " + str(
                        _unexpected(error, f"stopping workflow {workflow}")
                    )
                    fail = Fail(ErrorReason.SUBMISSION_ERROR, message)
                    return failed(fail, events, unexpected=True)
                events.append(Terminated(time=now, key=key, workflow=workflow))
                self.observer.emit(events[-1])
            created = spawn_outcome(self.sink, spec, scheduled_at)
            if isinstance(created, SinkUnavailable):
                raise created
        except SinkUnavailable:
            self.store.apply(*_release(key, seed, spawn.workflow))
            raise
        if isinstance(created, SpawnRejected):
            unexpected = isinstance(created, SinkError)
            fail = _rejected(created)
            return failed(fail, events, triggered=True, unexpected=unexpected)
        spawned_at = self.clock() if self.clock is not None else now
        change, spawned = _spawned(
            key, seed, scheduled_at, spawn, created, now, spawned_at, catch_up
        )
        self.store.apply(*change)
        return self._emit(events, spawned)

    def _fail(
        self,
        cron_workflow: CronWorkflow,
        seed: History,
        scheduled_at: datetime,
        now: datetime,
        fail: Fail,
        events: list[Event],
        *,
        triggered: bool = False,
        workflow: str = "",
        unexpected: bool = False,
    ) -> TickResult:
        """Record an error at ``scheduled_at``; ``workflow`` when it was claimed."""
        key = cron_workflow.key
        run = RunRecord(scheduled_at, "Error", now, reason=fail.reason.value)
        self.store.apply(key, seed, lambda h: record_error(h, scheduled_at, fail, workflow), [run])
        event = Error(
            time=now,
            key=key,
            reason=fail.reason,
            message=fail.message,
            scheduled_at=scheduled_at,
            triggered=triggered,
            expression=fail.expression,
            unexpected=unexpected,
        )
        return self._emit(events, event)

    def _emit(self, events: list[Event], event: Event) -> TickResult:
        events.append(event)
        self.observer.emit(event)
        return TickResult(event.kind, tuple(events))

    # -- completions ------------------------------------------------------------------------

    def complete(
        self,
        cron_workflow: CronWorkflow,
        workflow: str,
        phase: WorkflowPhase,
        now: datetime,
        scheduled_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> bool:
        """A spawned Workflow finished; returns whether this observation counted it.

        After counting, the stop strategy is evaluated (DESIGN §6); running Workflows are left
        alone when it stops the CronWorkflow.
        """
        key = cron_workflow.key
        with self.serialized(key):
            seed = seed_history(cron_workflow, now)
            runs: list[RunRecord] = []
            if scheduled_at is not None:
                runs.append(
                    RunRecord(
                        scheduled_at,
                        "Spawned",
                        now,
                        workflow=workflow,
                        phase=phase.value,
                        finished_at=finished_at or now,
                    )
                )
            finished = finished_at or now
            before, after = self.store.apply(
                key, seed, lambda h: record_completion(h, workflow, phase, finished).history, runs
            )
            if workflow not in before.active:
                return False
            self.observer.emit(Completed(time=now, key=key, workflow=workflow, phase=phase))
            self._stop_after_completion(cron_workflow, seed, after, now)
            return True

    def _stop_after_completion(
        self, cron_workflow: CronWorkflow, seed: History, history: History, now: datetime
    ) -> None:
        key = cron_workflow.key
        try:
            stop = evaluate_stop(cron_workflow, history, now)
        except ExpressionError as error:
            # Argo only logs this; we also keep it visible as a condition.
            message = stop_error_message(cron_workflow, error)
            fail = Fail(ErrorReason.SPEC_ERROR, message, expression=True)
            self.store.apply(key, seed, lambda h: record_error(h, None, fail))
            self.observer.emit(
                Error(time=now, key=key, reason=fail.reason, message=fail.message, expression=True)
            )
            return
        if stop:
            self.store.apply(key, seed, record_stopped)
            self.observer.emit(Stopped(time=now, key=key))

    def adopt(
        self, cron_workflow: CronWorkflow, workflow: str, scheduled_at: datetime, now: datetime
    ) -> bool:
        """A running Workflow of this CronWorkflow that the history does not list as active,
        or lists only as claimed (a crash between create and record): record it as spawned so
        that it is counted when it finishes, and so that its instant is never spawned again.
        Returns whether it was unknown."""
        key = cron_workflow.key
        with self.serialized(key):
            current = self.store.load(key)
            # Claimed with its spawn never recorded: here it is, so it was spawned.
            known = current is not None and workflow in current.active
            if known and current is not None and workflow not in current.intents:
                return False
            seed = current or seed_history(cron_workflow, now)
            run = RunRecord(scheduled_at, "Spawned", now, workflow=workflow)
            self.store.apply(key, seed, lambda h: record_spawn(h, scheduled_at, workflow), [run])
            return True

    def lose(
        self,
        cron_workflow: CronWorkflow,
        workflow: str,
        now: datetime,
        reason: LostReason = LostReason.OUTCOME_UNKNOWN,
    ) -> bool:
        """Nobody can observe ``workflow`` any more: it leaves ``active``, counted as lost,
        with a run record and a :class:`Lost` event. Returns whether it was still active."""
        key = cron_workflow.key
        with self.serialized(key):
            seed = seed_history(cron_workflow, now)
            current = self.store.load(key) or seed
            if workflow not in current.active:
                return False
            intent = current.intents.get(workflow)
            scheduled_at = (
                intent.scheduled_at
                if intent is not None
                else scheduled_time_of(cron_workflow.spec.name, workflow)
            )
            runs = []
            if scheduled_at is not None:
                runs.append(
                    RunRecord(scheduled_at, "Lost", now, workflow=workflow, reason=reason.value)
                )
            before, _ = self.store.apply(key, seed, partial(record_lost, workflow=workflow), runs)
            if workflow not in before.active:
                return False
            self.observer.emit(
                Lost(
                    time=now,
                    key=key,
                    workflow=workflow,
                    scheduled_at=scheduled_at,
                    reason=reason,
                    claimed=intent is not None,
                )
            )
            return True

    def deleted(self, cron_workflow: CronWorkflow, workflow: str, now: datetime) -> None:
        """A run was deleted before it finished: it leaves ``active`` uncounted."""
        key = cron_workflow.key
        with self.serialized(key):
            self.store.apply(
                key, seed_history(cron_workflow, now), lambda h: record_deleted(h, workflow)
            )


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A decided instant, not yet applied."""

    cron_workflow: CronWorkflow
    at: datetime
    seed: History
    decision: TickDecision
    catch_up: bool

    @property
    def shareable(self) -> bool:
        """Whether a batch can apply it: a skip, or a spawn that terminates nothing, and no
        stop (which is one more write)."""
        outcome = self.decision.outcome
        if self.decision.stop or isinstance(outcome, Fail):
            return False
        return isinstance(outcome, Skip) or not outcome.terminate


def _skipped(prepared: _Prepared, skip: Skip, now: datetime) -> tuple[Change, Skipped]:
    """The record and the event of a skipped instant."""
    key, scheduled_at = prepared.cron_workflow.key, prepared.at
    run = RunRecord(scheduled_at, "Skipped", now, reason=skip.reason.value)
    change = Change(key, prepared.seed, partial(record_skip, scheduled_at=scheduled_at), [run])
    return change, Skipped(time=now, key=key, scheduled_at=scheduled_at, reason=skip.reason)


def _spawned(
    key: str,
    seed: History,
    scheduled_at: datetime,
    spawn: Spawn,
    created: bool,
    now: datetime,
    spawned_at: datetime,
    catch_up: bool = False,
) -> tuple[Change, Spawned]:
    """The record (decided ``now``) and the event (dated ``spawned_at``) of a spawn."""
    run = RunRecord(scheduled_at, "Spawned", now, workflow=spawn.workflow)
    transition = partial(record_spawn, scheduled_at=scheduled_at, workflow=spawn.workflow)
    event = Spawned(
        time=spawned_at,
        key=key,
        scheduled_at=scheduled_at,
        workflow=spawn.workflow,
        created=created,
        catch_up=catch_up,
        replaced=spawn.terminate,
    )
    return Change(key, seed, transition, [run]), event


_GAP_SKIPS = frozenset({SkipReason.SUSPENDED, SkipReason.STOPPED})


def _gap_event(
    key: str, now: datetime, instant: datetime, reason: MissedReason | SkipReason
) -> Missed | Skipped:
    if isinstance(reason, SkipReason):
        return Skipped(time=now, key=key, scheduled_at=instant, reason=reason)
    return Missed(time=now, key=key, scheduled_at=instant, reason=reason)


def _release(key: str, seed: History, workflow: str) -> Change:
    """A claim handed back: the sink was unavailable and created nothing."""
    return Change(key, seed, partial(release_claim, workflow=workflow))


def _rejected(error: SpawnRejected) -> Fail:
    return Fail(ErrorReason.SUBMISSION_ERROR, f"Failed to submit Workflow: {error}")


def _same(history: History) -> History:
    return history
