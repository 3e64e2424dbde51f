"""The local executor of embedded mode (DESIGN §10): a trial runner, not a workflow engine.

A spawned Workflow whose entrypoint is a ``container`` or ``script`` template runs as a local
subprocess; its exit code gives ``Succeeded`` or ``Failed``; anything else ends ``Error`` with
a message that says why. The log file of a run is also the record that its instant was
spawned, so spawning the same instant again is "already exists", even across restarts.

Runs are real subprocesses (``sh``, ``sleep``), each under its supervisor process.
Completions arrive on the executor's threads through the ``on_finished`` callback; the tests
collect them and wait with bounded timeouts. A run outlives the cronwf process that started
it: the death of cronwf is a child Python process holding an executor, killed with SIGKILL
mid-run; another executor on the same state folder then recovers the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from executor_support import BOUND, Completions, wait_until

import scheduler.adapters.local.executor
from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec
from policies.workflow import workflow_name
from scheduler.adapters.local.executor import (
    LocalExecutor,
    LocalRun,
    Recovered,
    RunFinished,
    plan_run,
)
from scheduler.adapters.local.supervisor import Record, read_record, supervisor_alive
from scheduler.core.engine import SinkUnavailable, SpawnRejected

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FINISHED_AT = datetime(2026, 3, 2, 9, 0, 7, tzinfo=UTC)


def container(*argv: str, **extra: Any) -> dict[str, Any]:
    """A workflowSpec whose entrypoint runs ``argv`` as a container template."""
    return {
        "entrypoint": "main",
        "templates": [
            {"name": "main", "container": {"image": "alpine:3.20", "command": list(argv), **extra}}
        ],
    }


def shell(script: str, **extra: Any) -> dict[str, Any]:
    return container("sh", "-c", script, **extra)


def make_spec(workflow_spec: Mapping[str, Any] | None, name: str = "job") -> CronWorkflowSpec:
    return CronWorkflowSpec(
        name=name,
        namespace="batch",
        schedules=("*/5 * * * *",),
        workflow_spec=workflow_spec,
    )


@pytest.fixture
def completions() -> Completions:
    return Completions()


@pytest.fixture
def executor(tmp_path: Path, completions: Completions) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(
        tmp_path / "state", completions, default_timeout=30.0, clock=lambda: FINISHED_AT
    )
    yield executor
    executor.shutdown(grace=2.0)


def log_text(executor: LocalExecutor, spec: CronWorkflowSpec, at: datetime = T0) -> str:
    return executor.log_path(spec.namespace, workflow_name(spec.name, at)).read_text()


# --------------------------------------------------------------------------------------------
# What runs, and how it ends


def test_container_runs_command_and_args_and_succeeds(
    executor: LocalExecutor, completions: Completions
) -> None:
    """``command`` + ``args`` run on this host; exit 0 is ``Succeeded``, reported once with the
    Workflow's name, instant and its end time on the executor's clock (the supervisor's end
    time, as long before the executor's "now" as the run ended before the report); the log
    holds the header, the command line, the output and the outcome."""
    spec = make_spec(container("sh", "-c", args=["echo hi"]))

    assert executor.spawn(spec, T0) is True

    run = completions.one()
    assert FINISHED_AT - timedelta(seconds=1) < run.finished_at <= FINISHED_AT
    assert replace(run, finished_at=FINISHED_AT) == RunFinished(
        key="batch/job",
        workflow=f"job-{int(T0.timestamp())}",
        scheduled_at=T0,
        phase=WorkflowPhase.SUCCEEDED,
        finished_at=FINISHED_AT,
        message="exit code 0",
    )
    assert log_text(executor, spec).splitlines() == [
        "# cronwf local executor (a trial runner, not a workflow engine)",
        f"# workflow batch/job-{int(T0.timestamp())} of batch/job, scheduled 2026-03-02T09:00:00Z",
        "# $ sh -c 'echo hi'",
        "hi",
        "# Succeeded: exit code 0",
    ]


def test_the_log_lives_under_the_state_dir_by_namespace_and_workflow(
    tmp_path: Path, executor: LocalExecutor, completions: Completions
) -> None:
    """``<state>/runs/<namespace>/<workflow>.log``: one file per spawned Workflow."""
    executor.spawn(make_spec(shell("true")), T0)
    completions.one()

    expected = tmp_path / "state" / "runs" / "batch" / f"job-{int(T0.timestamp())}.log"
    assert executor.log_path("batch", f"job-{int(T0.timestamp())}") == expected
    assert expected.is_file()


def test_a_nonzero_exit_code_fails_the_run(
    executor: LocalExecutor, completions: Completions
) -> None:
    """Any exit code but 0 is ``Failed``, and the message gives the code; stderr is logged."""
    spec = make_spec(shell("echo broken >&2; exit 1"))

    executor.spawn(spec, T0)

    run = completions.one()
    assert (run.phase, run.message) == (WorkflowPhase.FAILED, "exit code 1")
    log = log_text(executor, spec)
    assert "broken\n" in log
    assert log.endswith("# Failed: exit code 1\n")


def test_a_script_template_runs_its_source_through_its_command(
    executor: LocalExecutor, completions: Completions
) -> None:
    """``script``: the ``source`` is written to a file passed to ``command``."""
    spec = make_spec(
        {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "script": {
                        "image": "alpine:3.20",
                        "command": ["sh"],
                        "source": "echo from script\necho as {{workflow.name}}\n",
                    },
                }
            ],
        }
    )

    executor.spawn(spec, T0)

    run = completions.one()
    assert (run.phase, run.message) == (WorkflowPhase.SUCCEEDED, "exit code 0")
    log = log_text(executor, spec)
    assert "from script\n" in log
    assert f"as job-{int(T0.timestamp())}\n" in log


def test_a_script_without_command_runs_with_sh(
    executor: LocalExecutor, completions: Completions
) -> None:
    """A ``script`` template that names no command runs its source with ``sh``."""
    spec = make_spec(
        {
            "entrypoint": "main",
            "templates": [{"name": "main", "script": {"image": "x", "source": "exit 3"}}],
        }
    )

    executor.spawn(spec, T0)

    assert completions.one().message == "exit code 3"


def test_env_values_are_passed_and_value_from_is_left_out(
    executor: LocalExecutor, completions: Completions
) -> None:
    """``env`` entries with a ``value`` reach the process (substituted); ``valueFrom`` entries
    (secrets, config maps) cannot be resolved locally and are not set."""
    spec = make_spec(
        shell(
            'echo "greeting=$GREETING run=$RUN secret=${SECRET-unset}"',
            env=[
                {"name": "GREETING", "value": "hello world"},
                {"name": "RUN", "value": "{{workflow.name}}"},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
        )
    )

    executor.spawn(spec, T0)

    assert completions.one().phase is WorkflowPhase.SUCCEEDED
    expected = f"greeting=hello world run=job-{int(T0.timestamp())} secret=unset\n"
    assert expected in log_text(executor, spec)


def test_workflow_variables_are_substituted_in_the_command_line(
    executor: LocalExecutor, completions: Completions
) -> None:
    """``{{workflow.name}}``, ``{{workflow.namespace}}`` and ``{{workflow.scheduledTime}}``
    (RFC 3339, UTC) are replaced, with or without spaces inside the braces; other
    placeholders are left as written."""
    spec = make_spec(
        shell(
            "echo name={{workflow.name}} ns={{ workflow.namespace }} "
            "at={{workflow.scheduledTime}} other={{inputs.parameters.x}}"
        )
    )
    at = T0 + timedelta(minutes=5)

    executor.spawn(spec, at)

    assert completions.one().phase is WorkflowPhase.SUCCEEDED
    expected = (
        f"name=job-{int(at.timestamp())} ns=batch at=2026-03-02T09:05:00Z "
        "other={{inputs.parameters.x}}\n"
    )
    assert expected in log_text(executor, spec, at)


def test_active_deadline_seconds_times_the_run_out(
    executor: LocalExecutor, completions: Completions
) -> None:
    """A run longer than the Workflow's ``activeDeadlineSeconds`` is killed and ``Failed``."""
    spec = make_spec({**container("sleep", "30"), "activeDeadlineSeconds": 1})
    started = time.monotonic()

    executor.spawn(spec, T0)

    run = completions.one()
    assert (run.phase, run.message) == (WorkflowPhase.FAILED, "timed out after 1s")
    assert time.monotonic() - started < 4
    assert executor.running() == []


def test_an_unknown_command_cannot_start(executor: LocalExecutor, completions: Completions) -> None:
    """A command that does not exist on this host fails the run, saying which and why."""
    spec = make_spec(container("cronwf-no-such-command", "--flag"))

    executor.spawn(spec, T0)

    run = completions.one()
    assert run.phase is WorkflowPhase.FAILED
    assert run.message == "cannot start 'cronwf-no-such-command': No such file or directory"
    assert log_text(executor, spec).endswith(f"# Failed: {run.message}\n")


@pytest.mark.parametrize(
    ("template", "kind"),
    [
        ({"steps": [[{"name": "a", "template": "b"}]]}, "steps"),
        ({"dag": {"tasks": [{"name": "a", "template": "b"}]}}, "dag"),
        ({"resource": {"action": "create", "manifest": "{}"}}, "resource"),
    ],
)
def test_other_entrypoints_end_in_error_with_a_clear_message(
    executor: LocalExecutor, completions: Completions, template: dict[str, Any], kind: str
) -> None:
    """Steps, DAG, resource...: the local executor runs only container and script templates;
    the run ends ``Error`` saying so and pointing to Kubernetes mode."""
    spec = make_spec({"entrypoint": "main", "templates": [{"name": "main", **template}]})

    assert executor.spawn(spec, T0) is True

    run = completions.one()
    assert run.phase is WorkflowPhase.ERROR
    assert run.message == (
        f"template 'main' is not a container or script template ({kind}); the local executor "
        "runs only those: use Kubernetes mode for the rest"
    )
    assert log_text(executor, spec).endswith(f"# Error: {run.message}\n")


@pytest.mark.parametrize(
    ("workflow_spec", "message"),
    [
        (
            {"workflowTemplateRef": {"name": "shared"}},
            "entrypoint None is not a template of this Workflow (workflowTemplateRef is not "
            "supported by the local executor)",
        ),
        (
            {"entrypoint": "absent", "templates": [{"name": "main", "container": {}}]},
            "entrypoint 'absent' is not a template of this Workflow (workflowTemplateRef is not "
            "supported by the local executor)",
        ),
        (
            {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "x"}}]},
            "template 'main' has no command: the local executor does not know the image's "
            "entrypoint; set command (and args)",
        ),
    ],
    ids=["workflow-template-ref", "missing-entrypoint", "no-command"],
)
def test_unrunnable_workflows_end_in_error(
    executor: LocalExecutor,
    completions: Completions,
    workflow_spec: dict[str, Any],
    message: str,
) -> None:
    """What the executor cannot run is an ``Error`` with the reason, never a crash."""
    executor.spawn(make_spec(workflow_spec), T0)

    run = completions.one()
    assert (run.phase, run.message) == (WorkflowPhase.ERROR, message)


# --------------------------------------------------------------------------------------------
# The plan of a run


def test_the_plan_takes_the_deadline_from_the_workflow_then_the_template_then_the_default() -> None:
    """``activeDeadlineSeconds`` of the Workflow wins, then the template's, then the
    executor's default timeout."""
    workflow_level = {**container("true"), "activeDeadlineSeconds": 7}
    template_level = container("true")
    template_level["templates"][0]["activeDeadlineSeconds"] = 9

    assert plan_run(make_spec(workflow_level), T0, 600.0).timeout == 7.0
    assert plan_run(make_spec(template_level), T0, 600.0).timeout == 9.0
    assert plan_run(make_spec(container("true")), T0, 600.0).timeout == 600.0


def test_the_plan_of_a_script_appends_the_script_file_after_command_and_args() -> None:
    """Script templates: ``command`` + ``args``; the executor appends the script's path."""
    spec = make_spec(
        {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "script": {
                        "command": ["python3"],
                        "args": ["-u"],
                        "source": "print('{{workflow.scheduledTime}}')",
                        "env": [{"name": "A", "value": "1"}],
                    },
                }
            ],
        }
    )

    assert plan_run(spec, T0, 600.0) == LocalRun(
        argv=("python3", "-u"),
        env={"A": "1"},
        timeout=600.0,
        script="print('2026-03-02T09:00:00Z')",
    )


# --------------------------------------------------------------------------------------------
# Spawning an instant once


def test_spawning_the_same_instant_twice_is_already_exists(
    tmp_path: Path, executor: LocalExecutor, completions: Completions
) -> None:
    """The second spawn of one instant returns False and runs nothing; so does a new executor
    on the same state dir (a restart): the log file is the record of the spawn."""
    spec = make_spec(shell("echo once"))

    assert executor.spawn(spec, T0) is True
    assert executor.spawn(spec, T0) is False
    completions.one()

    restarted = LocalExecutor(tmp_path / "state", completions, default_timeout=30.0)
    try:
        assert restarted.spawn(spec, T0) is False
        assert restarted.running() == []
    finally:
        restarted.shutdown(grace=2.0)
    assert len(completions.runs) == 1
    assert log_text(executor, spec).count("once\n") == 1


def test_another_instant_or_cron_workflow_is_a_new_workflow(
    executor: LocalExecutor, completions: Completions
) -> None:
    """Names are per CronWorkflow and instant: each distinct pair runs."""
    later = T0 + timedelta(minutes=5)

    assert executor.spawn(make_spec(shell("true")), T0) is True
    assert executor.spawn(make_spec(shell("true")), later) is True
    assert executor.spawn(make_spec(shell("true"), name="other"), T0) is True

    runs = completions.wait(3)
    assert sorted(run.workflow for run in runs) == sorted(
        [
            f"job-{int(T0.timestamp())}",
            f"job-{int(later.timestamp())}",
            f"other-{int(T0.timestamp())}",
        ]
    )


# --------------------------------------------------------------------------------------------
# Stopping runs


def started(executor: LocalExecutor, spec: CronWorkflowSpec) -> Callable[[], bool]:
    """True once the run's shell wrote ``started`` to its log."""
    path = executor.log_path(spec.namespace, workflow_name(spec.name, T0))
    return lambda: path.exists() and "started" in path.read_text().splitlines()


def test_terminate_kills_a_running_run(executor: LocalExecutor, completions: Completions) -> None:
    """``terminate`` (Replace) signals the run's process group: it ends ``Failed``, killed by
    SIGTERM, children of ``sh -c`` included."""
    spec = make_spec(shell("echo started; sleep 30; echo survived"))
    executor.spawn(spec, T0)
    wait_until(started(executor, spec), "the run to start")
    workflow = workflow_name(spec.name, T0)

    # The process may be registered a moment after its first output: repeat until reported.
    deadline = time.monotonic() + BOUND
    while not completions.runs and time.monotonic() < deadline:
        executor.terminate("batch", workflow)
        time.sleep(0.05)

    run = completions.one()
    assert (run.phase, run.message) == (WorkflowPhase.FAILED, "killed by signal 15")
    assert "survived" not in log_text(executor, spec).splitlines()
    assert executor.running() == []


def test_terminate_of_a_run_whose_process_is_not_started_yet_still_stops_it(
    executor: LocalExecutor, completions: Completions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawned run is active from the moment ``spawn`` returns, so a Replace tick may
    terminate it before its subprocess exists. Pins a bug: ``terminate`` only signals a
    process already registered, so such a run is not stopped and runs to completion."""
    entered, release = threading.Event(), threading.Event()
    real_plan_run = scheduler.adapters.local.executor.plan_run

    def plan_run_after_release(*args: Any) -> LocalRun:
        entered.set()
        release.wait(BOUND)
        return real_plan_run(*args)

    monkeypatch.setattr(scheduler.adapters.local.executor, "plan_run", plan_run_after_release)
    spec = make_spec(shell("sleep 1.5; echo survived"))
    executor.spawn(spec, T0)
    assert entered.wait(BOUND)

    executor.terminate("batch", workflow_name(spec.name, T0))
    release.set()

    run = completions.one()
    assert run.phase is WorkflowPhase.FAILED, f"the terminated run ended {run.message!r}"
    assert "survived" not in log_text(executor, spec).splitlines()


def test_terminate_of_an_unknown_or_finished_run_is_harmless(
    executor: LocalExecutor, completions: Completions
) -> None:
    """Terminating a run that is gone or never existed does nothing (the Sink contract)."""
    spec = make_spec(shell("true"))
    executor.spawn(spec, T0)
    completions.one()

    executor.terminate("batch", workflow_name(spec.name, T0))
    executor.terminate("batch", "never-spawned-1")

    assert len(completions.runs) == 1


def test_shutdown_interrupts_runs_without_reporting_them(
    executor: LocalExecutor, completions: Completions
) -> None:
    """``shutdown`` stops every run in progress and reports none of them: the scheduler
    stopped them, they did not fail, so they are not counted. The log says how each ended."""
    spec = make_spec(shell("echo started; sleep 30"))
    executor.spawn(spec, T0)
    wait_until(started(executor, spec), "the run to start")
    assert executor.running() == [("batch", workflow_name(spec.name, T0))]
    began = time.monotonic()

    executor.shutdown(grace=2.0)

    assert time.monotonic() - began < 2.0
    assert executor.running() == []
    assert completions.runs == []
    assert log_text(executor, spec).endswith("# Failed: killed by signal 15\n")


def test_a_run_spawned_after_shutdown_is_not_reported_as_failed(
    tmp_path: Path, completions: Completions
) -> None:
    """After ``shutdown`` nothing keeps running, and a run the executor itself kills is not a
    failure of the CronWorkflow. Pins a bug: a spawn that arrives after ``shutdown`` (a tick
    still in flight when ``Service.shutdown`` stops the timer without waiting) is killed as it
    starts and then reported ``Failed``, so the engine counts a failure nobody caused."""
    executor = LocalExecutor(tmp_path / "state", completions, default_timeout=30.0)
    executor.shutdown(grace=1.0)
    spec = make_spec(shell("sleep 30"))
    path = executor.log_path("batch", workflow_name(spec.name, T0))

    try:
        spawned = executor.spawn(spec, T0)
    except SinkUnavailable:
        spawned = False  # refusing the spawn is as good: the instant stays undecided

    if spawned:
        wait_until(lambda: "# Failed" in path.read_text(), "the late run to be stopped")
    wait_until(lambda: executor.running() == [], "the run's thread to end")
    assert completions.runs == []


# --------------------------------------------------------------------------------------------
# Spawning fails cleanly


class UnstartableThread:
    """A ``threading.Thread`` whose start fails as it does when no thread can be created."""

    def __init__(self, **_options: Any) -> None:
        pass

    def start(self) -> None:
        raise RuntimeError("can't start new thread")


def test_a_spawn_whose_thread_cannot_start_raises_and_leaves_no_record_of_the_spawn(
    executor: LocalExecutor, completions: Completions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error reaches the caller (the engine fails that one instant), and the log, the
    record of the spawn, is removed: a retry runs the instant rather than "already exists"."""
    spec = make_spec(shell("echo ran"))
    monkeypatch.setattr(scheduler.adapters.local.executor.threading, "Thread", UnstartableThread)

    with pytest.raises(RuntimeError, match="can't start new thread"):
        executor.spawn(spec, T0)

    assert not executor.log_path("batch", workflow_name(spec.name, T0)).exists()
    assert not executor.spawned_here("batch", workflow_name(spec.name, T0))
    monkeypatch.undo()
    assert executor.spawn(spec, T0) is True
    assert completions.one().phase is WorkflowPhase.SUCCEEDED


def test_a_name_too_long_for_the_run_files_is_refused_before_anything_is_written(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    """A Workflow name whose run files would not fit the file system's 255 bytes is refused
    by ``spawn`` (a ``SubmissionError`` of that CronWorkflow), before the log is created."""
    spec = make_spec(shell("true"), name="x" * 240)

    with pytest.raises(SpawnRejected, match="too long for a file name: 268 bytes"):
        executor.spawn(spec, T0)

    folder = tmp_path / "state" / "runs" / "batch"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_an_unusable_state_folder_raises_from_spawn(
    tmp_path: Path, completions: Completions
) -> None:
    """The state folder is a file: the ``OSError`` reaches the caller, nothing is swallowed."""
    state = tmp_path / "state"
    state.write_text("not a folder")
    executor = LocalExecutor(state, completions)

    with pytest.raises(OSError):  # noqa: PT011 (which one depends on the platform)
        executor.spawn(make_spec(shell("true")), T0)
    assert executor.running() == []


# --------------------------------------------------------------------------------------------
# Runs outlive cronwf: what a later executor on the same state folder learns
#
# "cronwf" is a child Python process holding a LocalExecutor; the tests kill it with SIGKILL
# while its run goes on under its supervisor, then start another executor on the same state.

INCARNATION = """
import json, sys, threading, time
from datetime import datetime
from pathlib import Path
from policies.spec import CronWorkflowSpec
from scheduler.adapters.local.executor import LocalExecutor

state, workflow_spec, at, then = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
executor = LocalExecutor(Path(state), lambda run: None, default_timeout=30.0)
spec = CronWorkflowSpec(
    name="job", namespace="batch", schedules=("*/5 * * * *",), workflow_spec=workflow_spec
)
scheduled_at = datetime.fromisoformat(at)
assert executor.spawn(spec, scheduled_at)
if then == "shutdown":
    log = executor.log_path(spec.namespace, f"job-{int(scheduled_at.timestamp())}")
    deadline = time.monotonic() + 5
    while "started" not in log.read_text().splitlines() and time.monotonic() < deadline:
        time.sleep(0.01)
    executor.shutdown(grace=30.0)
threading.Event().wait()
"""


class Incarnation:
    """An earlier cronwf process on the state folder: spawns one run, then waits (or shuts
    down, ``then="shutdown"``) until the test kills it."""

    def __init__(self, tmp_path: Path, workflow_spec: Mapping[str, Any], then: str = "wait"):
        self.state = tmp_path / "state"
        self.workflow = workflow_name("job", T0)
        self.folder = self.state / "runs" / "batch"
        self._stderr = (tmp_path / "incarnation.stderr").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                INCARNATION,
                str(self.state),
                json.dumps(dict(workflow_spec)),
                T0.isoformat(),
                then,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.workflow}{suffix}"

    def log_lines(self) -> list[str]:
        log = self.file(".log")
        return log.read_text().splitlines() if log.exists() else []

    def wait_for_log_line(self, line: str) -> None:
        wait_until(lambda: line in self.log_lines(), f"{line!r} in the run's log")

    def kill(self) -> None:
        """``kill -9``: nothing of cronwf's runs nor its supervisors is told."""
        self.process.kill()
        self.process.wait()
        self._stderr.close()

    def supervisor(self) -> Record:
        record = read_record(str(self.file(".supervisor.json")))
        assert record is not None
        return record

    def kill_command(self) -> None:
        """Kill the command's process group, if it printed ``group $$``."""
        for line in self.log_lines():
            if line.startswith("group "):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(line.split()[1]), signal.SIGKILL)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.kill_command()


@pytest.fixture
def incarnations() -> Iterator[list[Incarnation]]:
    started: list[Incarnation] = []
    yield started
    for incarnation in started:
        incarnation.close()


@pytest.fixture
def earlier(tmp_path: Path, incarnations: list[Incarnation]) -> Callable[..., Incarnation]:
    def start(workflow_spec: Mapping[str, Any], then: str = "wait") -> Incarnation:
        incarnation = Incarnation(tmp_path, workflow_spec, then)
        incarnations.append(incarnation)
        return incarnation

    return start


@pytest.fixture
def restarted(tmp_path: Path, completions: Completions) -> Iterator[Callable[[], LocalExecutor]]:
    """New executors on the state folder of the earlier incarnations."""
    executors: list[LocalExecutor] = []

    def start() -> LocalExecutor:
        executor = LocalExecutor(
            tmp_path / "state", completions, default_timeout=30.0, clock=lambda: FINISHED_AT
        )
        executors.append(executor)
        return executor

    yield start
    for executor in executors:
        executor.shutdown(grace=2.0)


def test_a_run_outlives_cronwf_and_the_next_executor_reports_its_end_once(
    tmp_path: Path,
    earlier: Callable[..., Incarnation],
    restarted: Callable[[], LocalExecutor],
    completions: Completions,
) -> None:
    """cronwf is killed (SIGKILL) while a run is in progress: the run goes on under its
    supervisor. A new executor on the same state folder finds it still going: it is observed
    here (``spawned_here``, ``running``; spawning the instant again is "already exists") and
    reported once, ``Succeeded``, when it ends; a later recovery reports nothing again."""
    done = tmp_path / "done"
    incarnation = earlier(shell(f"echo started; sleep 1; echo done >> {done}"))
    incarnation.wait_for_log_line("started")
    incarnation.kill()

    executor = restarted()
    recovered = executor.recover()

    key = ("batch", incarnation.workflow)
    assert recovered == Recovered(watching=(key,))
    assert executor.spawned_here(*key)
    assert executor.running() == [key]
    assert executor.spawn(make_spec(shell("echo again")), T0) is False
    run = completions.one()
    assert (run.key, run.workflow, run.scheduled_at) == ("batch/job", incarnation.workflow, T0)
    assert (run.phase, run.message) == (WorkflowPhase.SUCCEEDED, "exit code 0")
    assert done.read_text() == "done\n"
    wait_until(lambda: not executor.spawned_here(*key), "the run to be forgotten once reported")
    assert executor.running() == []
    assert incarnation.log_lines()[-1] == "# Succeeded: exit code 0"
    assert executor.recover() == Recovered()
    assert restarted().recover() == Recovered()
    assert len(completions.runs) == 1


def test_an_outcome_written_while_nobody_waited_is_reported_by_the_next_recovery(
    earlier: Callable[..., Incarnation],
    restarted: Callable[[], LocalExecutor],
    completions: Completions,
) -> None:
    """The run ended after cronwf died: its supervisor left the outcome. The next executor's
    ``recover`` reports it at once, with the true end time (on the executor's clock, as long
    ago as the run ended), and marks it reported: a second recovery reports nothing."""
    incarnation = earlier(shell("echo started; sleep 0.3; exit 3"))
    incarnation.wait_for_log_line("started")
    incarnation.kill()
    outcome = incarnation.file(".outcome.json")
    wait_until(outcome.exists, "the supervisor to write the outcome")
    ended = json.loads(outcome.read_text())["finishedAt"]

    executor = restarted()
    before = time.time()
    recovered = executor.recover()
    after = time.time()

    (run,) = completions.runs
    assert recovered == Recovered(reported=(run,))
    assert (run.workflow, run.phase, run.message) == (
        incarnation.workflow,
        WorkflowPhase.FAILED,
        "exit code 3",
    )
    late_by = FINISHED_AT - run.finished_at
    assert before - ended <= late_by.total_seconds() <= after - ended
    assert not outcome.exists()
    assert incarnation.file(".reported.json").exists()
    assert not executor.spawned_here("batch", incarnation.workflow)
    assert restarted().recover() == Recovered()
    assert len(completions.runs) == 1


def test_terminating_a_recovered_run_stops_it_and_it_is_reported_killed(
    earlier: Callable[..., Incarnation],
    restarted: Callable[[], LocalExecutor],
    completions: Completions,
) -> None:
    """A recovered run can still be replaced: its supervisor forwards the SIGTERM."""
    incarnation = earlier(shell("echo started; sleep 30; echo survived"))
    incarnation.wait_for_log_line("started")
    incarnation.kill()
    executor = restarted()
    executor.recover()

    executor.terminate("batch", incarnation.workflow)

    run = completions.one()
    assert (run.phase, run.message) == (WorkflowPhase.FAILED, "killed by signal 15")
    assert "survived" not in incarnation.log_lines()


def test_a_run_whose_supervisor_died_too_is_lost_and_left_alone(
    earlier: Callable[..., Incarnation],
    restarted: Callable[[], LocalExecutor],
    completions: Completions,
) -> None:
    """cronwf and the run's supervisor are gone (as after a reboot): nobody can learn how the
    run ended. ``recover`` lists it as lost and reports nothing; it is not observed here."""
    incarnation = earlier(shell("echo group $$; echo started; sleep 30"))
    incarnation.wait_for_log_line("started")
    incarnation.kill()
    supervisor = incarnation.supervisor()
    os.kill(supervisor.pid, signal.SIGKILL)
    incarnation.kill_command()
    wait_until(lambda: not supervisor_alive(supervisor), "the supervisor to be gone")

    executor = restarted()
    recovered = executor.recover()

    assert recovered == Recovered(lost=(("batch", incarnation.workflow),))
    assert not executor.spawned_here("batch", incarnation.workflow)
    assert completions.runs == []


def test_a_recovered_run_whose_supervisor_dies_ends_in_error(
    earlier: Callable[..., Incarnation],
    restarted: Callable[[], LocalExecutor],
    completions: Completions,
) -> None:
    """A watched run whose supervisor is killed before the end does not stay active: it is
    reported ``Error``, saying that nobody could learn how it ended."""
    incarnation = earlier(shell("echo group $$; echo started; sleep 30"))
    incarnation.wait_for_log_line("started")
    incarnation.kill()
    executor = restarted()
    assert executor.recover().watching == (("batch", incarnation.workflow),)

    os.kill(incarnation.supervisor().pid, signal.SIGKILL)

    run = completions.one()
    assert (run.phase, run.message) == (
        WorkflowPhase.ERROR,
        "the run's supervisor ended without an outcome",
    )
    wait_until(
        lambda: not executor.spawned_here("batch", incarnation.workflow),
        "the run to be forgotten once reported",
    )


def test_runs_interrupted_by_shutdown_are_not_reported_by_a_later_recovery(
    tmp_path: Path,
    executor: LocalExecutor,
    completions: Completions,
    restarted: Callable[[], LocalExecutor],
) -> None:
    """A run that ``shutdown`` stopped stays uncounted for good: the next executor on the
    state folder does not report it either."""
    spec = make_spec(shell("echo started; sleep 30"))
    executor.spawn(spec, T0)
    wait_until(started(executor, spec), "the run to start")
    executor.shutdown(grace=2.0)

    assert restarted().recover() == Recovered()
    assert completions.runs == []
    folder = tmp_path / "state" / "runs" / "batch"
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{workflow_name(spec.name, T0)}.interrupted.json",
        f"{workflow_name(spec.name, T0)}.log",
    ]


def test_a_run_interrupted_by_a_shutdown_that_cronwf_did_not_survive_is_never_reported(
    earlier: Callable[..., Incarnation],
    restarted: Callable[[], LocalExecutor],
    completions: Completions,
) -> None:
    """cronwf began shutting down (the run is marked interrupted, then signalled) and was
    killed before the run was over; the run then exits 0 on its own. It was interrupted
    all the same: no later recovery reports it."""
    incarnation = earlier(
        shell(
            "trap 'echo trapping; sleep 1; exit 0' TERM; echo started; "
            "while true; do sleep 0.1; done"
        ),
        then="shutdown",
    )
    incarnation.wait_for_log_line("trapping")
    supervisor = incarnation.supervisor()
    incarnation.kill()
    incarnation.wait_for_log_line("# Succeeded: exit code 0")
    wait_until(lambda: not supervisor_alive(supervisor), "the supervisor to end")

    assert restarted().recover() == Recovered()
    assert completions.runs == []
    assert incarnation.file(".interrupted.json").exists()


def test_a_reported_run_leaves_its_log_and_its_reported_outcome(
    tmp_path: Path, executor: LocalExecutor, completions: Completions
) -> None:
    """Once reported, the outcome is renamed ``.reported.json`` and the supervisor's record
    removed: the next start has nothing to report, and the log keeps the human record."""
    spec = make_spec(shell("true"))
    executor.spawn(spec, T0)
    completions.one()
    name = workflow_name(spec.name, T0)
    wait_until(lambda: not executor.spawned_here("batch", name), "the run to be forgotten")

    folder = tmp_path / "state" / "runs" / "batch"
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{name}.log",
        f"{name}.reported.json",
    ]
    reported = json.loads((folder / f"{name}.reported.json").read_text())
    assert {k: reported[k] for k in ("key", "workflow", "phase", "message", "exitCode")} == {
        "key": "batch/job",
        "workflow": name,
        "phase": "Succeeded",
        "message": "exit code 0",
        "exitCode": 0,
    }
