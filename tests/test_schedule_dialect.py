"""The schedule dialect: what `parse_expression` accepts, what it means, and how it refuses.

cronwf must accept exactly the expressions Argo accepts (robfig/cron v3's standard parser,
DESIGN.md §2) and give them the same meaning, or a CronWorkflow would fire at different
instants under cronwf than under Argo. When an expression is refused, the message must be
robfig's, word for word (reference §1.15.1), because users paste it into search engines and
Argo's issue tracker; cronwf may only append a hint in parentheses. Field expansion is also
cross-checked against croniter where both dialects agree.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from policies.schedule import (
    CronExpression,
    EveryExpression,
    Schedule,
    ScheduleError,
    TimezoneError,
    load_timezone,
    parse_expression,
)

MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK = range(5)
FIELD_NAMES = ("minutes", "hours", "days_of_month", "months", "days_of_week")
FULL_RANGES = (range(60), range(24), range(1, 32), range(1, 13), range(7))


def cron(expression: str) -> CronExpression:
    parsed = parse_expression(expression)
    assert isinstance(parsed, CronExpression)
    return parsed


def fields_of(parsed: CronExpression) -> tuple[tuple[int, ...], ...]:
    return tuple(getattr(parsed, name) for name in FIELD_NAMES)


def with_field(position: int, text: str) -> str:
    """A five-field expression with ``text`` at ``position`` and ``*`` elsewhere."""
    fields = ["*"] * 5
    fields[position] = text
    return " ".join(fields)


# --------------------------------------------------------------------------------------------
# Field values


FIELD_CASES = [
    # (position, field text, expected values)
    pytest.param(MINUTE, "*", set(range(60)), id="minute-star"),
    pytest.param(MINUTE, "?", set(range(60)), id="minute-question-mark-is-star"),
    pytest.param(MINUTE, "0", {0}, id="minute-zero"),
    pytest.param(MINUTE, "59", {59}, id="minute-max"),
    pytest.param(MINUTE, "5-10", set(range(5, 11)), id="minute-range-inclusive"),
    pytest.param(MINUTE, "*/15", {0, 15, 30, 45}, id="minute-star-step"),
    pytest.param(MINUTE, "*/1", set(range(60)), id="minute-star-step-one"),
    pytest.param(MINUTE, "5/15", {5, 20, 35, 50}, id="minute-start-step-runs-to-max"),
    pytest.param(MINUTE, "58/1", {58, 59}, id="minute-start-step-one"),
    pytest.param(MINUTE, "10-40/10", {10, 20, 30, 40}, id="minute-range-step"),
    pytest.param(MINUTE, "10-45/10", {10, 20, 30, 40}, id="minute-range-step-stops-before-end"),
    pytest.param(MINUTE, "0-59/60", {0}, id="minute-step-larger-than-range"),
    pytest.param(MINUTE, "1,5,9", {1, 5, 9}, id="minute-list"),
    pytest.param(MINUTE, "9,1,5,1", {1, 5, 9}, id="minute-list-unsorted-with-duplicate"),
    pytest.param(MINUTE, "1-3,50-59/3", {1, 2, 3, 50, 53, 56, 59}, id="minute-list-of-ranges"),
    pytest.param(MINUTE, "+5", {5}, id="minute-plus-sign-like-go-atoi"),
    pytest.param(MINUTE, "007", {7}, id="minute-leading-zeros"),
    pytest.param(HOUR, "*/6", {0, 6, 12, 18}, id="hour-star-step"),
    pytest.param(HOUR, "20/3", {20, 23}, id="hour-start-step"),
    pytest.param(HOUR, "9-17", set(range(9, 18)), id="hour-business-hours"),
    pytest.param(HOUR, "23", {23}, id="hour-max"),
    pytest.param(DAY_OF_MONTH, "1", {1}, id="dom-min"),
    pytest.param(DAY_OF_MONTH, "31", {31}, id="dom-max"),
    pytest.param(DAY_OF_MONTH, "1-31/10", {1, 11, 21, 31}, id="dom-range-step"),
    pytest.param(DAY_OF_MONTH, "15/5", {15, 20, 25, 30}, id="dom-start-step"),
    pytest.param(DAY_OF_MONTH, "*/2", set(range(1, 32, 2)), id="dom-star-step-starts-at-one"),
    pytest.param(MONTH, "jan", {1}, id="month-name"),
    pytest.param(MONTH, "DEC", {12}, id="month-name-upper-case"),
    pytest.param(MONTH, "Jan-Mar", {1, 2, 3}, id="month-name-range-mixed-case"),
    pytest.param(MONTH, "jan,JUL", {1, 7}, id="month-name-list"),
    pytest.param(MONTH, "feb-dec/2", {2, 4, 6, 8, 10, 12}, id="month-name-range-step"),
    pytest.param(MONTH, "jan/6", {1, 7}, id="month-name-start-step"),
    pytest.param(MONTH, "3-may", {3, 4, 5}, id="month-number-to-name-range"),
    pytest.param(MONTH, "*/3", {1, 4, 7, 10}, id="month-star-step-starts-at-one"),
    pytest.param(MONTH, "3/4", {3, 7, 11}, id="month-start-step"),
    pytest.param(
        MONTH,
        "jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec",
        set(range(1, 13)),
        id="month-all-twelve-names",
    ),
    pytest.param(DAY_OF_WEEK, "sun", {0}, id="dow-sunday-is-zero"),
    pytest.param(DAY_OF_WEEK, "SAT", {6}, id="dow-saturday-is-six"),
    pytest.param(DAY_OF_WEEK, "Mon-Fri", set(range(1, 6)), id="dow-name-range"),
    pytest.param(DAY_OF_WEEK, "mon,wed,FRI", {1, 3, 5}, id="dow-name-list"),
    pytest.param(DAY_OF_WEEK, "sun-sat", set(range(7)), id="dow-whole-week-by-name"),
    pytest.param(DAY_OF_WEEK, "0", {0}, id="dow-zero"),
    pytest.param(DAY_OF_WEEK, "6", {6}, id="dow-six"),
    pytest.param(DAY_OF_WEEK, "?", set(range(7)), id="dow-question-mark"),
    pytest.param(DAY_OF_WEEK, "*/2", {0, 2, 4, 6}, id="dow-star-step"),
    pytest.param(DAY_OF_WEEK, "1/2", {1, 3, 5}, id="dow-start-step"),
    pytest.param(DAY_OF_WEEK, "tue/2", {2, 4, 6}, id="dow-name-start-step"),
    pytest.param(DAY_OF_WEEK, "1-5,0", {0, 1, 2, 3, 4, 5}, id="dow-range-and-number"),
]


@pytest.mark.parametrize(("position", "text", "expected"), FIELD_CASES)
def test_field_text_expands_to_values(position: int, text: str, expected: set[int]) -> None:
    parsed = cron(with_field(position, text))
    assert set(fields_of(parsed)[position]) == expected
    for other in range(5):
        if other != position:
            assert set(fields_of(parsed)[other]) == set(FULL_RANGES[other])


def test_field_values_are_sorted_tuples() -> None:
    parsed = cron("50,5,30 23,1 31,2 dec,jan sat,sun")
    assert fields_of(parsed) == ((5, 30, 50), (1, 23), (2, 31), (1, 12), (0, 6))


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("0  0 * * *", id="two-spaces"),
        pytest.param("0\t0\t*\t*\t*", id="tabs"),
        pytest.param("  0 0 * * *  ", id="leading-and-trailing-blanks"),
    ],
)
def test_fields_are_separated_by_any_whitespace(expression: str) -> None:
    """robfig splits with ``strings.Fields``."""
    assert parse_expression(expression) == parse_expression("0 0 * * *")


# --------------------------------------------------------------------------------------------
# The star flags of the day rule


STAR_FLAG_CASES = [
    # (expression, day-of-month star, day-of-week star)
    pytest.param("* * * * *", True, True, id="both-star"),
    pytest.param("* * ? * ?", True, True, id="question-marks-are-stars"),
    pytest.param("0 0 13 * 5", False, False, id="both-restricted"),
    pytest.param("0 0 * * 5", True, False, id="dom-star"),
    pytest.param("0 0 13 * *", False, True, id="dow-star"),
    pytest.param("0 0 */1 * */1", True, True, id="star-step-one-keeps-flag"),
    pytest.param("0 0 ?/1 * ?/1", True, True, id="question-mark-step-one-keeps-flag"),
    pytest.param("0 0 */2 * *", False, True, id="dom-star-step-two-drops-flag"),
    pytest.param("0 0 * * */2", True, False, id="dow-star-step-two-drops-flag"),
    pytest.param("0 0 ?/2 * ?/3", False, False, id="question-mark-stepped-drops-flag"),
    pytest.param("0 0 1-31 * 1", False, False, id="full-dom-range-is-not-a-star"),
    pytest.param("0 0 1 * 0-6", False, False, id="full-dow-range-is-not-a-star"),
    pytest.param("0 0 1 * sun-sat", False, False, id="full-dow-names-are-not-a-star"),
    pytest.param("0 0 *,15 * 1", True, False, id="list-with-a-star-piece-keeps-flag"),
    pytest.param("0 0 15,*/2 * 1", False, False, id="list-with-stepped-star-has-no-flag"),
    pytest.param("* * 1 * 1", False, False, id="minute-and-hour-stars-do-not-matter"),
]


@pytest.mark.parametrize(("expression", "dom_star", "dow_star"), STAR_FLAG_CASES)
def test_star_flags_follow_robfig(expression: str, dom_star: bool, dow_star: bool) -> None:
    parsed = cron(expression)
    assert (parsed.day_of_month_star, parsed.day_of_week_star) == (dom_star, dow_star)


@pytest.mark.parametrize(
    ("expression", "day", "matches"),
    [
        pytest.param("0 0 13 * 5", (2020, 2, 13), True, id="13th-on-a-thursday-or"),
        pytest.param("0 0 13 * 5", (2020, 2, 14), True, id="friday-14th-or"),
        pytest.param("0 0 13 * 5", (2020, 2, 12), False, id="wednesday-12th-or"),
        pytest.param("0 0 * * 5", (2020, 2, 13), False, id="thursday-with-dom-star"),
        pytest.param("0 0 * * 5", (2020, 2, 14), True, id="friday-with-dom-star"),
        pytest.param("0 0 13 * *", (2020, 2, 14), False, id="14th-with-dow-star"),
        pytest.param("0 0 1-31 * 1", (2020, 2, 14), True, id="full-dom-range-ors"),
        pytest.param("0 0 10,27 * */2", (2020, 2, 10), True, id="stepped-dow-ors-dom-10"),
        pytest.param("0 0 10,27 * */2", (2020, 2, 11), True, id="stepped-dow-ors-tuesday"),
        pytest.param("0 0 10,27 * */2", (2020, 2, 12), False, id="stepped-dow-ors-wednesday"),
    ],
)
def test_day_rule(expression: str, day: tuple[int, int, int], matches: bool) -> None:
    """Reference §1.15.2; ``0 10 10,27 * */2`` is Argo issues #4637 and #8105 (OR, by design)."""
    assert cron(expression).matches_day(*day) is matches


# --------------------------------------------------------------------------------------------
# Descriptors and @every


@pytest.mark.parametrize(
    ("descriptor", "equivalent"),
    [
        pytest.param("@yearly", "0 0 1 1 *", id="yearly"),
        pytest.param("@annually", "0 0 1 1 *", id="annually"),
        pytest.param("@monthly", "0 0 1 * *", id="monthly"),
        pytest.param("@weekly", "0 0 * * 0", id="weekly-is-sunday-midnight"),
        pytest.param("@daily", "0 0 * * *", id="daily"),
        pytest.param("@midnight", "0 0 * * *", id="midnight"),
        pytest.param("@hourly", "0 * * * *", id="hourly"),
    ],
)
def test_descriptor_means_its_five_fields(descriptor: str, equivalent: str) -> None:
    assert parse_expression(descriptor) == parse_expression(equivalent)


def test_weekly_is_sunday_at_midnight_with_a_star_day_of_month() -> None:
    weekly = cron("@weekly")
    assert (weekly.minutes, weekly.hours, weekly.days_of_week) == ((0,), (0,), (0,))
    assert weekly.day_of_month_star
    assert not weekly.day_of_week_star


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        pytest.param("90s", 90, id="seconds"),
        pytest.param("1s", 1, id="one-second-minimum"),
        pytest.param("1h30m", 5400, id="hours-and-minutes"),
        pytest.param("1m30s", 90, id="minutes-and-seconds"),
        pytest.param("1h0m0s", 3600, id="go-string-form-of-an-hour"),
        pytest.param("24h", 86_400, id="a-day"),
        pytest.param("1.5h", 5400, id="fractional-hours-whole-seconds"),
        pytest.param("0.5m", 30, id="fractional-minutes-whole-seconds"),
        pytest.param("1.1h", 3960, id="one-point-one-hours"),
        pytest.param("4.1m", 246, id="four-point-one-minutes"),
        pytest.param("2000ms", 2, id="milliseconds-whole-seconds"),
        pytest.param("1000000us", 1, id="microseconds-whole-seconds"),
        pytest.param("1500ms500ms", 2, id="repeated-unit-adds-up"),
        pytest.param("+90s", 90, id="explicit-plus-sign"),
        pytest.param("2562047h", 2_562_047 * 3600, id="largest-go-duration-in-hours"),
    ],
)
def test_every_takes_a_go_duration(duration: str, seconds: int) -> None:
    """Go's ``time.ParseDuration`` works in integer nanoseconds: ``1.1h`` is exactly 3960 s,
    and a duration is at most 2^63-1 ns (about 2562047 h)."""
    assert parse_expression(f"@every {duration}") == EveryExpression(seconds)


# --------------------------------------------------------------------------------------------
# Refusals, with robfig's wording


def malformed(expression: str, reason: str, case_id: str | None = None) -> object:
    """A case: the expression, and the whole message it must be refused with."""
    message = f"cron schedule {expression} is malformed: {reason}"
    return pytest.param(expression, message, id=case_id or expression)


LWH_HINT = " (L, W, # and H are not supported)"
DAY_OF_WEEK_HINT = " (day of week is 0-6, Sunday is 0)"
SECONDS_HINT = " (seconds and year fields are not supported)"
TOO_BIG = "9" * 20


def atoi(text: str) -> str:
    return f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'


MALFORMED_CASES = [
    # wrong number of fields
    malformed("0 0 * *", "expected exactly 5 fields, found 4: [0 0 * *]"),
    malformed("0 0 0 * * *", "expected exactly 5 fields, found 6: [0 0 0 * * *]" + SECONDS_HINT),
    malformed(
        "0 0 0 * * * 2020",
        "expected exactly 5 fields, found 7: [0 0 0 * * * 2020]" + SECONDS_HINT,
    ),
    malformed("* * * * * * * *", "expected exactly 5 fields, found 8: [* * * * * * * *]"),
    malformed("*", "expected exactly 5 fields, found 1: [*]"),
    malformed("   ", "expected exactly 5 fields, found 0: []", case_id="blanks-only"),
    malformed("", "empty spec string", case_id="empty"),
    # above the maximum
    malformed("10 * * 12737123 *", "end of range (12737123) above maximum (12): 12737123"),
    malformed("60 * * * *", "end of range (60) above maximum (59): 60"),
    malformed("0 24 * * *", "end of range (24) above maximum (23): 24"),
    malformed("0 0 32 * *", "end of range (32) above maximum (31): 32"),
    malformed("0 0 * 13 *", "end of range (13) above maximum (12): 13"),
    malformed("0 0 1-32 * *", "end of range (32) above maximum (31): 1-32"),
    malformed("0 0 * * 7", "end of range (7) above maximum (6): 7" + DAY_OF_WEEK_HINT),
    malformed("0 0 * * 5-7", "end of range (7) above maximum (6): 5-7" + DAY_OF_WEEK_HINT),
    malformed("0 0 * * 1,7", "end of range (7) above maximum (6): 7" + DAY_OF_WEEK_HINT),
    # below the minimum
    malformed("0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
    malformed("0 0 * 0 *", "beginning of range (0) below minimum (1): 0"),
    malformed("0 0 0/5 * *", "beginning of range (0) below minimum (1): 0/5"),
    malformed("0 0 0-5 * *", "beginning of range (0) below minimum (1): 0-5"),
    # beginning beyond end
    malformed("30-10 * * * *", "beginning of range (30) beyond end of range (10): 30-10"),
    malformed("0 0 * dec-jan *", "beginning of range (12) beyond end of range (1): dec-jan"),
    malformed("0 0 * * fri-mon", "beginning of range (5) beyond end of range (1): fri-mon"),
    # hyphens, slashes, steps
    malformed("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    malformed("*/5/2 * * * *", "too many slashes: */5/2"),
    malformed("1/2/3 * * * *", "too many slashes: 1/2/3"),
    malformed("*/0 * * * *", "step of range should be a positive number: */0"),
    malformed("0-10/0 * * * *", "step of range should be a positive number: 0-10/0"),
    malformed("*/-1 * * * *", "negative number (-1) not allowed: -1"),
    malformed("*-5 * * * *", "a range cannot start with *: *-5"),
    # not numbers
    malformed("x * * * *", atoi("x")),
    malformed("-5 * * * *", atoi("")),
    malformed("1.5 * * * *", atoi("1.5")),
    malformed("1,,2 * * * *", atoi("")),
    malformed("*/x * * * *", atoi("x")),
    malformed("0 0 * january *", atoi("january")),
    malformed("0 0 * * monday", atoi("monday")),
    malformed("0 0 jan * *", atoi("jan")),
    malformed("0 0 * * 1-fri-", "too many hyphens: 1-fri-"),
    malformed(
        f"{TOO_BIG} * * * *",
        f"failed to parse int from {TOO_BIG}: "
        f'strconv.Atoi: parsing "{TOO_BIG}": value out of range',
        case_id="number-above-int64",
    ),
    # L, W, #, H (Argo issue #14794)
    malformed("40 13 * * 3L", atoi("3L") + LWH_HINT),
    malformed("0 0 L * *", atoi("L") + LWH_HINT),
    malformed("0 0 15W * *", atoi("15W") + LWH_HINT),
    malformed("0 0 LW * *", atoi("LW") + LWH_HINT),
    malformed("0 0 * * 5#3", atoi("5#3") + LWH_HINT),
    malformed("H * * * *", atoi("H") + LWH_HINT),
    malformed("H/15 * * * *", atoi("H") + LWH_HINT),
    malformed("0 0 * * W", atoi("W") + LWH_HINT),
    # descriptors
    malformed("@reboot", "unrecognized descriptor: @reboot (@reboot is not supported)"),
    malformed("@fortnightly", "unrecognized descriptor: @fortnightly"),
    malformed("@Daily", "unrecognized descriptor: @Daily"),
    malformed("@every", "unrecognized descriptor: @every"),
    malformed("@every90s", "unrecognized descriptor: @every90s"),
    # @every
    malformed(
        "@every ",
        'failed to parse duration @every : time: invalid duration ""',
        case_id="@every-nothing",
    ),
    malformed(
        "@every 90", 'failed to parse duration @every 90: time: missing unit in duration "90"'
    ),
    malformed("@every abc", 'failed to parse duration @every abc: time: invalid duration "abc"'),
    malformed(
        "@every 10x",
        'failed to parse duration @every 10x: time: unknown unit "x" in duration "10x"',
    ),
    malformed(
        "@every 1d", 'failed to parse duration @every 1d: time: unknown unit "d" in duration "1d"'
    ),
    malformed(
        "@every  90s",
        'failed to parse duration @every  90s: time: invalid duration " 90s"',
        case_id="@every-two-spaces",
    ),
    malformed(
        "@every 2562048h",
        'failed to parse duration @every 2562048h: time: invalid duration "2562048h"',
        case_id="@every-above-go-maximum-duration",
    ),
    malformed(
        f"@every {TOO_BIG}s",
        f'failed to parse duration @every {TOO_BIG}s: time: invalid duration "{TOO_BIG}s"',
        case_id="@every-number-above-int64",
    ),
    malformed("@every 500ms", "@every needs a duration of at least 1s, got 500ms"),
    malformed("@every 0s", "@every needs a duration of at least 1s, got 0s"),
    malformed("@every 0", "@every needs a duration of at least 1s, got 0"),
    malformed("@every -5s", "@every needs a duration of at least 1s, got -5s"),
    malformed("@every 1.5s", "@every needs a whole number of seconds, got 1.5s (write e.g. 90s)"),
    malformed(
        "@every 1m0.5s", "@every needs a whole number of seconds, got 1m0.5s (write e.g. 90s)"
    ),
    # time zone prefixes
    malformed(
        "CRON_TZ=UTC 0 0 * * *",
        "time zone prefixes are not supported: set spec.timezone instead",
    ),
    malformed(
        "TZ=Europe/Berlin 0 0 * * *",
        "time zone prefixes are not supported: set spec.timezone instead",
    ),
]


@pytest.mark.parametrize(("expression", "message"), MALFORMED_CASES)
def test_malformed_expression_is_refused_with_argo_message(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_expression(expression)
    assert str(caught.value) == message
    assert caught.value.schedule == expression
    assert message.endswith(caught.value.reason)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        malformed("0 0 32 * thu-fri", "end of range (32) above maximum (31): 32"),
        malformed("0 0 32 * mon-wed", "end of range (32) above maximum (31): 32"),
        malformed("0 0 * jun-jul 7", "end of range (7) above maximum (6): 7" + DAY_OF_WEEK_HINT),
        malformed("0 0 * * thu,7", "end of range (7) above maximum (6): 7" + DAY_OF_WEEK_HINT),
    ],
)
def test_hint_only_names_what_the_expression_really_uses(expression: str, message: str) -> None:
    """Month and day names contain L, W and H (``jul``, ``wed``, ``thu``): they are not the
    unsupported ``L``/``W``/``H`` syntax, so they must not earn that hint."""
    with pytest.raises(ScheduleError) as caught:
        parse_expression(expression)
    assert str(caught.value) == message


def test_schedule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^cron schedule 0 0 \* \* 7 is malformed: "):
        parse_expression("0 0 * * 7")


def test_schedule_refuses_a_bad_expression_among_good_ones() -> None:
    with pytest.raises(ScheduleError, match="end of range"):
        Schedule(["0 0 * * *", "0 0 * * 7"])


def test_schedule_refuses_a_bare_string() -> None:
    """A string is a sequence of one-character strings; taking it as such is always a bug."""
    with pytest.raises(TypeError):
        Schedule("0 0 * * *")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Time zones


def test_empty_timezone_is_utc_not_the_host_zone() -> None:
    assert load_timezone("") is UTC


@pytest.mark.parametrize(
    "name",
    ["America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham", "UTC", "CET"],
)
def test_iana_timezone_loads(name: str) -> None:
    zone = load_timezone(name)
    assert str(zone) == name
    winter, summer = datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 7, 15, tzinfo=UTC)
    assert [t.astimezone(zone).utcoffset() for t in (winter, summer)] == [
        t.astimezone(ZoneInfo(name)).utcoffset() for t in (winter, summer)
    ]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Mars/Olympus_Mons", id="unknown"),
        pytest.param("america/los_angeles", id="wrong-case"),
        pytest.param(" UTC", id="leading-blank"),
        pytest.param("UTC ", id="trailing-blank"),
        pytest.param("/usr/share/zoneinfo/UTC", id="absolute-path"),
        pytest.param("../zoneinfo/UTC", id="relative-path"),
        pytest.param("Europe", id="directory"),
        pytest.param("localtime", id="host-local-zone-is-not-an-iana-name"),
    ],
)
def test_unknown_timezone_is_refused_with_argo_message(name: str) -> None:
    with pytest.raises(TimezoneError) as caught:
        load_timezone(name)
    assert str(caught.value) == f'invalid timezone "{name}": unknown time zone {name}'
    assert caught.value.timezone == name


def test_timezone_data_does_not_depend_on_the_host(tmp_path: Path) -> None:
    """DESIGN §2: zone data comes from the ``tzdata`` package, never from the host's zone
    database, so every replica on every image computes the same instants. A zone that only the
    host knows must therefore be unknown."""
    (tmp_path / "Cronwf").mkdir()
    host_only = tmp_path / "Cronwf" / "Host_Only"
    host_only.write_bytes(files("tzdata.zoneinfo").joinpath("UTC").read_bytes())
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    try:
        with pytest.raises(TimezoneError):
            load_timezone("Cronwf/Host_Only")
    finally:
        zoneinfo.reset_tzpath()


def test_schedule_refuses_an_unknown_timezone() -> None:
    with pytest.raises(TimezoneError):
        Schedule(["0 0 * * *"], "Nowhere/Town")


# --------------------------------------------------------------------------------------------
# Cross-check with croniter's field expansion


CRONITER_AGREES = [
    "* * * * *",
    "*/15 9-17 * * mon-fri",
    "5,10,50-55 */6 1-10/3 jan-mar,dec *",
    "0 0 1,15 */2 sun,sat",
    "7 3 ? * ?",
    "0-59/7 0-23/5 2-30/7 2-11/3 1-5/2",
    "30 4 1 jan,apr,jul,oct *",
    "0 */3 * * 1-5",
    "5/15 20/3 15/5 3/4 1/2",
    "1-3,50-59/3 0,12 28-31 feb 0",
    "0 0 * * sun-sat",
    "59 23 31 12 6",
]


def croniter_fields(expression: str) -> tuple[set[int], ...]:
    expanded, nth_weekday = croniter.expand(expression)
    assert not nth_weekday
    return tuple(
        set(full) if values == ["*"] else {int(v) for v in values}
        for values, full in zip(expanded, FULL_RANGES, strict=True)
    )


@pytest.mark.parametrize("expression", CRONITER_AGREES)
def test_field_values_agree_with_croniter(expression: str) -> None:
    ours = tuple(set(values) for values in fields_of(cron(expression)))
    assert ours == croniter_fields(expression)
