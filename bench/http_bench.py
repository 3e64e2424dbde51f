"""What many idle and slow clients do to the HTTP port: threads, file handles, probe latency.

The port serves ``/metrics`` and the kubelet's probes; whoever can reach it can open
connections and leave them idle, or trickle a request one byte a second (slowloris). This
starts a :class:`scheduler.telemetry.http.StatusServer` in a process of its own, opens ``--idle``
idle
connections and ``--slow`` slow ones, then asks ``/healthz`` on fresh connections and reports
the server process's threads and open file handles (from ``/proc``) and the probes' latency.

Run with ``python -m bench.http_bench [--idle 2000] [--slow 200] [--seconds 20]``. Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SERVER = """
import sys, time
from prometheus_client import CollectorRegistry
from scheduler.telemetry.http import Readiness, StatusServer
ready = Readiness(sources_loaded=True, store_reachable=True, leader=True, detail={})
server = StatusServer("127.0.0.1", 0, CollectorRegistry(), lambda: ready)
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads line")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _probe(port: int, timeout: float) -> float | None:
    """Seconds for a fresh connection's ``GET /healthz``; None when it did not answer."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return time.monotonic() - started if response.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    assert server.stdin is not None
    port = int(server.stdout.readline())
    try:
        base = (_threads(server.pid), _fds(server.pid))
        started = time.monotonic()
        with ThreadPoolExecutor(64) as pool:
            opened = [s for s in pool.map(_connect, [port] * (args.idle + args.slow)) if s]
        opening = time.monotonic() - started
        idle, slow = opened[: args.idle], opened[args.idle :]
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        latencies: list[float | None] = []
        peak_threads, peak_fds = base
        deadline = time.monotonic() + args.seconds
        sent = 0
        while time.monotonic() < deadline:
            for sock in slow:
                with contextlib.suppress(OSError):  # closed by the server
                    sock.send(request[sent % len(request) : sent % len(request) + 1])
            sent += 1
            latencies.append(_probe(port, timeout=5))
            peak_threads = max(peak_threads, _threads(server.pid))
            peak_fds = max(peak_fds, _fds(server.pid))
            time.sleep(max(0.0, 1.0 - (latencies[-1] or 0)))
        answered = [latency for latency in latencies if latency is not None]
        print(
            f"connections opened: {len(idle)} idle, {len(slow)} slow (1 byte/s), in {opening:.1f} s"
        )
        print(f"server threads: {base[0]} before, {peak_threads} at peak")
        print(f"server file handles: {base[1]} before, {peak_fds} at peak")
        print(f"probes answered: {len(answered)} of {len(latencies)}")
        if answered:
            print(
                f"probe latency: median {statistics.median(answered) * 1000:.1f} ms, "
                f"max {max(answered) * 1000:.1f} ms"
            )
        for sock in idle + slow:
            sock.close()
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
