"""Writing a CronWorkflow's ``status`` and Events (DESIGN.md §9, §10).

:class:`KubeStatus` writes the CronWorkflow's ``status`` (Argo's fields) as a projection of
the history, by merge patch (Argo's CRD has no status subresource), and only when it changed
since the last write. The same patch carries the two state annotations: Argo's
``last-used-schedule``, written as Argo writes it, so that Argo handed the object back
catches up from ``lastScheduledTime`` as if it had never left; and cronwf's
``last-decided-time`` (the cursor), so that a restart without Redis re-seeds the cursor where
it was and decides no instant twice. A CronWorkflow whose ``stopStrategy`` stopped it gets
Argo's ``completed`` label.

Events are recorded on the CronWorkflow, best effort: a failure is logged, never raised.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policies.decision import ErrorReason, History
from policies.spec import (
    LAST_DECIDED_TIME_ANNOTATION,
    LAST_USED_SCHEDULE_ANNOTATION,
    CronWorkflowSpec,
)
from policies.workflow import rfc3339
from scheduler.adapters.kube.client import CRON_WORKFLOWS, GROUP, MERGE_PATCH, VERSION

__all__ = ["COMPLETED_LABEL", "KubeStatus"]

log = logging.getLogger(__name__)

COMPLETED_LABEL = "cronworkflows.argoproj.io/completed"
"""Argo's label on a CronWorkflow its ``stopStrategy`` stopped."""


class KubeStatus:
    """Writes CronWorkflow status (a projection of the history) and Events."""

    def __init__(self, api: client.ApiClient, clock: Callable[[], datetime]) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._clock = clock
        self._written: dict[str, dict[str, Any]] = {}

    @staticmethod
    def projection(spec: CronWorkflowSpec, history: History) -> dict[str, Any]:
        """The merge patch for ``spec``'s CronWorkflow; ``active``, ``lastScheduledTime`` and
        ``conditions`` are sent as null when empty, as Argo's controller does.

        ``metadata.annotations`` (merged, so others' annotations stay) carries the cursor as
        ``cronwf.io/last-decided-time`` and, unless the CronWorkflow has a ``SpecError``, the
        schedule string the history follows as ``last-used-schedule``. That string is the
        current one once the engine synced the spec (:meth:`~scheduler.core.engine.Engine.sync`
        adopts a valid spec's schedule and moves the cursor to now when it changed); it is
        taken from the history, not the spec, so that the two annotations always describe
        one another. An invalid CronWorkflow keeps the annotation it has, as with Argo, whose
        controller never runs one. The cursor is written to the second: every instant is on
        a whole second, so the instants at or before the written cursor are the same.
        """
        active = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Workflow",
                "name": name,
                "namespace": spec.namespace,
            }
            for name in history.active
        ]
        conditions = [
            {"type": kind, "status": "True", "message": message}
            for kind, message in sorted(history.conditions.items())
        ]
        patch: dict[str, Any] = {
            "status": {
                "active": active or None,
                "lastScheduledTime": (
                    rfc3339(history.last_scheduled_time) if history.last_scheduled_time else None
                ),
                "conditions": conditions or None,
                "succeeded": history.succeeded,
                "failed": history.failed,
                "phase": history.phase.value or None,
            }
        }
        annotations: dict[str, str] = {}
        if history.signature and ErrorReason.SPEC_ERROR not in history.conditions:
            annotations[LAST_USED_SCHEDULE_ANNOTATION] = history.signature
        if history.cursor is not None:
            annotations[LAST_DECIDED_TIME_ANNOTATION] = rfc3339(history.cursor)
        metadata: dict[str, Any] = {}
        if annotations:
            metadata["annotations"] = annotations
        if history.stopped:
            metadata["labels"] = {COMPLETED_LABEL: "true"}
        if metadata:
            patch["metadata"] = metadata
        return patch

    def write(self, spec: CronWorkflowSpec, history: History) -> bool:
        """Patch the status when it changed since the last write; raises on transient errors."""
        patch = self.projection(spec, history)
        if self._written.get(spec.key) == patch:
            return False
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                spec.namespace,
                CRON_WORKFLOWS,
                spec.name,
                patch,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if error.status == 404:
                return False  # deleted meanwhile
            raise
        self._written[spec.key] = patch
        return True

    def forget(self, key: str) -> None:
        self._written.pop(key, None)

    def event(self, spec: CronWorkflowSpec, reason: str, message: str, warning: bool) -> None:
        """Record a Kubernetes Event on the CronWorkflow (best effort: never raises)."""
        now = self._clock()
        body = {
            "metadata": {
                "name": f"{spec.name}.{uuid.uuid4().hex[:16]}",
                "namespace": spec.namespace,
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "CronWorkflow",
                "name": spec.name,
                "namespace": spec.namespace,
                "uid": spec.uid or None,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "cronwf"},
            "reportingComponent": "cronwf",
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(
                spec.namespace, client.CoreV1Event.model_validate(body)
            )
        except Exception as error:
            log.warning("could not record event %s on %s: %s", reason, spec.key, error)
