"""Hostile or mistaken values never harm the host through the local executor (issue 12).

Names, namespaces, labels, annotations and parameters are text someone wrote; the local
executor substitutes them into command lines and scripts, and names its files after names
and namespaces. These tests feed it values built to escape: a shell command that would create
a marker file if any value were ever read as code, namespaces and names that would write
outside the state folder, and a service environment holding a Redis password. Specs are built
directly (bypassing the loader, which may refuse such names) and loaded from YAML, for the
values the loader accepts (labels, annotations, parameters).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from executor_support import BOUND, Completions
from hypothesis import given, settings
from hypothesis import strategies as st

import scheduler.adapters.local.supervisor
from policies.decision import CronWorkflow, WorkflowPhase
from policies.spec import CronWorkflowSpec, WorkflowMetadata
from policies.workflow import workflow_name
from scheduler.adapters.local.executor import LocalExecutor, plan_run
from scheduler.adapters.local.run_plan import Unrunnable
from scheduler.adapters.local.supervisor import Identity, Plan, read_record
from scheduler.core.engine import Engine, Error, Event, SpawnRejected
from scheduler.core.memory import MemoryHistory
from scheduler.manifests.loading import load_text

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Breaks out of every shell quoting context, and out of a comment by its newline; it holds no
# '/', so that it is also a single file name (as a CronWorkflow name or a namespace).
PAYLOAD = (
    "x; touch $MARKER; $(touch $MARKER) `touch $MARKER` '; touch $MARKER; '"
    ' "; touch $MARKER; $(touch $MARKER)" #\ntouch $MARKER\n'
)
SHELL_CODE = "printf '%s|\\n' {{X}} \"{{X}}\" '{{X}}'"
"""Prints the value three times (unquoted, in double quotes, in single quotes), each ended
by ``|``: the run's output must show it literally, three times."""


@pytest.fixture
def completions() -> Completions:
    return Completions()


@pytest.fixture
def executor(tmp_path: Path, completions: Completions) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(tmp_path / "state", completions, default_timeout=30.0)
    yield executor
    executor.shutdown(grace=2.0)


def template(body: Mapping[str, Any], kind: str = "container") -> dict[str, Any]:
    return {"entrypoint": "main", "templates": [{"name": "main", kind: dict(body)}]}


# Where a value comes from: (placeholder, how a spec carries the value, the value it yields).
def _carried_by_name(value: str) -> CronWorkflowSpec:
    return CronWorkflowSpec(name=value, namespace="batch", schedules=("* * * * *",))


def _carried_by_namespace(value: str) -> CronWorkflowSpec:
    return CronWorkflowSpec(name="job", namespace=value, schedules=("* * * * *",))


def _carried_by_label(value: str) -> CronWorkflowSpec:
    metadata = WorkflowMetadata(labels={"team": value})
    return CronWorkflowSpec(name="job", schedules=("* * * * *",), workflow_metadata=metadata)


def _carried_by_annotation(value: str) -> CronWorkflowSpec:
    metadata = WorkflowMetadata(annotations={"example.com/owner": value})
    return CronWorkflowSpec(name="job", schedules=("* * * * *",), workflow_metadata=metadata)


def _carried_by_parameter(value: str) -> CronWorkflowSpec:
    return CronWorkflowSpec(name="job", schedules=("* * * * *",))


CARRIERS = {
    "name": ("{{workflow.name}}", _carried_by_name),
    "namespace": ("{{workflow.namespace}}", _carried_by_namespace),
    "label": ("{{workflow.labels.team}}", _carried_by_label),
    "annotation": ("{{workflow.annotations.example.com/owner}}", _carried_by_annotation),
    "parameter": ("{{workflow.parameters.who}}", _carried_by_parameter),
}


def carrying(carrier: str, workflow_spec: dict[str, Any]) -> tuple[CronWorkflowSpec, str]:
    """A spec carrying PAYLOAD as ``carrier``, and the value its placeholder yields."""
    placeholder, make = CARRIERS[carrier]
    spec = make(PAYLOAD)
    workflow_spec = _with_placeholder(workflow_spec, placeholder)
    workflow_spec["arguments"] = {"parameters": [{"name": "who", "value": PAYLOAD}]}
    spec = replace(spec, workflow_spec=workflow_spec)
    value = workflow_name(spec.name, T0) if carrier == "name" else PAYLOAD
    return spec, value


def _with_placeholder(value: Any, placeholder: str) -> Any:
    if isinstance(value, str):
        return value.replace("{{X}}", placeholder)
    if isinstance(value, list):
        return [_with_placeholder(item, placeholder) for item in value]
    if isinstance(value, dict):
        return {k: _with_placeholder(v, placeholder) for k, v in value.items()}
    return value


def marker_env(marker: Path) -> list[dict[str, str]]:
    return [{"name": "MARKER", "value": str(marker)}]


def log_of(executor: LocalExecutor, spec: CronWorkflowSpec) -> str:
    return executor.log_path(spec.namespace, workflow_name(spec.name, T0)).read_text()


# --------------------------------------------------------------------------------------------
# No value is ever read as code


@pytest.mark.parametrize("carrier", list(CARRIERS))
@pytest.mark.parametrize("where", ["sh -c", "bash -ec", "sh script", "env sh -c"])
def test_a_value_never_reaches_a_shell_as_code(
    tmp_path: Path, executor: LocalExecutor, completions: Completions, carrier: str, where: str
) -> None:
    """The value would run ``touch $MARKER`` from any quoting context if it were inserted
    raw; it is inserted shell-quoted, so the marker never appears, and the output shows the
    value literally in each of the three places (unquoted, "double", 'single')."""
    marker = tmp_path / "pwned"
    env = marker_env(marker)
    workflow_spec = {
        "sh -c": template({"command": ["sh", "-c"], "args": [SHELL_CODE], "env": env}),
        "bash -ec": template({"command": ["/bin/bash", "-ec", SHELL_CODE], "env": env}),
        "sh script": template(
            {"command": ["sh"], "source": f"set -e\n{SHELL_CODE}\n", "env": env}, "script"
        ),
        "env sh -c": template(
            {"command": ["/usr/bin/env", "LC_ALL=C", "sh", "-c", SHELL_CODE], "env": env}
        ),
    }[where]
    spec, value = carrying(carrier, workflow_spec)

    assert executor.spawn(spec, T0) is True

    (run,) = completions.wait(1)
    log = log_of(executor, spec)
    assert not marker.exists(), log
    assert (run.phase, run.message) == (WorkflowPhase.SUCCEEDED, "exit code 0"), log
    assert f"{value}|\n" * 3 in log
    assert "inserted shell-quoted" in log


@pytest.mark.parametrize("carrier", ["label", "annotation", "parameter", "namespace"])
def test_a_value_that_another_interpreter_could_read_as_code_ends_the_run_in_error(
    tmp_path: Path, executor: LocalExecutor, completions: Completions, carrier: str
) -> None:
    """A python script's source gets a value only when it is made of safe characters: this
    one would run ``touch`` through ``os.system``; the run ends ``Error`` before anything
    runs, naming the placeholder and saying to pass the value through ``env``."""
    marker = tmp_path / "pwned"
    source = "print('{{X}}')\nprint(\"{{X}}\")\n"
    body = {"command": ["python3"], "source": source, "env": marker_env(marker)}
    spec, _ = carrying(carrier, template(body, "script"))
    placeholder = CARRIERS[carrier][0]

    executor.spawn(spec, T0)

    (run,) = completions.wait(1)
    assert not marker.exists()
    assert run.phase is WorkflowPhase.ERROR
    assert run.message.startswith(
        f'{placeholder} in the script source (run by python): its value "x; touch $MARKER; '
    )
    assert "pass it through the template's env instead" in run.message
    assert log_of(executor, spec).endswith(f"# Error: {run.message}\n")


def test_python_gets_the_value_literally_through_env(
    tmp_path: Path, executor: LocalExecutor, completions: Completions
) -> None:
    """What the refusal recommends works: env values are data, substituted raw."""
    marker = tmp_path / "pwned"
    source = "import os\nprint(os.environ['WHO'] + '|')\n"
    env = [*marker_env(marker), {"name": "WHO", "value": "{{workflow.parameters.who}}"}]
    spec, value = carrying(
        "parameter", template({"command": ["python3"], "source": source, "env": env}, "script")
    )

    executor.spawn(spec, T0)

    (run,) = completions.wait(1)
    assert run.phase is WorkflowPhase.SUCCEEDED
    assert f"{value}|\n" in log_of(executor, spec)
    assert not marker.exists()


def test_python_dash_c_code_gets_only_safe_values() -> None:
    """``python3 -c CODE``: the code operand follows the interpreter rule."""
    spec, _ = carrying("label", template({"command": ["python3", "-c", "print('{{X}}')"]}))

    with pytest.raises(Unrunnable, match=r"in argv\[2\] \(the code of python\)"):
        plan_run(spec, T0, 60.0)


def test_other_arguments_get_the_value_literally_in_one_element() -> None:
    """Not code: each value stays inside its one argv element, unquoted (exec, no shell)."""
    spec, value = carrying(
        "annotation", template({"command": ["printf", "%s", "--who={{X}}", "{{X}}"]})
    )

    assert plan_run(spec, T0, 60.0).argv == ("printf", "%s", f"--who={value}", value)


def test_hostile_values_loaded_from_a_manifest_are_quoted_too() -> None:
    """The same through the loader, for the values it accepts as they are: annotations and
    parameters hold any text (a label value is refused unless Kubernetes takes it)."""
    loaded = load_text(
        """
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: job, namespace: batch}
spec:
  schedules: ["* * * * *"]
  workflowMetadata:
    labels: {team: data.eng}
    annotations: {example.com/note: "$(touch /tmp/x)"}
  workflowSpec:
    entrypoint: main
    arguments:
      parameters: [{name: who, value: "a'b; rm -rf ~"}]
    templates:
      - name: main
        container:
          command:
            - sh
            - -c
            - >-
              echo {{workflow.labels.team}} {{workflow.annotations.example.com/note}}
              "{{workflow.parameters.who}}"
"""
    )
    (cron_workflow,) = loaded.cron_workflows

    argv = plan_run(cron_workflow.spec, T0, 60.0).argv

    assert argv == (
        "sh",
        "-c",
        "echo data.eng '$(touch /tmp/x)' \"\"'a'\"'\"'b; rm -rf ~'\"\"",
    )
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert output == "data.eng $(touch /tmp/x) a'b; rm -rf ~\n"


@pytest.mark.parametrize(
    ("code", "where"),
    [
        ("cat <<EOF\n{{X}}\nEOF", "in a here-document"),
        ("# owner: {{X}}\ntrue", "in a comment"),
        ("echo `echo {{X}}`", "inside backquotes"),
        ("echo ${UNSET:-{{X}}}", "inside ${...}"),
        ("echo \\{{X}}", "after a backslash"),
        ("echo $(case a in a) echo {{X}};; esac)", "after a case inside $(...)"),
    ],
)
def test_where_quoting_cannot_make_a_value_a_plain_word_the_run_is_refused(
    code: str, where: str
) -> None:
    spec, _ = carrying("label", template({"command": ["sh", "-c", code]}))

    with pytest.raises(Unrunnable) as refused:
        plan_run(spec, T0, 60.0)

    assert f"the placeholder stands {where}" in str(refused.value)
    assert "{{workflow.labels.team}} in argv[2] (the code of sh)" in str(refused.value)


def test_safe_values_go_in_unchanged_anywhere() -> None:
    """Every valid name, the scheduled time: nothing to quote, even in a here-document."""
    code = "cat <<EOF\n{{workflow.name}} {{workflow.scheduledTime}}\nEOF"
    spec = CronWorkflowSpec(
        name="job",
        schedules=("* * * * *",),
        workflow_spec=template({"command": ["sh", "-c", code]}),
    )

    run = plan_run(spec, T0, 60.0)

    assert run.argv[2] == f"cat <<EOF\njob-{int(T0.timestamp())} 2026-03-02T09:00:00Z\nEOF"
    assert run.notes == ()


_ARGV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))


@settings(max_examples=60, deadline=None)
@given(value=_ARGV_TEXT)
def test_any_value_quoted_into_shell_code_prints_as_itself(value: str) -> None:
    """Property: whatever the text, in each quoting context, the shell prints it literally."""
    spec = _carried_by_label(value)
    spec = replace(
        spec,
        workflow_spec=template(
            {"command": ["sh", "-c", SHELL_CODE.replace("{{X}}", "{{workflow.labels.team}}")]}
        ),
    )

    argv = plan_run(spec, T0, 60.0).argv

    output = subprocess.run(argv, capture_output=True, check=True).stdout
    assert output == f"{value}|\n".encode() * 3


# --------------------------------------------------------------------------------------------
# The environment of a run


def test_a_run_gets_the_base_environment_and_its_env_never_the_services(
    tmp_path: Path, completions: Completions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's environment holds its Redis password and Kubernetes settings: a run
    sees only PATH, HOME, LANG, TZ, Argo's pod and container names and the template's env;
    its supervisor only the first four."""
    monkeypatch.setenv("CRONWF_REDIS_URL", "redis://:s3cret@redis.internal:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    monkeypatch.setenv("HOME", "/home/cronwf")
    monkeypatch.delenv("LANG", raising=False)
    executor = LocalExecutor(tmp_path / "state", completions, default_timeout=30.0)
    gate = tmp_path / "gate"
    command = f"while [ ! -e {gate} ]; do sleep 0.02; done; env"
    spec = CronWorkflowSpec(
        name="job",
        namespace="batch",
        schedules=("* * * * *",),
        workflow_spec=template(
            {"command": ["sh", "-c", command], "env": [{"name": "GREETING", "value": "hi"}]}
        ),
    )
    try:
        executor.spawn(spec, T0)
        record_file = executor.log_path("batch", workflow_name("job", T0)).with_suffix(
            ".supervisor.json"
        )
        _wait_for(record_file.exists, "the supervisor's record")
        record = read_record(str(record_file))
        assert record is not None
        supervisor_env = _environ_of(record.pid)
        gate.touch()
        (run,) = completions.wait(1)
    finally:
        executor.shutdown(grace=2.0)

    assert run.phase is WorkflowPhase.SUCCEEDED
    log = log_of(executor, spec)
    assert "s3cret" not in log
    printed = dict(
        line.split("=", 1) for line in log.splitlines() if "=" in line and not line.startswith("#")
    )
    assert set(printed) - {"PWD", "SHLVL", "_", "OLDPWD"} == {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "ARGO_POD_NAME",
        "ARGO_CONTAINER_NAME",
        "GREETING",
    }
    assert printed["PATH"] == os.environ["PATH"]
    assert (printed["HOME"], printed["LANG"], printed["TZ"]) == (
        "/home/cronwf",
        "C.UTF-8",
        "Europe/Berlin",
    )
    assert printed["ARGO_POD_NAME"] == workflow_name("job", T0)
    assert printed["GREETING"] == "hi"
    assert set(supervisor_env) == {"PATH", "HOME", "LANG", "TZ"}


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if item)


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Every file inside the state folder


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("namespace", "name", "problem"),
    [
        ("../outside", "job", "its namespace '../outside' contains a '/'"),
        ("..", "job", "its namespace '..' is a reference to a folder, not a folder name"),
        (".", "job", "its namespace '.' is a reference to a folder"),
        ("/tmp", "job", "its namespace '/tmp' contains a '/'"),
        ("a\0b", "job", "its namespace 'a\\x00b' contains a NUL character"),
        ("n" * 300, "job", "is too long for a folder name: 300 bytes"),
        ("", "job", "its namespace '' is empty"),
        ("batch", "../../outside", "its Workflow name '../../outside-1772442000' contains a '/'"),
        ("batch", "a\0b", "contains a NUL character"),
        ("batch", "é" * 120, "is too long for a file name: 268 bytes"),
    ],
)
def test_a_name_or_namespace_that_is_not_one_file_name_is_refused_and_nothing_is_written(
    tmp_path: Path, executor: LocalExecutor, namespace: str, name: str, problem: str
) -> None:
    """``spawn`` raises :class:`SpawnRejected` (a SubmissionError of that CronWorkflow only)
    saying which field and why; nothing is written anywhere, inside or outside the state."""
    spec = CronWorkflowSpec(
        name=name,
        namespace=namespace,
        schedules=("* * * * *",),
        workflow_spec=template({"command": ["touch", "ran"]}),
    )
    before = _tree(tmp_path)

    with pytest.raises(SpawnRejected) as refused:
        executor.spawn(spec, T0)

    assert problem in str(refused.value)
    assert "name CronWorkflows and namespaces as Kubernetes does" in str(refused.value)
    assert _tree(tmp_path) == before
    assert executor.seed_from_runs(spec) is None  # and re-seeding does not raise on it


def test_a_namespace_folder_that_links_outside_the_state_folder_is_refused(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    runs = tmp_path / "state" / "runs"
    runs.mkdir(parents=True)
    (runs / "batch").symlink_to(outside)
    spec = CronWorkflowSpec(
        name="job",
        namespace="batch",
        schedules=("* * * * *",),
        workflow_spec=template({"command": ["true"]}),
    )

    with pytest.raises(SpawnRejected, match=f"leads to {outside}, outside {runs}"):
        executor.spawn(spec, T0)

    assert list(outside.iterdir()) == []


def test_recovery_does_not_stop_at_odd_folders_left_in_the_runs_folder(
    tmp_path: Path, completions: Completions
) -> None:
    """A stray file, an unreadable folder: recovery carries on with the rest."""
    runs = tmp_path / "state" / "runs"
    (runs / "unreadable").mkdir(parents=True)
    (runs / "stray-file").write_text("not a folder")
    (runs / "unreadable" / "job-1.outcome.json").write_text("{not json")
    executor = LocalExecutor(tmp_path / "state", completions)

    found = executor.recover()

    assert found.lost == (("unreadable", "job-1"),)


# --------------------------------------------------------------------------------------------
# One bad CronWorkflow never takes down a batch


class PickySink:
    """The local executor, except that spawning one CronWorkflow raises what a broken host
    raises (OSError) and another what a bad value raises deep down (ValueError)."""

    def __init__(self, executor: LocalExecutor) -> None:
        self.executor = executor

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        if spec.name == "full-disk":
            raise OSError(28, "No space left on device")
        if spec.name == "odd-value":
            raise ValueError("embedded null byte")
        return self.executor.spawn(spec, scheduled_at)

    def terminate(self, namespace: str, workflow: str) -> None:
        self.executor.terminate(namespace, workflow)


class Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_in_a_batch_due_together_only_the_cron_workflows_that_fail_to_spawn_are_affected(
    executor: LocalExecutor, completions: Completions
) -> None:
    """Five CronWorkflows due at one instant, three of them failing to spawn in different
    ways: those three get an Error of that instant (a SubmissionError), the other two are
    spawned, recorded active and run."""
    workflow_spec = template({"command": ["true"]})
    names = [
        ("batch", "first"),
        ("../escape", "bad-namespace"),
        ("batch", "full-disk"),
        ("batch", "odd-value"),
        ("batch", "last"),
    ]
    cron_workflows = [
        CronWorkflow.prepare(
            CronWorkflowSpec(
                name=name,
                namespace=namespace,
                schedules=("* * * * *",),
                workflow_spec=workflow_spec,
            )
        )
        for namespace, name in names
    ]
    store, events = MemoryHistory(), Events()
    engine = Engine(store, PickySink(executor), events)
    start = T0.replace(minute=59, hour=8)
    for cron_workflow in cron_workflows:
        engine.sync(cron_workflow, start)

    results = engine.tick_many([(cw, T0) for cw in cron_workflows], T0)

    assert [r.kind for r in results] == ["Spawned", "Error", "Error", "Error", "Spawned"]
    errors = {e.key: e for e in events.events if isinstance(e, Error)}
    assert "contains a '/'" in errors["../escape/bad-namespace"].message
    assert not errors["../escape/bad-namespace"].unexpected  # the user's error, not the host's
    assert "No space left on device" in errors["batch/full-disk"].message
    assert errors["batch/full-disk"].unexpected
    assert "embedded null byte" in errors["batch/odd-value"].message
    for key in ("batch/first", "batch/last"):
        history = store.load(key)
        assert history is not None
        assert history.active == (workflow_name(key.split("/")[1], T0),)
    finished = completions.wait(2)
    assert {(run.key, run.phase) for run in finished} == {
        ("batch/first", WorkflowPhase.SUCCEEDED),
        ("batch/last", WorkflowPhase.SUCCEEDED),
    }


def test_the_supervisor_passes_the_plans_environment_and_nothing_of_its_own(
    tmp_path: Path,
) -> None:
    """The second layer: even a supervisor started with secrets in its environment gives the
    command exactly the plan's environment."""
    stem = tmp_path / "job-1"
    stem.with_suffix(".log").touch()
    plan = Plan(Identity("batch/job", "batch", "job-1", T0.isoformat()), ["env"], {"A": "1"}, 10.0)
    root = Path(scheduler.adapters.local.supervisor.__file__).resolve().parents[3]
    finished = subprocess.run(
        [sys.executable, "-S", "-m", "scheduler.adapters.local.supervisor", str(stem)],
        input=plan.to_json(),
        capture_output=True,
        cwd=root,
        env={"PATH": os.environ["PATH"], "CRONWF_REDIS_URL": "redis://:s3cret@r:6379"},
        timeout=BOUND,
        check=True,
    )

    assert finished.stdout == b"ready\n"
    assert Path(f"{stem}.log").read_text().splitlines() == ["A=1", "# Succeeded: exit code 0"]
