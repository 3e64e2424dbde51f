"""How fast ``cronwf serve`` decides and records ticks, with a real Redis and the real timer.

Everything below the sink is production code: the manifests folder is read by the file source,
:class:`scheduler.runtime.service.Service` holds the catalog and the APScheduler :class:`Timer`, the
timer's thread pool calls :meth:`Service.on_due`, the :class:`Engine` decides each tick and
writes it to :class:`RedisHistory` (fenced by a :class:`RedisLeaderLock`, as ``serve
--redis-url`` builds them), metrics and the event log observe every event (logging at INFO, as
``serve`` does by default, into a log file of the child). Only the sink is replaced: a
:class:`RecordingSink` whose ``spawn`` appends ``(key, scheduled_at, time.time())`` to a list
and returns True, so no process is started and no API is called. The engine is a thin
subclass of the real one that timestamps each tick on entry and exit, and a recording
observer timestamps each ``Spawned`` event: the engine emits it right after the spawn was
written to Redis, so that time is "recorded".

Each scenario runs in a fresh child process (``python -m bench.serve_bench --child ...``) so
that its CPU time and peak RSS are its own; the parent starts a private ``redis-server`` on a
free port (never the machine's 6379), empties it before each scenario, stops it at the end,
prints a table and writes ``bench/results/serve.json``.

Scenarios (targets of the issue):

1. **burst**: N CronWorkflows on ``* * * * *`` (time zones rotate among none, UTC, Paris,
   New York and Kolkata: the same instants) are all due at the first minute boundary after
   the service has started. Measured from that instant: the first and last timer fire, the
   spawn lag of every tick (sink call minus instant), the time until every instant was
   decided and until the last spawn was recorded in Redis (target: all N spawned and
   recorded within 5 s), throughput (decisions / time to the last one), process CPU (and in
   cores) and Redis CPU over the burst, and the peak RSS of the process. Run with 1 timer
   worker (the default of ``serve --workers``) and 8. Afterwards every CronWorkflow's
   cursor and run record are checked in Redis. An instant the timer fires more than
   ``late_after`` (5 s) late goes through catch-up, which, with no ``startingDeadlineSeconds``
   (these manifests set none, like most), records it ``Missed``: the table counts those.
2. **spread**: N CronWorkflows that fire about once a minute at different seconds. Cron is
   minute-granular and ``@every d`` fires at the Unix times that are multiples of ``d``, so
   the only sub-minute spread the dialect allows is a mix of ``@every`` periods. We use 17
   periods from 37 s to 89 s that are pairwise coprime (see :data:`SPREAD_PERIODS`), N/17
   CronWorkflows each: a group fires together at each multiple of its period, two groups
   coincide only when their product divides the second (about 4 % of seconds), and on
   average a CronWorkflow fires 1.06 times a minute. That is burstier than the ideal of N/60
   every second (each busy second has N/17 ticks), so the table also shows the ticks due per
   busy second. Over a window of wall time (120 s by default) every spawn's lag gives
   p50/p90/p99/max (target: p99 < 250 ms), with the CPU used (in cores) and the RSS sampled
   every half second (target: < 300 MB at 10,000). Which groups coincide in a window
   depends on when it starts: over a day, 260 seconds have three groups due together (one
   120 s window in three contains one) and 16 have four. ``--coinciding K`` starts the
   window 10 s before the next second where K groups coincide (up to half an hour of
   waiting), to measure such a window on purpose.

Each result also says where start-up went (loading the manifests; taking the lead, which
syncs and catches up every CronWorkflow; whether the lead was lost meanwhile), how long each
catalog diff of the 2 s manifest poll held the service lock, the garbage collections during
the measurement, and the machine's load average (other processes skew every figure); the
JSON names the commit measured.

``--quick`` is a smoke run (1,000 CronWorkflows, 1 worker, a 30 s window); ``--count``
changes the largest fleet, ``--workers`` and ``--window`` the other knobs; ``--profile``
runs one burst with every thread under cProfile and prints where the time goes (cProfile
slows everything down: use it for proportions, not figures).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import redis

from policies.decision import CronWorkflow
from policies.spec import CronWorkflowSpec
from scheduler.adapters.redis.history import RedisHistory, connect
from scheduler.adapters.redis.leadership import RedisLeaderLock
from scheduler.core.engine import Engine, Event, Observer, Spawned, TickResult
from scheduler.runtime.service import Service, ServiceConfig
from scheduler.telemetry.logs import configure_logging

P = ParamSpec("P")
R = TypeVar("R")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"

BURST_TARGET_SECONDS = 5.0
LAG_P99_TARGET_SECONDS = 0.250
RSS_TARGET_MB = 300.0

COINCIDING_SEARCH_SECONDS = 1_800
"""How far ahead ``--coinciding`` looks for its second."""
SPREAD_PERIODS = (37, 41, 43, 47, 49, 53, 55, 57, 59, 61, 62, 67, 71, 73, 79, 83, 89)
"""Pairwise coprime ``@every`` periods (seconds): the largest such set in [36 s, 96 s]."""

ZONES = ("", "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")
NAMESPACES = 10
DOCUMENTS_PER_FILE = 1_000
STARTUP_TIMEOUT = 300.0
DRAIN_TIMEOUT = 45.0
"""Seconds to wait for the last decision (a burst must be verified before the next minute)."""


# --------------------------------------------------------------------------------------------
# Manifests


def period_of(index: int) -> int:
    """The ``@every`` period of the spread CronWorkflow number ``index``."""
    return SPREAD_PERIODS[index % len(SPREAD_PERIODS)]


def manifest(index: int, schedule: str) -> str:
    """One CronWorkflow with a workflow spec like a real one (parameters, env, resources)."""
    name = f"job-{index:05d}"
    namespace = f"team-{index % NAMESPACES:02d}"
    zone = ZONES[index % len(ZONES)]
    timezone = f"\n  timezone: {zone}" if zone else ""
    return f"""\
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app.kubernetes.io/part-of: reports
    team: {namespace}
spec:
  schedules: ["{schedule}"]{timezone}
  concurrencyPolicy: Allow
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 1
  workflowMetadata:
    labels:
      cronwf.example.com/fleet: bench
  workflowSpec:
    entrypoint: main
    serviceAccountName: reports
    arguments:
      parameters:
        - name: target
          value: {name}
    templates:
      - name: main
        inputs:
          parameters:
            - name: target
        container:
          image: registry.example.com/reports:1.4.2
          command: [python, -m, reports.run]
          args:
            - --target
            - "{{{{inputs.parameters.target}}}}"
            - --at
            - "{{{{workflow.scheduledTime}}}}"
          env:
            - name: LOG_LEVEL
              value: info
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
            limits: {{memory: 256Mi}}
"""


def write_manifests(folder: Path, count: int, scenario: str) -> None:
    """``count`` CronWorkflows in multi-document files of :data:`DOCUMENTS_PER_FILE`."""
    folder.mkdir(parents=True, exist_ok=True)
    for first in range(0, count, DOCUMENTS_PER_FILE):
        documents = [
            manifest(i, "* * * * *" if scenario == "burst" else f"@every {period_of(i)}s")
            for i in range(first, min(first + DOCUMENTS_PER_FILE, count))
        ]
        (folder / f"fleet-{first // DOCUMENTS_PER_FILE:03d}.yaml").write_text(
            "---\n".join(documents)
        )


def key_of(index: int) -> str:
    """The ``namespace/name`` of CronWorkflow number ``index`` (as :func:`manifest` names it)."""
    return f"team-{index % NAMESPACES:02d}/job-{index:05d}"


# --------------------------------------------------------------------------------------------
# The recording sink, observer and engine (the only parts that are not production code)


class RecordingSink:
    """A sink without side effects: every spawn is appended with the wall-clock time."""

    def __init__(self) -> None:
        self.spawned: list[tuple[str, datetime, float]] = []
        self.terminated: list[tuple[str, str, float]] = []
        self.since = 0.0
        """Instants before this (Unix seconds) are not kept: a long wait for a window would
        otherwise grow these lists, and the RSS measured, by tens of megabytes."""

    def spawn(self, spec: CronWorkflowSpec, scheduled_at: datetime) -> bool:
        if scheduled_at.timestamp() >= self.since:
            self.spawned.append((spec.key, scheduled_at, time.time()))
        return True

    def terminate(self, namespace: str, workflow: str) -> None:
        self.terminated.append((namespace, workflow, time.time()))


Decision = tuple[str, str, float, float, bool]
"""(event kind, key, scheduled instant in Unix seconds, time recorded, catch-up)."""


class RecordingObserver:
    """Timestamps each decision of an instant (``Spawned`` is emitted right after the spawn
    was written to Redis), counts every kind, then passes the event on to the service's own
    observers (metrics, event log)."""

    def __init__(self, then: Observer) -> None:
        self._then = then
        self.decisions: list[Decision] = []
        self.decided: Counter[float] = Counter()
        """Decisions per scheduled instant."""
        self.kinds: Counter[str] = Counter()
        self.since = 0.0
        """Decisions of instants before this (Unix seconds) are counted, not kept."""
        self._guard = threading.Lock()

    def emit(self, event: Event) -> None:
        scheduled_at: datetime | None = getattr(event, "scheduled_at", None)
        with self._guard:
            self.kinds[event.kind] += 1
            if scheduled_at is not None and scheduled_at.timestamp() >= self.since:
                at = scheduled_at.timestamp()
                late = isinstance(event, Spawned) and event.catch_up
                self.decisions.append((event.kind, event.key, at, time.time(), late))
                self.decided[at] += 1
        self._then.emit(event)

    def of(self, instants: Callable[[str, float], bool]) -> list[Decision]:
        """The decisions of the (key, instant) pairs that ``instants`` accepts."""
        with self._guard:
            return [d for d in self.decisions if instants(d[1], d[2])]


@dataclass
class TimedEngine(Engine):
    """The real engine; each tick is timestamped on entry and exit with its outcome (the
    ticks of a batch share the batch's entry and exit)."""

    ticks: list[tuple[str, float, float, float, str]] = field(default_factory=list)
    """(key, scheduled instant in Unix seconds, entered, left, result kind)."""
    catch_ups: list[tuple[str, float, int]] = field(default_factory=list)
    since: float = 0.0
    """Ticks of instants before this (Unix seconds) are not kept."""
    _batching: threading.local = field(default_factory=threading.local)

    def tick(
        self, cron_workflow: CronWorkflow, scheduled_at: datetime, now: datetime
    ) -> TickResult:
        entered = time.time()
        result = super().tick(cron_workflow, scheduled_at, now)
        if getattr(self._batching, "inside", False):
            return result  # a tick the batch left for later: the batch records it
        if scheduled_at.timestamp() >= self.since:
            self.ticks.append(
                (cron_workflow.key, scheduled_at.timestamp(), entered, time.time(), result.kind)
            )
        return result

    def tick_many(
        self, ticks: Sequence[tuple[CronWorkflow, datetime]], now: datetime
    ) -> list[TickResult]:
        entered = time.time()
        self._batching.inside = True
        try:
            results = super().tick_many(ticks, now)
        finally:
            self._batching.inside = False
        left = time.time()
        self.ticks.extend(
            (cron_workflow.key, scheduled_at.timestamp(), entered, left, result.kind)
            for (cron_workflow, scheduled_at), result in zip(ticks, results, strict=True)
            if scheduled_at.timestamp() >= self.since
        )
        return results

    def catch_up(self, cron_workflow: CronWorkflow, now: datetime) -> list[TickResult]:
        results = super().catch_up(cron_workflow, now)
        self.catch_ups.append((cron_workflow.key, time.time(), len(results)))
        return results


# --------------------------------------------------------------------------------------------
# Figures


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max (nearest rank) and the mean, in milliseconds; empty when no values."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return {
        "p50_ms": round(1000 * rank(0.50), 1),
        "p90_ms": round(1000 * rank(0.90), 1),
        "p99_ms": round(1000 * rank(0.99), 1),
        "max_ms": round(1000 * ordered[-1], 1),
        "mean_ms": round(1000 * statistics.fmean(ordered), 1),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """The current resident set size (Linux ``/proc``; the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return max_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU time the Redis server has used so far (user + system)."""
    info = cast(dict[str, Any], client.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


# --------------------------------------------------------------------------------------------
# The child: one scenario in a process of its own


@dataclass(frozen=True)
class Params:
    """What the parent asks a child to run (passed as JSON on its command line)."""

    scenario: str
    count: int
    workers: int
    window: float
    redis_url: str
    manifests: str
    state_dir: str
    profile: bool = False
    coinciding: int = 0


@dataclass
class Harness:
    """A started :class:`Service` wired to the recording sink, and what it records."""

    service: Service
    engine: TimedEngine
    sink: RecordingSink
    observer: RecordingObserver
    probe: redis.Redis
    startup_seconds: float
    rss_after_start_mb: float
    phases: dict[str, list[float]]
    """Durations of each call of some of the runtime's steps (see :func:`timed`)."""
    gc: GcPauses

    def startup(self) -> dict[str, Any]:
        """Where start-up went, and whether the lead was lost (and resumed) meanwhile."""
        return {
            "total_seconds": round(self.startup_seconds, 2),
            "load_manifests_seconds": round(self.phases["reload"][0], 2),
            "take_lead_and_resume_seconds": round(self.phases["resume"][0], 2),
            "resumes": len(self.phases["resume"]),
            "step_downs": len(self.phases["step_down"]),
            "rss_after_start_mb": round(self.rss_after_start_mb, 1),
        }

    def housekeeping(self, since: float) -> dict[str, Any]:
        """What the service's own threads did meanwhile: catalog diffs (each holds the
        service lock that every tick takes), garbage collections, and the machine's load."""
        diffs = self.phases["apply"][1:]
        pauses = [pause for moment, generation, pause in self.gc.pauses if moment >= since]
        oldest = [
            pause
            for moment, generation, pause in self.gc.pauses
            if moment >= since and generation == 2
        ]
        return {
            "catalog_diffs": len(diffs),
            "catalog_diff_ms": {
                "mean": round(1000 * statistics.fmean(diffs), 1) if diffs else 0.0,
                "max": round(1000 * max(diffs, default=0.0), 1),
            },
            "gc_collections": len(pauses),
            "gc_pause_ms": {
                "total": round(1000 * sum(pauses), 1),
                "max": round(1000 * max(pauses, default=0.0), 1),
                "generation_2": len(oldest),
                "generation_2_max": round(1000 * max(oldest, default=0.0), 1),
            },
            "load_average_1m": round(os.getloadavg()[0], 2),
        }


class GcPauses:
    """Every garbage collection of the process: (wall time, generation, pause seconds)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.pauses.append((time.time(), info["generation"], pause))


def timed(method: Callable[P, R], durations: list[float]) -> Callable[P, R]:
    """``method``, appending the duration of each call to ``durations``."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - started)

    return wrapper


@contextmanager
def serving(params: Params) -> Iterator[Harness]:
    """Build the service as ``cronwf serve --redis-url`` does, swap the sink, start it."""
    client = connect(params.redis_url)
    lock = RedisLeaderLock(client, f"bench-{os.getpid()}")
    store = RedisHistory(client, fence=lock)
    config = ServiceConfig(
        manifests=(Path(params.manifests),),
        state_dir=Path(params.state_dir),
        host="127.0.0.1",
        port=0,
        workers=params.workers,
    )
    service = Service(config, store, lock)
    sink = RecordingSink()
    observer = RecordingObserver(service.engine.observer)
    engine = TimedEngine(store, sink, observer)
    service.engine = engine
    # The runtime's own steps, timed on this instance: manifest loads and catalog diffs,
    # taking the lead (sync, orphans, catch-up of every CronWorkflow), any loss of the lead.
    phases: dict[str, list[float]] = {"reload": [], "apply": [], "resume": [], "step_down": []}
    service._reload = timed(service._reload, phases["reload"])  # type: ignore[method-assign]
    service._apply = timed(service._apply, phases["apply"])  # type: ignore[method-assign]
    service._resume = timed(service._resume, phases["resume"])  # type: ignore[method-assign]
    service._step_down = timed(service._step_down, phases["step_down"])  # type: ignore[method-assign]
    probe = redis.Redis.from_url(params.redis_url, decode_responses=True)
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    started = time.perf_counter()
    service.start()
    try:
        if not service.is_leader():
            raise SystemExit("the service did not take the lead")
        loaded = service.ready().detail
        if loaded.get("cronWorkflows") != params.count or loaded.get("invalid"):
            raise SystemExit(f"the service loaded {loaded}, expected {params.count} valid")
        yield Harness(
            service,
            engine,
            sink,
            observer,
            probe,
            time.perf_counter() - started,
            rss_mb(),
            phases,
            pauses,
        )
    finally:
        gc.callbacks.remove(pauses)
        service.shutdown()
        client.close()
        probe.close()


def run_burst(params: Params) -> dict[str, Any]:
    with serving(params) as harness:
        instant = (math.floor(time.time() / 60) + 1) * 60.0
        wait = instant - time.time()
        sleep_until(instant - 0.2)
        wall_before, cpu_before = time.time(), cpu_seconds()
        redis_before = redis_cpu_seconds(harness.probe)
        deadline = instant + DRAIN_TIMEOUT
        while harness.observer.decided[instant] < params.count and time.time() < deadline:
            time.sleep(0.01)
        wall = time.time() - wall_before
        cpu_used = cpu_seconds() - cpu_before
        redis_used = redis_cpu_seconds(harness.probe) - redis_before
        peak_rss, now_rss = max(max_rss_mb(), rss_mb()), rss_mb()
        verified = verify_in_redis(harness.probe, params.count, instant)
        decisions = harness.observer.of(lambda _, at: at == instant)
        spawns = [t - instant for _, at, t in harness.sink.spawned if at.timestamp() == instant]
        ticks = [tick for tick in harness.engine.ticks if tick[1] == instant]
        late = sum(1 for _, moment, _ in harness.engine.catch_ups if moment >= instant)
        startup, meanwhile = harness.startup(), harness.housekeeping(wall_before)
    decided = [t - instant for _, _, _, t, _ in decisions]
    recorded = [t - instant for kind, _, _, t, _ in decisions if kind == "Spawned"]
    kinds = Counter(
        f"{kind} (catch-up)" if catch_up else kind for kind, _, _, _, catch_up in decisions
    )
    all_decided = max(decided, default=math.inf)
    all_recorded = max(recorded, default=math.inf)
    return {
        "scenario": "burst",
        "count": params.count,
        "workers": params.workers,
        "startup": startup,
        "waited_for_instant_seconds": round(wait, 1),
        "instant": datetime.fromtimestamp(instant, UTC).isoformat(),
        "decided": len(decided),
        "decisions": dict(kinds),
        "spawned": len(spawns),
        "verified_in_redis": verified,
        "late_ticks_routed_to_catch_up": late,
        "first_timer_fire_seconds": rounded(min((t[2] for t in ticks), default=math.nan) - instant),
        "last_timer_fire_seconds": rounded(max((t[2] for t in ticks), default=math.nan) - instant),
        "first_spawn_seconds": rounded(min(spawns, default=math.nan)),
        "all_decided_seconds": rounded(all_decided),
        "all_spawns_recorded_seconds": rounded(all_recorded),
        "throughput_ticks_per_second": round(len(decided) / all_decided, 1) if decided else 0.0,
        "spawn_lag": percentiles(spawns),
        "tick_duration": percentiles([left - entered for _, _, entered, left, _ in ticks]),
        "cpu_seconds": round(cpu_used, 2),
        "cpu_cores": round(cpu_used / wall, 2),
        "redis_cpu_seconds": round(redis_used, 2),
        "rss_after_burst_mb": round(now_rss, 1),
        "max_rss_mb": round(peak_rss, 1),
        "meanwhile": meanwhile,
        "target_met": len(spawns) == params.count
        and verified == params.count
        and all_recorded <= BURST_TARGET_SECONDS,
    }


def rounded(seconds: float) -> float | None:
    """Milliseconds precision; None (JSON null) when there was nothing to measure."""
    return round(seconds, 3) if math.isfinite(seconds) else None


def verify_in_redis(client: redis.Redis, count: int, instant: float) -> int:
    """How many CronWorkflows have their cursor at ``instant`` and a spawn recorded for it."""
    encoded = str(int(instant))
    pipeline = client.pipeline(transaction=False)
    for index in range(count):
        base = f"cronwf:{{{key_of(index)}}}"
        pipeline.hget(f"{base}:state", "cursor")
        pipeline.hget(f"{base}:runs", encoded)
    replies = pipeline.execute()
    verified = 0
    for cursor, run in zip(replies[::2], replies[1::2], strict=True):
        if cursor == encoded and run and json.loads(run).get("decision") == "Spawned":
            verified += 1
    return verified


def groups_due(second: int) -> int:
    """How many period groups fire at Unix second ``second``."""
    return sum(1 for period in SPREAD_PERIODS if second % period == 0)


def window_start(now: float, coinciding: int) -> float:
    """The start of the spread window: two seconds from ``now``, or, for ``coinciding`` of
    2 or more, 10 s before the first second after that where that many groups fire."""
    earliest = math.ceil(now) + 2
    if coinciding < 2:
        return float(earliest)
    for second in range(earliest + 10, earliest + 10 + COINCIDING_SEARCH_SECONDS):
        if groups_due(second) >= coinciding:
            return float(second - 10)
    raise SystemExit(f"no second with {coinciding} groups due within half an hour")


def run_spread(params: Params) -> dict[str, Any]:
    with serving(params) as harness:
        begin = window_start(time.time(), params.coinciding)
        harness.sink.since = harness.observer.since = harness.engine.since = begin - 1
        end = begin + params.window
        expected: set[tuple[str, float]] = set()
        for index in range(params.count):
            period = period_of(index)
            first = math.ceil(begin / period) * period
            expected.update((key_of(index), float(t)) for t in range(first, int(end), period))
        due = Counter(at for _, at in expected)
        sleep_until(begin - 0.2)
        cpu_before, redis_before = cpu_seconds(), redis_cpu_seconds(harness.probe)
        samples: list[float] = []
        while time.time() < end:
            samples.append(rss_mb())
            time.sleep(0.5)
        cpu_used = cpu_seconds() - cpu_before
        redis_used = redis_cpu_seconds(harness.probe) - redis_before
        deadline = time.time() + DRAIN_TIMEOUT
        while sum(harness.observer.decided[at] for at in due) < len(expected):
            if time.time() > deadline:
                break
            time.sleep(0.1)
        peak_rss = max(max_rss_mb(), *samples)
        decisions = harness.observer.of(lambda key, at: (key, at) in expected)
        spawned_at = [
            (at.timestamp(), t)
            for key, at, t in harness.sink.spawned
            if (key, at.timestamp()) in expected
        ]
        fires = [e - at for key, at, e, _, _ in harness.engine.ticks if (key, at) in expected]
        startup, meanwhile = harness.startup(), harness.housekeeping(begin)
    kinds = Counter(
        f"{kind} (catch-up)" if catch_up else kind for kind, _, _, _, catch_up in decisions
    )
    recorded = [t - at for kind, _, at, t, _ in decisions if kind == "Spawned"]
    spawns = [t - at for at, t in spawned_at]
    lag = percentiles(spawns)
    # Instants where one period group fires, and those where several coincide.
    group = max(1, params.count // len(SPREAD_PERIODS))
    alone = [t - at for at, t in spawned_at if due[at] < 2 * group]
    return {
        "scenario": "spread",
        "count": params.count,
        "workers": params.workers,
        "window_seconds": params.window,
        "startup": startup,
        "periods_seconds": list(SPREAD_PERIODS),
        "expected_ticks": len(expected),
        "decided": len(decisions),
        "decisions": dict(kinds),
        "spawned": len(spawns),
        "busy_seconds": len(due),
        "ticks_per_busy_second": {
            "mean": round(statistics.fmean(due.values()), 1) if due else 0.0,
            "max": max(due.values(), default=0),
        },
        "ticks_per_second": round(len(expected) / params.window, 1),
        "spawn_lag": lag,
        "spawn_lag_one_group_due": percentiles(alone),
        "spawn_lag_groups_coinciding": percentiles(
            [t - at for at, t in spawned_at if due[at] >= 2 * group]
        ),
        "timer_fire_lag": percentiles(fires),
        "record_lag": percentiles(recorded),
        "cpu_seconds": round(cpu_used, 2),
        "cpu_cores": round(cpu_used / params.window, 3),
        "redis_cpu_seconds": round(redis_used, 2),
        "rss_mb": {
            "mean": round(statistics.fmean(samples), 1) if samples else 0.0,
            "max": round(max(samples, default=0.0), 1),
        },
        "max_rss_mb": round(peak_rss, 1),
        "meanwhile": meanwhile,
        "target_met": len(spawns) == len(expected)
        and lag.get("p99_ms", math.inf) < 1000 * LAG_P99_TARGET_SECONDS
        and (params.count < 10_000 or peak_rss < RSS_TARGET_MB),
    }


class ThreadProfiles:
    """cProfile in every thread started while installed (cProfile sees one thread only)."""

    def __init__(self) -> None:
        self.profiles: list[tuple[str, cProfile.Profile]] = []
        self._run = threading.Thread.run

    def install(self) -> None:
        original, profiles = self._run, self.profiles

        def run(thread: threading.Thread) -> None:
            profile = cProfile.Profile()
            profiles.append((thread.name, profile))
            profile.enable()
            try:
                original(thread)
            finally:
                profile.disable()

        threading.Thread.run = run  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        threading.Thread.run = self._run  # type: ignore[method-assign]

    def report(self, top: int = 40) -> str:
        """Cumulative and own time per thread group (worker pool, APScheduler, ...)."""
        groups: dict[str, list[cProfile.Profile]] = {}
        for name, profile in self.profiles:
            group = name.rsplit("_", 1)[0] if name.startswith("cronwf-tick") else name
            groups.setdefault(group, []).append(profile)
        text = io.StringIO()
        for group, profiles in groups.items():
            stats = pstats.Stats(profiles[0], stream=text)
            for profile in profiles[1:]:
                stats.add(profile)
            if stats.total_tt < 0.05:  # type: ignore[attr-defined]
                continue
            text.write(f"\n===== threads {group} ({len(profiles)}) =====\n")
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top)
        return text.getvalue()


def run_profile(params: Params) -> dict[str, Any]:
    """One burst with every thread under cProfile; the report goes to stderr's log file."""
    profiles = ThreadProfiles()
    profiles.install()
    main = cProfile.Profile()
    try:
        main.enable()
        result = run_burst(params)
        main.disable()
    finally:
        profiles.uninstall()
    report = profiles.report()
    text = io.StringIO()
    pstats.Stats(main, stream=text).sort_stats("cumulative").print_stats(30)
    return {**result, "profile": report + "\n===== main thread =====\n" + text.getvalue()}


def child(params: Params) -> None:
    # As ``serve`` does by default: text lines at INFO, to stderr (the parent's log file).
    configure_logging("text", "INFO")
    if params.profile:
        result = run_profile(params)
    elif params.scenario == "burst":
        result = run_burst(params)
    else:
        result = run_spread(params)
    json.dump(result, sys.stdout)


# --------------------------------------------------------------------------------------------
# The parent: a private redis-server, one child per scenario, the table and the JSON


class RedisProcess:
    """A ``redis-server`` of our own on 127.0.0.1 and a free port, without persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        directory.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": str(directory),
            "logfile": str(directory / "redis.log"),
            "daemonize": "no",
        }
        arguments = [arg for name, value in options.items() for arg in (f"--{name}", value)]
        self._process = subprocess.Popen(
            [binary, *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client.ping():
                    break
            except redis.exceptions.RedisError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"redis-server on port {self.port} did not start") from None
            time.sleep(0.02)
        self.version = str(cast(dict[str, Any], self.client.info("server"))["redis_version"])

    def stop(self) -> None:
        self.client.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def run_scenario(params: Params, log: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.serve_bench", "--child", json.dumps(asdict(params))]
    with log.open("w") as stderr:
        done = subprocess.run(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=STARTUP_TIMEOUT
            + 60
            + params.window
            + 2 * DRAIN_TIMEOUT
            + (COINCIDING_SEARCH_SECONDS if params.coinciding > 1 else 0),
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise SystemExit(f"the {params.scenario} child failed ({done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def milliseconds(lag: dict[str, float], *names: str) -> str:
    return "/".join(f"{lag[name]:.0f}" if name in lag else "-" for name in names)


def summary(result: dict[str, Any]) -> str:
    """One line about a finished scenario, for the progress output."""
    lag = result["spawn_lag"]
    start = result["startup"]
    common = (
        f"spawn lag p99 {lag.get('p99_ms', math.nan):.0f} ms; start-up "
        f"{start['total_seconds']:.1f} s (manifests {start['load_manifests_seconds']:.1f} s, "
        f"lead {start['take_lead_and_resume_seconds']:.1f} s)"
    )
    if result["scenario"] == "burst":
        return (
            f"{result['spawned']:,} spawned, {result['decisions'].get('Missed', 0):,} missed, "
            f"last spawn recorded at +{result['all_spawns_recorded_seconds']} s; {common}"
        )
    return f"{result['spawned']:,}/{result['expected_ticks']:,} spawned; {common}"


def print_tables(results: Sequence[dict[str, Any]]) -> None:
    """The figures of every scenario, one table per kind."""
    bursts = [r for r in results if r["scenario"] == "burst"]
    spreads = [r for r in results if r["scenario"] == "spread"]
    if bursts:
        print(
            f"\nburst: N CronWorkflows due at one instant (target: all recorded within "
            f"{BURST_TARGET_SECONDS:.0f} s)"
        )
        header = (
            f"{'N':>7} {'workers':>7} {'spawned':>8} {'missed':>7} {'1st fire':>8} "
            f"{'all rec.':>8} {'ticks/s':>8} {'lag p50/p90/p99/max ms':>24} {'cpu s':>6} "
            f"{'cores':>5} {'redis s':>7} {'rss MB':>6} {'start s':>7}  target"
        )
        print(header)
        for r in bursts:
            recorded = r["all_spawns_recorded_seconds"]
            print(
                f"{r['count']:>7,} {r['workers']:>7} {r['spawned']:>8,} "
                f"{r['decisions'].get('Missed', 0):>7,} {r['first_timer_fire_seconds'] or 0:>8.3f} "
                f"{recorded if recorded is not None else math.nan:>8.2f} "
                f"{r['throughput_ticks_per_second']:>8.0f} "
                f"{milliseconds(r['spawn_lag'], 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'):>24} "
                f"{r['cpu_seconds']:>6.1f} {r['cpu_cores']:>5.2f} {r['redis_cpu_seconds']:>7.2f} "
                f"{r['max_rss_mb']:>6.0f} {r['startup']['total_seconds']:>7.1f}  "
                f"{'met' if r['target_met'] else 'MISSED'}"
            )
    if spreads:
        print(
            f"\nspread: @every 37s..89s (pairwise coprime), lag = spawn - instant "
            f"(target: p99 < {1000 * LAG_P99_TARGET_SECONDS:.0f} ms; RSS < {RSS_TARGET_MB:.0f} MB "
            "at 10,000)"
        )
        header = (
            f"{'N':>7} {'workers':>7} {'window':>6} {'spawned/due':>13} {'due/s':>6} "
            f"{'per busy s':>10} {'lag p50/p90/p99/max ms':>24} {'p99 1 group':>11} "
            f"{'cores':>6} {'redis s':>7} "
            f"{'rss MB':>6} {'peak MB':>7}  target"
        )
        print(header)
        for r in spreads:
            busy = r["ticks_per_busy_second"]
            print(
                f"{r['count']:>7,} {r['workers']:>7} {r['window_seconds']:>6.0f} "
                f"{r['spawned']:>6,}/{r['expected_ticks']:<6,} {r['ticks_per_second']:>6.0f} "
                f"{busy['mean']:>5.0f}/{busy['max']:<4} "
                f"{milliseconds(r['spawn_lag'], 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'):>24} "
                f"{milliseconds(r['spawn_lag_one_group_due'], 'p99_ms'):>11} "
                f"{r['cpu_cores']:>6.2f} {r['redis_cpu_seconds']:>7.2f} "
                f"{r['rss_mb']['mean']:>6.0f} {r['max_rss_mb']:>7.0f}  "
                f"{'met' if r['target_met'] else 'MISSED'}"
            )


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it (figures move with
    the code: keep them next to the commit they describe)."""

    def git(*arguments: str) -> str:
        done = subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "scheduler", "policies")
    return {"commit": commit or None, "uncommitted_implementation_changes": bool(changed)}


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve_bench", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (1,000, 1 worker, 30 s)")
    parser.add_argument("--count", type=int, help="the largest fleet (default 10,000)")
    parser.add_argument("--workers", type=int, nargs="+", help="timer workers (default 1 8)")
    parser.add_argument(
        "--coinciding",
        type=int,
        default=0,
        help="start the spread window 10 s before a second where this many groups coincide",
    )
    parser.add_argument("--window", type=float, help="spread window in seconds (default 120)")
    parser.add_argument("--only", choices=("burst", "spread"), help="run one scenario only")
    parser.add_argument("--profile", action="store_true", help="profile one burst instead")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON file to write")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.child:
        child(Params(**json.loads(args.child)))
        return
    count = args.count or (1_000 if args.quick else 10_000)
    workers = args.workers or ([1] if args.quick else [1, 8])
    window = args.window or (30.0 if args.quick else 120.0)
    spread_counts = sorted({min(1_000, count), count})
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as temporary:
        tmp = Path(temporary)
        server = RedisProcess(tmp / "redis")
        plan: list[Params] = []

        def params(scenario: str, size: int, threads: int, profile: bool = False) -> Params:
            folder = tmp / f"manifests-{scenario}-{size}"
            if not folder.exists():
                write_manifests(folder, size, scenario)
            state = tmp / f"state-{len(plan)}"
            return Params(
                scenario,
                size,
                threads,
                window,
                server.url,
                str(folder),
                str(state),
                profile,
                args.coinciding,
            )

        if args.profile:
            plan.append(params("burst", count, workers[0], profile=True))
        else:
            if args.only in (None, "burst"):
                plan.extend(params("burst", count, threads) for threads in workers)
            if args.only in (None, "spread"):
                plan.extend(params("spread", size, workers[0]) for size in spread_counts)
        results: list[dict[str, Any]] = []
        started = time.perf_counter()
        try:
            for number, scenario in enumerate(plan):
                server.client.flushall()
                log = tmp / f"{scenario.scenario}-{number}.log"
                print(
                    f"[{time.perf_counter() - started:5.0f} s] {scenario.scenario}: "
                    f"{scenario.count:,} CronWorkflows, {scenario.workers} workers ...",
                    flush=True,
                )
                result = run_scenario(scenario, log)
                results.append(result)
                if "profile" in result:
                    print(result.pop("profile"))
                print(f"  {summary(result)}", flush=True)
        finally:
            server.stop()
    print_tables(results)
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "redis": server.version,
        },
        "code": code_version(),
        "targets": {
            "burst_all_recorded_seconds": BURST_TARGET_SECONDS,
            "spread_p99_lag_ms": 1000 * LAG_P99_TARGET_SECONDS,
            "spread_rss_mb_at_10000": RSS_TARGET_MB,
        },
        "mode": "quick" if args.quick else "full",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "burst": [r for r in results if r["scenario"] == "burst"],
        "spread": [r for r in results if r["scenario"] == "spread"],
    }
    if not args.profile:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {os.path.relpath(args.output)}")


if __name__ == "__main__":
    main()
