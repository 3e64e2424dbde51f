"""Prometheus metrics (DESIGN.md §12): what on-call people are paged by.

The metrics are an :class:`scheduler.core.engine.Observer`: every count is derived from the
engine's events, so a metric cannot disagree with what the engine did. Per-CronWorkflow gauges
(next and last schedule time, expected interval, stopped, suspended) are read at scrape time
from a :class:`FleetView` the runtime provides, so ten thousand CronWorkflows cost nothing
between scrapes.

Counters live in plain dictionaries and are exposed by one custom collector. That makes
dropping the ``name`` label (``--metrics-without-name`` for fleets of tens of thousands) a
matter of summing at scrape time, and keeps memory at one integer per series.

``manifest_errors{kind}`` is read at scrape time too: the folders that cannot be listed now
(``listing``: their CronWorkflows are kept as they were, but changes there go unseen) and the
manifests that fail to load now (``file``). A gauge rather than a counter of failed polls, so
that an alert fires while the problem lasts and resolves when it is fixed.

``expected_interval_seconds`` is the longest gap between consecutive instants over the next
few weeks of a CronWorkflow's schedule, so one alert rule ("no run for 1.5 × expected
interval") fits every schedule, weekdays-only and monthly ones included.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from policies.decision import ErrorReason, LostReason, MissedReason, WorkflowPhase
from policies.schedule import Schedule
from scheduler.core.engine import Completed, Error, Event, Lost, Missed, Skipped, Spawned, Stopped

__all__ = [
    "CronWorkflowGauges",
    "FleetView",
    "LocalRuns",
    "Metrics",
    "expected_interval",
    "new_registry",
]

_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_INTERVAL_SAMPLES = 64
_INTERVAL_HORIZON = 400 * 86_400
_PROBE_STEP = 3 * 3600
_PROBE_SPAN = 8 * 86_400
_MANIFEST_ERROR_KINDS = ("listing", "file")


def expected_interval(schedule: Schedule, now: datetime) -> float | None:
    """The longest gap between consecutive instants, looking ahead (None: fires at most once).

    Two samples, because neither alone sees every shape: the next instants one after the
    other (the rhythm of sparse schedules, and gaps inside a day), and the gap around a probe
    every few hours over the next eight days (nights and weekends of dense schedules such as
    ``*/5 9-17 * * 1-5``: any gap longer than the probe step contains a probe).
    """
    start = int(now.timestamp())
    first = schedule.next_after_ts(start)
    if first is None:
        return None
    longest = 0
    previous = first
    for _ in range(_INTERVAL_SAMPLES):
        following = schedule.next_after_ts(previous)
        if following is None or (longest and following - first > _INTERVAL_HORIZON):
            break
        longest = max(longest, following - previous)
        previous = following
    for probe in range(first, first + _PROBE_SPAN, _PROBE_STEP):
        before = schedule.latest_at_or_before_ts(probe)
        after = schedule.next_after_ts(probe)
        if before is not None and after is not None:
            longest = max(longest, after - before)
    return float(longest) if longest else None


def new_registry() -> CollectorRegistry:
    """An empty registry of this service's metrics (one per Service, so tests never share)."""
    return CollectorRegistry()


@dataclass(frozen=True)
class CronWorkflowGauges:
    """The scrape-time state of one CronWorkflow."""

    namespace: str
    name: str
    state: str
    """``active``, ``suspended``, ``stopped`` or ``invalid``."""
    next_schedule_time: float | None
    last_schedule_time: float | None
    expected_interval: float | None
    last_success_time: float | None = None
    """From the stored history: known again after a restart or a change of leader."""


class FleetView(Protocol):
    def gauges(self) -> Iterable[CronWorkflowGauges]:
        """The current gauges of every CronWorkflow."""

    def is_leader(self) -> bool:
        """Whether this replica is acting."""

    def manifest_errors(self) -> Mapping[str, int]:
        """Folders that cannot be listed (``listing``) and manifests that fail to load
        (``file``), now."""


class LocalRuns(Protocol):
    def local_runs(self) -> tuple[int, int, int]:
        """Local runs ``(running, waiting for a slot, refused so far)`` (embedded mode)."""


_Labels = tuple[str, str]


class Metrics(Collector):
    """Counts engine events and exposes every cronwf metric on a registry."""

    def __init__(self, registry: CollectorRegistry, *, with_name: bool = True) -> None:
        self._with_name = with_name
        self._lock = threading.Lock()
        self._triggered: dict[_Labels, int] = defaultdict(int)
        self._skipped: dict[tuple[str, str, str], int] = defaultdict(int)
        self._concurrency: dict[tuple[str, str, str], int] = defaultdict(int)
        self._missed: dict[tuple[str, str, str], int] = defaultdict(int)
        self._lost: dict[tuple[str, str, str], int] = defaultdict(int)
        self._spawn_errors: dict[_Labels, int] = defaultdict(int)
        self._last_success: dict[_Labels, float] = {}
        self._stopped: set[_Labels] = set()
        self._spec_errors = 0
        self._expression_errors = 0
        self._fleet: FleetView | None = None
        self._local_runs: LocalRuns | None = None
        self.schedule_lag = Histogram(
            "cronwf_schedule_lag_seconds",
            "Time from a scheduled instant to its Workflow being created.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        registry.register(self)
        # process_start_time_seconds and friends: "a young process" is what tells a fresh
        # counter from an old one after a restart.
        ProcessCollector(registry=registry)

    def attach(self, fleet: FleetView) -> None:
        """Read per-CronWorkflow gauges from ``fleet`` at scrape time."""
        self._fleet = fleet

    def attach_local_runs(self, executor: LocalRuns) -> None:
        """Expose the local executor's slots at scrape time (embedded mode only)."""
        self._local_runs = executor

    # -- Observer ---------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        namespace, _, name = event.key.partition("/")
        labels = (namespace, name)
        with self._lock:
            if isinstance(event, Spawned):
                self._triggered[labels] += 1
                if event.replaced:
                    self._concurrency[(*labels, "Replace")] += 1
                if event.created and not event.catch_up:
                    lag = (event.time - event.scheduled_at).total_seconds()
                    self.schedule_lag.observe(max(lag, 0.0))
            elif isinstance(event, Skipped):
                self._skipped[(*labels, event.reason.value)] += event.count
                if event.reason.value == "ConcurrencyForbid":
                    self._concurrency[(*labels, "Forbid")] += 1
            elif isinstance(event, Missed):
                self._missed[(*labels, event.reason.value)] += event.count
            elif isinstance(event, Lost):
                self._lost[(*labels, event.reason.value)] += 1
            elif isinstance(event, Completed):
                if event.phase is WorkflowPhase.SUCCEEDED:
                    self._last_success[labels] = event.time.timestamp()
            elif isinstance(event, Stopped):
                self._stopped.add(labels)
            elif isinstance(event, Error):
                self._count_error(labels, event)

    def _count_error(self, labels: _Labels, event: Error) -> None:
        if event.expression:
            self._expression_errors += 1
        elif event.reason is ErrorReason.SPEC_ERROR:
            self._spec_errors += 1
        else:
            # A creation that failed, or a Replace that could not terminate an active run.
            self._spawn_errors[labels] += 1
            if event.triggered:
                self._triggered[labels] += 1

    def forget(self, key: str) -> None:
        """Drop the series of a deleted CronWorkflow."""
        namespace, _, name = key.partition("/")
        labels = (namespace, name)
        with self._lock:
            for store in (self._triggered, self._spawn_errors, self._last_success):
                store.pop(labels, None)
            for keyed in (self._skipped, self._concurrency, self._missed, self._lost):
                for series in [s for s in keyed if s[:2] == labels]:
                    del keyed[series]
            self._stopped.discard(labels)

    # -- Collector --------------------------------------------------------------------------

    def _labels(self, namespace: str, name: str) -> tuple[str, ...]:
        return (namespace, name) if self._with_name else (namespace,)

    def _label_names(self, *extra: str) -> list[str]:
        return ["namespace", "name", *extra] if self._with_name else ["namespace", *extra]

    def _counter(
        self, name: str, documentation: str, values: Mapping[Any, int], *extra: str
    ) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation, labels=self._label_names(*extra))
        summed: dict[tuple[str, ...], int] = defaultdict(int)
        for series, value in values.items():
            summed[(*self._labels(series[0], series[1]), *series[2:])] += value
        for labels, value in sorted(summed.items()):
            family.add_metric(list(labels), value)
        return family

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            triggered = dict(self._triggered)
            skipped = dict(self._skipped)
            concurrency = dict(self._concurrency)
            missed = dict(self._missed)
            lost = dict(self._lost)
            spawn_errors = dict(self._spawn_errors)
            last_success = dict(self._last_success)
            stopped = set(self._stopped)
            spec_errors, expression_errors = self._spec_errors, self._expression_errors
        fleet = list(self._fleet.gauges()) if self._fleet else []
        # Every CronWorkflow has its counters from the start, at zero: a series that appears
        # only at its first increment is invisible to increase() and rate().
        for cw in fleet:
            labels = (cw.namespace, cw.name)
            triggered.setdefault(labels, 0)
            spawn_errors.setdefault(labels, 0)
            for reason in MissedReason:
                missed.setdefault((*labels, reason.value), 0)
            for lost_reason in LostReason:
                lost.setdefault((*labels, lost_reason.value), 0)
        yield self._counter(
            "cronwf_triggered",
            "Ticks that passed every policy and reached submission.",
            triggered,
        )
        yield self._counter(
            "cronwf_skipped", "Instants decided and not run, by reason.", skipped, "reason"
        )
        yield self._counter(
            "cronwf_concurrencypolicy_triggered",
            "Ticks where Forbid skipped or Replace terminated active runs.",
            concurrency,
            "policy",
        )
        yield self._counter(
            "cronwf_missed",
            "Instants that passed while nobody was ticking, by reason.",
            missed,
            "reason",
        )
        yield self._counter(
            "cronwf_lost",
            "Runs given up on because nobody could observe their end (their replica died or "
            "was cut off, or a claimed spawn never happened), by reason.",
            lost,
            "reason",
        )
        yield self._counter(
            "cronwf_spawn_errors",
            "Workflow creations that failed (SubmissionError).",
            spawn_errors,
        )
        yield CounterMetricFamily(
            "cronwf_spec_errors", "Invalid CronWorkflow specs found.", value=spec_errors
        )
        yield CounterMetricFamily(
            "cronwf_expression_errors",
            "when or stopStrategy expressions that failed to evaluate.",
            value=expression_errors,
        )
        yield from self._fleet_gauges(fleet, last_success, stopped)
        if self._local_runs is not None:
            yield from _local_run_metrics(*self._local_runs.local_runs())

    def _fleet_gauges(
        self,
        gauges: list[CronWorkflowGauges],
        last_success: dict[_Labels, float],
        stopped: set[_Labels],
    ) -> Iterator[Metric]:
        label_names = self._label_names()
        families = {
            "next": GaugeMetricFamily(
                "cronwf_next_schedule_time_seconds",
                "Unix time of the next scheduled instant.",
                labels=label_names,
            ),
            "last": GaugeMetricFamily(
                "cronwf_last_schedule_time_seconds",
                "Unix time of the last instant a Workflow was spawned for.",
                labels=label_names,
            ),
            "success": GaugeMetricFamily(
                "cronwf_last_success_time_seconds",
                "Unix time the last Workflow that succeeded finished.",
                labels=label_names,
            ),
            "interval": GaugeMetricFamily(
                "cronwf_expected_interval_seconds",
                "Longest gap between consecutive scheduled instants.",
                labels=label_names,
            ),
            "stopped": GaugeMetricFamily(
                "cronwf_stopped", "1 when the stop strategy stopped it.", labels=label_names
            ),
            "suspended": GaugeMetricFamily(
                "cronwf_suspended", "1 when spec.suspend is true.", labels=label_names
            ),
        }
        states: dict[str, int] = defaultdict(int)
        leader = self._fleet.is_leader() if self._fleet else False
        aggregate: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
        for cw in gauges:
            states[cw.state] += 1
            labels = self._labels(cw.namespace, cw.name)
            key = (cw.namespace, cw.name)
            values = {
                "next": cw.next_schedule_time,
                "last": cw.last_schedule_time,
                "success": _latest(last_success.get(key), cw.last_success_time),
                "interval": cw.expected_interval,
                "stopped": 1.0 if cw.state == "stopped" or key in stopped else 0.0,
                "suspended": 1.0 if cw.state == "suspended" else 0.0,
            }
            for metric, value in values.items():
                if value is None:
                    continue
                current = aggregate[metric].get(labels)
                # Without the name label, one series stands for a namespace: the soonest next
                # instant, the latest times, the longest interval, the number stopped.
                if current is None:
                    aggregate[metric][labels] = value
                elif metric == "next":
                    aggregate[metric][labels] = min(current, value)
                elif metric in ("stopped", "suspended"):
                    aggregate[metric][labels] = current + value
                else:
                    aggregate[metric][labels] = max(current, value)
        for metric, family in families.items():
            for labels, value in sorted(aggregate[metric].items()):
                family.add_metric(list(labels), value)
            yield family
        fleet = GaugeMetricFamily(
            "cronwf_cronworkflows", "CronWorkflows by state.", labels=["state"]
        )
        for state in ("active", "suspended", "stopped", "invalid"):
            fleet.add_metric([state], states.get(state, 0))
        yield fleet
        yield GaugeMetricFamily(
            "cronwf_is_leader", "1 when this replica is acting.", value=1.0 if leader else 0.0
        )
        errors = self._fleet.manifest_errors() if self._fleet else {}
        manifest_errors = GaugeMetricFamily(
            "cronwf_manifest_errors",
            "Manifest folders that cannot be listed (listing) and manifests that fail to load "
            "(file), now.",
            labels=["kind"],
        )
        for kind in _MANIFEST_ERROR_KINDS:
            manifest_errors.add_metric([kind], errors.get(kind, 0))
        yield manifest_errors


def _local_run_metrics(running: int, waiting: int, refused: int) -> Iterator[Metric]:
    runs = GaugeMetricFamily(
        "cronwf_local_runs",
        "Local runs executing (running) and spawned but waiting for a slot (waiting).",
        labels=["state"],
    )
    runs.add_metric(["running"], running)
    runs.add_metric(["waiting"], waiting)
    yield runs
    yield CounterMetricFamily(
        "cronwf_local_runs_refused",
        "Spawned local runs that ended Error at once: --max-local-runs were running and "
        "--max-waiting-local-runs waiting.",
        value=refused,
    )


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None
