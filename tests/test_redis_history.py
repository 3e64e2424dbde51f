"""What only the Redis store has: its key layout, optimistic concurrency, the start-up check
of the eviction policy, outages of the server, and leadership with a fencing token.

The shared behaviour of every store is in ``test_history_contract.py``.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import fakeredis
import pytest
import redis
from conftest import RedisServer
from hypothesis import assume, given
from hypothesis import strategies as st
from redis.crc import key_slot
from redis_proxy import RedisProxy

from policies.decision import History, record_claim, record_spawn
from scheduler.adapters.redis.history import (
    FencedOut,
    RedisHistory,
    RedisURLError,
    WriteConflict,
    check_eviction_policy,
    connect,
    decode_time,
    describe_client,
    encode_time,
    redact_url,
    valid_redis_url,
)
from scheduler.adapters.redis.leadership import RedisLeaderLock
from scheduler.core.engine import Change, Claim, RunRecord, StoreUnavailable

KEY = "default/backup"
OTHER = "team-a/report"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEED = History(cursor=T0, signature="0 * * * *")
STATE = "cronwf:{default/backup}:state"
RUNS = "cronwf:{default/backup}:runs"
ORDER = "cronwf:{default/backup}:runs:order"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def increment(history: History) -> History:
    return replace(history, succeeded=history.succeeded + 1)


def claim_of(key: str, scheduled_at: datetime) -> Claim:
    return Claim(key, SEED, scheduled_at, f"backup-{int(scheduled_at.timestamp())}", scheduled_at)


def claim(store: RedisHistory, key: str, scheduled_at: datetime) -> bool:
    """The engine's claim: a fenced write of the intent, granted when it was undecided."""
    return store.claim_many([claim_of(key, scheduled_at)])[0]


def claim_many(store: RedisHistory, claims: list[tuple[str, datetime]]) -> list[bool]:
    return store.claim_many([claim_of(key, at_) for key, at_ in claims])


def same(history: History) -> History:
    return history


def text(value: Any) -> Any:
    """Replies as str, whatever the client's ``decode_responses``."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(text(v) for v in value)
    return value


@pytest.fixture(params=["fakeredis", "redis"])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    if request.param == "fakeredis":
        return fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(7,)))
    result: redis.Redis = request.getfixturevalue("redis_client")
    return result


def keys_of(client: redis.Redis) -> set[str]:
    return {text(key) for key in client.scan_iter()}


# --------------------------------------------------------------------------------------------
# The Redis model


def test_the_keys_of_a_cronworkflow_share_its_hash_tag(client: redis.Redis) -> None:
    store = RedisHistory(client)

    store.apply(KEY, SEED, increment, [RunRecord(at(1), "Skipped", at(1))])

    assert keys_of(client) == {STATE, RUNS, ORDER}
    assert len({key_slot(key.encode()) for key in keys_of(client)}) == 1
    assert key_slot(STATE.encode()) == key_slot(b"{default/backup}")


def test_the_key_prefix_is_configurable_and_separates_stores(client: redis.Redis) -> None:
    team_a, team_b = RedisHistory(client, prefix="team-a"), RedisHistory(client, prefix="team-b")

    team_a.apply(KEY, SEED, increment)

    assert keys_of(client) == {"team-a:{default/backup}:state"}
    assert team_b.load(KEY) is None


@pytest.mark.parametrize("key", ["default/back{up}", "default/}", "{default}/x"])
def test_a_key_with_braces_is_refused(client: redis.Redis, key: str) -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisHistory(client).apply(key, SEED, same)


def test_a_prefix_with_braces_is_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisHistory(client, prefix="{cronwf}")


def test_the_state_is_a_readable_hash_with_unix_seconds(client: redis.Redis) -> None:
    history = History(
        cursor=T0 + timedelta(microseconds=412000),
        signature="@hourly",
        succeeded=3,
        last_succeeded_time=T0 - timedelta(minutes=58, seconds=29),
        active=("backup-2", "backup-1"),
        conditions={"SubmissionError": "quota"},
    )

    RedisHistory(client).apply(KEY, history, same)

    state = text(client.hgetall(STATE))
    assert len(state.pop("version")) == 16
    assert state == {
        "cursor": "1767225600.412000",
        "signature": "@hourly",
        "lastScheduledTime": "",
        "lastSucceededTime": "1767222091",
        "succeeded": "3",
        "failed": "0",
        "consecutiveSucceeded": "0",
        "consecutiveFailed": "0",
        "phase": "",
        "active": '["backup-2", "backup-1"]',
        "conditions": '{"SubmissionError": "quota"}',
        "intents": "{}",
        "lost": "0",
    }


def test_runs_are_a_hash_by_instant_indexed_by_a_sorted_set(client: redis.Redis) -> None:
    run = RunRecord(at(1), "Spawned", at(1), workflow="backup-1767225660")

    RedisHistory(client).apply(KEY, SEED, same, [run])

    record = '{"decision":"Spawned","decidedAt":"1767225660","workflow":"backup-1767225660"}'
    assert text(client.hgetall(RUNS)) == {"1767225660": record}
    assert text(client.zrange(ORDER, 0, -1, withscores=True)) == [("1767225660", 1767225660.0)]


def test_runs_beyond_the_bound_leave_both_the_hash_and_the_index(client: redis.Redis) -> None:
    store = RedisHistory(client, recent_runs=10)

    for minute in range(15):
        store.apply(KEY, SEED, same, [RunRecord(at(minute), "Skipped", at(minute))])

    assert client.hlen(RUNS) == client.zcard(ORDER) == 10
    assert set(text(client.hkeys(RUNS))) == set(text(client.zrange(ORDER, 0, -1)))


@pytest.mark.parametrize(
    ("moment", "encoded"),
    [
        (T0, "1767225600"),
        (T0 + timedelta(microseconds=1), "1767225600.000001"),
        (datetime(1970, 1, 1, tzinfo=UTC), "0"),
        (datetime(1969, 12, 31, 23, 59, 59, 750000, tzinfo=UTC), "-0.250000"),
        (datetime(1969, 12, 31, 23, 59, 58, tzinfo=UTC), "-2"),
    ],
)
def test_times_are_unix_seconds_exact_to_the_microsecond(moment: datetime, encoded: str) -> None:
    assert encode_time(moment) == encoded
    assert decode_time(encoded) == moment


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_time(datetime(2026, 1, 1))


def test_a_replayed_event_writes_nothing(client: redis.Redis) -> None:
    """Not even the version: a duplicate observation costs one round trip and no write."""
    store = RedisHistory(client)
    run = RunRecord(at(1), "Spawned", at(1), workflow="backup-1")
    store.apply(KEY, SEED, lambda h: record_spawn(h, at(1), "backup-1"), [run])
    state, runs = client.hgetall(STATE), client.hgetall(RUNS)

    store.apply(KEY, SEED, lambda h: record_spawn(h, at(1), "backup-1"), [run])
    RedisHistory(client).apply(KEY, SEED, lambda h: record_spawn(h, at(1), "backup-1"), [run])

    assert (client.hgetall(STATE), client.hgetall(RUNS)) == (state, runs)


# --------------------------------------------------------------------------------------------
# Optimistic concurrency between replicas


def test_a_write_on_a_stale_state_is_recomputed_on_the_current_one(client: redis.Redis) -> None:
    replica_a, replica_b = RedisHistory(client), RedisHistory(client)
    replica_a.apply(KEY, SEED, increment)
    replica_b.apply(KEY, SEED, increment)

    before, after = replica_a.apply(KEY, SEED, increment)

    assert (before.succeeded, after.succeeded) == (2, 3)
    assert replica_b.load(KEY) == after


def test_a_state_deleted_and_rebuilt_meanwhile_is_not_mistaken_for_the_old_one(
    client: redis.Redis,
) -> None:
    """ABA: the version is random, so a history rebuilt with as many changes as the one a
    replica remembers still reads as changed."""
    replica_a, replica_b = RedisHistory(client), RedisHistory(client)
    replica_a.apply(KEY, SEED, increment)
    replica_b.forget(KEY)
    replica_b.apply(KEY, replace(SEED, failed=5), increment)

    before, after = replica_a.apply(KEY, SEED, increment)

    assert (before.failed, before.succeeded, after.succeeded) == (5, 1, 2)


def test_a_store_emptied_behind_its_back_starts_from_the_seed(client: redis.Redis) -> None:
    store = RedisHistory(client)
    store.apply(KEY, SEED, increment)
    client.flushall()

    before, _ = store.apply(KEY, SEED, increment)

    assert before == SEED


def test_conflicts_beyond_the_bound_raise_and_write_nothing(client: redis.Redis) -> None:
    store, rival = RedisHistory(client, max_conflicts=2), RedisHistory(client)
    store.apply(KEY, SEED, same)

    def contended(history: History) -> History:
        rival.apply(KEY, SEED, increment)  # another replica writes while we compute
        return replace(history, failed=history.failed + 1)

    with pytest.raises(WriteConflict, match="apply to default/backup") as raised:
        store.apply(KEY, SEED, contended)

    assert isinstance(raised.value, StoreUnavailable)
    assert store.load(KEY) == replace(SEED, succeeded=3, failed=0)


def test_a_batch_retries_alone_the_change_that_met_another_writer(client: redis.Redis) -> None:
    """The replica's cached state of one CronWorkflow is stale (a rival wrote since): that
    change is recomputed on the current state, the others are written as computed."""
    store, rival = RedisHistory(client), RedisHistory(client)
    store.apply(KEY, SEED, same)
    store.apply(OTHER, SEED, same)
    rival.apply(KEY, SEED, increment)

    results = store.apply_many([Change(KEY, SEED, increment), Change(OTHER, SEED, increment)])

    assert [(before.succeeded, after.succeeded) for before, after in results] == [(1, 2), (0, 1)]
    assert rival.load(KEY) == replace(SEED, succeeded=2)
    assert rival.load(OTHER) == replace(SEED, succeeded=1)


def test_a_batch_reads_the_states_it_has_not_cached_in_one_go(client: redis.Redis) -> None:
    writer, reader = RedisHistory(client), RedisHistory(client)
    writer.apply(KEY, replace(SEED, failed=3), same)

    results = reader.apply_many([Change(KEY, SEED, increment), Change(OTHER, SEED, increment)])

    assert [before for before, _ in results] == [replace(SEED, failed=3), SEED]


def test_a_batch_whose_scripts_the_server_lost_loads_them_and_goes_through(
    client: redis.Redis,
) -> None:
    """A restarted server has no scripts: the batch's claims and writes answer NOSCRIPT,
    the scripts are loaded again and the batch sent once more (and written once)."""
    store = RedisHistory(client)
    store.apply_many([Change(KEY, SEED, same), Change(OTHER, SEED, same)])
    client.script_flush()
    assert claim_many(store, [(KEY, at(5)), (OTHER, at(5))]) == [True, True]

    client.script_flush()
    results = store.apply_many([Change(KEY, SEED, increment), Change(OTHER, SEED, increment)])

    assert [after.succeeded for _, after in results] == [1, 1]
    stored = RedisHistory(client).load(KEY)
    assert stored is not None
    assert (stored.succeeded, stored.cursor) == (1, at(5))


def test_a_batch_is_one_round_trip_of_scripts_without_asking_which_exist(
    redis_client: redis.Redis,
) -> None:
    client = redis_client
    store = RedisHistory(client)
    store.apply_many([Change(KEY, SEED, same), Change(OTHER, SEED, same)])
    claim_many(store, [(KEY, at(1)), (OTHER, at(1))])  # the server learns the script once
    client.config_resetstat()

    claim_many(store, [(KEY, at(5)), (OTHER, at(5))])
    store.apply_many([Change(KEY, SEED, increment), Change(OTHER, SEED, increment)])

    stats = cast(dict[str, Any], client.info("commandstats"))
    assert stats["cmdstat_evalsha"]["calls"] == 4
    assert "cmdstat_script|exists" not in stats


def test_a_conflict_within_the_bound_is_retried(client: redis.Redis) -> None:
    store, rival = RedisHistory(client), RedisHistory(client)
    store.apply(KEY, SEED, same)
    calls: list[int] = []

    def contended_once(history: History) -> History:
        calls.append(history.succeeded)
        if len(calls) == 1:
            rival.apply(KEY, SEED, increment)
        return replace(history, failed=history.failed + 1)

    _, after = store.apply(KEY, SEED, contended_once)

    assert calls == [0, 1]
    assert store.load(KEY) == after == replace(SEED, succeeded=1, failed=1)


def test_the_in_process_store_needs_no_server_and_is_private() -> None:
    first, second = RedisHistory.in_process(), RedisHistory.in_process()

    first.apply(KEY, SEED, increment)

    assert first.load(KEY) == replace(SEED, succeeded=1)
    assert second.load(KEY) is None


# --------------------------------------------------------------------------------------------
# Start-up check: will Redis evict our keys?


@pytest.mark.parametrize(
    ("policy", "warns"),
    [
        ("noeviction", False),
        ("volatile-lru", False),
        ("volatile-ttl", False),
        ("allkeys-lru", True),
        ("allkeys-lfu", True),
        ("allkeys-random", True),
    ],
)
def test_an_eviction_policy_that_may_evict_our_keys_is_reported(
    redis_server: RedisServer, redis_client: redis.Redis, policy: str, warns: bool
) -> None:
    original = text(redis_client.config_get("maxmemory-policy"))["maxmemory-policy"]
    redis_client.config_set("maxmemory-policy", policy)
    try:
        warning = check_eviction_policy(redis_client)
    finally:
        redis_client.config_set("maxmemory-policy", original)

    if warns:
        assert warning is not None
        assert policy in warning
        assert f"127.0.0.1:{redis_server.port}" in warning
        assert "noeviction" in warning
    else:
        assert warning is None


def test_the_eviction_check_is_silent_when_config_is_forbidden(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Managed services often forbid CONFIG; we cannot tell, and do not refuse to start."""
    original = text(redis_client.config_get("maxmemory-policy"))["maxmemory-policy"]
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    redis_client.acl_setuser(
        "limited", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-config"]
    )
    limited = redis_server.client(username="limited", password="secret")
    try:
        assert check_eviction_policy(limited) is None
    finally:
        limited.close()
        redis_client.acl_deluser("limited")
        redis_client.config_set("maxmemory-policy", original)


def test_the_eviction_check_is_silent_on_the_in_process_store() -> None:
    assert check_eviction_policy(fakeredis.FakeRedis(server=fakeredis.FakeServer())) is None


# --------------------------------------------------------------------------------------------
# Outages

OUTAGE_BOUND = 3.0  # seconds an operation may take to give up (timeouts and reconnect retries)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(persistent_redis: RedisServer) -> RedisServer:
    """A server of this test alone, persistent: stop and start keep its data."""
    return persistent_redis


def test_an_outage_makes_every_operation_raise_store_unavailable_quickly(
    server: RedisServer,
) -> None:
    store = RedisHistory.from_url(server.url)
    store.apply(KEY, SEED, increment)
    server.stop()

    operations = {
        "load": lambda: store.load(KEY),
        "apply": lambda: store.apply(KEY, SEED, increment),
        "claim": lambda: claim(store, KEY, at(1)),
        "claim many": lambda: claim_many(store, [(KEY, at(1)), (OTHER, at(1))]),
        "apply many": lambda: store.apply_many(
            [Change(KEY, SEED, increment), Change(OTHER, SEED, increment)]
        ),
        "recent runs": lambda: store.recent_runs(KEY),
        "forget": lambda: store.forget(KEY),
    }
    for name, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            operation()
        assert time.monotonic() - started < OUTAGE_BOUND, name
        assert f"Redis at redis://127.0.0.1:{server.port}/0 is unreachable" in str(raised.value)
        assert KEY in str(raised.value)
        assert not isinstance(raised.value, redis.exceptions.RedisError)


def test_after_a_restart_the_same_client_reconnects_and_the_state_is_intact(
    server: RedisServer,
) -> None:
    store = RedisHistory.from_url(server.url)
    _, kept = store.apply(KEY, SEED, increment, [RunRecord(at(1), "Skipped", at(1))])
    server.stop()
    with pytest.raises(StoreUnavailable):
        store.apply(KEY, SEED, increment, [RunRecord(at(2), "Skipped", at(2))])

    server.start()

    assert store.load(KEY) == kept
    assert [run.scheduled_at for run in store.recent_runs(KEY)] == [at(1)]
    assert claim(store, KEY, at(2)) is True
    _, after = store.apply(KEY, SEED, increment)
    assert after.succeeded == 2


def test_a_redis_that_came_back_empty_starts_from_the_seed(server: RedisServer) -> None:
    """The engine then re-seeds counters and cursor from the CronWorkflow's status."""
    store = RedisHistory.from_url(server.url)
    store.apply(KEY, SEED, increment)
    server.stop()
    server.wipe()

    server.start()

    assert store.load(KEY) is None
    assert store.apply(KEY, SEED, increment) == (SEED, replace(SEED, succeeded=1))


def test_a_write_after_a_restart_without_reading_first_is_safe(server: RedisServer) -> None:
    """The store remembers the state it last wrote; a restart that lost data makes that
    memory stale, and the write must notice instead of building on it."""
    store = RedisHistory.from_url(server.url)
    store.apply(KEY, SEED, increment)
    store.apply(KEY, SEED, increment)
    server.stop()
    server.wipe()
    server.start()

    before, after = store.apply(KEY, SEED, increment)

    assert (before.succeeded, after.succeeded) == (0, 1)


def test_the_message_names_the_server_and_never_its_password() -> None:
    port = closed_port()
    store = RedisHistory.from_url(f"redis://:hunter2@127.0.0.1:{port}/3")

    with pytest.raises(StoreUnavailable) as raised:
        store.load(KEY)

    assert f"Redis at redis://:***@127.0.0.1:{port}/3 is unreachable" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://app:hunter2@redis:6379/0", "redis://app:***@redis:6379/0"),
        ("redis://:hunter2@redis/2", "redis://:***@redis:6379/2"),
        ("redis://app@redis:6379/0", "redis://app@redis:6379/0"),
        ("rediss://app:hunter2@redis:6380/1", "rediss://app:***@redis:6380/1"),
        ("rediss://redis", "rediss://redis:6379/0"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("unix://:hunter2@/run/redis.sock?db=3", "unix://:***@/run/redis.sock?db=3"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock?db=0"),
    ],
)
def test_a_client_is_described_with_its_scheme_user_and_place_never_its_password(
    url: str, shown: str
) -> None:
    """Issue 12: a TLS server showed as ``redis://``; ``rediss://`` stays ``rediss://``."""
    assert describe_client(connect(url)) == shown


def test_an_unreachable_tls_server_is_named_rediss_in_the_error() -> None:
    store = RedisHistory.from_url(f"rediss://app:hunter2@127.0.0.1:{closed_port()}/0")

    with pytest.raises(StoreUnavailable) as raised:
        store.load(KEY)

    assert "Redis at rediss://app:***@127.0.0.1:" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://app:hunter2@redis:6379/0", "redis://app:***@redis:6379/0"),
        ("rediss://:hunter2@redis:6380/0", "rediss://:***@redis:6380/0"),
        ("unix://:hunter2@/run/redis.sock", "unix://:***@/run/redis.sock"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://app@redis/0", "redis://app@redis/0"),
        ("redis://:hun/ter@2@redis/0", "redis://:***@redis/0"),
        ("app:hunter2@redis", "app:***@redis"),
        ("garbage", "garbage"),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_rest_as_given(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@given(
    user=st.text(alphabet=st.characters(blacklist_characters=":@"), max_size=8),
    password=st.text(min_size=4, max_size=20).filter(lambda p: p.strip("*") == p),
    scheme=st.sampled_from(["redis", "rediss", "unix", "http", ""]),
)
def test_a_password_never_survives_redaction(user: str, password: str, scheme: str) -> None:
    url = f"{scheme}{'://' if scheme else ''}{user}:{password}@redis:6379/0"
    assume(password not in f"{scheme}://{user}:***@redis:6379/0")
    assert password not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("garbage", "'garbage' is not a Redis URL: write redis://"),
        ("http://app:hunter2@redis/0", "'http://app:***@redis/0' is not a Redis URL"),
        ("REDIS://redis", "'REDIS://redis' is not a Redis URL"),
        ("redis://:hunter2@redis:abc/0", "the port must be a number from 1 to 65535"),
        ("redis://redis:70000/0", "the port must be a number from 1 to 65535"),
        ("redis://redis:0/0", "the port must be a number from 1 to 65535"),
        ("redis://:hunter2@redis:6379/zero", "the database must be a number"),
        ("redis://:hun/ter2@redis:6379/0", "percent-encode it"),
        ("unix://", "give the socket's path"),
        ("redis://redis/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ],
)
def test_a_malformed_url_is_refused_saying_what_to_write_without_its_password(
    url: str, problem: str
) -> None:
    """Issue 12: a malformed ``--redis-url`` was a traceback from deep inside redis-py."""
    with pytest.raises(RedisURLError) as raised:
        connect(url)

    assert problem in str(raised.value)
    assert "hunter2" not in str(raised.value)
    assert "hun/ter2" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://redis",
        "redis://app:p%40ss@redis:6379/15",
        "rediss://redis:6380/1?ssl_cert_reqs=none",
        "redis://[::1]:6379",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_well_formed_urls_are_accepted_as_they_are(url: str) -> None:
    assert valid_redis_url(url) == url


def test_the_leader_lock_raises_store_unavailable_during_an_outage(server: RedisServer) -> None:
    lock = RedisLeaderLock(connect(server.url), "replica-a")
    server.stop()

    for operation in (lock.try_acquire, lock.holder):
        with pytest.raises(StoreUnavailable, match="unreachable"):
            operation()


# -- a silent Redis: connect()'s timeouts and retries

SILENT_BOUND = 3.0  # seconds a call to a Redis that answers nothing may take to give up
BATCH = 10_000  # the most ticks a worker takes in one batch


@pytest.fixture
def proxy(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[RedisProxy]:
    """The session server (emptied) behind a proxy that can silence it."""
    with RedisProxy("127.0.0.1", redis_server.port) as running:
        yield running


def test_a_silent_redis_fails_every_call_quickly_and_the_same_store_carries_on_after(
    proxy: RedisProxy,
) -> None:
    """Sockets open, nothing answers: on the connection in use and on a new one alike."""
    store = RedisHistory.from_url(proxy.url)
    _, kept = store.apply(KEY, SEED, increment)
    proxy.pause()

    for connection in ("the pooled connection", "a new connection"):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            store.load(KEY)
        assert time.monotonic() - started < SILENT_BOUND, connection

    proxy.resume()
    assert store.load(KEY) == kept


def test_the_leader_lock_fails_as_quickly_on_a_silent_redis(proxy: RedisProxy) -> None:
    lock = RedisLeaderLock(connect(proxy.url), "replica-a")
    assert lock.try_acquire() is not None
    proxy.pause()

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        lock.renew()

    assert time.monotonic() - started < SILENT_BOUND


def test_a_batch_of_10_000_scripts_in_one_pipeline_takes_no_timeout(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """The reply timeout bounds each wait for bytes, not the whole batch, which a healthy
    server answers as it goes."""
    client = connect(redis_server.url)
    lock = RedisLeaderLock(client, "replica-a")
    store = RedisHistory(client, fence=lock)
    lock.try_acquire()
    keys = [f"default/cron-{i:05d}" for i in range(BATCH)]

    assert claim_many(store, [(key, at(1)) for key in keys]) == [True] * BATCH
    written = store.apply_many([Change(key, SEED, increment) for key in keys])

    assert [after.succeeded for _, after in written] == [1] * BATCH
    stored = RedisHistory(client).load(keys[-1])
    assert stored is not None
    assert (stored.succeeded, stored.cursor) == (1, at(1))


# --------------------------------------------------------------------------------------------
# Leadership: a Redis lock with a fencing token

LEADER = "cronwf:leader"
FENCE = "cronwf:leader:fence"


def expire(client: redis.Redis) -> None:
    """What the TTL does when the leader stops renewing (a pause, a partition)."""
    client.delete(LEADER)


def test_the_first_replica_acquires_the_lock_with_a_token(client: redis.Redis) -> None:
    lock = RedisLeaderLock(client, "replica-a", ttl=timedelta(seconds=15))

    token = lock.try_acquire()

    assert token is not None
    assert token >= 1
    assert lock.token == token
    assert lock.holder() == "replica-a"
    assert text(client.get(LEADER)) == lock.value
    assert re.fullmatch(rf"{token}:[0-9a-f]{{16}}:replica-a", text(client.get(LEADER)))
    assert 0 < client.pttl(LEADER) <= 15_000


def test_a_second_replica_cannot_acquire_a_held_lock(client: redis.Redis) -> None:
    leader, follower = RedisLeaderLock(client, "replica-a"), RedisLeaderLock(client, "replica-b")
    token = leader.try_acquire()

    assert follower.try_acquire() is None
    assert follower.try_acquire() is None

    assert follower.token is None
    assert leader.holder() == follower.holder() == "replica-a"
    assert int(client.get(FENCE)) == token, "failed attempts take no token"


def test_acquiring_again_while_leading_keeps_the_token(client: redis.Redis) -> None:
    lock = RedisLeaderLock(client, "replica-a")
    token = lock.try_acquire()

    assert lock.try_acquire() == token


def test_renewal_extends_the_ttl_of_the_holder_only(client: redis.Redis) -> None:
    leader = RedisLeaderLock(client, "replica-a", ttl=timedelta(seconds=10))
    follower = RedisLeaderLock(client, "replica-b", ttl=timedelta(seconds=10))
    leader.try_acquire()
    client.pexpire(LEADER, 100)  # the lock has almost lapsed

    assert leader.renew() is True
    assert follower.renew() is False

    assert client.pttl(LEADER) > 9_000
    assert leader.holder() == "replica-a"


def test_a_deposed_leader_learns_it_on_renewal(client: redis.Redis) -> None:
    old, new = RedisLeaderLock(client, "replica-a"), RedisLeaderLock(client, "replica-b")
    old.try_acquire()
    expire(client)
    new.try_acquire()

    assert old.renew() is False
    assert old.token is None
    assert old.holder() == "replica-b"


def test_release_lets_another_replica_take_over_at_once(client: redis.Redis) -> None:
    old, new = RedisLeaderLock(client, "replica-a"), RedisLeaderLock(client, "replica-b")
    first = old.try_acquire()

    old.release()

    assert old.token is None
    assert old.holder() is None
    second = new.try_acquire()
    assert first is not None
    assert second is not None
    assert second > first


def test_a_deposed_leader_releasing_leaves_the_new_leader_alone(client: redis.Redis) -> None:
    old, new = RedisLeaderLock(client, "replica-a"), RedisLeaderLock(client, "replica-b")
    old.try_acquire()
    expire(client)
    token = new.try_acquire()

    old.release()

    assert new.holder() == "replica-b"
    assert new.renew() is True
    assert new.token == token


def test_another_replica_takes_over_after_the_ttl(client: redis.Redis) -> None:
    old = RedisLeaderLock(client, "replica-a", ttl=timedelta(milliseconds=300))
    new = RedisLeaderLock(client, "replica-b", ttl=timedelta(milliseconds=300))
    first = old.try_acquire()
    assert new.try_acquire() is None

    deadline = time.monotonic() + 5
    second = None
    while second is None and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for Redis's TTL, which is real time by design
        second = new.try_acquire()

    assert first is not None
    assert second is not None
    assert second > first
    assert new.holder() == "replica-b"
    assert old.renew() is False


def test_tokens_strictly_increase_across_acquisitions(client: redis.Redis) -> None:
    replicas = [RedisLeaderLock(client, f"replica-{n}") for n in range(3)]
    tokens: list[int] = []

    for _ in range(3):
        for replica in replicas:
            token = replica.try_acquire()
            assert token is not None
            tokens.append(token)
            replica.release()

    assert tokens == sorted(set(tokens))


def test_an_identity_may_contain_colons(client: redis.Redis) -> None:
    lock = RedisLeaderLock(client, "cronwf-7d9f:10.0.0.7:8080")

    lock.try_acquire()

    assert lock.holder() == "cronwf-7d9f:10.0.0.7:8080"


@pytest.mark.parametrize(
    ("identity", "ttl"), [("", timedelta(seconds=15)), ("replica-a", timedelta(0))]
)
def test_a_lock_needs_an_identity_and_a_ttl(
    client: redis.Redis, identity: str, ttl: timedelta
) -> None:
    with pytest.raises(ValueError, match=r"identity|TTL"):
        RedisLeaderLock(client, identity, ttl=ttl)


# -- the fence, as the history store checks it


def test_the_leader_claims_and_writes(client: redis.Redis) -> None:
    lock = RedisLeaderLock(client, "replica-a")
    store = RedisHistory(client, fence=lock)
    lock.try_acquire()

    assert claim(store, KEY, at(1)) is True
    store.apply(KEY, SEED, lambda h: record_spawn(h, at(1), "backup-1767225660"))
    stored = store.load(KEY)
    assert stored == record_spawn(
        record_claim(SEED, at(1), "backup-1767225660", at(1)), at(1), "backup-1767225660"
    )
    assert stored is not None
    assert stored.intents == {}


def test_a_deposed_leader_can_neither_claim_nor_write(client: redis.Redis) -> None:
    old_lock, new_lock = RedisLeaderLock(client, "replica-a"), RedisLeaderLock(client, "replica-b")
    old, new = RedisHistory(client, fence=old_lock), RedisHistory(client, fence=new_lock)
    old_lock.try_acquire()
    old.apply(KEY, SEED, increment, [RunRecord(at(1), "Skipped", at(1))])
    expire(client)
    new_lock.try_acquire()
    stored = (client.hgetall(STATE), client.hgetall(RUNS))

    with pytest.raises(FencedOut, match="fencing token"):
        claim(old, KEY, at(2))
    with pytest.raises(FencedOut, match="fencing token"):
        old.apply(KEY, SEED, increment, [RunRecord(at(2), "Skipped", at(2))])
    with pytest.raises(FencedOut):
        old.forget(KEY)

    assert (client.hgetall(STATE), client.hgetall(RUNS)) == stored
    assert claim(new, KEY, at(2)) is True
    assert new.apply(KEY, SEED, increment)[1].succeeded == 2


def test_a_deposed_leader_can_neither_claim_nor_write_in_batches(client: redis.Redis) -> None:
    old_lock, new_lock = RedisLeaderLock(client, "replica-a"), RedisLeaderLock(client, "replica-b")
    old = RedisHistory(client, fence=old_lock)
    old_lock.try_acquire()
    old.apply_many([Change(KEY, SEED, increment), Change(OTHER, SEED, increment)])
    expire(client)
    new_lock.try_acquire()
    stored = {key: client.hgetall(key) for key in keys_of(client) if key.endswith(":state")}

    with pytest.raises(FencedOut, match="fencing token"):
        claim_many(old, [(KEY, at(2)), (OTHER, at(2))])
    with pytest.raises(FencedOut, match="fencing token"):
        old.apply_many([Change(KEY, SEED, increment), Change(OTHER, SEED, increment)])

    assert {key: client.hgetall(key) for key in stored} == stored
    new = RedisHistory(client, fence=new_lock)
    assert claim_many(new, [(KEY, at(2)), (OTHER, at(2))]) == [True, True]


def test_a_fenced_out_write_is_a_store_outage_to_the_engine(client: redis.Redis) -> None:
    """The engine leaves the instant undecided; the runtime catches FencedOut to step down."""
    store = RedisHistory(client, fence=RedisLeaderLock(client, "replica-a"))

    with pytest.raises(StoreUnavailable):
        store.apply(KEY, SEED, increment)


def test_a_replica_that_never_led_can_neither_claim_nor_write(client: redis.Redis) -> None:
    store = RedisHistory(client, fence=RedisLeaderLock(client, "replica-a"))

    with pytest.raises(FencedOut):
        claim(store, KEY, at(1))
    with pytest.raises(FencedOut, match="does not lead"):
        store.apply(KEY, SEED, increment)

    assert keys_of(client) == set()


def test_a_lapsed_lock_fences_out_before_anyone_takes_over(client: redis.Redis) -> None:
    lock = RedisLeaderLock(client, "replica-a")
    store = RedisHistory(client, fence=lock)
    lock.try_acquire()
    expire(client)

    assert lock.token is not None, "the replica still believes it leads"
    with pytest.raises(FencedOut):
        claim(store, KEY, at(1))
    with pytest.raises(FencedOut):
        store.apply(KEY, SEED, increment)


def test_the_fence_checks_the_identity_with_the_token(client: redis.Redis) -> None:
    """After a failover that lost the last INCR, another replica may get the same token."""
    lock = RedisLeaderLock(client, "replica-a")
    store = RedisHistory(client, fence=lock)
    token = lock.try_acquire()
    assert lock.value is not None
    nonce = lock.value.split(":")[1]
    client.set(LEADER, f"{token}:{nonce}:replica-b")

    with pytest.raises(FencedOut):
        claim(store, KEY, at(1))


def test_a_fence_value_is_unique_per_acquisition_even_after_redis_lost_its_data(
    client: redis.Redis,
) -> None:
    """Issue: an empty Redis restarts the token counter at 1, so a replica could win the same
    ``<token>:<identity>`` it held before and trust its snapshot cache of before the loss."""
    lock = RedisLeaderLock(client, "replica-a")
    store = RedisHistory(client, fence=lock)
    lock.try_acquire()
    before = lock.value
    store.apply(KEY, SEED, increment)
    client.flushall()  # the data is gone; the replica has not noticed
    client.hset(STATE, mapping={"version": "rebuilt", "succeeded": "7"})  # written since

    lock.release()
    lock.try_acquire()

    assert lock.token == 1
    assert lock.value != before
    loaded = store.load(KEY)
    assert loaded is not None
    assert loaded.succeeded == 7  # read from Redis, not from the cache of the old fence
