"""The history store contract, held against every store: in memory, Redis on fakeredis, and
Redis on a real ``redis-server``.

``MemoryHistory`` is the reference; a test here that only one store passes is a bug in the
other one. Redis-specific behaviour (key layout, outages, fencing) is in
``test_redis_history.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import fakeredis
import pytest
import redis

from policies.decision import (
    History,
    Intent,
    Phase,
    WorkflowPhase,
    claimable,
    record_completion,
    record_deleted,
    record_missed,
    record_skip,
    record_spawn,
    record_stopped,
)
from scheduler.adapters.redis.history import RedisHistory
from scheduler.core.engine import Change, Claim, HistoryStore, RunRecord
from scheduler.core.memory import MemoryHistory, merge_run

KEY = "default/backup"
OTHER = "team-a/report"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEED = History(cursor=T0, signature="0 * * * *")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def increment(history: History) -> History:
    return replace(history, succeeded=history.succeeded + 1)


def same(history: History) -> History:
    return history


def claim_of(key: str, scheduled_at: datetime, seed: History = SEED) -> Claim:
    workflow = f"backup-{int(scheduled_at.timestamp())}"
    return Claim(key, seed, scheduled_at, workflow, scheduled_at)


def claim(store: HistoryStore, key: str, scheduled_at: datetime) -> bool:
    """What the engine does to claim an instant: granted when it was undecided."""
    return store.claim_many([claim_of(key, scheduled_at)])[0]


class Store(HistoryStore, Protocol):
    def recent_runs(self, key: str) -> list[RunRecord]: ...


@dataclass
class Backend:
    name: str
    make: Callable[..., Store]
    """A new store on this backend (keyword options: ``recent_runs``)."""
    client: redis.Redis | None
    """The Redis behind the store, to look at its keys; None for the memory store."""

    def redis_keys(self) -> set[str]:
        assert self.client is not None
        return {k.decode() if isinstance(k, bytes) else k for k in self.client.scan_iter()}


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", MemoryHistory, None)
        return
    client: redis.Redis
    if request.param == "fakeredis":
        # decode_responses=True here and bytes on the real server: the store handles both.
        client = fakeredis.FakeRedis(
            server=fakeredis.FakeServer(version=(7,)), decode_responses=True
        )
    else:
        client = request.getfixturevalue("redis_client")

    def make(**options: Any) -> Store:
        return RedisHistory(client, **options)

    yield Backend(request.param, make, client)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.make()


# --------------------------------------------------------------------------------------------
# load, apply, seed


def test_an_unknown_cronworkflow_has_no_history(store: Store) -> None:
    assert store.load(KEY) is None
    assert store.recent_runs(KEY) == []


def test_the_first_apply_starts_from_the_seed(store: Store) -> None:
    before, after = store.apply(KEY, SEED, increment)

    assert (before, after) == (SEED, replace(SEED, succeeded=1))
    assert store.load(KEY) == after


def test_a_stored_history_wins_over_the_seed(store: Store) -> None:
    _, first = store.apply(KEY, SEED, increment)

    before, after = store.apply(KEY, replace(SEED, succeeded=40), increment)

    assert (before, after) == (first, replace(SEED, succeeded=2))
    assert store.load(KEY) == after


def test_applying_the_identity_stores_the_seed(store: Store) -> None:
    """What the engine does for a CronWorkflow it meets for the first time."""
    assert store.apply(KEY, SEED, same) == (SEED, SEED)
    assert store.load(KEY) == SEED


def test_histories_of_cronworkflows_are_independent(store: Store) -> None:
    store.apply(KEY, SEED, increment)
    store.apply(OTHER, replace(SEED, failed=7), increment)

    assert store.load(KEY) == replace(SEED, succeeded=1)
    assert store.load(OTHER) == replace(SEED, failed=7, succeeded=1)


def test_a_failing_transition_changes_nothing(store: Store) -> None:
    store.apply(KEY, SEED, increment)

    def broken(history: History) -> History:
        raise RuntimeError("transition failed")

    with pytest.raises(RuntimeError, match="transition failed"):
        store.apply(KEY, SEED, broken, [RunRecord(at(1), "Skipped", at(1))])

    assert store.load(KEY) == replace(SEED, succeeded=1)
    assert store.recent_runs(KEY) == []


# --------------------------------------------------------------------------------------------
# Round trip of every field

LOS_ANGELES = ZoneInfo("America/Los_Angeles")

HISTORIES = {
    "defaults, no times": History(),
    "every field set": History(
        cursor=datetime(2026, 3, 8, 9, 59, 0, 123456, tzinfo=UTC),
        signature="CRON_TZ=America/Los_Angeles 59 1 * * *,@every 90s",
        last_scheduled_time=datetime(2026, 3, 8, 9, 59, tzinfo=UTC),
        last_succeeded_time=datetime(2026, 3, 8, 9, 58, 41, 250000, tzinfo=UTC),
        succeeded=123456789,
        failed=42,
        consecutive_succeeded=0,
        consecutive_failed=3,
        phase=Phase.STOPPED,
        active=("backup-1772963940", "backup-1772963880", "backup-1772964000"),
        conditions={
            "SubmissionError": 'Failed to submit Workflow: "quota" exceeded — ünïcode',
            "SpecError": "cron schedule 61 * * * * is malformed: minute out of range",
        },
    ),
    "active phase, nothing running": History(cursor=T0, phase=Phase.ACTIVE, signature="@hourly"),
    "a time before 1970 with microseconds": History(
        cursor=datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        last_scheduled_time=datetime(1969, 7, 20, 20, 17, tzinfo=UTC),
    ),
    "a time one microsecond after a whole second": History(
        cursor=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    ),
    "a time in another zone is the same instant": History(
        cursor=datetime(2026, 3, 8, 1, 59, 30, 5, tzinfo=LOS_ANGELES)
    ),
}


@pytest.mark.parametrize("history", HISTORIES.values(), ids=HISTORIES.keys())
def test_every_history_field_round_trips(store: Store, history: History) -> None:
    store.apply(KEY, history, same)

    loaded = store.load(KEY)

    assert loaded == history
    assert loaded is not None
    assert isinstance(loaded.active, tuple)
    assert list(loaded.conditions) == list(history.conditions)
    assert loaded.cursor is None or loaded.cursor.utcoffset() is not None


def test_every_run_record_field_round_trips(store: Store) -> None:
    runs = [
        RunRecord(
            at(1),
            "Spawned",
            datetime(2026, 1, 1, 0, 1, 0, 250000, tzinfo=UTC),
            workflow="backup-1767225660",
            phase="Failed",
            finished_at=datetime(2026, 1, 1, 0, 3, 7, 999999, tzinfo=UTC),
        ),
        RunRecord(at(2), "Skipped", at(2), reason="ConcurrencyForbid"),
        RunRecord(at(3), "Missed", at(9), reason="superseded"),
        RunRecord(at(4), "Error", at(4), reason="SubmissionError"),
    ]

    store.apply(KEY, SEED, same, runs)

    assert store.recent_runs(KEY) == runs[::-1]


# --------------------------------------------------------------------------------------------
# Replays are idempotent: the same event observed twice is recorded once.


def test_a_replayed_spawn_is_recorded_once(store: Store) -> None:
    run = RunRecord(at(1), "Spawned", at(1), workflow="backup-1")
    spawn = lambda h: record_spawn(h, at(1), "backup-1")  # noqa: E731
    _, first = store.apply(KEY, SEED, spawn, [run])

    before, after = store.apply(KEY, SEED, spawn, [run])

    assert before == after == first
    assert first.active == ("backup-1",)
    assert store.load(KEY) == first
    assert store.recent_runs(KEY) == [run]


def test_a_replayed_completion_is_counted_once(store: Store) -> None:
    store.apply(KEY, SEED, lambda h: record_spawn(h, at(1), "backup-1"))
    done = RunRecord(
        at(1), "Spawned", at(2), workflow="backup-1", phase="Succeeded", finished_at=at(2)
    )

    def complete(history: History) -> History:
        return record_completion(history, "backup-1", WorkflowPhase.SUCCEEDED).history

    _, counted = store.apply(KEY, SEED, complete, [done])
    before, after = store.apply(KEY, SEED, complete, [done])

    assert (counted.succeeded, counted.consecutive_succeeded, counted.active) == (1, 1, ())
    assert before == after == counted
    assert store.load(KEY) == counted
    assert store.recent_runs(KEY) == [done]


def test_each_event_of_a_sequence_observed_twice_changes_nothing(store: Store) -> None:
    events: list[tuple[Callable[[History], History], list[RunRecord]]] = [
        (lambda h: record_missed(h, (at(1), at(2))), [RunRecord(at(2), "Missed", at(3))]),
        (lambda h: record_spawn(h, at(3), "backup-3"), [RunRecord(at(3), "Spawned", at(3))]),
        (lambda h: record_skip(h, at(4)), [RunRecord(at(4), "Skipped", at(4), reason="Stopped")]),
        (
            lambda h: record_completion(h, "backup-3", WorkflowPhase.FAILED).history,
            [RunRecord(at(3), "Spawned", at(5), phase="Failed", finished_at=at(5))],
        ),
        (lambda h: record_deleted(h, "backup-3"), []),
        (record_stopped, []),
    ]
    for transition, records in events:
        _, history = store.apply(KEY, SEED, transition, records)
        runs = store.recent_runs(KEY)

        before, after = store.apply(KEY, SEED, transition, records)

        assert before == after == history
        assert store.load(KEY) == history
        assert store.recent_runs(KEY) == runs


# --------------------------------------------------------------------------------------------
# Recent runs: upserted by instant, merged, bounded, newest first


def test_recent_runs_are_listed_newest_first(store: Store) -> None:
    store.apply(KEY, SEED, same, [RunRecord(at(1), "Skipped", at(1))])
    store.apply(KEY, SEED, same, [RunRecord(at(3), "Skipped", at(3))])
    store.apply(KEY, SEED, same, [RunRecord(at(2), "Missed", at(4))])

    assert [run.scheduled_at for run in store.recent_runs(KEY)] == [at(3), at(2), at(1)]


def test_a_later_record_of_an_instant_merges_its_non_empty_fields(store: Store) -> None:
    spawned = RunRecord(at(1), "Spawned", at(1) + timedelta(seconds=1), workflow="backup-1")
    finished = RunRecord(at(1), "Spawned", at(7), workflow="", phase="Succeeded", finished_at=at(6))

    store.apply(KEY, SEED, same, [spawned])
    store.apply(KEY, SEED, same, [finished])

    merged = merge_run(spawned, finished)
    assert store.recent_runs(KEY) == [merged]
    assert (merged.decided_at, merged.workflow, merged.phase) == (
        spawned.decided_at,
        "backup-1",
        "Succeeded",
    )


def test_an_empty_field_never_erases_a_recorded_one(store: Store) -> None:
    failed = RunRecord(
        at(1), "Error", at(1), reason="SubmissionError", phase="Failed", finished_at=at(2)
    )

    store.apply(KEY, SEED, same, [failed])
    store.apply(KEY, SEED, same, [RunRecord(at(1), "", at(5))])

    assert store.recent_runs(KEY) == [failed]


def test_records_of_one_instant_in_one_apply_merge_in_order(store: Store) -> None:
    first = RunRecord(at(1), "Spawned", at(1), workflow="backup-1")
    second = RunRecord(at(1), "Spawned", at(2), phase="Error", finished_at=at(2))

    store.apply(KEY, SEED, same, [first, second])

    assert store.recent_runs(KEY) == [merge_run(first, second)]


def test_recent_runs_keep_the_newest_100_by_default(store: Store) -> None:
    for minute in range(105):
        store.apply(KEY, SEED, same, [RunRecord(at(minute), "Skipped", at(minute))])

    runs = store.recent_runs(KEY)

    assert [run.scheduled_at for run in runs] == [at(m) for m in range(104, 4, -1)]


def test_the_bound_of_recent_runs_is_configurable(backend: Backend) -> None:
    store = backend.make(recent_runs=3)

    store.apply(KEY, SEED, same, [RunRecord(at(m), "Skipped", at(m)) for m in range(2)])
    store.apply(KEY, SEED, same, [RunRecord(at(m), "Skipped", at(m)) for m in range(2, 5)])

    assert [run.scheduled_at for run in store.recent_runs(KEY)] == [at(4), at(3), at(2)]


def test_recent_runs_are_kept_per_cronworkflow(store: Store) -> None:
    store.apply(KEY, SEED, same, [RunRecord(at(1), "Skipped", at(1))])
    store.apply(OTHER, SEED, same, [RunRecord(at(2), "Missed", at(2))])

    assert [run.decision for run in store.recent_runs(KEY)] == ["Skipped"]
    assert [run.decision for run in store.recent_runs(OTHER)] == ["Missed"]


# --------------------------------------------------------------------------------------------
# Claims


def test_an_instant_of_an_unknown_cronworkflow_can_be_claimed(store: Store) -> None:
    assert claim(store, KEY, at(1)) is True


@pytest.mark.parametrize(
    ("cursor", "scheduled_at", "claimed"),
    [
        (at(5), at(4), False),
        (at(5), at(5), False),
        (at(5), at(6), True),
        (T0 + timedelta(microseconds=1), T0, False),
        (T0 - timedelta(microseconds=1), T0, True),
        (T0 + timedelta(microseconds=999999), T0 + timedelta(seconds=1), True),
        (
            datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
            True,
        ),
        (datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, tzinfo=UTC), False),
    ],
    ids=[
        "before the cursor",
        "at the cursor",
        "after the cursor",
        "a microsecond before the cursor",
        "a microsecond after the cursor",
        "just after a fractional cursor",
        "after a cursor before 1970",
        "before 1970",
    ],
)
def test_only_instants_after_the_cursor_can_be_claimed(
    store: Store, cursor: datetime, scheduled_at: datetime, claimed: bool
) -> None:
    store.apply(KEY, replace(SEED, cursor=cursor), same)

    assert claim(store, KEY, scheduled_at) is claimed


def test_a_history_without_a_cursor_lets_any_instant_be_claimed(store: Store) -> None:
    store.apply(KEY, History(), same)

    assert claim(store, KEY, at(-1000)) is True


def test_a_claim_records_the_intent_and_decides_the_instant(backend: Backend) -> None:
    """DESIGN §9: no later leader spawns a claimed instant again, whatever the sink. The
    intent survives the claimer: another store object (a successor replica) reads it."""
    store = backend.make()
    store.apply(KEY, SEED, same)

    assert claim(store, KEY, at(1)) is True
    assert claim(store, KEY, at(1)) is False

    successor = backend.make() if backend.client is not None else store
    claimed = successor.load(KEY)
    assert claimed is not None
    assert claimed.cursor == at(1)
    assert claimed.active == ("backup-1767225660",)
    assert claimed.intents == {"backup-1767225660": Intent(at(1), at(1), T0)}
    assert claim(successor, KEY, at(1)) is False


# --------------------------------------------------------------------------------------------
# Batches: claim_many and apply_many are claim and apply of each item


def test_loads_in_a_batch_answer_as_loads_one_by_one(store: Store) -> None:
    """Known and unknown CronWorkflows, a key twice, and more keys than one round trip
    carries (1,000)."""
    keys = [f"fleet/cron-{n}" for n in range(2_100)]
    for n, key in enumerate(keys[::3]):
        store.apply(key, replace(SEED, succeeded=n), same)
    asked = [*keys, KEY, keys[3], keys[3]]

    assert store.load_many(asked) == [store.load(key) for key in asked]
    assert store.load_many(asked)[3] == replace(SEED, succeeded=1)
    assert store.load_many([]) == []


def test_claims_record_what_the_claim_change_records(backend: Backend) -> None:
    """A store may record claims its own way (the Redis store has a script for them): the
    answers and the histories are those of applying each claim's change."""
    claims = [claim_of(KEY, at(6)), claim_of(OTHER, at(4)), claim_of("default/new", at(1))]
    batched = backend.make()
    alone = backend.make(prefix="alone") if backend.client is not None else MemoryHistory()
    for store in (batched, alone):
        store.apply(KEY, replace(SEED, cursor=at(5), active=("old",)), same)
        store.apply(OTHER, replace(SEED, cursor=at(5)), same)

    granted = batched.claim_many(claims)
    changed = [alone.apply(*claim.change()) for claim in claims]

    assert granted == [True, False, True]
    assert granted == [
        claimable(before, c.scheduled_at) for (before, _), c in zip(changed, claims, strict=True)
    ]
    assert batched.claim_many(claims) == [False, False, False]
    fresh = backend.make() if backend.client is not None else batched
    for claim_ in claims:
        assert fresh.load(claim_.key) == alone.load(claim_.key)
    claimed = fresh.load(KEY)
    assert claimed is not None
    assert claimed.active == ("old", "backup-1767225960")
    assert claimed.intents == {"backup-1767225960": Intent(at(6), at(6), at(5))}


def test_changes_in_a_batch_apply_as_changes_one_by_one(backend: Backend) -> None:
    """The same (before, after) pairs, histories and recent runs, for known and unknown
    CronWorkflows alike; an empty batch does nothing."""
    keys = [KEY, OTHER, "default/third"]
    one_by_one = backend.make()
    # Two stores side by side: on one Redis, under two prefixes.
    batched = backend.make(prefix="batched") if backend.client is not None else backend.make()
    for store in (one_by_one, batched):
        store.apply(KEY, SEED, increment)

    def changes(minute: int) -> list[Change]:
        return [
            Change(
                key, replace(SEED, failed=n), increment, [RunRecord(at(minute), "Skipped", at(0))]
            )
            for n, key in enumerate(keys)
        ]

    expected = [one_by_one.apply(*change) for change in changes(1)]
    assert batched.apply_many(changes(1)) == expected
    assert batched.apply_many([]) == []
    for key in keys:
        assert batched.load(key) == one_by_one.load(key)
        assert batched.recent_runs(key) == one_by_one.recent_runs(key)


def test_a_replayed_batch_changes_nothing_more(store: Store) -> None:
    spawn = [
        Change(key, SEED, lambda h, key=key: record_spawn(h, at(1), f"{key}-1"))
        for key in (KEY, OTHER)
    ]
    first = store.apply_many(spawn)

    again = store.apply_many(spawn)

    assert [after for _, after in again] == [after for _, after in first]
    assert [before for before, _ in again] == [after for _, after in first]


# --------------------------------------------------------------------------------------------
# Forgetting a deleted CronWorkflow


def test_forget_removes_everything_stored_for_the_cronworkflow(backend: Backend) -> None:
    store = backend.make()
    store.apply(KEY, SEED, increment, [RunRecord(at(1), "Skipped", at(1))])
    store.apply(OTHER, SEED, increment, [RunRecord(at(1), "Skipped", at(1))])

    store.forget(KEY)

    assert store.load(KEY) is None
    assert store.recent_runs(KEY) == []
    assert store.load(OTHER) == replace(SEED, succeeded=1)
    assert len(store.recent_runs(OTHER)) == 1
    if backend.client is not None:
        assert all("{team-a/report}" in key for key in backend.redis_keys())


def test_forgetting_an_unknown_cronworkflow_is_harmless(store: Store) -> None:
    store.forget(KEY)

    assert store.load(KEY) is None


def test_after_forget_the_seed_applies_again(store: Store) -> None:
    store.apply(KEY, SEED, increment)
    store.forget(KEY)

    before, after = store.apply(KEY, SEED, increment)

    assert (before, after) == (SEED, replace(SEED, succeeded=1))


# --------------------------------------------------------------------------------------------
# Concurrency


def test_concurrent_applies_never_lose_an_update(store: Store) -> None:
    threads, increments = 8, 50
    start = threading.Barrier(threads)
    seen: list[int] = []
    seen_guard = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(increments):
                before, after = store.apply(KEY, SEED, increment)
                assert after.succeeded == before.succeeded + 1
                with seen_guard:
                    seen.append(before.succeeded)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    history = store.load(KEY)
    assert history is not None
    assert history.succeeded == threads * increments
    # Every apply saw a different predecessor: the applies were serialized.
    assert sorted(seen) == list(range(threads * increments))
