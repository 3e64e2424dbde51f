"""Logging: human text or one JSON object per line, and the engine's events as log lines.

Operators grep text locally and ship JSON to a log pipeline in a cluster; both carry the same
fields. Every engine event becomes one line with its CronWorkflow key and instant, so a log
search for ``default/backup`` shows the whole story of that CronWorkflow.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from policies.workflow import rfc3339
from scheduler.core.engine import Error, Event, Lost, Missed, Skipped, Spawned

__all__ = ["EventLog", "JsonFormatter", "configure_logging"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Route every log line to stderr in ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO: one line per tick is ours to write.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


class EventLog:
    """An engine observer writing each event as one log line."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("cronwf.events")

    def emit(self, event: Event) -> None:
        fields: dict[str, Any] = {"event": event.kind, "cronWorkflow": event.key}
        scheduled = getattr(event, "scheduled_at", None)
        if scheduled is not None:
            fields["scheduledTime"] = rfc3339(scheduled)
        # "message" is a LogRecord attribute: the event's message travels as "detail".
        for name, field in (
            ("workflow", "workflow"),
            ("reason", "reason"),
            ("phase", "phase"),
            ("message", "detail"),
        ):
            value = getattr(event, name, None)
            if value is not None:
                fields[field] = str(value)
        if isinstance(event, Spawned):
            fields["workflowCreated"] = event.created
            fields["catchUp"] = event.catch_up
        if isinstance(event, Missed | Skipped) and event.since is not None:
            fields["count"] = event.count
            fields["since"] = rfc3339(event.since)
        if isinstance(event, Lost):
            fields["claimed"] = event.claimed
        level = logging.WARNING if isinstance(event, Error | Missed | Lost) else logging.INFO
        if isinstance(event, Skipped):
            level = logging.INFO
        details = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("event",))
        self._log.log(level, "%s %s", event.kind, details, extra=fields)
