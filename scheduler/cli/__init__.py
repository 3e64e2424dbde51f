"""The `cronwf` command line.

Each subcommand is one `_add_<name>_command` function that declares its arguments and binds a
handler `(args, out, err) -> exit code`; `build_parser` lists them. Adding `simulate`, `serve`
or `history` is one more such function, with no change to the others. Handlers write to the
streams they are given, never to `sys.stdout` directly, so tests run `main([...])` in-process.

Output contracts (DESIGN §11) are stable: scripts parse `-o json`, people grep the text form.
So the text form is one self-contained line per fact (`ok`, `error`, `warning`, `skipped`
first, then where, then what), and the JSON form is a plain list of objects.

Exit codes: 0 all good, 1 some CronWorkflow is invalid or could not be read, or none was
found, 2 a usage error (argparse's convention, also used for an unreadable `--from` and for a
bad value of a ``CRONWF_`` variable). Errors about user input never produce a traceback.
Settings: a flag's environment variable is read by its own command only, once parsed
(:class:`_FromEnvironment`). The command line is the one place that reads the real clock: `next`
starts from now unless `--from` is given, and `lint` judges "fires in the next 5 years" from now.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from policies.decision import CronWorkflow
from policies.schedule import SEARCH_YEARS, Schedule
from policies.validation import Validation, validate
from policies.workflow import rfc3339
from scheduler.adapters.kube.client import DEFAULT_SPAWN_WORKERS, api_client
from scheduler.adapters.kube.lease import KubeLease
from scheduler.adapters.kube.runs import WorkflowWatcher
from scheduler.adapters.kube.sink import KubeSink
from scheduler.adapters.kube.source import KubeSource
from scheduler.adapters.kube.status import KubeStatus
from scheduler.adapters.local.executor import DEFAULT_MAX_LOCAL_RUNS, DEFAULT_MAX_WAITING_LOCAL_RUNS
from scheduler.adapters.redis.history import (
    RedisHistory,
    RedisRunReports,
    RedisURLError,
    check_eviction_policy,
    connect,
    redact_url,
    valid_redis_url,
)
from scheduler.adapters.redis.leadership import PublishedFence, RedisLeaderLock
from scheduler.core.engine import StoreUnavailable
from scheduler.core.simulate import (
    DownWindow,
    SimulationError,
    Simulator,
    parse_duration,
    parse_outcomes,
    parse_time,
    write_json,
    write_text,
)
from scheduler.manifests.loading import (
    LoadedCronWorkflow,
    ManifestError,
    ManifestNotice,
    ManifestSet,
    load_paths,
)
from scheduler.runtime.service import (
    Cluster,
    FencedLease,
    Leadership,
    Service,
    ServiceConfig,
    SoleLeader,
    utc_now,
)
from scheduler.telemetry.logs import configure_logging

__all__ = ["build_parser", "main", "parse_rfc3339"]

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

_DEFAULT_NEXT_COUNT = 5
_MAX_NEXT_COUNT = 10_000
_MAX_WAITING_LOCAL_RUNS = 1_000_000


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cronwf` with `argv` (default: the process arguments); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, sys.stdout, sys.stderr)
    except BrokenPipeError:
        # `cronwf next ... | head` closed the pipe: not an error worth a traceback. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cronwf",
        description="Schedule Argo CronWorkflows: lint manifests, preview their next runs.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_lint_command(commands)
    _add_next_command(commands)
    _add_simulate_command(commands)
    _add_serve_command(commands)
    _add_history_command(commands)
    return parser


def parse_rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time with an explicit offset (`Z` or `±hh:mm`), as an aware datetime."""
    try:
        parsed = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time; write e.g. 2026-03-08T09:30:00Z "
            "or 2026-03-08T01:30:00-08:00"
        ) from None
    if parsed.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add one, e.g. {parsed.isoformat()}Z "
            f"or {parsed.isoformat()}+01:00"
        )
    return parsed


def _positive_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= _MAX_NEXT_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {_MAX_NEXT_COUNT}, got {count}")
    return count


def _waiting_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= count <= _MAX_WAITING_LOCAL_RUNS:
        raise argparse.ArgumentTypeError(
            f"must be between 0 and {_MAX_WAITING_LOCAL_RUNS}, got {count}"
        )
    return count


def _add_output_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )


def _add_paths_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="CronWorkflow manifest files or folders (searched for *.yaml and *.yml)",
    )


# --- lint -------------------------------------------------------------------------------------


# Go's strconv.ParseBool, which Argo's boolean flags use.
_TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
_FALSE_WORDS = ("0", "f", "F", "FALSE", "false", "False")


class _BooleanFlag(argparse.Action):
    """A boolean flag written as Argo's (Go's pflag) are: `--strict` alone means true, and a
    value is given only with `=` (`--strict=false`), so `--strict a.yaml` still lints a.yaml.

    argparse has no option whose value is optional only after `=`: the flag takes no value,
    and each accepted `--strict=<word>` is an option string of its own (argparse matches the
    whole argument before splitting it at `=`), hidden from the help. Any other value is a
    usage error, exit 2, which `_add_boolean_flag` words.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        word = (option_string or "").partition("=")[2]
        setattr(namespace, self.dest, word not in _FALSE_WORDS)


def _add_boolean_flag(
    command: argparse.ArgumentParser, flag: str, *, default: bool, help: str
) -> None:
    dest = flag.lstrip("-").replace("-", "_")
    command.add_argument(flag, action=_BooleanFlag, dest=dest, default=default, help=help)
    command.add_argument(
        *(f"{flag}={word}" for word in _TRUE_WORDS + _FALSE_WORDS),
        action=_BooleanFlag,
        dest=dest,
        default=default,
        help=argparse.SUPPRESS,
    )
    argparse_error = command.error
    ignored = f"argument {flag}: ignored explicit argument "

    def error(message: str) -> NoReturn:
        # argparse's words for `--strict=maybe` ("ignored explicit argument") say nothing
        # of what to write instead.
        if message.startswith(ignored):
            value = message.removeprefix(ignored)
            message = (
                f"argument {flag}: {value} is not true or false; write {flag}, {flag}=true "
                f"or {flag}=false"
            )
        argparse_error(message)

    command.error = error  # type: ignore[method-assign]


def _add_lint_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "lint",
        help="validate CronWorkflow manifests",
        description="Validate every CronWorkflow in the given YAML files or folders. "
        "Exit 0 when all are valid, 1 otherwise.",
    )
    _add_paths_argument(command)
    _add_output_option(command)
    _add_boolean_flag(
        command,
        "--strict",
        default=True,
        help="report fields that neither Argo nor Kubernetes defines as errors, as "
        "`argo cron lint` does (default: true); --strict=false makes them warnings",
    )
    command.set_defaults(handler=_run_lint)


def _now() -> datetime.datetime:
    """The wall clock, for `lint`'s warnings about the years ahead and `next` without --from."""
    return datetime.datetime.now(datetime.UTC)


def _run_lint(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests = load_paths(args.paths)
    now = _now()
    reports: list[dict[str, Any]] = []
    for item in manifests.items:
        if isinstance(item, ManifestNotice):
            _print_notice(item, err if args.output == "json" else out)
            continue
        report = _lint_report(item, now, strict=args.strict)
        reports.append(report)
        if args.output == "text":
            _print_lint_report(report, out)
    if not reports:
        _print_nothing_found(args.paths, err if args.output == "json" else out)
    if args.output == "json":
        json.dump(reports, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(_lint_summary(reports) + "\n")
    return 0 if reports and all(report["valid"] for report in reports) else 1


def _lint_report(
    entry: LoadedCronWorkflow | ManifestError, now: datetime.datetime, *, strict: bool = True
) -> dict[str, Any]:
    if isinstance(entry, ManifestError):
        return {
            "file": entry.source.file,
            "document": entry.source.document,
            "cronWorkflow": entry.key,
            "valid": False,
            "errors": list(entry.messages),
            "warnings": [],
        }
    validation: Validation = validate(entry.spec, now)
    # Unknown fields first: they are where they are in the document, and a typo'd field is
    # often the cause of a validation error after it (`schedule` misspelled, none left).
    unknown = list(entry.unknown_fields)
    errors = (unknown if strict else []) + list(validation.errors)
    return {
        "file": entry.source.file,
        "document": entry.source.document,
        "cronWorkflow": entry.key,
        "valid": not errors,
        "errors": errors,
        "warnings": ([] if strict else unknown) + list(entry.warnings) + list(validation.warnings),
    }


def _where(report: dict[str, Any]) -> str:
    where = report["file"]
    if report["document"] is not None:
        where += f" (document {report['document']})"
    if report["cronWorkflow"] is not None:
        where += f" {report['cronWorkflow']}"
    return str(where)


def _print_lint_report(report: dict[str, Any], out: TextIO) -> None:
    where = _where(report)
    if report["valid"]:
        out.write(f"ok      {where}\n")
    for error in report["errors"]:
        out.write(f"error   {where}: {error}\n")
    for warning in report["warnings"]:
        out.write(f"warning {where}: {warning}\n")


def _lint_summary(reports: list[dict[str, Any]]) -> str:
    valid = sum(1 for report in reports if report["valid"])
    invalid = len(reports) - valid
    warnings = sum(len(report["warnings"]) for report in reports)
    noun = "CronWorkflow" if len(reports) == 1 else "CronWorkflows"
    return (
        f"{len(reports)} {noun}: {valid} valid, {invalid} invalid, "
        f"{warnings} warning{'' if warnings == 1 else 's'}"
    )


def _print_notice(notice: ManifestNotice, stream: TextIO) -> None:
    stream.write(f"{notice.category:<7} {notice}\n")


def _print_nothing_found(paths: Sequence[str], stream: TextIO) -> None:
    """Zero CronWorkflows is an error, as in Argo's CLI: a wrong path or a folder of other
    manifests would otherwise pass a check that checked nothing."""
    stream.write(
        f"error   no CronWorkflow found in {', '.join(paths)}: searched the *.yaml and *.yml "
        "files (in folders recursively, hidden ones skipped) for documents of kind "
        "CronWorkflow; check the path, or that the manifests say apiVersion: "
        "argoproj.io/v1alpha1 and kind: CronWorkflow\n"
    )


# --- next -------------------------------------------------------------------------------------


def _add_next_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "next",
        help="print the next instants each CronWorkflow fires at",
        description="Print the next instants of each valid CronWorkflow, strictly after "
        "--from, in RFC 3339 with the offset of the CronWorkflow's timezone. Invalid "
        "CronWorkflows are reported on stderr and make the exit code 1.",
    )
    _add_paths_argument(command)
    command.add_argument(
        "--count",
        type=_positive_count,
        default=_DEFAULT_NEXT_COUNT,
        metavar="N",
        help=f"instants per CronWorkflow (default: {_DEFAULT_NEXT_COUNT})",
    )
    command.add_argument(
        "--from",
        dest="start",
        type=parse_rfc3339,
        default=None,
        metavar="TIME",
        help="RFC 3339 time to start after, e.g. 2026-03-08T00:00:00Z (default: now)",
    )
    _add_output_option(command)
    command.set_defaults(handler=_run_next)


def _run_next(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests: ManifestSet = load_paths(args.paths)
    start: datetime.datetime = args.start or _now()
    for notice in manifests.notices:
        _print_notice(notice, err)
    if not manifests.entries:
        _print_nothing_found(args.paths, err)
        return 1
    previews: list[dict[str, Any]] = []
    failed = False
    for entry in manifests.entries:
        if isinstance(entry, ManifestError):
            where = f"{entry.source} {entry.key}" if entry.key else str(entry.source)
            for message in entry.messages:
                err.write(f"error   {where}: {message}\n")
            failed = True
            continue
        validation = validate(entry.spec)
        if not validation.valid:
            for error in validation.errors:
                err.write(f"error   {entry.source} {entry.key}: {error}\n")
            failed = True
            continue
        previews.append(_preview(entry, start, args.count))
    if args.output == "json":
        json.dump(previews, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        _print_next_text(previews, out)
    return 1 if failed else 0


def _preview(entry: LoadedCronWorkflow, start: datetime.datetime, count: int) -> dict[str, Any]:
    spec = entry.spec
    schedule = Schedule(spec.effective_schedules, spec.timezone)
    times = [
        instant.astimezone(schedule.tz).isoformat(timespec="seconds")
        for instant in schedule.next_n(start, count)
    ]
    return {
        "file": entry.source.file,
        "document": entry.source.document,
        "cronWorkflow": entry.key,
        "schedules": list(spec.effective_schedules),
        "timezone": spec.timezone or "UTC",
        "times": times,
    }


def _print_next_text(previews: list[dict[str, Any]], out: TextIO) -> None:
    for preview in previews:
        schedules = ", ".join(preview["schedules"])
        out.write(f"{preview['cronWorkflow']} ({preview['timezone']}; {schedules})\n")
        for time in preview["times"]:
            out.write(f"  {time}\n")
        if not preview["times"]:
            out.write(f"  no instant in the next {SEARCH_YEARS} years: it never fires\n")


# --- simulate ---------------------------------------------------------------------------------


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn a :class:`SimulationError` into argparse's usage error (exit 2, no traceback)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except SimulationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _add_simulate_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "simulate",
        help="run the scheduler on a virtual clock and print every decision",
        description="Run the real engine (policies, tick order, catch-up, counters, stop "
        "strategy) on a virtual clock from --start to --end (both included), with a "
        "simulated workflow controller, and print every event. Deterministic; never sleeps.",
    )
    _add_paths_argument(command)
    command.add_argument(
        "--start",
        required=True,
        type=_argument(lambda text: parse_time(text, "--start")),
        metavar="TIME",
        help="RFC 3339 start of the window, e.g. 2026-03-08T00:00:00Z",
    )
    command.add_argument(
        "--end",
        required=True,
        type=_argument(lambda text: parse_time(text, "--end")),
        metavar="TIME",
        help="RFC 3339 end of the window (included)",
    )
    command.add_argument(
        "--outcomes",
        type=_argument(parse_outcomes),
        default=None,
        metavar="PHASE[,PHASE...]",
        help="phases (Succeeded, Failed, Error) of the 1st, 2nd, ... Workflow of each "
        "CronWorkflow; the last repeats (default: Succeeded)",
    )
    command.add_argument(
        "--run-duration",
        type=_argument(parse_duration),
        default=None,
        metavar="D",
        help="how long each Workflow runs: 90s, 12m, 1h or seconds (default: 30s)",
    )
    command.add_argument(
        "--down",
        action="append",
        type=_argument(DownWindow.parse),
        default=[],
        metavar="START/END",
        help="the scheduler is not running in [START, END); repeatable",
    )
    _add_output_option(command)
    command.set_defaults(handler=_run_simulate)


def _run_simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests = load_paths(args.paths)
    for notice in manifests.notices:
        _print_notice(notice, err)
    if not manifests.entries:
        _print_nothing_found(args.paths, err)
        return 1
    failed = False
    for error in manifests.errors:
        where = f"{error.source} {error.key}" if error.key else str(error.source)
        for message in error.messages:
            err.write(f"error   {where}: {message}\n")
        failed = True
    seen: dict[str, str] = {}
    for entry in manifests.cron_workflows:
        if entry.key in seen:
            err.write(
                f"error   {entry.source} {entry.key}: defined twice (first in {seen[entry.key]}): "
                "each namespace/name must be unique\n"
            )
            failed = True
        seen.setdefault(entry.key, str(entry.source))
    if failed:
        err.write("cannot simulate: fix the manifests above first\n")
        return 1
    options: dict[str, Any] = {}
    if args.outcomes is not None:
        options["outcomes"] = args.outcomes
    if args.run_duration is not None:
        options["run_duration"] = args.run_duration
    try:
        simulator = Simulator(
            [CronWorkflow.prepare(entry.spec, args.start) for entry in manifests.cron_workflows],
            args.start,
            args.end,
            down=tuple(args.down),
            **options,
        )
    except SimulationError as error:
        err.write(f"cronwf simulate: error: {error}\n")
        return 2
    if args.output == "json":
        write_json(simulator, out)
    else:
        write_text(simulator, out)
    return 0


# --- serve ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FromEnvironment:
    """A flag's default, read from ``CRONWF_<name>`` only once its own command is parsed.

    Reading every command's variables when the parser is built made ``CRONWF_PORT=abc
    cronwf lint ...`` end in a traceback. Now a subcommand's parser resolves the defaults of
    its own flags only (:class:`_Parser`), converted by the flag's ``type`` (or ``parse``),
    and a bad value is a usage error naming the variable. An empty variable counts as unset.
    """

    name: str
    fallback: str | Callable[[], str | None] | None = None
    """Used when the variable is unset; a callable is asked then (not at start-up)."""
    parse: Callable[[str], Any] | None = None
    """Converts the text instead of the flag's ``type`` (for flags that take no value)."""

    @property
    def variable(self) -> str:
        return f"CRONWF_{self.name}"


def _env(
    name: str,
    default: str | Callable[[], str | None] | None = None,
    *,
    parse: Callable[[str], Any] | None = None,
) -> _FromEnvironment:
    """The ``CRONWF_<NAME>`` environment variable behind a flag (flags win), as a default."""
    return _FromEnvironment(name, default, parse)


class _Parser(argparse.ArgumentParser):
    """Resolves the environment defaults of its own arguments after parsing them."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if isinstance(value, _FromEnvironment):
                setattr(parsed, action.dest, self._resolve(action, value))
        return parsed, extras

    def _resolve(self, action: argparse.Action, default: _FromEnvironment) -> Any:
        text = os.environ.get(default.variable) or None
        source: str | None = default.variable
        if text is None:
            fallback = default.fallback() if callable(default.fallback) else default.fallback
            if fallback is None:
                return None
            text, source = fallback, None
        convert: Callable[[str], Any] = default.parse or action.type or str  # type: ignore[assignment]
        try:
            value = convert(text)
        except argparse.ArgumentTypeError as error:
            problem = str(error)
        except (TypeError, ValueError):
            problem = f"invalid value {text!r}"
        else:
            if action.choices is None or value in action.choices:
                return value
            choices = ", ".join(repr(choice) for choice in action.choices)
            problem = f"invalid choice: {text!r} (choose from {choices})"
        if source is None:  # a built-in default that does not parse: a bug here
            raise AssertionError(f"the default of {action.dest}, {text!r}, is invalid: {problem}")
        return self.error(f"{source}: {problem}")


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: write true or false")


def _redis_url(text: str) -> str:
    try:
        return valid_redis_url(text)
    except RedisURLError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        value = parse_duration(text).total_seconds()
    except SimulationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {port}")
    return port


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _add_serve_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "serve",
        help="run the scheduler service",
        description="Run the scheduler: read CronWorkflows from manifest files (reloaded on "
        "change), fire them at their instants, run their Workflows with the local executor "
        "(a trial runner, not a workflow engine), and serve /metrics, /healthz and /readyz. "
        "Every flag can also be set with the CRONWF_ environment variable shown.",
    )
    command.add_argument(
        "--manifests",
        action="append",
        default=None,
        metavar="PATH",
        help="CronWorkflow manifest file or folder; repeatable (CRONWF_MANIFESTS, colon-separated)",
    )
    command.add_argument(
        "--redis-url",
        type=_redis_url,
        default=_env("REDIS_URL"),
        metavar="URL",
        help="Redis for run history and leadership, e.g. redis://localhost:6379/0; several "
        "replicas may share it, one acts (CRONWF_REDIS_URL; default: an in-process store)",
    )
    command.add_argument(
        "--state-dir",
        type=Path,
        default=_env("STATE_DIR", ".cronwf"),
        metavar="DIR",
        help="where the local executor writes run logs (CRONWF_STATE_DIR; default: .cronwf)",
    )
    command.add_argument(
        "--host",
        default=_env("HOST", "0.0.0.0"),
        help="address of the HTTP endpoints (CRONWF_HOST; default: 0.0.0.0)",
    )
    command.add_argument(
        "--port",
        type=_port,
        default=_env("PORT", "9090"),
        help="port of /metrics, /healthz and /readyz (CRONWF_PORT; default: 9090)",
    )
    command.add_argument(
        "--identity",
        default=_env("IDENTITY", _default_identity),
        help="this replica's name in the leader lock (CRONWF_IDENTITY; default: POD_NAME, "
        "else host name and process id)",
    )
    for flag, env, default, text in (
        ("--lock-ttl", "LOCK_TTL", "15s", "how long the leader lock lives unrenewed"),
        ("--renew-interval", "RENEW_INTERVAL", "5s", "how often the leader renews its lock"),
        ("--reload-interval", "RELOAD_INTERVAL", "2s", "how often manifest files are checked"),
        ("--run-timeout", "RUN_TIMEOUT", "10m", "default time limit of a local run"),
        (
            "--late-after",
            "LATE_AFTER",
            "5s",
            "a timer firing later than this is handled as a catch-up",
        ),
        (
            "--lost-after",
            "LOST_AFTER",
            "15m",
            "an active run nobody can observe (its replica died) is lost this long after it "
            "started; a local run never before its own time limit",
        ),
    ):
        command.add_argument(
            flag,
            type=_seconds,
            default=_env(env, default),
            metavar="D",
            help=f"{text} (CRONWF_{env}; default: {default})",
        )
    command.add_argument(
        "--kubernetes",
        action="store_true",
        default=_env("KUBERNETES", "false", parse=_boolean),
        help="read CronWorkflows from the cluster and create Workflows there, electing a "
        "leader with a Lease (CRONWF_KUBERNETES)",
    )
    command.add_argument(
        "--namespace",
        default=_env("NAMESPACE", "") or "",
        help="Kubernetes mode: the namespace to watch (CRONWF_NAMESPACE; default: all)",
    )
    command.add_argument(
        "--instance-id",
        default=_env("INSTANCE_ID", "") or "",
        help="Kubernetes mode: handle only CronWorkflows labelled "
        "workflows.argoproj.io/controller-instanceid=ID; without it, only those without "
        "that label, like Argo's controller (CRONWF_INSTANCE_ID)",
    )
    command.add_argument(
        "--workflow-instance-id",
        default=_env("WORKFLOW_INSTANCE_ID", "") or "",
        help="Kubernetes mode: the instance id of the Argo workflow controller that runs the "
        "spawned Workflows, written as their controller-instanceid label (CRONWF_WORKFLOW_"
        "INSTANCE_ID; default: none, for an Argo controller without an instance id)",
    )
    command.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG"),
        help="Kubernetes mode: kubeconfig file (CRONWF_KUBECONFIG; default: in-cluster "
        "configuration, else ~/.kube/config)",
    )
    command.add_argument(
        "--lease-namespace",
        default=_env("LEASE_NAMESPACE", lambda: os.environ.get("POD_NAMESPACE") or "default"),
        help="Kubernetes mode: namespace of the leader Lease (CRONWF_LEASE_NAMESPACE; "
        "default: POD_NAMESPACE, else default)",
    )
    command.add_argument(
        "--lease-name",
        default=_env("LEASE_NAME", "") or "",
        help="Kubernetes mode: name of the leader Lease (CRONWF_LEASE_NAME; default: cronwf, "
        "or cronwf-<instance-id>)",
    )
    for flag, env, default, text in (
        ("--lease-duration", "LEASE_DURATION", "15s", "how long a Lease lives unrenewed"),
        (
            "--renew-deadline",
            "RENEW_DEADLINE",
            "10s",
            "the leader gives up after failing to renew for this long",
        ),
        ("--retry-period", "RETRY_PERIOD", "2s", "how often the Lease is renewed or tried"),
    ):
        command.add_argument(
            flag,
            type=_seconds,
            default=_env(env, default),
            metavar="D",
            help=f"Kubernetes mode: {text} (CRONWF_{env}; default: {default})",
        )
    command.add_argument(
        "--workers",
        type=_positive_count,
        default=_env("WORKERS", "1") or "1",
        help="threads deciding due instants, each a batch at a time; more only help when "
        "Redis answers slowly (CRONWF_WORKERS; default: 1)",
    )
    command.add_argument(
        "--spawn-workers",
        type=_positive_count,
        default=_env("SPAWN_WORKERS", str(DEFAULT_SPAWN_WORKERS)) or str(DEFAULT_SPAWN_WORKERS),
        help="Kubernetes mode: Workflows created at a time when several are due together "
        f"(CRONWF_SPAWN_WORKERS; default: {DEFAULT_SPAWN_WORKERS})",
    )
    command.add_argument(
        "--max-local-runs",
        type=_positive_count,
        default=_env("MAX_LOCAL_RUNS", str(DEFAULT_MAX_LOCAL_RUNS)),
        metavar="N",
        help="embedded mode: local runs executing at once; more wait for a slot "
        f"(CRONWF_MAX_LOCAL_RUNS; default: {DEFAULT_MAX_LOCAL_RUNS})",
    )
    command.add_argument(
        "--max-waiting-local-runs",
        type=_waiting_count,
        default=_env("MAX_WAITING_LOCAL_RUNS", str(DEFAULT_MAX_WAITING_LOCAL_RUNS)),
        metavar="N",
        help="embedded mode: spawned runs that may wait for a slot; a run spawned beyond ends "
        "Error at once (CRONWF_MAX_WAITING_LOCAL_RUNS; default: "
        f"{DEFAULT_MAX_WAITING_LOCAL_RUNS})",
    )
    command.add_argument(
        "--metrics-without-name",
        action="store_true",
        default=_env("METRICS_WITHOUT_NAME", "false", parse=_boolean),
        help="drop the name label from per-CronWorkflow metrics, for fleets of tens of "
        "thousands (CRONWF_METRICS_WITHOUT_NAME)",
    )
    command.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env("LOG_FORMAT", "text"),
        help="log lines as text or JSON (CRONWF_LOG_FORMAT; default: text)",
    )
    command.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=_env("LOG_LEVEL", "info", parse=str.lower),
        help="(CRONWF_LOG_LEVEL; default: info)",
    )
    command.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    configure_logging(args.log_format, args.log_level)
    manifests = args.manifests or [
        p for p in os.environ.get("CRONWF_MANIFESTS", "").split(":") if p
    ]
    if args.kubernetes and manifests:
        err.write(
            "cronwf serve: error: --kubernetes reads CronWorkflows from the cluster: "
            "drop --manifests\n"
        )
        return 2
    if not args.kubernetes and not manifests:
        err.write(
            "cronwf serve: error: give --manifests DIR (or CRONWF_MANIFESTS), or --kubernetes\n"
        )
        return 2
    missing: list[str] = []
    for path in manifests:
        try:
            os.stat(path)
        except FileNotFoundError:
            missing.append(path)
        except OSError as error:
            err.write(
                f"cronwf serve: error: cannot read {path}: {error.strerror}: the service needs "
                "read and search (x) permission on it and on every folder above it\n"
            )
            return 2
    if missing:
        err.write(f"cronwf serve: error: no such file or folder: {', '.join(missing)}\n")
        return 2
    problem = _timing_problem(args)
    if problem:
        err.write(f"cronwf serve: error: {problem}\n")
        return 2
    config = ServiceConfig(
        manifests=tuple(Path(p) for p in manifests),
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        reload_interval=args.reload_interval,
        renew_interval=args.retry_period if args.kubernetes else args.renew_interval,
        run_timeout=args.run_timeout,
        late_after=args.late_after,
        lost_after=args.lost_after,
        workers=args.workers,
        metrics_with_name=not args.metrics_without_name,
        max_local_runs=args.max_local_runs,
        max_waiting_local_runs=args.max_waiting_local_runs,
    )
    logger = logging.getLogger("cronwf")
    client = None
    if args.redis_url:
        client = connect(args.redis_url)
        try:
            warning = check_eviction_policy(client)
        except StoreUnavailable as error:
            warning = None
            logger.warning("Redis is not reachable yet: %s", error)
        if warning:
            logger.warning("%s", warning)
    elif args.kubernetes:
        logger.warning(
            "no --redis-url: history is kept in this process only; run a single replica "
            "(history is re-seeded from CronWorkflow status after a restart)"
        )
    leadership: Leadership
    cluster: Cluster | None = None
    if args.kubernetes:
        try:
            api = api_client(args.kubeconfig, args.spawn_workers)
        except Exception as error:
            err.write(f"cronwf serve: error: cannot configure the Kubernetes client: {error}\n")
            return 1
        fence = PublishedFence(client, args.identity) if client is not None else None
        store = (
            RedisHistory(client, fence=fence) if client is not None else RedisHistory.in_process()
        )
        lease_name = args.lease_name or (
            f"cronwf-{args.instance_id}" if args.instance_id else "cronwf"
        )
        lease = KubeLease(
            api,
            args.lease_namespace,
            lease_name,
            args.identity,
            lease_duration=datetime.timedelta(seconds=args.lease_duration),
            renew_deadline=datetime.timedelta(seconds=args.renew_deadline),
            retry_period=datetime.timedelta(seconds=args.retry_period),
        )
        leadership = FencedLease(lease, fence)
        cluster = Cluster(
            source=KubeSource(api, args.namespace, args.instance_id),
            sink=KubeSink(api, args.workflow_instance_id, args.spawn_workers),
            status=KubeStatus(api, utc_now),
            watcher=lambda finished, deleted, running: WorkflowWatcher(
                api, args.namespace, args.workflow_instance_id, finished, deleted, running, utc_now
            ),
        )
    elif client is not None:
        lock = RedisLeaderLock(client, args.identity, ttl=datetime.timedelta(seconds=args.lock_ttl))
        store = RedisHistory(client, fence=lock)
        leadership = lock
    else:
        store = RedisHistory.in_process()
        leadership = SoleLeader()
    try:
        # Kubernetes mode learns every run's end from the Workflows themselves; file mode with
        # a shared Redis needs replicas to hand over what only they saw.
        reports = RedisRunReports(client) if client is not None and cluster is None else None
        service = Service(config, store, leadership, cluster=cluster, reports=reports)
        service.start()
    except OSError as error:
        err.write(f"cronwf serve: error: cannot serve on {args.host}:{args.port}: {error}\n")
        return 1
    service.run_until_signalled()
    return 0


def _timing_problem(args: argparse.Namespace) -> str | None:
    if args.kubernetes:
        if not args.lease_duration > args.renew_deadline > args.retry_period:
            return (
                "lease timings must satisfy --lease-duration > --renew-deadline > "
                f"--retry-period, got {args.lease_duration:g}s, {args.renew_deadline:g}s, "
                f"{args.retry_period:g}s"
            )
        return None
    if args.renew_interval >= args.lock_ttl:
        return (
            "--renew-interval must be shorter than --lock-ttl, or the lock lapses between renewals"
        )
    return None


# --- history ----------------------------------------------------------------------------------


def _add_history_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "history",
        help="print a CronWorkflow's counters and recent runs from Redis",
        description="Print the counters, cursor and recent runs of one CronWorkflow from the "
        "Redis that `cronwf serve --redis-url` uses.",
    )
    command.add_argument("cron_workflow", metavar="NAMESPACE/NAME")
    command.add_argument(
        "--redis-url",
        type=_redis_url,
        default=_env("REDIS_URL"),
        metavar="URL",
        help="the Redis of the service (CRONWF_REDIS_URL)",
    )
    _add_output_option(command)
    command.set_defaults(handler=_run_history)


def _time(moment: datetime.datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def _run_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    key: str = args.cron_workflow
    if key.count("/") != 1 or not all(key.split("/")):
        err.write(f"cronwf history: error: {key!r} is not NAMESPACE/NAME, e.g. default/backup\n")
        return 2
    if not args.redis_url:
        err.write(
            "cronwf history: error: give --redis-url (or CRONWF_REDIS_URL): without Redis the "
            "history lives only inside the serving process\n"
        )
        return 2
    store = RedisHistory.from_url(args.redis_url)
    try:
        history = store.load(key)
        runs = store.recent_runs(key) if history is not None else []
    except StoreUnavailable as error:
        err.write(f"cronwf history: error: {error}\n")
        return 1
    if history is None:
        err.write(f"cronwf history: no history for {key} in {redact_url(args.redis_url)}\n")
        return 1
    report: dict[str, Any] = {
        "cronWorkflow": key,
        "phase": history.phase.value,
        "succeeded": history.succeeded,
        "failed": history.failed,
        "lost": history.lost,
        "consecutiveSucceeded": history.consecutive_succeeded,
        "consecutiveFailed": history.consecutive_failed,
        "lastScheduledTime": _time(history.last_scheduled_time),
        "lastSucceededTime": _time(history.last_succeeded_time),
        "cursor": _time(history.cursor),
        "active": list(history.active),
        "claimed": {
            workflow: {
                "scheduledTime": _time(intent.scheduled_at),
                "claimedAt": _time(intent.claimed_at),
            }
            for workflow, intent in history.intents.items()
        },
        "conditions": dict(history.conditions),
        "runs": [
            {
                "scheduledTime": _time(run.scheduled_at),
                "decision": run.decision,
                "reason": run.reason or None,
                "workflow": run.workflow or None,
                "phase": run.phase or None,
                "decidedAt": _time(run.decided_at),
                "finishedAt": _time(run.finished_at),
            }
            for run in runs
        ],
    }
    if args.output == "json":
        json.dump(report, out, indent=2)
        out.write("\n")
        return 0
    out.write(
        f"{key}  phase={report['phase'] or '-'}  succeeded={history.succeeded}  "
        f"failed={history.failed}  lost={history.lost}  "
        f"consecutiveSucceeded={history.consecutive_succeeded}  "
        f"consecutiveFailed={history.consecutive_failed}\n"
        f"lastScheduledTime={report['lastScheduledTime'] or '-'}  "
        f"lastSucceededTime={report['lastSucceededTime'] or '-'}  cursor={report['cursor'] or '-'}"
        f"  active={','.join(history.active) or '-'}\n"
    )
    for workflow, intent in history.intents.items():
        out.write(
            f"claimed {workflow}: scheduled {_time(intent.scheduled_at)}, claimed "
            f"{_time(intent.claimed_at)}, its spawn not recorded yet (outcome unknown)\n"
        )
    for condition, message in history.conditions.items():
        out.write(f"condition {condition}: {message}\n")
    out.write(f"\n{'SCHEDULED':<21} {'DECISION':<9} {'REASON':<18} {'WORKFLOW':<40} PHASE\n")
    for run in report["runs"]:
        out.write(
            f"{run['scheduledTime']:<21} {run['decision']:<9} {run['reason'] or '-':<18} "
            f"{run['workflow'] or '-':<40} {run['phase'] or '-'}\n"
        )
    return 0
