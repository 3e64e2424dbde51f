"""The runtime of ``cronwf serve``: the one place that reads the real clock and wires adapters.

Pieces and who drives them:

* the **timer** (APScheduler) calls :meth:`Service.on_due` with the exact instants due;
* the **housekeeping loop** (one thread) reloads sources, renews or takes leadership, and
  recovers from store outages with exponential backoff;
* the **sink** (local executor) reports finished runs to :meth:`Service.on_finished`;
* the **engine** decides and records; the metrics and the event log observe it.

Leadership: with a shared Redis (``--redis-url``) several replicas may run; only the holder of
the Redis lock acts, and every claim it makes carries its fencing token, so a replica that
lost the lock cannot spawn even if it has not noticed yet. A replica that loses the lock stops
acting at once; one that gains it drops every cached history, syncs every CronWorkflow and
catches up the instants nobody decided.

Runs that nobody here can observe (a dead or deposed leader's): a replica that learns a run's
end while it does not lead leaves a report in the shared store (:class:`RunReports`), which
the leader counts. An active run that no process here runs, and whose end no report brings
within ``lost_after``, is lost (:meth:`Engine.lose`): counted apart, never left active.

An empty store (Redis restarted without its data, ``FLUSHALL``) is recognised by its missing
mark (:meth:`HistoryStore.mark`) when the lead is taken or the store comes back: every history
it lacks is then re-seeded from what is known (the object's status in Kubernetes mode, the run
logs of the state folder in embedded mode), with one warning.

Outages: when the store is unreachable, ticks raise :class:`StoreUnavailable` and leave their
instants undecided; finished runs are buffered. The timers keep running. When the store
answers again the buffered completions are recorded (each once: completion is idempotent)
and catch-up decides every instant that passed, with the ``startingDeadlineSeconds`` rule.
A timer fire later than ``late_after`` (a stalled process, a long GC) is also routed through
catch-up, so lateness is always judged by the same rule.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Protocol

from policies.decision import CronWorkflow, History, overdue_runs
from policies.schedule import Schedule
from policies.spec import CronWorkflowSpec, StatusSeed
from scheduler.adapters.kube.lease import KubeLease
from scheduler.adapters.kube.runs import ObservedRun, WorkflowWatcher
from scheduler.adapters.kube.sink import KubeSink
from scheduler.adapters.kube.source import KubeSource
from scheduler.adapters.kube.status import KubeStatus
from scheduler.adapters.local.executor import (
    DEFAULT_MAX_LOCAL_RUNS,
    DEFAULT_MAX_WAITING_LOCAL_RUNS,
    LocalExecutor,
    RunFinished,
    plan_run,
)
from scheduler.adapters.local.files import FileSource
from scheduler.adapters.redis.history import FencedOut
from scheduler.adapters.redis.leadership import PublishedFence
from scheduler.adapters.timer import Due, Timer
from scheduler.core.engine import (
    Engine,
    Error,
    Event,
    HistoryStore,
    Lost,
    Missed,
    RunReport,
    RunReports,
    Sink,
    SinkUnavailable,
    Spawned,
    Stopped,
    StoreUnavailable,
)
from scheduler.core.events import Snapshot
from scheduler.core.memory import DEFAULT_RECENT_RUNS
from scheduler.telemetry.http import Readiness, StatusServer
from scheduler.telemetry.logs import EventLog
from scheduler.telemetry.metrics import CronWorkflowGauges, Metrics, expected_interval, new_registry

__all__ = [
    "Cluster",
    "FencedLease",
    "Leadership",
    "Service",
    "ServiceConfig",
    "SoleLeader",
    "utc_now",
]

log = logging.getLogger(__name__)

_PROBE_KEY = "cronwf/probe"
_FINISHED_MEMORY = 100_000


def _without_status(spec: CronWorkflowSpec) -> CronWorkflowSpec:
    return replace(spec, status=StatusSeed())


def utc_now() -> datetime:
    """The real clock; nothing outside the runtime calls it."""
    return datetime.now(UTC)


class Leadership(Protocol):
    """Who acts: a Redis lock with a fencing token, a Kubernetes Lease, or nobody else."""

    def try_acquire(self) -> int | None:
        """Take the lead if free; the fencing token, or None."""

    def renew(self) -> bool:
        """Extend the lead; False when it was lost."""

    def release(self) -> None:
        """Give the lead up (on shutdown)."""


class SoleLeader:
    """Leadership when there is nobody to share with (the in-process store)."""

    def try_acquire(self) -> int | None:
        return 0

    def renew(self) -> bool:
        return True

    def release(self) -> None:
        return None


class FencedLease:
    """A Kubernetes Lease whose elections are made binding on Redis by a published fence."""

    def __init__(self, lease: KubeLease, fence: PublishedFence | None) -> None:
        self._lease = lease
        self._fence = fence

    def try_acquire(self) -> int | None:
        token = self._lease.try_acquire()
        if token is None or self._fence is None:
            return token
        return self._fence.publish()

    def renew(self) -> bool:
        kept = self._lease.renew()
        if kept and self._fence is not None and not self._fence.holds():
            # Redis lost the fence (it came back empty): step down, and the next election
            # publishes a fresh one.
            kept = False
        if not kept and self._fence is not None:
            self._fence.withdraw()
        return kept

    def release(self) -> None:
        if self._fence is not None:
            self._fence.withdraw()
        self._lease.release()


WatcherFactory = Callable[
    [Callable[[RunFinished], None], Callable[[str, str], None], Callable[[ObservedRun], None]],
    WorkflowWatcher,
]


@dataclass(frozen=True)
class Cluster:
    """The Kubernetes adapters of ``serve --kubernetes``."""

    source: KubeSource
    sink: KubeSink
    status: KubeStatus
    watcher: WatcherFactory
    sync_timeout: float = 30.0
    gc_interval: float = 10.0


@dataclass(frozen=True)
class ServiceConfig:
    """The knobs of ``serve`` that the runtime uses (validated by the CLI)."""

    manifests: tuple[Path, ...]
    state_dir: Path
    host: str = "0.0.0.0"
    port: int = 9090
    reload_interval: float = 2.0
    renew_interval: float = 5.0
    run_timeout: float = 600.0
    late_after: float = 5.0
    workers: int = 1
    metrics_with_name: bool = True
    lost_after: float = 900.0
    """How long after its start an active run that nobody here can observe, and whose end no
    report brought, is lost. A local run is never lost before its own time limit."""
    max_local_runs: int = DEFAULT_MAX_LOCAL_RUNS
    """Embedded mode: local runs executing at once."""
    max_waiting_local_runs: int = DEFAULT_MAX_WAITING_LOCAL_RUNS
    """Embedded mode: spawned local runs waiting for a slot; beyond, a run ends Error."""


_COLLECT_WHEN_IDLE_AFTER = 10_000
"""Objects allocated (net) after which an idle worker runs the young collections."""
_FULL_COLLECTION_EVERY = 20
"""Young collections between full ones (CPython's own ratio)."""
_QUIET_ENOUGH_TO_COLLECT = timedelta(milliseconds=100)
"""How far the next instant must be for an idle worker to collect: a worker finding the
queue empty while the timer is still firing a burst is not idle."""
_HELD_AT_MOST = 2_000
"""Events held back while instants wait to be decided, before they are passed on anyway."""
_REPORTS_EVERY = 1.0
"""Seconds between two reads of the run reports by the leader."""
_REPORTS_AT_ONCE = 500
_SWEEP_EVERY = 10.0
"""Seconds between two looks for lost runs."""
_SWEPT_AT_ONCE = 500
"""CronWorkflows the lost-run sweep looks at in one housekeeping round."""
_LOCAL_GRACE = 60.0
"""A local run is lost no sooner than its time limit plus this."""
_FAILING_SPAWNS = 3
"""Unexpected sink failures in a row (of several CronWorkflows) that make the service unready."""


class _Fanout:
    """Passes each event to every observer, in order, one event at a time.

    While ``busy()`` says that fired instants wait for a worker, events are held back and
    passed on by :meth:`release` (the timer's idle callback) or with the next event emitted
    when nothing waits: log lines and metrics of a burst wait for its Workflows to be
    spawned, rather than delay them by a third. At most :data:`_HELD_AT_MOST` are held.
    """

    def __init__(
        self, observers: Iterable[Callable[[Event], None]], busy: Callable[[], bool]
    ) -> None:
        self._observers = list(observers)
        self._busy = busy
        self._held: list[Event] = []
        self._guard = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._guard:
            if len(self._held) < _HELD_AT_MOST and self._busy():
                self._held.append(event)
                return
            held, self._held = self._held, []
            for earlier in held:
                self._pass_on(earlier)
            self._pass_on(event)

    def release(self) -> None:
        """Pass on the events held back."""
        with self._guard:
            held, self._held = self._held, []
            for event in held:
                self._pass_on(event)

    def _pass_on(self, event: Event) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.exception("an observer failed on %s", event.kind)


@dataclass
class _Backoff:
    """Exponential backoff between recovery attempts: 0.5 s doubling to 2 s.

    A probe is one cheap read, so a short cap costs little, and the service is ready again
    within a couple of seconds of the store answering."""

    initial: float = 0.5
    limit: float = 2.0
    delay: float = 0.5
    next_attempt: float = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_attempt

    def failed(self, now: float) -> None:
        self.next_attempt = now + self.delay
        self.delay = min(self.delay * 2, self.limit)

    def reset(self) -> None:
        self.delay, self.next_attempt = self.initial, 0.0


@dataclass
class Service:
    """``cronwf serve``: sources, timer, engine, leadership and HTTP, wired together."""

    config: ServiceConfig
    store: HistoryStore
    leadership: Leadership = field(default_factory=SoleLeader)
    clock: Callable[[], datetime] = utc_now
    cluster: Cluster | None = None
    reports: RunReports | None = None
    """Where replicas leave the ends of runs for the leader; None with a store of one process."""

    def __post_init__(self) -> None:
        self.registry = new_registry()
        self.metrics = Metrics(self.registry, with_name=self.config.metrics_with_name)
        self.metrics.attach(self)
        sink: Sink
        self.source: FileSource | KubeSource
        self.executor: LocalExecutor | None = None
        self.watcher: WorkflowWatcher | None = None
        if self.cluster is None:
            self.executor = LocalExecutor(
                self.config.state_dir,
                self.on_finished,
                self.config.run_timeout,
                self.clock,
                max_running=self.config.max_local_runs,
                max_waiting=self.config.max_waiting_local_runs,
            )
            self.metrics.attach_local_runs(self.executor)
            sink = self.executor
            self.source = FileSource(self.config.manifests)
        else:
            sink = self.cluster.sink
            self.source = self.cluster.source
            self.watcher = self.cluster.watcher(self.on_finished, self.on_deleted, self.on_running)
        observers = [self._track, self.metrics.emit, EventLog().emit]
        if self.cluster is not None:
            observers.append(self._cluster_event)
        # A long gap in a fast schedule is millions of missed instants: the newest are
        # recorded one by one (as many as the recent runs keep), the rest summed up.
        self._fanout = _Fanout(observers, busy=lambda: self.timer.waiting() > 0)
        self.engine = Engine(self.store, sink, self._fanout, DEFAULT_RECENT_RUNS, clock=self.clock)
        self.timer = Timer(self.on_due_many, self.config.workers, on_idle=self._on_idle)
        # Kubernetes mode: CronWorkflows whose status must be written, Events to emit.
        self._dirty: set[str] = set()
        self._applied: Snapshot | None = None
        # The gauges' bookkeeping has its own lock: ticks update it, and the service lock is
        # held by the catalog reload.
        self._gauges_lock = threading.Lock()
        # Batches being decided, for pausing the collector (see _collector_paused).
        self._gc_guard = threading.Lock()
        self._deciding = 0
        self._gc_was_enabled = True
        # Workflows seen finished (bounded): a stale "running" observation must not re-adopt.
        self._finished_seen: OrderedDict[str, None] = OrderedDict()
        self._events: list[tuple[str, str, str, bool]] = []
        self._next_gc = 0.0
        self._catalog: dict[str, CronWorkflow] = {}
        self._intervals: dict[str, float | None] = {}
        # What the gauges show, kept from sync results and events: a scrape reads no store.
        self._last_scheduled: dict[str, datetime] = {}
        self._last_succeeded: dict[str, datetime] = {}
        self._stopped: set[str] = set()
        self._lock = threading.RLock()
        self._inflight = 0  # ticks being decided; shutdown lets them finish
        self._idle = threading.Condition(self._lock)
        self._leading = False
        self._degraded: str | None = None
        self._buffered: list[RunFinished] = []
        # CronWorkflows with active runs, for the lost-run sweep (not the whole fleet).
        self._with_active: set[str] = set()
        self._next_sweep = 0.0
        self._sweeping: list[str] = []  # the rest of the sweep's pass
        self._next_reports = 0.0
        # Unexpected sink failures since the last spawn that worked (keys, last message).
        self._sink_failures: list[str] = []
        self._sink_error: str | None = None
        self._sources_loaded = False
        self._stop = threading.Event()
        self._backoff = _Backoff()
        self._http: StatusServer | None = None
        self._loop: threading.Thread | None = None
        self._lease_thread: threading.Thread | None = None
        self._lease_lock = threading.Lock()
        self._elected = threading.Event()
        # Set once a new lead has synced the histories: a tick decided before that would seed
        # an absent history from nothing, where the sync re-seeds it from what is known.
        self._synced = threading.Event()
        self._synced.set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Serve HTTP, load sources, take the lead if free, start the timer and the loop."""
        self._http = StatusServer(self.config.host, self.config.port, self.registry, self.ready)
        self._http.start()
        if self.executor is not None:
            warn_if_root(os.geteuid())
        if self.cluster is not None:
            assert isinstance(self.source, KubeSource)
            assert self.watcher is not None
            self.source.start()
            self.watcher.start()
            if not self.source.wait_synced(self.cluster.sync_timeout):
                log.warning(
                    "CronWorkflows not listed within %.0fs: the API server is slow or "
                    "unreachable; retrying in the background",
                    self.cluster.sync_timeout,
                )
        self._reload()
        self._sources_loaded = not isinstance(self.source, KubeSource) or self.source.synced
        self.timer.start()  # safe before leading: on_due decides nothing until then
        elected = self._acquire()
        self._lease_thread = threading.Thread(
            target=self._leadership, name="cronwf-lead", daemon=True
        )
        self._lease_thread.start()
        if elected:
            self._resume(after_election=True)
        else:
            self._recover_local_runs()  # their ends go to the leader as reports
        # The catalog, the timer's jobs and the cached histories live as long as the process:
        # moving them out of the collector's generations keeps full collections (which scan
        # every object while holding the interpreter) short on large fleets.
        gc.collect()
        gc.freeze()
        # Each tick replaces a CronWorkflow's cached history with a new one that lives until
        # its next tick: with the default threshold (700) a burst of ten thousand promotes
        # them through every generation and triggers full collections. Collecting the
        # youngest generation every 50,000 allocations instead keeps a burst's collections to
        # one or two, each as short (cycles are rare here; reference counting frees the rest).
        gc.set_threshold(50_000, 20, 20)
        self._loop = threading.Thread(target=self._housekeeping, name="cronwf-loop", daemon=True)
        self._loop.start()
        log.info(
            "serving %d CronWorkflows; metrics on http://%s:%d/metrics",
            len(self._catalog),
            self.config.host,
            self.port,
        )

    @property
    def port(self) -> int:
        return self._http.port if self._http else self.config.port

    def run_until_signalled(self) -> None:
        """Block until SIGTERM or SIGINT, then shut down gracefully."""

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self._stop.wait(0.5):
            pass
        self.shutdown()

    def shutdown(self) -> None:
        """Stop acting, stop runs in progress, release the lead, stop serving."""
        self._stop.set()
        with self._lock:
            was_leading = self._leading and self._degraded is None
            self._leading = False  # no new tick starts deciding
            # Ticks already deciding finish before the lead is released, so that the next
            # leader finds their instants recorded (bounded: a hung API must not block exit).
            self._idle.wait_for(lambda: not self._inflight, timeout=10)
        self.timer.shutdown(wait=False)
        self._fanout.release()
        for thread in (self._loop, self._lease_thread):
            if thread is not None:
                thread.join(5)
        if was_leading and self.cluster is not None:
            # The last decisions reach the objects before the lead goes: without Redis, a
            # restart seeds from them, and must not decide those instants again.
            try:
                self._write_cluster_state(time.monotonic(), final=True)
            except Exception:
                log.exception("writing CronWorkflow status at shutdown failed")
        if self.executor is not None:
            running = self.executor.running()
            self.executor.shutdown()
            self._interrupted(running)
        if self.watcher is not None:
            self.watcher.stop()
        if self.cluster is not None:
            self.cluster.sink.close()
        if isinstance(self.source, KubeSource):
            self.source.stop()
        try:
            with self._lease_lock:
                self.leadership.release()
        except StoreUnavailable as error:
            log.warning("could not release the leader lock: %s", error)
        if self._http is not None:
            self._http.stop()
        log.info("stopped")

    def _interrupted(self, runs: Sequence[tuple[str, str]]) -> None:
        """Runs stopped by the shutdown leave ``active`` uncounted, as a deleted Workflow
        does, so that a ``Forbid`` CronWorkflow is not held up by them after the restart.
        Those that ended on their own meanwhile were counted; this changes nothing for them."""
        if not runs:
            return
        now = self.clock()
        with self._lock:
            catalog = dict(self._catalog)
        for namespace, workflow in runs:
            name = workflow.rpartition("-")[0]
            cron_workflow = catalog.get(f"{namespace}/{name}")
            if cron_workflow is None:
                continue
            try:
                self.engine.deleted(cron_workflow, workflow, now)
            except StoreUnavailable as error:  # fenced out or unreachable: lost after the bound
                log.warning("could not record that %s was stopped: %s", workflow, error)
                return

    # -- timer and runs ---------------------------------------------------------------------

    def on_due(
        self, key: str, instants: Iterable[datetime], fired_at: datetime | None = None
    ) -> None:
        """The timer says ``instants`` of ``key`` are due; it fired them at ``fired_at``."""
        self.on_due_many([Due(key, tuple(instants), fired_at or self.clock())])

    def on_due_many(self, dues: Sequence[Due]) -> None:
        """The timer hands over a batch of due CronWorkflows."""
        # Just elected: the histories are being synced (and re-seeded, when the store lost
        # them); wait for that, within the lateness a tick may have anyway.
        self._synced.wait(self.config.late_after)
        with self._lock:
            leading = self._leading and self._degraded is None
            if not leading:
                return  # a standby or a degraded leader decides nothing: catch-up will
            # A CronWorkflow deleted meanwhile has no catalog entry: nothing to decide.
            known = [(self._catalog[due.key], due) for due in dues if due.key in self._catalog]
            if not known:
                return
            self._inflight += 1
        try:
            with self._collector_paused():
                self._decide(known)
        finally:
            with self._lock:
                self._inflight -= 1
                if not self._inflight:
                    self._idle.notify_all()

    def _decide(self, dues: Sequence[tuple[CronWorkflow, Due]]) -> None:
        now = self.clock()
        late_after = timedelta(seconds=self.config.late_after)
        together: list[tuple[CronWorkflow, datetime]] = []
        try:
            for cron_workflow, due in dues:
                # Lateness is the timer's (a stalled process), not the queue's: in a burst of
                # ten thousand instants the last ones wait for a worker, yet they were fired
                # on time.
                if due.instants and due.fired_at - due.instants[0] > late_after:
                    self.engine.catch_up(cron_workflow, now)
                elif len(due.instants) == 1:
                    together.append((cron_workflow, due.instants[0]))
                else:
                    for instant in due.instants:
                        self.engine.tick(cron_workflow, instant, now)
            self.engine.tick_many(together, now)
        except FencedOut as error:
            self._step_down(str(error))
        except (StoreUnavailable, SinkUnavailable) as error:
            self._set_degraded(str(error))

    @contextmanager
    def _collector_paused(self) -> Iterator[None]:
        """No automatic garbage collection while a batch is decided: a burst makes tens of
        thousands of objects, and each automatic pass inside it held the interpreter for
        30-40 ms before the burst's last spawns. The idle worker collects afterwards."""
        with self._gc_guard:
            self._deciding += 1
            if self._deciding == 1:
                self._gc_was_enabled = gc.isenabled()
                gc.disable()
        try:
            yield
        finally:
            with self._gc_guard:
                self._deciding -= 1
                if self._deciding == 0 and self._gc_was_enabled:
                    gc.enable()

    def _on_idle(self) -> None:
        """Nothing fired waits for a worker: what could wait is done now."""
        self._fanout.release()
        # The collector's automatic passes would come in the middle of the next burst (that
        # is when objects are made) and hold the interpreter for tens of milliseconds there;
        # collected between bursts, each pass is short and delays no spawn.
        young, _, old = gc.get_count()
        if young < _COLLECT_WHEN_IDLE_AFTER or self._deciding:  # another worker is busy
            return
        following = self.timer.next_due()
        if following is None or following - utc_now() > _QUIET_ENOUGH_TO_COLLECT:
            gc.collect(2 if old >= _FULL_COLLECTION_EVERY else 1)

    def _step_down(self, reason: str) -> None:
        with self._lock:
            was_leading, self._leading = self._leading, False
        self.store.drop_cache()
        self._synced.set()  # nothing to wait for: a standby decides nothing
        if was_leading:
            log.warning("this replica stops acting: %s", reason)

    def on_finished(self, run: RunFinished) -> None:
        """The sink reports a finished run."""
        with self._lock:
            cron_workflow = self._catalog.get(run.key)
            if self.cluster is not None and not self._leading:
                return  # the leader's watcher sees it too
            if self._degraded is not None:
                self._buffered.append(run)
                return
            leading = self._leading
        if cron_workflow is None:
            return  # deleted meanwhile: its history is gone
        if not leading:
            self._report(run)
            return
        try:
            with self.engine.serialized(run.key):
                self._remember_finished(run.workflow)
                self._count(cron_workflow, run, self.clock())
        except FencedOut as error:
            self._step_down(str(error))
            if self.cluster is None:
                self._report(run)  # in Kubernetes mode the new leader's watcher sees it
        except StoreUnavailable as error:
            with self._lock:
                self._buffered.append(run)
            self._set_degraded(str(error))

    def _remember_finished(self, workflow: str) -> None:
        self._finished_seen[workflow] = None
        while len(self._finished_seen) > _FINISHED_MEMORY:
            self._finished_seen.popitem(last=False)

    def _acting_on(self, key: str) -> CronWorkflow | None:
        with self._lock:
            if not self._leading or self._degraded is not None:
                return None
            return self._catalog.get(key)

    def on_deleted(self, key: str, workflow: str) -> None:
        """A run was deleted before it finished: it leaves ``active`` uncounted."""
        cron_workflow = self._acting_on(key)
        if cron_workflow is not None:
            self._quietly(partial(self.engine.deleted, cron_workflow, workflow, self.clock()))
            self._mark_dirty(key)

    def on_running(self, run: ObservedRun) -> None:
        """A running Workflow was seen: adopt it if the history does not know it."""
        cron_workflow = self._acting_on(run.key)
        if cron_workflow is None:
            return
        try:
            # Under the CronWorkflow's lock, so that a completion observed concurrently is
            # either seen here (not adopted again) or counts this adoption.
            with self.engine.serialized(run.key):
                if run.workflow in self._finished_seen:
                    return
                adopted = self.engine.adopt(
                    cron_workflow, run.workflow, run.scheduled_at, self.clock()
                )
        except FencedOut as error:
            self._step_down(str(error))
            return
        except StoreUnavailable as error:
            self._set_degraded(str(error))
            return
        if adopted:
            log.warning("%s: adopted running Workflow %s", run.key, run.workflow)
            self._mark_dirty(run.key)

    def _reconcile_cluster(self) -> None:
        """After an election or an outage, replay what the Workflow watcher knows: runs that
        finished or appeared while nobody acted are counted or adopted; runs the history lists
        as active but the cluster no longer has leave ``active`` uncounted (Argo's
        ``reconcileActiveWfs``)."""
        if self.watcher is None or not self.watcher.synced:
            return
        self.watcher.replay()
        now = self.clock()
        with self._lock:
            catalog = list(self._catalog.values())
        for cron_workflow in catalog:
            history = self.store.load(cron_workflow.key)
            if history is None:
                continue
            for workflow in history.active:
                if workflow in history.intents:
                    continue  # its create may still be on its way: resolved, or lost, later
                if not self.watcher.has(cron_workflow.spec.namespace, workflow):
                    self.engine.deleted(cron_workflow, workflow, now)
                    self._mark_dirty(cron_workflow.key)

    # -- Kubernetes status and Events -------------------------------------------------------

    def _mark_dirty(self, key: str) -> None:
        if self.cluster is not None:
            with self._lock:
                self._dirty.add(key)

    def _cluster_event(self, event: Event) -> None:
        with self._lock:
            self._dirty.add(event.key)
            if isinstance(event, Error):
                self._events.append((event.key, event.reason.value, event.message, True))
            elif isinstance(event, Missed):
                message = f"missed scheduled time {event.scheduled_at.isoformat()} ({event.reason})"
                if event.since is not None:
                    message = (
                        f"missed {event.count:,} scheduled times from {event.since.isoformat()} "
                        f"to {event.scheduled_at.isoformat()} ({event.reason})"
                    )
                self._events.append((event.key, "MissedSchedule", message, True))
            elif isinstance(event, Stopped):
                message = "the stop strategy became true: no more Workflows will be spawned"
                self._events.append((event.key, "Stopped", message, True))
            elif isinstance(event, Lost):
                message = (
                    f"run {event.workflow} is lost: nobody could observe its end "
                    f"({event.reason}); it is no longer active and is not counted as a failure"
                )
                self._events.append((event.key, "LostRun", message, True))

    def _write_cluster_state(self, moment: float, *, final: bool = False) -> None:
        """Leader only: status projections of changed CronWorkflows, Events, history limits.
        ``final``: the last write of a leader shutting down (it still holds the lead)."""
        if self.cluster is None:
            return
        with self._lock:
            if not final and (not self._leading or self._degraded is not None):
                return
            dirty, self._dirty = self._dirty, set()
            events, self._events = self._events, []
            catalog = dict(self._catalog)
        for key, reason, message, warning in events:
            if key in catalog:
                self.cluster.status.event(catalog[key].spec, reason, message, warning)
        failed: set[str] = set()
        for key in dirty:
            cron_workflow = catalog.get(key)
            if cron_workflow is None:
                continue
            try:
                history = self.store.load(key)
                if history is not None:
                    self.cluster.status.write(cron_workflow.spec, history)
            except StoreUnavailable as error:
                self._set_degraded(str(error))
                failed.add(key)
            except Exception as error:
                log.warning("could not write the status of %s: %s", key, error)
                failed.add(key)
        if failed:
            with self._lock:
                self._dirty |= failed
        if self.watcher is not None and not final and moment >= self._next_gc:
            self._next_gc = moment + self.cluster.gc_interval
            self.watcher.enforce_history_limits({k: cw.spec for k, cw in catalog.items()})

    # -- sources ----------------------------------------------------------------------------

    def _reload(self) -> None:
        snapshot = self.source.poll()
        if snapshot is self._applied:
            return  # nothing changed: no comparison of the whole catalog under the lock
        self._apply(snapshot)
        self._applied = snapshot
        if isinstance(self.source, KubeSource) and not self._sources_loaded:
            self._sources_loaded = self.source.synced

    def _apply(self, snapshot: Snapshot) -> None:
        now = self.clock()
        # Engine calls take a CronWorkflow's lock, and a tick holding that lock takes the
        # service lock in its observers: so engine calls happen after the service lock is
        # released, never under it.
        actions: list[Callable[[], object]] = []
        # Fleets share schedules (and probing one for its interval takes a millisecond):
        # each distinct schedule of this change is probed once.
        intervals: dict[Schedule, float | None] = {}
        with self._lock:
            leading = self._leading and self._degraded is None
            for key in set(self._catalog) - set(snapshot.cron_workflows):
                log.info("CronWorkflow %s removed", key)
                self.timer.remove(key)
                del self._catalog[key]
                self._intervals.pop(key, None)
                with self._gauges_lock:
                    self._last_scheduled.pop(key, None)
                    self._last_succeeded.pop(key, None)
                    self._stopped.discard(key)
                self.metrics.forget(key)
                if self.cluster is not None:
                    self.cluster.status.forget(key)
                if leading:
                    actions.append(partial(self.engine.forget, key))
            for key, spec in snapshot.cron_workflows.items():
                current = self._catalog.get(key)
                if current is not None and current.spec == spec:
                    continue
                if current is not None and _without_status(current.spec) == _without_status(spec):
                    # Only the status moved (in Kubernetes mode, usually our own write): keep
                    # the prepared CronWorkflow and its timer, remember the status for seeding.
                    self._catalog[key] = replace(current, spec=spec)
                    continue
                cron_workflow = CronWorkflow.prepare(spec, now)
                self._catalog[key] = cron_workflow
                for warning in cron_workflow.validation.warnings:
                    log.warning("CronWorkflow %s: %s", key, warning)
                if cron_workflow.schedule is not None:
                    schedule = cron_workflow.schedule
                    if schedule not in intervals:
                        intervals[schedule] = expected_interval(schedule, now)
                    self._intervals[key] = intervals[schedule]
                    self.timer.set(key, cron_workflow.schedule)
                else:
                    self._intervals[key] = None
                    self.timer.remove(key)
                if leading:
                    actions.append(partial(self._sync, cron_workflow, now))
        for action in actions:
            self._quietly(action)

    def _sync(self, cron_workflow: CronWorkflow, now: datetime) -> None:
        self._remember(cron_workflow.key, self.engine.sync(cron_workflow, now))
        self._mark_dirty(cron_workflow.key)
        # A CronWorkflow that arrives with a status.lastScheduledTime (taken over from Argo's
        # controller) has instants to catch up since then.
        self.engine.catch_up(cron_workflow, now)

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except FencedOut as error:
            self._step_down(str(error))
        except (StoreUnavailable, SinkUnavailable) as error:
            self._set_degraded(str(error))

    # -- leadership and recovery ------------------------------------------------------------

    def _acquire(self) -> bool:
        """Take the lead if it is free. The caller then resumes (sync, settle, catch up)."""
        try:
            with self._lease_lock:
                token = self.leadership.try_acquire()
        except StoreUnavailable as error:
            self._set_degraded(str(error))
            return False
        if token is None:
            return False
        log.info("this replica now leads (fencing token %d)", token)
        self.store.drop_cache()  # nothing read under another lead is trusted
        self._synced.clear()  # until the resume has synced every history
        with self._lock:
            self._leading = True
        return True

    def _resume(self, *, after_election: bool) -> None:
        """Sync every CronWorkflow (re-seeding those the store lost), settle buffered runs and
        the reports of other replicas, catch up; after an election, recover the local runs of
        earlier processes."""
        now = self.clock()
        with self._lock:
            catalog = list(self._catalog.values())
            buffered, self._buffered = self._buffered, []
        try:
            try:
                seeded = self._known(catalog) if self.store.mark() else catalog
                synced = self.engine.sync_many(seeded, now)
            finally:
                self._synced.set()  # ticks held back for the sync go on, whatever happened
            for cron_workflow, history in zip(catalog, synced, strict=True):
                self._remember(cron_workflow.key, history)
            with self._lock:
                self._dirty |= {cron_workflow.key for cron_workflow in catalog}
            for run in buffered:
                cron_workflow_ = self._catalog.get(run.key)
                if cron_workflow_ is not None:
                    self._count(cron_workflow_, run, now)
            self._take_reports()
            for cron_workflow in catalog:
                # A fresh "now" each: on a large fleet the loop takes a while, and an instant
                # passing meanwhile is this catch-up's to decide.
                self.engine.catch_up(cron_workflow, self.clock())
            with self._lock:
                self._degraded = None  # reconciling acts on the watcher's reports
            self._reconcile_cluster()
        except FencedOut as error:
            with self._lock:
                self._buffered = buffered + self._buffered
            self._step_down(str(error))
            return
        except (StoreUnavailable, SinkUnavailable) as error:
            with self._lock:
                self._buffered = buffered + self._buffered
            self._set_degraded(str(error))
            return
        with self._lock:
            self._degraded = None
            late, self._buffered = self._buffered, []
        self._backoff.reset()
        for run in late:  # finished while catching up: record them now
            self.on_finished(run)
        if after_election:
            self._recover_local_runs()

    def _recover_local_runs(self) -> None:
        """What became of the local runs that earlier processes (or, on a shared state folder,
        other replicas) started: those that ended are reported now, those still going are
        watched until they end. After the histories are synced (and re-seeded, when the
        store was empty), so that each end meets the run it ends."""
        if self.executor is None:
            return
        try:
            found = self.executor.recover()
        except OSError as error:
            log.error("could not look for the runs of earlier processes: %s", error)
            return
        if found.reported or found.watching:
            log.info(
                "runs of earlier processes: %d ended and reported, %d still going and watched",
                len(found.reported),
                len(found.watching),
            )
        if found.lost:
            log.debug("runs of earlier processes whose end nobody can learn: %s", found.lost)

    def _known(self, catalog: list[CronWorkflow]) -> list[CronWorkflow]:
        """The store holds no data: the CronWorkflows as seeding must see them, with what is
        known of their past. In Kubernetes mode that is their status, already on them; in
        embedded mode the run logs of the state folder (the newest instant run and the
        counters of the runs that ended)."""
        if self.executor is None:
            log.warning(
                "the history store holds no data (it is new, or lost its data): the histories "
                "of %d CronWorkflows are re-seeded from their status",
                len(catalog),
            )
            return catalog
        known = [
            replace(cw, spec=replace(cw.spec, status=seed))
            if (seed := self.executor.seed_from_runs(cw.spec)) is not None
            else cw
            for cw in catalog
        ]
        log.warning(
            "the history store holds no data (it is new, or lost its data): the histories of "
            "%d CronWorkflows are re-seeded from the run logs in %s (%d have some); instants "
            "since the newest run are caught up or recorded missed, and counters hold only the "
            "runs logged there",
            len(catalog),
            self.executor.runs_dir,
            sum(1 for a, b in zip(known, catalog, strict=True) if a is not b),
        )
        return known

    # -- runs nobody here observes ----------------------------------------------------------

    def _take_reports(self) -> None:
        """Count the runs other replicas learned the end of (leader only)."""
        if self.reports is None:
            return
        taken, reports = self.reports.take(_REPORTS_AT_ONCE)
        if not taken:
            return
        now = self.clock()
        with self._lock:
            catalog = dict(self._catalog)
        for report in reports:
            cron_workflow = catalog.get(report.key)
            if cron_workflow is None:
                continue  # deleted meanwhile
            if self._count(cron_workflow, report, now):
                log.info("%s: counted %s, reported by another replica", report.key, report.workflow)
                self._mark_dirty(report.key)
        self.reports.done(taken)

    def _count(
        self, cron_workflow: CronWorkflow, run: RunFinished | RunReport, now: datetime
    ) -> bool:
        """Count a run's end (once, however often it comes); whether this counted it."""
        return self.engine.complete(
            cron_workflow,
            run.workflow,
            run.phase,
            now,
            scheduled_at=run.scheduled_at,
            finished_at=run.finished_at,
        )

    def _report(self, run: RunFinished) -> None:
        """This replica learned a run's end but cannot record it: leave it for the leader."""
        if self.reports is None:
            log.warning(
                "%s: run %s ended %s but this replica does not lead and has no shared store "
                "to report it to: it is not counted",
                run.key,
                run.workflow,
                run.phase.value,
            )
            return
        report = RunReport(run.key, run.workflow, run.scheduled_at, run.phase, run.finished_at)
        try:
            self.reports.report(report)
        except StoreUnavailable as error:
            with self._lock:
                self._buffered.append(run)
            self._set_degraded(str(error))

    def _sweep_lost(self) -> None:
        """Give up on active runs that nobody here can observe and whose end no report
        brought within the bound (leader only). A pass over the CronWorkflows with active
        runs is spread over housekeeping rounds, :data:`_SWEPT_AT_ONCE` at a time, and waits
        while instants are being decided: on a large fleet one pass in one go would hold the
        interpreter long enough to delay a burst's spawns."""
        if self.watcher is not None and not self.watcher.synced:
            return  # what the cluster has is not known yet
        if self._deciding or self.timer.waiting():
            return
        if not self._sweeping:
            with self._lock:
                self._sweeping = list(self._with_active)
        chunk, self._sweeping = (
            self._sweeping[:_SWEPT_AT_ONCE],
            self._sweeping[_SWEPT_AT_ONCE:],
        )
        now = self.clock()
        shortest = timedelta(seconds=self.config.lost_after)
        for key in chunk:
            with self._lock:
                cron_workflow = self._catalog.get(key)
            history = self.store.load(key) if cron_workflow is not None else None
            if cron_workflow is None or history is None or not history.active:
                with self._lock:
                    self._with_active.discard(key)
                continue
            # No bound is shorter than --lost-after: only runs older than it are looked at.
            overdue = overdue_runs(history, cron_workflow.spec.name, now, shortest)
            if overdue:
                self._lose_overdue(cron_workflow, history, overdue, now)

    def _lose_overdue(
        self,
        cron_workflow: CronWorkflow,
        history: History,
        candidates: Sequence[str],
        now: datetime,
    ) -> None:
        key = cron_workflow.key
        bound = timedelta(seconds=self._lost_after(cron_workflow))
        overdue = set(overdue_runs(history, cron_workflow.spec.name, now, bound))
        for workflow in candidates:
            if workflow not in overdue:
                continue
            # In Kubernetes mode a spawned run is the cluster's to end (deleted, it leaves
            # active uncounted); only a claim whose Workflow never appeared can be lost.
            if self.watcher is not None and workflow not in history.intents:
                continue
            if self._observable(cron_workflow, workflow):
                continue
            if self.engine.lose(cron_workflow, workflow, now):
                log.warning(
                    "%s: run %s is lost: nobody could observe its end within %s",
                    key,
                    workflow,
                    bound,
                )
                self._mark_dirty(key)

    def _observable(self, cron_workflow: CronWorkflow, workflow: str) -> bool:
        namespace = cron_workflow.spec.namespace
        if self.watcher is not None:
            return self.watcher.has(namespace, workflow)
        return self.executor is not None and self.executor.spawned_here(namespace, workflow)

    def _lost_after(self, cron_workflow: CronWorkflow) -> float:
        if self.executor is None:
            return self.config.lost_after
        try:
            limit = plan_run(cron_workflow.spec, self.clock(), self.config.run_timeout).timeout
        except Exception:  # an entrypoint the executor cannot run ends at once
            limit = 0.0
        return max(self.config.lost_after, limit + _LOCAL_GRACE)

    def _set_degraded(self, reason: str) -> None:
        with self._lock:
            first = self._degraded is None
            self._degraded = reason
        if first:
            log.error(
                "history store or API server unavailable, deciding nothing until it is back "
                "(missed instants are caught up then): %s",
                reason,
            )

    def _housekeeping(self) -> None:
        next_reload = time.monotonic()
        while not self._stop.wait(0.1):
            moment = time.monotonic()
            if moment >= next_reload:
                next_reload = moment + self.config.reload_interval
                try:
                    self._reload()
                except Exception:
                    log.exception("reloading manifests failed")
            # Each duty guarded: one failure must never stop the loop that recovers from it.
            if self._elected.is_set():
                self._elected.clear()
                self._guarded(partial(self._resume, after_election=True))
            if self._degraded is not None and self._backoff.due(moment):
                self._guarded(partial(self._recover, moment))
            if self._acting() and moment >= self._next_reports:
                self._next_reports = moment + _REPORTS_EVERY
                self._guarded(partial(self._quietly, self._take_reports))
            if self._acting() and (self._sweeping or moment >= self._next_sweep):
                if not self._sweeping:
                    self._next_sweep = moment + _SWEEP_EVERY
                self._guarded(partial(self._quietly, self._sweep_lost))
            try:
                self._write_cluster_state(moment)
            except Exception:
                log.exception("writing CronWorkflow status failed")

    def _acting(self) -> bool:
        with self._lock:
            return self._leading and self._degraded is None

    @staticmethod
    def _guarded(action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            log.exception("housekeeping step failed; retrying on the next round")

    def _leadership(self) -> None:
        """Its own thread, so that a long resume never delays a renewal past the lease."""
        while not self._stop.wait(self.config.renew_interval):
            self._keep_lead()

    def _keep_lead(self) -> None:
        with self._lock:
            leading, degraded = self._leading, self._degraded is not None
        if not leading:
            if not degraded and self._acquire():
                self._elected.set()  # the housekeeping loop resumes
            return
        try:
            with self._lease_lock:
                kept = self.leadership.renew()
        except StoreUnavailable as error:
            kept = False
            self._set_degraded(str(error))
        if not kept:
            self._step_down("the lead could not be renewed")

    def _recover(self, moment: float) -> None:
        try:
            self.store.load(_PROBE_KEY)  # any read proves the store answers again
        except StoreUnavailable:
            self._backoff.failed(moment)
            return
        with self._lock:
            leading = self._leading
        log.info("history store reachable again: recording buffered runs and catching up")
        if leading:
            self._resume(after_election=False)
        else:
            with self._lock:
                self._degraded = None  # the leadership thread takes the lead if it is free
                buffered, self._buffered = self._buffered, []
            for run in buffered:
                self.on_finished(run)

    # -- views for metrics and probes -------------------------------------------------------

    def _track(self, event: Event) -> None:
        with self._gauges_lock:
            if isinstance(event, Spawned):
                last = self._last_scheduled.get(event.key)
                if last is None or event.scheduled_at > last:
                    self._last_scheduled[event.key] = event.scheduled_at
                self._with_active.add(event.key)
                self._sink_failures.clear()
                self._sink_error = None
            elif isinstance(event, Stopped):
                self._stopped.add(event.key)
            elif isinstance(event, Error) and event.unexpected:
                self._sink_failures = [*self._sink_failures[-(_FAILING_SPAWNS - 1) :], event.key]
                self._sink_error = event.message

    def _sink_working(self) -> bool:
        """False when the last spawns all failed unexpectedly, for several CronWorkflows (or
        the only one): the service cannot spawn anything, whatever it says of the rest."""
        with self._gauges_lock:
            failures = list(self._sink_failures)
        with self._lock:
            valid = sum(1 for cw in self._catalog.values() if cw.valid)
        return not (
            len(failures) >= _FAILING_SPAWNS and len(set(failures)) >= min(2, max(valid, 1))
        )

    def _remember(self, key: str, history: History) -> None:
        with self._gauges_lock:
            if history.active:
                self._with_active.add(key)
            if history.last_scheduled_time is not None:
                self._last_scheduled[key] = history.last_scheduled_time
            if history.last_succeeded_time is not None:
                self._last_succeeded[key] = history.last_succeeded_time
            if history.stopped:
                self._stopped.add(key)
            else:
                self._stopped.discard(key)

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading

    def gauges(self) -> Iterable[CronWorkflowGauges]:
        with self._lock:
            catalog = list(self._catalog.values())
            intervals = dict(self._intervals)
        with self._gauges_lock:
            last_scheduled = dict(self._last_scheduled)
            last_succeeded = dict(self._last_succeeded)
            stopped = set(self._stopped)
        for cron_workflow in catalog:
            spec = cron_workflow.spec
            if not cron_workflow.valid:
                state = "invalid"
            elif cron_workflow.key in stopped:
                state = "stopped"
            elif spec.suspend:
                state = "suspended"
            else:
                state = "active"
            following = self.timer.next_fire(cron_workflow.key)
            last = last_scheduled.get(cron_workflow.key)
            succeeded = last_succeeded.get(cron_workflow.key)
            yield CronWorkflowGauges(
                namespace=spec.namespace,
                name=spec.name,
                state=state,
                next_schedule_time=following.timestamp() if following else None,
                last_schedule_time=last.timestamp() if last else None,
                expected_interval=intervals.get(cron_workflow.key),
                last_success_time=succeeded.timestamp() if succeeded else None,
            )

    def ready(self) -> Readiness:
        with self._lock:
            degraded = self._degraded
            count = len(self._catalog)
            invalid = sum(1 for cw in self._catalog.values() if not cw.valid)
        sink_working = self._sink_working()
        with self._gauges_lock:
            sink_error = self._sink_error
        sources = self._applied or Snapshot()
        return Readiness(
            sources_loaded=self._sources_loaded,
            store_reachable=degraded is None,
            leader=self.is_leader(),
            sink_working=sink_working,
            detail={
                "cronWorkflows": count,
                "invalid": invalid,
                **({"storeError": degraded} if degraded else {}),
                **({"sinkError": sink_error} if not sink_working and sink_error else {}),
            },
            listing_errors=sources.scan_errors,
            file_errors=sources.problems,
        )

    def manifest_errors(self) -> dict[str, int]:
        """Folders that cannot be listed and manifests that fail to load, as last applied."""
        return (self._applied or Snapshot()).error_counts()


def warn_if_root(euid: int) -> bool:
    """Say so when the local executor runs as root (``euid`` 0): whoever can write the
    manifests folder then runs commands as root. True when it warned."""
    if euid != 0:
        return False
    log.warning(
        "running as root with the local executor: whoever can write the manifests folder runs "
        'commands as root on this host; run cronwf as an unprivileged user (README: "Who can '
        'do what")'
    )
    return True
