"""The Workflow a CronWorkflow spawns at one scheduled instant (DESIGN.md §7).

The name is ``<cronworkflow name>-<Unix seconds of the scheduled instant>``, never a
``generateName``: the name *is* the instant, so creating the same instant twice answers
"already exists" and cannot produce a second run, whoever tries and however often. Everything
else follows Argo's ``ConvertCronWorkflowToWorkflowWithProperties`` so that tools which read
Argo's labels and annotations keep working.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from policies.spec import CronWorkflowSpec

__all__ = [
    "CREATOR_LABELS",
    "CRON_WORKFLOW_LABEL",
    "INSTANCE_ID_LABEL",
    "SCHEDULED_TIME_ANNOTATION",
    "render_workflow",
    "rfc3339",
    "scheduled_time_of",
    "workflow_annotations",
    "workflow_labels",
    "workflow_name",
]

CRON_WORKFLOW_LABEL = "workflows.argoproj.io/cron-workflow"
INSTANCE_ID_LABEL = "workflows.argoproj.io/controller-instanceid"
SCHEDULED_TIME_ANNOTATION = "workflows.argoproj.io/scheduled-time"
CREATOR_LABELS = (
    "workflows.argoproj.io/creator",
    "workflows.argoproj.io/creator-email",
    "workflows.argoproj.io/creator-preferred-username",
)
API_VERSION = "argoproj.io/v1alpha1"


def rfc3339(t: datetime) -> str:
    """RFC 3339 in UTC to the second (``2026-03-08T09:59:00Z``), as Argo writes times."""
    u = t.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def workflow_name(cron_workflow_name: str, scheduled_at: datetime) -> str:
    """The deterministic name of the Workflow for one instant."""
    return f"{cron_workflow_name}-{int(scheduled_at.timestamp())}"


def scheduled_time_of(cron_workflow_name: str, workflow: str) -> datetime | None:
    """The instant a Workflow of :func:`workflow_name` was spawned for; None when the name is
    not of that form (a Workflow named otherwise)."""
    prefix = f"{cron_workflow_name}-"
    suffix = workflow[len(prefix) :] if workflow.startswith(prefix) else ""
    if not suffix.isdigit() or not suffix.isascii():
        return None
    return datetime.fromtimestamp(int(suffix), UTC)


def workflow_labels(spec: CronWorkflowSpec, instance_id: str | None = None) -> dict[str, str]:
    """The labels of the spawned Workflow (``instance_id`` as for :func:`render_workflow`)."""
    labels = {k: spec.labels[k] for k in CREATOR_LABELS if k in spec.labels}
    if instance_id is None:
        if INSTANCE_ID_LABEL in spec.labels:
            labels[INSTANCE_ID_LABEL] = spec.labels[INSTANCE_ID_LABEL]
    elif instance_id:
        labels[INSTANCE_ID_LABEL] = instance_id
    labels[CRON_WORKFLOW_LABEL] = spec.name
    labels.update(spec.workflow_metadata.labels)
    return labels


def workflow_annotations(spec: CronWorkflowSpec, scheduled_at: datetime) -> dict[str, str]:
    """The annotations of the Workflow spawned for ``scheduled_at``."""
    annotations = {SCHEDULED_TIME_ANNOTATION: rfc3339(scheduled_at)}
    annotations.update(spec.workflow_metadata.annotations)
    return annotations


def render_workflow(
    spec: CronWorkflowSpec, scheduled_at: datetime, instance_id: str | None = None
) -> dict[str, Any]:
    """The Workflow object for ``scheduled_at``, ready to be created.

    ``instance_id`` is the instance id of the Argo workflow controller that must run the
    Workflow: ``None`` copies the CronWorkflow's label, as Argo does (its cron controller and
    its workflow controller share one id); a string sets it, and an empty string sets none.
    cronwf in Kubernetes mode passes a string, because the CronWorkflow's label selects
    *cronwf* while the Workflow's label selects the Argo controller that runs it.
    """
    metadata: dict[str, Any] = {
        "name": workflow_name(spec.name, scheduled_at),
        "namespace": spec.namespace,
        "labels": workflow_labels(spec, instance_id),
        "annotations": workflow_annotations(spec, scheduled_at),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "CronWorkflow",
                "name": spec.name,
                "uid": spec.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if spec.workflow_metadata.finalizers:
        metadata["finalizers"] = list(spec.workflow_metadata.finalizers)
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": metadata,
        # A deep copy: the spec is shared by every run and must never be mutated by a sink.
        "spec": copy.deepcopy(dict(spec.workflow_spec or {})),
    }
