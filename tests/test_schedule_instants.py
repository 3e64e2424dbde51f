"""The instants at which a schedule fires, in real time zones, across DST and odd calendars.

DESIGN.md §2 defines when a CronWorkflow fires: at every real instant, on a whole minute,
whose wall-clock time in its zone matches the fields. A local time skipped by a DST jump never
fires, one that occurs twice fires twice. Argo documents this with tables for
America/Los_Angeles (reference §1.15.4), which must hold as written. The other cases pin the
same rule where it is easiest to get wrong: southern-hemisphere zones, 30-minute and two-hour
shifts, zones whose offsets are not whole hours, a zone that skipped midnight, one that skipped
a whole day, one whose offset changes twice in five weeks. Then the day-of-month /
day-of-week rule, epoch-aligned ``@every``, unions of several expressions, the ``(start, end]``
boundaries, the five-year horizon and sub-second inputs.

Expected instants are written as RFC 3339 strings with their offsets: that is how a reader
checks them against a calendar, and it pins the zone the results carry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from policies.schedule import SEARCH_YEARS, Schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def rfc3339(instants: list[datetime]) -> list[str]:
    return [instant.isoformat() for instant in instants]


def next_instants(expression: str, timezone: str, after: str, count: int) -> list[str]:
    return rfc3339(Schedule([expression], timezone).next_n(at(after), count))


def instants_between(expressions: list[str], timezone: str, start: str, end: str) -> list[str]:
    return rfc3339(list(Schedule(expressions, timezone).between(at(start), at(end))))


# --------------------------------------------------------------------------------------------
# Argo's published DST tables (reference §1.15.4): they must hold


LOS_ANGELES = "America/Los_Angeles"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        pytest.param(
            "59 1 * * *",
            "2020-03-07T12:00:00-08:00",
            ["2020-03-08T01:59:00-08:00", "2020-03-09T01:59:00-07:00", "2020-03-10T01:59:00-07:00"],
            id="spring-59-1-runs-every-day",
        ),
        pytest.param(
            "0 2 * * *",
            "2020-03-07T12:00:00-08:00",
            ["2020-03-09T02:00:00-07:00", "2020-03-10T02:00:00-07:00", "2020-03-11T02:00:00-07:00"],
            id="spring-0-2-skips-march-8",
        ),
        pytest.param(
            "1 2 * * *",
            "2020-03-07T12:00:00-08:00",
            ["2020-03-09T02:01:00-07:00", "2020-03-10T02:01:00-07:00", "2020-03-11T02:01:00-07:00"],
            id="spring-1-2-skips-march-8",
        ),
        pytest.param(
            "59 1 * * *",
            "2020-10-31T12:00:00-07:00",
            ["2020-11-01T01:59:00-07:00", "2020-11-01T01:59:00-08:00", "2020-11-02T01:59:00-08:00"],
            id="fall-59-1-runs-twice-on-november-1",
        ),
        pytest.param(
            "0 2 * * *",
            "2020-10-31T12:00:00-07:00",
            ["2020-11-01T02:00:00-08:00", "2020-11-02T02:00:00-08:00", "2020-11-03T02:00:00-08:00"],
            id="fall-0-2-runs-once",
        ),
        pytest.param(
            "1 2 * * *",
            "2020-10-31T12:00:00-07:00",
            ["2020-11-01T02:01:00-08:00", "2020-11-02T02:01:00-08:00", "2020-11-03T02:01:00-08:00"],
            id="fall-1-2-runs-once",
        ),
    ],
)
def test_argo_published_dst_table_for_los_angeles(
    expression: str, after: str, expected: list[str]
) -> None:
    assert next_instants(expression, LOS_ANGELES, after, 3) == expected


def test_fall_back_fires_every_quarter_hour_of_the_repeated_hour_twice() -> None:
    assert instants_between(
        ["*/15 * * * *"], LOS_ANGELES, "2020-11-01T00:50:00-07:00", "2020-11-01T02:20:00-08:00"
    ) == [
        "2020-11-01T01:00:00-07:00",
        "2020-11-01T01:15:00-07:00",
        "2020-11-01T01:30:00-07:00",
        "2020-11-01T01:45:00-07:00",
        "2020-11-01T01:00:00-08:00",
        "2020-11-01T01:15:00-08:00",
        "2020-11-01T01:30:00-08:00",
        "2020-11-01T01:45:00-08:00",
        "2020-11-01T02:00:00-08:00",
        "2020-11-01T02:15:00-08:00",
    ]


def test_spring_forward_never_fires_in_the_skipped_hour() -> None:
    assert instants_between(
        ["*/15 * * * *"], LOS_ANGELES, "2020-03-08T01:20:00-08:00", "2020-03-08T03:20:00-07:00"
    ) == [
        "2020-03-08T01:30:00-08:00",
        "2020-03-08T01:45:00-08:00",
        "2020-03-08T03:00:00-07:00",
        "2020-03-08T03:15:00-07:00",
    ]


# --------------------------------------------------------------------------------------------
# Other zones, both transitions


ZONE_CASES = [
    # Europe/Berlin 2021: 02:00 CET -> 03:00 CEST on 03-28; 03:00 CEST -> 02:00 CET on 10-31.
    pytest.param(
        "Europe/Berlin",
        "30 2 * * *",
        "2021-03-27T00:00:00+01:00",
        ["2021-03-27T02:30:00+01:00", "2021-03-29T02:30:00+02:00", "2021-03-30T02:30:00+02:00"],
        id="berlin-spring-skips-0230",
    ),
    pytest.param(
        "Europe/Berlin",
        "30 2 * * *",
        "2021-10-30T12:00:00+02:00",
        ["2021-10-31T02:30:00+02:00", "2021-10-31T02:30:00+01:00", "2021-11-01T02:30:00+01:00"],
        id="berlin-fall-repeats-0230",
    ),
    pytest.param(
        "Europe/Berlin",
        "0 2 * * *",
        "2021-10-30T12:00:00+02:00",
        ["2021-10-31T02:00:00+02:00", "2021-10-31T02:00:00+01:00", "2021-11-01T02:00:00+01:00"],
        id="berlin-fall-repeats-0200",
    ),
    pytest.param(
        "Europe/Berlin",
        "0 3 * * *",
        "2021-10-30T12:00:00+02:00",
        ["2021-10-31T03:00:00+01:00", "2021-11-01T03:00:00+01:00"],
        id="berlin-fall-0300-once",
    ),
    # Australia/Sydney 2021 (southern hemisphere): 03:00 AEDT -> 02:00 AEST on 04-04,
    # 02:00 AEST -> 03:00 AEDT on 10-03.
    pytest.param(
        "Australia/Sydney",
        "30 2 * * *",
        "2021-04-03T12:00:00+11:00",
        ["2021-04-04T02:30:00+11:00", "2021-04-04T02:30:00+10:00", "2021-04-05T02:30:00+10:00"],
        id="sydney-april-repeats-0230",
    ),
    pytest.param(
        "Australia/Sydney",
        "30 2 * * *",
        "2021-10-02T00:00:00+10:00",
        ["2021-10-02T02:30:00+10:00", "2021-10-04T02:30:00+11:00"],
        id="sydney-october-skips-0230",
    ),
    # Australia/Lord_Howe 2021: a 30-minute shift. 02:00 (+11) -> 01:30 (+10:30) on 04-04,
    # 02:00 (+10:30) -> 02:30 (+11) on 10-03.
    pytest.param(
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2021-04-03T12:00:00+11:00",
        ["2021-04-04T01:45:00+11:00", "2021-04-04T01:45:00+10:30", "2021-04-05T01:45:00+10:30"],
        id="lord-howe-april-repeats-0145",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "15 1 * * *",
        "2021-04-03T12:00:00+11:00",
        ["2021-04-04T01:15:00+11:00", "2021-04-05T01:15:00+10:30"],
        id="lord-howe-april-0115-once",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2021-10-02T12:00:00+10:30",
        ["2021-10-04T02:15:00+11:00"],
        id="lord-howe-october-skips-0215",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "45 2 * * *",
        "2021-10-02T12:00:00+10:30",
        ["2021-10-03T02:45:00+11:00"],
        id="lord-howe-october-0245-exists",
    ),
    # Pacific/Chatham 2021 (+12:45 / +13:45): 03:45 -> 02:45 on 04-04, 02:45 -> 03:45 on 09-26.
    pytest.param(
        "Pacific/Chatham",
        "0 3 * * *",
        "2021-04-03T12:00:00+13:45",
        ["2021-04-04T03:00:00+13:45", "2021-04-04T03:00:00+12:45", "2021-04-05T03:00:00+12:45"],
        id="chatham-april-repeats-0300",
    ),
    pytest.param(
        "Pacific/Chatham",
        "0 3 * * *",
        "2021-09-25T12:00:00+12:45",
        ["2021-09-27T03:00:00+13:45"],
        id="chatham-september-skips-0300",
    ),
    pytest.param(
        "Pacific/Chatham",
        "30 2 * * *",
        "2021-09-25T12:00:00+12:45",
        ["2021-09-26T02:30:00+12:45", "2021-09-27T02:30:00+13:45"],
        id="chatham-september-0230-exists",
    ),
    # Antarctica/Troll: a two-hour shift, 01:00 UTC on the EU Sundays.
    pytest.param(
        "Antarctica/Troll",
        "30 1 * * *",
        "2021-03-27T12:00:00+00:00",
        ["2021-03-29T01:30:00+02:00"],
        id="troll-march-skips-two-hours",
    ),
    pytest.param(
        "Antarctica/Troll",
        "30 2 * * *",
        "2021-10-30T12:00:00+02:00",
        ["2021-10-31T02:30:00+02:00", "2021-10-31T02:30:00+00:00", "2021-11-01T02:30:00+00:00"],
        id="troll-october-repeats-0230",
    ),
    # Africa/Casablanca suspends its +01:00 during Ramadan: two changes five weeks apart.
    pytest.param(
        "Africa/Casablanca",
        "30 2 * * *",
        "2020-04-18T12:00:00+01:00",
        ["2020-04-19T02:30:00+01:00", "2020-04-19T02:30:00+00:00", "2020-04-20T02:30:00+00:00"],
        id="casablanca-ramadan-start-repeats-0230",
    ),
    pytest.param(
        "Africa/Casablanca",
        "30 2 * * *",
        "2020-05-30T12:00:00+00:00",
        ["2020-06-01T02:30:00+01:00"],
        id="casablanca-ramadan-end-skips-0230",
    ),
    # America/Sao_Paulo: DST started at midnight (midnight did not exist on 2018-11-04), ended
    # at midnight (23:00-23:59 of 2019-02-16 happened twice), and was abolished in 2019.
    pytest.param(
        "America/Sao_Paulo",
        "0 0 * * *",
        "2018-11-03T12:00:00-03:00",
        ["2018-11-05T00:00:00-02:00"],
        id="sao-paulo-skipped-midnight",
    ),
    pytest.param(
        "America/Sao_Paulo",
        "0 1 * * *",
        "2018-11-03T12:00:00-03:00",
        ["2018-11-04T01:00:00-02:00"],
        id="sao-paulo-0100-after-skipped-midnight",
    ),
    pytest.param(
        "America/Sao_Paulo",
        "30 23 * * *",
        "2019-02-16T12:00:00-02:00",
        ["2019-02-16T23:30:00-02:00", "2019-02-16T23:30:00-03:00", "2019-02-17T23:30:00-03:00"],
        id="sao-paulo-repeated-2330",
    ),
    pytest.param(
        "America/Sao_Paulo",
        "0 0 * * *",
        "2019-11-02T12:00:00-03:00",
        ["2019-11-03T00:00:00-03:00", "2019-11-04T00:00:00-03:00"],
        id="sao-paulo-no-dst-after-abolition",
    ),
    # Zones whose offsets are not whole hours.
    pytest.param(
        "Asia/Kolkata",
        "0 0 * * *",
        "2024-01-01T00:00:00+00:00",
        ["2024-01-02T00:00:00+05:30", "2024-01-03T00:00:00+05:30"],
        id="kolkata-midnight",
    ),
    pytest.param(
        "Asia/Kolkata",
        "30 9 * * 1-5",
        "2024-01-05T04:00:00+00:00",
        ["2024-01-08T09:30:00+05:30"],
        id="kolkata-weekday-morning",
    ),
    pytest.param(
        "Asia/Kathmandu",
        "15 6 * * *",
        "2024-01-01T00:00:00+00:00",
        ["2024-01-01T06:15:00+05:45", "2024-01-02T06:15:00+05:45"],
        id="kathmandu-quarter-hour-offset",
    ),
    # Pacific/Apia: Samoa skipped Friday 2011-12-30 (-10:00 -> +14:00).
    pytest.param(
        "Pacific/Apia",
        "0 12 * * *",
        "2011-12-28T00:00:00-10:00",
        ["2011-12-28T12:00:00-10:00", "2011-12-29T12:00:00-10:00", "2011-12-31T12:00:00+14:00"],
        id="apia-skips-december-30",
    ),
    pytest.param(
        "Pacific/Apia",
        "0 0 30 12 *",
        "2011-12-01T00:00:00-10:00",
        ["2012-12-30T00:00:00+14:00"],
        id="apia-december-30-only-next-year",
    ),
    pytest.param(
        "Pacific/Apia",
        "0 9 * * 5",
        "2011-12-24T00:00:00-10:00",
        ["2012-01-06T09:00:00+14:00"],
        id="apia-skipped-friday",
    ),
]


@pytest.mark.parametrize(("timezone", "expression", "after", "expected"), ZONE_CASES)
def test_wall_clock_rule_in_other_zones(
    timezone: str, expression: str, after: str, expected: list[str]
) -> None:
    assert next_instants(expression, timezone, after, len(expected)) == expected


def test_fall_back_fires_twice_at_repeated_half_hours_in_lord_howe() -> None:
    """Lord Howe Island falls back by 30 minutes: only 01:30-01:59 happen twice."""
    assert instants_between(
        ["*/15 * * * *"],
        "Australia/Lord_Howe",
        "2021-04-04T01:00:00+11:00",
        "2021-04-04T02:10:00+10:30",
    ) == [
        "2021-04-04T01:15:00+11:00",
        "2021-04-04T01:30:00+11:00",
        "2021-04-04T01:45:00+11:00",
        "2021-04-04T01:30:00+10:30",
        "2021-04-04T01:45:00+10:30",
        "2021-04-04T02:00:00+10:30",
    ]


def test_hourly_runs_straight_across_the_day_samoa_skipped() -> None:
    assert instants_between(
        ["0 * * * *"], "Pacific/Apia", "2011-12-29T22:30:00-10:00", "2011-12-31T01:30:00+14:00"
    ) == [
        "2011-12-29T23:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T01:00:00+14:00",
    ]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        pytest.param("Pacific/Chatham", "2021-01-01T00:00:00+13:45", id="ahead-of-utc"),
        pytest.param("Pacific/Kiritimati", "2021-01-01T00:00:00+14:00", id="furthest-ahead"),
        pytest.param("America/Los_Angeles", "2021-01-01T00:00:00-08:00", id="behind-utc"),
        pytest.param("Pacific/Pago_Pago", "2021-01-01T00:00:00-11:00", id="furthest-behind"),
    ],
)
def test_new_year_is_local_not_utc(timezone: str, expected: str) -> None:
    schedule = Schedule(["@yearly"], timezone)
    assert schedule.next_after(at("2020-12-30T00:00:00+00:00")) == at(expected)
    assert schedule.latest_at_or_before(at("2021-06-01T00:00:00+00:00")) == at(expected)
    assert schedule.next_after(at(expected)) == at(expected.replace("2021", "2022", 1))


# --------------------------------------------------------------------------------------------
# The day-of-month / day-of-week rule (February 2020: the 1st is a Saturday, the 13th a
# Thursday, Fridays are the 7th, 14th, 21st and 28th)


FEBRUARY_2020 = ("2020-01-31T23:59:00+00:00", "2020-02-29T23:59:00+00:00")


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        pytest.param("0 0 13 * 5", [7, 13, 14, 21, 28], id="13th-or-friday"),
        pytest.param("0 0 * * 5", [7, 14, 21, 28], id="fridays"),
        pytest.param("0 0 ? * fri", [7, 14, 21, 28], id="fridays-question-mark"),
        pytest.param("0 0 */1 * 5", [7, 14, 21, 28], id="star-step-one-is-still-a-star"),
        pytest.param("0 0 13 * *", [13], id="13th"),
        pytest.param("0 0 13 * ?", [13], id="13th-question-mark"),
        pytest.param("0 0 1-31 * 1", list(range(1, 30)), id="full-range-is-not-a-star"),
        pytest.param(
            "0 0 */2 * 5",
            [1, 3, 5, 7, 9, 11, 13, 14, 15, 17, 19, 21, 23, 25, 27, 28, 29],
            id="stepped-dom-or-friday",
        ),
        pytest.param(
            "0 10 10,27 * */2",
            [1, 2, 4, 6, 8, 9, 10, 11, 13, 15, 16, 18, 20, 22, 23, 25, 27, 29],
            id="argo-4637-stepped-dow-or",
        ),
        pytest.param("0 0 30 2 1", [3, 10, 17, 24], id="impossible-dom-or-monday"),
        pytest.param("0 0 * feb 0,6", [1, 2, 8, 9, 15, 16, 22, 23, 29], id="weekends"),
    ],
)
def test_day_rule_over_a_month(expression: str, days: list[int]) -> None:
    """Reference §1.15.2; ``0 10 10,27 * */2`` is Argo issues #4637 and #8105, where users
    expected AND and robfig (and so Argo, and so cronwf) means OR."""
    instants = list(Schedule([expression]).between(*map(at, FEBRUARY_2020)))
    assert [instant.day for instant in instants] == days
    assert all((instant.year, instant.month) == (2020, 2) for instant in instants)
    hour = int(expression.split()[1])
    assert all((instant.hour, instant.minute) == (hour, 0) for instant in instants)


# --------------------------------------------------------------------------------------------
# @every: epoch-aligned


@pytest.mark.parametrize(
    "timezone", ["", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham", "Asia/Kathmandu"]
)
@pytest.mark.parametrize(
    "after",
    ["2024-03-10T09:59:59+00:00", "2024-03-10T10:00:00+00:00", "2024-03-10T10:00:41.5+00:00"],
)
def test_every_fires_at_multiples_of_its_duration_in_unix_time(timezone: str, after: str) -> None:
    start = at(after)
    instants = [int(i.timestamp()) for i in Schedule(["@every 90s"], timezone).next_n(start, 6)]
    assert all(ts % 90 == 0 for ts in instants)
    assert [b - a for a, b in pairwise(instants)] == [90] * 5
    assert instants[0] - 90 <= start.timestamp() < instants[0]


def test_every_next_after_in_unix_seconds() -> None:
    schedule = Schedule(["@every 90s"], "Europe/Berlin")
    assert schedule.next_after_ts(1_000) == 1_080
    assert schedule.next_after_ts(1_079) == 1_080
    assert schedule.next_after_ts(1_080) == 1_170
    assert schedule.next_after_ts(-1) == 0
    assert schedule.latest_at_or_before_ts(1_000) == 990
    assert schedule.latest_at_or_before_ts(990) == 990
    assert schedule.latest_at_or_before_ts(989) == 900
    assert list(schedule.between_ts(900, 1_170)) == [990, 1_080, 1_170]


def test_every_hour_follows_real_time_through_fall_back() -> None:
    """The local day of 2020-11-01 in Los Angeles lasts 25 hours: 25 instants, evenly spaced."""
    instants = list(
        Schedule(["@every 1h"], LOS_ANGELES).between(
            at("2020-11-01T00:00:00-07:00"), at("2020-11-02T00:00:00-08:00")
        )
    )
    seconds = [int(instant.timestamp()) for instant in instants]
    assert len(seconds) == 25
    assert [b - a for a, b in pairwise(seconds)] == [3600] * 24
    assert rfc3339(instants[:3]) == [
        "2020-11-01T01:00:00-07:00",
        "2020-11-01T01:00:00-08:00",
        "2020-11-01T02:00:00-08:00",
    ]


def test_every_hour_is_aligned_to_unix_time_not_to_the_local_hour() -> None:
    """In India (+05:30) an epoch-aligned hour starts at half past the local hour."""
    assert instants_between(
        ["@every 1h", "0 * * * *"],
        "Asia/Kolkata",
        "2024-01-01T00:00:00+05:30",
        "2024-01-01T02:00:00+05:30",
    ) == [
        "2024-01-01T00:30:00+05:30",
        "2024-01-01T01:00:00+05:30",
        "2024-01-01T01:30:00+05:30",
        "2024-01-01T02:00:00+05:30",
    ]


def test_every_does_not_depend_on_when_the_schedule_was_built() -> None:
    """Unlike robfig, whose timer starts when the entry is (re-)added (reference §1.15.3)."""
    first = Schedule(["@every 1h30m"])
    second = Schedule(["@every 5400s"])
    after = at("2024-05-05T05:05:05+00:00")
    assert first.next_n(after, 4) == second.next_n(after, 4)
    assert all(int(i.timestamp()) % 5400 == 0 for i in first.next_n(after, 4))


# --------------------------------------------------------------------------------------------
# Several expressions


def test_several_expressions_fire_at_the_union_once_per_instant() -> None:
    start, end = "2024-01-01T00:00:00+00:00", "2024-01-01T03:00:00+00:00"
    expected = [
        "2024-01-01T00:30:00+00:00",
        "2024-01-01T01:00:00+00:00",
        "2024-01-01T01:30:00+00:00",
        "2024-01-01T02:00:00+00:00",
        "2024-01-01T02:30:00+00:00",
        "2024-01-01T03:00:00+00:00",
    ]
    assert instants_between(["0 * * * *", "*/30 * * * *"], "", start, end) == expected
    schedule = Schedule(["0 * * * *", "*/30 * * * *"])
    assert rfc3339(schedule.next_n(at(start), 6)) == expected
    assert schedule.latest_at_or_before(at(end)) == at(end)


@pytest.mark.parametrize(
    "expressions",
    [
        pytest.param(["0 * * * *", "0 * * * *"], id="same-expression-twice"),
        pytest.param(["0 * * * *", "@hourly"], id="descriptor-and-fields"),
        pytest.param(["0 * * * *", "@every 1h"], id="cron-and-every-in-utc"),
        pytest.param(["@every 1h", "@every 60m"], id="every-twice"),
        pytest.param(["@every 1h", "@every 30m", "0 * * * *"], id="three-overlapping"),
    ],
)
def test_coinciding_instants_fire_once(expressions: list[str]) -> None:
    schedule = Schedule(expressions)
    instants = list(schedule.between(at("2024-01-01T00:00:00Z"), at("2024-01-02T00:00:00Z")))
    assert len(instants) == len(set(instants))
    assert instants == sorted(instants)
    following = schedule.next_n(at("2024-01-01T00:00:00Z"), 3)
    assert following == instants[:3]


def test_union_of_different_days() -> None:
    assert instants_between(
        ["0 0 * * mon", "0 12 1 * *"],
        "",
        "2024-03-30T00:00:00+00:00",
        "2024-04-09T00:00:00+00:00",
    ) == [
        "2024-04-01T00:00:00+00:00",
        "2024-04-01T12:00:00+00:00",
        "2024-04-08T00:00:00+00:00",
    ]


def test_union_keeps_the_repeated_local_time_of_each_expression() -> None:
    schedule = Schedule(["59 1 * * *", "0 2 * * *"], LOS_ANGELES)
    assert rfc3339(schedule.next_n(at("2020-10-31T12:00:00-07:00"), 4)) == [
        "2020-11-01T01:59:00-07:00",
        "2020-11-01T01:59:00-08:00",
        "2020-11-01T02:00:00-08:00",
        "2020-11-02T01:59:00-08:00",
    ]


# --------------------------------------------------------------------------------------------
# Zones of results, empty zone


def test_empty_timezone_means_utc() -> None:
    schedule = Schedule(["0 12 * * *"])
    found = schedule.next_after(at("2024-06-01T00:00:00+02:00"))
    assert found is not None
    assert found.isoformat() == "2024-06-01T12:00:00+00:00"
    assert found.utcoffset() == timedelta(0)
    assert Schedule(["0 12 * * *"], "UTC").next_after(at("2024-06-01T00:00:00+02:00")) == found


def test_results_carry_the_schedules_zone_whatever_the_input_zone() -> None:
    schedule = Schedule(["0 9 * * *"], "Asia/Kolkata")
    after = at("2024-01-01T00:00:00+00:00")
    results = [
        schedule.next_after(after),
        *schedule.next_n(after, 2),
        *schedule.between(after, after + timedelta(days=1)),
        schedule.latest_at_or_before(after + timedelta(days=1)),
    ]
    assert rfc3339([r for r in results if r is not None]) == [
        "2024-01-01T09:00:00+05:30",
        "2024-01-01T09:00:00+05:30",
        "2024-01-02T09:00:00+05:30",
        "2024-01-01T09:00:00+05:30",
        "2024-01-01T09:00:00+05:30",
    ]
    assert all(r is not None and r.tzinfo is schedule.tz for r in results)
    assert str(schedule.tz) == "Asia/Kolkata"


# --------------------------------------------------------------------------------------------
# Boundaries


HOURLY = Schedule(["0 * * * *"])


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param("10:00:00", "12:00:00", ["11:00:00", "12:00:00"], id="start-out-end-in"),
        pytest.param("09:59:59", "10:00:00", ["10:00:00"], id="one-second-window-with-end"),
        pytest.param("10:00:00", "10:59:59", [], id="instant-at-start-is-excluded"),
        pytest.param("10:00:00", "10:00:00", [], id="empty-window"),
        pytest.param("12:00:00", "10:00:00", [], id="reversed-window"),
        pytest.param("09:59:59.5", "10:00:00.5", ["10:00:00"], id="sub-second-bounds"),
        pytest.param("10:00:00.000001", "11:00:00", ["11:00:00"], id="just-after-an-instant"),
    ],
)
def test_between_is_open_at_start_and_closed_at_end(
    start: str, end: str, expected: list[str]
) -> None:
    day = "2024-01-01T"
    found = list(HOURLY.between(at(f"{day}{start}+00:00"), at(f"{day}{end}+00:00")))
    assert rfc3339(found) == [f"{day}{e}+00:00" for e in expected]


def test_between_ts_is_open_at_start_and_closed_at_end() -> None:
    assert list(HOURLY.between_ts(36_000, 43_200)) == [39_600, 43_200]
    assert list(HOURLY.between_ts(35_999, 36_000)) == [36_000]
    assert list(HOURLY.between_ts(36_000, 39_599)) == []


def test_next_after_is_strictly_after() -> None:
    assert HOURLY.next_after(at("2024-01-01T10:00:00+00:00")) == at("2024-01-01T11:00:00+00:00")
    assert HOURLY.next_after(at("2024-01-01T09:59:59+00:00")) == at("2024-01-01T10:00:00+00:00")
    assert HOURLY.next_after_ts(36_000) == 39_600


@pytest.mark.parametrize(
    ("timezone", "expression", "t", "expected"),
    [
        pytest.param(
            "", "0 12 * * *", "2024-06-01T12:00:00+00:00", "2024-06-01T12:00:00+00:00", id="exact"
        ),
        pytest.param(
            "",
            "0 12 * * *",
            "2024-06-01T11:59:59+00:00",
            "2024-05-31T12:00:00+00:00",
            id="one-second-before",
        ),
        pytest.param(
            "",
            "0 12 * * *",
            "2024-06-01T12:00:00.250000+00:00",
            "2024-06-01T12:00:00+00:00",
            id="sub-second-after",
        ),
        pytest.param(
            LOS_ANGELES,
            "59 1 * * *",
            "2020-11-01T03:00:00-08:00",
            "2020-11-01T01:59:00-08:00",
            id="repeated-time-later-occurrence",
        ),
        pytest.param(
            LOS_ANGELES,
            "59 1 * * *",
            "2020-11-01T01:59:00-08:00",
            "2020-11-01T01:59:00-08:00",
            id="repeated-time-exactly-second-occurrence",
        ),
        pytest.param(
            LOS_ANGELES,
            "59 1 * * *",
            "2020-11-01T01:30:00-08:00",
            "2020-11-01T01:59:00-07:00",
            id="between-the-two-occurrences",
        ),
        pytest.param(
            LOS_ANGELES,
            "30 2 * * *",
            "2020-03-08T12:00:00-07:00",
            "2020-03-07T02:30:00-08:00",
            id="skipped-local-time",
        ),
        pytest.param(
            "Pacific/Apia",
            "0 12 30 12 *",
            "2012-06-01T00:00:00+13:00",
            "2010-12-30T12:00:00-10:00",
            id="apia-skipped-day",
        ),
    ],
)
def test_latest_at_or_before(timezone: str, expression: str, t: str, expected: str) -> None:
    found = Schedule([expression], timezone).latest_at_or_before(at(t))
    assert found is not None
    assert found.isoformat() == expected


# --------------------------------------------------------------------------------------------
# Schedules that never fire, the five-year horizon, leap days


@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        pytest.param("0 0 30 2 *", "", id="february-30"),
        pytest.param("0 0 30 2 *", "Europe/Berlin", id="february-30-berlin"),
        pytest.param("0 0 31 4,6,9,11 *", "Australia/Sydney", id="31st-of-short-months"),
        pytest.param("0 0 30,31 feb *", "Asia/Kolkata", id="february-30-31-by-name"),
    ],
)
def test_schedule_that_never_fires(expression: str, timezone: str) -> None:
    schedule = Schedule([expression], timezone)
    t = at("2024-01-01T00:00:00+00:00")
    assert schedule.next_after(t) is None
    assert schedule.next_n(t, 3) == []
    assert not schedule.fires(t)
    assert list(schedule.between(t, at("2034-01-01T00:00:00+00:00"))) == []
    assert schedule.latest_at_or_before(t) is None


def test_search_horizon_is_five_years() -> None:
    assert SEARCH_YEARS == 5


def test_leap_day_fires_only_in_leap_years() -> None:
    schedule = Schedule(["0 0 29 2 *"])
    assert rfc3339(schedule.next_n(at("2021-01-01T00:00:00+00:00"), 3)) == [
        "2024-02-29T00:00:00+00:00",
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]
    assert rfc3339(
        list(schedule.between(at("2021-01-01T00:00:00+00:00"), at("2030-01-01T00:00:00+00:00")))
    ) == ["2024-02-29T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]
    assert schedule.latest_at_or_before(at("2027-12-31T00:00:00+00:00")) == at(
        "2024-02-29T00:00:00+00:00"
    )


def test_leap_day_beyond_the_horizon_does_not_fire() -> None:
    """2100 is not a leap year: after 2096-02-29 the next 29 February is in 2104."""
    schedule = Schedule(["0 0 29 2 *"])
    assert schedule.next_after(at("2096-03-01T00:00:00+00:00")) is None
    assert not schedule.fires(at("2096-03-01T00:00:00+00:00"))
    assert schedule.next_after(at("2099-06-01T00:00:00+00:00")) == at("2104-02-29T00:00:00+00:00")
    assert schedule.fires(at("2099-06-01T00:00:00+00:00"))


def test_yearly_fires() -> None:
    assert Schedule(["@yearly"], "Europe/Berlin").fires(at("2024-01-01T00:00:00+01:00"))


# --------------------------------------------------------------------------------------------
# Sub-second inputs, naive datetimes, the two APIs


EVERY_MINUTE = Schedule(["* * * * *"])


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param("12:00:00.500000", "12:01:00", id="half-a-second-past"),
        pytest.param("11:59:59.999999", "12:00:00", id="a-microsecond-before"),
        pytest.param("12:00:00.000001", "12:01:00", id="a-microsecond-past"),
    ],
)
def test_next_after_with_microseconds(after: str, expected: str) -> None:
    found = EVERY_MINUTE.next_after(at(f"2024-01-01T{after}+00:00"))
    assert found is not None
    assert found.isoformat() == f"2024-01-01T{expected}+00:00"
    assert found.microsecond == 0


def test_latest_at_or_before_with_microseconds() -> None:
    assert EVERY_MINUTE.latest_at_or_before(at("2024-01-01T11:59:59.999999+00:00")) == at(
        "2024-01-01T11:59:00+00:00"
    )


def test_every_second_with_microseconds() -> None:
    schedule = Schedule(["@every 1s"])
    assert schedule.next_after(at("2024-01-01T00:00:00.5+00:00")) == at("2024-01-01T00:00:01+00:00")
    assert schedule.latest_at_or_before(at("2024-01-01T00:00:00.5+00:00")) == at(
        "2024-01-01T00:00:00+00:00"
    )


NAIVE = datetime(2024, 1, 1, 12, 0)
AWARE = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.next_after(NAIVE), id="next_after"),
        pytest.param(lambda s: s.next_n(NAIVE, 2), id="next_n"),
        pytest.param(lambda s: list(s.between(NAIVE, AWARE)), id="between-start"),
        pytest.param(lambda s: list(s.between(AWARE - timedelta(days=1), NAIVE)), id="between-end"),
        pytest.param(lambda s: s.latest_at_or_before(NAIVE), id="latest_at_or_before"),
        pytest.param(lambda s: s.fires(NAIVE), id="fires"),
    ],
)
def test_naive_datetimes_are_rejected(call: Callable[[Schedule], object]) -> None:
    """A naive datetime has no instant: guessing the host zone would break DESIGN §2."""
    with pytest.raises(ValueError, match="time zone"):
        call(Schedule(["* * * * *"], "Europe/Berlin"))


def test_datetime_and_unix_second_apis_agree() -> None:
    schedule = Schedule(["*/7 1-3 * * *", "@every 1000s"], "Europe/Berlin")
    start = at("2021-10-30T23:00:00+00:00")
    end = start + timedelta(hours=5)
    start_ts, end_ts = int(start.timestamp()), int(end.timestamp())
    assert [int(i.timestamp()) for i in schedule.between(start, end)] == list(
        schedule.between_ts(start_ts, end_ts)
    )
    following = schedule.next_after(start)
    assert following is not None
    assert int(following.timestamp()) == schedule.next_after_ts(start_ts)
    latest = schedule.latest_at_or_before(end)
    assert latest is not None
    assert int(latest.timestamp()) == schedule.latest_at_or_before_ts(end_ts)
