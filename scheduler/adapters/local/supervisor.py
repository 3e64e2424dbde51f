"""The supervisor of one local run: the process that runs a Workflow's command and outlives cronwf.

Why a process of its own: the local executor used to start the command and learn its end by
waiting for it, so how a run ended lived only in the memory of the cronwf process. When cronwf
died (``kill -9``, OOM) or was restarted meanwhile, the command ran on and finished, but nobody
learnt its end and the run stayed active. The executor now starts one supervisor per run, in a
session of its own (no signal meant for cronwf's process group reaches it). The supervisor runs
the command, enforces the time limit, and writes how the run ended *durably* next to its log,
where any later executor on the same state folder finds it.

It is started as ``python -S -m scheduler.adapters.local.supervisor <folder>/<workflow>`` and
imports only
the standard library: a run should not wait for cronwf's dependencies to load. The argument
is the run's path stem (its files are the stem plus a suffix); it is also the token that tells
this run's supervisor from an unrelated process that got its pid (``/proc/<pid>/cmdline``).

The conversation with the executor:

* **stdin**: the plan, one JSON object (:class:`Plan`), then end of file. It is handed over
  after the executor wrote the supervisor's record (below), so that whenever a command runs,
  its supervisor can be found. End of file before a complete plan (cronwf died while handing
  it over) ends the supervisor without running anything.
* **stdout**: the line ``ready`` once the supervisor holds the plan and its signal handlers
  are installed. Before that a SIGTERM would kill it without an outcome, so the executor
  signals it only afterwards.
* **signals**: SIGTERM is forwarded to the command's process group (``terminate``, shutdown);
  SIGUSR1 kills that group with SIGKILL (the executor's escalation after its shutdown grace).
* **stderr** is the run's log: should the supervisor itself fail, the traceback is there.

The files of a run, in ``<state>/runs/<namespace>/`` (this module is their one definition):

* ``<workflow>.log``: created by the executor when it spawns the run (the record of the
  spawn); the supervisor appends the command's output and the final ``# <Phase>: <message>``.
* ``<workflow>.supervisor.json``: the supervisor's pid and token (:class:`Record`), written by
  the executor as soon as the process exists.
* ``<workflow>.outcome.json``: how the run ended, not yet reported (:class:`Outcome`); or
  ``{"interrupted": true}``, written by the executor's shutdown *before* it signals the run.
  The file is created once and never replaced (a hard link of a complete, fsynced temporary
  file): the supervisor and a shutdown race for it and the first writer decides, so a run that
  ended on its own just as cronwf stopped is still reported, and a run that cronwf interrupted
  is never reported, even when cronwf died before the run was over.
* ``<workflow>.reported.json`` / ``<workflow>.interrupted.json``: the outcome file renamed once
  the end was reported, or once the interruption was seen through (the record is then removed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

# Neither dataclasses nor typing nor pathlib: each would add to the start-up of every run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

__all__ = [
    "LONGEST_SUFFIX",
    "READY",
    "Identity",
    "Interrupted",
    "Outcome",
    "Plan",
    "Record",
    "RunFiles",
    "describe_exit",
    "main",
    "read_outcome",
    "read_record",
    "supervisor_alive",
    "write_json",
]

READY = b"ready\n"
LONGEST_SUFFIX = ".interrupted.json"


class RunFiles:
    """The files of one run: its path stem (``<folder>/<workflow>``) plus a suffix each."""

    __slots__ = ("stem",)

    def __init__(self, stem: str) -> None:
        self.stem = stem

    @property
    def folder(self) -> str:
        return os.path.dirname(self.stem)

    @property
    def workflow(self) -> str:
        return os.path.basename(self.stem)

    @property
    def log(self) -> str:
        return self.stem + ".log"

    @property
    def record(self) -> str:
        return self.stem + ".supervisor.json"

    @property
    def outcome(self) -> str:
        return self.stem + ".outcome.json"

    @property
    def reported(self) -> str:
        return self.stem + ".reported.json"

    @property
    def interrupted(self) -> str:
        return self.stem + LONGEST_SUFFIX


class Identity:
    """Which run: enough to report its end without the CronWorkflow's spec."""

    __slots__ = ("key", "namespace", "scheduled_at", "workflow")

    def __init__(self, key: str, namespace: str, workflow: str, scheduled_at: str) -> None:
        self.key = key
        self.namespace = namespace
        self.workflow = workflow
        self.scheduled_at = scheduled_at  # RFC 3339

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "namespace": self.namespace,
            "workflow": self.workflow,
            "scheduledAt": self.scheduled_at,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Identity:
        key, namespace, workflow = str(data["key"]), str(data["namespace"]), str(data["workflow"])
        return Identity(key, namespace, workflow, str(data["scheduledAt"]))


class Plan:
    """What the supervisor runs: the command line, its whole environment (the supervisor adds
    nothing, and inherits only a minimal one itself), its time limit, and the script to write
    to a file and append to the command line (``script`` templates)."""

    __slots__ = ("argv", "env", "run", "script", "timeout")

    def __init__(
        self,
        run: Identity,
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout: float,
        script: str | None = None,
    ) -> None:
        self.run = run
        self.argv = tuple(argv)
        self.env = dict(env)
        self.timeout = timeout
        self.script = script

    def to_json(self) -> bytes:
        data = {
            **self.run.to_dict(),
            "argv": list(self.argv),
            "env": self.env,
            "timeout": self.timeout,
            "script": self.script,
        }
        return json.dumps(data).encode()

    @staticmethod
    def from_json(text: bytes) -> Plan:
        """Raises ``ValueError`` (or ``KeyError``, ``TypeError``) on an incomplete plan."""
        data = json.loads(text)
        script = data["script"]
        return Plan(
            run=Identity.from_dict(data),
            argv=[str(a) for a in data["argv"]],
            env={str(k): str(v) for k, v in data["env"].items()},
            timeout=float(data["timeout"]),
            script=None if script is None else str(script),
        )


class Outcome:
    """How a run ended. ``finished_at`` is Unix time (seconds) by the supervisor's clock."""

    __slots__ = ("exit_code", "finished_at", "message", "phase", "run")

    def __init__(
        self,
        run: Identity,
        phase: str,
        message: str,
        finished_at: float,
        exit_code: int | None = None,
    ) -> None:
        self.run = run
        self.phase = phase  # Succeeded, Failed or Error
        self.message = message
        self.finished_at = finished_at
        self.exit_code = exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run.to_dict(),
            "phase": self.phase,
            "message": self.message,
            "finishedAt": self.finished_at,
            "exitCode": self.exit_code,
        }


class Interrupted:
    """The outcome file says the executor interrupted the run (shutdown): never reported."""

    __slots__ = ()


INTERRUPTED_MARK: Mapping[str, Any] = {"interrupted": True}


class Record:
    """A live run's supervisor: its pid, and the token of its command line."""

    __slots__ = ("pid", "run", "token")

    def __init__(self, run: Identity, pid: int, token: str) -> None:
        self.run = run
        self.pid = pid
        self.token = token

    def to_dict(self) -> dict[str, Any]:
        return {**self.run.to_dict(), "pid": self.pid, "token": self.token}


def write_json(path: str, value: Mapping[str, Any], *, durable: bool, exclusive: bool) -> bool:
    """Write ``value`` to ``path`` atomically: readers see no file or the whole of it.

    ``exclusive``: create it only if it does not exist yet (a hard link of the complete
    temporary file), returning False when it did. ``durable``: fsync the file and its folder.
    """
    data = json.dumps(value).encode()
    folder = os.path.dirname(path)
    descriptor, temporary = tempfile.mkstemp(prefix=".cronwf-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        if not exclusive:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: exclusive, not atomic
                if not _create_exclusive(path, data, durable):
                    return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    if durable:
        _fsync_folder(folder)
    return True


def _create_exclusive(path: str, data: bytes, durable: bool) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    return True


def _fsync_folder(folder: str) -> None:
    descriptor = os.open(folder or ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_json(path: str) -> dict[str, Any] | None:
    """The file's object, or None when there is no file; ``ValueError`` when unreadable."""
    try:
        with open(path, "rb") as file:
            text = file.read()
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def read_outcome(path: str) -> Outcome | Interrupted | None:
    """The outcome file: None when there is none yet; ``ValueError`` when unreadable."""
    data = _read_json(path)
    if data is None:
        return None
    if data.get("interrupted") is True:
        return Interrupted()
    try:
        code = data["exitCode"]
        return Outcome(
            run=Identity.from_dict(data),
            phase=str(data["phase"]),
            message=str(data["message"]),
            finished_at=float(data["finishedAt"]),
            exit_code=None if code is None else int(code),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: not an outcome ({error!r})") from error


def read_record(path: str) -> Record | None:
    """The supervisor's record: None when there is none; ``ValueError`` when unreadable."""
    data = _read_json(path)
    if data is None:
        return None
    try:
        return Record(Identity.from_dict(data), int(data["pid"]), str(data["token"]))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a supervisor record ({error!r})") from error


def supervisor_alive(record: Record) -> bool:
    """Whether the recorded supervisor still runs (not merely its pid: the token must match).

    On Linux its ``/proc/<pid>/cmdline`` must hold the token (a zombie's is empty: gone). Where
    there is no ``/proc``, only that the pid exists (a reused pid is then mistaken for it).
    """
    try:
        with open(f"/proc/{record.pid}/cmdline", "rb") as file:
            cmdline = file.read()
    except FileNotFoundError:
        if os.path.exists("/proc/self"):
            return False
        return _pid_exists(record.pid)
    except PermissionError:
        return _pid_exists(record.pid)
    return os.fsencode(record.token) in cmdline.split(b"\0")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_exit(code: int) -> str:
    """``exit code N`` or ``killed by signal N``, as a run's message says it."""
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# -- the supervising process ------------------------------------------------------------------


class _Supervisor:
    """Runs one command; the signal handlers run between the main thread's bytecodes."""

    def __init__(self) -> None:
        self.command: subprocess.Popen[bytes] | None = None
        self.pending: signal.Signals | None = None  # received before the command existed
        self.timed_out = False

    def on_term(self, _signum: int, _frame: FrameType | None) -> None:
        self._signal(signal.SIGTERM)

    def on_kill(self, _signum: int, _frame: FrameType | None) -> None:
        self._signal(signal.SIGKILL)

    def on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if self.command is not None and self.command.returncode is None:
            self.timed_out = True
            self._killpg(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.command is None:
            if self.pending is None or sig is signal.SIGKILL:
                self.pending = sig
        elif self.command.returncode is None:
            self._killpg(sig)

    def _killpg(self, sig: signal.Signals) -> None:
        assert self.command is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.command.pid, sig)

    def run(self, plan: Plan, log_path: str) -> tuple[str, str, int | None]:
        """``(phase, message, exit code)``: the outcomes the executor has always given."""
        workdir = tempfile.mkdtemp(prefix="cronwf-")
        try:
            argv = list(plan.argv)
            if plan.script is not None:
                script_path = os.path.join(workdir, "script")
                with open(script_path, "w") as script:
                    script.write(plan.script)
                argv.append(script_path)
            with open(log_path, "ab") as log:
                try:
                    self.command = subprocess.Popen(
                        argv,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        cwd=workdir,
                        env=plan.env,  # the whole of it: nothing of cronwf's
                        start_new_session=True,  # a group of its own, signalled as a whole
                    )
                except OSError as error:
                    return "Failed", f"cannot start {argv[0]!r}: {error.strerror}", None
            if self.pending is not None:
                self._signal(self.pending)
            signal.setitimer(signal.ITIMER_REAL, plan.timeout)
            code = self.command.wait()
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if self.timed_out:
            return "Failed", f"timed out after {plan.timeout:g}s", code
        return ("Succeeded" if code == 0 else "Failed"), describe_exit(code), code


def main(argv: Sequence[str] | None = None) -> int:
    """Supervise the run whose path stem is the one argument (see the module docstring)."""
    args = sys.argv[1:] if argv is None else list(argv)
    files = RunFiles(args[0])
    supervisor = _Supervisor()
    signal.signal(signal.SIGTERM, supervisor.on_term)
    signal.signal(signal.SIGUSR1, supervisor.on_kill)
    signal.signal(signal.SIGALRM, supervisor.on_alarm)
    try:
        plan = Plan.from_json(sys.stdin.buffer.read())
    except (ValueError, KeyError, TypeError):
        return 2  # the plan never arrived whole: nothing ran, nothing to say
    with contextlib.suppress(OSError):  # cronwf may be gone already: the run goes on
        os.write(1, READY)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    phase, message, code = supervisor.run(plan, files.log)
    with open(files.log, "ab") as log:
        log.write(f"# {phase}: {message}\n".encode())
    outcome = Outcome(plan.run, phase, message, time.time(), code)
    # False when the executor's shutdown marked the run interrupted first: it stays so.
    write_json(files.outcome, outcome.to_dict(), durable=True, exclusive=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
