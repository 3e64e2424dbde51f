"""The brain of the scheduler: one tick, one completion, one catch-up, as pure functions.

Every function here is a function of (CronWorkflow, history, instant, now) and returns what to
do; none reads the clock, touches a store or talks to a cluster. The engine applies the result.
Keeping the decision pure is what lets ``cronwf simulate`` run the very code ``serve`` runs,
lets a test walk through a year of ticks in a second, and makes every branch of DESIGN.md §4
a one-line test.

The order of a tick (DESIGN.md §4) and where it differs from Argo on purpose:

1. an invalid spec is a ``SpecError`` and never fires;
2. the stop strategy is evaluated; when it becomes true the CronWorkflow is ``Stopped``;
3. ``suspend`` skips (``Suspended``); 4. ``Stopped`` skips (``Stopped``);
5. ``when`` false skips (``WhenFalse``); an evaluation error is a ``SubmissionError`` that
   counts as a failure (Argo's ``failed++``), and here also extends the failure streak;
6. concurrency: ``Forbid`` with an active run skips (``ConcurrencyForbid``); ``Replace``
   terminates every active run and goes on;
7. spawn, under the deterministic name of the instant.

History transitions (:func:`record_spawn`, :func:`record_completion`, ...) are pure too: the
in-memory store applies them directly and the Redis store implements the same transitions
atomically; one contract test-suite holds both to them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from policies.expressions import (
    CompiledExpression,
    ExpressionError,
    Variables,
    compile_stop,
    compile_when,
)
from policies.schedule import Schedule
from policies.spec import ConcurrencyPolicy, CronWorkflowSpec
from policies.validation import Validation, validate
from policies.workflow import scheduled_time_of, workflow_name

__all__ = [
    "CatchUp",
    "Completion",
    "CronWorkflow",
    "ErrorReason",
    "Fail",
    "History",
    "Intent",
    "LostReason",
    "MissedReason",
    "Outcome",
    "Phase",
    "Skip",
    "SkipReason",
    "Spawn",
    "TickDecision",
    "WorkflowPhase",
    "claimable",
    "clear_spec_error",
    "decide",
    "evaluate_stop",
    "overdue_runs",
    "plan_catch_up",
    "record_claim",
    "record_completion",
    "record_deleted",
    "record_error",
    "record_lost",
    "record_missed",
    "record_skip",
    "record_spawn",
    "record_stopped",
    "release_claim",
    "reset_cursor",
    "seed_history",
    "stop_error_message",
]


class SkipReason(enum.StrEnum):
    """Why a decided instant was not run."""

    SUSPENDED = "Suspended"
    STOPPED = "Stopped"
    WHEN_FALSE = "WhenFalse"
    CONCURRENCY_FORBID = "ConcurrencyForbid"


class ErrorReason(enum.StrEnum):
    """Argo's condition types; a ``SubmissionError`` counts as a failed run."""

    SPEC_ERROR = "SpecError"
    SUBMISSION_ERROR = "SubmissionError"


class MissedReason(enum.StrEnum):
    """Why an instant that passed while nobody was ticking was not run."""

    DEADLINE = "deadline"
    """The latest missed instant, beyond ``startingDeadlineSeconds`` (or none is set)."""
    SUPERSEDED = "superseded"
    """An earlier missed instant: only the latest is ever caught up."""


class LostReason(enum.StrEnum):
    """Why a run was given up on: nobody can observe it any more (DESIGN §9)."""

    OUTCOME_UNKNOWN = "OutcomeUnknown"
    """No completion was reported within the bound: its replica died or was cut off, or the
    spawn itself never happened (a crash between the claim and the sink's answer)."""


class Phase(enum.StrEnum):
    """The CronWorkflow's ``status.phase``; empty before the first run."""

    NONE = ""
    ACTIVE = "Active"
    STOPPED = "Stopped"


class WorkflowPhase(enum.StrEnum):
    """The final phases of a spawned Workflow that are counted."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"


# --------------------------------------------------------------------------------------------
# The CronWorkflow as the policies see it: validated and compiled once per spec change.


@dataclass(frozen=True)
class CronWorkflow:
    """A spec with its verdict, schedule and compiled expressions.

    Build it with :meth:`prepare` whenever the spec changes; ticks then cost no parsing.
    An invalid spec has ``schedule`` (and possibly expressions) set to ``None``.
    """

    spec: CronWorkflowSpec
    validation: Validation
    schedule: Schedule | None
    when: CompiledExpression | None
    stop: CompiledExpression | None

    @classmethod
    def prepare(cls, spec: CronWorkflowSpec, now: datetime | None = None) -> CronWorkflow:
        """Validate and compile ``spec``; ``now`` enables the never-fires warning."""
        validation = validate(spec, now)
        if not validation.valid:
            return cls(spec, validation, None, None, None)
        return cls(
            spec,
            validation,
            Schedule(spec.effective_schedules, spec.timezone),
            compile_when(spec.when) if spec.when.strip() else None,
            compile_stop(spec.stop_expression) if spec.stop_expression else None,
        )

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def valid(self) -> bool:
        return self.validation.valid

    @cached_property
    def signature(self) -> str:
        """What the cursor's instants were computed from (Argo's ``last-used-schedule``).

        Byte for byte Argo's ``GetScheduleWithTimezoneString()``: the schedules in order,
        joined by ``,``, each prefixed with ``CRON_TZ=<timezone> `` when a timezone is set.
        (For the deprecated single ``schedule``, which Argo 4 no longer reads, it is Argo
        3.7's string.) When it changes, the instants of the old schedule are not caught up
        (DESIGN §5).
        """
        prefix = f"CRON_TZ={self.spec.timezone} " if self.spec.timezone else ""
        return ",".join(prefix + s for s in self.spec.effective_schedules)


# --------------------------------------------------------------------------------------------
# History


@dataclass(frozen=True)
class Intent:
    """An instant claimed for spawning whose outcome is not recorded yet (DESIGN §9).

    The claim moves the cursor to the instant and lists the run as active, so no leader ever
    spawns that instant again and ``Forbid`` waits for it; the spawn's record (or a rejection,
    a completion report, an adoption, or in the end :func:`record_lost`) resolves it.
    ``previous_cursor`` lets the claimer hand an instant back when the sink was unavailable
    and created nothing (:func:`release_claim`).
    """

    scheduled_at: datetime
    claimed_at: datetime
    previous_cursor: datetime | None = None


@dataclass(frozen=True)
class History:
    """What the scheduler remembers about one CronWorkflow between ticks.

    ``cursor`` is the last decided instant: an instant at or before it is never decided again.
    ``intents`` are the active runs claimed but whose spawn was not recorded (by workflow
    name); ``lost`` counts the runs given up on because nobody could observe their end.
    ``signature`` is the schedule the cursor belongs to (see :attr:`CronWorkflow.signature`).
    ``conditions`` maps Argo's condition types to their messages. ``last_succeeded_time`` is
    when the last counted successful run finished (what "no recent success" alerts watch).
    """

    cursor: datetime | None = None
    signature: str = ""
    last_scheduled_time: datetime | None = None
    last_succeeded_time: datetime | None = None
    succeeded: int = 0
    failed: int = 0
    consecutive_succeeded: int = 0
    consecutive_failed: int = 0
    phase: Phase = Phase.NONE
    active: tuple[str, ...] = ()
    conditions: Mapping[str, str] = field(default_factory=dict)
    intents: Mapping[str, Intent] = field(default_factory=dict)
    lost: int = 0

    @property
    def stopped(self) -> bool:
        return self.phase is Phase.STOPPED

    def variables(self, cron_workflow: CronWorkflow) -> Variables:
        """The ``cronworkflow.*`` variables of DESIGN §8 for this history."""
        spec = cron_workflow.spec
        return Variables(
            name=spec.name,
            namespace=spec.namespace,
            labels=spec.labels,
            annotations=spec.annotations,
            last_scheduled_time=self.last_scheduled_time,
            succeeded=self.succeeded,
            failed=self.failed,
            consecutive_succeeded=self.consecutive_succeeded,
            consecutive_failed=self.consecutive_failed,
        )


_HISTORY_FIELDS = frozenset(f.name for f in fields(History))


def seed_history(cron_workflow: CronWorkflow, now: datetime) -> History:
    """The history of a CronWorkflow the store knows nothing about (DESIGN §5, §9).

    Counters, phase, active runs and ``lastScheduledTime`` come from the object's status
    (taking over from Argo's controller, a store that came back empty, a restart without
    Redis); where the cursor starts is :func:`_seed_cursor`'s to say.
    """
    status = cron_workflow.spec.status
    last = status.last_scheduled_time.astimezone(UTC) if status.last_scheduled_time else None
    return History(
        cursor=_seed_cursor(cron_workflow, now),
        signature=cron_workflow.signature,
        last_scheduled_time=last,
        succeeded=status.succeeded,
        failed=status.failed,
        phase=Phase(status.phase) if status.phase in Phase._value2member_map_ else Phase.NONE,
        active=status.active,
    )


def _seed_cursor(cron_workflow: CronWorkflow, now: datetime) -> datetime:
    """Where the cursor of a CronWorkflow without history starts.

    Argo's rule (``shouldOutstandingWorkflowsBeRun``, reference §1.6) first: when the
    ``last-used-schedule`` annotation differs from the current schedule string, the schedule
    has just changed and nothing outstanding is caught up, so the cursor starts at ``now``.
    A *missing* annotation means the same where Argo could have handed the object over
    (Kubernetes mode, :attr:`StatusSeed.last_used_schedule_required`); a manifest without one
    keeps its status as written.

    Otherwise the cursor is the later of ``lastScheduledTime`` (which only moves on spawns)
    and cronwf's ``last-decided-time`` (which moves on every decided instant, so a restart
    without Redis decides no instant twice). The latter counts only under an annotation that
    names the current schedule: it is an instant of that schedule. Taking the later of the two
    covers a CronWorkflow that went to Argo and came back, where Argo moved only
    ``lastScheduledTime``. With neither, the cursor starts at ``now``.
    """
    status = cron_workflow.spec.status
    recorded = status.last_used_schedule
    if recorded is None and status.last_used_schedule_required:
        return now
    if recorded is not None and recorded != cron_workflow.signature:
        return now
    known = [status.last_scheduled_time]
    if recorded is not None:
        known.append(status.last_decided_time)
    found = [moment.astimezone(UTC) for moment in known if moment is not None]
    return max(found) if found else now


# --------------------------------------------------------------------------------------------
# The tick


@dataclass(frozen=True)
class Skip:
    reason: SkipReason


@dataclass(frozen=True)
class Spawn:
    """Create ``workflow``, after terminating ``terminate`` (``Replace``)."""

    workflow: str
    terminate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fail:
    """An error at this instant; a ``SubmissionError`` counts as a failed run."""

    reason: ErrorReason
    message: str
    expression: bool = False
    """True when a ``when`` or stop expression failed to evaluate."""

    @property
    def counts_as_failure(self) -> bool:
        return self.reason is ErrorReason.SUBMISSION_ERROR


Outcome = Skip | Spawn | Fail


@dataclass(frozen=True)
class TickDecision:
    """What one tick does; ``stop`` says the stop strategy just became true."""

    outcome: Outcome
    stop: bool = False


def evaluate_stop(cron_workflow: CronWorkflow, history: History, now: datetime) -> bool:
    """Whether the stop strategy is true now; raises :class:`ExpressionError`.

    A CronWorkflow already stopped stays stopped: its expression is not evaluated again.
    """
    if cron_workflow.stop is None or history.stopped:
        return False
    return cron_workflow.stop.evaluate(history.variables(cron_workflow), now)


def stop_error_message(cron_workflow: CronWorkflow, error: ExpressionError) -> str:
    """Argo's message for a stop expression that fails to evaluate."""
    return (
        f"failed to check CronWorkflow '{cron_workflow.spec.name}' stopping condition: "
        f"failed to evaluate stop expression: {error}"
    )


def decide(
    cron_workflow: CronWorkflow, history: History, scheduled_at: datetime, now: datetime
) -> TickDecision:
    """Decide one tick: the scheduled instant ``scheduled_at`` of ``cron_workflow`` at ``now``."""
    if not cron_workflow.valid:
        return TickDecision(Fail(ErrorReason.SPEC_ERROR, cron_workflow.validation.errors[0]))
    try:
        stop = evaluate_stop(cron_workflow, history, now)
    except ExpressionError as error:
        message = stop_error_message(cron_workflow, error)
        return TickDecision(Fail(ErrorReason.SPEC_ERROR, message, expression=True))
    spec = cron_workflow.spec
    if spec.suspend:
        return TickDecision(Skip(SkipReason.SUSPENDED), stop)
    if stop or history.stopped:
        return TickDecision(Skip(SkipReason.STOPPED), stop)
    if cron_workflow.when is not None:
        try:
            run = cron_workflow.when.evaluate(history.variables(cron_workflow), now)
        except ExpressionError as error:
            message = f"run policy error: {error}"
            return TickDecision(Fail(ErrorReason.SUBMISSION_ERROR, message, expression=True))
        if not run:
            return TickDecision(Skip(SkipReason.WHEN_FALSE))
    terminate: tuple[str, ...] = ()
    if history.active:
        policy = spec.concurrency
        if policy is ConcurrencyPolicy.FORBID:
            return TickDecision(Skip(SkipReason.CONCURRENCY_FORBID))
        if policy is ConcurrencyPolicy.REPLACE:
            terminate = history.active
    return TickDecision(Spawn(workflow_name(spec.name, scheduled_at), terminate))


# --------------------------------------------------------------------------------------------
# Catch-up


@dataclass(frozen=True)
class CatchUp:
    """The instants that passed unticked: which are recorded missed, which one runs.

    When the plan was asked to list at most so many missed instants, ``unlisted`` counts the
    older superseded ones left out (a fast schedule after a long gap has millions), from
    ``unlisted_since`` to ``unlisted_until``; they are missed all the same.
    """

    missed: tuple[tuple[datetime, MissedReason], ...] = ()
    run: datetime | None = None
    unlisted: int = 0
    unlisted_since: datetime | None = None
    unlisted_until: datetime | None = None

    @property
    def cursor(self) -> datetime | None:
        """The last instant this plan decides, if any."""
        if self.run is not None:
            return self.run
        if self.missed:
            return self.missed[-1][0]
        return self.unlisted_until


def plan_catch_up(
    cron_workflow: CronWorkflow,
    cursor: datetime,
    now: datetime,
    until: datetime | None = None,
    listed: int | None = None,
) -> CatchUp:
    """Plan the instants in ``(cursor, until)`` (DESIGN §5, Argo's rule without its quirks);
    ``until`` defaults to ``now``.

    The latest runs when ``startingDeadlineSeconds`` > 0 and ``now`` is before the instant
    plus the deadline; every other one is missed (``superseded``, or ``deadline`` for the
    latest when it may not run). An instant exactly at ``until`` is not missed: its own tick
    decides it. With ``listed``, at most that many missed instants are listed, the newest;
    the older ones are only counted (:attr:`CatchUp.unlisted`), in memory bounded by
    ``listed`` however long the gap.
    """
    if listed is not None and listed < 1:
        raise ValueError(f"listed must be at least 1, got {listed}")
    schedule = cron_workflow.schedule
    if schedule is None:
        return CatchUp()
    bound = now if until is None else until
    start = int(cursor.timestamp())
    end = int(bound.timestamp())
    if bound.timestamp() == end:
        end -= 1  # (cursor, until) is open at until
    # The newest instants (the listed ones, the latest, and the newest unlisted one).
    keep = None if listed is None else listed + 2
    count, newest = schedule.count_between_ts(start, end, keep)
    if not newest:
        return CatchUp()
    latest = newest[-1]
    deadline = cron_workflow.spec.starting_deadline_seconds or 0
    runs = deadline > 0 and now.timestamp() < latest + deadline
    # How many superseded instants the plan lists: all of them without a bound.
    earlier = count - 1
    shown = earlier if listed is None else min(earlier, listed if runs else listed - 1)
    superseded = tuple(
        (datetime.fromtimestamp(ts, UTC), MissedReason.SUPERSEDED)
        for ts in newest[len(newest) - 1 - shown : -1]
    )
    hidden = earlier - shown
    unlisted: dict[str, Any] = {}
    if hidden:
        first = schedule.next_after_ts(start)
        assert first is not None  # there are instants after start
        unlisted = {
            "unlisted": hidden,
            "unlisted_since": datetime.fromtimestamp(first, UTC),
            "unlisted_until": datetime.fromtimestamp(newest[len(newest) - 2 - shown], UTC),
        }
    latest_at = datetime.fromtimestamp(latest, UTC)
    if runs:
        return CatchUp(superseded, latest_at, **unlisted)
    return CatchUp((*superseded, (latest_at, MissedReason.DEADLINE)), **unlisted)


# --------------------------------------------------------------------------------------------
# History transitions. Each is idempotent where an event can be observed twice.


def _evolve(history: History, **changes: Any) -> History:
    """``dataclasses.replace`` for :class:`History` without its per-call introspection: every
    tick makes several of these, and ``simulate`` makes millions."""
    unknown = changes.keys() - _HISTORY_FIELDS
    if unknown:
        raise TypeError(f"History has no field {sorted(unknown)[0]!r}")
    evolved = object.__new__(History)
    evolved.__dict__.update(history.__dict__)
    evolved.__dict__.update(changes)
    return evolved


def _advance(history: History, instant: datetime) -> History:
    if history.cursor is not None and history.cursor >= instant:
        return history
    return _evolve(history, cursor=instant)


def _without(names: tuple[str, ...], workflow: str) -> tuple[str, ...]:
    return tuple(name for name in names if name != workflow) if workflow in names else names


def _resolved(history: History, workflow: str) -> Mapping[str, Intent]:
    """The intents without ``workflow``'s (the same mapping when it has none)."""
    if workflow not in history.intents:
        return history.intents
    return {name: intent for name, intent in history.intents.items() if name != workflow}


def claimable(history: History, scheduled_at: datetime) -> bool:
    """Whether ``scheduled_at`` is still undecided, so that it may be claimed."""
    return history.cursor is None or history.cursor < scheduled_at


def record_claim(
    history: History, scheduled_at: datetime, workflow: str, claimed_at: datetime
) -> History:
    """The intent to spawn ``workflow`` for ``scheduled_at``, recorded before the sink is
    asked: the instant is decided (the cursor moves to it) and the run is active, in an
    unknown state until its spawn is recorded. Unchanged when the instant was decided."""
    if not claimable(history, scheduled_at):
        return history
    active = history.active if workflow in history.active else (*history.active, workflow)
    intent = Intent(scheduled_at, claimed_at, history.cursor)
    return _evolve(
        history, cursor=scheduled_at, active=active, intents={**history.intents, workflow: intent}
    )


def release_claim(history: History, workflow: str) -> History:
    """The sink was unavailable and created nothing: the claim is handed back, so that the
    instant is decided again (by catch-up) rather than given up on."""
    intent = history.intents.get(workflow)
    if intent is None:
        return history
    cursor = intent.previous_cursor if history.cursor == intent.scheduled_at else history.cursor
    return _evolve(
        history,
        cursor=cursor,
        active=_without(history.active, workflow),
        intents=_resolved(history, workflow),
    )


def record_spawn(history: History, scheduled_at: datetime, workflow: str) -> History:
    """A Workflow was created (or already existed) for ``scheduled_at``."""
    conditions = {k: v for k, v in history.conditions.items() if k != ErrorReason.SUBMISSION_ERROR}
    active = history.active if workflow in history.active else (*history.active, workflow)
    last = history.last_scheduled_time
    return _evolve(
        _advance(history, scheduled_at),
        last_scheduled_time=scheduled_at if last is None or scheduled_at > last else last,
        active=active,
        phase=Phase.STOPPED if history.stopped else Phase.ACTIVE,
        conditions=conditions,
        intents=_resolved(history, workflow),
    )


def record_skip(history: History, scheduled_at: datetime) -> History:
    """The instant was decided and not run."""
    return _advance(history, scheduled_at)


def record_missed(history: History, instants: Iterator[datetime] | tuple[datetime, ...]) -> History:
    """Instants that passed unticked were recorded as missed."""
    for instant in instants:
        history = _advance(history, instant)
    return history


def record_error(
    history: History, scheduled_at: datetime | None, fail: Fail, workflow: str = ""
) -> History:
    """An error at an instant (or outside any instant, when ``scheduled_at`` is None); when
    ``workflow`` was claimed, its spawn failed: it is no longer active."""
    conditions = {**history.conditions, fail.reason.value: fail.message}
    updated = _evolve(history, conditions=conditions)
    if workflow in history.intents:
        updated = _evolve(
            updated,
            active=_without(history.active, workflow),
            intents=_resolved(history, workflow),
        )
    if fail.counts_as_failure:
        updated = _evolve(
            updated,
            failed=history.failed + 1,
            consecutive_failed=history.consecutive_failed + 1,
            consecutive_succeeded=0,
        )
    return updated if scheduled_at is None else _advance(updated, scheduled_at)


def record_stopped(history: History) -> History:
    """The stop strategy became true."""
    return _evolve(history, phase=Phase.STOPPED)


def clear_spec_error(history: History) -> History:
    """A valid spec clears the ``SpecError`` condition (Argo does the same)."""
    if ErrorReason.SPEC_ERROR not in history.conditions:
        return history
    return _evolve(
        history,
        conditions={k: v for k, v in history.conditions.items() if k != ErrorReason.SPEC_ERROR},
    )


@dataclass(frozen=True)
class Completion:
    """The history after a completion, and whether this observation counted the run."""

    history: History
    counted: bool


def record_completion(
    history: History,
    workflow: str,
    phase: WorkflowPhase,
    finished_at: datetime | None = None,
) -> Completion:
    """A spawned Workflow finished (at ``finished_at``, when known); it is counted once,
    however often this is observed.

    A Workflow not (or no longer) among the active runs is not counted: either it was
    counted already, or it was never ours to count. A claimed run whose spawn was never
    recorded (its claimer died) is known to have been spawned by its completion.
    """
    if workflow not in history.active:
        return Completion(history, counted=False)
    intent = history.intents.get(workflow)
    if intent is not None:
        history = record_spawn(history, intent.scheduled_at, workflow)
    active = tuple(name for name in history.active if name != workflow)
    if phase is WorkflowPhase.SUCCEEDED:
        last = history.last_succeeded_time
        if finished_at is not None and (last is None or finished_at > last):
            last = finished_at
        updated = _evolve(
            history,
            active=active,
            succeeded=history.succeeded + 1,
            consecutive_succeeded=history.consecutive_succeeded + 1,
            consecutive_failed=0,
            last_succeeded_time=last,
        )
    else:
        updated = _evolve(
            history,
            active=active,
            failed=history.failed + 1,
            consecutive_failed=history.consecutive_failed + 1,
            consecutive_succeeded=0,
        )
    return Completion(updated, counted=True)


def record_deleted(history: History, workflow: str) -> History:
    """A run deleted before it finished leaves ``active`` uncounted (DESIGN §6)."""
    if workflow not in history.active and workflow not in history.intents:
        return history
    return _evolve(
        history, active=_without(history.active, workflow), intents=_resolved(history, workflow)
    )


def record_lost(history: History, workflow: str) -> History:
    """Nobody can observe ``workflow`` any more: it leaves ``active``, counted as lost (not
    as failed: nobody knows how it ended). Unchanged when it is not active any more."""
    if workflow not in history.active:
        return history
    return _evolve(
        history,
        active=_without(history.active, workflow),
        intents=_resolved(history, workflow),
        lost=history.lost + 1,
    )


def overdue_runs(
    history: History, cron_workflow_name: str, now: datetime, lost_after: timedelta
) -> tuple[str, ...]:
    """The active runs started more than ``lost_after`` before ``now``: when nobody can
    observe them, they are lost (DESIGN §9). A claimed run started when it was claimed; a
    spawned one at its scheduled instant (read from its name, DESIGN §7)."""
    overdue: list[str] = []
    for workflow in history.active:
        intent = history.intents.get(workflow)
        started = (
            intent.claimed_at
            if intent is not None
            else scheduled_time_of(cron_workflow_name, workflow)
        )
        if started is not None and now - started >= lost_after:
            overdue.append(workflow)
    return tuple(overdue)


def reset_cursor(history: History, signature: str, now: datetime) -> History:
    """The schedules or time zone changed: instants of the new schedule before now are not
    caught up (DESIGN §5)."""
    return _evolve(history, cursor=now, signature=signature)
