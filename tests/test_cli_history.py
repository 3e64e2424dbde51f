"""``cronwf history``: what it prints of a CronWorkflow's history in Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import redis
from conftest import RedisServer

from policies.decision import History, record_claim, record_lost, record_spawn
from scheduler.adapters.redis.history import RedisHistory
from scheduler.cli import main
from scheduler.core.engine import RunRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "default/backup"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_history_shows_lost_runs_and_claims_whose_spawn_is_not_recorded(
    redis_server: RedisServer, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RedisHistory(redis_client)
    seed = History(cursor=T0, signature="*/5 * * * *")
    store.apply(
        KEY, seed, partial(record_claim, scheduled_at=at(5), workflow="backup-5", claimed_at=at(5))
    )
    store.apply(KEY, seed, partial(record_spawn, scheduled_at=at(5), workflow="backup-5"))
    store.apply(
        KEY,
        seed,
        partial(record_lost, workflow="backup-5"),
        [RunRecord(at(5), "Lost", at(30), workflow="backup-5", reason="OutcomeUnknown")],
    )
    store.apply(
        KEY,
        seed,
        partial(record_claim, scheduled_at=at(10), workflow="backup-10", claimed_at=at(10)),
    )

    assert main(["history", KEY, "--redis-url", redis_server.url, "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lost"] == 1
    assert report["active"] == ["backup-10"]
    assert report["claimed"] == {
        "backup-10": {"scheduledTime": "2026-01-01T00:10:00Z", "claimedAt": "2026-01-01T00:10:00Z"}
    }
    assert [(r["decision"], r["reason"]) for r in report["runs"]] == [("Lost", "OutcomeUnknown")]

    assert main(["history", KEY, "--redis-url", redis_server.url]) == 0
    text = capsys.readouterr().out
    assert "lost=1" in text
    assert "claimed backup-10: scheduled 2026-01-01T00:10:00Z" in text
