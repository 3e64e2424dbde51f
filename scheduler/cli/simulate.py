"""`cronwf simulate`: the real engine on a virtual clock, every decision printed.

The policies, tick order, catch-up, counters and stop strategy are the service's own
(:class:`scheduler.core.simulate.Simulator`); only the clock and the workflow controller are
simulated (`--outcomes`, `--run-duration`), and `--down` windows stand for the scheduler not
running. Deterministic, never sleeps. It simulates only a set that `serve` would accept: any
unreadable CronWorkflow or a namespace/name defined twice stops it before it starts (exit 1).
A bad window or option is a usage error (exit 2), from argparse or from the Simulator.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO

from policies.decision import CronWorkflow
from scheduler.cli import _args
from scheduler.cli._report import print_manifest_error, print_nothing_found, print_notice
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
from scheduler.manifests.loading import load_paths

__all__ = ["add_command"]


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn a :class:`SimulationError` into argparse's usage error (exit 2, no traceback)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except SimulationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "simulate",
        help="run the scheduler on a virtual clock and print every decision",
        description="Run the real engine (policies, tick order, catch-up, counters, stop "
        "strategy) on a virtual clock from --start to --end (both included), with a "
        "simulated workflow controller, and print every event. Deterministic; never sleeps.",
    )
    _args.add_paths_argument(command)
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
    _args.add_output_option(command)
    command.set_defaults(handler=_run_simulate)


def _run_simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests = load_paths(args.paths)
    for notice in manifests.notices:
        print_notice(notice, err)
    if not manifests.entries:
        print_nothing_found(args.paths, err)
        return 1
    failed = False
    for error in manifests.errors:
        print_manifest_error(error, err)
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
