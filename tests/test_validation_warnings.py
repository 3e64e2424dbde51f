"""Warnings of `validate()` about what is certain or likely to go wrong at run time (issue 12,
items 4 and 5): expression parts that fail whenever they are evaluated, and daily local times
that a DST change skips or repeats. Warnings never make a CronWorkflow invalid."""

from __future__ import annotations

import datetime
import time
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies.expressions import ExpressionError, Variables, compile_stop, compile_when
from policies.schedule import Schedule, clock_changes
from policies.spec import CronWorkflowSpec
from policies.validation import validate

UTC = datetime.UTC
NOW = datetime.datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
WORKFLOW_SPEC: dict[str, Any] = {
    "entrypoint": "main",
    "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
}
WHEN_FAILS = (
    "a when that fails ends the tick in a SubmissionError, counted as a failed run, and spawns "
    "nothing"
)
STOP_FAILS = "a stop expression that fails ends the tick in a SpecError and spawns nothing"
LAST = "cronworkflow.lastScheduledTime"


def cron_workflow(**changes: Any) -> CronWorkflowSpec:
    base = CronWorkflowSpec(
        name="nightly",
        schedules=("0 6 * * *",),
        labels={"app": "etl"},
        workflow_spec=WORKFLOW_SPEC,
    )
    return replace(base, **changes)


def warnings(**changes: Any) -> tuple[str, ...]:
    validation = validate(cron_workflow(**changes), NOW)
    assert validation.valid, "a warning never makes a CronWorkflow invalid"
    return validation.warnings


def variables(**changes: Any) -> Variables:
    values: dict[str, Any] = {
        "name": "nightly",
        "namespace": "default",
        "labels": {"app": "etl"},
        "annotations": {},
        "last_scheduled_time": None,
        "succeeded": 0,
        "failed": 0,
        "consecutive_succeeded": 0,
        "consecutive_failed": 0,
    }
    values.update(changes)
    return Variables(**values)


# --- an unguarded nil -------------------------------------------------------------------------


def test_an_unguarded_last_scheduled_time_in_when_is_a_warning_with_a_guard_to_write() -> None:
    source = f"{{{{= (now() - {LAST}).Seconds() > 3600 }}}}"

    assert warnings(when=source) == (
        f"spec.when: now() - {LAST} fails while {LAST} is nil, and it is nil until the first "
        f"Workflow is spawned; {WHEN_FAILS}, so it stays nil and every tick fails. Guard it: "
        f"{LAST} == nil || (now() - {LAST}).Seconds() > 3600",
    )
    # What the warning says is what happens: the expression fails before the first run, and
    # the suggested guard runs it.
    with pytest.raises(ExpressionError, match="nil"):
        compile_when(source).evaluate(variables(), NOW)
    guarded = f"{LAST} == nil || (now() - {LAST}).Seconds() > 3600"
    assert compile_when(guarded).evaluate(variables(), NOW) is True
    assert warnings(when=guarded) == ()


def test_an_unguarded_last_scheduled_time_in_a_stop_expression_suggests_not_stopping() -> None:
    source = f"(now() - {LAST}).Hours() > 24"

    assert warnings(stop_expression=source) == (
        f"spec.stopStrategy.expression: now() - {LAST} fails while {LAST} is nil, and it is nil "
        f"until the first Workflow is spawned; {STOP_FAILS}, so it stays nil and every tick "
        f"fails. Guard it: {LAST} != nil && (now() - {LAST}).Hours() > 24",
    )
    guarded = f"{LAST} != nil && (now() - {LAST}).Hours() > 24"
    assert compile_stop(guarded).evaluate(variables(), NOW) is False
    assert warnings(stop_expression=guarded) == ()


def test_an_ordering_comparison_with_the_nil_variable_is_unguarded_too() -> None:
    (warning,) = warnings(when=f"cronworkflow.failed < 3 && {LAST} < now()")

    assert warning.startswith(f"spec.when: {LAST} < now() fails while {LAST} is nil")
    assert warning.endswith(f"Guard it: {LAST} == nil || {LAST} < now()")


@pytest.mark.parametrize(
    "source",
    [
        f"{LAST} == nil || (now() - {LAST}).Seconds() > 3600",
        f"nil == {LAST} || now() - {LAST} > now() - now()",
        f"{LAST} != nil && (now() - {LAST}).Seconds() > 3600",
        f"{LAST} == nil ? true : (now() - {LAST}).Seconds() > 3600",
        f"{LAST} != nil ? (now() - {LAST}).Seconds() > 3600 : true",
        f"!({LAST} == nil) && {LAST} < now()",
        f"not ({LAST} != nil) or {LAST} < now()",
        f"cronworkflow.failed < 3 && ({LAST} == nil || {LAST} < now())",
        f"({LAST} == nil ? now() : {LAST}) <= now()",
        f"{LAST} != nil && cronworkflow.failed < 3 && (now() - {LAST}).Minutes() > 5",
        f"{LAST} == nil || cronworkflow.failed > 3 || (now() - {LAST}).Minutes() > 5",
        f"{LAST} == now() || {LAST} != nil",  # equality never fails
        f"{LAST} in [nil, now()]",
        "{{= cronworkflow.lastScheduledTime == nil || "
        "(now() - cronworkflow.lastScheduledTime).Seconds() > 3600 }}",
    ],
)
def test_guarded_uses_of_the_nil_variable_give_no_warning(source: str) -> None:
    assert warnings(when=source) == ()
    compile_when(source).evaluate(variables(), NOW)  # and indeed it does not fail


@pytest.mark.parametrize(
    ("source", "failed"),
    [
        (f"{LAST} == nil && now() - {LAST} > now() - now()", 0),  # the guard the wrong way round
        (f"{LAST} != nil || (now() - {LAST}).Seconds() > 3600", 0),
        (f"({LAST} != nil && cronworkflow.failed > 3) || (now() - {LAST}).Seconds() > 3600", 0),
        (f"({LAST} == nil && cronworkflow.failed > 3) || (now() - {LAST}).Seconds() > 3600", 0),
        (f"({LAST} != nil || cronworkflow.failed > 3) && (now() - {LAST}).Seconds() > 3600", 5),
        (f"{LAST} == nil ? (now() - {LAST}).Seconds() > 3600 : true", 0),
        (f"(cronworkflow.failed > 0 ? {LAST} : now()) < now()", 1),
        (f"({LAST} != nil ? now() : {LAST}) < now()", 0),
    ],
)
def test_a_guard_that_does_not_cover_the_use_still_warns(source: str, failed: int) -> None:
    (warning,) = warnings(when=source)

    assert f"fails while {LAST} is nil" in warning
    with pytest.raises(ExpressionError, match="nil"):
        compile_when(source).evaluate(variables(failed=failed), NOW)


# --- a label or annotation the manifest lacks -----------------------------------------------


def test_a_label_the_manifest_lacks_is_a_warning_with_a_guard_to_write() -> None:
    source = 'cronworkflow.labels.team == "data"'

    assert warnings(when=source) == (
        'spec.when: cronworkflow.labels.team reads "team", which metadata.labels does not have '
        '(it has "app"); reading a missing key is an error at run time, not an empty string; '
        f'{WHEN_FAILS}. Add "team" to metadata.labels, or guard the read, e.g. "team" in '
        'cronworkflow.labels && cronworkflow.labels.team == "data"',
    )
    with pytest.raises(ExpressionError, match='has no key "team"'):
        compile_when(source).evaluate(variables(), NOW)
    guarded = '"team" in cronworkflow.labels && cronworkflow.labels.team == "data"'
    assert compile_when(guarded).evaluate(variables(), NOW) is False
    assert warnings(when=guarded) == ()


def test_a_label_read_with_brackets_is_the_same_read() -> None:
    (warning,) = warnings(stop_expression='cronworkflow.labels["team"] == "data"')

    assert warning.startswith(
        'spec.stopStrategy.expression: cronworkflow.labels.team reads "team", which '
        "metadata.labels does not have"
    )
    assert STOP_FAILS in warning


def test_an_annotation_the_manifest_lacks_is_named_with_its_map() -> None:
    (warning,) = warnings(when='cronworkflow.annotations["example.com/owner"] != ""')

    assert warning.startswith(
        'spec.when: cronworkflow.annotations["example.com/owner"] reads "example.com/owner", '
        "which metadata.annotations does not have (it has none)"
    )


def test_a_label_the_manifest_has_gives_no_warning() -> None:
    assert warnings(when='cronworkflow.labels.team == "data"', labels={"team": "data"}) == ()


@pytest.mark.parametrize(
    "source",
    [
        '"team" in cronworkflow.labels && cronworkflow.labels.team == "data"',
        '"team" not in cronworkflow.labels || cronworkflow.labels["team"] == "data"',
        '"team" in cronworkflow.labels ? cronworkflow.labels.team == "data" : false',
        '!("team" in cronworkflow.labels) || cronworkflow.labels.team == "data"',
        'cronworkflow.labels[cronworkflow.name] == "x"',  # not a constant key: unknown
    ],
)
def test_guarded_or_unknowable_label_reads_give_no_warning(source: str) -> None:
    assert warnings(when=source) == ()


def test_a_guard_on_another_key_or_another_map_does_not_cover_the_read() -> None:
    source = (
        '"team" in cronworkflow.annotations && "owner" in cronworkflow.labels && '
        'cronworkflow.labels.team == "data"'
    )

    (warning,) = warnings(when=source)

    assert warning.startswith('spec.when: cronworkflow.labels.team reads "team"')


# --- constant folding -------------------------------------------------------------------------


def test_a_constant_integer_overflow_is_a_warning_with_the_folded_value() -> None:
    source = "cronworkflow.failed > 9223372036854775807 + 1"

    assert warnings(when=source) == (
        "spec.when: 9223372036854775807 + 1 is 9223372036854775808, beyond the 64-bit integers "
        "expressions compute with (-9223372036854775808 to 9223372036854775807): it fails with "
        f"an integer overflow at run time; {WHEN_FAILS}. Use smaller numbers, or write a float "
        "(e.g. 1e19) where an approximate value will do",
    )
    with pytest.raises(ExpressionError, match="integer overflow"):
        compile_when(source).evaluate(variables(), NOW)


def test_an_overflow_after_folding_shows_the_folded_operands() -> None:
    (warning,) = warnings(stop_expression="cronworkflow.failed > (2 * 3037000499) * 2000000000")

    assert warning.startswith(
        "spec.stopStrategy.expression: 2 * 3037000499 * 2000000000 "
        "(folded: 6074000998 * 2000000000) is 12148001996000000000, beyond the 64-bit integers"
    )


def test_negating_the_smallest_integer_overflows() -> None:
    (warning,) = warnings(when="cronworkflow.failed > -(-9223372036854775807 - 1)")

    assert "(folded: -(-9223372036854775808)) is 9223372036854775808" in warning


def test_dividing_by_a_constant_zero_is_a_warning() -> None:
    (warning,) = warnings(when="cronworkflow.failed / (3 - 3) > 1")

    assert warning.startswith(
        "spec.when: cronworkflow.failed / (3 - 3) divides by zero (3 - 3 is 0), an error at run "
        "time"
    )


@pytest.mark.parametrize(
    "constant",
    [
        "9223372036854775807 + 1",
        "9223372036854775806 + 1",
        "-9223372036854775807 - 1",
        "-9223372036854775807 - 2",
        "3037000499 * 3037000499",
        "3037000500 * 3037000500",
        "-(4611686018427387904 * 2)",
        "4611686018427387904 * -2",
        "9223372036854775807 * 1.5",
        "7 % 0",
        "7 % 2.0",
        "1 / 0",
        "1 / 0.5",
    ],
)
def test_the_lint_and_the_evaluator_agree_on_which_constants_fail(constant: str) -> None:
    source = f"{constant} > 0"
    try:
        compile_stop(source).evaluate(variables(), NOW)
        fails = False
    except ExpressionError:
        fails = True

    assert bool(warnings(stop_expression=source)) is fails


def test_arithmetic_on_variables_is_never_evaluated_nor_warned_about() -> None:
    assert warnings(when="cronworkflow.failed * 9223372036854775807 > 0") == ()
    assert warnings(when="cronworkflow.failed / cronworkflow.succeeded > 0") == ()


def test_an_expression_that_does_not_compile_gives_its_error_and_no_expression_warning() -> None:
    validation = validate(cron_workflow(when=f"now() - {LAST} > 5"), NOW)

    assert not validation.valid
    assert validation.warnings == ()


def test_several_findings_in_one_expression_are_each_reported() -> None:
    source = (
        f"(now() - {LAST}).Seconds() > 1 && cronworkflow.labels.team == 'a' && "
        "cronworkflow.failed > 9223372036854775807 + 1"
    )

    found = warnings(when=source)

    assert len(found) == 3
    assert [w.split(" ", 2)[1] for w in found] == [
        "now()",
        "9223372036854775807",
        "cronworkflow.labels.team",
    ]


# --- DST: local times a change of offset skips or repeats ------------------------------------

SKIPPED = (
    "so it does not fire then (a local time that the clocks skip is skipped, not moved, as in Argo)"
)
TWICE = "(a local time that occurs twice fires twice, as in Argo)"


def recent_guard(seconds: int) -> str:
    return f"{LAST} == nil || (now() - {LAST}).Seconds() > {seconds}"


def local_times(schedule: Schedule, day: datetime.date) -> list[str]:
    """What the engine fires on one local day, as local times with their offsets."""
    zone = ZoneInfo(schedule.timezone)
    start = datetime.datetime.combine(day, datetime.time(), zone)
    end = start + datetime.timedelta(days=1)
    return [t.isoformat(timespec="minutes")[11:] for t in schedule.between(start, end)]


def test_a_daily_time_in_berlins_spring_gap_and_autumn_repeat_is_warned_with_the_dates() -> None:
    found = warnings(schedules=("30 2 * * *",), timezone="Europe/Berlin")

    assert found == (
        'spec.schedules[0] "30 2 * * *" in Europe/Berlin: 02:30 does not exist on 2027-03-28 '
        f"(clocks go from 02:00 to 03:00), {SKIPPED}; schedule it outside 02:00-03:00, or add "
        f'a schedule "0 3 * * *" with a when that skips it after a run (when: '
        f"{recent_guard(7200)})",
        'spec.schedules[0] "30 2 * * *" in Europe/Berlin: 02:30 occurs twice on 2026-10-25 '
        f"(clocks go back from 03:00 to 02:00), and it fires both times, an hour apart {TWICE}; "
        f"schedule it outside 02:00-03:00, or add a when that skips the second run: "
        f"{recent_guard(7200)}",
    )
    # The warnings say what the engine does.
    schedule = Schedule(["30 2 * * *"], "Europe/Berlin")
    assert local_times(schedule, datetime.date(2027, 3, 28)) == []
    assert local_times(schedule, datetime.date(2026, 10, 25)) == ["02:30+02:00", "02:30+01:00"]


def test_only_the_changes_within_a_year_of_now_are_named() -> None:
    march = datetime.datetime(2026, 3, 1, tzinfo=UTC)

    found = validate(cron_workflow(schedules=("30 2 * * *",), timezone="Europe/Berlin"), march)

    assert [w.split(": ", 1)[1].split(" (")[0] for w in found.warnings] == [
        "02:30 does not exist on 2026-03-29",
        "02:30 occurs twice on 2026-10-25",
    ]
    after = datetime.datetime(2026, 10, 25, 1, 0, 1, tzinfo=UTC)  # just after the change
    found = validate(cron_workflow(schedules=("30 2 * * *",), timezone="Europe/Berlin"), after)
    assert [w.split(": ", 1)[1].split(" (")[0] for w in found.warnings] == [
        "02:30 does not exist on 2027-03-28",
    ]


def test_several_named_times_are_listed_up_to_three() -> None:
    found = warnings(schedules=("*/10 2 * * *",), timezone="Europe/Berlin")

    assert [w.split(": ", 1)[1].split(" (")[0] for w in found] == [
        "02:00, 02:10, 02:20 and 3 more do not exist on 2027-03-28",
        "02:00, 02:10, 02:20 and 3 more occur twice on 2026-10-25",
    ]
    assert all("or add" not in w for w in found), "a guard for one daily run would not fit"


def test_new_york_skips_two_thirty_in_march_and_repeats_one_thirty_in_november() -> None:
    gap = warnings(schedules=("30 2 * * *",), timezone="America/New_York")
    repeat = warnings(schedules=("30 1 * * *",), timezone="America/New_York")

    assert [w.split(": ", 1)[1].split(", so")[0].split(", and")[0] for w in gap + repeat] == [
        "02:30 does not exist on 2027-03-14 (clocks go from 02:00 to 03:00)",
        "01:30 occurs twice on 2026-11-01 (clocks go back from 02:00 to 01:00)",
    ]


def test_sydney_repeats_in_april_and_skips_in_october() -> None:
    found = warnings(schedules=("30 2 * * *",), timezone="Australia/Sydney")

    assert [w.split(": ", 1)[1].split(", so")[0].split(", and")[0] for w in found] == [
        "02:30 does not exist on 2026-10-04 (clocks go from 02:00 to 03:00)",
        "02:30 occurs twice on 2026-04-05 (clocks go back from 03:00 to 02:00)",
    ]
    schedule = Schedule(["30 2 * * *"], "Australia/Sydney")
    assert local_times(schedule, datetime.date(2026, 4, 5)) == ["02:30+11:00", "02:30+10:00"]


def test_lord_howes_half_hour_change_is_measured_in_minutes() -> None:
    gap = warnings(schedules=("15 2 * * *",), timezone="Australia/Lord_Howe")
    repeat = warnings(schedules=("45 1 * * *",), timezone="Australia/Lord_Howe")

    assert gap == (
        'spec.schedules[0] "15 2 * * *" in Australia/Lord_Howe: 02:15 does not exist on '
        f"2026-10-04 (clocks go from 02:00 to 02:30), {SKIPPED}; schedule it outside "
        f'02:00-02:30, or add a schedule "30 2 * * *" with a when that skips it after a run '
        f"(when: {recent_guard(3600)})",
    )
    assert repeat == (
        'spec.schedules[0] "45 1 * * *" in Australia/Lord_Howe: 01:45 occurs twice on '
        "2026-04-05 (clocks go back from 02:00 to 01:30), and it fires both times, 30 minutes "
        f"apart {TWICE}; schedule it outside 01:30-02:00, or add a when that skips the second "
        f"run: {recent_guard(3600)}",
    )
    # Half-hourly times outside the changed half hour are untouched.
    assert warnings(schedules=("30 2 * * *",), timezone="Australia/Lord_Howe") == ()


@pytest.mark.parametrize(
    ("timezone", "expression"),
    [
        ("", "30 2 * * *"),
        ("UTC", "30 2 * * *"),
        ("Etc/UTC", "30 2 * * *"),
        ("Asia/Tokyo", "30 2 * * *"),  # no DST
        ("Europe/Berlin", "@every 1h"),  # epoch-aligned: names no local time
        ("Europe/Berlin", "30 2 * * 1-5"),  # Berlin changes on Sundays
        ("Europe/Berlin", "30 4 * * *"),
    ],
)
def test_schedules_without_a_changed_local_time_get_no_dst_warning(
    timezone: str, expression: str
) -> None:
    assert warnings(schedules=(expression,), timezone=timezone) == ()


@pytest.mark.parametrize(
    ("timezone", "expression"),
    [
        ("Europe/Berlin", "* * * * *"),
        ("Europe/Berlin", "0 * * * *"),
        ("Europe/Berlin", "*/5 * * * *"),
        ("Australia/Lord_Howe", "*/15 * * * *"),
        ("Australia/Lord_Howe", "0,30 * * * *"),
    ],
)
def test_a_schedule_that_keeps_its_cadence_across_the_change_gets_no_dst_warning(
    timezone: str, expression: str
) -> None:
    """Every hour, on minutes the shift maps onto themselves: in real time it fires exactly as
    it would without the change, so there is nothing to warn about."""
    assert warnings(schedules=(expression,), timezone=timezone) == ()


def test_an_hourly_schedule_across_lord_howes_half_hour_is_warned() -> None:
    """On the minute, every hour, but the change is half an hour: 02:00 is skipped and the real
    interval around it is an hour and a half."""
    (warning,) = warnings(schedules=("0 * * * *",), timezone="Australia/Lord_Howe")

    assert "02:00 does not exist on 2026-10-04 (clocks go from 02:00 to 02:30)" in warning
    assert "or add" not in warning


def test_a_when_guard_silences_the_repeat_warning_but_not_the_gap() -> None:
    found = warnings(schedules=("30 2 * * *",), timezone="Europe/Berlin", when=recent_guard(7200))

    assert len(found) == 1
    assert "02:30 does not exist on 2027-03-28" in found[0]


def test_a_when_that_cannot_tell_two_runs_apart_does_not_silence_the_repeat() -> None:
    found = warnings(
        schedules=("30 2 * * *",), timezone="Europe/Berlin", when="cronworkflow.failed < 3"
    )

    assert any("occurs twice" in w for w in found)


def test_argos_documented_spring_forward_pattern_gets_no_warning() -> None:
    """`tests/data/argo/dst-when.yaml`: 02:30 and 03:00 with a when that skips 03:00 after a run."""
    spec = cron_workflow(
        schedules=("30 2 * * *", "0 3 * * *"),
        timezone="America/Los_Angeles",
        when="{{= " + recent_guard(3600) + " }}",
    )

    assert validate(spec, NOW).warnings == ()
    # Without the when, the 03:00 run does not make up for 02:30: both run on other days.
    assert len(validate(replace(spec, when=""), NOW).warnings) == 1


def test_a_later_schedule_on_another_day_does_not_make_up_for_the_gap() -> None:
    spec = cron_workflow(
        schedules=("30 2 * * *", "0 3 * * 1"),  # 2027-03-28 is a Sunday
        timezone="Europe/Berlin",
        when=recent_guard(7200),
    )

    (warning,) = validate(spec, NOW).warnings

    assert "02:30 does not exist on 2027-03-28" in warning


def test_the_deprecated_schedule_field_is_named_as_written() -> None:
    found = warnings(schedules=(), deprecated_schedule="30 2 * * *", timezone="Europe/Berlin")

    assert found[0].startswith("spec.schedule is deprecated")
    assert found[1].startswith('spec.schedule "30 2 * * *" in Europe/Berlin: 02:30 does not')


def test_dst_warnings_need_a_reference_instant() -> None:
    spec = cron_workflow(schedules=("30 2 * * *",), timezone="Europe/Berlin")

    assert validate(spec).warnings == ()


def test_an_invalid_schedule_or_timezone_gets_its_error_and_no_dst_warning() -> None:
    bad_schedule = validate(
        cron_workflow(schedules=("30 2 * * *", "61 * * * *"), timezone="Europe/Berlin"), NOW
    )
    bad_zone = validate(cron_workflow(schedules=("30 2 * * *",), timezone="Europe/Nowhere"), NOW)

    assert not bad_schedule.valid
    assert bad_schedule.warnings == ()
    assert not bad_zone.valid
    assert bad_zone.warnings == ()


def test_every_minute_in_berlin_costs_a_few_transitions_not_half_a_million_minutes() -> None:
    clock_changes.cache_clear()
    started = time.perf_counter()
    every_minute = warnings(schedules=("* * * * *",), timezone="Europe/Berlin")
    all_of_two_oclock = warnings(schedules=("* 2 * * *",), timezone="Europe/Berlin")
    elapsed = time.perf_counter() - started

    assert every_minute == ()
    assert [w.split(": ", 1)[1].split(" (")[0] for w in all_of_two_oclock] == [
        "02:00, 02:01, 02:02 and 57 more do not exist on 2027-03-28",
        "02:00, 02:01, 02:02 and 57 more occur twice on 2026-10-25",
    ]
    assert elapsed < 1.0  # a loose bound: enumerating the year's minutes takes far longer


def test_a_fleet_sharing_a_schedule_computes_its_clock_changes_once() -> None:
    clock_changes.cache_clear()
    fleet = [
        cron_workflow(name=f"nightly-{i}", schedules=("30 2 * * *",), timezone="Europe/Berlin")
        for i in range(1000)
    ]

    for spec in fleet:
        assert len(validate(spec, NOW).warnings) == 2

    info = clock_changes.cache_info()
    assert (info.misses, info.hits) == (1, 999)
