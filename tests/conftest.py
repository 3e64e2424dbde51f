"""Shared fixtures. Redis: the test session runs its own ``redis-server`` on a free port.

Tests never touch a Redis they did not start (in particular not the machine's 6379): every
client is built from a :class:`RedisServer`'s URL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

__all__ = ["RedisServer"]

REDIS_SERVER = shutil.which("redis-server")
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A ``redis-server`` process of our own, on 127.0.0.1 and a free port.

    ``persistent=False`` (the session server): no RDB, no AOF, fast; a restart loses the
    data. ``persistent=True``: an append-only file fsynced on every write in ``directory``, so
    :meth:`stop` then :meth:`start` keeps the data ("Redis restarted") and
    :meth:`start` after :meth:`wipe` loses it ("Redis came back empty").
    """

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        if REDIS_SERVER is None:
            pytest.fail(
                "redis-server is not installed: the Redis tests need a real server "
                "(`make test` installs Debian's redis-server; or apt-get install redis-server)"
            )
        self.directory = directory
        self.persistent = persistent
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart) on the same port and wait until it answers PING."""
        assert REDIS_SERVER is not None
        assert not self.running, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes" if self.persistent else "no",
            "appendfsync": "always",
            "dir": str(self.directory),
            "logfile": str(log),
            "daemonize": "no",
        }
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                *(arg for name, value in options.items() for arg in (f"--{name}", value)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self._process.poll() is not None:
                    text = log.read_text() if log.exists() else "(no log)"
                    pytest.fail(f"redis-server on port {self.port} exited at start:\n{text}")
                try:
                    if probe.ping():
                        return
                except redis.exceptions.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server on port {self.port} did not answer PING")
                time.sleep(0.01)
        finally:
            probe.close()

    def stop(self) -> None:
        """Shut down (SIGTERM: the AOF, when persistent, is complete on disk)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def wipe(self) -> None:
        """Delete the data files of a stopped server: the next start begins empty."""
        assert not self.running, "stop the server before wiping its data"
        for path in self.directory.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "redis.log":
                path.unlink()

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, **options)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One non-persistent redis-server for the whole session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session server, emptied first (FLUSHALL). Replies are bytes
    (``decode_responses=False``), the redis-py default, which the stores must handle."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, with an fsynced AOF, to stop and restart."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    yield server
    server.stop()


# --- Kubernetes API emulator --------------------------------------------------------------
# kmock's KubernetesEmulator extended with the API server's semantics (tests/kube_emulator.py),
# served over HTTP on 127.0.0.1 from a background thread.

from kube_emulator import EmulatorServer  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402


@pytest.fixture
def kube() -> Iterator[EmulatorServer]:
    """A Kubernetes API emulator of this test alone (fresh state), already listening."""
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def kube_client(kube: EmulatorServer) -> Iterator[ApiClient]:
    """An official-client ``ApiClient`` for :func:`kube` (``Configuration(host=kube.url)``)."""
    api = kube.api_client()
    yield api
    api.close()
