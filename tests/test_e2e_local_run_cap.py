"""End-to-end: a fleet whose local runs outnumber the cap never delays or loses a decision.

100 CronWorkflows fire every second and each run sleeps two seconds: 200 runs would be going at
once, with a thread and a supervisor process each before the cap existed (2,000 such
CronWorkflows once made 2,009 threads and missed good instants). With `--max-local-runs 8` and
`--max-waiting-local-runs 50`, the service holds a bounded number of threads, runs at most 8 at
a time, refuses what does not fit in the queue (counted), and still decides every instant of
every CronWorkflow: spawned, none missed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e_support import Record
from test_e2e_serve import (
    FAST_RELOAD,
    NAMESPACE,
    Replicas,
    cron_workflow,
    decisions,
    replicas,
    write_file,
)

__all__ = ["replicas"]  # the fixture, imported for this module's test

pytestmark = pytest.mark.e2e

FLEET = 100
CAP = 8
WAITING = 50
THREADS_AT_MOST = CAP + 40


def test_runs_beyond_the_cap_wait_or_are_refused_and_every_instant_is_still_decided(
    replicas: Replicas, tmp_path: Path
) -> None:
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    fleet = "---\n".join(cron_workflow(f"busy-{i:03d}", script="sleep 2") for i in range(FLEET))
    write_file(manifests / "fleet.yaml", fleet)
    replica = replicas.start(
        "--manifests",
        str(manifests),
        "--state-dir",
        str(state),
        "--max-local-runs",
        str(CAP),
        "--max-waiting-local-runs",
        str(WAITING),
        *FAST_RELOAD,
        identity="solo",
    )
    replicas.ready(replica, leading=True)
    started = time.time()

    threads, running = [], []
    while time.time() < started + 8:
        status = Path(f"/proc/{replica.process.pid}/status").read_text()
        threads.append(int(status.split("Threads:")[1].split()[0]))
        scrape = replica.scrape()
        running.append(scrape.value("cronwf_local_runs", state="running") or 0)
        time.sleep(0.5)
    refused = replica.metric("cronwf_local_runs_refused_total")
    ended = time.time()
    assert replica.stop() == 0

    assert max(threads) <= THREADS_AT_MOST, f"threads over time: {threads}"
    assert max(running) <= CAP, f"runs executing over time: {running}"
    assert max(running) == CAP, "the pool was never full: the test does not load it"
    assert refused is not None
    assert refused > 0, "nothing was refused: the queue was never full"

    window = range(int(started) + 1, int(ended) - 1)
    wrong: dict[str, dict[int, list[str]]] = {}
    for index in range(FLEET):
        key = f"{NAMESPACE}/busy-{index:03d}"
        decided = decisions([replica], key)
        kinds = {t: [_decision(e) for e in decided.get(t, [])] for t in window}
        bad = {t: k for t, k in kinds.items() if k != ["Spawned"]}
        if bad:
            wrong[key] = bad
    assert wrong == {}, f"instants not spawned exactly once: {dict(list(wrong.items())[:5])}"


def _decision(event: Record) -> str:
    """``Spawned``, or another decision with its reason and detail (for the failure message)."""
    if event["event"] == "Spawned":
        return "Spawned"
    return f"{event['event']} {event.get('reason')}: {event.get('detail', '')}".strip()
