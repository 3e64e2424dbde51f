"""End-to-end tests of ``cronwf serve``: real processes on the real clock, with and without Redis.

The unit tests decide every tick on a fake clock. What only real processes show is checked
here: the timer fires at whole seconds, manifest files reload while serving (and a manifest
folder that disappears for a while deletes nothing), replicas on one Redis elect one leader
and hand over without deciding an instant twice or losing one, a Redis outage turns readiness
off and is caught up afterwards, and signals end the service cleanly.

How the tests observe a replica:

* its log, one JSON object per line (``--log-format json``) in a file of the test; every engine
  decision is such a line (``event``: ``Spawned``, ``Missed``, ``Completed``...), so the logs of
  all replicas together say which replica decided which instant, and how;
* ``/healthz``, ``/readyz`` and ``/metrics`` on its own free port;
* the history in Redis, read back with ``cronwf history NAMESPACE/NAME -o json``;
* the local executor's run logs, ``<state-dir>/runs/<namespace>/<workflow>.log``: the Workflows
  that really ran, each ending with its phase (``# Succeeded: exit code 0``).

Schedules are ``@every 1s`` and runs are ``sh -c`` one-liners, so a scenario takes seconds;
every wait polls against a deadline. Disruptions (``kill -9``, SIGTERM, stopping Redis) happen
in the middle of a second, away from the whole-second instants, so no tick is half done when
they strike and the assertions can be exact. Two tests add 2000 idle CronWorkflows, so that a
new leader's recovery (sync, orphans, catch-up of each) lasts about a second and timer ticks
fire in the middle of it, as they do in a real fleet.

The tests are marked ``e2e``: ``make test`` runs them after everything else, ``pytest -m e2e``
alone.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import RedisServer
from e2e_support import Record, Replica, eventually

NAMESPACE = "default"
CRONWF = Path(sys.executable).with_name("cronwf")

START_WITHIN = 15.0
"""Seconds for a replica to answer on its port (Python start-up on a busy 2-core machine)."""
STOP_WITHIN = 8.0
"""Seconds for a replica to exit after SIGTERM."""

LOCK_TTL = 2.0
LEADERSHIP = ("--lock-ttl", f"{LOCK_TTL:g}s", "--renew-interval", "0.5s")
FAST_RELOAD = ("--reload-interval", "0.2s")
DECISIONS = frozenset({"Spawned", "Skipped", "Missed", "Error"})


# --------------------------------------------------------------------------------------------
# Waiting, time and files


def wait_for_mid_second() -> None:
    """Sleep (under a second) to the middle of the current or next second.

    Ticks fire at whole seconds and take milliseconds: at mid-second none is in flight.
    """
    time.sleep((0.5 - time.time() % 1.0) % 1.0)


def unix(text: str) -> int:
    """Unix seconds of an RFC 3339 time such as ``2026-03-08T09:59:00Z``."""
    return int(datetime.fromisoformat(text).timestamp())


def unix_of(record: Record) -> float:
    """When a log record was written, in Unix seconds."""
    return datetime.fromisoformat(record["time"]).timestamp()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_file(path: Path, text: str) -> None:
    """Write in one step (a hidden temporary file renamed), so a poll never reads half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def cron_workflow(
    name: str,
    *,
    script: str,
    schedule: str = "@every 1s",
    deadline: int | None = None,
    suspend: bool = False,
) -> str:
    """A CronWorkflow manifest whose entrypoint runs ``sh -c script`` with the local executor."""
    spec: Record = {
        "suspend": suspend,
        "schedules": [schedule],
        "concurrencyPolicy": "Allow",
        "workflowSpec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "container": {
                        "image": "alpine:3.20",
                        "command": ["sh", "-c"],
                        "args": [script],
                    },
                }
            ],
        },
    }
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    document = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }
    return yaml.safe_dump(document, sort_keys=False)


def idle_fleet(count: int) -> str:
    """``count`` suspended CronWorkflows in one multi-document manifest.

    They never run (suspended, and due only on 29 February), but a new leader syncs and
    catches up each of them, as it would a real fleet.
    """
    return "---\n".join(
        cron_workflow(f"idle-{i:04d}", script="true", schedule="0 0 29 2 *", suspend=True)
        for i in range(count)
    )


def run_logs(state_dir: Path, name: str) -> dict[int, Path]:
    """The run logs of CronWorkflow ``name``, by the instant in their Workflow name."""
    folder = state_dir / "runs" / NAMESPACE
    return {int(path.stem.rpartition("-")[2]): path for path in folder.glob(f"{name}-*.log")}


def final_line(path: Path) -> str:
    lines = path.read_text().splitlines()
    return lines[-1] if lines else ""


def succeeded_runs(state_dir: Path, name: str) -> set[int]:
    """Instants whose run log ends with the executor's ``# Succeeded`` line."""
    return {
        instant
        for instant, path in run_logs(state_dir, name).items()
        if final_line(path).startswith("# Succeeded:")
    }


# --------------------------------------------------------------------------------------------
# Replicas


class Replicas:
    """Starts ``cronwf serve`` processes for one test; the fixture kills whatever is left."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.started: list[Replica] = []

    def start(self, *arguments: str, identity: str) -> Replica:
        port = free_port()
        log_path = self._directory / f"{identity}.log"
        # Flags only: an operator's CRONWF_* variables must not change the test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRONWF_")}
        command = [str(CRONWF), "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--identity", identity, "--log-format", "json", *arguments]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        replica = Replica(identity, port, log_path, process, STOP_WITHIN)
        self.started.append(replica)
        return replica

    def ready(self, replica: Replica, *, leading: bool = False) -> Record:
        """Wait until ``replica`` answers ``/readyz`` with 200 (and says it leads, when
        ``leading``: a replica is ready once its sources are loaded, a moment before it takes
        the lead); its JSON body."""

        def probe() -> Record | None:
            if replica.process.poll() is not None:
                pytest.fail(f"{replica.identity} exited with {replica.process.returncode}")
            state = replica.readiness()
            if state is None or state[0] != 200 or (leading and not state[1]["leader"]):
                return None
            return state[1]

        what = f"{replica.identity} ready{' and leading' if leading else ''}"
        return eventually(what, START_WITHIN, probe)

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
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    started = Replicas(tmp_path)
    try:
        yield started
    finally:
        started.close()
        started.dump()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: no lock or history of another test in it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def the_leader(candidates: Sequence[Replica]) -> Replica | None:
    """The one replica whose ``/readyz`` says it leads; None while there is not exactly one."""
    leaders = [replica for replica in candidates if replica.is_leader()]
    return leaders[0] if len(leaders) == 1 else None


# --------------------------------------------------------------------------------------------
# History and decisions


def history(redis_url: str, key: str) -> Record:
    """``cronwf history KEY -o json``: counters, cursor and recent runs from Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONWF_")}
    result = subprocess.run(
        [str(CRONWF), "history", key, "--redis-url", redis_url, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"cronwf history failed: {result.stderr}"
    report: Record = json.loads(result.stdout)
    return report


def runs_by_instant(report: Record) -> dict[int, Record]:
    return {unix(run["scheduledTime"]): run for run in report["runs"]}


def decisions(replicas: Iterable[Replica], key: str) -> dict[int, list[Record]]:
    """Every decision event of ``key`` in the logs of ``replicas``, by instant."""
    found: dict[int, list[Record]] = defaultdict(list)
    for replica in replicas:
        for event in replica.events(key, *DECISIONS):
            found[unix(event["scheduledTime"])].append(event)
    return dict(found)


def spawn_count(replica: Replica, key: str, *, catch_up: bool | None = None) -> int:
    return sum(
        1
        for event in replica.events(key, "Spawned")
        if catch_up is None or event["catchUp"] is catch_up
    )


def assert_each_instant_decided_once(
    runs: dict[int, Record],
    replicas: Sequence[Replica],
    state_dir: Path,
    name: str,
) -> dict[int, Record]:
    """Between the first and the last spawned instant, every second was decided exactly once
    by exactly one replica, recorded in the history, and only spawned instants ran.

    Returns the decision event of each instant.
    """
    key = f"{NAMESPACE}/{name}"
    spawned = sorted(t for t, run in runs.items() if run["decision"] == "Spawned")
    assert len(spawned) >= 2, f"too few runs to judge: {runs}"
    window = range(spawned[0], spawned[-1] + 1)
    undecided = [t for t in window if t not in runs]
    assert undecided == [], f"instants absent from the history: {undecided}"
    kinds = {t: runs[t]["decision"] for t in window}
    assert set(kinds.values()) <= {"Spawned", "Missed"}, f"unexpected decisions: {kinds}"
    for t in spawned:
        assert runs[t]["workflow"] == f"{name}-{t}", runs[t]
    events = decisions(replicas, key)
    twice = {t: [(e["replica"], e["event"]) for e in es] for t, es in events.items() if len(es) > 1}
    assert twice == {}, f"instants decided more than once: {twice}"
    unlogged = [t for t in window if t not in events]
    assert unlogged == [], f"instants without a decision event: {unlogged}"
    assert {t: events[t][0]["event"] for t in window} == kinds
    recreated = [e["workflow"] for t in spawned for e in events[t] if not e["workflowCreated"]]
    assert recreated == [], f"spawned again, found already existing: {recreated}"
    ran = sorted(run_logs(state_dir, name))
    assert ran == spawned, "the run logs are not exactly the spawned instants"
    return {t: events[t][0] for t in window}


def assert_every_success_counted_once(report: Record, state_dir: Path, name: str) -> None:
    """The ``succeeded`` counter is the number of runs whose log says they succeeded (DESIGN
    §6), read after the replicas stopped at mid-second, when no run was finishing."""
    succeeded = succeeded_runs(state_dir, name)
    assert report["succeeded"] == len(succeeded), f"runs that succeeded: {sorted(succeeded)}"
    assert report["failed"] == 0


def catch_up_of(decided: dict[int, Record], identity: str) -> list[int]:
    """The instants ``identity`` decided by catch-up (Missed, or spawned as a catch-up)."""
    return sorted(
        t
        for t, event in decided.items()
        if event["replica"] == identity and (event["event"] == "Missed" or event.get("catchUp"))
    )


def assert_catch_up_rule(
    gap: list[int], runs: dict[int, Record], decided: dict[int, Record], after: int
) -> None:
    """DESIGN §5 with ``startingDeadlineSeconds`` > the gap: the latest missed instant runs as a
    catch-up, every earlier one is recorded ``Missed`` ``superseded``; the gap starts right
    after ``after``, the last instant decided before it."""
    assert gap, "no instant was caught up"
    assert gap == list(range(after + 1, gap[-1] + 1)), f"the gap is not contiguous: {gap}"
    latest = gap[-1]
    assert runs[latest]["decision"] == "Spawned"
    assert decided[latest]["catchUp"] is True
    earlier = {t: (runs[t]["decision"], runs[t]["reason"]) for t in gap[:-1]}
    assert earlier == dict.fromkeys(gap[:-1], ("Missed", "superseded"))


def assert_missed_only_before_a_catch_up(
    runs: dict[int, Record], decided: dict[int, Record]
) -> None:
    """DESIGN §5 where a recovery may catch up in more than one round: every ``Missed``
    instant is ``superseded`` and the next instant was decided by catch-up too (``Missed``, or
    spawned as a catch-up), so every series of missed instants ends with a catch-up run."""
    assert any(e.get("catchUp") is True for e in decided.values()), "no instant was caught up"
    for t, event in sorted(decided.items()):
        if event["event"] != "Missed":
            continue
        assert runs[t]["reason"] == "superseded", runs[t]
        following = decided.get(t + 1, {})
        by_catch_up = following.get("event") == "Missed" or following.get("catchUp") is True
        assert by_catch_up, f"missed {t}, then {following or 'nothing'}: no catch-up ran"


# --------------------------------------------------------------------------------------------
# 1. One replica, in-process store


@pytest.mark.e2e
def test_a_single_replica_spawns_every_whole_second_once_and_stops_cleanly_on_sigterm(
    replicas: Replicas, tmp_path: Path
) -> None:
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="echo ran {{workflow.name}}"))
    replica = replicas.start(
        "--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD, identity="solo"
    )

    ready = replicas.ready(replica, leading=True)
    assert ready["ready"] is True
    assert ready["leader"] is True
    assert ready["storeReachable"] is True
    assert ready["cronWorkflows"] == 1

    def four_runs() -> dict[int, Path] | None:
        found = run_logs(state, "tick")
        return found if len(found) >= 4 else None

    logs = eventually("4 runs within a few seconds", 6.0, four_runs)
    instants = sorted(logs)
    assert instants == list(range(instants[0], instants[-1] + 1)), "not consecutive seconds"
    first = logs[instants[0]].read_text()
    assert f"ran tick-{instants[0]}" in first
    assert first.splitlines()[-1] == "# Succeeded: exit code 0"
    spawns = [unix(e["scheduledTime"]) for e in replica.events("default/tick", "Spawned")]
    assert sorted(spawns) == sorted(set(spawns)), "an instant was spawned twice"

    assert replica.get("/healthz") == (200, "ok\n")
    metrics = replica.scrape()
    triggered = metrics.value("cronwf_triggered_total", namespace=NAMESPACE, name="tick")
    assert triggered is not None
    assert triggered >= len(instants)
    assert metrics.value("cronwf_is_leader") == 1
    lags = metrics.value("cronwf_schedule_lag_seconds_count")
    assert lags is not None
    assert lags >= len(instants)
    assert metrics.value("cronwf_schedule_lag_seconds_bucket", le="+Inf") == lags
    assert metrics.value("cronwf_schedule_lag_seconds_bucket", le="5.0") == lags

    assert replica.stop() == 0
    assert replica.messages()[-1] == "stopped"


# --------------------------------------------------------------------------------------------
# 2. Manifest files reloaded while serving


@pytest.mark.e2e
def test_manifest_files_are_added_broken_and_removed_while_serving(
    replicas: Replicas, tmp_path: Path
) -> None:
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    alpha, beta = manifests / "alpha.yaml", manifests / "beta.yaml"
    write_file(alpha, cron_workflow("alpha", script="echo alpha"))
    replica = replicas.start(
        "--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD, identity="solo"
    )
    replicas.ready(replica)
    eventually("alpha runs", 4.0, lambda: run_logs(state, "alpha"))

    # A new file starts firing.
    write_file(beta, cron_workflow("beta", script="echo beta"))
    eventually("beta runs after its file was added", 4.0, lambda: run_logs(state, "beta"))

    # A file that no longer parses is reported, and disturbs no other CronWorkflow: beta keeps
    # firing, and alpha keeps its last good definition (like `kubectl apply` of a broken file).
    write_file(alpha, "kind: CronWorkflow\nmetadata: [unclosed\n")

    def load_error() -> Record | None:
        return next(
            (
                r
                for r in replica.records()
                if r["level"] == "error" and "alpha.yaml" in r["message"]
            ),
            None,
        )

    error = eventually("an error logged for the broken file", 3.0, load_error)
    assert error["message"].startswith("cannot load manifest:")
    broken_at = unix_of(error)
    for name in ("beta", "alpha"):
        eventually(
            f"{name} still firing after alpha.yaml broke",
            4.0,
            lambda name=name: max(run_logs(state, name), default=0) > broken_at + 1,
        )
    still = replica.readiness()
    assert still is not None
    assert still[0] == 200

    # A removed file's CronWorkflow stops firing; the others go on.
    beta.unlink()
    removal = eventually(
        "beta removed",
        3.0,
        lambda: next(
            (r for r in replica.records() if r["message"] == "CronWorkflow default/beta removed"),
            None,
        ),
    )
    removed_at = unix_of(removal)
    eventually(
        "alpha firing 2 s after beta was removed",
        5.0,
        lambda: max(run_logs(state, "alpha")) >= removed_at + 2,
    )
    late = [t for t in run_logs(state, "beta") if t > removed_at]
    assert late == [], f"beta fired after its file was removed at {removed_at}: {late}"

    assert replica.stop() == 0


@pytest.mark.e2e
def test_a_manifest_folder_that_disappears_while_serving_deletes_nothing_and_turns_readiness_off(
    replicas: Replicas, tmp_path: Path
) -> None:
    """A volume being remounted: the configured folder is gone for a while. Nothing is
    forgotten: the CronWorkflow keeps firing, ``/readyz`` is 503 and names the folder, the
    gauge counts it, and one error is logged. When the folder is back all is as before, and
    deleting the file then does remove the CronWorkflow."""
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="echo tick"))
    replica = replicas.start(
        "--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD, identity="solo"
    )
    replicas.ready(replica)
    eventually("tick runs", 4.0, lambda: run_logs(state, "tick"))

    away = tmp_path / "unmounted"
    manifests.rename(away)

    def unready() -> Record | None:
        reply = replica.readiness()
        return reply[1] if reply is not None and reply[0] == 503 else None

    body = eventually("/readyz to turn 503", 3.0, unready)
    gone_at = time.time()
    assert body["sourcesListed"] is False
    assert body["cronWorkflows"] == 1
    assert [(e["kind"], e["file"]) for e in body["sourceErrors"]] == [("listing", str(manifests))]
    assert replica.metric("cronwf_manifest_errors", kind="listing") == 1
    eventually(
        "tick firing 2 s after its folder disappeared",
        5.0,
        lambda: max(run_logs(state, "tick")) >= gone_at + 2,
    )
    errors = [r for r in replica.records() if r["level"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith(f"cannot list manifests: {manifests}: the configured")
    assert not any(r["message"] == "CronWorkflow default/tick removed" for r in replica.records())

    away.rename(manifests)
    replicas.ready(replica)
    assert replica.metric("cronwf_manifest_errors", kind="listing") == 0

    (manifests / "tick.yaml").unlink()
    eventually(
        "tick removed once its file is deleted",
        3.0,
        lambda: any(r["message"] == "CronWorkflow default/tick removed" for r in replica.records()),
    )
    assert replica.stop() == 0


# --------------------------------------------------------------------------------------------
# 3. Three replicas on one Redis; the leader is killed


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_three_replicas_elect_one_leader_and_a_killed_leader_is_replaced_without_losing_or_doubling_an_instant(  # noqa: E501
    replicas: Replicas, own_redis: RedisServer, tmp_path: Path
) -> None:
    """``kill -9`` of the leader: no release, so the lock lapses after its TTL; a standby takes
    over and catches up the instants nobody decided meanwhile (DESIGN §5, §9)."""
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="echo tick", deadline=60))
    key = f"{NAMESPACE}/tick"
    flags = ("--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD)
    fleet = [
        replicas.start(*flags, "--redis-url", own_redis.url, *LEADERSHIP, identity=f"replica-{i}")
        for i in range(3)
    ]
    for replica in fleet:
        assert replicas.ready(replica)["storeReachable"] is True

    leader = eventually("exactly one leader", 5.0, lambda: the_leader(fleet))
    assert [r.metric("cronwf_is_leader") for r in fleet] == [
        1.0 if r is leader else 0.0 for r in fleet
    ]
    eventually("3 runs by the leader", 6.0, lambda: spawn_count(leader, key) >= 3)

    wait_for_mid_second()
    leader.kill()
    killed_at = time.time()
    survivors = [r for r in fleet if r is not leader]
    successor = eventually(
        "a new leader within the lock TTL and a few seconds",
        LOCK_TTL + 3.0,
        lambda: the_leader(survivors),
        every=0.1,
    )
    assert [r.metric("cronwf_is_leader") for r in survivors] == [
        1.0 if r is successor else 0.0 for r in survivors
    ]
    eventually(
        "3 runs on time by the new leader",
        6.0,
        lambda: spawn_count(successor, key, catch_up=False) >= 3,
    )
    missed = successor.metric("cronwf_missed_total", name="tick", reason="superseded") or 0
    wait_for_mid_second()
    for replica in survivors:
        assert replica.stop() == 0

    report = history(own_redis.url, key)
    runs = runs_by_instant(report)
    decided = assert_each_instant_decided_once(runs, fleet, state, "tick")
    assert_every_success_counted_once(report, state, "tick")
    by_old_leader = [t for t, e in decided.items() if e["replica"] == leader.identity]
    assert max(by_old_leader) < killed_at
    gap = catch_up_of(decided, successor.identity)
    assert_catch_up_rule(gap, runs, decided, after=max(by_old_leader))
    assert missed == len(gap) - 1


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_new_leader_with_a_large_catalog_still_catches_up_every_instant_of_the_gap(
    replicas: Replicas, own_redis: RedisServer, tmp_path: Path
) -> None:
    """With 2000 CronWorkflows to sync and catch up, a new leader's recovery takes over a
    second, so timer ticks of ``tick`` fire in the middle of it. The instants that passed
    without a leader must still be caught up or recorded ``Missed`` (DESIGN §4, §5): a tick on
    time must not move the cursor over undecided instants before their catch-up ran.
    """
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "fleet.yaml", idle_fleet(2000))
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="echo tick", deadline=60))
    key = f"{NAMESPACE}/tick"
    flags = ("--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD)
    # A lock that outlives the first leader's start-up (seeding 2000 histories).
    lock = ("--lock-ttl", "3s", "--renew-interval", "0.5s")
    pair = [
        replicas.start(*flags, "--redis-url", own_redis.url, *lock, identity=identity)
        for identity in ("replica-a", "replica-b")
    ]
    for replica in pair:
        assert replicas.ready(replica)["cronWorkflows"] == 2001
    leader = eventually("exactly one leader", 5.0, lambda: the_leader(pair))
    successor = next(r for r in pair if r is not leader)
    eventually("2 runs by the leader", 6.0, lambda: spawn_count(leader, key) >= 2)

    wait_for_mid_second()
    leader.kill()
    eventually("the standby leads", 3.0 + 3.0, successor.is_leader, every=0.1)
    eventually(
        "3 runs on time by the new leader",
        8.0,
        lambda: spawn_count(successor, key, catch_up=False) >= 3,
    )
    wait_for_mid_second()
    assert successor.stop() == 0

    report = history(own_redis.url, key)
    runs = runs_by_instant(report)
    decided = assert_each_instant_decided_once(runs, pair, state, "tick")
    assert_missed_only_before_a_catch_up(runs, decided)
    assert_every_success_counted_once(report, state, "tick")


# --------------------------------------------------------------------------------------------
# 4. SIGTERM of the leader


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_leader_stopped_by_sigterm_releases_the_lock_and_a_standby_takes_over_at_once(
    replicas: Replicas, own_redis: RedisServer, tmp_path: Path
) -> None:
    """With a 10 s lock TTL, a takeover within a couple of seconds proves the lock was
    released, not left to expire."""
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="echo tick", deadline=60))
    key = f"{NAMESPACE}/tick"
    flags = ("--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD)
    long_lock = ("--lock-ttl", "10s", "--renew-interval", "0.5s")
    pair = [
        replicas.start(*flags, "--redis-url", own_redis.url, *long_lock, identity=identity)
        for identity in ("replica-a", "replica-b")
    ]
    for replica in pair:
        replicas.ready(replica)
    leader = eventually("exactly one leader", 5.0, lambda: the_leader(pair))
    standby = next(r for r in pair if r is not leader)
    eventually("2 runs by the leader", 5.0, lambda: spawn_count(leader, key) >= 2)

    wait_for_mid_second()
    assert leader.stop() == 0
    stopped_at = time.monotonic()
    client = own_redis.client(decode_responses=True)
    try:
        holder = client.get("cronwf:leader")
    finally:
        client.close()
    assert holder is None or not holder.endswith(f":{leader.identity}"), holder
    assert leader.messages()[-1] == "stopped"

    eventually("the standby leads", 3.0, standby.is_leader, every=0.1)
    assert time.monotonic() - stopped_at < 2.5, "the takeover waited for the lock to expire"
    eventually(
        "2 runs on time by the new leader",
        5.0,
        lambda: spawn_count(standby, key, catch_up=False) >= 2,
    )
    wait_for_mid_second()
    assert standby.stop() == 0

    report = history(own_redis.url, key)
    assert_each_instant_decided_once(runs_by_instant(report), pair, state, "tick")
    assert_every_success_counted_once(report, state, "tick")


# --------------------------------------------------------------------------------------------
# 5. Redis outage


def redis_outage(
    replica: Replica, server: RedisServer, seconds: float = 3.0
) -> tuple[float, float]:
    """Stop Redis at mid-second for ``seconds``, then restart it with its data.

    Checks that ``/readyz`` turns 503 (``storeReachable: false``) during the outage and 200
    again, leading, after it. Returns when Redis stopped and when its restart began (Unix
    seconds): nothing could reach it in between.
    """
    wait_for_mid_second()
    server.stop()
    began = time.time()

    def degraded() -> Record | None:
        state = replica.readiness()
        return state[1] if state is not None and state[0] == 503 else None

    during = eventually("/readyz 503 during the outage", min(2.5, seconds), degraded)
    assert during["ready"] is False
    assert during["storeReachable"] is False
    assert "storeError" in during
    time.sleep(max(0.0, began + seconds - time.time()))
    ended = time.time()
    server.start()

    def recovered() -> Record | None:
        state = replica.readiness()
        if state is None or state[0] != 200 or not state[1]["leader"]:
            return None
        return state[1]

    after = eventually("/readyz 200 and leading after Redis restarted", 8.0, recovered)
    assert after["storeReachable"] is True
    return began, ended


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_redis_outage_turns_readiness_off_and_is_caught_up_without_double_runs_or_lost_completions(  # noqa: E501
    replicas: Replicas, persistent_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis stops for 3 s, then restarts with its data (AOF). Runs last 2.2 s, so some finish
    during the outage: their completions are buffered and counted once when Redis is back."""
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    script = "sleep 2.2; echo done {{workflow.name}}"
    write_file(manifests / "slow.yaml", cron_workflow("slow", script=script, deadline=30))
    key = f"{NAMESPACE}/slow"
    flags = ("--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD)
    replica = replicas.start(
        *flags, "--redis-url", persistent_redis.url, *LEADERSHIP, identity="solo"
    )
    replicas.ready(replica, leading=True)
    eventually("a run completed", 8.0, lambda: replica.events(key, "Completed"))

    outage_began, outage_ended = redis_outage(replica, persistent_redis)
    caught_up = eventually(
        "the catch-up run",
        5.0,
        lambda: [unix(e["scheduledTime"]) for e in replica.events(key, "Spawned") if e["catchUp"]],
    )
    eventually(
        "2 runs on time after the catch-up",
        6.0,
        lambda: len([t for t in run_logs(state, "slow") if t > caught_up[0]]) >= 2,
    )

    # Runs that finished while Redis was down are counted once each after it came back, and so
    # is the catch-up run.
    finished_during_outage = sorted(
        t
        for t, path in run_logs(state, "slow").items()
        if t < outage_began
        and outage_began < path.stat().st_mtime < outage_ended
        and final_line(path).startswith("# Succeeded:")
    )
    assert finished_during_outage, "no run finished during the outage: the scenario is void"
    seen: list[str] = ["nothing yet"]

    def settled() -> Record | None:
        """The history, once it counts every run whose log said Succeeded before it was read;
        never counting more than those that say so after. (A run finishes every second and
        reading the history takes a process start, so runs often finish during the read.)"""
        before = succeeded_runs(state, "slow")
        report = history(persistent_redis.url, key)
        later = succeeded_runs(state, "slow")
        assert report["succeeded"] <= len(later), "a completion was counted twice"
        seen[0] = (
            f"succeeded={report['succeeded']}, logs say Succeeded: {sorted(before)} before "
            f"the read, {sorted(later)} after"
        )
        counted = report["succeeded"] >= len(before)
        return report if counted and caught_up[0] in before else None

    report = eventually(
        lambda: f"the history counts every run that succeeded ({seen[0]})", 10.0, settled, 0.2
    )
    assert report["failed"] == 0
    runs = runs_by_instant(report)
    assert {t: runs[t]["phase"] for t in finished_during_outage} == dict.fromkeys(
        finished_during_outage, "Succeeded"
    )
    completions: defaultdict[str, int] = defaultdict(int)
    for event in replica.events(key, "Completed"):
        completions[event["workflow"]] += 1
    assert {w: n for w, n in completions.items() if n != 1} == {}

    assert replica.stop() == 0
    runs = runs_by_instant(history(persistent_redis.url, key))
    decided = assert_each_instant_decided_once(runs, [replica], state, "slow")
    before_outage = [t for t, e in decided.items() if unix_of(e) < outage_began]
    gap = sorted(
        t for t, e in decided.items() if e["event"] == "Missed" or e.get("catchUp") is True
    )
    assert_catch_up_rule(gap, runs, decided, after=max(before_outage))
    outage_seconds = range(math.ceil(outage_began), math.floor(outage_ended) + 1)
    assert set(outage_seconds) <= set(gap), "an instant of the outage was decided on time"


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_recovery_from_a_redis_outage_with_a_large_catalog_still_decides_every_instant(
    replicas: Replicas, persistent_redis: RedisServer, tmp_path: Path
) -> None:
    """With 2000 CronWorkflows, recovering from the outage (sync, buffered runs, orphans,
    catch-up of each) takes over a second, so ticks of ``tick`` fire during it. Each of those
    instants must be decided too, on time or by a catch-up (DESIGN §4, §5)."""
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    write_file(manifests / "fleet.yaml", idle_fleet(2000))
    write_file(manifests / "tick.yaml", cron_workflow("tick", script="echo tick", deadline=30))
    key = f"{NAMESPACE}/tick"
    flags = ("--manifests", str(manifests), "--state-dir", str(state), *FAST_RELOAD)
    # A lock that outlives the start-up (seeding 2000 histories, each write fsynced).
    lock = ("--lock-ttl", "10s", "--renew-interval", "0.5s")
    replica = replicas.start(*flags, "--redis-url", persistent_redis.url, *lock, identity="solo")
    assert replicas.ready(replica, leading=True)["cronWorkflows"] == 2001
    eventually("2 runs", 6.0, lambda: spawn_count(replica, key) >= 2)

    outage_began, _ = redis_outage(replica, persistent_redis)
    eventually(
        "3 runs on time after the outage",
        6.0,
        lambda: len([t for t in run_logs(state, "tick") if t > outage_began + 5]) >= 3,
    )
    wait_for_mid_second()
    assert replica.stop() == 0

    report = history(persistent_redis.url, key)
    runs = runs_by_instant(report)
    decided = assert_each_instant_decided_once(runs, [replica], state, "tick")
    assert_missed_only_before_a_catch_up(runs, decided)
    assert_every_success_counted_once(report, state, "tick")
