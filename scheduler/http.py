"""HTTP on one port: ``/metrics``, ``/healthz`` and ``/readyz``.

One small threaded server from the standard library: the endpoints are read by Prometheus and
by the kubelet's probes, a few requests a second at most, so a framework would add weight and
nothing else. Liveness says the process is serving; readiness says whether it can do its job
(sources loaded and listable, store reachable) and reports the leadership state, so ``kubectl
describe`` and a curl tell an operator what is wrong. A standby replica is ready: it is
healthy and will take over; leadership is reported, not required.

A manifest folder that cannot be listed makes the service unready: its CronWorkflows keep
running as they were, but what is added, changed or removed there goes unseen, so the service
no longer follows its sources. A file that fails to load does not: every other CronWorkflow
follows its file, and the broken one keeps its last good definition, as a failed ``kubectl
apply`` changes nothing. Both are listed under ``sourceErrors`` (a few, with the total).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from scheduler.files import FileProblem

__all__ = ["SOURCE_ERRORS_SHOWN", "Readiness", "StatusServer"]

log = logging.getLogger(__name__)

SOURCE_ERRORS_SHOWN = 10
"""``sourceErrors`` lists at most this many (a fleet of broken files would make a huge probe
reply); ``sourceErrorCount`` says how many there are."""


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


class StatusServer:
    """Serves the three endpoints on ``host:port`` in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
    ) -> None:
        registry_ = registry
        readiness_ = readiness

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    state = readiness_()
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
                    self._send(
                        200 if state.ready else 503,
                        (json.dumps(body, indent=2) + "\n").encode(),
                        "application/json",
                    )
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="cronwf-http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: only if it runs
            self._server.shutdown()
        self._server.server_close()
