"""The pure view of a CronWorkflow that the policies decide on.

Manifests and the Kubernetes API hand us loosely typed documents; the policies must not care
where a CronWorkflow came from, nor depend on pydantic or YAML. So the service layer converts
each CronWorkflow once, at the edge, into the small frozen dataclasses below, and everything
in `policies` works on those. They hold what was written, lightly normalised (defaults applied
the way Argo applies them), but never judged: a `CronWorkflowSpec` may be invalid, and
`policies.validation` is the one place that says so. That is why `concurrency_policy` stays a
plain string and `workflow_spec` may be `None`.

Two annotations are state, not spec: Argo's `cronworkflows.argoproj.io/last-used-schedule`
(the schedule string the status belongs to) and cronwf's own `cronwf.io/last-decided-time`
(the cursor). Controllers rewrite them as they go, cronwf at every decided instant, so they
travel on `StatusSeed` beside the status they qualify, never in `CronWorkflowSpec.annotations`:
a change of either is not a change of the CronWorkflow.

The deprecated single `schedule` field is kept apart from `schedules` instead of being merged
at conversion time: validation has to tell "only the deprecated field" (a warning) from "both
fields" (an error), and the merged view is one property away (`effective_schedules`).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_FAILED_JOBS_HISTORY_LIMIT",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT",
    "LAST_DECIDED_TIME_ANNOTATION",
    "LAST_USED_SCHEDULE_ANNOTATION",
    "STATE_ANNOTATIONS",
    "ConcurrencyPolicy",
    "CronWorkflowSpec",
    "StatusSeed",
    "WorkflowMetadata",
]

DEFAULT_NAMESPACE = "default"
DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT = 3
DEFAULT_FAILED_JOBS_HISTORY_LIMIT = 1

LAST_USED_SCHEDULE_ANNOTATION = "cronworkflows.argoproj.io/last-used-schedule"
"""Argo's record of the schedule string (`GetScheduleWithTimezoneString()`) its cron entries
were last registered with; when it is missing or differs, Argo runs nothing outstanding."""
LAST_DECIDED_TIME_ANNOTATION = "cronwf.io/last-decided-time"
"""cronwf's cursor, RFC 3339 UTC to the second: the last instant decided (spawned, skipped or
recorded missed), where `status.lastScheduledTime` only moves on spawns."""
STATE_ANNOTATIONS = frozenset({LAST_USED_SCHEDULE_ANNOTATION, LAST_DECIDED_TIME_ANNOTATION})


class ConcurrencyPolicy(enum.StrEnum):
    """What a tick does when runs of the same CronWorkflow are still active."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


@dataclass(frozen=True)
class WorkflowMetadata:
    """The parts of `spec.workflowMetadata` that Argo copies onto every spawned Workflow."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusSeed:
    """The CronWorkflow's `status` as found on the object, with the state annotations.

    History normally lives elsewhere; this is what it is seeded from when there is none
    (taking over from Argo's controller, an empty store, or a restart without Redis).
    `policies.decision.seed_history` says how each field is used.
    """

    succeeded: int = 0
    failed: int = 0
    last_scheduled_time: datetime.datetime | None = None
    phase: str = ""
    active: tuple[str, ...] = ()
    last_used_schedule: str | None = None
    """The `cronworkflows.argoproj.io/last-used-schedule` annotation; None when absent."""
    last_decided_time: datetime.datetime | None = None
    """The `cronwf.io/last-decided-time` annotation; None when absent or not a time."""
    last_used_schedule_required: bool = False
    """Whether Argo's reading of a *missing* `last_used_schedule` applies: "the schedule just
    changed", so `last_scheduled_time` does not place the cursor. True for CronWorkflows read
    from the cluster (Kubernetes mode), where Argo's controller may hand them over; False for
    manifests (files, `cronwf simulate`), whose status is taken as written (SIMULATE.md)."""

    def __post_init__(self) -> None:
        for name in ("last_scheduled_time", "last_decided_time"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"StatusSeed.{name} must be timezone-aware")


@dataclass(frozen=True)
class CronWorkflowSpec:
    """One CronWorkflow, as written, in the vocabulary of the policies.

    `schedules` is `spec.schedules` and `deprecated_schedule` is the deprecated single
    `spec.schedule` (`None` when absent). `concurrency_policy` is the raw value: `""` means
    `Allow`, anything else outside `ConcurrencyPolicy` is a validation error. History limits
    left out or negative fall back to Argo's defaults (3 succeeded, 1 failed). `annotations`
    are the object's without the `STATE_ANNOTATIONS`, which `status` carries.
    """

    name: str
    namespace: str = DEFAULT_NAMESPACE
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    schedules: tuple[str, ...] = ()
    deprecated_schedule: str | None = None
    timezone: str = ""
    concurrency_policy: str = ""
    suspend: bool = False
    starting_deadline_seconds: int | None = None
    successful_jobs_history_limit: int = DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT
    failed_jobs_history_limit: int = DEFAULT_FAILED_JOBS_HISTORY_LIMIT
    when: str = ""
    stop_expression: str | None = None
    workflow_metadata: WorkflowMetadata = field(default_factory=WorkflowMetadata)
    workflow_spec: Mapping[str, Any] | None = None
    status: StatusSeed = field(default_factory=StatusSeed)

    def __post_init__(self) -> None:
        # Argo treats a negative limit as "not set", not as "keep nothing".
        if self.successful_jobs_history_limit < 0:
            object.__setattr__(
                self, "successful_jobs_history_limit", DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT
            )
        if self.failed_jobs_history_limit < 0:
            object.__setattr__(self, "failed_jobs_history_limit", DEFAULT_FAILED_JOBS_HISTORY_LIMIT)

    @property
    def key(self) -> str:
        """`namespace/name`: how a CronWorkflow is identified in history, logs and metrics."""
        return f"{self.namespace}/{self.name}"

    @property
    def effective_schedules(self) -> tuple[str, ...]:
        """The schedules the CronWorkflow fires on.

        The deprecated single `schedule` counts only when `schedules` is empty; a spec that
        sets both is invalid anyway.
        """
        if self.schedules:
            return self.schedules
        if self.deprecated_schedule:
            return (self.deprecated_schedule,)
        return ()

    @property
    def concurrency(self) -> ConcurrencyPolicy:
        """The concurrency policy; only meaningful on a spec that passed validation."""
        return ConcurrencyPolicy(self.concurrency_policy or ConcurrencyPolicy.ALLOW)
