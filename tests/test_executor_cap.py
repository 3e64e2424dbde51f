"""The cap on concurrent local runs (issue 12, item 8).

2,000 ``@every 1s`` CronWorkflows with real runs used to make a thread and a supervisor per
run. Now at most ``max_running`` runs execute, on a pool of as many threads; the others wait
in a bounded FIFO holding no thread, process or open file, and a run spawned when that is full
too ends ``Error`` at once. ``spawn`` never waits for a slot. The runs here hold on a gate file
the test creates, so what is running and what is waiting is known at each step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from executor_support import Completions, wait_until
from prometheus_client import CollectorRegistry

from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec
from policies.workflow import workflow_name
from scheduler.adapters.local.executor import LocalExecutor
from scheduler.telemetry.metrics import Metrics

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def completions() -> Completions:
    return Completions()


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate"


@pytest.fixture
def executor(tmp_path: Path, completions: Completions) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(
        tmp_path / "state", completions, default_timeout=30.0, max_running=2, max_waiting=4
    )
    yield executor
    executor.shutdown(grace=2.0)


def gated(gate: Path, name: str, **extra: Any) -> CronWorkflowSpec:
    """A CronWorkflow whose runs start, say so, and wait for the gate file."""
    command = f"echo started; while [ ! -e {gate} ]; do sleep 0.02; done; echo done"
    return CronWorkflowSpec(
        name=name,
        namespace="batch",
        schedules=("* * * * *",),
        workflow_spec={
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"command": ["sh", "-c", command]}}],
            **extra,
        },
    )


def started(executor: LocalExecutor, spec: CronWorkflowSpec) -> bool:
    path = executor.log_path(spec.namespace, workflow_name(spec.name, T0))
    return "started" in path.read_text().splitlines()


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cronwf-run-")]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_at_the_cap_runs_wait_in_order_hold_no_thread_and_all_finish(
    executor: LocalExecutor,
    completions: Completions,
    gate: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cap 2, 6 runs: 2 run, 4 wait (no thread, no supervisor for them), the metrics say so;
    a 7th finds the queue full and ends ``Error`` at once, naming the flags; when the first
    runs end the waiting ones start, oldest first, and all 6 succeed."""
    caplog.set_level(logging.INFO, logger="scheduler.adapters.local.executor")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.attach_local_runs(executor)
    specs = [gated(gate, f"job{i}") for i in range(6)]

    for spec in specs:
        spent = time.monotonic()
        assert executor.spawn(spec, T0) is True
        assert time.monotonic() - spent < 2.0  # never waits for a slot (loose bound)

    wait_until(lambda: started(executor, specs[0]) and started(executor, specs[1]), "2 runs")
    assert executor.local_runs() == (2, 4, 0)
    assert len(pool_threads()) == 2
    records = sorted(p.name for p in executor.runs_dir.glob("batch/*.supervisor.json"))
    assert records == [f"{workflow_name(s.name, T0)}.supervisor.json" for s in specs[:2]]
    assert not any(started(executor, spec) for spec in specs[2:])
    assert sample(registry, "cronwf_local_runs", state="running") == 2
    assert sample(registry, "cronwf_local_runs", state="waiting") == 4
    assert sample(registry, "cronwf_local_runs_refused_total") == 0
    assert all(executor.spawned_here("batch", workflow_name(s.name, T0)) for s in specs)
    assert sorted(executor.running()) == sorted(("batch", workflow_name(s.name, T0)) for s in specs)

    seventh = gated(gate, "job6")
    assert executor.spawn(seventh, T0) is True
    refused = completions.of(workflow_name("job6", T0))
    assert refused.phase is WorkflowPhase.ERROR
    assert refused.message == (
        "not run: 2 local runs are running and 4 waiting for a slot, the most allowed "
        "(--max-local-runs, --max-waiting-local-runs)"
    )
    assert sample(registry, "cronwf_local_runs_refused_total") == 1
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "local runs: all 2 slots are taken: spawned runs wait for one (--max-local-runs; at "
        "most --max-waiting-local-runs 4 wait)",
        "local runs: 2 running and 4 waiting, the most allowed: 1 spawned runs ended Error "
        "without running (--max-local-runs, --max-waiting-local-runs)",
    ]
    assert executor.local_runs() == (2, 4, 1)

    # The log names the wait once it lasted 0.1 s or more: make sure the last one waited that.
    time.sleep(0.2)
    gate.touch()
    finished = completions.wait(7)
    assert sorted(run.workflow for run in finished if run.phase is WorkflowPhase.SUCCEEDED) == [
        workflow_name(s.name, T0) for s in specs
    ]
    wait_until(lambda: executor.local_runs() == (0, 0, 1), "the pool to empty")
    assert len(pool_threads()) <= 3  # the two workers and the reporter, idle
    log = executor.log_path("batch", workflow_name("job5", T0)).read_text()
    assert "for a local run slot (--max-local-runs 2)" in log


def test_waiting_runs_start_oldest_first(
    tmp_path: Path, completions: Completions, gate: Path
) -> None:
    executor = LocalExecutor(tmp_path / "state", completions, max_running=1, max_waiting=10)
    specs = [gated(gate, f"job{i}") for i in range(4)]
    try:
        for spec in specs:
            executor.spawn(spec, T0)
        gate.touch()
        finished = completions.wait(4)
    finally:
        executor.shutdown(grace=2.0)

    assert [run.workflow for run in finished] == [workflow_name(s.name, T0) for s in specs]


def test_terminating_a_waiting_run_removes_it_and_ends_it_as_terminated(
    executor: LocalExecutor, completions: Completions, gate: Path
) -> None:
    """A ``Replace`` of a waiting run: it leaves the queue, never starts, and is reported
    ``Failed`` like a terminated run; the slot it would have had goes to the next one."""
    specs = [gated(gate, f"job{i}") for i in range(4)]
    for spec in specs:
        executor.spawn(spec, T0)
    wait_until(lambda: executor.local_runs()[0] == 2, "2 runs")
    waiting = workflow_name("job2", T0)

    executor.terminate("batch", waiting)

    run = completions.of(waiting)
    assert (run.phase, run.message) == (
        WorkflowPhase.FAILED,
        "terminated while waiting for a local run slot: it never started",
    )
    assert executor.local_runs() == (2, 1, 0)
    wait_until(lambda: not executor.spawned_here("batch", waiting), "it to be forgotten")
    gate.touch()
    finished = completions.wait(4)
    assert [r.phase for r in finished].count(WorkflowPhase.SUCCEEDED) == 3
    assert "started" not in executor.log_path("batch", waiting).read_text().splitlines()


def test_shutdown_starts_no_waiting_run_and_reports_none_of_them(
    tmp_path: Path, executor: LocalExecutor, completions: Completions, gate: Path
) -> None:
    """Waiting runs end like interrupted ones: not started, not reported, marked so that
    no later start reports them either."""
    specs = [gated(gate, f"job{i}") for i in range(5)]
    for spec in specs:
        executor.spawn(spec, T0)
    wait_until(lambda: started(executor, specs[0]) and started(executor, specs[1]), "2 runs")

    executor.shutdown(grace=2.0)

    assert completions.runs == []
    folder = executor.runs_dir / "batch"
    for spec in specs[2:]:
        name = workflow_name(spec.name, T0)
        assert (folder / f"{name}.interrupted.json").exists()
        assert not (folder / f"{name}.supervisor.json").exists()
        assert "started" not in (folder / f"{name}.log").read_text()
    assert pool_threads() == []
    later = LocalExecutor(tmp_path / "state", completions)
    assert later.recover().reported == ()


def test_the_deadline_counts_from_when_the_run_starts_not_from_its_spawn(
    tmp_path: Path, completions: Completions, gate: Path
) -> None:
    """``activeDeadlineSeconds: 1``: a run that waited longer than that for its slot still
    gets its full second once it starts."""
    executor = LocalExecutor(tmp_path / "state", completions, max_running=1, max_waiting=1)
    first = gated(gate, "first")
    quick = CronWorkflowSpec(
        name="quick",
        namespace="batch",
        schedules=("* * * * *",),
        workflow_spec={
            "entrypoint": "main",
            "activeDeadlineSeconds": 1,
            "templates": [{"name": "main", "container": {"command": ["sleep", "0.3"]}}],
        },
    )
    try:
        executor.spawn(first, T0)
        executor.spawn(quick, T0)
        time.sleep(1.5)  # longer than quick's deadline, while it waits
        gate.touch()
        run = completions.of(workflow_name("quick", T0))
    finally:
        executor.shutdown(grace=2.0)

    assert (run.phase, run.message) == (WorkflowPhase.SUCCEEDED, "exit code 0")


def test_with_no_waiting_room_a_run_beyond_the_cap_is_refused_at_once(
    tmp_path: Path, completions: Completions, gate: Path
) -> None:
    executor = LocalExecutor(tmp_path / "state", completions, max_running=1, max_waiting=0)
    try:
        executor.spawn(gated(gate, "first"), T0)
        executor.spawn(gated(gate, "second"), T0 + timedelta(minutes=1))
        refused = completions.wait(1)[0]
        gate.touch()
        completions.wait(2)
    finally:
        executor.shutdown(grace=2.0)

    assert refused.workflow == workflow_name("second", T0 + timedelta(minutes=1))
    assert refused.phase is WorkflowPhase.ERROR


def test_the_cap_must_be_positive_and_the_waiting_room_not_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_running must be at least 1"):
        LocalExecutor(tmp_path, lambda run: None, max_running=0)
    with pytest.raises(ValueError, match="max_waiting not negative"):
        LocalExecutor(tmp_path, lambda run: None, max_waiting=-1)
