"""End-to-end: hostile and mistaken manifests beside good ones never harm the service.

One real ``cronwf serve`` on the embedded store serves two good CronWorkflows firing every
second, while the manifests folder holds, or gains while serving, everything an operator's
mistake or an attacker with write access to that folder could put there:

* names and namespaces no Kubernetes API server would take (braces, NUL, shell code, ``../``,
  300 characters): refused on load, the service starts anyway, nothing is written outside the
  state folder;
* a valid CronWorkflow whose annotations and parameters carry shell code, substituted into an
  ``sh -c`` line: the code is never run (a marker file would appear), the run prints it;
* a YAML alias bomb, added and then edited (the edit once froze the process for most of a
  minute comparing the old and new expanded specs);
* typo'd fields (warned, run) and an expression that errors on every tick (its own instants
  fail, nobody else's);
* hundreds of idle and slow HTTP connections on the service's port.

What must hold: every instant of the good CronWorkflows in the window is spawned, once, none
missed; the service stays ready and answers its probes; its threads and memory stay bounded.
Timing is asserted loosely: what matters is that nothing is missed.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_support import Record
from test_e2e_serve import (
    FAST_RELOAD,
    NAMESPACE,
    Replicas,
    cron_workflow,
    decisions,
    replicas,
    run_logs,
    write_file,
)

__all__ = ["replicas"]  # the fixture, imported for this module's test

pytestmark = pytest.mark.e2e

GOOD = ("good-a", "good-b")
THREADS_AT_MOST = 80
"""Threads of the service process: the timer, workers, HTTP pool and a few runs' waiters."""
RSS_AT_MOST_MB = 400
IDLE_CONNECTIONS = 600
SLOW_CONNECTIONS = 20


def hostile_names(marker: Path) -> str:
    """Documents whose name or namespace the API server refuses: each one a load error."""
    identities = [
        ("{brace}", NAMESPACE),
        ("nul\x00name", NAMESPACE),
        (f"$(touch {marker})", NAMESPACE),
        ("escape", "../../outside"),
        ("absolute", str(marker.parent / "absolute")),
        ("long", "n" * 300),
        ("x" * 300, NAMESPACE),
        ("Upper-Case", NAMESPACE),
    ]
    documents = []
    for name, namespace in identities:
        document = yaml.safe_load(cron_workflow("placeholder", script=f"touch {marker}"))
        document["metadata"] = {"name": name, "namespace": namespace}
        documents.append(yaml.safe_dump(document, sort_keys=False))
    return "---\n".join(documents)


def injection(marker: Path) -> str:
    """A valid CronWorkflow whose annotation and parameter carry shell code, echoed by sh -c."""
    code = f"$(touch {marker}); touch {marker}; `touch {marker}`"
    document: Record = yaml.safe_load(
        cron_workflow(
            "injected",
            script="echo note={{workflow.annotations.note}} p={{workflow.parameters.p}}",
            schedule="@every 2s",
        )
    )
    document["spec"]["workflowMetadata"] = {"annotations": {"note": code}}
    document["spec"]["workflowSpec"]["arguments"] = {"parameters": [{"name": "p", "value": code}]}
    return yaml.safe_dump(document, sort_keys=False)


def alias_bomb(levels: int, tag: str) -> str:
    """A CronWorkflow with a 9-wide alias bomb of ``levels`` levels in an unused field."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    anchors = "\n".join(f"    {line}" for line in lines)
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\n"
        f"metadata: {{name: bomb, namespace: {NAMESPACE}, labels: {{tag: {tag}}}}}\n"
        "spec:\n  schedules: ['@every 1s']\n  workflowSpec:\n    entrypoint: main\n"
        "    templates: [{name: main, container: {image: alpine, command: ['true']}}]\n"
        f"    podMetadata:\n      annotations: {{}}\n    unused:\n{anchors}\n"
    )


def typos() -> str:
    document = yaml.safe_load(cron_workflow("typos", script="true", schedule="@every 5s"))
    document["spec"]["concurrencypolicy"] = "Forbid"
    document["spec"]["startingDeadline"] = 60
    return yaml.safe_dump(document, sort_keys=False)


def failing_expression() -> str:
    document = yaml.safe_load(cron_workflow("unguarded", script="true"))
    document["spec"]["when"] = "{{= (now() - cronworkflow.lastScheduledTime).Seconds() > 1 }}"
    return yaml.safe_dump(document, sort_keys=False)


def process_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


@contextlib.contextmanager
def idle_and_slow_connections(port: int) -> Iterator[list[socket.socket]]:
    """Connections that never send a request, and some that send one a byte at a time."""
    opened: list[socket.socket] = []
    try:
        for index in range(IDLE_CONNECTIONS + SLOW_CONNECTIONS):
            connection = socket.socket()
            connection.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                connection.connect(("127.0.0.1", port))
            if index >= IDLE_CONNECTIONS:
                with contextlib.suppress(OSError):
                    connection.send(b"GET /metrics HTTP/1.1\r\nHost: x")  # never finished
            opened.append(connection)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def test_hostile_manifests_beside_good_ones_leave_every_good_instant_spawned(
    replicas: Replicas, tmp_path: Path
) -> None:
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    marker = tmp_path / "pwned"
    for name in GOOD:
        write_file(manifests / f"{name}.yaml", cron_workflow(name, script=f"echo {name}"))
    write_file(manifests / "hostile-names.yaml", hostile_names(marker))
    write_file(manifests / "injection.yaml", injection(marker))
    write_file(manifests / "typos.yaml", typos())
    write_file(manifests / "unguarded.yaml", failing_expression())

    replica = replicas.start(
        "--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD, identity="solo"
    )
    ready = replicas.ready(replica, leading=True)
    errors = " ".join(error["message"] for error in ready["sourceErrors"])
    assert ready["sourceErrorCount"] >= 8, ready["sourceErrors"]
    assert "RFC 1123" in errors, errors
    started = time.time()

    # A bomb arrives, then is edited: the comparison of old and new must not freeze anything.
    write_file(manifests / "bomb.yaml", alias_bomb(10, "first"))
    time.sleep(1.5)
    write_file(manifests / "bomb.yaml", alias_bomb(10, "second"))

    with idle_and_slow_connections(replica.port):
        time.sleep(2.0)
        health = replica.get("/healthz")
        assert health == (200, "ok\n"), health
        status = process_status(replica.process.pid)
        threads, rss_mb = int(status["Threads"]), int(status["VmRSS"].split()[0]) / 1024
        time.sleep(4.0)
        state_now = replica.readiness()
    assert threads <= THREADS_AT_MOST, f"{threads} threads under {IDLE_CONNECTIONS} connections"
    assert rss_mb <= RSS_AT_MOST_MB, f"RSS {rss_mb:.0f} MB"
    assert state_now is not None
    assert state_now[0] == 200, state_now
    assert state_now[1]["ready"] is True
    # The bomb is refused on load (a file error beside the others), never compared or run.
    assert state_now[1]["sourceErrorCount"] > ready["sourceErrorCount"], state_now[1]

    ended = time.time()
    assert replica.stop() == 0

    # Every whole second of the window was spawned for each good CronWorkflow, none missed.
    window = range(int(started) + 1, int(ended) - 1)
    assert len(window) >= 6, "the window is too short to judge"
    for name in GOOD:
        decided = decisions([replica], f"{NAMESPACE}/{name}")
        kinds = {t: [_decision(e) for e in decided.get(t, [])] for t in window}
        wrong = {t: k for t, k in kinds.items() if k != ["Spawned"]}
        assert wrong == {}, f"{name}: instants not spawned exactly once: {wrong}"
        assert set(window) <= set(run_logs(state, name)), f"{name}: a run log is missing"

    # The shell code carried by the annotation and the parameter never ran; it was printed.
    assert not marker.exists(), "a value substituted into sh -c ran as shell code"
    injected = sorted(run_logs(state, "injected").values())
    assert injected, "the CronWorkflow carrying shell code in its values did not run"
    assert f"touch {marker}" in injected[0].read_text()

    # Nothing was written outside the state folder (the runs, the store).
    outside = {
        path
        for path in files_under(tmp_path)
        if not path.is_relative_to(state) and not path.is_relative_to(manifests)
    }
    assert outside == {tmp_path / "solo.log"}, sorted(outside)

    # The typo'd CronWorkflow ran, with its unknown fields warned about; the unguarded
    # expression failed its own instants only.
    messages = " ".join(replica.messages())
    assert "concurrencypolicy" in messages
    assert "concurrencyPolicy" in messages
    assert run_logs(state, "typos"), "a CronWorkflow with unknown fields must still run"
    unguarded = replica.events(f"{NAMESPACE}/unguarded", "Spawned", "Skipped", "Error")
    assert len(unguarded) >= len(window), "the failing expression's instants were not decided"
    assert {(e["event"], e["reason"]) for e in unguarded} == {("Error", "SubmissionError")}


def _decision(event: Record) -> str:
    """``Spawned``, or another decision with its reason and detail (for the failure message)."""
    if event["event"] == "Spawned":
        return "Spawned"
    return f"{event['event']} {event.get('reason')}: {event.get('detail', '')}".strip()
