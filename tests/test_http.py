"""HTTP on one port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for the kubelet.

A real :class:`StatusServer` on a free port (port 0), asked with a plain HTTP client: status
codes, content types and bodies are what probes, Prometheus and operators with ``curl`` see.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from scheduler.files import FileProblem
from scheduler.http import SOURCE_ERRORS_SHOWN, Readiness, StatusServer


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
