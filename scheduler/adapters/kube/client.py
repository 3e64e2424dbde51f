"""The Kubernetes adapters' connection to the API server: the client, its errors, the informer.

Everything here is shared by the other modules of the package and knows no CronWorkflow:

* :func:`api_client` builds the official client: in-cluster when running in a pod, else from a
  kubeconfig, with a connection pool large enough for the concurrent creates of the sink
  (``serve --spawn-workers``) and the few other connections (watches, Lease, status, Events).
* The one error rule (DESIGN.md §7): 5xx, 429, timeouts and connection failures are the
  world's (:func:`is_transient`: retry, lose nothing); other 4xx are the user's, reported
  with the API server's own message (:func:`error_message`).
* :class:`Informer` is built like a client-go informer: it lists one resource (one namespace
  or all, filtered by a label selector), keeps a cache of the raw objects, then watches,
  resuming from the last ``resourceVersion`` (bookmarks keep it fresh); it relists on
  ``410 Gone`` and reconnects with exponential backoff. The source polls its cache; the run
  watcher also takes its events.
* :func:`instance_selector` is Argo's filter on the
  ``workflows.argoproj.io/controller-instanceid`` label, so that cronwf and Argo's
  controller can run side by side with different instance ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from policies.workflow import INSTANCE_ID_LABEL

__all__ = [
    "CRON_WORKFLOWS",
    "DEFAULT_SPAWN_WORKERS",
    "GROUP",
    "MERGE_PATCH",
    "VERSION",
    "WORKFLOWS",
    "Informer",
    "api_client",
    "error_message",
    "instance_selector",
    "is_transient",
]

log = logging.getLogger(__name__)

GROUP = "argoproj.io"
VERSION = "v1alpha1"
CRON_WORKFLOWS = "cronworkflows"
WORKFLOWS = "workflows"
_WATCH_TIMEOUT = 300
_STOP_TIMEOUT = 2.0  # seconds stop() waits for a watch thread (ms, unless a request hangs)
MERGE_PATCH = "application/merge-patch+json"
"""Every patch is a JSON merge patch (custom resources take no strategic merge patch)."""
DEFAULT_SPAWN_WORKERS = 16
"""Workflows :class:`~scheduler.adapters.kube.sink.KubeSink` creates at a time
(``serve --spawn-workers``)."""
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


def is_transient(error: Exception) -> bool:
    """Whether ``error`` is the world's (5xx, 429, 408, timeouts, connection failures): worth
    retrying, as opposed to a refusal of the request itself."""
    if isinstance(error, ApiException):
        return error.status in (0, 408, 429) or (error.status or 0) >= 500
    return isinstance(error, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def error_message(error: ApiException) -> str:
    """The API server's own message for ``error`` (a Status body's ``message``), else its
    status code and reason."""
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


class Informer:
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
                log.warning("%s watch failed: %s; retrying", self._plural, error_message(error))
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
