"""HTTP on one port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for the kubelet.

A real :class:`StatusServer` on a free port (port 0), asked with a plain HTTP client: status
codes, content types and bodies are what probes, Prometheus and operators with ``curl`` see.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import resource
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from scheduler.core.events import FileProblem
from scheduler.telemetry.http import (
    CONNECTION_LIMIT,
    MAX_REQUEST_HEADER,
    SOURCE_ERRORS_SHOWN,
    Readiness,
    StatusServer,
)


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


READY = Readiness(
    sources_loaded=True, store_reachable=True, leader=True, detail={"cronWorkflows": 3}
)


class ReadinessState:
    """The readiness callable, switchable by the test."""

    def __init__(self) -> None:
        self.current = READY
        self.calls = 0

    def reset(self) -> None:
        self.current, self.calls = READY, 0

    def __call__(self) -> Readiness:
        self.calls += 1
        return self.current


@pytest.fixture(scope="module")
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("cronwf_probe_test", "A counter of this test.", registry=registry).inc(3)
    return registry


@pytest.fixture(scope="module")
def shared_readiness() -> ReadinessState:
    return ReadinessState()


@pytest.fixture(autouse=True)
def readiness(shared_readiness: ReadinessState) -> ReadinessState:
    """The server's readiness, reset before each test to ready with no call counted."""
    shared_readiness.reset()
    return shared_readiness


@pytest.fixture(scope="module")
def server(registry: CollectorRegistry, shared_readiness: ReadinessState) -> Iterator[StatusServer]:
    """One server for the module (stopping one takes up to half a second)."""
    server = StatusServer("127.0.0.1", 0, registry, shared_readiness)
    server.start()
    yield server
    server.stop()


def get(server: StatusServer, path: str, method: str = "GET") -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return Reply(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        connection.close()


def test_port_zero_binds_a_free_port(server: StatusServer) -> None:
    assert server.port > 0


def test_metrics_serves_the_registry_in_the_prometheus_text_format(server: StatusServer) -> None:
    reply = get(server, "/metrics")

    assert reply.status == 200
    assert reply.content_type == CONTENT_TYPE_LATEST
    assert b"# HELP cronwf_probe_test_total A counter of this test.\n" in reply.body
    assert b"cronwf_probe_test_total 3.0\n" in reply.body


def test_a_query_string_does_not_change_the_endpoint(server: StatusServer) -> None:
    assert get(server, "/metrics?name[]=cronwf_probe_test_total").status == 200
    assert get(server, "/healthz?verbose").status == 200


def test_healthz_says_the_process_serves(server: StatusServer, readiness: ReadinessState) -> None:
    """Liveness does not depend on readiness: a degraded service is alive, not to be
    restarted."""
    readiness.current = Readiness(
        sources_loaded=False, store_reachable=False, leader=False, detail={}
    )

    reply = get(server, "/healthz")

    assert (reply.status, reply.body) == (200, b"ok\n")
    assert reply.content_type.startswith("text/plain")
    assert readiness.calls == 0


def test_readyz_is_200_with_the_state_when_ready(server: StatusServer) -> None:
    reply = get(server, "/readyz")

    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.json() == {
        "ready": True,
        "sourcesLoaded": True,
        "sourcesListed": True,
        "storeReachable": True,
        "sinkWorking": True,
        "leader": True,
        "cronWorkflows": 3,
        "sourceErrors": [],
        "sourceErrorCount": 0,
    }


def test_a_standby_replica_is_ready(server: StatusServer, readiness: ReadinessState) -> None:
    """Leadership is reported, not required: a standby is healthy and will take over."""
    readiness.current = Readiness(
        sources_loaded=True, store_reachable=True, leader=False, detail={}
    )

    reply = get(server, "/readyz")

    assert reply.status == 200
    assert reply.json() == {
        "ready": True,
        "sourcesLoaded": True,
        "sourcesListed": True,
        "storeReachable": True,
        "sinkWorking": True,
        "leader": False,
        "sourceErrors": [],
        "sourceErrorCount": 0,
    }


@pytest.mark.parametrize(
    ("sources_loaded", "store_reachable"), [(False, True), (True, False), (False, False)]
)
def test_readyz_is_503_with_the_reason_when_not_ready(
    server: StatusServer,
    readiness: ReadinessState,
    sources_loaded: bool,
    store_reachable: bool,
) -> None:
    """Sources not loaded or the store unreachable: 503, and the body says which."""
    readiness.current = Readiness(
        sources_loaded=sources_loaded,
        store_reachable=store_reachable,
        leader=True,
        detail={"storeError": "connection refused"} if not store_reachable else {},
    )

    reply = get(server, "/readyz")

    assert reply.status == 503
    assert reply.content_type == "application/json"
    body = reply.json()
    assert isinstance(body, dict)
    assert body["ready"] is False
    assert body["sourcesLoaded"] is sources_loaded
    assert body["storeReachable"] is store_reachable
    assert ("storeError" in body) is (not store_reachable)


def test_a_folder_that_cannot_be_listed_makes_readyz_503_naming_it(
    server: StatusServer, readiness: ReadinessState
) -> None:
    """Its CronWorkflows keep running as they were, but the service no longer follows what
    changes there: not ready, and the body says which folder and why."""
    readiness.current = replace(
        READY,
        listing_errors=(FileProblem("/manifests/team", ("/manifests/team: cannot list",)),),
        file_errors=(FileProblem("/manifests/a.yaml", ("/manifests/a.yaml: invalid YAML",)),),
    )

    reply = get(server, "/readyz")

    assert reply.status == 503
    body = reply.json()
    assert isinstance(body, dict)
    assert (body["ready"], body["sourcesLoaded"], body["sourcesListed"]) == (False, True, False)
    assert body["sourceErrors"] == [
        {"kind": "listing", "file": "/manifests/team", "message": "/manifests/team: cannot list"},
        {"kind": "file", "file": "/manifests/a.yaml", "message": "/manifests/a.yaml: invalid YAML"},
    ]
    assert body["sourceErrorCount"] == 2


def test_files_that_fail_to_load_are_reported_and_leave_the_service_ready(
    server: StatusServer, readiness: ReadinessState
) -> None:
    """A broken file keeps its last good CronWorkflows and disturbs no other: the service
    still does its job. The reply lists a few of the errors and counts them all."""
    broken = tuple(
        FileProblem(f"/manifests/{index:02d}.yaml", (f"{index:02d}: invalid", f"{index:02d}: bad"))
        for index in range(SOURCE_ERRORS_SHOWN)
    )
    readiness.current = replace(READY, file_errors=broken)

    reply = get(server, "/readyz")

    assert reply.status == 200
    body = reply.json()
    assert isinstance(body, dict)
    assert (body["ready"], body["sourcesListed"]) == (True, True)
    assert len(body["sourceErrors"]) == SOURCE_ERRORS_SHOWN
    assert body["sourceErrors"][:2] == [
        {"kind": "file", "file": "/manifests/00.yaml", "message": "00: invalid"},
        {"kind": "file", "file": "/manifests/00.yaml", "message": "00: bad"},
    ]
    assert body["sourceErrorCount"] == 2 * SOURCE_ERRORS_SHOWN


def test_readyz_asks_the_readiness_callable_at_each_request(
    server: StatusServer, readiness: ReadinessState
) -> None:
    assert get(server, "/readyz").status == 200
    readiness.current = Readiness(
        sources_loaded=True, store_reachable=False, leader=True, detail={}
    )
    assert get(server, "/readyz").status == 503
    assert readiness.calls == 2


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/extra", "/readyz/", "/favicon.ico"])
def test_other_paths_are_404_naming_the_endpoints(server: StatusServer, path: str) -> None:
    reply = get(server, path)

    assert reply.status == 404
    assert reply.body == b"not found: try /metrics, /healthz or /readyz\n"


def test_stop_closes_the_port(registry: CollectorRegistry) -> None:
    server = StatusServer("127.0.0.1", 0, registry, ReadinessState())
    server.start()
    port = server.port
    assert get(server, "/healthz").status == 200

    server.stop()

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        with pytest.raises(ConnectionRefusedError):
            connection.request("GET", "/healthz")
    finally:
        connection.close()


def test_head_answers_like_get_without_a_body(server: StatusServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("HEAD", "/healthz")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"")
        assert response.getheader("Content-Length") == "3"
    finally:
        connection.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405_naming_the_allowed_ones(server: StatusServer, method: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, "/healthz", body=b"")
        response = connection.getresponse()
        assert response.status == 405
        assert response.getheader("Allow") == "GET, HEAD"
    finally:
        connection.close()


def test_the_server_names_itself_cronwf(server: StatusServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().getheader("Server") == "cronwf"
    finally:
        connection.close()


def test_a_host_that_does_not_resolve_is_an_os_error_naming_it(
    registry: CollectorRegistry,
) -> None:
    """The service reports it as "cannot serve on HOST:PORT", not with a traceback."""
    with pytest.raises(OSError, match=r"'no-such-host\.invalid' is not an address"):
        StatusServer("no-such-host.invalid", 0, registry, ReadinessState())


# -- many clients: idle, slow, at the connection limit ---------------------------------------


def _raise_file_limit(wanted: int) -> int:
    """Raise this process's file handle limit towards ``wanted``; return what it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft if soft != resource.RLIM_INFINITY else wanted


def _open(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` within ``within`` seconds (EOF or a reset)."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _keep_alive_get(sock: socket.socket, path: str = "/healthz") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: cronwf\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.endswith(b"ok\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply


class Ticker:
    """Stands for the timer: wakes every 50 ms and records how late each wake-up was."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.wakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        due = time.monotonic() + 0.05
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self.worst = max(self.worst, time.monotonic() - due)
            self.wakes += 1
            due += 0.05

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


IDLE_CLIENTS = 2_000
SLOW_CLIENTS = 100


def test_thousands_of_idle_and_slow_connections_neither_add_threads_nor_delay_a_probe_or_tick(
    registry: CollectorRegistry,
) -> None:
    """Issue 12: 3,000 idle connections made 3,007 threads (a thread per connection, no
    timeout) and used up the file handles. Now 2,000 idle and 100 slowloris connections
    (headers a byte at a time) leave the threads as they were, at most CONNECTION_LIMIT
    connections open on the server's side, a fresh ``/healthz`` answered, and a timer thread
    beside the server on time (bounds loose: the machine is shared)."""
    if _raise_file_limit(IDLE_CLIENTS + SLOW_CLIENTS + 500) < IDLE_CLIENTS + SLOW_CLIENTS + 500:
        pytest.fail("this test needs about 2,600 file handles (ulimit -n)")
    server = StatusServer("127.0.0.1", 0, registry, ReadinessState())
    server.start()
    clients: list[socket.socket] = []
    try:
        with Ticker() as ticker:
            threads_before = threading.active_count()
            clients.extend(_open(server.port) for _ in range(IDLE_CLIENTS))
            slow = [_open(server.port) for _ in range(SLOW_CLIENTS)]
            clients.extend(slow)
            request = b"GET /healthz HTTP/1.1\r\nHost: cronwf\r\n"
            latencies = []
            for index in range(5):
                for sock in slow:
                    with contextlib.suppress(OSError):  # closed to make room: expected
                        sock.send(request[index : index + 1])
                started = time.monotonic()
                assert get(server, "/healthz").status == 200
                latencies.append(time.monotonic() - started)
                assert threading.active_count() <= threads_before
                assert len(server._server.active_channels) <= CONNECTION_LIMIT  # type: ignore[arg-type]
                time.sleep(0.2)
        assert max(latencies) < 2.0, latencies
        assert ticker.wakes > 0
        assert ticker.worst < 1.0, ticker.worst
    finally:
        for sock in clients:
            sock.close()
        server.stop()


def test_at_the_limit_a_new_connection_closes_the_least_recently_active_idle_one(
    registry: CollectorRegistry,
) -> None:
    server = StatusServer("127.0.0.1", 0, registry, ReadinessState(), connection_limit=4)
    server.start()
    clients = [_open(server.port) for _ in range(4)]
    try:
        for sock in clients:  # each answered in turn: the first is the least recently active
            assert _keep_alive_get(sock).endswith(b"ok\n")
            time.sleep(0.02)
        assert _keep_alive_get(clients[0]).endswith(b"ok\n")  # now the second is

        assert get(server, "/healthz").status == 200

        assert _closed_by_server(clients[1], within=2.0)
        for sock in (clients[0], clients[2], clients[3]):
            assert _keep_alive_get(sock).endswith(b"ok\n")
    finally:
        for sock in clients:
            sock.close()
        server.stop()


def test_a_request_trickled_byte_by_byte_is_closed_after_the_request_timeout(
    registry: CollectorRegistry,
) -> None:
    """Slowloris: activity every fraction of a second never makes the connection idle; the
    whole request must arrive within the request timeout."""
    server = StatusServer("127.0.0.1", 0, registry, ReadinessState(), request_timeout=1.0)
    server.start()
    sock = _open(server.port)
    try:
        request = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200
        closed_after = None
        started = time.monotonic()
        for byte in request:
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            if _closed_by_server(sock, within=0.1):
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None, "the slow request was never closed"
        assert 0.9 <= closed_after < 5.0
    finally:
        sock.close()
        server.stop()


def test_a_connection_that_sends_nothing_is_closed_after_the_request_timeout(
    registry: CollectorRegistry,
) -> None:
    server = StatusServer("127.0.0.1", 0, registry, ReadinessState(), request_timeout=1.0)
    server.start()
    sock = _open(server.port)
    try:
        assert _closed_by_server(sock, within=5.0)
    finally:
        sock.close()
        server.stop()


def test_a_kept_alive_connection_is_closed_when_idle_longer_than_the_idle_timeout(
    registry: CollectorRegistry,
) -> None:
    """Between requests the idle timeout applies, not the request timeout: a connection
    answered once stays open past the request timeout, then closes once idle too long."""
    server = StatusServer(
        "127.0.0.1", 0, registry, ReadinessState(), idle_timeout=3, request_timeout=1.0
    )
    server.start()
    sock = _open(server.port)
    try:
        assert _keep_alive_get(sock).endswith(b"ok\n")
        assert not _closed_by_server(sock, within=2.0)
        assert _closed_by_server(sock, within=5.0)
    finally:
        sock.close()
        server.stop()


def test_a_request_header_over_the_limit_is_refused(server: StatusServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.putrequest("GET", "/healthz")
        connection.putheader("X-Big", "a" * (MAX_REQUEST_HEADER + 1))
        connection.endheaders()
        assert connection.getresponse().status == 431
    finally:
        connection.close()


def test_requests_waiting_for_a_thread_are_not_logged_one_by_one(
    server: StatusServer, caplog: pytest.LogCaptureFixture
) -> None:
    """waitress logs a warning per request that waits for a thread: under a flood, a log
    line per request. Waiting is bounded by the connection limit, and expected."""
    clients = [_open(server.port) for _ in range(40)]
    try:
        with caplog.at_level(logging.WARNING):
            for sock in clients:  # all sent before any is read: most wait for a thread
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: cronwf\r\n\r\n")
            for sock in clients:
                sock.settimeout(5)
                assert sock.recv(12) == b"HTTP/1.1 200"
        assert not [r for r in caplog.records if r.name.startswith("waitress")]
    finally:
        for sock in clients:
            sock.close()
