"""`cronwf history NAMESPACE/NAME`: one CronWorkflow's counters, cursor, claimed instants,
conditions and recent runs, read from the Redis that `cronwf serve --redis-url` writes.

Without Redis the history lives only inside the serving process, so `--redis-url` (or
``CRONWF_REDIS_URL``) is required. The Redis adapter is imported by the handler (and by the
URL's type, when a URL is given), not by the parser: other commands never load the client.
The URL is shown with its password as ``***``. Exit 0 when a history was found, 1 when there is
none or Redis cannot be read, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from policies.workflow import rfc3339
from scheduler.cli import _args
from scheduler.core.engine import StoreUnavailable

__all__ = ["add_command"]


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "history",
        help="print a CronWorkflow's counters and recent runs from Redis",
        description="Print the counters, cursor and recent runs of one CronWorkflow from the "
        "Redis that `cronwf serve --redis-url` uses.",
    )
    command.add_argument("cron_workflow", metavar="NAMESPACE/NAME")
    command.add_argument(
        "--redis-url",
        type=_args.redis_url,
        default=_args.from_env("REDIS_URL"),
        metavar="URL",
        help="the Redis of the service (CRONWF_REDIS_URL)",
    )
    _args.add_output_option(command)
    command.set_defaults(handler=_run_history)


def _time(moment: datetime.datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def _run_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from scheduler.adapters.redis.history import RedisHistory, redact_url  # noqa: PLC0415

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
