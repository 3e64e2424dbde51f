"""How fast a ``cronwf serve`` replica notices that Redis stopped answering, and is back.

A stopped redis-server refuses connections at once, so every call fails fast; the Redis
outage tests of ``test_e2e_serve.py`` see only that kind. A network partition is silent: the
sockets stay open and nothing answers, so every call lasts as long as the client's timeouts
and retries allow, and the replica keeps reporting the store reachable meanwhile. It must
notice within the lock TTL (the time after which another replica may take the lead), and be
ready again within a couple of seconds of Redis answering.

Here one replica talks to a real redis-server through the proxy of ``tests/redis_proxy.py``,
which freezes its link (``pause()``) or closes it (``cut()``) while the server keeps running.
The measured times are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RedisServer
from e2e_support import Record, Replica, eventually
from redis_proxy import RedisProxy
from test_e2e_serve import cron_workflow

CRONWF = Path(sys.executable).with_name("cronwf")
LOCK_TTL = 15.0
RECOVER_WITHIN = 5.0
PARTITION = 10.0
"""Seconds the silent partition lasts (longer if it takes longer to notice)."""
START_WITHIN = 15.0
"""Seconds for the replica to be ready and leading (Python start-up on a busy machine)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[RedisProxy]:
    """A redis-server of this test alone, behind a proxy."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with RedisProxy("127.0.0.1", server.port) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture
def replica(tmp_path: Path, proxy: RedisProxy) -> Iterator[Replica]:
    """One ``cronwf serve`` on the proxy, ready and leading, that has spawned a run."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "tick.yaml").write_text(cron_workflow("tick", script="true"))
    port, log_path = free_port(), tmp_path / "solo.log"
    command = [str(CRONWF), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--identity", "solo", "--log-format", "json", "--manifests", str(manifests)]
    command += ["--state-dir", str(tmp_path / "state"), "--redis-url", proxy.url]
    command += ["--lock-ttl", f"{LOCK_TTL:g}s"]
    # Flags only: an operator's CRONWF_* variables must not change the test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONWF_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    started = Replica("solo", port, log_path, process)
    try:
        eventually("the replica ready and leading", START_WITHIN, started.is_leader)
        eventually("a run spawned", 5.0, lambda: started.events("default/tick", "Spawned"))
        yield started
        assert started.stop() == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        print(f"----- solo (exit {process.returncode}) -----")
        print(log_path.read_text())


def readiness(replica: Replica) -> tuple[int, Record]:
    state = replica.readiness()
    assert state is not None, "/readyz does not answer"
    return state


def unreachable(replica: Replica) -> tuple[int, Record] | None:
    state = readiness(replica)
    return state if state[1]["storeReachable"] is False else None


def ready(replica: Replica) -> Record | None:
    status, body = readiness(replica)
    return body if status == 200 and body["storeReachable"] is True else None


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_silent_redis_is_reported_within_the_lock_ttl_and_ready_again_within_seconds(
    replica: Replica, proxy: RedisProxy
) -> None:
    proxy.pause()
    paused_at = time.monotonic()
    status, degraded = eventually(
        "/readyz: storeReachable false", LOCK_TTL, lambda: unreachable(replica)
    )
    detection = time.monotonic() - paused_at
    # The partition lasts on, so that recovery probes fail and back off as they would.
    time.sleep(max(0.0, paused_at + PARTITION - time.monotonic()))

    proxy.resume()
    resumed_at = time.monotonic()
    eventually("/readyz: ready, storeReachable true", RECOVER_WITHIN, lambda: ready(replica))
    recovery = time.monotonic() - resumed_at
    eventually("leading again", LOCK_TTL, replica.is_leader)
    leading = time.monotonic() - resumed_at
    print(
        f"silent Redis: detected after {detection:.2f}s, ready {recovery:.2f}s after it "
        f"answered again, leading after {leading:.2f}s"
    )

    assert status == 503
    assert "unreachable" in degraded["storeError"]
    assert detection < LOCK_TTL
    assert recovery < RECOVER_WITHIN


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_connections_cut_while_redis_runs_are_replaced_without_losing_readiness(
    replica: Replica, proxy: RedisProxy
) -> None:
    """A loud partition that heals at once: the clients' retries reconnect, nothing fails."""
    before = proxy.accepted

    proxy.cut()
    cut_at = time.monotonic()
    eventually(
        "a command answered on a new connection",
        RECOVER_WITHIN,
        lambda: any(c.connection > before and c.reply for c in proxy.commands()),
        every=0.01,
    )
    reconnected = time.monotonic() - cut_at
    not_ready: list[float] = []
    while time.monotonic() < cut_at + 2.5:  # two ticks and more
        if ready(replica) is None:
            not_ready.append(time.monotonic() - cut_at)
        time.sleep(0.05)
    lost = ", ".join(f"{t:.2f}s" for t in not_ready) or "never"
    print(
        f"connections cut: a command answered on a new connection after {reconnected:.2f}s "
        f"(the next tick), readiness lost: {lost}"
    )

    assert not_ready == []
    assert replica.is_leader()
    assert replica.events("default/tick", "Error") == []
