"""The timer: APScheduler 3 wakes the service at the exact instants of each CronWorkflow.

:class:`ScheduleTrigger` is pure and tested with explicit times: it must give exactly the
instants of :class:`policies.schedule.Schedule` (DST, ``@every`` epoch alignment), as UTC.
:class:`Timer` is tested with a real ``BackgroundScheduler`` and ``@every 1s`` schedules: the
callback must receive the scheduled instants themselves (whole seconds), each once, never
before they are due. Every wait is bounded.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from policies.schedule import Schedule
from scheduler.adapters.timer import Due, ScheduleTrigger, Timer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday; a multiple of 90 s since the epoch
BOUND = 5.0  # seconds: the longest any test waits for a delivery
YEARLY = Schedule(["0 0 1 1 *"])


def trigger(*expressions: str, timezone: str = "") -> ScheduleTrigger:
    return ScheduleTrigger(Schedule(expressions, timezone))


# --------------------------------------------------------------------------------------------
# ScheduleTrigger


def test_a_new_job_fires_at_the_next_instant_in_utc() -> None:
    fired = trigger("*/5 * * * *").get_next_fire_time(None, T0 + timedelta(minutes=2, seconds=30))

    assert fired == T0 + timedelta(minutes=5)
    assert fired is not None
    assert fired.tzinfo is UTC


def test_an_instant_in_the_very_second_a_job_is_added_is_not_lost() -> None:
    """A job added at 09:05:00.4 still fires for 09:05:00 (at once): the tick of that instant
    must not be skipped because the job was added a fraction of a second after it."""
    five_past = T0 + timedelta(minutes=5)
    every_five = trigger("*/5 * * * *")

    assert every_five.get_next_fire_time(None, five_past) == five_past
    assert every_five.get_next_fire_time(None, five_past + timedelta(seconds=0.4)) == five_past
    assert every_five.get_next_fire_time(
        None, five_past + timedelta(seconds=1)
    ) == five_past + timedelta(minutes=5)


def test_after_a_fire_the_next_instant_is_strictly_later() -> None:
    every_five = trigger("*/5 * * * *")
    now = T0 + timedelta(minutes=5, seconds=1)

    assert every_five.get_next_fire_time(T0, now) == T0 + timedelta(minutes=5)
    assert every_five.get_next_fire_time(T0 + timedelta(minutes=5), now) == T0 + timedelta(
        minutes=10
    )


def test_dst_spring_forward_skips_the_missing_local_time() -> None:
    """Argo's example: ``0 2 * * *`` in Los Angeles first runs on 2020-03-09 (02:00 PDT), as
    02:00 does not exist on 2020-03-08."""
    daily_at_two = trigger("0 2 * * *", timezone="America/Los_Angeles")
    before = datetime(2020, 3, 8, 8, 0, tzinfo=UTC)  # 2020-03-08 00:00 PST

    assert daily_at_two.get_next_fire_time(None, before) == datetime(2020, 3, 9, 9, 0, tzinfo=UTC)


def test_dst_fall_back_fires_twice_at_the_repeated_local_time() -> None:
    """Argo's example: ``59 1 * * *`` runs at 01:59 PDT and again at 01:59 PST on
    2020-11-01."""
    daily = trigger("59 1 * * *", timezone="America/Los_Angeles")
    pdt = datetime(2020, 11, 1, 8, 59, tzinfo=UTC)
    pst = datetime(2020, 11, 1, 9, 59, tzinfo=UTC)

    assert daily.get_next_fire_time(None, datetime(2020, 11, 1, 7, 0, tzinfo=UTC)) == pdt
    assert daily.get_next_fire_time(pdt, pdt) == pst
    assert daily.get_next_fire_time(pst, pst) == datetime(2020, 11, 2, 9, 59, tzinfo=UTC)


def test_every_is_aligned_on_the_epoch_not_on_the_moment_the_job_is_added() -> None:
    """``@every 90s`` fires at multiples of 90 s of Unix time, whenever the job starts."""
    every = trigger("@every 90s")

    assert every.get_next_fire_time(None, T0 + timedelta(seconds=37)) == T0 + timedelta(seconds=90)
    assert every.get_next_fire_time(T0 + timedelta(seconds=90), T0) == T0 + timedelta(seconds=180)
    assert int(T0.timestamp()) % 90 == 0


def test_several_schedules_fire_at_the_union_of_their_instants() -> None:
    both = trigger("0 * * * *", "30 9 * * *")

    assert both.get_next_fire_time(T0, T0) == T0 + timedelta(minutes=30)
    assert both.get_next_fire_time(T0 + timedelta(minutes=30), T0) == T0 + timedelta(hours=1)


def test_a_schedule_that_never_fires_has_no_next_fire_time() -> None:
    """February 30th never comes: the job has no next run (APScheduler then removes it)."""
    assert trigger("0 0 30 2 *").get_next_fire_time(None, T0) is None


def test_the_trigger_describes_its_schedules() -> None:
    assert str(trigger("@every 90s", "0 2 * * *")) == "schedule['@every 90s', '0 2 * * *']"


# --------------------------------------------------------------------------------------------
# Timer, with a real APScheduler


class Deliveries:
    """The timer's callback: records each (key, instant) with the moment it arrived."""

    def __init__(self, slow_first: float = 0.0) -> None:
        self.received: list[tuple[str, datetime, datetime]] = []
        self._changed = threading.Condition()
        self._slow_first = slow_first

    def __call__(self, dues: Sequence[Due]) -> None:
        arrived = datetime.now(UTC)
        assert dues, "an empty batch"
        with self._changed:
            first = not self.received
            for due in dues:
                assert due.fired_at <= arrived
                self.received.extend((due.key, instant, arrived) for instant in due.instants)
            self._changed.notify_all()
        if first and self._slow_first:
            time.sleep(self._slow_first)

    def instants(self, key: str) -> list[datetime]:
        with self._changed:
            return [instant for k, instant, _ in self.received if k == key]

    def wait(self, key: str, count: int, timeout: float = BOUND) -> list[datetime]:
        """The instants of ``key``, once there are ``count`` (fails after ``timeout``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.instants(key)) >= count, timeout):
                pytest.fail(f"{key}: fewer than {count} deliveries in {timeout}s: {self.received}")
        return self.instants(key)


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries()


@pytest.fixture
def timer(deliveries: Deliveries) -> Iterator[Timer]:
    timer = Timer(deliveries, workers=2)
    yield timer
    timer.shutdown()


def assert_exact_consecutive_seconds(instants: list[datetime]) -> None:
    assert instants, "no instant delivered"
    for instant in instants:
        assert instant.tzinfo is UTC
        assert instant.microsecond == 0, f"{instant} is not a whole second"
    assert instants == sorted(set(instants)), f"not ascending and unique: {instants}"
    gaps = {later - earlier for earlier, later in itertools.pairwise(instants)}
    assert gaps <= {timedelta(seconds=1)}, f"not consecutive: {instants}"


def test_every_second_delivers_each_whole_second_instant_once(
    timer: Timer, deliveries: Deliveries
) -> None:
    """With ``@every 1s`` the callback receives the key and the scheduled instants: whole
    seconds, in UTC, consecutive, each once, and never before the instant is due."""
    timer.set("default/heartbeat", Schedule(["@every 1s"]))
    timer.start()

    instants = deliveries.wait("default/heartbeat", 3)

    assert_exact_consecutive_seconds(instants)
    for key, instant, arrived in deliveries.received:
        assert key == "default/heartbeat"
        assert arrived >= instant, f"{instant} delivered early, at {arrived}"


def test_a_slow_callback_delays_deliveries_but_loses_none() -> None:
    """Instants are never dropped for lateness or because an earlier callback still runs:
    with one worker and a first callback that takes 2.2 s, the next instants arrive more than
    a second late, but all of them, each once."""
    slow = Deliveries(slow_first=2.2)
    timer = Timer(slow, workers=1)
    try:
        timer.set("default/heartbeat", Schedule(["@every 1s"]))
        timer.start()
        instants = slow.wait("default/heartbeat", 3)
    finally:
        timer.shutdown()

    assert_exact_consecutive_seconds(instants)
    lateness = max(arrived - instant for _, instant, arrived in slow.received)
    assert lateness >= timedelta(seconds=1)


def run_until_delivered(
    timer: Timer, deliveries: Deliveries, keys: list[str], schedule: str, count: int
) -> None:
    """Fire every key on ``schedule`` until each got ``count`` instants, then stop."""
    try:
        for key in keys:
            timer.set(key, Schedule([schedule]))
        timer.start()
        for key in keys:
            deliveries.wait(key, count)
    finally:
        timer.shutdown()


def test_jobs_due_together_arrive_in_batches_each_instant_once() -> None:
    """Forty CronWorkflows due every second with one worker whose first call takes 1.2 s:
    meanwhile the others queue up, and the worker then takes them as one batch (at most
    ``batch`` each); every key still gets each instant once, in order."""
    keys = [f"default/cron-{n}" for n in range(40)]
    batches: list[int] = []
    slow = Deliveries(slow_first=1.2)

    def deliveries(dues: Sequence[Due]) -> None:
        batches.append(len(dues))
        slow(dues)

    run_until_delivered(Timer(deliveries, workers=1, batch=25), slow, keys, "@every 1s", 2)

    assert max(batches) == 25, f"batch sizes: {batches}"
    for key in keys:
        assert_exact_consecutive_seconds(slow.instants(key))


def test_a_worker_takes_its_share_of_the_jobs_waiting() -> None:
    """With four idle workers, a burst is shared among them rather than taken by one."""
    keys = [f"default/cron-{n}" for n in range(200)]
    threads: set[str] = set()
    deliveries = Deliveries()

    def record(dues: Sequence[Due]) -> None:
        threads.add(threading.current_thread().name)
        time.sleep(0.05)
        deliveries(dues)

    run_until_delivered(Timer(record, workers=4), deliveries, keys, "@every 2s", 1)

    assert len(threads) > 1, f"one worker took the whole burst: {threads}"


def test_a_worker_calls_on_idle_once_nothing_fired_is_left_waiting() -> None:
    """Forty CronWorkflows due every second, one worker whose first call takes 1.2 s: the
    backlog is worked off in batches without a pause for the idle callback, which comes once
    the queue is empty (and sees it empty)."""
    keys = [f"default/cron-{n}" for n in range(40)]
    slow = Deliveries(slow_first=1.2)
    steps: list[tuple[str, int]] = []
    timers: list[Timer] = []

    def deliveries(dues: Sequence[Due]) -> None:
        steps.append(("batch", len(dues)))
        slow(dues)

    idled = threading.Event()

    def idle() -> None:
        steps.append(("idle", timers[0].waiting()))
        idled.set()

    timer = Timer(deliveries, workers=1, batch=25, on_idle=idle)
    timers.append(timer)
    try:
        for key in keys:
            timer.set(key, Schedule(["@every 1s"]))
        timer.start()
        for key in keys:
            slow.wait(key, 2)
        assert idled.wait(BOUND)
    finally:
        timer.shutdown()

    first_idle = steps.index(next(step for step in steps if step[0] == "idle"))
    backlog = steps[1:first_idle]
    assert len(backlog) >= 2, f"steps: {steps}"
    assert sum(size for _, size in backlog) >= len(keys) - 1, f"steps: {steps}"
    assert all(waiting == 0 for kind, waiting in steps if kind == "idle"), f"steps: {steps}"


def test_nothing_waits_once_the_timer_is_shut_down() -> None:
    """Held-back events must not wait for a worker that is gone: after shutdown nothing is
    waiting (the workers' stop markers are not jobs)."""
    timer = Timer(Deliveries(), workers=2)
    timer.start()
    timer.shutdown(wait=False)
    assert timer.waiting() == 0


def test_a_failing_idle_callback_leaves_the_worker_running() -> None:
    deliveries = Deliveries()

    def idle() -> None:
        raise RuntimeError("boom")

    run_until_delivered(
        Timer(deliveries, workers=1, on_idle=idle),
        deliveries,
        ["default/heartbeat"],
        "@every 1s",
        3,
    )


def test_workers_and_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Timer(Deliveries(), workers=0)
    with pytest.raises(ValueError, match="at least 1"):
        Timer(Deliveries(), batch=0)


def test_remove_stops_the_deliveries_of_that_key_only(timer: Timer, deliveries: Deliveries) -> None:
    """After ``remove`` no instant later than the removal is delivered for the key, while the
    other keys keep firing; removing an unknown key is harmless."""
    timer.set("default/removed", Schedule(["@every 1s"]))
    timer.set("default/kept", Schedule(["@every 1s"]))
    timer.start()
    deliveries.wait("default/removed", 1)

    timer.remove("default/removed")
    removed_at = datetime.now(UTC)
    timer.remove("default/never-added")
    kept = len(deliveries.wait("default/kept", 1))
    deliveries.wait("default/kept", kept + 2)  # two more seconds went by

    assert all(instant <= removed_at for instant in deliveries.instants("default/removed"))
    assert timer.keys() == ["default/kept"]
    assert timer.next_fire("default/removed") is None


def test_set_replaces_the_schedule_of_a_key(timer: Timer, deliveries: Deliveries) -> None:
    """Setting a key again replaces its job (one job per CronWorkflow): the old instants stop
    and ``next_fire`` gives the new schedule's next instant."""
    timer.set("default/changed", Schedule(["@every 1s"]))
    timer.set("default/clock", Schedule(["@every 1s"]))
    timer.start()
    deliveries.wait("default/changed", 1)

    timer.set("default/changed", YEARLY)
    replaced_at = datetime.now(UTC)
    ticks = len(deliveries.wait("default/clock", 1))
    deliveries.wait("default/clock", ticks + 2)

    assert all(instant <= replaced_at for instant in deliveries.instants("default/changed"))
    assert sorted(timer.keys()) == ["default/changed", "default/clock"]
    assert timer.next_fire("default/changed") == datetime(replaced_at.year + 1, 1, 1, tzinfo=UTC)


def test_next_fire_is_the_next_instant_in_utc_or_none(timer: Timer) -> None:
    timer.set("default/yearly", Schedule(["0 0 1 1 *"], "Europe/Paris"))
    timer.start()
    now = datetime.now(UTC)

    following = timer.next_fire("default/yearly")

    expected = Schedule(["0 0 1 1 *"], "Europe/Paris").next_after(now)
    assert expected is not None
    assert following == expected
    assert following is not None
    assert following.tzinfo is UTC
    assert timer.next_fire("default/unknown") is None


def test_next_due_is_the_earliest_instant_of_any_job(timer: Timer) -> None:
    assert timer.next_due() is None
    timer.set("default/yearly", YEARLY)
    timer.set("default/daily", Schedule(["0 3 * * *"]))
    timer.start()

    assert timer.next_due() == timer.next_fire("default/daily")


def test_next_fire_is_known_before_the_timer_starts(timer: Timer) -> None:
    """The service registers every CronWorkflow before it starts the timer, and its metrics
    (which ask ``next_fire``) are served meanwhile. Pins a bug: before ``start`` APScheduler's
    pending job has no ``next_run_time`` yet and ``next_fire`` raises ``AttributeError``."""
    timer.set("default/yearly", YEARLY)

    before_start = timer.next_fire("default/yearly")

    timer.start()
    assert before_start == timer.next_fire("default/yearly")


def test_a_failing_callback_does_not_stop_the_timer() -> None:
    """The callback is expected to handle its errors; if it raises anyway, later instants are
    still delivered."""
    calls: list[datetime] = []
    enough = threading.Event()

    def failing(dues: Sequence[Due]) -> None:
        calls.extend(instant for due in dues for instant in due.instants)
        if len(calls) >= 2:
            enough.set()
        raise RuntimeError("callback bug")

    timer = Timer(failing, workers=1)
    try:
        timer.set("default/failing", Schedule(["@every 1s"]))
        timer.start()
        assert enough.wait(BOUND), f"deliveries stopped after a failure: {calls}"
    finally:
        timer.shutdown()
    assert_exact_consecutive_seconds(calls[:2])


def test_shutdown_is_idempotent_and_safe_before_start() -> None:
    timer = Timer(Deliveries())
    timer.shutdown()
    timer.start()
    timer.shutdown()
    timer.shutdown()
