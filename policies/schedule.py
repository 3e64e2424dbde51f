"""Schedules: Argo's cron dialect and the instants at which a CronWorkflow fires.

Why this module exists instead of calling croniter: Argo (robfig/cron v3) and croniter disagree
on the dialect (day-of-week 7, ``L``/``W``/``#``/``H``, seconds fields, the day-of-month /
day-of-week star rule with stepped fields) and on daylight saving time, and ``croniter.get_next``
costs 90-270 µs per call. A scheduler that decides ten thousand CronWorkflows per minute and
must agree with Argo to the minute needs its own small, exact engine. croniter is still a
dependency of the project and the test-suite cross-checks field expansion against it.

Semantics (DESIGN.md §2, normative):

* A five-field expression fires at every real instant whose wall-clock time in the
  CronWorkflow's zone is a whole minute matching the fields. A local time skipped by a DST jump
  never fires; a local time that occurs twice fires twice.
* Day rule: when the day-of-month or the day-of-week field carries the star flag (``*`` or
  ``?``, not stepped by more than one) a day must match both fields, otherwise either.
* ``@every d`` fires at the Unix times that are multiples of ``d`` (epoch-aligned), whatever
  the zone, so that every replica and restart computes the same instants.
* Several expressions fire at the union of their instants; coinciding instants fire once.
* Searches give up after :data:`SEARCH_YEARS` years, like robfig's ``Next``.

How the search stays exact and fast: a zone's timeline is cut into *segments* of constant UTC
offset. Inside a segment, wall-clock time is real time plus a constant, so "the next real
instant that matches" is "the next matching wall-clock minute, minus the offset" as long as
the result stays inside the segment; otherwise the search resumes at the segment's end. Each
step is a handful of bisections over precomputed field values, so the cost is proportional
to the instants found, never to the minutes scanned. Segment boundaries are found once per zone
and year by sampling the offset every three hours and bisecting each change to the second.

Errors carry robfig's messages (``end of range (13) above maximum (12): 13``, ...) so users can
search for them, sometimes followed by a hint about what to write instead.
"""

from __future__ import annotations

import calendar
import heapq
import re
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from importlib import resources
from threading import Lock
from zoneinfo import ZoneInfo

__all__ = [
    "SEARCH_YEARS",
    "ClockChange",
    "CronExpression",
    "EveryExpression",
    "Expression",
    "Schedule",
    "ScheduleError",
    "TimezoneError",
    "clock_changes",
    "load_timezone",
    "parse_expression",
]

SEARCH_YEARS = 5
"""How far ahead (or back) a search looks before it concludes that nothing fires."""

_MINUTE = 60
_DAY = 86_400
_SEARCH_SECONDS = SEARCH_YEARS * 366 * _DAY
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)


class ScheduleError(ValueError):
    """A schedule expression that cannot be parsed; the message is Argo's."""

    def __init__(self, schedule: str, reason: str) -> None:
        super().__init__(f"cron schedule {schedule} is malformed: {reason}")
        self.schedule = schedule
        self.reason = reason


class TimezoneError(ValueError):
    """A ``spec.timezone`` that names no IANA zone; the message is Argo's."""

    def __init__(self, timezone: str) -> None:
        super().__init__(f'invalid timezone "{timezone}": unknown time zone {timezone}')
        self.timezone = timezone


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

_MINUTES = _Bounds(0, 59)
_HOURS = _Bounds(0, 23)
_DAYS_OF_MONTH = _Bounds(1, 31)
_MONTHS = _Bounds(1, 12, _MONTH_NAMES)
_DAYS_OF_WEEK = _Bounds(0, 6, _DAY_NAMES)
_FIELDS = (_MINUTES, _HOURS, _DAYS_OF_MONTH, _MONTHS, _DAYS_OF_WEEK)

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = "@every "
_INT = re.compile(r"[+-]?[0-9]+")
_MAX_INT = 2**63 - 1


def _go_atoi(text: str) -> int:
    """``strconv.Atoi`` with Go's error wording, which Argo users see in status conditions."""
    if not _INT.fullmatch(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if abs(value) > _MAX_INT:
        raise ValueError(f'strconv.Atoi: parsing "{text}": value out of range')
    return value


def _parse_number(text: str, expr: str) -> int:
    try:
        value = _go_atoi(text)
    except ValueError as error:
        raise _FieldError(f"failed to parse int from {text}: {error}", unparsed=text) from None
    if value < 0:
        raise _FieldError(f"negative number ({value}) not allowed: {expr}")
    return value


def _parse_value(text: str, bounds: _Bounds, expr: str) -> int:
    named = bounds.names.get(text.lower())
    return named if named is not None else _parse_number(text, expr)


class _FieldError(Exception):
    """A robfig reason; turned into :class:`ScheduleError` with the whole expression.

    ``unparsed`` is the token that was not a number or a name, ``above`` the value beyond the
    field's maximum: both let :func:`_hint` say what to write instead.
    """

    def __init__(self, reason: str, *, unparsed: str = "", above: int | None = None) -> None:
        super().__init__(reason)
        self.unparsed = unparsed
        self.above = above


def _parse_range(expr: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    """One comma-separated piece of a field: its values and whether it carries the star flag."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    star = False
    if low_and_high[0] in ("*", "?"):
        if len(low_and_high) > 1:
            # robfig silently ignores "*-5"; a typo that changes the meaning deserves an error.
            raise _FieldError(f"a range cannot start with {low_and_high[0]}: {expr}")
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _parse_value(low_and_high[0], bounds, expr)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_value(low_and_high[1], bounds, expr)
        else:
            raise _FieldError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _parse_number(range_and_step[1], range_and_step[1])
        if len(low_and_high) == 1:
            end = bounds.high  # "N/S" means "N-max/S"
        if step > 1:
            star = False
    else:
        raise _FieldError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise _FieldError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise _FieldError(f"end of range ({end}) above maximum ({bounds.high}): {expr}", above=end)
    if start > end:
        raise _FieldError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise _FieldError(f"step of range should be a positive number: {expr}")
    return frozenset(range(start, end + 1, step)), star


def _parse_field(text: str, bounds: _Bounds) -> tuple[tuple[int, ...], bool]:
    values: set[int] = set()
    star = False
    for piece in text.split(","):
        piece_values, piece_star = _parse_range(piece, bounds)
        values |= piece_values
        star = star or piece_star
    return tuple(sorted(values)), star


_UNSUPPORTED = re.compile(r"[LWH#]", re.IGNORECASE)
_DAY_OF_WEEK_FIELD = 4


def _hint(field_index: int, error: _FieldError) -> str:
    """robfig's reason, followed where we can tell by what to write instead."""
    reason = str(error)
    if _UNSUPPORTED.search(error.unparsed):
        return f"{reason} (L, W, # and H are not supported)"
    if field_index == _DAY_OF_WEEK_FIELD and error.above == 7:
        return f"{reason} (day of week is 0-6, Sunday is 0)"
    return reason


@dataclass(frozen=True)
class CronExpression:
    """A parsed five-field expression: the sorted values of each field and the star flags."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    day_of_month_star: bool
    day_of_week_star: bool
    _days: dict[tuple[int, int], tuple[int, ...]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def matches_day(self, year: int, month: int, day: int) -> bool:
        """The day rule of DESIGN §2 (robfig's ``dayMatches``)."""
        dom = day in self.days_of_month
        dow = (calendar.weekday(year, month, day) + 1) % 7 in self.days_of_week
        if self.day_of_month_star or self.day_of_week_star:
            return dom and dow
        return dom or dow

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of one month, ascending (cached: months repeat endlessly)."""
        key = (year, month)
        days = self._days.get(key)
        if days is None:
            if month in self.months:
                last = calendar.monthrange(year, month)[1]
                days = tuple(d for d in range(1, last + 1) if self.matches_day(year, month, d))
            else:
                days = ()
            if len(self._days) > 1200:  # a century of months; searches rarely go that far
                self._days.clear()
            self._days[key] = days
        return days


@dataclass(frozen=True)
class EveryExpression:
    """``@every d``: the Unix times that are multiples of ``seconds``."""

    seconds: int


Expression = CronExpression | EveryExpression

_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_DURATION = 2**63 - 1
_DURATION_PART = re.compile(r"([0-9]*)(\.[0-9]*)?([^0-9.]*)")


def _parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds, with its error wording and int64 limit."""
    quoted = f'"{text}"'
    body = text
    negative = body[:1] == "-"
    if body[:1] in ("+", "-"):
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        whole, fraction, unit = match.groups() if match else ("", None, "")
        digits = (fraction or ".")[1:]
        if match is None or (not whole and not digits):
            raise ValueError(f"time: invalid duration {quoted}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        scale = _NANOSECONDS.get(unit)
        if scale is None:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        part = int(whole or "0") * scale
        if digits:
            part += int(digits) * scale // 10 ** len(digits)  # Go truncates below 1 ns
        total += part
        if total > _MAX_DURATION:
            raise ValueError(f"time: invalid duration {quoted}")
        position = match.end()
    return -total if negative else total


def _parse_every(expression: str) -> EveryExpression:
    text = expression[len(_EVERY) :]
    try:
        nanoseconds = _parse_go_duration(text)
    except ValueError as error:
        raise ScheduleError(expression, f"failed to parse duration {expression}: {error}") from None
    seconds, rest = divmod(nanoseconds, _NANOSECONDS["s"])
    if nanoseconds < _NANOSECONDS["s"]:
        raise ScheduleError(expression, f"@every needs a duration of at least 1s, got {text}")
    if rest:
        raise ScheduleError(
            expression, f"@every needs a whole number of seconds, got {text} (write e.g. 90s)"
        )
    return EveryExpression(seconds)


@lru_cache(maxsize=16_384)
def parse_expression(expression: str) -> Expression:
    """Parse one schedule expression of Argo's dialect; raises :class:`ScheduleError`."""
    if not expression:
        raise ScheduleError(expression, "empty spec string")
    if expression.startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError(
            expression, "time zone prefixes are not supported: set spec.timezone instead"
        )
    if expression.startswith("@"):
        if expression.startswith(_EVERY):
            return _parse_every(expression)
        if expression in _DESCRIPTORS:
            return parse_expression(_DESCRIPTORS[expression])
        reason = f"unrecognized descriptor: {expression}"
        if expression == "@reboot":
            reason += " (@reboot is not supported)"
        raise ScheduleError(expression, reason)
    fields = expression.split()
    if len(fields) != 5:
        reason = f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
        if len(fields) in (6, 7):
            reason += " (seconds and year fields are not supported)"
        raise ScheduleError(expression, reason)
    parsed: list[tuple[tuple[int, ...], bool]] = []
    for index, (text, bounds) in enumerate(zip(fields, _FIELDS, strict=True)):
        try:
            parsed.append(_parse_field(text, bounds))
        except _FieldError as error:
            raise ScheduleError(expression, _hint(index, error)) from None
    (minutes, _), (hours, _), (days_of_month, dom_star), (months, _), (days_of_week, dow_star) = (
        parsed
    )
    return CronExpression(minutes, hours, days_of_month, months, days_of_week, dom_star, dow_star)


# --------------------------------------------------------------------------------------------
# Time zones


def load_timezone(name: str) -> tzinfo:
    """The zone for ``spec.timezone``; empty means UTC (never the process's zone)."""
    if not name:
        return UTC
    return _load_zone(name)


@lru_cache(maxsize=1024)
def _load_zone(name: str) -> ZoneInfo:
    """The zone from the ``tzdata`` package, never from the host's ``/usr/share/zoneinfo``:
    ``ZoneInfo(name)`` would look there first, and accept host-only names like ``localtime``.
    """
    if name.startswith("/") or ".." in name.split("/") or name != name.strip():
        raise TimezoneError(name)
    try:
        data = resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
        with data.open("rb") as zone_file:
            return ZoneInfo.from_file(zone_file, key=name)
    except (OSError, ValueError):
        raise TimezoneError(name) from None


_SAMPLE_STEP = 3 * 3600


class _Timeline:
    """A zone's UTC offsets as segments of constant offset, computed lazily per year."""

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._years: dict[int, tuple[list[int], list[int]]] = {}
        self._lock = Lock()

    def offset(self, ts: int) -> int:
        offset = datetime.fromtimestamp(ts, self._zone).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _year(self, year: int) -> tuple[list[int], list[int]]:
        """Change instants inside ``year`` (UTC) and the offsets in force from each."""
        cached = self._years.get(year)
        if cached is not None:
            return cached
        start = _year_start(year)
        end = _year_start(year + 1)
        changes: list[int] = []
        offsets: list[int] = []
        previous = self.offset(start)
        ts = start
        while ts < end:
            following = min(ts + _SAMPLE_STEP, end)
            current = self.offset(following)
            if current != previous:
                low, high = ts, following  # offset(low) == previous != offset(high)
                while high - low > 1:
                    middle = (low + high) // 2
                    if self.offset(middle) == previous:
                        low = middle
                    else:
                        high = middle
                if high < end:
                    changes.append(high)
                    offsets.append(current)
                previous = current
            ts = following
        with self._lock:
            self._years[year] = (changes, offsets)
        return changes, offsets

    def changes(self, start: int, end: int) -> list[int]:
        """The instants in ``[start, end)`` at which the offset changes, ascending."""
        found: list[int] = []
        for year in range(_year_of(start), _year_of(end) + 1):
            found.extend(ts for ts in self._year(year)[0] if start <= ts < end)
        return found

    def segment(self, ts: int) -> tuple[int, int, int]:
        """``(start, end, offset)``: ``ts`` lies in ``[start, end)``, where the offset is fixed.

        Segments are also cut at year boundaries; the search does not need them maximal.
        """
        year = _year_of(ts)
        changes, offsets = self._year(year)
        index = bisect_right(changes, ts)
        start = changes[index - 1] if index else _year_start(year)
        end = changes[index] if index < len(changes) else _year_start(year + 1)
        offset = offsets[index - 1] if index else self.offset(start)
        return start, end, offset


class _FixedTimeline(_Timeline):
    """UTC: one endless segment, no sampling."""

    def __init__(self) -> None:
        super().__init__(UTC)

    def segment(self, ts: int) -> tuple[int, int, int]:
        return -(2**62), 2**62, 0

    def changes(self, start: int, end: int) -> list[int]:
        return []


@lru_cache(maxsize=1024)
def _timeline(zone: tzinfo) -> _Timeline:
    return _FixedTimeline() if zone is UTC else _Timeline(zone)


def _year_start(year: int) -> int:
    return (datetime(year, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY


def _year_of(ts: int) -> int:
    return datetime.fromordinal(_EPOCH_ORDINAL + ts // _DAY).year


# --------------------------------------------------------------------------------------------
# Searching wall-clock time. "Local seconds" are wall-clock times counted as if the zone were
# UTC, which makes calendar arithmetic plain integer arithmetic.


def _split(local: int) -> tuple[int, int, int, int, int]:
    days, rest = divmod(local, _DAY)
    date = datetime.fromordinal(_EPOCH_ORDINAL + days)
    return date.year, date.month, date.day, rest // 3600, rest % 3600 // 60


def _join(year: int, month: int, day: int, hour: int, minute: int) -> int:
    days = datetime(year, month, day).toordinal() - _EPOCH_ORDINAL
    return days * _DAY + hour * 3600 + minute * 60


def _first_local_match(expr: CronExpression, local: int, limit_year: int) -> int | None:
    """The first matching wall-clock minute at or after ``local`` (minute-aligned)."""
    year, month, day, hour, minute = _split(local)
    minutes, hours = expr.minutes, expr.hours
    while year <= limit_year:
        days = expr.days_in(year, month)
        index = bisect_left(days, day)
        if index < len(days) and days[index] == day:
            hour_index = bisect_left(hours, hour)
            if hour_index < len(hours):
                found_hour = hours[hour_index]
                minute_index = bisect_left(minutes, minute) if found_hour == hour else 0
                if minute_index < len(minutes):
                    return _join(year, month, day, found_hour, minutes[minute_index])
                if hour_index + 1 < len(hours):
                    return _join(year, month, day, hours[hour_index + 1], minutes[0])
            index += 1
        if index < len(days):
            return _join(year, month, days[index], hours[0], minutes[0])
        month += 1
        if month > 12:
            year, month = year + 1, 1
        day, hour, minute = 1, 0, 0
    return None


def _last_local_match(expr: CronExpression, local: int, limit_year: int) -> int | None:
    """The last matching wall-clock minute at or before ``local`` (minute-aligned)."""
    year, month, day, hour, minute = _split(local)
    minutes, hours = expr.minutes, expr.hours
    while year >= limit_year:
        days = expr.days_in(year, month)
        index = bisect_right(days, day) - 1
        if index >= 0 and days[index] == day:
            hour_index = bisect_right(hours, hour) - 1
            if hour_index >= 0:
                found_hour = hours[hour_index]
                if found_hour == hour:
                    minute_index = bisect_right(minutes, minute) - 1
                else:
                    minute_index = len(minutes) - 1
                if minute_index >= 0:
                    return _join(year, month, day, found_hour, minutes[minute_index])
                if hour_index >= 1:
                    return _join(year, month, day, hours[hour_index - 1], minutes[-1])
            index -= 1
        if index >= 0:
            return _join(year, month, days[index], hours[-1], minutes[-1])
        month -= 1
        if month < 1:
            year, month = year - 1, 12
        day, hour, minute = 31, 23, 59
    return None


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


def _cron_next(expr: CronExpression, timeline: _Timeline, after: int) -> int | None:
    """The first real instant strictly after ``after`` (Unix seconds) that fires."""
    ts = after + 1
    limit = after + _SEARCH_SECONDS
    while ts <= limit:
        _, end, offset = timeline.segment(ts)
        local = _first_local_match(expr, _ceil(ts + offset, _MINUTE), _year_of(limit + offset))
        if local is None:
            return None
        instant = local - offset
        if instant < end:
            return instant if instant <= limit else None
        ts = end
    return None


def _cron_previous(expr: CronExpression, timeline: _Timeline, at: int) -> int | None:
    """The last real instant at or before ``at`` (Unix seconds) that fires."""
    ts = at
    limit = at - _SEARCH_SECONDS
    while ts >= limit:
        start, _, offset = timeline.segment(ts)
        local = _last_local_match(
            expr, (ts + offset) // _MINUTE * _MINUTE, _year_of(limit + offset)
        )
        if local is None:
            return None
        instant = local - offset
        if instant >= start:
            return instant if instant >= limit else None
        ts = start - 1
    return None


# --------------------------------------------------------------------------------------------
# Schedules


def _to_seconds(t: datetime) -> int:
    """Unix seconds, floored, computed exactly (no float rounding)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"schedule times must carry a time zone, got naive {t.isoformat()}")
    return (t - _EPOCH) // _ONE_SECOND


class Schedule:
    """The instants of one CronWorkflow: the union of its expressions in its time zone.

    Methods take and return aware datetimes (results are in the schedule's zone, so they print
    with the right offset); the ``*_ts`` variants work in Unix seconds for hot paths.
    """

    __slots__ = ("_crons", "_everies", "_timeline", "expressions", "timezone", "tz")

    def __init__(self, expressions: Sequence[str], timezone: str = "") -> None:
        if isinstance(expressions, str):
            raise TypeError("expressions must be a sequence of strings, not a string")
        parsed = [parse_expression(e) for e in expressions]
        self.expressions: tuple[str, ...] = tuple(expressions)
        self.timezone = timezone
        self.tz: tzinfo = load_timezone(timezone)
        self._timeline = _timeline(self.tz)
        self._crons = tuple(dict.fromkeys(p for p in parsed if isinstance(p, CronExpression)))
        self._everies = tuple(sorted({p.seconds for p in parsed if isinstance(p, EveryExpression)}))

    def __repr__(self) -> str:
        return f"Schedule({list(self.expressions)!r}, timezone={self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self.expressions, self.timezone) == (other.expressions, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expressions, self.timezone))

    # -- Unix seconds -----------------------------------------------------------------------

    def next_after_ts(self, after: int) -> int | None:
        """The first instant strictly after ``after``, or None within the search horizon."""
        best: int | None = None
        for every in self._everies:
            candidate = (after // every + 1) * every
            if best is None or candidate < best:
                best = candidate
        for cron in self._crons:
            found = _cron_next(cron, self._timeline, after)
            if found is not None and (best is None or found < best):
                best = found
        if best is not None and best > after + _SEARCH_SECONDS:
            return None
        return best

    def latest_at_or_before_ts(self, at: int) -> int | None:
        """The last instant at or before ``at``, or None within the search horizon."""
        best: int | None = None
        for every in self._everies:
            candidate = at // every * every
            if best is None or candidate > best:
                best = candidate
        for cron in self._crons:
            found = _cron_previous(cron, self._timeline, at)
            if found is not None and (best is None or found > best):
                best = found
        return best

    def between_ts(self, start: int, end: int) -> Iterator[int]:
        """The instants in ``(start, end]``, ascending, each once.

        Each expression is walked on its own and the walks are merged, so the cost is
        proportional to the instants found.
        """
        walks = [self._walk_every(e, start, end) for e in self._everies]
        walks += [self._walk_cron(c, start, end) for c in self._crons]
        previous: int | None = None
        for instant in heapq.merge(*walks):
            if instant != previous:
                yield instant
                previous = instant

    def count_between_ts(self, start: int, end: int, newest: int | None) -> tuple[int, list[int]]:
        """How many instants fall in ``(start, end]``, and the ``newest`` of them (all when
        None), ascending. Memory is bounded by ``newest``; a single ``@every`` is counted
        without walking (``@every 1s`` over a year is 31 million instants)."""
        if newest is not None and len(self._everies) == 1 and not self._crons:
            (every,) = self._everies
            first, last = start // every + 1, end // every
            count = max(0, last - first + 1)
            kept = range(max(first, last - newest + 1) * every, last * every + 1, every)
            return count, list(kept)
        window: deque[int] = deque(maxlen=newest)
        count = 0
        for instant in self.between_ts(start, end):
            window.append(instant)
            count += 1
        return count, list(window)

    @staticmethod
    def _walk_every(every: int, start: int, end: int) -> Iterator[int]:
        yield from range((start // every + 1) * every, end + 1, every)

    def _walk_cron(self, cron: CronExpression, start: int, end: int) -> Iterator[int]:
        current = start
        while current < end:
            found = _cron_next(cron, self._timeline, current)
            if found is None or found > end:
                return
            yield found
            current = found

    # -- datetimes --------------------------------------------------------------------------

    def _at(self, ts: int) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)

    def next_after(self, t: datetime) -> datetime | None:
        """The first instant strictly after ``t``, in the schedule's zone."""
        whole = _to_seconds(t)
        found = self.next_after_ts(whole)
        return None if found is None else self._at(found)

    def next_n(self, t: datetime, count: int) -> list[datetime]:
        """Up to ``count`` instants strictly after ``t`` (fewer if the horizon is reached)."""
        whole = _to_seconds(t)
        found: list[datetime] = []
        while len(found) < count:
            following = self.next_after_ts(whole)
            if following is None:
                break
            found.append(self._at(following))
            whole = following
        return found

    def between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The instants in ``(start, end]``, ascending."""
        first = _to_seconds(start)
        last = _to_seconds(end)
        return (self._at(ts) for ts in self.between_ts(first, last))

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last instant at or before ``t``, in the schedule's zone."""
        whole = _to_seconds(t)
        found = self.latest_at_or_before_ts(whole)
        return None if found is None else self._at(found)

    def fires(self, t: datetime) -> bool:
        """Whether some instant falls within :data:`SEARCH_YEARS` years after ``t``."""
        return self.next_after(t) is not None


# --------------------------------------------------------------------------------------------
# Clock changes: where a DST jump meets the local times an expression names.
#
# Lint warns about a daily 02:30 that a spring-forward night skips, or that a fall-back night
# repeats. The cost must not depend on how often the expression fires (``* * * * *`` names
# every minute of the year): so the work starts from the zone's offset changes in the window,
# a few a year, and only the local minutes inside each gap or repeated span (an hour, rarely
# two) are matched against the fields.

_CLOCK_CHANGE_DAYS = 367
_LISTED_TIMES = 3


@dataclass(frozen=True)
class ClockChange:
    """A change of the zone's UTC offset, and the local times of one expression it meets.

    ``before`` and ``after`` are the offsets in seconds east of UTC; ``at`` is the Unix time of
    the change. When ``after > before`` the local times in ``[start, end)`` do not exist
    (``skipped``): the expression does not fire at them. Otherwise they occur twice, once at
    each offset, and the expression fires at both. ``times`` are the first few local times the
    expression names in that span (naive wall-clock times), ``count`` how many there are.
    """

    at: int
    before: int
    after: int
    times: tuple[datetime, ...]
    count: int

    @property
    def skipped(self) -> bool:
        return self.after > self.before

    @property
    def shift(self) -> int:
        """By how many seconds the clocks move (always positive)."""
        return abs(self.after - self.before)

    @property
    def start(self) -> datetime:
        """The first wall-clock time of the gap or of the span that repeats."""
        return _naive(self.at + min(self.before, self.after))

    @property
    def end(self) -> datetime:
        """The wall-clock time just after the gap or the repeated span."""
        return _naive(self.at + max(self.before, self.after))


def _naive(local: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=local)


@lru_cache(maxsize=8192)
def clock_changes(expression: str, timezone: str, day: date) -> tuple[ClockChange, ...]:
    """The offset changes of ``timezone`` from the start of ``day`` (UTC) for 367 days that
    skip or repeat a local time ``expression`` names; raises like :func:`parse_expression` and
    :func:`load_timezone`.

    ``@every`` is epoch-aligned and names no local time, so it meets none. A change that the
    expression rides through with its cadence intact is left out too: one that fires in every
    hour, on minutes that the shift maps onto themselves (``0 * * * *`` across a one-hour
    change, ``*/15 * * * *`` across Lord Howe's half hour), fires in real time exactly as it
    would without the change. Cached by its arguments, so a fleet sharing a few schedules
    computes each once a day; a zone's changes are found once per year (see :class:`_Timeline`).
    """
    parsed = parse_expression(expression)
    zone = load_timezone(timezone)
    if not isinstance(parsed, CronExpression):
        return ()
    timeline = _timeline(zone)
    start = (day.toordinal() - _EPOCH_ORDINAL) * _DAY
    found: list[ClockChange] = []
    for at in timeline.changes(start, start + _CLOCK_CHANGE_DAYS * _DAY):
        before, after = timeline.offset(at - 1), timeline.offset(at)
        if _keeps_cadence(parsed, abs(after - before)):
            continue
        times, count = _named_between(parsed, at + min(before, after), at + max(before, after))
        if count:
            found.append(ClockChange(at, before, after, times, count))
    return tuple(found)


def _keeps_cadence(expr: CronExpression, shift: int) -> bool:
    if len(expr.hours) != 24 or shift % _MINUTE:
        return False
    rotation = shift // _MINUTE % 60
    minutes = frozenset(expr.minutes)
    return all((minute + rotation) % 60 in minutes for minute in minutes)


def _named_between(expr: CronExpression, start: int, end: int) -> tuple[tuple[datetime, ...], int]:
    """The local minutes in ``[start, end)`` (local seconds) that ``expr`` names: the first
    few and how many. A gap or a repeated span lasts an hour or two, so this loop is short
    whatever the expression."""
    minutes, hours = frozenset(expr.minutes), frozenset(expr.hours)
    listed: list[datetime] = []
    count = 0
    for local in range(_ceil(start, _MINUTE), end, _MINUTE):
        year, month, day, hour, minute = _split(local)
        if minute in minutes and hour in hours and day in expr.days_in(year, month):
            count += 1
            if len(listed) < _LISTED_TIMES:
                listed.append(datetime(year, month, day, hour, minute))
    return tuple(listed), count
