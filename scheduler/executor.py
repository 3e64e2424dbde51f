"""The local executor: runs a spawned Workflow's entrypoint as a subprocess (embedded mode).

Without a cluster there is no Argo workflow controller, yet people want to try schedules and
stop policies with real runs. The local executor is a *trial runner, not a workflow engine*:
it runs the entrypoint template when it is a ``container`` (``command`` + ``args``, on this
host, the image ignored) or a ``script`` (``source`` written to a file and passed to
``command``), with the template's ``env`` values, under a timeout
(``activeDeadlineSeconds`` of the Workflow when set, else the executor's default). Exit code 0
is ``Succeeded``, anything else ``Failed``; any other entrypoint (steps, DAG, resource...)
ends ``Error`` with a message saying why. Argo's ``{{workflow.name}}``,
``{{workflow.namespace}}`` and ``{{workflow.scheduledTime}}`` are substituted.

Each run writes its output to ``<state>/runs/<namespace>/<workflow>.log``. That file is also
the memory of what was spawned: a Workflow whose log exists "already exists", so a restart
that catches up an instant already run does not run it twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec
from policies.workflow import rfc3339, workflow_name
from scheduler.engine import SinkUnavailable

__all__ = ["LocalExecutor", "LocalRun", "RunFinished"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFinished:
    """A local run ended: reported to the runtime, which hands it to the engine."""

    key: str
    workflow: str
    scheduled_at: datetime
    phase: WorkflowPhase
    finished_at: datetime
    message: str


@dataclass(frozen=True)
class LocalRun:
    """What to execute for one Workflow: a command line, its environment and its deadline."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    timeout: float
    script: str | None = None


class _Unrunnable(Exception):
    """The entrypoint cannot be run locally; the run ends ``Error`` with this message."""


_PLACEHOLDER = re.compile(r"\{\{\s*(workflow\.(?:name|namespace|scheduledTime))\s*\}\}")


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def plan_run(spec: CronWorkflowSpec, scheduled_at: datetime, default_timeout: float) -> LocalRun:
    """The command line of the Workflow's entrypoint; raises :class:`_Unrunnable`."""
    workflow_spec: Mapping[str, Any] = spec.workflow_spec or {}
    entrypoint = workflow_spec.get("entrypoint")
    templates = workflow_spec.get("templates") or []
    template = next(
        (t for t in templates if isinstance(t, Mapping) and t.get("name") == entrypoint), None
    )
    if template is None:
        raise _Unrunnable(
            f"entrypoint {entrypoint!r} is not a template of this Workflow (workflowTemplateRef "
            "is not supported by the local executor)"
        )
    values = {
        "workflow.name": workflow_name(spec.name, scheduled_at),
        "workflow.namespace": spec.namespace,
        "workflow.scheduledTime": rfc3339(scheduled_at),
    }
    deadline = workflow_spec.get("activeDeadlineSeconds") or template.get("activeDeadlineSeconds")
    timeout = float(deadline) if isinstance(deadline, int | float) and deadline > 0 else None
    if "container" in template:
        body = template["container"] or {}
        argv = [*body.get("command", []), *body.get("args", [])]
        script = None
    elif "script" in template:
        body = template["script"] or {}
        argv = [*body.get("command", ["sh"]), *body.get("args", [])]
        script = _substitute(str(body.get("source", "")), values)
    else:
        kinds = ", ".join(sorted(k for k in template if k not in ("name", "inputs", "outputs")))
        raise _Unrunnable(
            f"template {entrypoint!r} is not a container or script template ({kinds}); the "
            "local executor runs only those: use Kubernetes mode for the rest"
        )
    if not argv:
        raise _Unrunnable(
            f"template {entrypoint!r} has no command: the local executor does not know the "
            "image's entrypoint; set command (and args)"
        )
    env = {
        str(item["name"]): _substitute(str(item.get("value", "")), values)
        for item in body.get("env", [])
        if isinstance(item, Mapping) and "name" in item and "valueFrom" not in item
    }
    return LocalRun(
        argv=tuple(_substitute(str(a), values) for a in argv),
        env=env,
        timeout=timeout or default_timeout,
        script=script,
    )


class LocalExecutor:
    """A :class:`scheduler.engine.Sink` that runs Workflows as local subprocesses."""

    def __init__(
        self,
        state_dir: Path,
        on_finished: Callable[[RunFinished], None],
        default_timeout: float = 600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._runs_dir = state_dir / "runs"
        self._on_finished = on_finished
        self._default_timeout = default_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._threads: dict[tuple[str, str], threading.Thread] = {}
        self._stopping = False
        self._terminating: set[tuple[str, str]] = set()
        self._done: set[tuple[str, str]] = set()
        self._interrupted: set[tuple[str, str]] = set()

    def log_path(self, namespace: str, workflow: str) -> Path:
        return self._runs_dir / namespace / f"{workflow}.log"

    # -- Sink -------------------------------------------------------------------------------

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        with self._lock:
            if self._stopping:
                # A tick still finishing during shutdown: leave the instant undecided for the
                # next start to catch up, rather than start a run only to kill it.
                raise SinkUnavailable("the local executor is shutting down")
        name = workflow_name(spec.name, scheduled_at)
        path = self.log_path(spec.namespace, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            log_file = path.open("xb")  # exclusive: the log is the record of the spawn
        except FileExistsError:
            return False
        header = (
            f"# cronwf local executor (a trial runner, not a workflow engine)\n"
            f"# workflow {spec.namespace}/{name} of {spec.key}, scheduled {rfc3339(scheduled_at)}\n"
        )
        log_file.write(header.encode())
        log_file.flush()
        thread = threading.Thread(
            target=self._run,
            args=(spec, scheduled_at, name, log_file),
            name=f"cronwf-run-{name}",
            daemon=True,
        )
        with self._lock:
            self._threads[(spec.namespace, name)] = thread
        thread.start()
        return True

    def spawned_here(self, namespace: str, workflow: str) -> bool:
        """Whether this executor started that run and has not reported its end yet."""
        with self._lock:
            return (namespace, workflow) in self._threads

    def terminate(self, namespace: str, workflow: str) -> None:
        with self._lock:
            key = (namespace, workflow)
            process = self._running.get(key)
            thread = self._threads.get(key)
            if process is None and thread is not None and thread.is_alive():
                # Spawned but not started yet: it is killed as soon as it starts.
                self._terminating.add(key)
        if process is not None and process.poll() is None:
            _kill(process, signal.SIGTERM)

    # -- runs -------------------------------------------------------------------------------

    def _run(
        self, spec: CronWorkflowSpec, scheduled_at: datetime, name: str, log_file: Any
    ) -> None:
        key = (spec.namespace, name)
        try:
            phase, message = self._execute(spec, scheduled_at, key, log_file)
        except Exception as error:  # an executor bug must not lose the run's completion
            log.exception("local run %s/%s failed unexpectedly", *key)
            phase, message = WorkflowPhase.ERROR, f"local executor error: {error}"
        finally:
            with self._lock:
                self._running.pop(key, None)
                self._terminating.discard(key)
                interrupted = key in self._interrupted
        log_file.write(f"# {phase.value}: {message}\n".encode())
        log_file.close()
        if not interrupted:
            self._on_finished(
                RunFinished(spec.key, name, scheduled_at, phase, self._clock(), message)
            )
        # Forgotten only once reported: until then the run is ours (see spawned_here).
        with self._lock:
            self._threads.pop(key, None)
            self._done.discard(key)

    def _execute(
        self,
        spec: CronWorkflowSpec,
        scheduled_at: datetime,
        key: tuple[str, str],
        log_file: Any,
    ) -> tuple[WorkflowPhase, str]:
        try:
            run = plan_run(spec, scheduled_at, self._default_timeout)
        except _Unrunnable as error:
            return WorkflowPhase.ERROR, str(error)
        log_file.write(f"# $ {shlex.join(run.argv)}\n".encode())
        log_file.flush()
        with tempfile.TemporaryDirectory(prefix="cronwf-") as workdir:
            argv = list(run.argv)
            if run.script is not None:
                script_path = Path(workdir, "script")
                script_path.write_text(run.script)
                argv.append(str(script_path))
            try:
                process = subprocess.Popen(
                    argv,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                    env={**os.environ, **run.env},
                    start_new_session=True,
                )
            except OSError as error:
                return WorkflowPhase.FAILED, f"cannot start {argv[0]!r}: {error.strerror}"
            with self._lock:
                self._running[key] = process
                if self._stopping or key in self._terminating:
                    _kill(process, signal.SIGTERM)
            try:
                code = process.wait(timeout=run.timeout)
            except subprocess.TimeoutExpired:
                _kill(process, signal.SIGKILL)
                process.wait()
                return WorkflowPhase.FAILED, f"timed out after {run.timeout:g}s"
            with self._lock:
                if key not in self._interrupted:
                    self._done.add(key)  # ended on its own: reported even during shutdown
        if code == 0:
            return WorkflowPhase.SUCCEEDED, "exit code 0"
        if code < 0:
            return WorkflowPhase.FAILED, f"killed by signal {-code}"
        return WorkflowPhase.FAILED, f"exit code {code}"

    def running(self) -> list[tuple[str, str]]:
        """``(namespace, workflow)`` of the runs in progress."""
        with self._lock:
            return list(self._threads_alive())

    def _threads_alive(self) -> Sequence[tuple[str, str]]:
        return [key for key, thread in self._threads.items() if thread.is_alive()]

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop every run in progress (SIGTERM, then SIGKILL after ``grace``).

        Interrupted runs report no completion: the scheduler stopped them, they did not fail,
        so they are not counted (like a Workflow deleted before it finished).
        """
        with self._lock:
            self._stopping = True
            alive = self._threads_alive()
            self._interrupted.update(key for key in alive if key not in self._done)
            processes = [self._running[k] for k in alive if k in self._running]
            threads = [self._threads[k] for k in alive]
        for process in processes:
            _kill(process, signal.SIGTERM)
        for thread in threads:
            thread.join(grace)
        for process in processes:
            if process.poll() is None:
                _kill(process, signal.SIGKILL)


def _kill(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the run's whole process group (``sh -c`` children included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
