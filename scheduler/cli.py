"""The `cronwf` command line.

Each subcommand is one `_add_<name>_command` function that declares its arguments and binds a
handler `(args, out, err) -> exit code`; `build_parser` lists them. Adding `simulate`, `serve`
or `history` is one more such function, with no change to the others. Handlers write to the
streams they are given, never to `sys.stdout` directly, so tests run `main([...])` in-process.

Output contracts (DESIGN §11) are stable: scripts parse `-o json`, people grep the text form.
So the text form is one self-contained line per fact (`ok`, `error`, `warning`, `skipped`
first, then where, then what), and the JSON form is a plain list of objects.

Exit codes: 0 all good, 1 some CronWorkflow is invalid or could not be read, 2 a usage error
(argparse's convention, also used for an unreadable `--from`). Errors about user input never
produce a traceback. The command line is the one place that reads the real clock: `next`
starts from now unless `--from` is given, and `lint` judges "fires in the next 5 years" from now.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from policies.schedule import SEARCH_YEARS, Schedule
from policies.validation import Validation, validate
from scheduler.manifests import (
    LoadedCronWorkflow,
    ManifestError,
    ManifestNotice,
    ManifestSet,
    load_paths,
)

__all__ = ["build_parser", "main", "parse_rfc3339"]

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

_DEFAULT_NEXT_COUNT = 5
_MAX_NEXT_COUNT = 10_000


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
    parser = argparse.ArgumentParser(
        prog="cronwf",
        description="Schedule Argo CronWorkflows: lint manifests, preview their next runs.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_lint_command(commands)
    _add_next_command(commands)
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


def _add_lint_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "lint",
        help="validate CronWorkflow manifests",
        description="Validate every CronWorkflow in the given YAML files or folders. "
        "Exit 0 when all are valid, 1 otherwise.",
    )
    _add_paths_argument(command)
    _add_output_option(command)
    command.set_defaults(handler=_run_lint)


def _run_lint(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests = load_paths(args.paths)
    now = datetime.datetime.now(datetime.UTC)
    reports: list[dict[str, Any]] = []
    for item in manifests.items:
        if isinstance(item, ManifestNotice):
            _print_notice(item, err if args.output == "json" else out)
            continue
        report = _lint_report(item, now)
        reports.append(report)
        if args.output == "text":
            _print_lint_report(report, out)
    if args.output == "json":
        json.dump(reports, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(_lint_summary(reports) + "\n")
    return 0 if all(report["valid"] for report in reports) else 1


def _lint_report(
    entry: LoadedCronWorkflow | ManifestError, now: datetime.datetime
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
    return {
        "file": entry.source.file,
        "document": entry.source.document,
        "cronWorkflow": entry.key,
        "valid": validation.valid,
        "errors": list(validation.errors),
        "warnings": list(validation.warnings),
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
    start: datetime.datetime = args.start or datetime.datetime.now(datetime.UTC)
    for notice in manifests.notices:
        _print_notice(notice, err)
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
