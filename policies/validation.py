"""Validation of a CronWorkflow, in Argo's order and with Argo's messages.

The same function serves `cronwf lint`, the catalog and every tick, so what a user sees before
deploying is exactly what the service enforces. Like Argo, the first error wins: the checks run
in the order of DESIGN §3 and stop at the first failure, so the message a user searches for is
the one Argo would have printed. Warnings never make a CronWorkflow invalid and are collected
independently of errors.

Each rule is one small function returning a message or `None`; `_first_error` lists them in
order, which keeps the order reviewable in one place and leaves an obvious slot for a rule
that lands later.

Warnings say what is certain or likely to go wrong at run time, with what to write instead:
a deprecated field; an expression part that fails whenever it is evaluated (`policies.
expressions.lint`: an unguarded nil, a label the manifest lacks, a constant overflow); a schedule
that never fires; a daily local time that a DST change skips, or repeats while no `when` guards
against the second run. The last two look ahead from a reference instant. The policies never
read the clock, so the caller passes `now`; without it they are not computed. They cost little
per CronWorkflow, whatever its schedule (`policies.schedule.clock_changes` starts from the
zone's few offset changes a year and is cached per schedule, zone and day), because serve
validates every CronWorkflow on every change.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from policies.expressions import (
    CompiledExpression,
    ExpressionError,
    Finding,
    compile_stop,
    compile_when,
    lint,
)
from policies.schedule import (
    SEARCH_YEARS,
    ClockChange,
    CronExpression,
    Schedule,
    ScheduleError,
    TimezoneError,
    clock_changes,
    load_timezone,
    parse_expression,
)
from policies.spec import ConcurrencyPolicy, CronWorkflowSpec

__all__ = ["MAX_NAME_LENGTH", "Validation", "validate"]

# A spawned Workflow is named `<name>-<10-digit Unix seconds>` and must fit in 63 characters.
MAX_NAME_LENGTH = 52


@dataclass(frozen=True)
class Validation:
    """The verdict on one CronWorkflow: at most one error (the first), and any warnings."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors


def validate(spec: CronWorkflowSpec, now: datetime.datetime | None = None) -> Validation:
    """Validate `spec`; `now` (aware) enables the "never fires in 5 years" warning."""
    error = _first_error(spec)
    return Validation(
        errors=() if error is None else (error,),
        warnings=_warnings(spec, now),
    )


def _first_error(spec: CronWorkflowSpec) -> str | None:
    return (
        _name_error(spec)
        or _schedule_fields_error(spec)
        or _schedule_error(spec)
        or _timezone_error(spec)
        or _concurrency_policy_error(spec)
        or _starting_deadline_error(spec)
        or _expression_error(spec)
        or _workflow_spec_error(spec)
    )


def _name_error(spec: CronWorkflowSpec) -> str | None:
    if len(spec.name) > MAX_NAME_LENGTH:
        return (
            f'cron workflow name "{spec.name}" must not be more than {MAX_NAME_LENGTH} '
            f"characters long (currently {len(spec.name)})"
        )
    return None


def _schedule_fields_error(spec: CronWorkflowSpec) -> str | None:
    if spec.deprecated_schedule and spec.schedules:
        return "cron workflow cant be configured with both Spec.Schedule and Spec.Schedules"
    if not spec.effective_schedules:
        return "cron workflow must have at least one schedule"
    return None


def _schedule_error(spec: CronWorkflowSpec) -> str | None:
    for expression in spec.effective_schedules:
        try:
            Schedule([expression])
        except ScheduleError as error:
            return str(error)
    return None


def _timezone_error(spec: CronWorkflowSpec) -> str | None:
    try:
        load_timezone(spec.timezone)
    except TimezoneError as error:
        return str(error)
    return None


def _concurrency_policy_error(spec: CronWorkflowSpec) -> str | None:
    allowed = {policy.value for policy in ConcurrencyPolicy} | {""}
    if spec.concurrency_policy not in allowed:
        return f"'{spec.concurrency_policy}' is not a valid concurrencyPolicy"
    return None


def _starting_deadline_error(spec: CronWorkflowSpec) -> str | None:
    deadline = spec.starting_deadline_seconds
    if deadline is not None and deadline < 0:
        return "startingDeadlineSeconds must be positive"
    return None


def _expression_error(spec: CronWorkflowSpec) -> str | None:
    # Exactly what `CronWorkflow.prepare` compiles (a blank `when` and an empty stop expression
    # mean "none"), so a spec that validates never fails to compile there. Compilation is
    # cached, so validating costs nothing when the spec is then prepared.
    if spec.when.strip():
        try:
            compile_when(spec.when)
        except ExpressionError as error:
            return f"spec.when: {error}"
    if spec.stop_expression:
        try:
            compile_stop(spec.stop_expression)
        except ExpressionError as error:
            return f"spec.stopStrategy.expression: {error}"
    return None


def _workflow_spec_error(spec: CronWorkflowSpec) -> str | None:
    workflow_spec = spec.workflow_spec
    if workflow_spec is None:
        return (
            "cannot validate Workflow: spec.workflowSpec is required: it is the spec of every "
            "Workflow the CronWorkflow spawns"
        )
    if not isinstance(workflow_spec, Mapping):
        return (
            "cannot validate Workflow: spec.workflowSpec must be a mapping, "
            f"got {type(workflow_spec).__name__}"
        )
    if workflow_spec.get("workflowTemplateRef"):
        return None
    entrypoint = workflow_spec.get("entrypoint")
    if not entrypoint:
        return (
            "cannot validate Workflow: spec.entrypoint is required: set "
            "spec.workflowSpec.entrypoint to the name of a template in "
            "spec.workflowSpec.templates"
        )
    if entrypoint not in _template_names(workflow_spec):
        return (
            f"cannot validate Workflow: spec.entrypoint template '{entrypoint}' undefined: "
            "spec.workflowSpec.entrypoint names no template in spec.workflowSpec.templates"
        )
    return None


def _template_names(workflow_spec: Mapping[str, object]) -> set[object]:
    templates = workflow_spec.get("templates")
    if not isinstance(templates, list):
        return set()
    return {template.get("name") for template in templates if isinstance(template, Mapping)}


def _warnings(spec: CronWorkflowSpec, now: datetime.datetime | None) -> tuple[str, ...]:
    warnings: list[str] = []
    if spec.deprecated_schedule and not spec.schedules:
        warnings.append(
            "spec.schedule is deprecated (removed in Argo Workflows v4, which ignores it): "
            f"write schedules: [{json.dumps(spec.deprecated_schedule)}]"
        )
    compiled = _compiled(spec)
    warnings.extend(_expression_warnings(spec, compiled))
    if now is not None:
        warnings.extend(_never_fires_warnings(spec, now))
        guarded = any(
            "lastScheduledTime" in expression.variables
            for field, _, expression in compiled
            if field == "spec.when"
        )
        warnings.extend(_dst_warnings(spec, now, guarded))
    return tuple(warnings)


# What a `when` or a stop expression that fails to evaluate does to each tick (DESIGN §4).
_FAILURE: dict[str, str] = {
    "when": "a when that fails ends the tick in a SubmissionError, counted as a failed run, "
    "and spawns nothing",
    "stop": "a stop expression that fails ends the tick in a SpecError and spawns nothing",
}


def _compiled(spec: CronWorkflowSpec) -> list[tuple[str, str, CompiledExpression]]:
    """The expressions of `spec` that compile, as `(field, context, compiled)`."""
    found: list[tuple[str, str, CompiledExpression]] = []
    try:
        if spec.when.strip():
            found.append(("spec.when", "when", compile_when(spec.when)))
        if spec.stop_expression:
            found.append(
                ("spec.stopStrategy.expression", "stop", compile_stop(spec.stop_expression))
            )
    except ExpressionError:
        pass  # `_expression_error` reports it; nothing to warn about beyond the error
    return found


def _expression_warnings(
    spec: CronWorkflowSpec, expressions: list[tuple[str, str, CompiledExpression]]
) -> list[str]:
    warnings: list[str] = []
    for field, context, compiled in expressions:
        for finding in lint(compiled, context, spec.labels, spec.annotations):
            warnings.append(
                f"{field}: {finding.problem}; {_consequence(finding, context)}. {finding.instead}"
            )
    return warnings


def _consequence(finding: Finding, context: str) -> str:
    if finding.until_first_run:
        return f"{_FAILURE[context]}, so it stays nil and every tick fails"
    return _FAILURE[context]


def _never_fires_warnings(spec: CronWorkflowSpec, now: datetime.datetime) -> list[str]:
    field = "spec.schedules" if spec.schedules else "spec.schedule"
    warnings: list[str] = []
    for index, expression in enumerate(spec.effective_schedules):
        try:
            schedule = Schedule([expression], spec.timezone)
        except (ScheduleError, TimezoneError):
            return []
        if schedule.next_after(now) is None:
            where = f"{field}[{index}]" if spec.schedules else field
            warnings.append(
                f"{where} {json.dumps(expression)} has no instant in the next "
                f"{SEARCH_YEARS} years: it never fires"
            )
    return warnings


# DST (DESIGN §2): a local time the clocks skip never fires, one they repeat fires twice.

_DST_WINDOW = datetime.timedelta(days=365)
_LISTED = 3


def _dst_warnings(spec: CronWorkflowSpec, now: datetime.datetime, guarded: bool) -> list[str]:
    """`guarded`: the `when` reads lastScheduledTime, so it can tell a second run from the first."""
    if not spec.timezone:
        return []
    expressions = spec.effective_schedules
    day = now.astimezone(datetime.UTC).date()
    start = int(now.timestamp())
    end = int((now + _DST_WINDOW).timestamp())
    field = "spec.schedules" if spec.schedules else "spec.schedule"
    warnings: list[str] = []
    for index, expression in enumerate(expressions):
        try:
            changes = clock_changes(expression, spec.timezone, day)
        except (ScheduleError, TimezoneError):
            return []
        changes = tuple(c for c in changes if start <= c.at < end)
        if not changes:
            continue
        where = f"{field}[{index}]" if spec.schedules else field
        subject = f"{where} {json.dumps(expression)} in {spec.timezone}"
        gaps = [c for c in changes if c.skipped]
        if gaps and guarded:
            others = [e for j, e in enumerate(expressions) if j != index]
            gaps = [c for c in gaps if not _caught_up_that_day(c, others, spec.timezone)]
        if gaps:
            warnings.append(_gap_warning(subject, expression, tuple(gaps)))
        repeats = [c for c in changes if not c.skipped]
        if repeats and not guarded:
            warnings.append(_repeat_warning(subject, expression, tuple(repeats)))
    return warnings


def _caught_up_that_day(gap: ClockChange, others: list[str], timezone: str) -> bool:
    """Whether another schedule fires after the gap on the same local day: Argo's documented
    pattern (`"30 2 * * *"` and `"0 3 * * *"` with a `when` that skips the second after a run)."""
    if not others:
        return False
    schedule = Schedule(others, timezone)
    following = schedule.next_after_ts(gap.at - 1)
    if following is None:
        return False
    return datetime.datetime.fromtimestamp(following, schedule.tz).date() == gap.start.date()


# Cached: a fleet sharing a schedule and a zone gets the same message, built once.
@lru_cache(maxsize=4096)
def _gap_warning(subject: str, expression: str, gaps: tuple[ClockChange, ...]) -> str:
    parts = [
        f"{times} {'do' if plural else 'does'} not exist on {dates} "
        f"(clocks go from {start} to {end})"
        for (start, end, times, plural), dates in _by_span(gaps).items()
    ]
    first = gaps[0]
    day_fields = _single_time(expression)
    advice = f"schedule it outside {_clock(first.start)}-{_clock(first.end)}"
    if day_fields is not None:
        fallback = f"{first.end.minute} {first.end.hour} {day_fields}"
        advice += (
            f", or add a schedule {json.dumps(fallback)} with a when that skips it after a run "
            f"(when: {_recent_guard(2 * first.shift)})"
        )
    return (
        f"{subject}: {'; '.join(parts)}, so it does not fire then (a local time that the clocks "
        f"skip is skipped, not moved, as in Argo); {advice}"
    )


@lru_cache(maxsize=4096)
def _repeat_warning(subject: str, expression: str, repeats: tuple[ClockChange, ...]) -> str:
    parts = [
        f"{times} {'occur' if plural else 'occurs'} twice on {dates} "
        f"(clocks go back from {end} to {start})"
        for (start, end, times, plural), dates in _by_span(repeats).items()
    ]
    first = repeats[0]
    advice = f"schedule it outside {_clock(first.start)}-{_clock(first.end)}"
    if _single_time(expression) is not None:
        advice += f", or add a when that skips the second run: {_recent_guard(2 * first.shift)}"
    return (
        f"{subject}: {'; '.join(parts)}, and it fires both times, {_duration(first.shift)} "
        f"apart (a local time that occurs twice fires twice, as in Argo); {advice}"
    )


def _by_span(changes: tuple[ClockChange, ...]) -> dict[tuple[str, str, str, bool], str]:
    """The changes grouped by wall-clock span and the times named in it, with their dates."""
    grouped: dict[tuple[str, str, str, bool], list[str]] = {}
    for change in changes:
        times = [_clock(t) for t in change.times]
        key = (
            _clock(change.start),
            _clock(change.end),
            _listing(times, change.count),
            change.count > 1,
        )
        grouped.setdefault(key, []).append(change.start.date().isoformat())
    return {key: _listing(dates[:_LISTED], len(dates)) for key, dates in grouped.items()}


def _listing(items: list[str], count: int) -> str:
    """`a`, `a and b`, `a, b and c`, or `a, b, c and 2 more` when `count` exceeds the items."""
    if count > len(items):
        return f"{', '.join(items)} and {count - len(items)} more"
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _clock(moment: datetime.datetime) -> str:
    return moment.strftime("%H:%M")


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"{hours} hours"
    return f"{seconds // 60} minutes"


def _recent_guard(seconds: int) -> str:
    return (
        "cronworkflow.lastScheduledTime == nil || "
        f"(now() - cronworkflow.lastScheduledTime).Seconds() > {seconds}"
    )


# The day fields (day of month, month, day of week) of the descriptors.
_DESCRIPTOR_DAYS = {
    "@yearly": "1 1 *",
    "@annually": "1 1 *",
    "@monthly": "1 * *",
    "@weekly": "* * 0",
    "@daily": "* * *",
    "@midnight": "* * *",
}


def _single_time(expression: str) -> str | None:
    """The day fields of an expression that fires at one time of day, else None: only then do
    a fallback schedule and a "recent run" guard fit without changing its other days."""
    parsed = parse_expression(expression)
    if not isinstance(parsed, CronExpression) or len(parsed.hours) * len(parsed.minutes) != 1:
        return None
    fields = expression.split()
    return " ".join(fields[2:]) if len(fields) == 5 else _DESCRIPTOR_DAYS.get(expression)
