"""Engine events as log lines, in text and in JSON (one object per line)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from policies.decision import MissedReason
from scheduler.core.engine import Missed, Spawned
from scheduler.telemetry.logs import EventLog, JsonFormatter

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What a logger with the JSON formatter writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.cronwf.events")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_spawn_is_one_line_with_its_cron_workflow_instant_and_workflow(
    lines: io.StringIO,
) -> None:
    EventLog(logging.getLogger("test.cronwf.events")).emit(
        Spawned(
            time=T0,
            key="batch/nightly",
            scheduled_at=T0,
            workflow="nightly-1772442000",
            created=True,
        )
    )

    (record,) = records(lines)
    assert record["level"] == "info"
    assert record["event"] == "Spawned"
    assert record["cronWorkflow"] == "batch/nightly"
    assert record["scheduledTime"] == "2026-03-02T09:00:00Z"
    assert record["workflow"] == "nightly-1772442000"
    assert record["message"] == (
        "Spawned cronWorkflow=batch/nightly scheduledTime=2026-03-02T09:00:00Z "
        "workflow=nightly-1772442000 workflowCreated=True catchUp=False"
    )


def test_a_missed_summary_says_how_many_instants_since_when(lines: io.StringIO) -> None:
    EventLog(logging.getLogger("test.cronwf.events")).emit(
        Missed(
            time=T0,
            key="batch/nightly",
            scheduled_at=T0,
            reason=MissedReason.SUPERSEDED,
            count=8_640,
            since=T0 - timedelta(days=30),
        )
    )

    (record,) = records(lines)
    assert record["level"] == "warning"
    assert (record["count"], record["since"]) == (8_640, "2026-01-31T09:00:00Z")
    assert record["reason"] == "superseded"


def test_a_single_missed_instant_carries_no_count(lines: io.StringIO) -> None:
    EventLog(logging.getLogger("test.cronwf.events")).emit(
        Missed(time=T0, key="batch/nightly", scheduled_at=T0, reason=MissedReason.DEADLINE)
    )

    (record,) = records(lines)
    assert "count" not in record
    assert record["reason"] == "deadline"
