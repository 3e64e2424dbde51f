"""The runtime of ``cronwf serve`` (DESIGN §9, §10): timer callbacks, runs, outages, leadership.

A real :class:`Service` runs here: manifests in a temporary folder, the in-process Redis store
behind a small wrapper that can simulate an outage, the local executor running ``sh``, HTTP on
a free port. Time is a :class:`FakeClock` the test moves; the timer's own deliveries are kept
out of the way by schedules that only fire on February 29th (the clock is set to 2028-02-29,
the real timer's next instant is years away), and each test calls :meth:`Service.on_due` with
the instants it wants decided. The housekeeping loop runs for real with short intervals; the
tests wait for its effects with bounded waits.
"""

from __future__ import annotations

import errno
import gc
import http.client
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from policies.decision import History, Phase
from policies.schedule import Schedule
from policies.workflow import workflow_name
from scheduler.adapters.local.executor import LocalExecutor
from scheduler.adapters.redis.history import FencedOut, RedisHistory, RedisRunReports
from scheduler.adapters.timer import Due
from scheduler.core.engine import Event, OneByOne, RunRecord, Stopped, StoreUnavailable, Transition
from scheduler.runtime.service import _HELD_AT_MOST, Service, ServiceConfig, _Fanout, warn_if_root
from scheduler.telemetry.metrics import CronWorkflowGauges

T0 = datetime(2028, 2, 29, 9, 0, tzinfo=UTC)
EVERY_FIVE_ON_LEAP_DAY = "*/5 * 29 2 *"
BOUND = 5.0  # seconds: the longest any test waits for the service


def at(minutes: float, seconds: float = 0.0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Fakes


class FakeClock:
    """The service's clock; only the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


class FlakyStore(OneByOne):
    """The in-process Redis store, with an outage switch and a fencing switch.

    While ``down``, every call raises :class:`StoreUnavailable` (as the Redis store does when
    the server is unreachable); while ``fenced``, writes raise :class:`FencedOut` (another
    replica took the lead). ``calls`` counts the calls per CronWorkflow key; ``before_load``
    runs before each load, to hold the service at a chosen point.
    """

    def __init__(self) -> None:
        self.inner = RedisHistory.in_process()
        self.down = False
        self.fenced = False
        self.calls: dict[str, int] = {}
        self.before_load: Callable[[str], None] | None = None

    def _enter(self, key: str) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.down:
            raise StoreUnavailable("redis at 127.0.0.1:6379 is unreachable (test outage)")

    def load(self, key: str) -> History | None:
        if self.before_load is not None:
            self.before_load(key)
        self._enter(key)
        return self.inner.load(key)

    def apply(
        self, key: str, seed: History, transition: Transition, runs: Sequence[RunRecord] = ()
    ) -> tuple[History, History]:
        self._enter(key)
        if self.fenced:
            raise FencedOut("the fencing token 7 is no longer current (test)")
        return self.inner.apply(key, seed, transition, runs)

    def forget(self, key: str) -> None:
        self._enter(key)
        self.inner.forget(key)

    def drop_cache(self) -> None:
        self.inner.drop_cache()

    def mark(self) -> bool:
        if self.down:
            raise StoreUnavailable("redis at 127.0.0.1:6379 is unreachable (test outage)")
        return self.inner.mark()

    def history(self, key: str) -> History:
        history = self.inner.load(key)
        assert history is not None, f"no history for {key}"
        return history

    def runs(self, key: str) -> list[RunRecord]:
        """Recent runs, newest first."""
        return self.inner.recent_runs(key)


class FakeLeadership:
    """A leader lock: free or taken by another replica; renewals can be made to fail."""

    def __init__(self, token: int | None = 7) -> None:
        self.token = token
        self.keep = True
        self.released = False
        self.acquiring = threading.Event()
        self.proceed: threading.Event | None = None

    def try_acquire(self) -> int | None:
        self.acquiring.set()
        if self.proceed is not None:
            self.proceed.wait(BOUND)
        return self.token

    def renew(self) -> bool:
        return self.keep

    def release(self) -> None:
        self.released = True

    def lose(self) -> None:
        """Another replica takes the lock: renewals fail, acquisitions find it taken."""
        self.keep, self.token = False, None


# --------------------------------------------------------------------------------------------
# Manifests and service


def cron_workflow(
    name: str,
    script: str = "true",
    schedule: str = EVERY_FIVE_ON_LEAP_DAY,
    env: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"image": "alpine:3.20", "command": ["sh", "-c"], "args": [script]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "schedules": [schedule],
            **spec,
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [{"name": "main", "container": container}],
            },
        },
    }


class Harness:
    """Builds services on a manifests folder and shuts every one of them down."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.manifests = tmp_path / "manifests"
        self.manifests.mkdir()
        self.clock = FakeClock(T0)
        self.store = FlakyStore()
        self.services: list[Service] = []

    def write(self, *documents: dict[str, Any], file: str = "cron.yaml") -> Path:
        path = self.manifests / file
        path.write_text(yaml.safe_dump_all(documents))
        return path

    def service(self, leadership: FakeLeadership | None = None, **config: Any) -> Service:
        settings = ServiceConfig(
            manifests=(self.manifests,),
            state_dir=self.tmp_path / "state",
            host="127.0.0.1",
            port=0,
            reload_interval=0.2,
            renew_interval=0.2,
            run_timeout=10.0,
        )
        options: dict[str, Any] = {"store": self.store, "clock": self.clock}
        if "reports" in config:
            options["reports"] = config.pop("reports")
        if leadership is not None:
            options["leadership"] = leadership
        service = Service(replace(settings, **config), **options)
        self.services.append(service)
        return service

    def started(self, leadership: FakeLeadership | None = None, **config: Any) -> Service:
        service = self.service(leadership, **config)
        service.start()
        return service

    def log(self, service: Service, name: str, instant: datetime) -> Path:
        return executor(service).log_path("default", workflow_name(name, instant))

    def close(self) -> None:
        for service in self.services:
            service.shutdown()


def executor(service: Service) -> LocalExecutor:
    """The local executor of an embedded-mode service."""
    assert service.executor is not None
    return service.executor


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def succeeded(store: FlakyStore, key: str, count: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        history = store.inner.load(key)
        return history is not None and history.succeeded >= count

    return check


def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(service.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(service: Service, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------
# Due instants, on time and late


def test_a_due_instant_spawns_once_and_its_completion_is_counted(harness: Harness) -> None:
    """The timer says 09:05 is due at 09:05:00.2: the Workflow runs through the local
    executor, and its success is recorded in the store (counted once, no longer active).
    The same instant delivered again is already decided: nothing runs twice."""
    harness.write(cron_workflow("report", "echo report ran"))
    service = harness.started()
    harness.clock.set(at(5, 0.2))

    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the run's success to be recorded")
    service.on_due("default/report", [at(5)])

    history = harness.store.history("default/report")
    assert (history.succeeded, history.failed, history.active) == (1, 0, ())
    assert history.cursor == at(5)
    assert history.last_scheduled_time == at(5)
    (run,) = harness.store.runs("default/report")
    assert (run.scheduled_at, run.decision, run.phase) == (at(5), "Spawned", "Succeeded")
    assert "report ran" in harness.log(service, "report", at(5)).read_text().splitlines()
    samples = scrape(service)
    labels = (("name", "report"), ("namespace", "default"))
    assert samples[("cronwf_triggered_total", labels)] == 1
    assert samples[("cronwf_schedule_lag_seconds_count", ())] == 1
    assert samples[("cronwf_schedule_lag_seconds_sum", ())] == pytest.approx(0.2)


def test_the_last_success_time_survives_a_restart(harness: Harness) -> None:
    """It is kept in the history: a replica that starts (after a rollout, or taking over)
    shows it at once, so "no recent success" can still be judged."""
    harness.write(cron_workflow("report"))
    first = harness.started()
    harness.clock.set(at(5, 0.2))
    first.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the run's success to be recorded")
    finished = harness.store.history("default/report").last_succeeded_time
    assert finished is not None
    first.shutdown()

    second = harness.started()

    labels = (("name", "report"), ("namespace", "default"))
    assert scrape(second)[("cronwf_last_success_time_seconds", labels)] == finished.timestamp()


def test_a_late_instant_with_a_starting_deadline_is_caught_up(harness: Harness) -> None:
    """Delivered 10 s after the instant (``late_after`` is 5 s), the instant goes through
    catch-up: within ``startingDeadlineSeconds`` it still runs, marked as a catch-up."""
    harness.write(cron_workflow("report", startingDeadlineSeconds=60))
    service = harness.started(late_after=5.0)
    harness.clock.set(at(5, 10))

    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the caught-up run to succeed")

    assert harness.store.history("default/report").last_scheduled_time == at(5)
    assert harness.log(service, "report", at(5)).exists()
    # A catch-up run is late by design: it says nothing about the timer's lag.
    assert scrape(service)[("cronwf_schedule_lag_seconds_count", ())] == 0


def test_a_late_instant_without_a_starting_deadline_is_missed(harness: Harness) -> None:
    """Without ``startingDeadlineSeconds`` a late instant is recorded missed (``deadline``),
    decided for good, and nothing runs."""
    harness.write(cron_workflow("report"))
    service = harness.started(late_after=5.0)
    harness.clock.set(at(5, 10))

    service.on_due("default/report", [at(5)])

    history = harness.store.history("default/report")
    assert history.cursor == at(5)
    assert history.last_scheduled_time is None
    (run,) = harness.store.runs("default/report")
    assert (run.scheduled_at, run.decision, run.reason) == (at(5), "Missed", "deadline")
    assert not harness.log(service, "report", at(5)).exists()
    labels = (("name", "report"), ("namespace", "default"), ("reason", "deadline"))
    assert scrape(service)[("cronwf_missed_total", labels)] == 1


def test_an_instant_within_late_after_is_ticked_normally(harness: Harness) -> None:
    """Up to ``late_after`` seconds late, an instant is an ordinary tick, even without a
    starting deadline."""
    harness.write(cron_workflow("report"))
    service = harness.started(late_after=5.0)
    harness.clock.set(at(5, 4))

    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the run to succeed")

    assert harness.store.runs("default/report")[0].decision == "Spawned"


def test_an_unknown_cron_workflow_is_ignored(harness: Harness) -> None:
    """A fire for a key no longer in the catalog (deleted meanwhile) decides nothing."""
    harness.write(cron_workflow("report"))
    service = harness.started()
    harness.clock.set(at(5, 0.1))

    service.on_due("default/deleted", [at(5)])

    assert harness.store.calls.get("default/deleted", 0) == 0


def test_a_batch_from_the_timer_decides_each_cron_workflow_by_its_own_lateness(
    harness: Harness,
) -> None:
    """The timer hands over CronWorkflows due together: those fired on time are ticked (in
    one batch), one fired late goes through catch-up, one with two instants due gets both,
    and a key deleted meanwhile is ignored. (``late_after`` is two minutes here, so that two
    instants of a minute-granular schedule can both be on time.)"""
    harness.write(
        cron_workflow("on-time"),
        cron_workflow("also-on-time"),
        cron_workflow("late", schedule="2 * 29 2 *"),
        cron_workflow("two-due", schedule="4,5 * 29 2 *"),
    )
    service = harness.started(late_after=120.0)
    harness.clock.set(at(5, 0.3))

    service.on_due_many(
        [
            Due("default/on-time", (at(5),), at(5, 0.1)),
            Due("default/deleted", (at(5),), at(5, 0.1)),
            Due("default/late", (at(2),), at(5, 0.1)),
            Due("default/also-on-time", (at(5),), at(5, 0.1)),
            Due("default/two-due", (at(4), at(5)), at(5, 0.1)),
        ]
    )

    for name in ("on-time", "also-on-time"):
        (run,) = harness.store.runs(f"default/{name}")
        assert (run.scheduled_at, run.decision) == (at(5), "Spawned"), name
    (late,) = harness.store.runs("default/late")
    assert (late.scheduled_at, late.decision, late.reason) == (at(2), "Missed", "deadline")
    assert [(r.scheduled_at, r.decision) for r in harness.store.runs("default/two-due")] == [
        (at(5), "Spawned"),
        (at(4), "Spawned"),
    ]
    assert harness.store.calls.get("default/deleted", 0) == 0
    assert scrape(service)[("cronwf_schedule_lag_seconds_count", ())] == 4


# --------------------------------------------------------------------------------------------
# Store outages


def test_a_degraded_store_makes_the_service_decide_nothing_and_not_ready(
    harness: Harness,
) -> None:
    """When the store is unreachable, the tick leaves its instant undecided and the service
    reports itself not ready (``/readyz`` 503 with the error); later fires do not even ask
    the store. Once it answers again, catch-up decides the instants that passed."""
    harness.write(cron_workflow("report"))
    service = harness.started()
    assert service.ready().store_reachable
    harness.store.down = True
    harness.clock.set(at(5, 0.1))

    service.on_due("default/report", [at(5)])

    readiness = service.ready()
    assert (readiness.store_reachable, readiness.ready) == (False, False)
    assert "test outage" in readiness.detail["storeError"]
    status, body = get(service, "/readyz")
    assert status == 503
    assert json.loads(body)["storeReachable"] is False
    asked = harness.store.calls["default/report"]
    harness.clock.set(at(10, 0.1))
    service.on_due("default/report", [at(10)])
    assert harness.store.calls["default/report"] == asked
    assert not harness.log(service, "report", at(5)).exists()

    harness.store.down = False
    wait_until(lambda: service.ready().store_reachable, "the service to recover")

    assert [
        (r.scheduled_at, r.decision, r.reason) for r in harness.store.runs("default/report")
    ] == [
        (at(10), "Missed", "deadline"),
        (at(5), "Missed", "superseded"),
    ]
    assert get(service, "/readyz")[0] == 200


def test_completions_during_an_outage_are_counted_once_after_recovery(
    harness: Harness, tmp_path: Path
) -> None:
    """A run that finishes while the store is unreachable is buffered, and recorded once the
    store answers again: counted once, no longer active."""
    gate = tmp_path / "gate"
    harness.write(
        cron_workflow(
            "report", 'while [ ! -e "$GATE" ]; do sleep 0.02; done', env={"GATE": str(gate)}
        )
    )
    service = harness.started()
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    assert harness.store.history("default/report").active == (workflow_name("report", at(5)),)

    harness.store.down = True
    gate.touch()
    wait_until(lambda: not service.ready().store_reachable, "the completion to hit the outage")
    wait_until(lambda: executor(service).running() == [], "the run's thread to end")
    assert harness.store.history("default/report").succeeded == 0

    harness.store.down = False
    wait_until(succeeded(harness.store, "default/report"), "the buffered completion")
    wait_until(lambda: service.ready().store_reachable, "the service to recover")

    history = harness.store.history("default/report")
    assert (history.succeeded, history.failed, history.active) == (1, 0, ())
    assert harness.store.runs("default/report")[0].phase == "Succeeded"


def test_a_run_finishing_while_the_service_recovers_is_not_lost(
    harness: Harness,
) -> None:
    """Recovery catches up every CronWorkflow, and a catch-up run can finish before recovery
    is over (its completion is then buffered, the store still counting as unreachable). It
    must be recorded like any other, not left in the buffer with the run active forever
    (with ``Forbid``, blocking every later instant)."""
    harness.write(
        cron_workflow("first", startingDeadlineSeconds=300, concurrencyPolicy="Forbid"),
        cron_workflow("second", startingDeadlineSeconds=300),
    )
    service = harness.started()
    harness.store.down = True
    harness.clock.set(at(5, 10))
    service.on_due("default/first", [at(5)])
    assert not service.ready().store_reachable
    first_log = harness.log(service, "first", at(5))
    held = threading.Event()

    def hold_until_first_run_is_over(key: str) -> None:
        # Catch-up of "second" starts after "first" was spawned: let that run end first.
        if key == "default/second" and first_log.exists() and not held.is_set():
            held.set()
            deadline = time.monotonic() + BOUND
            while executor(service).running() and time.monotonic() < deadline:
                time.sleep(0.01)

    harness.store.before_load = hold_until_first_run_is_over
    harness.store.down = False
    wait_until(lambda: service.ready().store_reachable, "the service to recover")
    assert held.is_set(), "the catch-up of 'first' did not run during recovery"

    wait_until(succeeded(harness.store, "default/first"), "the caught-up run to be counted")
    assert harness.store.history("default/first").active == ()


# --------------------------------------------------------------------------------------------
# Leadership


def test_a_standby_decides_nothing(harness: Harness) -> None:
    """Another replica holds the lock: this one keeps its catalog and timer but writes no
    history and runs nothing. It is ready (it will take over), and says it is not leading."""
    harness.write(cron_workflow("report"))
    service = harness.started(FakeLeadership(token=None))
    harness.clock.set(at(5, 0.1))

    service.on_due("default/report", [at(5)])

    assert harness.store.inner.load("default/report") is None
    assert harness.store.calls == {}
    assert not (harness.tmp_path / "state" / "runs").exists()
    readiness = service.ready()
    assert (readiness.leader, readiness.ready) == (False, True)
    assert scrape(service)[("cronwf_is_leader", ())] == 0


def test_losing_the_lead_stops_acting_at_once(harness: Harness) -> None:
    """When a renewal fails the replica stops acting: later fires decide nothing."""
    harness.write(cron_workflow("report"))
    leadership = FakeLeadership(token=7)
    service = harness.started(leadership, renew_interval=0.1)
    assert service.is_leader()

    leadership.lose()
    wait_until(lambda: not service.is_leader(), "the lead to be given up")
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])

    assert harness.store.history("default/report").cursor == T0
    assert not harness.log(service, "report", at(5)).exists()
    assert scrape(service)[("cronwf_is_leader", ())] == 0


def test_a_fenced_out_claim_makes_the_replica_step_down(harness: Harness) -> None:
    """A deposed leader that has not noticed yet finds its claim refused by the fence: it
    spawns nothing and stops acting at once, before any renewal."""
    harness.write(cron_workflow("report"))
    service = harness.started(FakeLeadership(token=7), renew_interval=60.0)
    harness.store.fenced = True
    harness.clock.set(at(5, 0.1))

    service.on_due("default/report", [at(5)])

    assert not service.is_leader()
    assert service.ready().store_reachable
    assert not harness.log(service, "report", at(5)).exists()


def test_shutdown_releases_the_lead(harness: Harness) -> None:
    harness.write(cron_workflow("report"))
    leadership = FakeLeadership(token=7)
    service = harness.started(leadership)

    service.shutdown()

    assert leadership.released
    assert not service.is_leader()


# --------------------------------------------------------------------------------------------
# What metrics and probes show


def test_gauges_report_each_state_and_the_schedule_times(harness: Harness) -> None:
    """``active``, ``suspended``, ``stopped`` (by the stop strategy, after a failed run) and
    ``invalid`` (a malformed schedule: no timer job, no next time); next times come from the
    timer, last times from what was spawned; the fleet counts by state."""
    harness.write(
        cron_workflow("active"),
        cron_workflow("paused", suspend=True),
        cron_workflow("fragile", "exit 1", stopStrategy={"expression": "cronworkflow.failed >= 1"}),
        cron_workflow("broken", schedule="61 * * * *"),
    )
    service = harness.started()
    harness.clock.set(at(5, 0.1))
    service.on_due("default/fragile", [at(5)])
    wait_until(
        lambda: harness.store.history("default/fragile").phase is Phase.STOPPED,
        "the stop strategy to stop 'fragile'",
    )

    by_name = {g.name: g for g in service.gauges()}

    expected_next = Schedule([EVERY_FIVE_ON_LEAP_DAY]).next_after(datetime.now(UTC))
    assert expected_next is not None
    leap_day = expected_next.timestamp()
    # Every five minutes on 29 February: the longest gap runs from 23:55 on one leap day to
    # 00:00 on the next, four years later.
    four_years = (4 * 365 + 1) * 86_400 - (23 * 3600 + 55 * 60)
    assert by_name == {
        "active": CronWorkflowGauges("default", "active", "active", leap_day, None, four_years),
        "paused": CronWorkflowGauges("default", "paused", "suspended", leap_day, None, four_years),
        "fragile": CronWorkflowGauges(
            "default", "fragile", "stopped", leap_day, at(5).timestamp(), four_years
        ),
        "broken": CronWorkflowGauges("default", "broken", "invalid", None, None, None),
    }
    samples = scrape(service)
    for state in ("active", "suspended", "stopped", "invalid"):
        assert samples[("cronwf_cronworkflows", (("state", state),))] == 1
    assert samples[("cronwf_stopped", (("name", "fragile"), ("namespace", "default")))] == 1
    readiness = service.ready()
    assert (readiness.detail["cronWorkflows"], readiness.detail["invalid"]) == (4, 1)


def test_an_invalid_cron_workflow_is_reported_and_never_fires(harness: Harness) -> None:
    """A spec error is the user's: recorded as a ``SpecError`` condition and counted, never
    run; the other CronWorkflows are not disturbed."""
    harness.write(cron_workflow("broken", schedule="61 * * * *"), cron_workflow("report"))
    service = harness.started()

    assert "SpecError" in harness.store.history("default/broken").conditions
    assert scrape(service)[("cronwf_spec_errors_total", ())] == 1
    assert service.timer.keys() == ["default/report"]
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the valid one to run")


def test_a_removed_manifest_is_forgotten(harness: Harness) -> None:
    """Deleting a manifest removes the CronWorkflow from the timer, the store and the
    metrics, within a reload interval."""
    harness.write(cron_workflow("report"), file="report.yaml")
    harness.write(cron_workflow("kept"), file="kept.yaml")
    service = harness.started(reload_interval=0.1)
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the run to succeed")

    (harness.manifests / "report.yaml").unlink()
    wait_until(lambda: service.timer.keys() == ["default/kept"], "the reload")

    assert harness.store.inner.load("default/report") is None
    assert [g.name for g in service.gauges()] == ["kept"]
    assert not any(dict(labels).get("name") == "report" for _, labels in scrape(service))


class UnlistableFolders:
    """``os.scandir`` failing with ``EACCES`` for the folders in ``paths``, as for a folder
    whose permissions changed (the tests run as root, where ``chmod 000`` stops nothing)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: set[Path] = set()
        real_scandir = os.scandir

        def scandir(path: Any = ".") -> Iterator[os.DirEntry[Any]]:
            if not isinstance(path, int) and Path(path) in self.paths:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)


def test_a_manifest_folder_that_cannot_be_listed_forgets_nothing_and_makes_the_service_unready(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins a bug: a folder that could not be listed looked empty, so every CronWorkflow was
    forgotten and its history deleted. Now nothing changes while it cannot be listed: the
    history stays, the timer keeps its job and instants are decided and run; the service is
    unready and says why (``/readyz``, ``cronwf_manifest_errors``). Once it can be listed
    again, removing the file still forgets the CronWorkflow."""
    harness.write(cron_workflow("report"), file="report.yaml")
    failing = UnlistableFolders(monkeypatch)
    service = harness.started(reload_interval=0.05)
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the first run to succeed")

    failing.paths.add(harness.manifests)
    wait_until(lambda: not service.ready().ready, "the listing error to be noticed")

    assert harness.store.history("default/report").succeeded == 1
    assert service.timer.keys() == ["default/report"]
    assert service.timer.next_fire("default/report") is not None
    harness.clock.set(at(10, 0.1))
    service.on_due("default/report", [at(10)])
    wait_until(succeeded(harness.store, "default/report", 2), "a run while unlistable")
    readiness = service.ready()
    assert (readiness.sources_loaded, readiness.sources_listed) == (True, False)
    status, body = get(service, "/readyz")
    assert status == 503
    reply = json.loads(body)
    assert reply["sourcesListed"] is False
    assert reply["cronWorkflows"] == 1
    (error,) = reply["sourceErrors"]
    assert (error["kind"], error["file"]) == ("listing", str(harness.manifests))
    assert "cannot list the folder: permission denied" in error["message"]
    assert scrape(service)[("cronwf_manifest_errors", (("kind", "listing"),))] == 1

    failing.paths.clear()
    wait_until(lambda: service.ready().ready, "the folder to be listed again")
    assert scrape(service)[("cronwf_manifest_errors", (("kind", "listing"),))] == 0
    assert harness.store.history("default/report").succeeded == 2

    (harness.manifests / "report.yaml").unlink()
    wait_until(lambda: service.timer.keys() == [], "the removal to be applied")
    assert harness.store.inner.load("default/report") is None


def test_a_manifest_that_fails_to_load_is_reported_and_leaves_the_service_ready(
    harness: Harness,
) -> None:
    """A broken file keeps its last good CronWorkflows and disturbs no other: the service
    does its job, so it stays ready, and reports the file."""
    harness.write(cron_workflow("report"), file="report.yaml")
    broken = harness.manifests / "broken.yaml"
    broken.write_text("kind: CronWorkflow\nmetadata: [unclosed\n")
    service = harness.started()

    readiness = service.ready()
    assert readiness.ready
    assert [problem.file for problem in readiness.file_errors] == [str(broken)]
    reply = json.loads(get(service, "/readyz")[1])
    assert [(e["kind"], e["file"]) for e in reply["sourceErrors"]] == [("file", str(broken))]
    samples = scrape(service)
    assert samples[("cronwf_manifest_errors", (("kind", "file"),))] == 1
    assert samples[("cronwf_manifest_errors", (("kind", "listing"),))] == 0


def test_metrics_are_served_while_the_service_starts(harness: Harness) -> None:
    """HTTP is up before the lead is taken (taking it syncs and catches up every
    CronWorkflow, which takes a while on a large fleet), so Prometheus may scrape meanwhile.
    Pins a bug: the timer is started last, and until then ``Timer.next_fire`` raises
    ``AttributeError`` (APScheduler's pending jobs have no next run time), so the scrape
    fails."""
    harness.write(cron_workflow("report"))
    leadership = FakeLeadership(token=7)
    leadership.proceed = threading.Event()
    service = harness.service(leadership)
    starting = threading.Thread(target=service.start, name="test-service-start")
    starting.start()
    try:
        assert leadership.acquiring.wait(BOUND)
        try:
            status, body = get(service, "/metrics")
        except (http.client.HTTPException, ConnectionError) as error:
            pytest.fail(f"/metrics during start-up failed: {error!r}")
    finally:
        leadership.proceed.set()
        starting.join(BOUND)

    assert status == 200
    assert b'cronwf_next_schedule_time_seconds{name="report",namespace="default"}' in body


# --------------------------------------------------------------------------------------------
# Events held back while instants wait to be decided


def stopped_event(name: str) -> Stopped:
    return Stopped(time=at(0), key=f"default/{name}")


def test_events_wait_while_instants_wait_and_pass_on_in_order_when_released() -> None:
    """Log lines and metrics of a burst wait for its Workflows: every event emitted while
    the timer has instants waiting is held, then each observer gets all of them in order."""
    busy = [True]
    seen: list[tuple[str, str]] = []
    fanout = _Fanout(
        [lambda e: seen.append(("log", e.key)), lambda e: seen.append(("metrics", e.key))],
        busy=lambda: busy[0],
    )

    fanout.emit(stopped_event("a"))
    fanout.emit(stopped_event("b"))
    assert seen == []
    fanout.release()

    assert seen == [
        ("log", "default/a"),
        ("metrics", "default/a"),
        ("log", "default/b"),
        ("metrics", "default/b"),
    ]
    fanout.release()
    assert len(seen) == 4


def test_an_event_emitted_when_nothing_waits_passes_on_after_those_held() -> None:
    busy = [True]
    seen: list[str] = []
    fanout = _Fanout([lambda e: seen.append(e.key)], busy=lambda: busy[0])
    fanout.emit(stopped_event("held"))
    busy[0] = False

    fanout.emit(stopped_event("now"))

    assert seen == ["default/held", "default/now"]


def test_events_are_held_back_only_so_many() -> None:
    seen: list[str] = []
    fanout = _Fanout([lambda e: seen.append(e.key)], busy=lambda: True)
    for n in range(_HELD_AT_MOST + 1):
        fanout.emit(stopped_event(f"cron-{n}"))
    assert len(seen) == _HELD_AT_MOST + 1
    assert seen[-1] == f"default/cron-{_HELD_AT_MOST}"


def test_a_failing_observer_does_not_keep_the_event_from_the_others() -> None:
    seen: list[str] = []

    def failing(event: Event) -> None:
        raise RuntimeError("boom")

    fanout = _Fanout([failing, lambda e: seen.append(e.key)], busy=lambda: False)
    fanout.emit(stopped_event("a"))
    assert seen == ["default/a"]


class Cycle:
    """Garbage that only the collector frees."""

    def __init__(self) -> None:
        self.me = self


def test_an_idle_worker_collects_garbage_when_enough_was_made_and_nothing_is_due_soon(
    harness: Harness,
) -> None:
    harness.write(cron_workflow("leap"))  # next due on a leap day: far away
    service = harness.started()
    gc.collect()
    cycle = Cycle()
    collected = weakref.ref(cycle)
    del cycle

    service._on_idle()
    assert collected() is not None, "collected after a handful of allocations"

    made = [[] for _ in range(12_000)]
    service._on_idle()
    assert collected() is None
    assert len(made) == 12_000


def test_the_collector_is_paused_while_any_batch_is_decided(harness: Harness) -> None:
    """Overlapping batches of several workers: collection resumes when the last one ends,
    and only if it was on before."""
    service = harness.service()
    assert gc.isenabled()
    with service._collector_paused():
        assert not gc.isenabled()
        with service._collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()

    gc.disable()
    try:
        with service._collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_batch_from_the_timer_is_decided_with_the_collector_paused(harness: Harness) -> None:
    harness.write(cron_workflow("paused"))
    service = harness.started()
    seen: list[bool] = []
    original = service.engine.tick_many

    def tick_many(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    service.engine.tick_many = tick_many  # type: ignore[method-assign]
    service.on_due_many([Due("default/paused", (at(5),), at(5))])

    assert seen == [False]
    assert gc.isenabled()


# --------------------------------------------------------------------------------------------
# Runs nobody here can observe; an empty store; a sink that cannot spawn (DESIGN §9)


def reports_of(store: FlakyStore) -> RedisRunReports:
    """The run reports queue on the same (in-process) Redis as the store."""
    return RedisRunReports(store.inner._client)


def test_a_run_that_ends_after_its_replica_was_deposed_is_reported_and_counted_once(
    harness: Harness,
) -> None:
    """Issue: runs orphaned by a failover were never counted (12 of 322 in one session): a
    paused leader's runs ended after another took over, and their completion was refused."""
    harness.write(cron_workflow("report", script="sleep 0.5"))
    reports = reports_of(harness.store)
    deposed_lock = FakeLeadership(token=7)
    first = harness.started(deposed_lock, reports=reports)
    harness.clock.set(at(5, 0.1))
    first.on_due("default/report", [at(5)])
    assert harness.log(first, "report", at(5)).exists()
    deposed_lock.lose()
    wait_until(lambda: not first.is_leader(), "the first replica to step down")

    wait_until(lambda: reports.take(10)[0] == 1, "the run's end to be reported")
    assert harness.store.history("default/report").succeeded == 0
    second = harness.started(
        FakeLeadership(token=8), reports=reports, state_dir=harness.tmp_path / "b"
    )

    wait_until(succeeded(harness.store, "default/report"), "the leader to count the report")
    history = harness.store.history("default/report")
    assert (history.succeeded, history.active, history.intents) == (1, (), {})
    wait_until(lambda: reports.take(10)[0] == 0, "the report to be dropped once counted")
    assert second.is_leader()


def test_an_active_run_nobody_can_observe_is_lost_after_the_bound(harness: Harness) -> None:
    """A run of a replica that died (its own state folder): no process here runs it and no
    report comes. It does not stay active for ever (a Forbid CronWorkflow would never run
    again): after --lost-after, or the run's own time limit, it is lost."""
    harness.write(cron_workflow("report", concurrencyPolicy="Forbid"))
    orphan = workflow_name("report", at(5))
    seed = History(cursor=at(5), signature=EVERY_FIVE_ON_LEAP_DAY, active=(orphan,))
    harness.store.inner.apply("default/report", seed, lambda h: h)
    harness.clock.set(at(5 + 10 + 1.5))  # the run's limit (10 s) + 1 min grace < 15 min bound

    service = harness.started(FakeLeadership(token=7), lost_after=900.0)
    assert harness.store.history("default/report").active == (orphan,)
    harness.clock.set(at(5 + 15, 1))
    service._next_sweep = 0.0

    wait_until(lambda: harness.store.history("default/report").active == (), "the run lost")
    history = harness.store.history("default/report")
    assert (history.lost, history.failed, history.succeeded) == (1, 0, 0)
    records = {r.scheduled_at: r for r in harness.store.runs("default/report")}
    assert (records[at(5)].decision, records[at(5)].workflow) == ("Lost", orphan)
    assert (
        scrape(service)[
            (
                "cronwf_lost_total",
                (("name", "report"), ("namespace", "default"), ("reason", "OutcomeUnknown")),
            )
        ]
        == 1
    )


def test_a_run_of_this_replica_is_never_lost_while_it_runs(harness: Harness) -> None:
    harness.write(cron_workflow("report", script="sleep 2"))
    service = harness.started(FakeLeadership(token=7), lost_after=0.0)
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    harness.clock.set(at(60))  # far past any bound but the run's own limit
    service._next_sweep = 0.0
    time.sleep(0.3)  # a sweep happens within a housekeeping round (0.1 s)

    assert harness.store.history("default/report").lost == 0
    wait_until(succeeded(harness.store, "default/report"), "the run to end and be counted")


def test_an_empty_store_is_reseeded_from_the_run_logs(harness: Harness) -> None:
    """Issue: an empty Redis reset some counters, kept stale ones, and silently dropped the
    instant at the restart. Every CronWorkflow is now re-seeded from what the state folder
    knows: the newest instant run (the cursor) and the runs whose end is logged."""
    harness.write(cron_workflow("report", startingDeadlineSeconds=600))
    runs = harness.tmp_path / "state" / "runs" / "default"
    runs.mkdir(parents=True)
    for minute, phase in ((0, "Succeeded"), (5, "Failed"), (10, "Succeeded")):
        name = workflow_name("report", at(minute))
        (runs / f"{name}.log").write_text(f"# workflow default/{name}\n# {phase}: exit code 0\n")
    harness.clock.set(at(16))

    harness.started(FakeLeadership(token=7))

    history = harness.store.history("default/report")
    assert (history.succeeded, history.failed) == (2, 1)
    assert history.last_scheduled_time == at(15)  # 15 was caught up: inside the deadline
    assert history.cursor == at(15)


def test_a_service_whose_every_spawn_fails_unexpectedly_is_not_ready(harness: Harness) -> None:
    """Issue: an OSError of the local executor (an unwritable state folder) abandoned the
    batch and /readyz stayed 200 with nothing firing."""
    harness.write(cron_workflow("report"), cron_workflow("backup"))
    service = harness.started(FakeLeadership(token=7))
    runs = harness.tmp_path / "state" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "default").write_text("not a folder: every spawn fails\n")

    for minute in (5, 10):
        harness.clock.set(at(minute, 0.1))
        service.on_due_many(
            [Due(key, (at(minute),), at(minute)) for key in ("default/report", "default/backup")]
        )

    state = service.ready()
    assert not state.ready
    assert "sinkError" in state.detail
    assert harness.store.history("default/report").failed == 2
    (runs / "default").unlink()
    harness.clock.set(at(15, 0.1))
    service.on_due("default/report", [at(15)])
    assert service.ready().ready


def test_a_graceful_shutdown_leaves_its_stopped_runs_uncounted_and_not_active(
    harness: Harness,
) -> None:
    """So that a Forbid CronWorkflow runs again after a restart (as a deleted Workflow)."""
    harness.write(cron_workflow("report", script="sleep 5"))
    service = harness.started(FakeLeadership(token=7))
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    assert harness.store.history("default/report").active

    service.shutdown()

    history = harness.store.history("default/report")
    assert (history.active, history.succeeded, history.failed) == ((), 0, 0)


def test_a_suspended_cronworkflow_across_a_restart_is_skipped_never_missed(
    harness: Harness,
) -> None:
    """Issue: after any gap every instant of a suspended CronWorkflow was recorded Missed and
    paged CronWorkflowMissedSchedule."""
    harness.write(cron_workflow("paused", suspend=True))
    seed = History(cursor=at(0), signature=EVERY_FIVE_ON_LEAP_DAY)
    harness.store.inner.apply("default/paused", seed, lambda h: h)
    harness.clock.set(at(21))

    service = harness.started(FakeLeadership(token=7))

    runs = harness.store.runs("default/paused")
    assert [(r.decision, r.reason) for r in runs] == [("Skipped", "Suspended")] * 4
    assert harness.store.history("default/paused").cursor == at(20)
    metrics = scrape(service)
    missed = sum(v for (name, _), v in metrics.items() if name == "cronwf_missed_total")
    assert missed == 0


def test_a_tick_fired_while_a_new_lead_syncs_waits_for_the_re_seeded_history(
    harness: Harness,
) -> None:
    """A tick decided before the sync would create the history from nothing, and the sync
    would then keep it instead of re-seeding it from the run logs (counters at zero)."""
    harness.write(cron_workflow("report", startingDeadlineSeconds=600))
    runs = harness.tmp_path / "state" / "runs" / "default"
    runs.mkdir(parents=True)
    for minute in (0, 5):
        name = workflow_name("report", at(minute))
        (runs / f"{name}.log").write_text(f"# workflow default/{name}\n# Succeeded: exit code 0\n")
    harness.clock.set(at(10, 0.1))
    entered, gate = threading.Event(), threading.Event()

    def hold_the_sync(key: str) -> None:
        if key == "default/report" and not entered.is_set():
            entered.set()
            gate.wait(BOUND)

    harness.store.before_load = hold_the_sync
    service = harness.service(FakeLeadership(token=7))
    starting = threading.Thread(target=service.start)
    starting.start()
    assert entered.wait(BOUND), "the sync never read the history"
    ticking = threading.Thread(target=service.on_due, args=("default/report", [at(10)]))
    ticking.start()
    ticking.join(0.3)
    assert ticking.is_alive(), "the tick did not wait for the sync"
    assert harness.store.inner.load("default/report") is None

    gate.set()
    starting.join(BOUND)
    ticking.join(BOUND)

    history = harness.store.history("default/report")
    assert history.succeeded >= 2  # the two runs of the logs, and maybe the one of at(10)
    assert history.cursor == at(10)
    assert harness.log(service, "report", at(10)).exists()


def test_the_local_executor_run_as_root_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scheduler.runtime.service"):
        assert warn_if_root(1000) is False
        assert caplog.records == []
        assert warn_if_root(0) is True
    (record,) = caplog.records
    assert "whoever can write the manifests folder runs commands as root" in record.getMessage()
