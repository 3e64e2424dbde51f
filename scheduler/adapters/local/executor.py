"""The local executor: runs a spawned Workflow's entrypoint as a subprocess (embedded mode).

Without a cluster there is no Argo workflow controller, yet people want to try schedules and
stop policies with real runs. The local executor is a *trial runner, not a workflow engine*:
it runs the entrypoint template when it is a ``container`` (``command`` + ``args``, on this
host, the image ignored) or a ``script`` (``source`` written to a file and passed to
``command``), with the template's ``env`` values, under a timeout
(``activeDeadlineSeconds`` of the Workflow when set, else the executor's default). Exit code 0
is ``Succeeded``, anything else ``Failed``; any other entrypoint (steps, DAG, resource...)
ends ``Error`` with a message saying why. Argo's ``{{workflow.*}}`` placeholders are
substituted so that no value is ever read as code (:mod:`scheduler.adapters.local.run_plan` says
how). A run
gets a minimal environment (:func:`base_environment` and the template's ``env``), never the
service's, which holds cronwf's configuration and its secrets.

Each run writes its output to ``<state>/runs/<namespace>/<workflow>.log``. That file is also
the memory of what was spawned: a Workflow whose log exists "already exists", so a restart
that catches up an instant already run does not run it twice.

A run must be counted once even when cronwf dies before it ends (``kill -9``, OOM, a
restart), so its outcome must not live only in this process. Each run is therefore executed
by a supervisor process (:mod:`scheduler.adapters.local.supervisor`, which also defines the run's
files)
that outlives cronwf and writes the outcome durably next to the log. Here, a worker thread
starts the supervisor, hands it the plan on its stdin, waits for it and reports the outcome
it wrote through ``on_finished``; once ``on_finished`` returned, the outcome file is renamed
``.reported.json``. Should this process die between the two, the next start reports the run
once more: harmless, counting a completion is idempotent downstream. At start-up,
:meth:`LocalExecutor.recover` reports what earlier processes on this state folder left
unreported and watches their runs still going under a live supervisor.

Runs are bounded: a fixed pool of ``max_running`` workers executes them; spawned runs beyond
wait in a FIFO of at most ``max_waiting`` that holds only their place (a waiting run is a
spawned Workflow, active for the concurrency policy, and its deadline counts from its start),
and a run spawned when that is full ends ``Error`` at once. ``spawn`` never waits for a slot,
so runs never delay decisions. Runs the executor ends without a worker (refused, terminated
while waiting) are reported by one thread of their own, never on the caller's.

Every file of a run is ``<state>/runs/<namespace>/<workflow>.*``: a namespace or Workflow name
that is not one plain file name is refused by ``spawn`` (:class:`SpawnRejected`, a
``SubmissionError`` of that instant alone).

The end time reported is the supervisor's (its wall clock), expressed on the executor's
clock: the very instant with the real clock; with an injected clock (tests, simulations),
that clock's "now" less how long ago the run ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policies.decision import WorkflowPhase
from policies.spec import CronWorkflowSpec, StatusSeed
from policies.workflow import rfc3339, scheduled_time_of, workflow_name
from scheduler.adapters.local.run_plan import LocalRun, Unrunnable, plan_run
from scheduler.adapters.local.supervisor import (
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
from scheduler.core.engine import SinkUnavailable, SpawnRejected

__all__ = [
    "DEFAULT_MAX_LOCAL_RUNS",
    "DEFAULT_MAX_WAITING_LOCAL_RUNS",
    "LocalExecutor",
    "LocalRun",
    "Recovered",
    "RunFinished",
    "base_environment",
    "plan_run",
]

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


@dataclass(frozen=True)
class _Queued:
    """A spawned run waiting for a slot: no thread, no process, no open file."""

    spec: CronWorkflowSpec
    scheduled_at: datetime
    files: RunFiles
    run: Identity
    queued_at: float  # time.monotonic()


_Key = tuple[str, str]

DEFAULT_MAX_LOCAL_RUNS = 32
"""Local runs executing at once (each a supervisor and a command, and a thread here)."""
DEFAULT_MAX_WAITING_LOCAL_RUNS = 1_000
"""Spawned local runs waiting for a slot; beyond, a spawned run ends ``Error`` at once."""

# Seconds between two looks at the outcome files of recovered runs (by one thread for all).
_WATCH_INTERVAL = 0.5
# The longest file name most file systems take; the name of a run's last file must fit.
_NAME_MAX = 255
# The supervisor starts in the folder that holds this package: ``-m`` then imports the same
# code as cronwf's, without the site packages (``-S``) whose set-up would slow every run.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_LOG_EVERY = 60.0  # seconds between two log lines about the cap
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every run starts from (the template's ``env`` is added to it), and the
    whole environment of its supervisor: ``PATH`` (the service's, or a standard one), ``HOME``
    (the service's, or the user's home), ``LANG`` (the service's, or ``C.UTF-8``) and ``TZ``
    when the service has one. Nothing else of the service's environment: it holds cronwf's
    configuration (``CRONWF_REDIS_URL`` with its password), Kubernetes credentials and more."""
    base = {
        "PATH": environ.get("PATH") or _DEFAULT_PATH,
        "HOME": environ.get("HOME") or _home(),
        "LANG": environ.get("LANG") or "C.UTF-8",
    }
    if environ.get("TZ"):
        base["TZ"] = environ["TZ"]
    return base


def _home() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir or "/"
    except (KeyError, OSError):
        return "/"


class LocalExecutor:
    """A :class:`scheduler.core.engine.Sink` that runs Workflows as local subprocesses.

    At most ``max_running`` runs execute at once, on a pool of as many threads; spawned runs
    beyond wait in a FIFO of at most ``max_waiting`` (holding nothing but their place), and a
    spawned run that finds that full too ends ``Error`` at once. ``spawn`` never waits for a
    slot."""

    def __init__(
        self,
        state_dir: Path,
        on_finished: Callable[[RunFinished], None],
        default_timeout: float = 600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_running: int = DEFAULT_MAX_LOCAL_RUNS,
        max_waiting: int = DEFAULT_MAX_WAITING_LOCAL_RUNS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if max_running < 1 or max_waiting < 0:
            raise ValueError("max_running must be at least 1 and max_waiting not negative")
        self._runs_dir = state_dir / "runs"
        self._on_finished = on_finished
        self._default_timeout = default_timeout
        self._clock = clock
        self._max_running = max_running
        self._max_waiting = max_waiting
        self._base_env = base_environment(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a run is waiting, or shutdown
        self._queue: OrderedDict[_Key, _Queued] = OrderedDict()
        self._active: set[_Key] = set()  # taken by a worker, until reported
        self._workers: list[threading.Thread] = []
        self._idle = 0  # workers waiting for a run
        self._refused = 0
        # When the cap and the full queue were last logged (time.monotonic()), and how many
        # runs were refused since: a line a minute at most, however busy.
        self._logged_waiting = -_LOG_EVERY
        self._logged_refused = -_LOG_EVERY
        self._refused_unlogged = 0
        # Runs the executor ended itself without a worker (refused, terminated while
        # waiting), reported by one thread: never on the caller's (a tick's) thread.
        self._to_report: deque[tuple[_Key, RunFiles, Outcome]] = deque()
        self._reporting: set[_Key] = set()
        self._reporter: threading.Thread | None = None
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

    def local_runs(self) -> tuple[int, int, int]:
        """``(running, waiting, refused so far)``: the runs of this process's pool, for the
        metrics (runs of earlier processes that are watched take no slot)."""
        with self._lock:
            return len(self._active), len(self._queue), self._refused

    def seed_from_runs(self, spec: CronWorkflowSpec) -> StatusSeed | None:
        """What the run logs of this state folder say of a CronWorkflow's past (None:
        nothing), to re-seed a history the store lost: the newest instant run, the counters of
        the runs whose log records their end, and the runs whose log records none (going, or
        lost with their process) as active. ``spec.status`` is added to."""
        if _unsafe_component(spec.namespace, "") is not None:
            return None  # it never ran here: spawn refuses it
        folder = self._runs_dir / spec.namespace
        runs: list[tuple[datetime, str, str]] = []
        try:
            entries = list(os.scandir(folder))
        except (OSError, ValueError):
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

    def _check_paths(self, spec: CronWorkflowSpec, workflow: str) -> None:
        """Every file of the run is inside ``<state>/runs/<namespace>/``: raises
        :class:`SpawnRejected` otherwise (that CronWorkflow's instant fails, nothing else)."""
        for what, value, suffix in (
            ("namespace", spec.namespace, ""),
            ("Workflow name", workflow, LONGEST_SUFFIX),
        ):
            problem = _unsafe_component(value, suffix)
            if problem is not None:
                raise SpawnRejected(
                    f"the local executor cannot run {_short(spec.key)}: its {what} {_short(value)} "
                    f"{problem}; run files are {self._runs_dir}/<namespace>/<workflow>.*: "
                    "name CronWorkflows and namespaces as Kubernetes does (lowercase letters, "
                    "digits, '-' and '.', a name at most 52 characters)"
                )
        runs = os.path.realpath(self._runs_dir)
        folder = os.path.realpath(self._runs_dir / spec.namespace)
        if os.path.dirname(folder) != runs:
            link = self._runs_dir / spec.namespace
            raise SpawnRejected(
                f"the local executor cannot run {_short(spec.key)}: {link} leads to {folder}, "
                f"outside {runs}: remove that link"
            )

    # -- Sink -------------------------------------------------------------------------------

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        with self._lock:
            if self._stopping:
                # A tick still finishing during shutdown: leave the instant undecided for the
                # next start to catch up, rather than start a run only to kill it.
                raise SinkUnavailable("the local executor is shutting down")
        name = workflow_name(spec.name, scheduled_at)
        self._check_paths(spec, name)  # before the spawn is recorded
        path = self.log_path(spec.namespace, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            log_file = path.open("xb")  # exclusive: the log is the record of the spawn
        except FileExistsError:
            return False
        key = (spec.namespace, name)
        files = self._files(*key)
        run = Identity(spec.key, spec.namespace, name, scheduled_at.astimezone(UTC).isoformat())
        try:
            with log_file:
                header = (
                    f"# cronwf local executor (a trial runner, not a workflow engine)\n"
                    f"# workflow {spec.namespace}/{name} of {spec.key}, "
                    f"scheduled {rfc3339(scheduled_at)}\n"
                )
                log_file.write(header.encode())
            admitted = self._admit(key, _Queued(spec, scheduled_at, files, run, time.monotonic()))
        except BaseException:
            # Nothing will run: no record of a spawn either, or a retry would be refused.
            path.unlink(missing_ok=True)
            raise
        if not admitted:
            message = (
                f"not run: {self._max_running} local runs are running and "
                f"{self._max_waiting} waiting for a slot, the most allowed "
                "(--max-local-runs, --max-waiting-local-runs)"
            )
            outcome = self._end_here(files, run, WorkflowPhase.ERROR, message)
            if isinstance(outcome, Outcome):
                self._report_later(key, files, outcome)
        return True

    def _admit(self, key: _Key, queued: _Queued) -> bool:
        """Queue the run for a worker (starting one if none is free); False when the waiting
        queue is full. Raises when no worker exists and none can be started."""
        with self._lock:
            if self._stopping:
                raise SinkUnavailable("the local executor is shutting down")
            if len(self._active) + len(self._queue) >= self._max_running + self._max_waiting:
                self._refused += 1
                self._refused_unlogged += 1
                if time.monotonic() - self._logged_refused >= _LOG_EVERY:
                    self._logged_refused = time.monotonic()
                    log.warning(
                        "local runs: %d running and %d waiting, the most allowed: %d spawned "
                        "runs ended Error without running (--max-local-runs, "
                        "--max-waiting-local-runs)",
                        len(self._active),
                        len(self._queue),
                        self._refused_unlogged,
                    )
                    self._refused_unlogged = 0
                return False
            self._queue[key] = queued
            if len(self._queue) <= self._idle:
                pass  # an idle worker takes it
            elif len(self._workers) < self._max_running:
                worker = threading.Thread(
                    target=self._work, name=f"cronwf-run-{len(self._workers)}", daemon=True
                )
                try:
                    worker.start()
                except BaseException:
                    if not self._workers:
                        del self._queue[key]
                        raise
                    log.exception("could not start another local run worker: the run waits")
                else:
                    self._workers.append(worker)
            elif time.monotonic() - self._logged_waiting >= _LOG_EVERY:
                self._logged_waiting = time.monotonic()
                log.info(
                    "local runs: all %d slots are taken: spawned runs wait for one "
                    "(--max-local-runs; at most --max-waiting-local-runs %d wait)",
                    self._max_running,
                    self._max_waiting,
                )
            self._wake.notify()
        return True

    def spawned_here(self, namespace: str, workflow: str) -> bool:
        """Whether this executor observes that run and has not reported its end yet: it
        spawned it (running or waiting), or :meth:`recover` found it going under a live
        supervisor."""
        key = (namespace, workflow)
        with self._lock:
            return (
                key in self._active
                or key in self._queue
                or key in self._reporting
                or key in self._watched
            )

    def terminate(self, namespace: str, workflow: str) -> None:
        key = (namespace, workflow)
        with self._lock:
            queued = self._queue.pop(key, None)
            supervisor = self._supervisors.get(key)
            watched = self._watched.get(key)
            if queued is None and supervisor is None and key in self._active:
                # Started but its supervisor not ready yet: signalled as soon as it is.
                self._terminating.add(key)
            if queued is not None:
                self._reporting.add(key)
        if queued is not None:
            message = "terminated while waiting for a local run slot: it never started"
            outcome = self._end_here(queued.files, queued.run, WorkflowPhase.FAILED, message)
            if isinstance(outcome, Outcome):
                self._report_later(key, queued.files, outcome)
            else:
                with self._lock:
                    self._reporting.discard(key)
        elif supervisor is not None:
            _signal(supervisor, signal.SIGTERM)  # forwarded to the command's process group
        elif watched is not None:
            _signal_recorded(watched.record, signal.SIGTERM)

    # -- runs -------------------------------------------------------------------------------

    def _work(self) -> None:
        """A worker of the pool: runs waiting runs, oldest first, one at a time."""
        while True:
            with self._lock:
                self._idle += 1
                self._wake.wait_for(lambda: bool(self._queue) or self._stopping)
                self._idle -= 1
                if self._stopping:
                    return  # waiting runs are not started: shutdown ends them
                key, queued = self._queue.popitem(last=False)
                self._active.add(key)
            self._run(key, queued)

    def _report_later(self, key: _Key, files: RunFiles, outcome: Outcome) -> None:
        with self._lock:
            self._reporting.add(key)
            self._to_report.append((key, files, outcome))
            if self._reporter is None and not self._stopping:
                self._reporter = threading.Thread(
                    target=self._report_ended, name="cronwf-run-reporter", daemon=True
                )
                self._reporter.start()
            self._wake.notify_all()

    def _report_ended(self) -> None:
        """Report the runs the executor ended itself (a worker may not be free for long)."""
        while True:
            with self._lock:
                self._wake.wait_for(lambda: bool(self._to_report) or self._stopping)
                if self._stopping:
                    return  # their outcome files are reported by the next start
                key, files, outcome = self._to_report.popleft()
            try:
                self._conclude(files, outcome)
            finally:
                with self._lock:
                    self._reporting.discard(key)
                    self._ending.discard(key)

    def _run(self, key: _Key, queued: _Queued) -> None:
        files, run = queued.files, queued.run
        try:
            ended = self._execute(queued)
        except Exception as error:  # an executor bug must not lose the run's completion
            log.exception("local run %s/%s failed unexpectedly", *key)
            ended = self._end_here(
                files, run, WorkflowPhase.ERROR, f"local executor error: {error}"
            )
        finally:
            with self._lock:
                self._supervisors.pop(key, None)
                self._terminating.discard(key)
        try:
            self._conclude(files, ended)
        finally:
            # Forgotten only once reported: until then the run is ours (see spawned_here).
            with self._lock:
                self._active.discard(key)
                self._ending.discard(key)

    def _execute(self, queued: _Queued) -> Outcome | Interrupted:
        files, run = queued.files, queued.run
        waited = time.monotonic() - queued.queued_at
        with open(files.log, "ab") as log_file:
            if waited >= 0.1:
                log_file.write(
                    f"# waited {waited:.1f}s for a local run slot (--max-local-runs "
                    f"{self._max_running})\n".encode()
                )
            try:
                local = plan_run(queued.spec, queued.scheduled_at, self._default_timeout)
            except Unrunnable as error:
                log_file.close()
                return self._end_here(files, run, WorkflowPhase.ERROR, str(error))
            for note in local.notes:
                log_file.write(f"# {note}\n".encode())
            log_file.write(f"# $ {shlex.join(local.argv)}\n".encode())
        # From here on the supervisor appends to the log.
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

    def _environment(self, run: Identity, local: LocalRun) -> dict[str, str]:
        """The run's whole environment: the base, Argo's names for the pod and its container
        (one pod per Workflow here, named after it), then the template's ``env``."""
        return {
            **self._base_env,
            "ARGO_POD_NAME": run.workflow,
            "ARGO_CONTAINER_NAME": "main",
            **local.env,
        }

    def _start_supervisor(
        self, files: RunFiles, run: Identity, local: LocalRun
    ) -> subprocess.Popen[bytes] | Outcome | Interrupted:
        """The run's supervisor, once it holds the plan and can be signalled."""
        key = (run.namespace, run.workflow)
        token = files.stem
        with open(files.log, "ab") as stderr:
            try:
                supervisor = subprocess.Popen(
                    [sys.executable, "-S", "-m", "scheduler.adapters.local.supervisor", token],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=_PACKAGE_ROOT,
                    env=self._base_env,  # none of the service's secrets
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
            plan = Plan(run, local.argv, self._environment(run, local), local.timeout, local.script)
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
        """``(namespace, workflow)`` of the runs in progress, waiting and recovered ones
        included."""
        with self._lock:
            going = [*self._active, *self._queue, *self._watched]
            return [key for key in going if key not in self._ending]

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
                if key in self._active or key in self._queue or key in self._watched:
                    continue  # ours already
                if key in self._reporting:
                    continue
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
            try:
                names = {entry.name for entry in os.scandir(folder.path)}
            except OSError as error:  # the others are still looked at
                log.error("cannot look for earlier runs in %s: %s", folder.path, error)
                continue
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
        still reported. Runs waiting for a slot are not started: they end interrupted too.
        """
        deadline = time.monotonic() + grace
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            workers = [*self._workers, *([self._reporter] if self._reporter else [])]
            # A run being reported ended on its own: it is neither marked nor signalled.
            stopped = [key for key in self._active if key not in self._ending]
            waiting = list(self._queue.values())
            self._queue.clear()
            watched = {k: run for k, run in self._watched.items() if k not in self._ending}
            watcher = self._watcher
        self._stop_watching.set()
        for queued in waiting:
            if self._interrupt(queued.files):
                self._settle(queued.files, queued.files.interrupted)
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
        for thread in workers:
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


def _unsafe_component(value: str, suffix: str) -> str | None:
    """Why ``value`` (plus ``suffix``) cannot be one file name in a folder; None if it can."""
    if not value:
        return "is empty"
    if value in (".", ".."):
        return "is a reference to a folder, not a folder name"
    for character, what in (("/", "a '/'"), ("\0", "a NUL character")):
        if character in value:
            return f"contains {what}"
    try:
        size = len(os.fsencode(value + suffix))
    except UnicodeError:
        return "cannot be written as a file name on this system"
    if size > _NAME_MAX:
        return (
            f"is too long for a file name: {size} bytes with the suffix {suffix!r}, where the "
            f"file system takes {_NAME_MAX}"
            if suffix
            else f"is too long for a folder name: {size} bytes, where the file system takes "
            f"{_NAME_MAX}"
        )
    return None


def _short(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


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
