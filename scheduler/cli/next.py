"""`cronwf next`: the next instants of each valid CronWorkflow, strictly after `--from` (by
default the wall clock, :func:`scheduler.cli._args.now`).

Instants are RFC 3339 with the offset of the CronWorkflow's timezone, so a daylight-saving
change shows in the offsets; a schedule with no instant within the search horizon says it
never fires. Invalid CronWorkflows are reported on stderr and make the exit code 1; the valid
ones are still previewed, so one broken file does not hide the rest.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from policies.schedule import SEARCH_YEARS, Schedule
from policies.validation import validate
from scheduler.cli import _args
from scheduler.cli._report import print_manifest_error, print_nothing_found, print_notice
from scheduler.manifests.loading import LoadedCronWorkflow, ManifestError, ManifestSet, load_paths

__all__ = ["add_command"]

_DEFAULT_NEXT_COUNT = 5


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "next",
        help="print the next instants each CronWorkflow fires at",
        description="Print the next instants of each valid CronWorkflow, strictly after "
        "--from, in RFC 3339 with the offset of the CronWorkflow's timezone. Invalid "
        "CronWorkflows are reported on stderr and make the exit code 1.",
    )
    _args.add_paths_argument(command)
    command.add_argument(
        "--count",
        type=_args.positive_count,
        default=_DEFAULT_NEXT_COUNT,
        metavar="N",
        help=f"instants per CronWorkflow (default: {_DEFAULT_NEXT_COUNT})",
    )
    command.add_argument(
        "--from",
        dest="start",
        type=_args.parse_rfc3339,
        default=None,
        metavar="TIME",
        help="RFC 3339 time to start after, e.g. 2026-03-08T00:00:00Z (default: now)",
    )
    _args.add_output_option(command)
    command.set_defaults(handler=_run_next)


def _run_next(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests: ManifestSet = load_paths(args.paths)
    start: datetime.datetime = args.start or _args.now()
    for notice in manifests.notices:
        print_notice(notice, err)
    if not manifests.entries:
        print_nothing_found(args.paths, err)
        return 1
    previews: list[dict[str, Any]] = []
    failed = False
    for entry in manifests.entries:
        if isinstance(entry, ManifestError):
            print_manifest_error(entry, err)
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
