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

A run must be counted once even when cronwf dies before it ends (``kill -9``, OOM, a
restart), so its outcome must not live only in this process. Each run is therefore executed
by a supervisor process (:mod:`scheduler.supervisor`, which also defines the run's files)
that outlives cronwf and writes the outcome durably next to the log. Here, a thread per run
starts the supervisor, hands it the plan on its stdin, waits for it and reports the outcome
it wrote through ``on_finished``; once ``on_finished`` returned, the outcome file is renamed
``.reported.json``. Should this process die between the two, the next start reports the run
once more: harmless, counting a completion is idempotent downstream. At start-up,
:meth:`LocalExecutor.recover` reports what earlier processes on this state folder left
unreported and watches their runs still going under a live supervisor.

The end time reported is the supervisor's (its wall clock), expressed on the executor's
clock: the very instant with the real clock; with an injected clock (tests, simulations),
that clock's "now" less how long ago the run ended.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec, StatusSeed
from policies.workflow import rfc3339, scheduled_time_of, workflow_name
from scheduler.engine import SinkUnavailable
from scheduler.supervisor import (
    INTERRUPTED_MARK,
    LONGEST_SUFFIX,
    READY,
    Identity,
    Interrupted,
    Outcome,
    Plan,
    Record,
    RunFiles,
    describe_exit,
    read_outcome,
    read_record,
    supervisor_alive,
    write_json,
)

__all__ = ["LocalExecutor", "LocalRun", "Recovered", "RunFinished"]

log = logging.getLogger(__name__)

_FINAL_LINE = re.compile(rb"^# (Succeeded|Failed|Error): ", re.MULTILINE)
"""The last line of a run's log, written when the run ended."""


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


@dataclass(frozen=True)
class Recovered:
    """What :meth:`LocalExecutor.recover` found of the runs of earlier processes.

    ``reported``: runs that had ended unreported, reported now. ``watching``: runs still going
    under a live supervisor, reported when they end. ``lost``: runs whose supervisor is gone
    without leaving an outcome (the machine restarted, it was killed): nobody can learn how
    they ended; they are left to the runtime, which resolves runs that no process reports.
    """

    reported: tuple[RunFinished, ...] = ()
    watching: tuple[tuple[str, str], ...] = ()
    lost: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Watched:
    """A run of an earlier process, still going under a live supervisor."""

    files: RunFiles
    record: Record


_Key = tuple[str, str]

# Seconds between two looks at the outcome files of recovered runs (by one thread for all).
_WATCH_INTERVAL = 0.5
# The longest file name most file systems take; the name of a run's last file must fit.
_NAME_MAX = 255
# The supervisor starts in the folder that holds this package: ``-m`` then imports the same
# code as cronwf's, without the site packages (``-S``) whose set-up would slow every run.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


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
        self._threads: dict[_Key, threading.Thread] = {}
        # Supervisors that said they are ready to be signalled.
        self._supervisors: dict[_Key, subprocess.Popen[bytes]] = {}
        self._terminating: set[_Key] = set()
        self._starting = threading.BoundedSemaphore(max(2, os.cpu_count() or 1))
        self._ending: set[_Key] = set()  # ended, being reported: no longer running
        self._watched: dict[_Key, _Watched] = {}
        self._watcher: threading.Thread | None = None
        self._stop_watching = threading.Event()
        self._stopping = False

    @property
    def runs_dir(self) -> Path:
        """Where the run logs are: ``<runs_dir>/<namespace>/<workflow>.log``."""
        return self._runs_dir

    def seed_from_runs(self, spec: CronWorkflowSpec) -> StatusSeed | None:
        """What the run logs of this state folder say of a CronWorkflow's past (None:
        nothing), to re-seed a history the store lost: the newest instant run, the counters of
        the runs whose log records their end, and the runs whose log records none (going, or
        lost with their process) as active. ``spec.status`` is added to."""
        folder = self._runs_dir / spec.namespace
        runs: list[tuple[datetime, str, str]] = []
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return None
        for entry in entries:
            stem = entry.name.removesuffix(".log")
            instant = scheduled_time_of(spec.name, stem) if stem != entry.name else None
            if instant is None:
                continue
            phase = ""
            try:
                with open(entry.path, "rb") as log_file:
                    log_file.seek(max(0, os.fstat(log_file.fileno()).st_size - 4096))
                    ends = _FINAL_LINE.findall(log_file.read())
                phase = ends[-1].decode() if ends else ""
            except OSError:
                pass
            runs.append((instant, stem, phase))
        if not runs:
            return None
        runs.sort()
        status = spec.status
        succeeded = sum(1 for _, _, phase in runs if phase == WorkflowPhase.SUCCEEDED)
        failed = sum(
            1 for _, _, phase in runs if phase in (WorkflowPhase.FAILED, WorkflowPhase.ERROR)
        )
        going = tuple(workflow for _, workflow, phase in runs if not phase)
        newest = runs[-1][0]
        return StatusSeed(
            succeeded=status.succeeded + succeeded,
            failed=status.failed + failed,
            last_scheduled_time=max(newest, status.last_scheduled_time or newest),
            phase=status.phase,
            active=tuple(dict.fromkeys((*status.active, *going))),
        )

    def log_path(self, namespace: str, workflow: str) -> Path:
        return self._runs_dir / namespace / f"{workflow}.log"

    def _files(self, namespace: str, workflow: str) -> RunFiles:
        return RunFiles(os.path.abspath(self._runs_dir / namespace / workflow))

    # -- Sink -------------------------------------------------------------------------------

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        with self._lock:
            if self._stopping:
                # A tick still finishing during shutdown: leave the instant undecided for the
                # next start to catch up, rather than start a run only to kill it.
                raise SinkUnavailable("the local executor is shutting down")
        name = workflow_name(spec.name, scheduled_at)
        path = self.log_path(spec.namespace, name)
        if len(os.fsencode(name + LONGEST_SUFFIX)) > _NAME_MAX:
            # Refused before the spawn is recorded, not when the run writes its last file.
            too_long = errno.ENAMETOOLONG
            raise OSError(too_long, os.strerror(too_long), f"{path.parent / name}{LONGEST_SUFFIX}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            log_file = path.open("xb")  # exclusive: the log is the record of the spawn
        except FileExistsError:
            return False
        key = (spec.namespace, name)
        try:
            header = (
                f"# cronwf local executor (a trial runner, not a workflow engine)\n"
                f"# workflow {spec.namespace}/{name} of {spec.key}, "
                f"scheduled {rfc3339(scheduled_at)}\n"
            )
            log_file.write(header.encode())
            log_file.flush()
            thread = threading.Thread(
                target=self._run,
                args=(spec, scheduled_at, log_file),
                name=f"cronwf-run-{name}",
                daemon=True,
            )
            with self._lock:
                self._threads[key] = thread
            thread.start()
        except BaseException:
            # Nothing will run: no record of a spawn either, or a retry would be refused.
            with self._lock:
                self._threads.pop(key, None)
            with contextlib.suppress(OSError):
                log_file.close()
            path.unlink(missing_ok=True)
            raise
        return True

    def spawned_here(self, namespace: str, workflow: str) -> bool:
        """Whether this executor observes that run and has not reported its end yet: it
        started it, or :meth:`recover` found it going under a live supervisor."""
        key = (namespace, workflow)
        with self._lock:
            return key in self._threads or key in self._watched

    def terminate(self, namespace: str, workflow: str) -> None:
        key = (namespace, workflow)
        with self._lock:
            supervisor = self._supervisors.get(key)
            thread = self._threads.get(key)
            watched = self._watched.get(key)
            if supervisor is None and thread is not None and thread.is_alive():
                # Spawned but its supervisor not ready yet: signalled as soon as it is.
                self._terminating.add(key)
        if supervisor is not None:
            _signal(supervisor, signal.SIGTERM)  # forwarded to the command's process group
        elif watched is not None:
            _signal_recorded(watched.record, signal.SIGTERM)

    # -- runs -------------------------------------------------------------------------------

    def _run(self, spec: CronWorkflowSpec, scheduled_at: datetime, log_file: BinaryIO) -> None:
        name = workflow_name(spec.name, scheduled_at)
        key = (spec.namespace, name)
        files = self._files(*key)
        run = Identity(spec.key, spec.namespace, name, scheduled_at.astimezone(UTC).isoformat())
        try:
            ended = self._execute(spec, scheduled_at, files, run, log_file)
        except Exception as error:  # an executor bug must not lose the run's completion
            log.exception("local run %s/%s failed unexpectedly", *key)
            ended = self._end_here(
                files, run, WorkflowPhase.ERROR, f"local executor error: {error}"
            )
        finally:
            with contextlib.suppress(OSError):
                log_file.close()
            with self._lock:
                self._supervisors.pop(key, None)
                self._terminating.discard(key)
        try:
            self._conclude(files, ended)
        finally:
            # Forgotten only once reported: until then the run is ours (see spawned_here).
            with self._lock:
                self._threads.pop(key, None)
                self._ending.discard(key)

    def _execute(
        self,
        spec: CronWorkflowSpec,
        scheduled_at: datetime,
        files: RunFiles,
        run: Identity,
        log_file: BinaryIO,
    ) -> Outcome | Interrupted:
        try:
            local = plan_run(spec, scheduled_at, self._default_timeout)
        except _Unrunnable as error:
            log_file.close()
            return self._end_here(files, run, WorkflowPhase.ERROR, str(error))
        log_file.write(f"# $ {shlex.join(local.argv)}\n".encode())
        log_file.close()  # from here on the supervisor appends to the log
        # Supervisors start a few at a time: a burst of runs starting as many interpreters
        # at once would starve this process, and every spawn() would wait for the CPU.
        with self._starting:
            with self._lock:
                stopping = self._stopping
            if stopping and self._interrupt(files):
                return Interrupted()
            started = self._start_supervisor(files, run, local)
        if isinstance(started, Outcome | Interrupted):
            return started
        with started as supervisor:
            code = supervisor.wait()
        ended = read_outcome(files.outcome)
        if ended is None:
            message = f"the run's supervisor ended without an outcome ({describe_exit(code)})"
            return self._end_here(files, run, WorkflowPhase.ERROR, message)
        return ended

    def _start_supervisor(
        self, files: RunFiles, run: Identity, local: LocalRun
    ) -> subprocess.Popen[bytes] | Outcome | Interrupted:
        """The run's supervisor, once it holds the plan and can be signalled."""
        key = (run.namespace, run.workflow)
        token = files.stem
        with open(files.log, "ab") as stderr:
            try:
                supervisor = subprocess.Popen(
                    [sys.executable, "-S", "-m", "scheduler.supervisor", token],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=_PACKAGE_ROOT,
                    start_new_session=True,  # outlives cronwf; no signal of cronwf's group
                )
            except OSError as error:
                message = f"local executor error: cannot start the run's supervisor: {error}"
                return self._end_here(files, run, WorkflowPhase.ERROR, message)
        assert supervisor.stdin is not None
        assert supervisor.stdout is not None
        try:
            # Recorded before the plan is handed over: when the command runs, it can be found.
            record = Record(run, supervisor.pid, token)
            write_json(files.record, record.to_dict(), durable=False, exclusive=False)
            plan = Plan(run, local.argv, local.env, local.timeout, local.script)
            try:
                supervisor.stdin.write(plan.to_json())
                supervisor.stdin.close()
            except BrokenPipeError:  # it died starting: its exit status says how
                with contextlib.suppress(OSError):
                    supervisor.stdin.close()
            ready = supervisor.stdout.readline() == READY
        except BaseException:
            with supervisor:  # closing its stdin ends it before it runs anything
                raise
        if ready:
            with self._lock:
                self._supervisors[key] = supervisor
                if self._stopping or key in self._terminating:
                    _signal(supervisor, signal.SIGTERM)
        return supervisor

    def _end_here(
        self, files: RunFiles, run: Identity, phase: WorkflowPhase, message: str
    ) -> Outcome | Interrupted:
        """The executor ends the run itself: nothing to run, or nobody left to say how it
        ended. Recorded like a supervisor's outcome, unless one is there already."""
        outcome = Outcome(run, phase.value, message, time.time())
        try:
            if not write_json(files.outcome, outcome.to_dict(), durable=True, exclusive=True):
                existing = read_outcome(files.outcome)
                if existing is not None:
                    return existing
            with open(files.log, "ab") as log_file:
                log_file.write(f"# {phase.value}: {message}\n".encode())
        except (OSError, ValueError):
            log.exception("could not record the end of %s/%s", run.namespace, run.workflow)
        return outcome

    def _interrupt(self, files: RunFiles) -> bool:
        """Mark the run interrupted, unless it ended on its own first: whether it now is."""
        try:
            if write_json(files.outcome, INTERRUPTED_MARK, durable=False, exclusive=True):
                return True
            return isinstance(read_outcome(files.outcome), Interrupted)
        except (OSError, ValueError):
            log.exception("could not mark %s interrupted: it is reported if it ends", files.stem)
            return False

    def _conclude(self, files: RunFiles, ended: Outcome | Interrupted) -> RunFinished | None:
        """Report an outcome (or see an interruption through) and mark it so."""
        if isinstance(ended, Interrupted):
            self._settle(files, files.interrupted)
            return None
        run = RunFinished(
            key=ended.run.key,
            workflow=ended.run.workflow,
            scheduled_at=datetime.fromisoformat(ended.run.scheduled_at),
            phase=WorkflowPhase(ended.phase),
            finished_at=self._on_our_clock(ended.finished_at),
            message=ended.message,
        )
        with self._lock:
            self._ending.add((ended.run.namespace, ended.run.workflow))
        try:
            self._on_finished(run)
        except Exception:
            log.exception(
                "reporting the end of %s/%s failed: left for the next start to report",
                ended.run.namespace,
                ended.run.workflow,
            )
            return None
        # Dying right here reports the run once more at the next start: counting is idempotent.
        self._settle(files, files.reported)
        return run

    def _settle(self, files: RunFiles, final: str) -> None:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.replace(files.outcome, final)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(files.record)
        except OSError:
            log.exception("could not mark the end of %s as seen", files.stem)

    def _on_our_clock(self, finished_at: float) -> datetime:
        """The end time the supervisor wrote (Unix time), on this executor's clock: the same
        instant with the real clock; with another one, as long ago as the run really ended."""
        return self._clock() - timedelta(seconds=max(0.0, time.time() - finished_at))

    def running(self) -> list[tuple[str, str]]:
        """``(namespace, workflow)`` of the runs in progress, recovered ones included."""
        with self._lock:
            going = [*self._threads_alive(), *self._watched]
            return [key for key in going if key not in self._ending]

    def _threads_alive(self) -> Sequence[_Key]:
        return [key for key, thread in self._threads.items() if thread.is_alive()]

    # -- runs of earlier processes ---------------------------------------------------------

    def recover(self) -> Recovered:
        """Learn what became of the runs that earlier processes started on this state folder.

        Called once at start-up. Runs that ended unreported are reported now (through
        ``on_finished``, on the caller's thread); runs still going under a live supervisor are
        watched by one thread and reported when they end (until then :meth:`spawned_here` is
        True for them); runs whose supervisor is gone without an outcome are only listed.
        """
        reported: list[RunFinished] = []
        watching: list[_Key] = []
        lost: list[_Key] = []
        for key, files, settled in self._unsettled():
            with self._lock:
                if self._stopping:
                    break
                if key in self._threads or key in self._watched:
                    continue  # ours already
            if settled:  # seen through, but the process died before it tidied up
                for leftover in (files.outcome, files.record):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
                continue
            try:
                ended = read_outcome(files.outcome)
                if ended is None:
                    record = read_record(files.record)
                    if record is not None and supervisor_alive(record):
                        with self._lock:
                            self._watched[key] = _Watched(files, record)
                        watching.append(key)
                        continue
                    ended = read_outcome(files.outcome)  # it may have ended meanwhile
                if ended is None:
                    lost.append(key)
                    continue
                run = self._conclude(files, ended)
            except (OSError, ValueError):
                log.exception("%s/%s: what its supervisor left cannot be read", *key)
                lost.append(key)
                continue
            if run is not None:
                reported.append(run)
        with self._lock:
            if self._watched and self._watcher is None and not self._stopping:
                self._watcher = threading.Thread(
                    target=self._watch, name="cronwf-run-watcher", daemon=True
                )
                self._watcher.start()
        return Recovered(tuple(reported), tuple(watching), tuple(lost))

    def _unsettled(self) -> list[tuple[_Key, RunFiles, bool]]:
        """Runs that left an outcome or a supervisor record; settled runs leave neither (True
        when one was settled all the same: the process died before it removed the record, or
        a shutdown marked a run interrupted as it was being reported)."""
        found: list[tuple[_Key, RunFiles, bool]] = []
        try:
            folders = sorted(os.scandir(self._runs_dir), key=lambda entry: entry.name)
        except FileNotFoundError:
            return found
        for folder in folders:
            if not folder.is_dir():
                continue
            names = {entry.name for entry in os.scandir(folder.path)}
            stems = {
                name.removesuffix(suffix)
                for name in names
                for suffix in (".outcome.json", ".supervisor.json")
                if name.endswith(suffix)
            }
            for stem in sorted(stems):
                files = RunFiles(os.path.abspath(os.path.join(folder.path, stem)))
                settled = f"{stem}.reported.json" in names or f"{stem}{LONGEST_SUFFIX}" in names
                found.append(((folder.name, stem), files, settled))
        return found

    def _watch(self) -> None:
        """Report recovered runs as they end: one thread looks at all their outcome files."""
        while not self._stop_watching.wait(_WATCH_INTERVAL):
            with self._lock:
                watched = list(self._watched.items())
                if not watched:
                    self._watcher = None
                    return
            for key, run in watched:
                if self._stop_watching.is_set():
                    return
                try:
                    over = self._look_at(run)
                except Exception:
                    log.exception("%s/%s: watching the run failed: no longer watched", *key)
                    over = True
                if over:
                    with self._lock:
                        self._watched.pop(key, None)
                        self._ending.discard(key)

    def _look_at(self, run: _Watched) -> bool:
        """Whether the watched run is over (and reported, unless it was interrupted)."""
        ended = read_outcome(run.files.outcome)
        if ended is None:
            if supervisor_alive(run.record):
                return False
            ended = read_outcome(run.files.outcome)  # written just before it exited
        if ended is None:  # the supervisor died before the command's end: nobody knows it
            message = "the run's supervisor ended without an outcome"
            ended = self._end_here(run.files, run.record.run, WorkflowPhase.ERROR, message)
        self._conclude(run.files, ended)
        return True

    # -- shutdown ---------------------------------------------------------------------------

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop every run in progress (SIGTERM, then SIGKILL after ``grace``).

        Interrupted runs report no completion: the scheduler stopped them, they did not fail,
        so they are not counted (like a Workflow deleted before it finished). Each is marked
        interrupted before it is signalled, so that it is not reported later either, not even
        if this process dies before the run is over. A run that ended on its own first is
        still reported.
        """
        deadline = time.monotonic() + grace
        with self._lock:
            self._stopping = True
            own = {key: self._threads[key] for key in self._threads_alive()}
            # A run being reported ended on its own: it is neither marked nor signalled.
            stopped = [key for key in own if key not in self._ending]
            watched = {k: run for k, run in self._watched.items() if k not in self._ending}
            watcher = self._watcher
        self._stop_watching.set()
        for key in stopped:
            self._interrupt(self._files(*key))
        interrupted = {key for key, run in watched.items() if self._interrupt(run.files)}
        with self._lock:
            supervisors = [self._supervisors[key] for key in stopped if key in self._supervisors]
        for supervisor in supervisors:
            _signal(supervisor, signal.SIGTERM)
        for run in watched.values():
            _signal_recorded(run.record, signal.SIGTERM)
        if watcher is not None:
            watcher.join(max(0.0, deadline - time.monotonic()))
        for thread in own.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        _wait_until_gone([run.record for run in watched.values()], deadline)
        with self._lock:  # supervisors that became ready meanwhile are in the list now
            supervisors = [self._supervisors[key] for key in stopped if key in self._supervisors]
        for supervisor in supervisors:
            _signal(supervisor, signal.SIGUSR1)  # the supervisor kills the command's group
        for key, run in watched.items():
            if key in interrupted and supervisor_alive(run.record):
                _signal_recorded(run.record, signal.SIGUSR1)  # seen through at the next start
                continue
            try:
                self._look_at(run)  # ended on its own: reported; or interrupted and over
            except Exception:
                log.exception("%s/%s: the end of the run cannot be seen through", *key)
        with self._lock:
            self._watched.clear()


def _signal(supervisor: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal a run's supervisor (not its group: the command has a group of its own)."""
    if supervisor.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor.pid, sig)


def _signal_recorded(record: Record, sig: signal.Signals) -> None:
    """Signal the supervisor of a run of an earlier process, if it still is that process."""
    if supervisor_alive(record):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(record.pid, sig)


def _wait_until_gone(records: Sequence[Record], deadline: float) -> None:
    """Wait for supervisors that are not children of this process (no wait() for them)."""
    pending = list(records)
    while pending and time.monotonic() < deadline:
        pending = [record for record in pending if supervisor_alive(record)]
        if pending:
            time.sleep(0.02)
