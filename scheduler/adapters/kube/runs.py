"""What happens to the Workflows cronwf spawned: finished, running, deleted (DESIGN.md §9, §10).

:class:`WorkflowWatcher` keeps an :class:`~scheduler.adapters.kube.client.Informer` of the
Workflows labelled ``workflows.argoproj.io/cron-workflow`` (and of our controller instance
id) and reports each to the runtime: a finished one as :class:`RunFinished` (its phase, its
``finishedAt``, its message), a running one as :class:`ObservedRun`, a running one deleted
as such. A Workflow counts for the instant of its ``scheduled-time`` annotation; one without
it (e.g. ``argo submit --from``) is not ours to count. Reports are idempotent: a relist or a
:meth:`~WorkflowWatcher.replay` reports everything again.

It also enforces the history limits: beyond each CronWorkflow's
``successfulJobsHistoryLimit`` and ``failedJobsHistoryLimit``, the oldest finished Workflows
are deleted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec
from policies.workflow import CRON_WORKFLOW_LABEL, SCHEDULED_TIME_ANNOTATION
from scheduler.adapters.kube.client import (
    GROUP,
    VERSION,
    WORKFLOWS,
    Informer,
    error_message,
    instance_selector,
)
from scheduler.adapters.local.executor import RunFinished

__all__ = ["ObservedRun", "WorkflowWatcher"]

log = logging.getLogger(__name__)

_FINISHED = {phase.value: phase for phase in WorkflowPhase}


@dataclass(frozen=True)
class ObservedRun:
    """A Workflow of a CronWorkflow that is still running."""

    key: str
    workflow: str
    scheduled_at: datetime


def _scheduled_at(obj: Mapping[str, Any]) -> datetime | None:
    text = obj.get("metadata", {}).get("annotations", {}).get(SCHEDULED_TIME_ANNOTATION)
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text)).astimezone(UTC)
    except ValueError:
        return None


def _owner_key(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata", {})
    name = meta.get("labels", {}).get(CRON_WORKFLOW_LABEL)
    return f"{meta.get('namespace')}/{name}" if name else None


class WorkflowWatcher:
    """Watches the Workflows spawned for CronWorkflows and reports what happens to them.

    ``instance_id`` is the Argo workflow controller's id written on the Workflows (see
    :func:`policies.workflow.render_workflow`); Workflows of CronWorkflows that cronwf does not
    schedule are seen too, and ignored by the runtime.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        instance_id: str,
        on_finished: Callable[[RunFinished], None],
        on_deleted: Callable[[str, str], None],
        on_running: Callable[[ObservedRun], None],
        clock: Callable[[], datetime],
    ) -> None:
        selector = f"{CRON_WORKFLOW_LABEL},{instance_selector(instance_id)}"
        self._custom = client.CustomObjectsApi(api)
        self._informer = Informer(api, WORKFLOWS, namespace, selector, self._event)
        self._on_finished = on_finished
        self._on_deleted = on_deleted
        self._on_running = on_running
        self._clock = clock

    def start(self) -> None:
        self._informer.start()

    def stop(self) -> None:
        self._informer.stop()

    @property
    def synced(self) -> bool:
        return self._informer.synced.is_set()

    def has(self, namespace: str, name: str) -> bool:
        """Whether the cluster (as last listed and watched) has that Workflow."""
        return self._informer.has(f"{namespace}/{name}")

    def replay(self) -> None:
        """Report every cached Workflow again, as after a relist (reports are idempotent)."""
        for obj in self._informer.objects():
            self._event("ADDED", obj)

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        key = _owner_key(obj)
        name = obj.get("metadata", {}).get("name", "")
        if key is None or not name:
            return
        phase = _FINISHED.get(str(obj.get("status", {}).get("phase", "")))
        if kind == "DELETED":
            if phase is None:
                self._on_deleted(key, name)
            return
        scheduled_at = _scheduled_at(obj)
        if scheduled_at is None:
            return  # not spawned for an instant (e.g. argo submit --from): not ours to count
        if phase is None:
            self._on_running(ObservedRun(key, name, scheduled_at))
            return
        finished = obj.get("status", {}).get("finishedAt")
        finished_at = self._clock()
        if finished:
            with contextlib.suppress(ValueError):
                finished_at = datetime.fromisoformat(str(finished)).astimezone(UTC)
        message = str(obj.get("status", {}).get("message", "") or phase.value)
        self._on_finished(RunFinished(key, name, scheduled_at, phase, finished_at, message))

    def enforce_history_limits(self, specs: Mapping[str, CronWorkflowSpec]) -> int:
        """Delete the oldest finished Workflows beyond each CronWorkflow's limits."""
        finished: dict[tuple[str, bool], list[tuple[str, str, str]]] = {}
        for obj in self._informer.objects():
            key = _owner_key(obj)
            status = obj.get("status", {})
            phase = status.get("phase", "")
            if key is None or key not in specs or phase not in _FINISHED:
                continue
            meta = obj["metadata"]
            entry = (str(status.get("finishedAt", "")), meta["namespace"], meta["name"])
            finished.setdefault((key, phase == "Succeeded"), []).append(entry)
        deleted = 0
        for (key, succeeded), entries in finished.items():
            spec = specs[key]
            keep = (
                spec.successful_jobs_history_limit if succeeded else spec.failed_jobs_history_limit
            )
            for _, namespace, name in sorted(entries, reverse=True)[keep:]:
                try:
                    self._custom.delete_namespaced_custom_object(
                        GROUP, VERSION, namespace, WORKFLOWS, name
                    )
                    deleted += 1
                except ApiException as error:
                    if error.status != 404:
                        log.warning("could not delete Workflow %s: %s", name, error_message(error))
                except Exception as error:
                    log.warning("could not delete Workflow %s: %s", name, error)
        return deleted
