"""Kubernetes adapters: the only module that talks to the API server (DESIGN.md §7, §9, §10).

Built like a client-go controller, with the official client:

* :class:`KubeSource` lists and watches CronWorkflows (one namespace or all, filtered by the
  ``workflows.argoproj.io/controller-instanceid`` label exactly as Argo's controller filters,
  so the two can run side by side with different instance ids). It keeps a cache, resumes the
  watch from the last ``resourceVersion`` (bookmarks keep it fresh), relists on ``410 Gone``
  and reconnects with exponential backoff. The runtime polls the cache like it polls files.
  Its specs are marked as under Argo's hand-over rule (a CronWorkflow without the
  ``last-used-schedule`` annotation has just changed schedule: nothing outstanding runs).
* :class:`KubeSink` creates the Workflow of an instant under its deterministic name ("already
  exists" is success) and terminates runs with a merge patch of ``spec.shutdown``.
* :class:`WorkflowWatcher` watches the Workflows labelled ``workflows.argoproj.io/cron-workflow``
  and reports finished, deleted and running runs; it also enforces the history limits.
* :class:`KubeStatus` writes the CronWorkflow's ``status`` (Argo's fields) as a projection of
  the history, by merge patch (Argo's CRD has no status subresource), and emits Events. The
  same patch carries the two state annotations: Argo's ``last-used-schedule``, written as
  Argo writes it, so that Argo handed the object back catches up from ``lastScheduledTime``
  as if it had never left; and cronwf's ``last-decided-time`` (the cursor), so that a restart
  without Redis re-seeds the cursor where it was and decides no instant twice.
* :class:`KubeLease` elects the leader with a ``coordination.k8s.io/v1`` Lease, with
  optimistic concurrency on ``resourceVersion`` and expiry judged by the local clock from when
  a change of the record was last *observed* (client-go's rule, immune to clock skew).

Errors: 5xx, 429, timeouts and connection failures are the world's (retry, lose nothing:
:class:`SinkUnavailable`); other 4xx on create are the user's (:class:`SpawnRejected`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from policies.decision import ErrorReason, History, WorkflowPhase
from policies.spec import (
    LAST_DECIDED_TIME_ANNOTATION,
    LAST_USED_SCHEDULE_ANNOTATION,
    CronWorkflowSpec,
)
from policies.workflow import (
    CRON_WORKFLOW_LABEL,
    INSTANCE_ID_LABEL,
    SCHEDULED_TIME_ANNOTATION,
    render_workflow,
    rfc3339,
)
from scheduler.adapters.local.executor import RunFinished
from scheduler.core.engine import (
    SinkUnavailable,
    SpawnOutcome,
    SpawnRejected,
    spawn_each,
    spawn_outcome,
)
from scheduler.core.events import FileProblem, Snapshot
from scheduler.manifests.loading import LoadedCronWorkflow, ManifestError, Source, load_document

__all__ = [
    "COMPLETED_LABEL",
    "DEFAULT_SPAWN_WORKERS",
    "KubeLease",
    "KubeSink",
    "KubeSource",
    "KubeStatus",
    "WorkflowWatcher",
    "api_client",
    "instance_selector",
]

log = logging.getLogger(__name__)

GROUP = "argoproj.io"
VERSION = "v1alpha1"
CRON_WORKFLOWS = "cronworkflows"
WORKFLOWS = "workflows"
COMPLETED_LABEL = "cronworkflows.argoproj.io/completed"
_FINISHED = {phase.value: phase for phase in WorkflowPhase}
_WATCH_TIMEOUT = 300
_STOP_TIMEOUT = 2.0  # seconds stop() waits for a watch thread (ms, unless a request hangs)
_MERGE_PATCH = "application/merge-patch+json"
DEFAULT_SPAWN_WORKERS = 16
"""Workflows :class:`KubeSink` creates at a time (``serve --spawn-workers``)."""
_OTHER_CONNECTIONS = 8
"""Connections besides the creates: the watches, the Lease, status patches, Events."""


def api_client(
    kubeconfig: str | None = None, spawn_workers: int = DEFAULT_SPAWN_WORKERS
) -> client.ApiClient:
    """An API client: in-cluster when running in a pod, else from a kubeconfig; its
    connection pool keeps a connection for each of ``spawn_workers`` concurrent creates."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise config.ConfigException("a kubeconfig was given")
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize, spawn_workers + _OTHER_CONNECTIONS
    )
    return client.ApiClient(configuration)


def instance_selector(instance_id: str) -> str:
    """Argo's selector: our instance id, or, without one, objects that carry none."""
    return f"{INSTANCE_ID_LABEL}={instance_id}" if instance_id else f"!{INSTANCE_ID_LABEL}"


def _transient(error: Exception) -> bool:
    if isinstance(error, ApiException):
        return error.status in (0, 408, 429) or (error.status or 0) >= 500
    return isinstance(error, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def _message(error: ApiException) -> str:
    body = error.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body.startswith("{"):
        try:
            return str(json.loads(body).get("message") or body)
        except ValueError:
            return body
    return f"{error.status} {error.reason}"


class _Backoff:
    def __init__(self) -> None:
        self.delay = 0.5

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self.delay)
        self.delay = min(self.delay * 2, 30.0)

    def reset(self) -> None:
        self.delay = 0.5


class _Informer:
    """List then watch one resource into a cache of raw objects keyed by ``namespace/name``.

    :meth:`stop` ends the thread and waits for it: once it returns, the informer reports
    nothing more and sends no more requests. A watch blocks in a read until its next event,
    so stop() shuts the socket of the open watch down, which ends that read at once. Who does
    what is decided under ``_guard``: the watching thread registers a watch's response only
    if stop() has not begun (else it closes it at once), and unregisters it before closing
    it; stop() shuts down only a registered response. So a watch whose request was still in
    flight when stop() began ends too, instead of running on until its next event while the
    caller closes the client or the API server; and stop() never shuts down a response that
    the watching thread is done with.
    """

    def __init__(
        self,
        api: client.ApiClient,
        plural: str,
        namespace: str,
        label_selector: str,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._plural = plural
        self._namespace = namespace
        self._selector = label_selector
        self._on_event = on_event
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._guard = threading.Lock()  # _stop's setting and the open watch's (un)registration
        self._response: urllib3.BaseHTTPResponse | None = None  # the open watch's, under _guard
        self._thread = threading.Thread(
            target=self._run, name=f"cronwf-watch-{plural}", daemon=True
        )
        self.synced = threading.Event()
        self.relists = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop watching; return once the thread has ended (at most ``timeout`` seconds: a
        request to an API server that does not answer cannot be interrupted)."""
        with self._guard:
            self._stop.set()
            if self._response is not None:
                _interrupt(self._response)
        thread = self._thread
        if thread.ident is None or thread is threading.current_thread():
            return  # never started, or stopped from one of its own callbacks
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s watch did not stop within %.0fs", self._plural, timeout)

    def objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._cache.values())

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self._cache

    def _list_call(self) -> Callable[..., Any]:
        if self._namespace:
            return lambda **kw: self._custom.list_namespaced_custom_object(
                GROUP, VERSION, self._namespace, self._plural, **kw
            )
        return lambda **kw: self._custom.list_cluster_custom_object(
            GROUP, VERSION, self._plural, **kw
        )

    def _run(self) -> None:
        backoff = _Backoff()
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                backoff.reset()
            except ApiException as error:
                if error.status == 410:
                    log.info("%s watch expired (410 Gone): relisting", self._plural)
                    version = None
                    continue
                log.warning("%s watch failed: %s; retrying", self._plural, _message(error))
                backoff.wait(self._stop)
            except Exception as error:  # connection refused, reset, timeouts
                if self._stop.is_set():
                    return  # the watch was shut down by stop()
                log.warning("%s watch failed: %s; retrying", self._plural, error)
                backoff.wait(self._stop)

    def _relist(self) -> str:
        listing = self._list_call()(label_selector=self._selector)
        items = {self._key(item): item for item in listing.get("items", [])}
        with self._lock:
            gone = set(self._cache) - set(items)
            old = self._cache
            self._cache = items
        self.relists += 1
        self.synced.set()
        if self._on_event is not None:
            for key in gone:
                self._on_event("DELETED", old[key])
            for item in items.values():
                self._on_event("ADDED", item)
        return str(listing.get("metadata", {}).get("resourceVersion", ""))

    def _open(self, version: str) -> urllib3.BaseHTTPResponse | None:
        """Start a watch from ``version``: its streaming response, registered for stop(); or
        None when stop() began meanwhile."""
        response: urllib3.BaseHTTPResponse = self._list_call()(
            label_selector=self._selector,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=_WATCH_TIMEOUT,
            watch=True,
            _preload_content=False,
        )
        with self._guard:
            if not self._stop.is_set():
                self._response = response
                return response
        _close(response)
        return None

    def _watch(self, version: str) -> str:
        """Apply the events of one watch (the official client's framing: one JSON event per
        line) until the server ends it or stop(); returns the version to resume from."""
        response = self._open(version)
        if response is None:
            return version
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    break
                event = _watch_event(line)
                if event is None:
                    continue
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":  # e.g. 410 Expired: the history to resume from is gone
                    reason = f"{obj.get('reason')}: {obj.get('message')}"
                    raise ApiException(status=obj.get("code"), reason=reason)
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                key = self._key(obj)
                with self._lock:
                    if kind == "DELETED":
                        self._cache.pop(key, None)
                    else:
                        self._cache[key] = obj
                if self._on_event is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_event(str(kind), obj)
        finally:
            with self._guard:
                self._response = None
            _close(response)
        return version

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata", {})
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _watch_event(line: str) -> dict[str, Any] | None:
    """One watch event, or None for a blank or undecodable line (as the official client)."""
    if not line or line.isspace():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _interrupt(response: urllib3.BaseHTTPResponse) -> None:
    """End a read blocked on ``response`` from another thread: urllib3 shuts the socket down
    for reading (the reading thread then closes it; closing it here could close another
    socket that reused the descriptor meanwhile)."""
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        response.shutdown()


def _close(response: urllib3.BaseHTTPResponse) -> None:
    """Close a watch's response and give its (closed) connection back to the pool."""
    with contextlib.suppress(Exception):
        response.close()
    with contextlib.suppress(Exception):
        response.release_conn()


class KubeSource:
    """The CronWorkflows of the cluster, as :class:`Snapshot`\\ s like the file source's."""

    def __init__(self, api: client.ApiClient, namespace: str, instance_id: str) -> None:
        self._informer = _Informer(api, CRON_WORKFLOWS, namespace, instance_selector(instance_id))
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
                _content_type=_MERGE_PATCH,
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
        if _transient(error):
            raise SinkUnavailable(f"{what}: {_message(error)}") from None
        raise SpawnRejected(_message(error)) from None
    except Exception as error:
        if _transient(error):
            raise SinkUnavailable(f"{what}: {error}") from None
        raise


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
        self._informer = _Informer(api, WORKFLOWS, namespace, selector, self._event)
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
                        log.warning("could not delete Workflow %s: %s", name, _message(error))
                except Exception as error:
                    log.warning("could not delete Workflow %s: %s", name, error)
        return deleted


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
                _content_type=_MERGE_PATCH,
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


class KubeLease:
    """Leader election with a ``coordination.k8s.io/v1`` Lease (client-go's algorithm).

    ``try_acquire`` takes a free or expired lease and returns a fencing token (the lease's
    transition count, which only grows); ``renew`` keeps it, and fails once no renewal has
    succeeded for ``renew_deadline``; ``release`` hands it over at once on shutdown. Expiry
    is judged from when *we* last saw the record change, never from the holder's clock.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: timedelta = timedelta(seconds=15),
        renew_deadline: timedelta = timedelta(seconds=10),
        retry_period: timedelta = timedelta(seconds=2),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > timedelta(0):
            raise ValueError(
                "lease timings must satisfy lease duration > renew deadline > retry period > 0, "
                f"got {lease_duration.total_seconds():g}s > {renew_deadline.total_seconds():g}s "
                f"> {retry_period.total_seconds():g}s"
            )
        self._api = client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._on_token = on_token
        self._observed: tuple[str, str] | None = None
        self._observed_at = datetime.min.replace(tzinfo=UTC)
        self._last_renewed: datetime | None = None
        self.token: int | None = None

    def _read(self) -> Any:
        try:
            return self._api.read_namespaced_lease(self._name, self._namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _spec(self, transitions: int, acquired: datetime | None) -> dict[str, Any]:
        now = self._clock()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration.total_seconds())),
            "acquireTime": _micro(acquired or now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: Any) -> None:
        spec = lease.spec
        record = (str(spec.holder_identity or ""), str(spec.renew_time or ""))
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()

    def try_acquire(self) -> int | None:
        try:
            return self._try_acquire()
        except ApiException as error:
            if error.status == 409:
                return None  # someone else wrote first
            log.warning("lease %s: %s", self._name, _message(error))
            return None
        except Exception as error:
            log.warning("lease %s unreachable: %s", self._name, error)
            return None

    def _try_acquire(self) -> int | None:
        lease = self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": self._spec(0, None),
            }
            self._api.create_namespaced_lease(self._namespace, client.V1Lease.model_validate(body))
            return self._won(0)
        self._observe(lease)
        holder = lease.spec.holder_identity or ""
        transitions = int(lease.spec.lease_transitions or 0)
        if holder == self.identity:
            self._replace(lease, transitions, lease.spec.acquire_time)
            return self._won(transitions)
        expired = self._clock() >= self._observed_at + _duration(lease, self.lease_duration)
        if holder and not expired:
            return None
        self._replace(lease, transitions + 1, None)
        return self._won(transitions + 1)

    def _replace(self, lease: Any, transitions: int, acquired: datetime | None) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": self._spec(transitions, acquired),
        }
        self._api.replace_namespaced_lease(
            self._name, self._namespace, client.V1Lease.model_validate(body)
        )

    def _won(self, token: int) -> int:
        self.token = token
        self._last_renewed = self._clock()
        if self._on_token is not None:
            self._on_token(token)
        return token

    def renew(self) -> bool:
        if self.token is None:
            return False
        try:
            lease = self._read()
            if lease is None or (lease.spec.holder_identity or "") != self.identity:
                self.token = None
                return False
            self._replace(lease, int(lease.spec.lease_transitions or 0), lease.spec.acquire_time)
            self._last_renewed = self._clock()
            return True
        except ApiException as error:
            if error.status == 409:
                return self._within_deadline()
            log.warning("renewing lease %s: %s", self._name, _message(error))
            return self._within_deadline()
        except Exception as error:
            log.warning("renewing lease %s: %s", self._name, error)
            return self._within_deadline()

    def _within_deadline(self) -> bool:
        if self._last_renewed is None or self._clock() - self._last_renewed > self.renew_deadline:
            self.token = None
            return False
        return True

    def release(self) -> None:
        if self.token is None:
            return
        try:
            lease = self._read()
            if lease is not None and (lease.spec.holder_identity or "") == self.identity:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self._name,
                        "namespace": self._namespace,
                        "resourceVersion": lease.metadata.resource_version,
                    },
                    "spec": {
                        "holderIdentity": "",
                        "leaseDurationSeconds": 1,
                        "leaseTransitions": int(lease.spec.lease_transitions or 0),
                        "renewTime": _micro(self._clock()),
                    },
                }
                self._api.replace_namespaced_lease(
                    self._name, self._namespace, client.V1Lease.model_validate(body)
                )
        except Exception as error:
            log.warning("releasing lease %s: %s", self._name, error)
        self.token = None


def _micro(moment: datetime | Any) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(moment)


def _duration(lease: Any, default: timedelta) -> timedelta:
    seconds = lease.spec.lease_duration_seconds
    return timedelta(seconds=int(seconds)) if seconds else default
