"""How fast `policies.schedule` computes instants, against the targets the tick depends on.

The scheduler asks every CronWorkflow for its next instant at every tick, so the cost of one
"next instant" bounds how many CronWorkflows one replica can hold. Three measurements:

(a) next-instant computations per second for ``*/5 * * * *`` in UTC and ``0 2 * * 1-5`` in
    America/New_York, through the Unix-seconds API and the datetime API, with croniter's
    ``get_next`` on the same expressions for comparison;
(b) the next instant of 100,000 CronWorkflows with a realistic mix of expressions and zones,
    building each `Schedule` (parse + zone) included, from cold caches and again warm;
(c) ``between_ts`` over a year of ``* * * * *`` (525,600 instants).

Everything runs on one core. Results are printed as a table and written as JSON to
``bench/results/schedule.json``. Run with ``python -m bench.schedule_bench``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

from croniter import croniter

from policies.schedule import Schedule, parse_expression

RESULTS = Path(__file__).resolve().parent / "results" / "schedule.json"

TARGET_NEXT_PER_SECOND = 20_000
TARGET_FLEET_SECONDS = 10.0
FLEET_SIZE = 100_000
YEAR_OF_MINUTES = 525_600

START = datetime(2024, 1, 1, tzinfo=UTC)
YEAR = 365 * 86_400
MIN_SECONDS = 1.0  # each rate is measured over at least this long


@dataclass
class Rate:
    """One throughput measurement."""

    name: str
    expression: str
    timezone: str
    calls: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def microseconds_per_call(self) -> float:
        return 1e6 * self.seconds / self.calls


@dataclass
class Fleet:
    """(b): 100,000 CronWorkflows."""

    cronworkflows: int
    distinct_expressions: int
    distinct_zones: int
    cold_build_seconds: float
    cold_next_seconds: float
    warm_build_seconds: float
    warm_next_seconds: float
    never_fire: int

    @property
    def cold_total_seconds(self) -> float:
        return self.cold_build_seconds + self.cold_next_seconds

    @property
    def warm_total_seconds(self) -> float:
        return self.warm_build_seconds + self.warm_next_seconds


@dataclass
class Sweep:
    """(c): ``between_ts`` over a year."""

    expression: str
    timezone: str
    instants: int
    seconds: float


@dataclass
class Report:
    rates: list[Rate] = field(default_factory=list)
    fleet: Fleet | None = None
    sweeps: list[Sweep] = field(default_factory=list)


def pin_to_one_core() -> str:
    """Run on one CPU so the figures do not depend on how many the machine has."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    return "not pinned (no sched_setaffinity)"


def measure(name: str, expression: str, timezone: str, call: Callable[[int], object]) -> Rate:
    """Calls ``call(i)`` for i = 0, 1, ... in batches until ``MIN_SECONDS`` have passed."""
    gc.collect()
    calls, elapsed, batch = 0, 0.0, 1_000
    while elapsed < MIN_SECONDS:
        begin = time.perf_counter()
        for i in range(calls, calls + batch):
            call(i)
        elapsed += time.perf_counter() - begin
        calls += batch
        batch = min(batch * 2, 200_000)
    return Rate(name, expression, timezone, calls, elapsed)


# --------------------------------------------------------------------------------------------
# (a) next instant, one expression


NEXT_CASES = (("*/5 * * * *", ""), ("0 2 * * 1-5", "America/New_York"))
QUERIES = 400_000
QUERY_STEP = 433  # seconds: 400,000 queries 7 min 13 s apart span about 5.5 years


def cronwf_ts(schedule: Schedule, queries: Sequence[int]) -> Callable[[int], object]:
    count = len(queries)

    def call(i: int) -> object:
        return schedule.next_after_ts(queries[i % count])

    return call


def cronwf_datetime(schedule: Schedule, queries: Sequence[datetime]) -> Callable[[int], object]:
    count = len(queries)

    def call(i: int) -> object:
        return schedule.next_after(queries[i % count])

    return call


def croniter_chained(expression: str, start: datetime) -> Callable[[int], object]:
    iterator = croniter(expression, start)

    def call(_: int) -> object:
        return iterator.get_next(datetime)

    return call


def croniter_fresh(expression: str, queries: Sequence[datetime]) -> Callable[[int], object]:
    count = len(queries)

    def call(i: int) -> object:
        return croniter(expression, queries[i % count]).get_next(datetime)

    return call


def next_rates() -> list[Rate]:
    """Each call asks for the next instant after a new time (the queries advance through the
    years), the question a tick asks of every CronWorkflow."""
    rates: list[Rate] = []
    start_ts = int(START.timestamp())
    for expression, timezone in NEXT_CASES:
        zone = ZoneInfo(timezone) if timezone else UTC
        schedule = Schedule([expression], timezone)
        queries_ts = [start_ts + i * QUERY_STEP for i in range(QUERIES)]
        queries_dt = [datetime.fromtimestamp(ts, zone) for ts in queries_ts]
        for name, call in (
            ("cronwf next_after_ts", cronwf_ts(schedule, queries_ts)),
            ("cronwf next_after (datetime)", cronwf_datetime(schedule, queries_dt)),
            ("croniter get_next, one iterator", croniter_chained(expression, queries_dt[0])),
            ("croniter new iterator + get_next", croniter_fresh(expression, queries_dt)),
        ):
            rates.append(measure(name, expression, timezone, call))
    return rates


# --------------------------------------------------------------------------------------------
# (b) a fleet of CronWorkflows


# (expression, weight): what CronWorkflow fleets look like: a few descriptors and round times
# shared by many, and "minute M of hour H" spread by hand or by templating.
COMMON_EXPRESSIONS: Sequence[tuple[str, int]] = (
    ("@hourly", 30),
    ("@daily", 40),
    ("@weekly", 6),
    ("@monthly", 6),
    ("@yearly", 1),
    ("*/5 * * * *", 40),
    ("*/10 * * * *", 20),
    ("*/15 * * * *", 25),
    ("*/30 * * * *", 15),
    ("* * * * *", 8),
    ("0 * * * *", 20),
    ("0 */2 * * *", 10),
    ("0 */6 * * *", 10),
    ("0 0 * * *", 40),
    ("0 2 * * *", 25),
    ("30 3 * * *", 15),
    ("0 9 * * 1-5", 25),
    ("0 9-17 * * mon-fri", 10),
    ("*/20 8-18 * * 1-5", 8),
    ("0 6 * * 1", 8),
    ("0 0 1 * *", 10),
    ("0 0 1 1,4,7,10 *", 3),
    ("0 0 13 * 5", 1),
    ("0 10 10,27 * */2", 1),
    ("0 12 * * sat,sun", 4),
    ("15 4 1-7 * 1", 2),
    ("@every 30s", 4),
    ("@every 5m", 6),
    ("@every 1h30m", 3),
    ("0 0 29 2 *", 1),
)

# (zone, weight): most fleets run in UTC; the rest in the zones of their teams.
ZONE_MIX: Sequence[tuple[str, int]] = (
    ("", 45),
    ("UTC", 10),
    ("America/New_York", 10),
    ("America/Los_Angeles", 8),
    ("America/Chicago", 3),
    ("America/Sao_Paulo", 2),
    ("Europe/London", 5),
    ("Europe/Berlin", 6),
    ("Europe/Paris", 3),
    ("Asia/Kolkata", 4),
    ("Asia/Tokyo", 3),
    ("Asia/Singapore", 2),
    ("Australia/Sydney", 2),
    ("Australia/Lord_Howe", 1),
    ("Pacific/Chatham", 1),
)


def fleet_specs(size: int, seed: int = 20240101) -> list[tuple[list[str], str]]:
    """``size`` CronWorkflows: 80% from the common mix, 20% with a spread minute and hour;
    one in ten has a second schedule."""
    rng = random.Random(seed)
    expressions, expression_weights = zip(*COMMON_EXPRESSIONS, strict=True)
    zones, zone_weights = zip(*ZONE_MIX, strict=True)
    specs: list[tuple[list[str], str]] = []
    for _ in range(size):
        if rng.random() < 0.8:
            schedules = [rng.choices(expressions, expression_weights)[0]]
        else:
            minute, hour = rng.randrange(60), rng.randrange(24)
            schedules = [rng.choice((f"{minute} {hour} * * *", f"{minute} * * * *"))]
        if rng.random() < 0.1:
            schedules.append(rng.choices(expressions, expression_weights)[0])
        specs.append((schedules, rng.choices(zones, zone_weights)[0]))
    return specs


def fleet() -> Fleet:
    specs = fleet_specs(FLEET_SIZE)
    now = int(datetime(2024, 3, 9, 23, 17, 42, tzinfo=UTC).timestamp())

    def run() -> tuple[float, float, int]:
        gc.collect()
        begin = time.perf_counter()
        schedules = [Schedule(expressions, timezone) for expressions, timezone in specs]
        built = time.perf_counter()
        never = sum(1 for s in schedules if s.next_after_ts(now) is None)
        done = time.perf_counter()
        return built - begin, done - built, never

    parse_expression.cache_clear()  # the cold run parses every distinct expression once
    cold_build, cold_next, never = run()
    warm_build, warm_next, _ = run()
    return Fleet(
        cronworkflows=len(specs),
        distinct_expressions=len({e for expressions, _ in specs for e in expressions}),
        distinct_zones=len({timezone for _, timezone in specs}),
        cold_build_seconds=cold_build,
        cold_next_seconds=cold_next,
        warm_build_seconds=warm_build,
        warm_next_seconds=warm_next,
        never_fire=never,
    )


# --------------------------------------------------------------------------------------------
# (c) a year of minutes


def sweeps() -> list[Sweep]:
    found: list[Sweep] = []
    start = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp())
    for timezone in ("", "America/New_York"):
        schedule = Schedule(["* * * * *"], timezone)
        gc.collect()
        begin = time.perf_counter()
        instants = sum(1 for _ in schedule.between_ts(start, start + YEAR))
        seconds = time.perf_counter() - begin
        if instants != YEAR_OF_MINUTES:
            raise AssertionError(f"expected {YEAR_OF_MINUTES} instants, got {instants}")
        found.append(Sweep("* * * * *", timezone or "UTC", instants, seconds))
    return found


# --------------------------------------------------------------------------------------------
# Output


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_report(report: Report, pinned: str) -> None:
    print(f"policies.schedule benchmark  (Python {platform.python_version()}, {pinned})")
    print()
    print(f"(a) next instant  [target >= {TARGET_NEXT_PER_SECOND:,}/s for cronwf]")
    header = f"  {'method':<34} {'expression':<14} {'zone':<18} {'calls/s':>12} {'µs/call':>9}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for rate in report.rates:
        mark = ""
        if rate.name.startswith("cronwf"):
            mark = "  " + verdict(rate.per_second >= TARGET_NEXT_PER_SECOND)
        print(
            f"  {rate.name:<34} {rate.expression:<14} {rate.timezone or 'UTC':<18} "
            f"{rate.per_second:>12,.0f} {rate.microseconds_per_call:>9.2f}{mark}"
        )
    if report.fleet is not None:
        f = report.fleet
        print()
        target = f"[target < {TARGET_FLEET_SECONDS:.0f} s]"
        print(f"(b) next instant of {f.cronworkflows:,} CronWorkflows  {target}")
        print(
            f"  {f.distinct_expressions:,} distinct expressions, {f.distinct_zones} zones, "
            f"{f.never_fire} never fire"
        )
        print(f"  {'':<6} {'build (parse+zone)':>19} {'next':>9} {'total':>9}")
        for label, build, following, total in (
            ("cold", f.cold_build_seconds, f.cold_next_seconds, f.cold_total_seconds),
            ("warm", f.warm_build_seconds, f.warm_next_seconds, f.warm_total_seconds),
        ):
            print(
                f"  {label:<6} {build:>17.3f} s {following:>7.3f} s {total:>7.3f} s  "
                f"{verdict(total < TARGET_FLEET_SECONDS)}"
            )
    print()
    print("(c) between_ts over a year")
    for sweep in report.sweeps:
        print(
            f"  {sweep.expression:<14} {sweep.timezone:<18} {sweep.instants:>9,} instants "
            f"{sweep.seconds:>7.3f} s  ({sweep.instants / sweep.seconds:,.0f} instants/s)"
        )


def to_json(report: Report, pinned: str) -> dict[str, object]:
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "croniter": version("croniter"),
        "cpu": pinned,
        "targets": {
            "next_per_second": TARGET_NEXT_PER_SECOND,
            "fleet_seconds": TARGET_FLEET_SECONDS,
        },
        "next": [
            {
                **asdict(r),
                "per_second": r.per_second,
                "microseconds_per_call": r.microseconds_per_call,
            }
            for r in report.rates
        ],
        "fleet": None
        if report.fleet is None
        else {
            **asdict(report.fleet),
            "cold_total_seconds": report.fleet.cold_total_seconds,
            "warm_total_seconds": report.fleet.warm_total_seconds,
        },
        "between_year": [asdict(s) for s in report.sweeps],
    }


def main() -> None:
    pinned = pin_to_one_core()
    report = Report()
    # The fleet runs first, while the zone caches are cold, as after a restart.
    report.fleet = fleet()
    report.rates = next_rates()
    report.sweeps = sweeps()
    print_report(report, pinned)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(to_json(report, pinned), indent=2) + "\n")
    print()
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
