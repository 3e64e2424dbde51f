"""End-to-end tests of ``cronwf serve --kubernetes``: replicas that elect, fail and hand over.

The unit tests drive the Kubernetes adapters one call at a time. What only real processes
show is checked here: several ``cronwf serve --kubernetes`` replicas against one API server
(the emulator of ``tests/kube_emulator.py``, served from this test process on localhost) and
one real Redis elect exactly one leader with a Lease, hand over after ``kill -9`` (the Lease
expires) or SIGTERM (the Lease is released), and ride out dropped watches, expired watches
(410) and API errors on Workflow creation, without deciding an instant twice or losing one
(DESIGN §5, §9, §10).

How a scenario is judged, once the replicas have stopped:

* the Workflows in the emulator: names ``tick-<unix seconds>`` (the emulator refuses a second
  object of one name), one per spawned instant;
* the history in Redis (:meth:`RedisHistory.recent_runs`): every instant between the first
  and the last spawned one carries a decision, ``Spawned`` or ``Missed``, and the ``Spawned``
  records are exactly the Workflows;
* the JSON logs of all replicas (``--log-format json`` on stderr, one file per replica under
  ``tmp_path``, printed when a test fails): every such instant was decided by exactly one
  event of exactly one replica, and no spawn found its Workflow already there;
* completions: a small simulated Argo workflow controller (:class:`ArgoController`, a thread
  of the test) moves each Workflow to ``Succeeded`` about half a second after it appears, and
  the CronWorkflow's ``status.succeeded`` must end equal to the number of Workflows that
  finished: none lost in a handover, none counted twice.

One scenario runs without Redis (the history in the process, re-seeded from the objects after
a restart): it is judged from the logs, the Workflows, the ``MissedSchedule`` Events and the
cursor annotation cronwf keeps on each CronWorkflow.

Timings are short (Lease 3 s, renew deadline 2 s, retry period 0.5 s, reload 0.2 s) and
schedules are ``@every 1s``; every wait polls against a deadline. Disruptions happen away from
the whole-second instants, so no tick is half done when they strike and the checks can be
exact. The tests are marked ``e2e``: ``make test`` runs them last, ``pytest -m e2e`` alone.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import RedisServer
from e2e_support import Record, eventually
from e2e_support import Replica as ServeReplica
from kube_emulator import EmulatorServer
from kubernetes import client, watch

from scheduler.adapters.redis.history import RedisHistory, connect
from scheduler.core.engine import RunRecord

NAMESPACE = "default"
NAME = "tick"
KEY = f"{NAMESPACE}/{NAME}"
LEASE = "cronwf"
CRONWF = Path(sys.executable).with_name("cronwf")

LEASE_DURATION = 3.0
FAST_LEASE = ("--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.5s")
START_WITHIN = 20.0
"""Seconds for a replica to list CronWorkflows and answer ``/readyz`` (a busy 2-core machine)."""
STOP_WITHIN = 10.0
"""Seconds for a replica to exit after SIGTERM."""
RUN_SECONDS = 0.5
"""How long a Workflow runs under the simulated Argo controller."""
SETTLE_WITHIN = 8.0
"""Seconds for the counters to catch up with the Workflows that finished."""
DECISIONS = frozenset({"Spawned", "Skipped", "Missed", "Error"})
WORKFLOW_NAME = re.compile(rf"{NAME}-(\d+)")


# --------------------------------------------------------------------------------------------
# Waiting and time


def wait_for_mid_second() -> None:
    """Sleep (under a second) to the middle of the current or next second, when no tick of an
    ``@every 1s`` schedule is in flight."""
    time.sleep((0.5 - time.time() % 1.0) % 1.0)


def unix(text: str) -> int:
    """Unix seconds of an RFC 3339 time such as ``2026-03-08T09:59:00Z``."""
    return int(datetime.fromisoformat(text).timestamp())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The cluster side: the CronWorkflow, its Workflows, a simulated Argo controller


def cron_workflow(deadline: int = 60) -> Record:
    """CronWorkflow ``tick``: ``@every 1s``, runs allowed to overlap, and history limits high
    enough that no finished Workflow is deleted while a test counts them."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "schedules": ["@every 1s"],
            "concurrencyPolicy": "Allow",
            "startingDeadlineSeconds": deadline,
            "successfulJobsHistoryLimit": 1000,
            "failedJobsHistoryLimit": 1000,
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [
                    {
                        "name": "main",
                        "container": {"image": "alpine:3.20", "command": ["true"]},
                    }
                ],
            },
        },
    }


def workflows(kube: EmulatorServer) -> dict[int, Record]:
    """The Workflows of ``tick`` in the emulator, by the instant in their name.

    Every one must be named ``tick-<unix>`` after its scheduled-time annotation, labelled and
    owned by the CronWorkflow (DESIGN §7).
    """
    found: dict[int, Record] = {}
    for obj in kube.objects("workflows", NAMESPACE):
        meta = obj["metadata"]
        match = WORKFLOW_NAME.fullmatch(meta["name"])
        assert match is not None, f"unexpected Workflow name {meta['name']!r}"
        instant = int(match[1])
        assert instant not in found, f"two Workflows for one instant: {meta['name']}"
        scheduled = meta["annotations"]["workflows.argoproj.io/scheduled-time"]
        assert unix(scheduled) == instant, meta
        assert meta["labels"]["workflows.argoproj.io/cron-workflow"] == NAME, meta
        assert [ref["name"] for ref in meta.get("ownerReferences", [])] == [NAME], meta
        found[instant] = obj
    return found


def finished(kube: EmulatorServer) -> set[str]:
    """Names of the Workflows of ``tick`` that reached a final phase."""
    return {
        obj["metadata"]["name"]
        for obj in kube.objects("workflows", NAMESPACE)
        if obj.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error")
    }


def cron_status(kube: EmulatorServer) -> Record:
    """The ``status`` cronwf wrote on the CronWorkflow."""
    obj = kube.get("cronworkflows", NAMESPACE, NAME)
    assert obj is not None, "the CronWorkflow is gone"
    status: Record = obj.get("status") or {}
    return status


def lease_holder(kube: EmulatorServer) -> str | None:
    """``holderIdentity`` of the leader Lease (``""`` when released), None when there is none."""
    lease = kube.get("leases", NAMESPACE, LEASE)
    return None if lease is None else str(lease["spec"].get("holderIdentity") or "")


class ArgoController:
    """A simulated Argo workflow controller: every Workflow of ``tick`` succeeds about
    :data:`RUN_SECONDS` after it first appears, as seen by a thread polling the emulator."""

    def __init__(self, kube: EmulatorServer) -> None:
        self._kube = kube
        self._seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="argo-controller", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self._step(time.monotonic())
            except Exception as error:  # reported by the fixture: a thread cannot fail a test
                self.errors.append(error)
                return

    def _step(self, moment: float) -> None:
        for obj in self._kube.objects("workflows", NAMESPACE):
            name = obj["metadata"]["name"]
            if obj.get("status", {}).get("phase"):
                continue
            first_seen = self._seen.setdefault(name, moment)
            if moment - first_seen >= RUN_SECONDS:
                self._kube.set_phase(NAMESPACE, name, "Succeeded", finished_at=datetime.now(UTC))


# --------------------------------------------------------------------------------------------
# Replicas


class Replica(ServeReplica):
    """One ``cronwf serve --kubernetes`` process, its HTTP port and its log file."""

    def tick_events(self, *kinds: str) -> list[Record]:
        """The engine events of ``tick`` this replica logged, of ``kinds`` (all if none)."""
        return self.events(KEY, *kinds)

    def spawned(self, *, catch_up: bool | None = None) -> list[int]:
        """The instants this replica spawned (only on time, or only by catch-up, if asked)."""
        return [
            unix(e["scheduledTime"])
            for e in self.tick_events("Spawned")
            if catch_up is None or e["catchUp"] is catch_up
        ]


class Fleet:
    """Starts ``cronwf serve --kubernetes`` replicas on one emulator and one Redis; the
    fixture kills whatever is left and prints every replica's log."""

    def __init__(self, kube: EmulatorServer, redis: RedisServer, directory: Path) -> None:
        self.kube = kube
        self.redis = redis
        self._directory = directory
        self._kubeconfig = kube.kubeconfig(directory / "kubeconfig", namespace=NAMESPACE)
        self.started: list[Replica] = []

    def start(
        self, *identities: str, lease: Sequence[str] = FAST_LEASE, redis: bool = True
    ) -> list[Replica]:
        """Start one replica per identity, then wait until each answers ``/readyz`` 200.
        Without ``redis`` they keep their history in the process (no ``--redis-url``)."""
        # Flags only: an operator's CRONWF_* variables must not change the test; the emulator
        # is on localhost, never behind a proxy.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRONWF_")}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        started: list[Replica] = []
        for identity in identities:
            port = free_port()
            log_path = self._directory / f"{identity}.log"
            command = [
                str(CRONWF),
                "serve",
                "--kubernetes",
                "--kubeconfig",
                str(self._kubeconfig),
                "--namespace",
                NAMESPACE,
                "--lease-namespace",
                NAMESPACE,
                *(("--redis-url", self.redis.url) if redis else ()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--identity",
                identity,
                "--reload-interval",
                "0.2s",
                "--log-format",
                "json",
                *lease,
            ]
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            replica = Replica(identity, port, log_path, process, STOP_WITHIN)
            self.started.append(replica)
            started.append(replica)
        for replica in started:
            self._ready(replica)
        return started

    def _ready(self, replica: Replica) -> Record:
        def probe() -> Record | None:
            if replica.process.poll() is not None:
                pytest.fail(f"{replica.identity} exited with {replica.process.returncode}")
            state = replica.readiness()
            return state[1] if state is not None and state[0] == 200 else None

        return eventually(f"{replica.identity} ready", START_WITHIN, probe)

    def close(self) -> None:
        for replica in self.started:
            if replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait()

    def dump(self) -> None:
        """Print every replica's log: pytest shows it when the test failed."""
        for replica in self.started:
            print(f"----- {replica.identity} (exit {replica.process.returncode}) -----")
            print(replica.log_path.read_text() if replica.log_path.exists() else "(no log)")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: no fence or history of another test in it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fleet(kube: EmulatorServer, own_redis: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    started = Fleet(kube, own_redis, tmp_path)
    try:
        yield started
    finally:
        started.close()
        started.dump()


@pytest.fixture
def argo(kube: EmulatorServer) -> Iterator[ArgoController]:
    """The simulated Argo workflow controller, running for the whole test."""
    controller = ArgoController(kube)
    controller.start()
    yield controller
    controller.stop()
    assert controller.errors == [], f"the simulated Argo controller failed: {controller.errors}"


def the_leader(candidates: Sequence[Replica]) -> Replica | None:
    """The one replica whose ``/readyz`` says it leads; None while there is not exactly one."""
    leaders = [replica for replica in candidates if replica.is_leader()]
    return leaders[0] if len(leaders) == 1 else None


def quiesce(fleet: Fleet) -> None:
    """Return at mid-second once every Workflow in the cluster has its ``Spawned`` event in a
    replica's log: no tick is in flight, so a signal now cannot cut one in half."""
    wait_for_mid_second()

    def logged() -> bool:
        spawned = {t for replica in fleet.started for t in replica.spawned()}
        return set(workflows(fleet.kube)) <= spawned

    eventually("the last tick logged", 2.0, logged, every=0.02)


def stop_all(fleet: Fleet, leader: Replica) -> None:
    """SIGTERM the standbys, then the leader once quiet; each must exit 0. Stopping the leader
    last keeps the end of the test free of handovers."""
    for replica in fleet.started:
        if replica is not leader and replica.process.poll() is None:
            assert replica.stop() == 0, f"{replica.identity} exited with an error"
    quiesce(fleet)
    assert leader.stop() == 0, f"{leader.identity} exited with an error"


# --------------------------------------------------------------------------------------------
# Judging a scenario


def recent_runs(redis: RedisServer) -> dict[int, RunRecord]:
    """The run records of ``tick`` in Redis, by scheduled instant."""
    client_ = connect(redis.url)
    try:
        runs = RedisHistory(client_).recent_runs(KEY)
    finally:
        client_.close()
    return {int(run.scheduled_at.timestamp()): run for run in runs}


def stored_succeeded(redis: RedisServer) -> int:
    """The ``succeeded`` counter of ``tick`` in Redis."""
    client_ = connect(redis.url)
    try:
        history = RedisHistory(client_).load(KEY)
    finally:
        client_.close()
    assert history is not None, "no history of tick in Redis"
    return history.succeeded


def decisions(replicas: Iterable[Replica]) -> dict[int, list[Record]]:
    """Every decision event of ``tick`` in the logs of ``replicas``, by instant."""
    found: dict[int, list[Record]] = defaultdict(list)
    for replica in replicas:
        for event in replica.tick_events(*DECISIONS):
            found[unix(event["scheduledTime"])].append(event)
    return dict(found)


def assert_each_instant_decided_once(fleet: Fleet) -> dict[int, Record]:
    """Between the first and the last spawned instant, every second was decided exactly once,
    by one event of one replica, recorded in Redis as ``Spawned`` or ``Missed``; the
    ``Spawned`` records are exactly the Workflows in the cluster, and no spawn found its
    Workflow already there (it would have been a second spawn of the instant).

    Returns the decision event of each instant.
    """
    runs = recent_runs(fleet.redis)
    spawned = sorted(t for t, run in runs.items() if run.decision == "Spawned")
    assert len(spawned) >= 2, f"too few runs to judge: {runs}"
    created = workflows(fleet.kube)
    assert sorted(created) == spawned, (
        f"Workflows {sorted(created)} are not the Spawned records {spawned}"
    )
    for t in spawned:
        assert runs[t].workflow == f"{NAME}-{t}", runs[t]
    window = range(spawned[0], spawned[-1] + 1)
    undecided = [t for t in window if t not in runs]
    assert undecided == [], f"instants absent from the history: {undecided}"
    kinds = {t: runs[t].decision for t in window}
    assert set(kinds.values()) <= {"Spawned", "Missed"}, f"unexpected decisions: {kinds}"
    events = decisions(fleet.started)
    twice = {t: [(e["replica"], e["event"]) for e in es] for t, es in events.items() if len(es) > 1}
    assert twice == {}, f"instants decided more than once: {twice}"
    unlogged = [t for t in window if t not in events]
    assert unlogged == [], f"instants without a decision event: {unlogged}"
    assert {t: events[t][0]["event"] for t in window} == kinds
    recreated = [e["workflow"] for t in spawned for e in events[t] if not e["workflowCreated"]]
    assert recreated == [], f"spawned again, found already existing: {recreated}"
    return {t: events[t][0] for t in window}


def gap_after(decided: dict[int, Record], last: int) -> list[int]:
    """The instants after ``last`` up to the first one not recorded ``Missed``, included."""
    gap: list[int] = []
    for instant in range(last + 1, max(decided) + 1):
        gap.append(instant)
        if decided[instant]["event"] != "Missed":
            break
    return gap


def assert_catch_up_rule(
    decided: dict[int, Record], last: int, identity: str, took_lead_at: float
) -> list[int]:
    """DESIGN §5 with ``startingDeadlineSeconds`` longer than the gap: the instants that passed
    after ``last`` (the old leader's last decision) until ``identity`` took the lead at
    ``took_lead_at`` (Unix seconds) were decided by ``identity``'s catch-up: the latest spawned,
    every earlier one recorded ``Missed`` (``superseded``). Returns the gap."""
    gap = gap_after(decided, last)
    by = {t: decided[t]["replica"] for t in gap}
    assert by == dict.fromkeys(gap, identity), f"the gap was not decided by {identity}: {by}"
    latest = gap[-1]
    assert decided[latest]["event"] == "Spawned", decided[latest]
    assert decided[latest]["catchUp"] is True, f"not spawned as a catch-up: {decided[latest]}"
    earlier = {t: (decided[t]["event"], decided[t].get("reason")) for t in gap[:-1]}
    assert earlier == dict.fromkeys(gap[:-1], ("Missed", "superseded"))
    # The catch-up runs right after the election: its latest instant is the last one to pass
    # before it (or the next, when a second boundary passes in between).
    assert math.floor(took_lead_at) <= latest <= math.floor(took_lead_at) + 1, (
        f"the gap {gap} does not reach the election at {took_lead_at:.3f}"
    )
    return gap


def lease_acquired(kube: EmulatorServer) -> float:
    """When the current holder took the Lease (its ``acquireTime``), in Unix seconds."""
    lease = kube.get("leases", NAMESPACE, LEASE)
    assert lease is not None, "no Lease"
    return datetime.fromisoformat(lease["spec"]["acquireTime"]).timestamp()


@dataclass(frozen=True)
class Counts:
    """One consistent look at completions: the Workflows that finished, and what the
    CronWorkflow's status and the Redis history count."""

    finished: int
    status_succeeded: int
    stored_succeeded: int
    active: tuple[str, ...]

    @property
    def settled(self) -> bool:
        return self.status_succeeded == self.stored_succeeded == self.finished


def count_completions(fleet: Fleet) -> Counts:
    """Wait (up to :data:`SETTLE_WITHIN`) until ``status.succeeded`` and the Redis counter
    equal the number of finished Workflows, read between two identical listings of them;
    return the last look either way. Counting more than finished is a double count: it
    fails at once."""
    last: list[Counts] = []

    def look() -> Counts | None:
        before = finished(fleet.kube)
        status = cron_status(fleet.kube)
        stored = stored_succeeded(fleet.redis)
        after = finished(fleet.kube)
        counts = Counts(
            len(after),
            int(status.get("succeeded") or 0),
            stored,
            tuple(item["name"] for item in status.get("active") or []),
        )
        assert counts.status_succeeded <= counts.finished, f"counted twice: {counts}"
        assert counts.stored_succeeded <= counts.finished, f"counted twice: {counts}"
        last[:] = [counts]
        return counts if before == after and counts.settled else None

    deadline = time.monotonic() + SETTLE_WITHIN
    while time.monotonic() < deadline:
        counts = look()
        if counts is not None:
            return counts
        time.sleep(0.1)
    return last[0]


def assert_counted_once(counts: Counts) -> None:
    """Every Workflow that finished is counted, once, in the history and in the status."""
    assert counts.settled, (
        f"{counts.finished} Workflows finished, but status.succeeded is "
        f"{counts.status_succeeded} and the history counts {counts.stored_succeeded}; "
        f"still listed active: {list(counts.active)}"
    )
    assert counts.finished >= 2, f"too few completions to judge: {counts}"


# --------------------------------------------------------------------------------------------
# 1. One leader


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_three_replicas_elect_exactly_one_leader_which_spawns_one_workflow_per_instant(
    fleet: Fleet, kube: EmulatorServer, argo: ArgoController
) -> None:
    """Of three replicas on one Lease, exactly one leads (``/metrics``, ``/readyz`` and the
    Lease agree) and Workflows appear at consecutive seconds, one per instant."""
    kube.put("cronworkflows", cron_workflow())
    trio = fleet.start("replica-0", "replica-1", "replica-2")

    leader = eventually("exactly one leader", LEASE_DURATION + 2, lambda: the_leader(trio))
    assert [r.metric("cronwf_is_leader") for r in trio] == [
        1.0 if r is leader else 0.0 for r in trio
    ]
    assert lease_holder(kube) == leader.identity
    eventually("4 Workflows", 8.0, lambda: len(workflows(kube)) >= 4)
    assert [r.identity for r in trio if r.is_leader()] == [leader.identity]
    deciders = {e["replica"] for r in trio for e in r.tick_events(*DECISIONS)}
    assert deciders == {leader.identity}, "a standby decided an instant"

    counts = count_completions(fleet)
    stop_all(fleet, leader)

    decided = assert_each_instant_decided_once(fleet)
    assert {e["event"] for e in decided.values()} == {"Spawned"}, "an instant was not on time"
    assert_counted_once(counts)


# --------------------------------------------------------------------------------------------
# 2. kill -9 of the leader


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_killed_leader_is_replaced_within_the_lease_duration_without_losing_or_doubling_an_instant_or_a_completion(  # noqa: E501
    fleet: Fleet, kube: EmulatorServer, argo: ArgoController
) -> None:
    """``kill -9`` right after the leader spawned an instant: no release, so the Lease lapses
    after its duration; a survivor takes over, catches up the instants nobody decided (the
    latest spawned, earlier ones ``Missed``), and counts the runs that finished while nobody
    led, among them the killed leader's last one (DESIGN §5, §6, §9)."""
    kube.put("cronworkflows", cron_workflow(deadline=60))
    trio = fleet.start("replica-0", "replica-1", "replica-2")
    leader = eventually("exactly one leader", LEASE_DURATION + 2, lambda: the_leader(trio))
    eventually("3 Workflows by the leader", 8.0, lambda: len(leader.spawned()) >= 3)

    # Strike right after a spawn is recorded and logged: its run finishes while nobody leads.
    seen = len(leader.spawned())
    last = eventually("another spawn", 3.0, lambda: leader.spawned()[seen:])[-1]
    eventually(
        "its record in Redis",
        1.0,
        lambda: (run := recent_runs(fleet.redis).get(last)) and run.decision == "Spawned",
        every=0.01,
    )
    leader.kill()
    killed_at = time.monotonic()
    survivors = [r for r in trio if r is not leader]
    successor = eventually(
        "a new leader within the Lease duration and a few seconds",
        LEASE_DURATION + 3.0,
        lambda: the_leader(survivors),
        every=0.1,
    )
    took = time.monotonic() - killed_at
    assert took > LEASE_DURATION - 1.0, f"the Lease was taken {took:.1f}s after the kill"
    assert [r.metric("cronwf_is_leader") for r in survivors] == [
        1.0 if r is successor else 0.0 for r in survivors
    ]
    assert lease_holder(kube) == successor.identity
    took_lead_at = lease_acquired(kube)
    eventually(
        "3 Workflows on time by the new leader",
        6.0,
        lambda: len(successor.spawned(catch_up=False)) >= 3,
    )

    counts = count_completions(fleet)
    stop_all(fleet, successor)

    decided = assert_each_instant_decided_once(fleet)
    by_old_leader = [t for t, e in decided.items() if e["replica"] == leader.identity]
    assert max(by_old_leader) == last
    gap = assert_catch_up_rule(decided, last, successor.identity, took_lead_at)
    assert len(gap) >= int(LEASE_DURATION) - 1, f"{took:.1f}s without a leader, gap {gap}"
    assert gap[-1] in workflows(kube)
    assert_counted_once(counts)


# --------------------------------------------------------------------------------------------
# 3. SIGTERM of the leader


def lease_holders_until(
    kube: EmulatorServer, version: str, holder: str, within: float
) -> tuple[list[str], float]:
    """Watch the Lease from ``version`` until ``holder`` holds it: every ``holderIdentity`` it
    had on the way (a watch misses no change) and when ``holder`` got it (monotonic)."""
    api = kube.api_client()
    seen: list[str] = []
    try:
        stream = watch.Watch()
        leases = client.CoordinationV1Api(api)
        deadline = time.monotonic() + within
        for event in stream.stream(
            leases.list_namespaced_lease,
            NAMESPACE,
            field_selector=f"metadata.name={LEASE}",
            resource_version=version,
            timeout_seconds=max(1, int(within)),
        ):
            current = event["object"].spec.holder_identity or ""
            if not seen or seen[-1] != current:
                seen.append(current)
            if current == holder:
                stream.stop()
                return seen, time.monotonic()
            if time.monotonic() > deadline:
                stream.stop()
                break
    finally:
        api.close()
    pytest.fail(f"{holder} did not take the Lease within {within:g}s; holders seen: {seen}")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_leader_stopped_by_sigterm_exits_0_releases_the_lease_and_a_standby_takes_over_at_once(
    fleet: Fleet, kube: EmulatorServer, argo: ArgoController
) -> None:
    """With a 10 s Lease, a takeover within a couple of seconds proves the Lease was released
    (holder emptied), not left to expire."""
    kube.put("cronworkflows", cron_workflow(deadline=60))
    long_lease = ("--lease-duration", "10s", "--renew-deadline", "6s", "--retry-period", "0.5s")
    pair = fleet.start("replica-a", "replica-b", lease=long_lease)
    leader = eventually("exactly one leader", 5.0, lambda: the_leader(pair))
    standby = next(r for r in pair if r is not leader)
    eventually("2 Workflows by the leader", 6.0, lambda: len(leader.spawned()) >= 2)

    quiesce(fleet)
    lease = kube.get("leases", NAMESPACE, LEASE)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == leader.identity
    signalled_at = time.monotonic()
    leader.process.send_signal(signal.SIGTERM)
    holders, taken_at = lease_holders_until(
        kube, lease["metadata"]["resourceVersion"], standby.identity, within=8.0
    )
    assert leader.process.wait(STOP_WITHIN) == 0
    assert holders[-1] == standby.identity
    assert "" in holders[:-1], f"the Lease went {holders}: it was never released"
    assert taken_at - signalled_at < 3.0, "the takeover waited for the Lease to expire"
    eventually("the standby leads", 2.0, standby.is_leader, every=0.1)
    assert standby.metric("cronwf_is_leader") == 1.0
    eventually(
        "2 Workflows on time by the new leader",
        6.0,
        lambda: len(standby.spawned(catch_up=False)) >= 2,
    )

    counts = count_completions(fleet)
    stop_all(fleet, standby)

    assert_each_instant_decided_once(fleet)
    assert_counted_once(counts)


# --------------------------------------------------------------------------------------------
# 4. Watch failures and API errors


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_dropped_and_expired_watches_and_failed_workflow_creations_lose_and_double_nothing(
    fleet: Fleet, kube: EmulatorServer, argo: ArgoController
) -> None:
    """While two replicas run: every watch is dropped; then history is compacted and every
    watch ends with 410 Expired (the informers relist); then two Workflow creations answer 500.
    The instants whose creation failed are retried or caught up, every instant is decided
    exactly once, every finished run is counted once, and the service ends as it began, with
    one leader and every replica ready: an API error is the world's, retried with backoff,
    never fatal (DESIGN §4, §5; STYLE, rule of thumb 4)."""
    kube.put("cronworkflows", cron_workflow(deadline=60))
    pair = fleet.start("replica-a", "replica-b")
    leader = eventually("exactly one leader", LEASE_DURATION + 2, lambda: the_leader(pair))
    eventually("2 Workflows", 6.0, lambda: len(leader.spawned()) >= 2)

    def two_more() -> None:
        target = max(workflows(kube)) + 2
        eventually(f"Workflows up to {NAME}-{target}", 6.0, lambda: max(workflows(kube)) >= target)

    wait_for_mid_second()
    dropped = kube.drop_watches()
    assert dropped >= 4, f"only {dropped} watches were open"  # 2 informers in each replica
    two_more()
    eventually("every replica watching again", 5.0, lambda: kube.watches() >= dropped)

    wait_for_mid_second()
    kube.compact()
    kube.drop_watches(expired=True)
    two_more()
    eventually("every replica watching again", 5.0, lambda: kube.watches() >= dropped)
    relisted = [r for r in pair if any("410" in m.get("message", "") for m in r.records())]
    assert relisted == pair, "not every replica logged a relist after 410 Expired"

    wait_for_mid_second()
    fault = kube.fail("POST", "workflows", status=500, times=2)
    eventually("two creations refused", 5.0, lambda: fault.hits >= 2)
    refused_after = int(time.time())
    eventually(
        "3 more Workflows after the failed creations",
        8.0,
        lambda: len([t for t in workflows(kube) if t > refused_after + 1]) >= 3,
    )
    states: dict[str, Any] = {}

    def one_leader_all_ready() -> Replica | None:
        states.update({r.identity: r.readiness() for r in pair})
        ready = all(state is not None and state[0] == 200 for state in states.values())
        return the_leader(pair) if ready else None

    current = eventually(
        lambda: f"one leader and every replica ready after the API errors: {states}",
        3.0,
        one_leader_all_ready,
        every=0.2,
    )

    counts = count_completions(fleet)
    stop_all(fleet, current)

    assert_each_instant_decided_once(fleet)
    assert_counted_once(counts)


# --------------------------------------------------------------------------------------------
# 5. A restart without Redis

HALTED = "halted"
LAST_USED_SCHEDULE = "cronworkflows.argoproj.io/last-used-schedule"
LAST_DECIDED_TIME = "cronwf.io/last-decided-time"
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)")


def halted_cron_workflow(last_scheduled: int) -> Record:
    """CronWorkflow ``halted`` (``@every 1s``) as Argo's controller leaves one its stop
    strategy stopped after a run at ``last_scheduled`` (Unix seconds): phase ``Stopped``, the
    completed label, ``lastScheduledTime`` and an unchanged ``last-used-schedule``."""
    body = cron_workflow()
    body["metadata"] = {
        "name": HALTED,
        "namespace": NAMESPACE,
        "labels": {"cronworkflows.argoproj.io/completed": "true"},
        "annotations": {LAST_USED_SCHEDULE: "@every 1s"},
    }
    body["status"] = {
        "lastScheduledTime": f"{datetime.fromtimestamp(last_scheduled, UTC):%Y-%m-%dT%H:%M:%SZ}",
        "phase": "Stopped",
        "succeeded": 1,
        "failed": 0,
    }
    return body


def cursor_on_object(kube: EmulatorServer, name: str) -> int | None:
    """The ``cronwf.io/last-decided-time`` annotation of ``name``, in Unix seconds."""
    obj = kube.get("cronworkflows", NAMESPACE, name)
    assert obj is not None, f"the CronWorkflow {name} is gone"
    value = (obj["metadata"].get("annotations") or {}).get(LAST_DECIDED_TIME)
    return None if value is None else unix(value)


def decided_by(replica: Replica, name: str) -> list[int]:
    """The instants of ``name`` that ``replica``'s log says it decided, one entry per decision
    (a ``Missed`` event for a run of instants, with ``since``, counts each of them)."""
    instants: list[int] = []
    for event in replica.events(f"{NAMESPACE}/{name}", *DECISIONS):
        last = unix(event["scheduledTime"])
        first = unix(event["since"]) if "since" in event else last
        instants += range(first, last + 1)  # @every 1s: every second is an instant
    return instants


def missed_schedule_events(kube: EmulatorServer, name: str) -> list[int]:
    """The instants named by the ``MissedSchedule`` Events of ``name``, one entry per instant
    (an Event for a run of instants names its first and last)."""
    instants: list[int] = []
    for event in kube.objects("events", NAMESPACE):
        if event.get("involvedObject", {}).get("name") != name:
            continue
        if event.get("reason") != "MissedSchedule":
            continue
        named = [unix(moment) for moment in INSTANT.findall(event["message"])]
        instants += range(named[0], named[-1] + 1)
    return instants


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_restart_without_redis_decides_no_instant_again_and_drops_none(
    fleet: Fleet, kube: EmulatorServer, argo: ArgoController
) -> None:
    """Without ``--redis-url`` the history lives in the process; after a restart it is
    re-seeded from the objects. Seeded from ``lastScheduledTime`` alone (it only moves on
    spawns), a stopped CronWorkflow had every instant it skipped since decided again, as
    missed: 39 ``MissedSchedule`` Events for one 8 s restart. With the cursor on the object
    (``cronwf.io/last-decided-time``), every instant from the first process's first decision
    to the second's last is decided exactly once, by one of them: the ones of the gap by the
    second's catch-up, none of the first's again. How the gap's instants of the stopped
    CronWorkflow are classified is not judged here."""
    names = (NAME, HALTED)
    kube.put("cronworkflows", cron_workflow(deadline=60))
    kube.put("cronworkflows", halted_cron_workflow(int(time.time()) - 5))
    [first] = fleet.start("first", redis=False)
    eventually("the first process leads", LEASE_DURATION + 2, first.is_leader)
    eventually("3 Workflows", 8.0, lambda: len(first.spawned()) >= 3)

    def projected() -> bool:
        """Every decision logged so far is on the objects."""
        return all(
            cursor_on_object(kube, name) == max(decided_by(first, name), default=None)
            for name in names
        )

    for _ in range(10):  # stop at mid-second, with no decision left to write to the objects
        wait_for_mid_second()
        deadline = time.monotonic() + 0.3
        while not projected() and time.monotonic() < deadline:
            time.sleep(0.02)
        if projected():
            break
    else:
        pytest.fail("the first process's decisions never all reached the objects")
    assert first.stop() == 0
    before = {name: decided_by(first, name) for name in names}
    cursors = {name: cursor_on_object(kube, name) for name in names}
    assert cursors == {name: max(before[name]) for name in names}, "a decision was not written"

    time.sleep(1.6)  # a gap: an instant or two pass while nobody decides
    [second] = fleet.start("second", redis=False)
    eventually("the second process leads", LEASE_DURATION + 2, second.is_leader)
    eventually(
        "3 Workflows on time by the second process",
        8.0,
        lambda: len(second.spawned(catch_up=False)) >= 3,
    )
    quiesce(fleet)
    assert second.stop() == 0

    for name in names:
        again = decided_by(second, name)
        cursor = cursors[name]
        assert cursor is not None
        assert [t for t in again if t <= cursor] == [], f"{name}: decided again after the restart"
        decisions_ = sorted([*before[name], *again])
        assert decisions_ == list(range(decisions_[0], decisions_[-1] + 1)), (
            f"{name}: an instant decided twice or never: {decisions_}"
        )
        missed = missed_schedule_events(kube, name)
        assert len(missed) == len(set(missed)), f"{name}: MissedSchedule twice for {missed}"
    spawned = sorted([*first.spawned(), *second.spawned()])
    assert sorted(workflows(kube)) == spawned
    recreated = [
        e["workflow"]
        for replica in (first, second)
        for e in replica.tick_events("Spawned")
        if not e["workflowCreated"]
    ]
    assert recreated == [], f"spawned again, found already existing: {recreated}"
