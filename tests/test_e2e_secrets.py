"""End to end: a Redis password given to ``cronwf serve`` never shows (issue 12).

With an unreachable Redis the service says so in its log and on ``/readyz``: both name the
server (scheme, user, host, port, database) with the password as ``***``, and a TLS server
as ``rediss://``. Nothing the service prints or serves holds the password.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from e2e_support import eventually
from test_e2e_serve import (
    Replicas,
    cron_workflow,
    replicas,  # noqa: F401  (the fixture)
    write_file,
)

PASSWORD = "hunter2-s3cret"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.e2e
@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_an_unreachable_redis_is_named_in_the_log_and_on_readyz_without_its_password(
    replicas: Replicas,  # noqa: F811
    tmp_path: Path,
    scheme: str,
) -> None:
    port = closed_port()
    write_file(tmp_path / "manifests" / "tick.yaml", cron_workflow("tick", script="true"))
    replica = replicas.start(
        "--manifests",
        str(tmp_path / "manifests"),
        "--state-dir",
        str(tmp_path / "state"),
        "--redis-url",
        f"{scheme}://app:{PASSWORD}@127.0.0.1:{port}/2",
        identity="solo",
    )
    shown = f"{scheme}://app:***@127.0.0.1:{port}/2"

    def unready() -> dict[str, object] | None:
        if replica.process.poll() is not None:
            pytest.fail(f"serve exited with {replica.process.returncode}")
        state = replica.readiness()
        if state is None or state[0] != 503 or state[1]["storeReachable"] is not False:
            return None  # starting: sources not loaded yet, or Redis not tried yet
        return state[1]

    body = eventually("/readyz answers 503, the store unreachable", 15.0, unready)
    assert body["storeReachable"] is False
    assert f"Redis at {shown} is unreachable" in str(body["storeError"])
    metrics = replica.get("/metrics")
    assert metrics is not None
    assert PASSWORD not in metrics[1]
    assert replica.stop() == 0

    log = replica.log_path.read_text()
    assert f"Redis at {shown}" in log
    assert PASSWORD not in log
    assert PASSWORD not in str(body)
