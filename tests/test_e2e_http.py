"""End to end: clients holding the HTTP port of a real ``cronwf serve`` delay no tick.

Issue 12: a thread per connection and no timeout turned 3,000 idle connections into 3,007
threads, and with a 1,024 file handle limit spawns started failing. Here 2,000 idle and 100
slowloris connections (a request trickled a byte at a time) are held against a service with an
``@every 1s`` CronWorkflow: every second is still spawned on time, a fresh ``/healthz`` still
answers, and the process's threads and file handles stay where they were (bounds loose: the
machine is shared).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from pathlib import Path

import pytest
from e2e_support import eventually
from test_e2e_serve import (
    FAST_RELOAD,
    Replicas,
    cron_workflow,
    replicas,  # noqa: F401  (the fixture)
    unix,
    write_file,
)

from scheduler.telemetry.http import CONNECTION_LIMIT

IDLE_CLIENTS = 2_000
SLOW_CLIENTS = 100
HELD_FOR = 8.0
"""Seconds the connections are held while the schedule fires every second."""


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _healthz_seconds(port: int) -> float | None:
    """Seconds for ``GET /healthz`` on a fresh connection; None when it did not answer 200."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: cronwf\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return None
    return time.monotonic() - started if reply.startswith(b"HTTP/1.1 200") else None


@pytest.mark.e2e
def test_thousands_of_idle_and_slow_connections_delay_no_tick_and_add_no_threads(
    replicas: Replicas,  # noqa: F811
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_CLIENTS + SLOW_CLIENTS + 500
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"this test needs {wanted} file handles (ulimit -n), the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="true"))
    replica = replicas.start(
        "--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD, identity="solo"
    )
    replicas.ready(replica, leading=True)
    eventually("a first spawn", 5.0, lambda: replica.events("default/tick", "Spawned"))
    pid = replica.process.pid
    threads_before, fds_before = _proc_status(pid, "Threads"), _fds(pid)

    clients: list[socket.socket] = []
    try:
        held_from = time.time()
        for _ in range(IDLE_CLIENTS + SLOW_CLIENTS):
            with contextlib.suppress(OSError):  # the backlog full for a moment: fine
                clients.append(socket.create_connection(("127.0.0.1", replica.port), timeout=5))
        slow = clients[-SLOW_CLIENTS:]
        request = b"GET /healthz HTTP/1.1\r\nHost: cronwf\r\nX-Slow: " + b"a" * 100
        latencies: list[float | None] = []
        threads_peak, fds_peak = threads_before, fds_before
        sent = 0
        while time.time() < held_from + HELD_FOR:
            for sock in slow:
                with contextlib.suppress(OSError):  # closed by the server: expected
                    sock.send(request[sent : sent + 1])
            sent += 1
            latencies.append(_healthz_seconds(replica.port))
            threads_peak = max(threads_peak, _proc_status(pid, "Threads"))
            fds_peak = max(fds_peak, _fds(pid))
            time.sleep(0.5)
        held_until = time.time()
    finally:
        for sock in clients:
            sock.close()

    assert len(clients) >= IDLE_CLIENTS
    assert all(latency is not None and latency < 2.0 for latency in latencies), latencies
    assert threads_peak <= threads_before + 8, (threads_before, threads_peak)
    assert fds_peak <= fds_before + CONNECTION_LIMIT + 32, (fds_before, fds_peak)

    def spawned_through_the_window() -> set[int] | None:
        spawned = {unix(e["scheduledTime"]) for e in replica.events("default/tick", "Spawned")}
        return spawned if int(held_until) in spawned else None

    spawned = eventually("the window's last instant spawned", 5.0, spawned_through_the_window)
    window = set(range(int(held_from) + 1, int(held_until) + 1))
    assert window <= spawned, f"not spawned: {sorted(window - spawned)}"
    assert not replica.events("default/tick", "Missed")
    lags = replica.metric("cronwf_schedule_lag_seconds_count")
    on_time = replica.metric("cronwf_schedule_lag_seconds_bucket", le="1.0")
    assert lags is not None
    assert on_time == lags, "a spawn came more than a second after its instant"
    assert replica.stop() == 0
