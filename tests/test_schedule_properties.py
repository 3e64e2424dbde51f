"""Properties: the fast schedule search equals DESIGN §2's definition, computed the slow way.

DESIGN.md §2 defines the instants of a five-field expression as every real instant, on a
whole UTC minute, whose wall-clock time in the zone matches the fields, with the day rule.
This module computes exactly that, minute by minute, for random expressions in random zones
(DST zones of both hemispheres, 30-minute and two-hour shifts, offsets that are not whole
hours, zones that abolished DST or skipped a day), over windows placed on and around the DST
transitions of 2020-2030, and compares it with `Schedule`, whose search jumps from match to
match and never looks at the minutes in between.

The expressions are generated together with the values and star flags they mean, so the
reference depends neither on the parser nor on the search under test. Runs are derandomized
and use no example database, so CI sees the same examples every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.schedule import SEARCH_YEARS, Schedule, load_timezone

PROPERTIES = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.too_slow],
)

MINUTE = 60
DAY = 86_400
FIRST = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
LAST = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp())
HORIZON = SEARCH_YEARS * 365 * DAY  # within this, a search always finds what is there

ZONES = (
    "",
    "America/Los_Angeles",
    "America/New_York",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Europe/Berlin",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
)


def zone_of(name: str) -> tzinfo:
    """The zone the definition is evaluated in: the same ``tzdata`` release the module uses,
    since the host's zone files may be of another release."""
    return load_timezone(name) if name else UTC


# --------------------------------------------------------------------------------------------
# Expressions generated with their meaning


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    star: bool


@dataclass(frozen=True)
class Range:
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the name of low + i

    def name(self, value: int) -> str | None:
        return self.names[value - self.low] if self.names else None


MINUTES = Range(0, 59)
HOURS = Range(0, 23)
DAYS_OF_MONTH = Range(1, 31)
MONTHS = Range(
    1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
)
DAYS_OF_WEEK = Range(0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))


@st.composite
def values(draw: st.DrawFn, bounds: Range) -> tuple[int, str]:
    """A value of the field and one way to write it: digits, or a name in any case."""
    value = draw(st.integers(bounds.low, bounds.high))
    name = bounds.name(value)
    if name is None or draw(st.booleans()):
        return value, str(value)
    spelling = draw(st.sampled_from((str.lower, str.upper, str.title)))
    return value, spelling(name)


@st.composite
def pieces(draw: st.DrawFn, bounds: Range) -> Field:
    """One comma-separated piece: ``*``, ``?``, ``N``, ``N-M``, ``*/S``, ``N/S``, ``N-M/S``."""
    span = bounds.high - bounds.low + 1
    kind = draw(st.sampled_from(("star", "star-step", "single", "range", "range-step", "n-step")))
    if kind == "star":
        star = draw(st.sampled_from(("*", "?")))
        return Field(star, frozenset(range(bounds.low, bounds.high + 1)), True)
    if kind == "star-step":
        star = draw(st.sampled_from(("*", "?")))
        step = draw(st.integers(1, span))
        every = frozenset(range(bounds.low, bounds.high + 1, step))
        return Field(f"{star}/{step}", every, step == 1)
    low, low_text = draw(values(bounds))
    if kind == "single":
        return Field(low_text, frozenset({low}), False)
    if kind == "n-step":
        step = draw(st.integers(1, span))
        return Field(f"{low_text}/{step}", frozenset(range(low, bounds.high + 1, step)), False)
    high, high_text = draw(values(bounds).filter(lambda v: v[0] >= low))
    if kind == "range":
        return Field(f"{low_text}-{high_text}", frozenset(range(low, high + 1)), False)
    step = draw(st.integers(1, span))
    text = f"{low_text}-{high_text}/{step}"
    return Field(text, frozenset(range(low, high + 1, step)), False)


@st.composite
def fields(draw: st.DrawFn, bounds: Range, star_weight: int = 0) -> Field:
    """A field: one piece or a list; ``star_weight`` extra chances of a plain ``*``."""
    choice = draw(st.integers(0, 2 + star_weight))
    if choice > 2:
        return Field("*", frozenset(range(bounds.low, bounds.high + 1)), True)
    if choice > 0:
        return draw(pieces(bounds))
    parts = draw(st.lists(pieces(bounds), min_size=2, max_size=4))
    return Field(
        ",".join(p.text for p in parts),
        frozenset().union(*(p.values for p in parts)),
        any(p.star for p in parts),
    )


@dataclass(frozen=True)
class Expression:
    minute: Field
    hour: Field
    day_of_month: Field
    month: Field
    day_of_week: Field

    @property
    def text(self) -> str:
        return " ".join(
            f.text
            for f in (self.minute, self.hour, self.day_of_month, self.month, self.day_of_week)
        )

    def matches(self, local: datetime) -> bool:
        """DESIGN §2, read literally."""
        if local.second != 0:
            return False
        if local.minute not in self.minute.values or local.hour not in self.hour.values:
            return False
        if local.month not in self.month.values:
            return False
        by_date = local.day in self.day_of_month.values
        by_weekday = local.isoweekday() % 7 in self.day_of_week.values
        if self.day_of_month.star or self.day_of_week.star:
            return by_date and by_weekday
        return by_date or by_weekday


@st.composite
def expressions(draw: st.DrawFn) -> Expression:
    return Expression(
        minute=draw(fields(MINUTES, star_weight=1)),
        hour=draw(fields(HOURS, star_weight=2)),
        day_of_month=draw(fields(DAYS_OF_MONTH, star_weight=2)),
        month=draw(fields(MONTHS, star_weight=6)),
        day_of_week=draw(fields(DAYS_OF_WEEK, star_weight=2)),
    )


# --------------------------------------------------------------------------------------------
# The reference: every whole UTC minute, one at a time


def scan(expression: Expression, zone: tzinfo, start: int, end: int) -> list[int]:
    """The instants in ``(start, end]`` by DESIGN §2's definition."""
    first = (start // MINUTE + 1) * MINUTE
    return [
        ts
        for ts in range(first, end + 1, MINUTE)
        if expression.matches(datetime.fromtimestamp(ts, zone))
    ]


def union_scan(found: list[list[int]]) -> list[int]:
    return sorted(set().union(*found))


# --------------------------------------------------------------------------------------------
# Where to look: near the DST transitions of 2020-2030, or anywhere in those years


@cache
def transitions(name: str) -> tuple[int, ...]:
    """The instants in 2020-2030 at which the zone's UTC offset changes."""
    if not name:
        return ()
    zone = zone_of(name)

    def offset(ts: int) -> object:
        return datetime.fromtimestamp(ts, zone).utcoffset()

    found: list[int] = []
    ts, current = FIRST, offset(FIRST)
    while ts < LAST:
        following = ts + DAY
        if offset(following) != current:
            low, high = ts, following
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == current else (low, middle)
            found.append(high)
            current = offset(high)
            ts = high
        else:
            ts = following
    return tuple(found)


@st.composite
def windows(draw: st.DrawFn, length: int) -> tuple[str, int, int]:
    """A zone and a window ``(start, start + length]``, usually around one of its transitions."""
    zone = draw(st.sampled_from(ZONES))
    changes = transitions(zone)
    if changes and draw(st.integers(0, 3)) > 0:
        centre = draw(st.sampled_from(changes))
        start = centre - draw(st.integers(0, length))
    else:
        start = draw(st.integers(FIRST, LAST))
    if draw(st.booleans()):
        start -= start % MINUTE
    return zone, start, start + length


# --------------------------------------------------------------------------------------------
# Properties of one expression


THREE_DAYS = 3 * DAY


def test_reference_finds_the_transitions_it_is_meant_to() -> None:
    """The windows really straddle DST changes: both LA transitions of 2020 are known."""
    los_angeles = transitions("America/Los_Angeles")
    assert int(datetime(2020, 3, 8, 10, tzinfo=UTC).timestamp()) in los_angeles
    assert int(datetime(2020, 11, 1, 9, tzinfo=UTC).timestamp()) in los_angeles
    assert len(los_angeles) == 22
    assert transitions("Asia/Kolkata") == ()


@PROPERTIES
@given(expression=expressions(), window=windows(THREE_DAYS))
def test_between_equals_the_minute_by_minute_definition(
    expression: Expression, window: tuple[str, int, int]
) -> None:
    zone, start, end = window
    schedule = Schedule([expression.text], zone)
    assert list(schedule.between_ts(start, end)) == scan(expression, zone_of(zone), start, end)


@PROPERTIES
@given(
    expression=expressions(),
    window=windows(THREE_DAYS),
    count=st.integers(1, 6),
    microsecond=st.integers(0, 999_999),
)
def test_next_n_equals_the_first_instants_of_the_definition(
    expression: Expression, window: tuple[str, int, int], count: int, microsecond: int
) -> None:
    zone, start, end = window
    expected = scan(expression, zone_of(zone), start, end)[:count]
    after = datetime.fromtimestamp(start, UTC).replace(microsecond=microsecond)
    found = Schedule([expression.text], zone).next_n(after, count)
    seconds = [int(instant.timestamp()) for instant in found]
    assert seconds[: len(expected)] == expected
    if len(expected) < count:
        # the window ran out: whatever else was found lies beyond it
        assert all(ts > end for ts in seconds[len(expected) :])
    assert all(instant.tzinfo == zone_of(zone) for instant in found)
    assert all(instant.utcoffset() == zone_of(zone).utcoffset(instant) for instant in found)


@PROPERTIES
@given(expression=expressions(), window=windows(THREE_DAYS))
def test_latest_at_or_before_is_the_last_instant_of_the_definition(
    expression: Expression, window: tuple[str, int, int]
) -> None:
    zone, start, end = window
    expected = scan(expression, zone_of(zone), start, end)
    schedule = Schedule([expression.text], zone)
    latest = schedule.latest_at_or_before_ts(end)
    if expected:
        assert latest == expected[-1]
    else:
        assert latest is None or latest <= start


@PROPERTIES
@given(expression=expressions(), window=windows(THREE_DAYS))
def test_each_instant_leads_to_the_next_and_back(
    expression: Expression, window: tuple[str, int, int]
) -> None:
    """Around every instant of the definition, both searches step exactly one instant."""
    zone, start, end = window
    expected = scan(expression, zone_of(zone), start, end)
    schedule = Schedule([expression.text], zone)
    for index, instant in enumerate(expected[:40]):
        assert schedule.latest_at_or_before_ts(instant) == instant
        if index > 0:
            assert schedule.latest_at_or_before_ts(instant - 1) == expected[index - 1]
        if index + 1 < len(expected):
            assert schedule.next_after_ts(instant) == expected[index + 1]


@settings(PROPERTIES, max_examples=15)
@given(expression=expressions(), window=windows(40 * DAY))
def test_between_equals_the_definition_over_forty_days(
    expression: Expression, window: tuple[str, int, int]
) -> None:
    """Long enough to cross month ends, both transitions of a zone rarely, and sparse days."""
    zone, start, end = window
    schedule = Schedule([expression.text], zone)
    assert list(schedule.between_ts(start, end)) == scan(expression, zone_of(zone), start, end)


@PROPERTIES
@given(expression=expressions(), zone=st.sampled_from(ZONES), t=st.integers(FIRST, LAST))
def test_forward_and_backward_searches_agree_over_years(
    expression: Expression, zone: str, t: int
) -> None:
    """Nothing fires strictly between ``t`` and the next instant, however far it is, and the
    instant just before ``t`` is the previous one seen from the other side."""
    schedule = Schedule([expression.text], zone)
    following = schedule.next_after_ts(t)
    previous = schedule.latest_at_or_before_ts(t)
    if following is not None:
        assert following > t
        assert expression.matches(datetime.fromtimestamp(following, zone_of(zone)))
        assert schedule.latest_at_or_before_ts(following) == following
        if previous is None or following - previous < HORIZON:
            # seen from just before `following`, the previous instant is still in reach
            assert schedule.latest_at_or_before_ts(following - 1) == previous
    if previous is not None:
        assert previous <= t
        assert expression.matches(datetime.fromtimestamp(previous, zone_of(zone)))
        if following is None or following - previous < HORIZON:
            assert schedule.next_after_ts(previous) == following


# --------------------------------------------------------------------------------------------
# Several expressions, @every


@PROPERTIES
@given(
    group=st.lists(expressions(), min_size=2, max_size=3),
    window=windows(2 * DAY),
    count=st.integers(1, 8),
)
def test_several_expressions_fire_at_the_union_of_their_instants(
    group: list[Expression], window: tuple[str, int, int], count: int
) -> None:
    zone, start, end = window
    expected = union_scan([scan(e, zone_of(zone), start, end) for e in group])
    schedule = Schedule([e.text for e in group], zone)
    assert list(schedule.between_ts(start, end)) == expected
    after = datetime.fromtimestamp(start, UTC)
    following = [int(instant.timestamp()) for instant in schedule.next_n(after, count)]
    assert following[: len(expected)] == expected[:count]
    assert all(ts > end for ts in following[len(expected) :])
    latest = schedule.latest_at_or_before_ts(end)
    if expected:
        assert latest == expected[-1]
    else:
        assert latest is None or latest <= start


def every_scan(seconds: int, start: int, end: int) -> list[int]:
    """``@every`` by definition: the Unix seconds in ``(start, end]`` divisible by the period."""
    return [ts for ts in range(start + 1, end + 1) if ts % seconds == 0]


EVERY_PERIODS = st.one_of(
    st.sampled_from((30, 60, 90, 300, 900, 3600, 5400, 86_400)), st.integers(30, 7200)
)


@PROPERTIES
@given(
    period=EVERY_PERIODS,
    spelling=st.sampled_from(("s", "m")),
    expression=st.none() | expressions(),
    window=windows(DAY),
)
def test_every_fires_at_multiples_of_its_period_alone_or_with_cron(
    period: int, spelling: str, expression: Expression | None, window: tuple[str, int, int]
) -> None:
    zone, start, end = window
    if spelling == "m" and period % 60 == 0:
        every = f"@every {period // 60}m"
    else:
        every = f"@every {period}s"
    texts = [every] if expression is None else [every, expression.text]
    expected = every_scan(period, start, end)
    if expression is not None:
        expected = union_scan([expected, scan(expression, zone_of(zone), start, end)])
    schedule = Schedule(texts, zone)
    assert expected, "a period of at most a day always fires within a day"
    assert list(schedule.between_ts(start, end)) == expected
    assert schedule.next_after_ts(start) == expected[0]
    assert schedule.latest_at_or_before_ts(end) == expected[-1]
