"""Creating and terminating Workflows in the cluster (DESIGN.md §7).

:class:`KubeSink` creates the Workflow of an instant under its deterministic name
(:func:`policies.workflow.render_workflow`), so "already exists" (409) is success: the
instant was spawned before. It terminates a run with a merge patch of ``spec.shutdown``, as
``argo terminate`` does; a Workflow gone already (404) is fine, as in Argo.

Errors: 5xx, 429, timeouts and connection failures are the world's (retry, lose nothing:
:class:`SinkUnavailable`); other 4xx on create are the user's (:class:`SpawnRejected`, with
the API server's message).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policies.spec import CronWorkflowSpec
from policies.workflow import render_workflow
from scheduler.adapters.kube.client import (
    DEFAULT_SPAWN_WORKERS,
    GROUP,
    MERGE_PATCH,
    VERSION,
    WORKFLOWS,
    error_message,
    is_transient,
)
from scheduler.core.engine import (
    SinkUnavailable,
    SpawnOutcome,
    SpawnRejected,
    spawn_each,
    spawn_outcome,
)

__all__ = ["KubeSink"]


class KubeSink:
    """Creates and terminates Workflows in the cluster (a :class:`scheduler.core.engine.BatchSink`).

    The Workflows of instants due together are created by up to ``workers`` requests at a
    time: each create waits a round trip to the API server, so one at a time would cap a
    burst at a few hundred a second whatever the CPU.
    """

    def __init__(
        self,
        api: client.ApiClient,
        workflow_instance_id: str = "",
        workers: int = DEFAULT_SPAWN_WORKERS,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._custom = client.CustomObjectsApi(api)
        self._workflow_instance_id = workflow_instance_id
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cronwf-spawn")

    def close(self) -> None:
        """Stop the create threads (creates in flight finish first)."""
        self._pool.shutdown(wait=True)

    def spawn_many(self, spawns: Sequence[tuple[CronWorkflowSpec, datetime]]) -> list[SpawnOutcome]:
        if len(spawns) <= 1:
            return spawn_each(self, spawns)
        unavailable: list[SinkUnavailable] = []

        def attempt(item: tuple[CronWorkflowSpec, datetime]) -> SpawnOutcome:
            if unavailable:  # the API server is unreachable: leave the rest undecided
                return unavailable[0]
            outcome = spawn_outcome(self, *item)
            if isinstance(outcome, SinkUnavailable):
                unavailable.append(outcome)
            return outcome

        futures = []
        for item in spawns:
            try:
                futures.append(self._pool.submit(attempt, item))
            except RuntimeError:  # closed: a tick still finishing while the service stops
                break
        outcomes = [future.result() for future in futures]
        closed = SinkUnavailable("the Kubernetes sink is shutting down")
        return outcomes + [closed] * (len(spawns) - len(outcomes))

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        body = render_workflow(spec, scheduled_at, self._workflow_instance_id)
        with _sink_errors("creating Workflow", fine=409) as outcome:
            self._custom.create_namespaced_custom_object(
                GROUP, VERSION, spec.namespace, WORKFLOWS, body
            )
        return not outcome.fine  # 409: this instant was spawned before, which is success

    def terminate(self, namespace: str, workflow: str) -> None:
        with _sink_errors(f"terminating {workflow}", fine=404):  # gone already: fine, as in Argo
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                WORKFLOWS,
                workflow,
                {"spec": {"shutdown": "Terminate"}},
                _content_type=MERGE_PATCH,
            )


class _Outcome:
    fine = False


@contextlib.contextmanager
def _sink_errors(what: str, fine: int) -> Iterator[_Outcome]:
    """The sink's error rule: ``fine`` is success, transient failures are the world's
    (:class:`SinkUnavailable`), any other refusal is the user's (:class:`SpawnRejected`)."""
    outcome = _Outcome()
    try:
        yield outcome
    except ApiException as error:
        if error.status == fine:
            outcome.fine = True
            return
        if is_transient(error):
            raise SinkUnavailable(f"{what}: {error_message(error)}") from None
        raise SpawnRejected(error_message(error)) from None
    except Exception as error:
        if is_transient(error):
            raise SinkUnavailable(f"{what}: {error}") from None
        raise
