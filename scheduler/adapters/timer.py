"""The timer: APScheduler 3 wakes the service at each scheduled instant of each CronWorkflow.

APScheduler is used for what it is good at — one sorted job store, one thread sleeping until
the next due job, thread-pool execution — and nothing else. Two adaptations make it exact:

* :class:`ScheduleTrigger` asks :class:`policies.schedule.Schedule` for the next instant, so
  the timer fires at precisely the instants that ``cronwf next`` prints (DST, ``@every``
  epoch alignment, several schedules) rather than at APScheduler's own cron interpretation.
* :class:`TickExecutor` hands the job the *scheduled* instants APScheduler computed
  (``run_times``), not just "now": the engine must receive the exact instant to name the
  Workflow and to move the cursor. Late instants are not dropped (no misfire grace): the
  callback decides what lateness means (the runtime routes late instants through catch-up).
  Jobs due together reach the callback together, in batches (:class:`Due`), so that the
  engine can share the store's round trips among them.

One job per CronWorkflow, keyed by ``namespace/name``. The timer holds no state of its own
worth keeping: after a restart the runtime rebuilds it from the catalog and catch-up covers
the gap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from queue import Empty, SimpleQueue
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from policies.schedule import Schedule

__all__ = ["DEFAULT_BATCH", "Due", "DueCallback", "ScheduleTrigger", "TickExecutor", "Timer"]

log = logging.getLogger(__name__)

_ONE_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNLIMITED_INSTANCES = 1_000_000
DEFAULT_BATCH = 10_000
"""Jobs a worker takes at most at once (see :class:`TickExecutor`)."""


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger whose instants are those of a :class:`Schedule`.

    APScheduler asks twice for the instant after the one it just fired (once to find the run
    times, once for the next run), so the last answer is kept: when a fleet is due at once,
    the scheduler thread that fires every job is the bottleneck.
    """

    __slots__ = ("_last", "schedule")

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._last: tuple[int, datetime | None] | None = None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # A new job starts one second back so that an instant falling in the very second the
        # job is added is not lost; the cursor makes a second look at it harmless.
        after = previous_fire_time if previous_fire_time is not None else now - _ONE_SECOND
        whole = (after - _EPOCH) // _ONE_SECOND
        last = self._last
        if last is not None and last[0] == whole:
            return last[1]
        found = self.schedule.next_after_ts(whole)
        following = None if found is None else _EPOCH + timedelta(seconds=found)
        self._last = (whole, following)
        return following

    def __str__(self) -> str:
        return f"schedule{list(self.schedule.expressions)!r}"


@dataclass(frozen=True, slots=True)
class Due:
    """The instants of one CronWorkflow that the timer fired together."""

    key: str
    instants: tuple[datetime, ...]
    """Ascending, in UTC."""
    fired_at: datetime
    """When the timer fired them: tells a stalled timer from busy workers."""


DueCallback = Callable[[Sequence[Due]], None]
"""Called with the jobs due, a batch at a time."""

_Item = tuple[Any, Due]
"""(the job, what it is due for)."""


class TickExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs due jobs in worker threads, handing each worker a batch of them.

    A job's callable receives a sequence of :class:`Due` (the job's id is the key): the exact
    instants APScheduler computed, not just "now". A worker takes the first job waiting and
    as many of the others as its share (those waiting divided among the workers, at most
    ``batch``), so that when a whole fleet is due at one instant each batch shares the
    store's round trips, and when one job is due it runs at once, alone. A worker that finds
    nothing waiting after a batch calls ``on_idle``: work that can wait for the fleet to be
    decided (log lines, metrics) is done then.

    The engine spawns every Workflow of a batch before it records any, so a worker taking
    everything waiting (up to :data:`DEFAULT_BATCH`, a whole fleet of ten thousand) gets the
    Workflows of a burst spawned before any of its bookkeeping: with batches of 500, the
    records of one batch delayed the spawns of the next, and a burst of 1,770 took twice as
    long to spawn.
    """

    def __init__(
        self,
        workers: int,
        batch: int = DEFAULT_BATCH,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        if workers < 1 or batch < 1:
            raise ValueError(f"workers and batch must be at least 1, got {workers}, {batch}")
        self._batch = batch
        self._on_idle = on_idle
        self._stopping = False
        self._queue: SimpleQueue[_Item | None] = SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"cronwf-tick-{n}", daemon=True)
            for n in range(workers)
        ]

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        for worker in self._workers:
            worker.start()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        instants = tuple(t.astimezone(UTC) for t in run_times)
        self._queue.put((job, Due(job.id, instants, datetime.now(UTC))))

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            share = min(self._batch, 1 + self._queue.qsize() // len(self._workers))
            stop = False
            while len(items) < share:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is None:
                    stop = True  # this worker's end: run what it took first
                    break
                items.append(item)
            self._run(items)
            if self._on_idle is not None and self._queue.empty():
                try:
                    self._on_idle()
                except Exception:  # the callback's own failure must not end the worker
                    log.exception("the timer's idle callback failed")
            if stop:
                return

    def _run(self, items: Sequence[_Item]) -> None:
        by_callable: dict[Any, list[_Item]] = {}
        for job, due in items:
            by_callable.setdefault(job.func, []).append((job, due))
        for func, group in by_callable.items():
            try:
                func([due for _, due in group])
            except Exception as error:  # the callback logs; this keeps the workers alive
                self._run_job_error(group[0][0].id, error, error.__traceback__)
                for job, _ in group[1:]:
                    self._run_job_success(job.id, [])
            else:
                for job, _ in group:
                    self._run_job_success(job.id, [])

    def waiting(self) -> int:
        """How many fired jobs wait for a worker (0 once shut down: nothing more comes)."""
        return 0 if self._stopping else self._queue.qsize()

    def shutdown(self, wait: bool = True) -> None:
        """Jobs already submitted still run; then each worker ends."""
        self._stopping = True
        for _ in self._workers:
            self._queue.put(None)
        if wait:
            for worker in self._workers:
                if worker.is_alive():
                    worker.join()


class Timer:
    """One APScheduler job per CronWorkflow, calling ``on_due(dues)`` with batches of
    :class:`Due` (at most ``batch`` each) from ``workers`` threads, and ``on_idle()`` when a
    worker finds nothing left waiting."""

    def __init__(
        self,
        on_due: DueCallback,
        workers: int = 1,
        batch: int = DEFAULT_BATCH,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._on_due = on_due
        self._executor = TickExecutor(workers, batch, on_idle)
        self._jobs = MemoryJobStore()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": self._jobs},
            executors={"default": self._executor},
            job_defaults={
                "coalesce": False,
                "misfire_grace_time": None,
                "max_instances": _UNLIMITED_INSTANCES,
            },
        )

    def start(self) -> None:
        self._scheduler.start()

    def waiting(self) -> int:
        """How many fired CronWorkflows wait for a worker (0 when none is due)."""
        return self._executor.waiting()

    def next_due(self) -> datetime | None:
        """The earliest instant a job has yet to fire (in the past while a burst is being
        fired); None without jobs."""
        try:
            following: datetime | None = self._jobs.get_next_run_time()
        except IndexError:  # the last job was removed by another thread meanwhile
            return None
        return following

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def set(self, key: str, schedule: Schedule) -> None:
        """Fire ``key`` at the instants of ``schedule`` (replacing any previous schedule)."""
        self._scheduler.add_job(
            self._due,
            trigger=ScheduleTrigger(schedule),
            id=key,
            name=key,
            replace_existing=True,
        )

    def _due(self, dues: Sequence[Due] = ()) -> None:
        # The default only satisfies APScheduler's signature check: TickExecutor always
        # passes the batch.
        self._on_due(dues)

    def remove(self, key: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(key)

    def next_fire(self, key: str) -> datetime | None:
        """The next instant ``key`` fires at, if it has a job."""
        job = self._scheduler.get_job(key)
        if job is None:
            return None
        # A job added before the scheduler started has no next_run_time yet.
        next_run: datetime | None = getattr(job, "next_run_time", None)
        if next_run is None:
            next_run = job.trigger.get_next_fire_time(None, datetime.now(UTC))
        return None if next_run is None else next_run.astimezone(UTC)

    def keys(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]
