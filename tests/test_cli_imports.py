"""Each command imports what it uses: `cronwf lint`, `next` and `simulate` load neither the
runtime nor an adapter, nor any of the client libraries behind them (Kubernetes, Redis,
APScheduler, the HTTP server, Prometheus), so that they start fast and a broken or missing
client cannot break them. Each command runs in a fresh interpreter, which is the only place
where `sys.modules` tells what a command imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "kubernetes",
    "redis",
    "apscheduler",
    "waitress",
    "prometheus_client",
    "fakeredis",
    "scheduler.runtime",
    "scheduler.adapters",
)
COMMANDS = {
    "lint": ["lint", "manifests/examples"],
    "next": ["next", "--from", "2026-03-08T00:00:00Z", "manifests/examples"],
    "simulate": [
        "simulate",
        "--start",
        "2026-03-08T00:00:00Z",
        "--end",
        "2026-03-08T01:00:00Z",
        "manifests/examples",
    ],
}
PROGRAM = """
import contextlib, io, json, sys
from scheduler.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
heavy = {heavy!r}
loaded = sorted(
    name for name in sys.modules if any(name == h or name.startswith(h + ".") for h in heavy)
)
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_command_imports_no_runtime_adapter_or_client(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(heavy=HEAVY), *COMMANDS[command]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)

    assert report["code"] == 0
    assert report["loaded"] == []
