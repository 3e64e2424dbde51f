"""The local executor of embedded mode (DESIGN §10): a trial runner, not a workflow engine.

A spawned Workflow whose entrypoint is a ``container`` or ``script`` template runs as a local
subprocess; its exit code gives ``Succeeded`` or ``Failed``; anything else ends ``Error`` with
a message that says why. The log file of a run is also the record that its instant was
spawned, so spawning the same instant again is "already exists", even across restarts.

Runs are real subprocesses (``sh``, ``sleep``). Completions arrive on the executor's threads
through the ``on_finished`` callback; the tests collect them and wait with bounded timeouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import scheduler.executor
from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec
from policies.workflow import workflow_name
from scheduler.engine import SinkUnavailable
from scheduler.executor import LocalExecutor, LocalRun, RunFinished, plan_run

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FINISHED_AT = datetime(2026, 3, 2, 9, 0, 7, tzinfo=UTC)
BOUND = 5.0  # seconds: the longest any test waits for a run


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


class Completions:
    """The ``on_finished`` callback: collects every reported run."""

    def __init__(self) -> None:
        self.runs: list[RunFinished] = []
        self._changed = threading.Condition()

    def __call__(self, run: RunFinished) -> None:
        with self._changed:
            self.runs.append(run)
            self._changed.notify_all()

    def wait(self, count: int = 1, timeout: float = BOUND) -> list[RunFinished]:
        """The runs reported, once there are ``count`` of them (fails after ``timeout``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.runs) >= count, timeout):
                pytest.fail(f"expected {count} completions within {timeout}s, got {self.runs}")
            return list(self.runs)

    def one(self) -> RunFinished:
        (run,) = self.wait(1)
        return run


def wait_until(condition: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


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
    Workflow's name, instant and the executor clock's finish time; the log holds the header,
    the command line, the output and the outcome."""
    spec = make_spec(container("sh", "-c", args=["echo hi"]))

    assert executor.spawn(spec, T0) is True

    run = completions.one()
    assert run == RunFinished(
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
    real_plan_run = scheduler.executor.plan_run

    def plan_run_after_release(*args: Any) -> LocalRun:
        entered.set()
        release.wait(BOUND)
        return real_plan_run(*args)

    monkeypatch.setattr(scheduler.executor, "plan_run", plan_run_after_release)
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
