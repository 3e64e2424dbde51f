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

One job per CronWorkflow, keyed by ``namespace/name``. The timer holds no state of its own
worth keeping: after a restart the runtime rebuilds it from the catalog and catch-up covers
the gap.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from policies.schedule import Schedule

__all__ = ["DueCallback", "ScheduleTrigger", "TickExecutor", "Timer"]

log = logging.getLogger(__name__)

DueCallback = Callable[[str, Sequence[datetime], datetime | None], None]
"""Called with a CronWorkflow key, its due instants (ascending, UTC) and when the timer fired
them (which tells a stalled timer from a busy thread pool)."""

_ONE_SECOND = timedelta(seconds=1)
_UNLIMITED_INSTANCES = 1_000_000


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger whose instants are those of a :class:`Schedule`."""

    __slots__ = ("schedule",)

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # A new job starts one second back so that an instant falling in the very second the
        # job is added is not lost; the cursor makes a second look at it harmless.
        after = previous_fire_time if previous_fire_time is not None else now - _ONE_SECOND
        found = self.schedule.next_after(after)
        return None if found is None else found.astimezone(UTC)

    def __str__(self) -> str:
        return f"schedule{list(self.schedule.expressions)!r}"


class TickExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs a job's callback with the exact instants it was due at, in a thread pool."""

    def __init__(self, workers: int) -> None:
        super().__init__()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cronwf-tick")

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        instants = [t.astimezone(UTC) for t in run_times]
        fired_at = datetime.now(UTC)

        def run() -> None:
            try:
                job.func(*job.args, instants, fired_at)
            except Exception as error:  # the callback logs; this keeps the executor alive
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, [])

        self._pool.submit(run)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)


class Timer:
    """One APScheduler job per CronWorkflow, calling ``on_due(key, instants)``."""

    def __init__(self, on_due: DueCallback, workers: int = 8) -> None:
        self._on_due = on_due
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": TickExecutor(workers)},
            job_defaults={
                "coalesce": False,
                "misfire_grace_time": None,
                "max_instances": _UNLIMITED_INSTANCES,
            },
        )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def set(self, key: str, schedule: Schedule) -> None:
        """Fire ``key`` at the instants of ``schedule`` (replacing any previous schedule)."""
        self._scheduler.add_job(
            self._due,
            trigger=ScheduleTrigger(schedule),
            args=[key],
            id=key,
            name=key,
            replace_existing=True,
        )

    def _due(
        self, key: str, instants: Sequence[datetime] = (), fired_at: datetime | None = None
    ) -> None:
        # The defaults only satisfy APScheduler's signature check: TickExecutor always
        # passes both.
        self._on_due(key, instants, fired_at)

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
