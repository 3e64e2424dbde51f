"""End-to-end: exactly once at the edges, with real processes and a real Redis (DESIGN §9).

The faults are struck where they hurt: a leader's link to Redis is frozen by a proxy right
after the reply to its claim of an instant (so its spawn happens and its record cannot land),
a leader is ``kill -9``\\ ed while its runs are going, Redis loses its data under a leader.
Every replica has a state folder of its own, as separate hosts would.

What is counted is what really ran: each run appends its instant to one file shared by the
test (the runs' own side effect, whichever replica ran them), so a duplicate is a repeated
line, whatever the replicas believe. Against it: the history in Redis (``cronwf history``):
counters equal to the runs, nothing that ran recorded ``Missed``, and no instant between the
first and the last run left without a decision.
"""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import RedisServer
from e2e_support import Record, eventually
from redis_proxy import RedisProxy
from test_e2e_serve import (
    FAST_RELOAD,
    NAMESPACE,
    Replica,
    Replicas,
    cron_workflow,
    history,
    own_redis,
    replicas,
    runs_by_instant,
    the_leader,
    wait_for_mid_second,
    write_file,
)

__all__ = ["own_redis", "replicas"]  # the fixtures, imported for this module's tests

CLAIMED = re.compile(rb"tick-\d+")
"""The name of a Workflow of the CronWorkflow ``tick``, as a whole argument."""
LOCK_TTL = 3.0
LEADERSHIP = ("--lock-ttl", f"{LOCK_TTL:g}s", "--renew-interval", "1s")


def appending(ran: Path, seconds: float = 0.0) -> str:
    """A run that appends its instant to ``ran`` (after ``seconds``, when given)."""
    pause = f"sleep {seconds:g}; " if seconds else ""
    return f"{pause}echo {{{{workflow.scheduledTime}}}} >> {ran}"


def instants_ran(ran: Path) -> Counter[int]:
    """How often each instant ran, from the runs' own side effect."""
    if not ran.exists():
        return Counter()
    return Counter(
        int(datetime.fromisoformat(line.strip().replace("Z", "+00:00")).timestamp())
        for line in ran.read_text().splitlines()
        if line.strip()
    )


def is_claim(args: list[bytes]) -> bool:
    """The leader's claim of an instant: the write that records an intent to spawn. The
    Redis store sends it with a script of its own whose arguments name the Workflow (a
    record names it only inside its JSON); written as an ordinary change, it is the one whose
    ``intents`` field gains an entry (the record empties it again)."""
    if not args or args[0].upper() != b"EVALSHA":
        return False
    if any(CLAIMED.fullmatch(arg) for arg in args):
        return True
    if b"intents" not in args:
        return False
    return args[args.index(b"intents") + 1] not in (b"{}", b"")


@pytest.fixture
def proxies(own_redis: RedisServer) -> Iterator[list[RedisProxy]]:
    made = [RedisProxy("127.0.0.1", own_redis.port) for _ in range(3)]
    yield made
    for proxy in made:
        proxy.resume()
        proxy.close()


def start_fleet(
    replicas: Replicas, proxies: list[RedisProxy], manifests: Path, tmp_path: Path, *extra: str
) -> list[Replica]:
    fleet = [
        replicas.start(
            "--manifests",
            str(manifests),
            "--state-dir",
            str(tmp_path / f"state-{i}"),
            "--redis-url",
            proxy.url,
            *LEADERSHIP,
            *FAST_RELOAD,
            *extra,
            identity=f"replica-{i}",
        )
        for i, proxy in enumerate(proxies)
    ]
    for replica in fleet:
        replicas.ready(replica)
    return fleet


def missed_events(fleet: list[Replica], key: str) -> set[int]:
    """The instants any replica logged a ``Missed`` event for: what pages on-call."""
    return {
        int(datetime.fromisoformat(e["scheduledTime"].replace("Z", "+00:00")).timestamp())
        for replica in fleet
        for e in replica.events(key, "Missed")
    }


def assert_exactly_once(report: Record, ran: Counter[int], fleet: list[Replica], key: str) -> None:
    """Nothing ran twice, every run is counted, nothing that ran is recorded or reported
    missed, and every instant between the first and the last run was decided."""
    twice = {t: n for t, n in ran.items() if n > 1}
    assert twice == {}, f"instants that ran more than once: {twice}"
    runs = runs_by_instant(report)
    ran_but_missed = sorted(t for t in ran if runs.get(t, {}).get("decision") == "Missed") + sorted(
        set(ran) & missed_events(fleet, key)
    )
    assert ran_but_missed == [], f"ran, yet recorded missed: {ran_but_missed}"
    assert report["succeeded"] + report["lost"] == len(ran), (report, sorted(ran))
    assert report["lost"] == 0, report
    assert report["active"] == [], report
    window = range(min(ran), max(ran) + 1)
    silent = [t for t in window if t not in ran and t not in runs]
    assert silent == [], f"instants neither run nor recorded: {silent}"


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_leader_frozen_between_its_claim_and_its_record_never_lets_the_instant_run_twice(
    replicas: Replicas, proxies: list[RedisProxy], own_redis: RedisServer, tmp_path: Path
) -> None:
    """Issue: the claim wrote nothing, so a leader stopped after its spawn and before its
    record was followed by a successor that claimed and ran the same instant again (3 of 3
    times with a pause exactly there), and runs that ran were later recorded missed."""
    manifests, ran = tmp_path / "manifests", tmp_path / "ran.txt"
    write_file(manifests / "tick.yaml", cron_workflow("tick", script=appending(ran), deadline=60))
    key = f"{NAMESPACE}/tick"
    fleet = start_fleet(replicas, proxies, manifests, tmp_path)
    leader = eventually("a leader", 10.0, lambda: the_leader(fleet))
    link = proxies[fleet.index(leader)]
    eventually("a few runs", 10.0, lambda: len(instants_ran(ran)) >= 3)

    frozen = link.pause_after_reply(is_claim)
    assert frozen.wait(5.0), "the leader claimed nothing"
    frozen_at = time.time()
    others = [r for r in fleet if r is not leader]
    successor = eventually(
        "another replica to lead", LOCK_TTL + 10.0, lambda: the_leader(others), every=0.1
    )
    eventually(
        "the successor to run three instants",
        10.0,
        lambda: sum(1 for t in instants_ran(ran) if t > frozen_at + 1) >= 3,
    )
    link.resume()  # the old leader's record arrives late and is refused by the fence
    eventually("the old leader to see it no longer leads", 10.0, lambda: not leader.is_leader())
    time.sleep(2.0)  # its run's end, learned while deposed, is reported and counted
    wait_for_mid_second()
    for replica in fleet:
        assert replica.stop() == 0

    report = history(own_redis.url, key)
    assert_exactly_once(report, instants_ran(ran), replicas.started, key)
    claimed = int(frozen_at)
    assert instants_ran(ran)[claimed] == 1 or instants_ran(ran)[claimed - 1] == 1
    assert successor.events(key, "Spawned")


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_repeated_kill_of_the_leader_with_runs_outliving_it_counts_every_run_once(
    replicas: Replicas, proxies: list[RedisProxy], own_redis: RedisServer, tmp_path: Path
) -> None:
    """``kill -9`` of the leader at a random moment, four times, with runs that last longer
    than the failover (their replica dies while they run; a killed replica is restarted on its
    state folder, as a Deployment would): no instant runs twice, and the counters equal the
    runs, each counted once by whichever replica learned its end."""
    manifests, ran = tmp_path / "manifests", tmp_path / "ran.txt"
    write_file(
        manifests / "slow.yaml",
        cron_workflow("slow", script=appending(ran, seconds=5), schedule="@every 4s", deadline=60),
    )
    key = f"{NAMESPACE}/slow"
    fleet = start_fleet(replicas, proxies, manifests, tmp_path)
    chance = random.Random(11)
    for _ in range(4):
        leader = eventually("a leader", LOCK_TTL + 10.0, lambda: the_leader(fleet), every=0.1)
        time.sleep(chance.uniform(2.0, 6.0))
        leader.kill()
        index = fleet.index(leader)
        fleet[index] = replicas.start(
            *leader_arguments(leader), identity=f"{leader.identity}-again"
        )
        replicas.ready(fleet[index])
    eventually("a leader", LOCK_TTL + 10.0, lambda: the_leader(fleet), every=0.1)
    time.sleep(8.0)  # the last runs end; their replicas report them
    eventually(
        "every run counted",
        20.0,
        lambda: history(own_redis.url, key)["succeeded"] == len(instants_ran(ran)),
        every=0.5,
    )
    for replica in fleet:
        replica.process.send_signal(signal.SIGTERM)
    for replica in fleet:
        replica.process.wait(10)

    report = history(own_redis.url, key)
    assert report["succeeded"] == len(instants_ran(ran))
    twice = {t: n for t, n in instants_ran(ran).items() if n > 1}
    assert twice == {}, f"instants that ran more than once: {twice}"
    runs = runs_by_instant(report)
    assert [t for t in instants_ran(ran) if runs.get(t, {}).get("decision") == "Missed"] == []
    assert set(instants_ran(ran)) & missed_events(replicas.started, key) == set()


def leader_arguments(replica: Replica) -> list[str]:
    """The command line ``replica`` was started with, less what :meth:`Replicas.start` adds."""
    arguments = list(replica.process.args)  # type: ignore[arg-type]
    start = arguments.index("--log-format") + 2
    return [str(argument) for argument in arguments[start:]]


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["flushall", "restarted empty"])
def test_a_redis_that_loses_its_data_leaves_every_cronworkflow_reseeded_and_no_instant_silent(
    replicas: Replicas, tmp_path: Path, how: str
) -> None:
    """Issue: an empty Redis reset some counters, kept stale ones for others, left some with
    no history and silently dropped the instant at the restart (the fencing token restarted
    at 1, so the leader trusted its cache of before the loss)."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        manifests, state = tmp_path / "manifests", tmp_path / "state"
        ran = {name: tmp_path / f"{name}.txt" for name in ("alpha", "beta", "gamma")}
        for name, path in ran.items():
            write_file(
                manifests / f"{name}.yaml",
                cron_workflow(name, script=appending(path), deadline=3),
            )
        replica = replicas.start(
            "--manifests",
            str(manifests),
            "--state-dir",
            str(state),
            "--redis-url",
            server.url,
            *LEADERSHIP,
            *FAST_RELOAD,
            identity="replica-0",
        )
        replicas.ready(replica, leading=True)
        eventually("runs", 10.0, lambda: all(len(instants_ran(p)) >= 3 for p in ran.values()))

        wait_for_mid_second()
        if how == "flushall":
            client = server.client()
            client.flushall()
            client.close()
        else:
            server.stop()
            server.wipe()
            server.start()
        lost_at = time.time()
        eventually(
            "runs after the loss",
            20.0,
            lambda: all(max(instants_ran(p)) > lost_at + 3 for p in ran.values()),
        )
        time.sleep(1.5)
        wait_for_mid_second()
        assert replica.stop() == 0

        assert any("holds no data" in message for message in replica.messages())
        for name, path in ran.items():
            key = f"{NAMESPACE}/{name}"
            assert_exactly_once(
                report := history(server.url, key), instants_ran(path), [replica], key
            )
            assert report["succeeded"] == len(instants_ran(path))
    finally:
        server.stop()
