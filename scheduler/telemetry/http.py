"""HTTP on one port: ``/metrics``, ``/healthz`` and ``/readyz``.

Liveness says the process is serving; readiness says whether it can do its job (sources loaded
and listable, store reachable) and reports the leadership state, so ``kubectl describe`` and a
curl tell an operator what is wrong. A standby replica is ready: it is healthy and will take
over; leadership is reported, not required.

A manifest folder that cannot be listed makes the service unready: its CronWorkflows keep
running as they were, but what is added, changed or removed there goes unseen, so the service
no longer follows its sources. A file that fails to load does not: every other CronWorkflow
follows its file, and the broken one keeps its last good definition, as a failed ``kubectl
apply`` changes nothing. Both are listed under ``sourceErrors`` (a few, with the total).

Whoever reaches the port can open connections and hold them: idle, or trickling a request a
byte a second (slowloris). A thread per connection (the standard library's server) turned
3,000 idle connections into 3,007 threads and used up the file handles that local runs need.
So the endpoints are a WSGI application served by waitress: one event loop holds every
connection, a fixed pool of :data:`THREADS` threads answers requests, and at most
:data:`CONNECTION_LIMIT` connections are open at once. waitress alone would stop accepting at
the limit, and a probe would then wait until an idle connection timed out; here, a new
connection at the limit closes the least recently active connection that no thread is
serving, so a fresh probe is answered at once however many clients hold the port. A connection
that has not delivered a whole request within :data:`REQUEST_TIMEOUT` (a slow one) or stays
idle longer than :data:`IDLE_TIMEOUT` is closed. Being WSGI, further pages or an API can be
served on the same port later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from scheduler.core.events import FileProblem

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "CONNECTION_LIMIT",
    "IDLE_TIMEOUT",
    "MAX_REQUEST_BODY",
    "MAX_REQUEST_HEADER",
    "REQUEST_TIMEOUT",
    "SOURCE_ERRORS_SHOWN",
    "THREADS",
    "Readiness",
    "StatusApp",
    "StatusServer",
]

log = logging.getLogger(__name__)

SOURCE_ERRORS_SHOWN = 10
"""``sourceErrors`` lists at most this many (a fleet of broken files would make a huge probe
reply); ``sourceErrorCount`` says how many there are."""

THREADS = 4
"""Threads answering requests: every endpoint answers in milliseconds (``/metrics`` of a large
fleet in a fraction of a second), and a reply is buffered, so a slow reader holds no thread."""

CONNECTION_LIMIT = 64
"""Open connections at most (one file handle each): the kubelet's probes and a few Prometheus
servers need a handful; the rest of the process's file handles stay for runs and Redis."""

IDLE_TIMEOUT = 30
"""Seconds a connection may stay idle between requests (Prometheus reconnects if it waits
longer between scrapes)."""

REQUEST_TIMEOUT = 10
"""Seconds from a connection's opening (or the start of its next request) to a whole
request: a probe sends its request at once; a client trickling one is closed after this."""

MAX_REQUEST_HEADER = 8 * 1024
"""Bytes of request line and headers at most (probes and Prometheus send a few hundred)."""

MAX_REQUEST_BODY = 64 * 1024
"""Bytes of request body at most (the endpoints read none)."""

_NOT_FOUND = b"not found: try /metrics, /healthz or /readyz\n"


@dataclass(frozen=True)
class Readiness:
    """What ``/readyz`` reports."""

    sources_loaded: bool
    store_reachable: bool
    leader: bool
    detail: dict[str, Any]
    sink_working: bool = True
    """False while every recent spawn failed unexpectedly: nothing can be spawned."""
    listing_errors: tuple[FileProblem, ...] = ()
    """Folders (or configured paths) that cannot be listed now: not ready while there is one."""
    file_errors: tuple[FileProblem, ...] = ()
    """Files that fail to load now: reported, no reason to be unready."""

    @property
    def sources_listed(self) -> bool:
        return not self.listing_errors

    @property
    def ready(self) -> bool:
        return (
            self.sources_loaded
            and self.sources_listed
            and self.store_reachable
            and self.sink_working
        )

    def source_errors(self) -> list[dict[str, str]]:
        """Every message of the listing errors, then of the file errors."""
        return [
            {"kind": kind, "file": problem.file, "message": message}
            for kind, problems in (("listing", self.listing_errors), ("file", self.file_errors))
            for problem in problems
            for message in problem.messages
        ]


class StatusApp:
    """The endpoints as a WSGI application."""

    def __init__(self, registry: CollectorRegistry, readiness: Callable[[], Readiness]) -> None:
        self._registry = registry
        self._readiness = readiness

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(
                start_response,
                "405 Method Not Allowed",
                b"only GET and HEAD\n",
                "text/plain",
                [("Allow", "GET, HEAD")],
            )
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return _reply(
                start_response, "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST
            )
        if path == "/healthz":
            return _reply(start_response, "200 OK", b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            state = self._readiness()
            errors = state.source_errors()
            body = {
                "ready": state.ready,
                "sourcesLoaded": state.sources_loaded,
                "sourcesListed": state.sources_listed,
                "storeReachable": state.store_reachable,
                "sinkWorking": state.sink_working,
                "leader": state.leader,
                **state.detail,
                "sourceErrors": errors[:SOURCE_ERRORS_SHOWN],
                "sourceErrorCount": len(errors),
            }
            return _reply(
                start_response,
                "200 OK" if state.ready else "503 Service Unavailable",
                (json.dumps(body, indent=2) + "\n").encode(),
                "application/json",
            )
        return _reply(start_response, "404 Not Found", _NOT_FOUND, "text/plain")


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])],
    )
    return [body]


class _Channel(HTTPChannel):
    """A connection that remembers since when it waits for a whole request."""

    waiting_since: float
    """When the connection opened, or the request now arriving started; 0 while idle after
    a request was answered (the idle timeout applies then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since = self.creation_time

    def received(self, data: bytes) -> bool:
        if data and self.request is None and not self.waiting_since:
            self.waiting_since = time.time()
        return super().received(data)

    def service(self) -> None:
        # Runs in a request thread: the request is whole. A request already arriving behind
        # it (pipelined) is timed from now on, which is later than it began: lenient.
        self.waiting_since = 0.0
        super().service()
        if self.request is not None:
            self.waiting_since = time.time()


class _BoundedServer(TcpWSGIServer):
    """waitress's server, which at its connection limit makes room instead of waiting."""

    channel_class = _Channel
    request_timeout: float = REQUEST_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._making_room = False
        super().__init__(*args, **kwargs)

    def _channels(self) -> list[_Channel]:
        channels: dict[int, _Channel] = self.active_channels  # type: ignore[assignment]
        return list(channels.values())

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = int(now) + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting:
            return False
        channels = self._channels()
        if len(channels) < self.adj.connection_limit:
            if self._making_room and len(channels) < self.adj.connection_limit // 2:
                self._making_room = False
                log.info("HTTP connections back below half the limit")
            return True
        # Every connection busy with a request: wait for one to finish (bounded by the
        # threads' speed), leaving new ones in the listen backlog.
        return any(not channel.requests for channel in channels)

    def handle_accept(self) -> None:
        super().handle_accept()
        channels = self._channels()
        if len(channels) <= self.adj.connection_limit:
            return
        newest = max(channels, key=lambda channel: channel.creation_time)
        idle = [c for c in channels if not c.requests and c is not newest]
        if not idle:
            return
        if not self._making_room:
            self._making_room = True
            log.warning(
                "HTTP connection limit (%d) reached: each new connection closes the least "
                "recently active idle one",
                self.adj.connection_limit,
            )
        min(idle, key=lambda channel: channel.last_activity).handle_close()

    def maintenance(self, now: float) -> None:
        idle_cutoff = now - self.adj.channel_timeout
        request_cutoff = now - self.request_timeout
        for channel in self._channels():
            if channel.requests:
                continue  # a thread is answering it
            waiting = channel.waiting_since
            if channel.last_activity < idle_cutoff or (waiting and waiting < request_cutoff):
                channel.will_close = True


class StatusServer:
    """Serves :class:`StatusApp` on ``host:port`` in a background thread, within the limits
    above (``threads``, ``connection_limit`` and the timeouts may be given for tests)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        *,
        threads: int = THREADS,
        connection_limit: int = CONNECTION_LIMIT,
        idle_timeout: int = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        try:
            adjustments = self._adjustments(host, port, threads, connection_limit, idle_timeout)
        except ValueError:  # waitress's word for a host it cannot resolve
            raise OSError(f"{host!r} is not an address or host name of this machine") from None
        # waitress logs every request that waits for a thread: under a flood, a log line per
        # request. Waiting is bounded by the connection limit here, and expected.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._map: dict[int, Any] = {}
        self._server = _BoundedServer(
            StatusApp(registry, readiness), map=self._map, adj=adjustments
        )
        self._server.request_timeout = request_timeout
        self._thread = threading.Thread(target=self._serve, name="cronwf-http", daemon=True)

    @staticmethod
    def _adjustments(
        host: str, port: int, threads: int, connection_limit: int, idle_timeout: int
    ) -> Adjustments:
        return Adjustments(
            host=host,
            port=port,
            threads=threads,
            connection_limit=connection_limit,
            channel_timeout=idle_timeout,
            cleanup_interval=1,
            max_request_header_size=MAX_REQUEST_HEADER,
            max_request_body_size=MAX_REQUEST_BODY,
            # poll(2), not select(2): select cannot watch a file handle numbered 1,024 or
            # more, which a process with many runs and connections reaches.
            asyncore_use_poll=True,
            ident="cronwf",
            expose_tracebacks=False,
            log_socket_errors=False,
        )

    @property
    def port(self) -> int:
        port: str | int = self._server.effective_port  # type: ignore[attr-defined]
        return int(port)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:
            log.exception("the HTTP server stopped")

    def stop(self) -> None:
        """Close the port and every connection; wait for the request threads (bounded)."""
        if self._thread.is_alive():
            # Closing happens on the loop's thread, which owns the connections: the loop
            # then has nothing left to watch and returns.
            trigger: Any = self._server.trigger  # typed as an int by waitress's stubs
            trigger.pull_trigger(self._close_all)
            self._thread.join(5)
        if not self._thread.is_alive():
            self._close_all()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)

    def _close_all(self) -> None:
        for dispatcher in list(self._map.values()):
            with contextlib.suppress(OSError):
                dispatcher.close()
