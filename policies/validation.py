"""Validation of a CronWorkflow, in Argo's order and with Argo's messages.

The same function serves `cronwf lint`, the catalog and every tick, so what a user sees before
deploying is exactly what the service enforces. Like Argo, the first error wins: the checks run
in the order of DESIGN §3 and stop at the first failure, so the message a user searches for is
the one Argo would have printed. Warnings never make a CronWorkflow invalid and are collected
independently of errors.

Each rule is one small function returning a message or `None`; `_first_error` lists them in
order, which keeps the order reviewable in one place and leaves an obvious slot for a rule
that lands later.

Judging whether a schedule fires "in the next 5 years" needs a reference instant. The
policies never read the clock, so the caller passes `now`; without it that warning is not
computed.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass

from policies.expressions import ExpressionError, compile_stop, compile_when
from policies.schedule import SEARCH_YEARS, Schedule, ScheduleError, TimezoneError, load_timezone
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
    if now is not None:
        warnings.extend(_never_fires_warnings(spec, now))
    return tuple(warnings)


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
