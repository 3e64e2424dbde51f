"""The CronWorkflows of the cluster, as the runtime's source (DESIGN.md §9).

:class:`KubeSource` keeps an :class:`~scheduler.adapters.kube.client.Informer` of the
CronWorkflows (one namespace or all, of our controller instance id, exactly as Argo's
controller filters them) and turns its cache into :class:`Snapshot`\\ s like the file
source's: the runtime polls it like it polls files. Each object is read as a manifest
document, so a broken CronWorkflow is a :class:`FileProblem` named after the object.

Its specs are marked as under Argo's hand-over rule: a CronWorkflow without the
``last-used-schedule`` annotation has just changed schedule, so nothing outstanding runs (an
object in the cluster may come from Argo's hands). Fields Argo's controller does not know are
ignored as it ignores them, with a warning when they first appear or change.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from kubernetes import client

from policies.spec import CronWorkflowSpec
from scheduler.adapters.kube.client import CRON_WORKFLOWS, Informer, instance_selector
from scheduler.core.events import FileProblem, Snapshot
from scheduler.manifests.loading import LoadedCronWorkflow, ManifestError, Source, load_document

__all__ = ["KubeSource"]

log = logging.getLogger(__name__)


class KubeSource:
    """The CronWorkflows of the cluster, as :class:`Snapshot`\\ s like the file source's."""

    def __init__(self, api: client.ApiClient, namespace: str, instance_id: str) -> None:
        self._informer = Informer(api, CRON_WORKFLOWS, namespace, instance_selector(instance_id))
        self._warned: dict[str, tuple[str, ...]] = {}
        """The unknown fields last logged for each CronWorkflow: logged again only when they
        change, not at every poll."""

    def start(self) -> None:
        self._informer.start()

    def stop(self) -> None:
        self._informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        return self._informer.synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._informer.synced.is_set()

    def poll(self) -> Snapshot:
        cron_workflows: dict[str, CronWorkflowSpec] = {}
        problems: list[FileProblem] = []
        for obj in self._informer.objects():
            meta = obj.get("metadata", {})
            where = f"cronworkflow {meta.get('namespace')}/{meta.get('name')}"
            for loaded in load_document(obj, Source(where, None)).entries:
                if isinstance(loaded, LoadedCronWorkflow):
                    cron_workflows[loaded.key] = _under_argos_schedule_rule(loaded.spec)
                    self._warn_unknown_fields(loaded)
                elif isinstance(loaded, ManifestError):
                    problems.append(FileProblem(where, loaded.messages))
        for key in self._warned.keys() - cron_workflows.keys():
            del self._warned[key]
        return Snapshot(cron_workflows, tuple(problems))

    def _warn_unknown_fields(self, loaded: LoadedCronWorkflow) -> None:
        unknown = loaded.unknown_fields
        if self._warned.get(loaded.key, ()) == unknown:
            return
        self._warned[loaded.key] = unknown
        for message in unknown:
            log.warning(
                "field ignored: CronWorkflow %s: %s; Argo's controller ignores it too, and "
                "cronwf lint reports it",
                loaded.key,
                message,
            )


def _under_argos_schedule_rule(spec: CronWorkflowSpec) -> CronWorkflowSpec:
    """``spec`` with a missing ``last-used-schedule`` meaning "the schedule just changed", as
    Argo's controller reads it: an object in the cluster may come from Argo's hands."""
    return replace(spec, status=replace(spec.status, last_used_schedule_required=True))
