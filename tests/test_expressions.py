"""The expression dialect of DESIGN §8: Argo's cases, every operator, the errors, the sandbox."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies.expressions import (
    MAX_DEPTH,
    MAX_SOURCE_LENGTH,
    CompiledExpression,
    ExpressionError,
    Variables,
    compile_stop,
    compile_when,
)

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
ARGO_LAST_SCHEDULED_TIME = datetime(2020, 2, 28, 19, 5, tzinfo=UTC)
LOS_ANGELES = ZoneInfo("America/Los_Angeles")

# Hostile input must be refused quickly; this is a safety bound, not a benchmark.
QUICKLY = 0.5


def variables(**changes: Any) -> Variables:
    values: dict[str, Any] = {
        "name": "hello-world",
        "namespace": "argo",
        "labels": {"team": "data", "app.kubernetes.io/name": "etl"},
        "annotations": {"owner": "sre@example.com"},
        "last_scheduled_time": NOW - timedelta(minutes=90),
        "succeeded": 5,
        "failed": 3,
        "consecutive_succeeded": 0,
        "consecutive_failed": 2,
    }
    values.update(changes)
    return Variables(**values)


def when(source: str, now: datetime = NOW, **changes: Any) -> bool:
    return compile_when(source).evaluate(variables(**changes), now)


def stop(source: str, now: datetime = NOW, **changes: Any) -> bool:
    return compile_stop(source).evaluate(variables(**changes), now)


def compile_error(source: str, compile_: Callable[[str], CompiledExpression] = compile_stop) -> str:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as raised:
        compile_(source)
    assert time.perf_counter() - started < QUICKLY
    return str(raised.value)


def evaluation_error(source: str, **changes: Any) -> str:
    compiled = compile_stop(source)
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as raised:
        compiled.evaluate(variables(**changes), NOW)
    assert time.perf_counter() - started < QUICKLY
    return str(raised.value)


# --------------------------------------------------------------------------------------------
# Argo's conformance cases (reference §6.1 tests 12 and 13, §1.10, §1.11)


@pytest.mark.parametrize(
    ("source", "last_scheduled_time", "expected"),
    [
        pytest.param(
            "{{= cronworkflow.lastScheduledTime == nil || "
            "( (now() - cronworkflow.lastScheduledTime).Seconds() > 30) }}",
            ARGO_LAST_SCHEDULED_TIME,
            True,
            id="12.1-nil-or-older-than-30s",
        ),
        pytest.param(
            "{{= cronworkflow.lastScheduledTime == nil && "
            "( (now() - cronworkflow.lastScheduledTime).Seconds() < 30) }}",
            ARGO_LAST_SCHEDULED_TIME,
            False,
            id="12.2-nil-and-short-circuits",
        ),
        pytest.param(
            "{{= cronworkflow.lastScheduledTime != nil }}",
            ARGO_LAST_SCHEDULED_TIME,
            True,
            id="12.3-not-nil",
        ),
        pytest.param(
            "{{= cronworkflow.lastScheduledTime == nil }}",
            None,
            True,
            id="12.4-nil-before-first-run",
        ),
        pytest.param(
            "{{= (now() - cronworkflow.lastScheduledTime).Minutes() >= 30 }}",
            NOW - timedelta(minutes=30),
            True,
            id="12.5-minutes-at-least-30",
        ),
        pytest.param(
            "{{= (now() - cronworkflow.lastScheduledTime).Minutes() <  50 }}",
            NOW - timedelta(minutes=30),
            True,
            id="12.6-minutes-below-50",
        ),
    ],
)
def test_argos_evaluate_when_cases_give_argos_answers(
    source: str, last_scheduled_time: datetime | None, expected: bool
) -> None:
    assert when(source, last_scheduled_time=last_scheduled_time) is expected


def test_argos_or_guard_short_circuits_before_subtracting_nil() -> None:
    source = (
        "{{= cronworkflow.lastScheduledTime == nil || "
        "( (now() - cronworkflow.lastScheduledTime).Seconds() > 30) }}"
    )

    assert when(source, last_scheduled_time=None) is True


def test_argos_when_beside_unresolved_placeholders_is_true_thirty_minutes_later() -> None:
    """Test 13: only `when` is an expression; `{{workflow.scheduledTime}}` elsewhere is not."""
    source = "{{= (now() - cronworkflow.lastScheduledTime).Minutes() >= 30 }}"

    assert when(source, last_scheduled_time=NOW - timedelta(minutes=30)) is True


SPRING_GUARD = (
    "{{= cronworkflow.lastScheduledTime == nil || "
    "(now() - cronworkflow.lastScheduledTime).Seconds() > 3600 }}"
)
FALL_GUARD = (
    "{{= cronworkflow.lastScheduledTime == nil || "
    "(now() - cronworkflow.lastScheduledTime).Seconds() > 7200 }}"
)


def los_angeles(*fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=LOS_ANGELES, fold=fold).astimezone(UTC)


def test_spring_forward_guard_skips_three_oclock_on_an_ordinary_day() -> None:
    """Schedules 30 2 and 0 3: when 02:30 ran, 03:00 is skipped."""
    ran = los_angeles(2020, 3, 7, 2, 30)

    assert when(SPRING_GUARD, los_angeles(2020, 3, 7, 3, 0), last_scheduled_time=ran) is False


def test_spring_forward_guard_runs_three_oclock_when_two_thirty_does_not_exist() -> None:
    ran_the_day_before = los_angeles(2020, 3, 7, 2, 30)

    now = los_angeles(2020, 3, 8, 3, 0)

    assert when(SPRING_GUARD, now, last_scheduled_time=ran_the_day_before) is True


def test_fall_back_guard_runs_the_first_one_thirty_and_skips_the_repeated_one() -> None:
    first = los_angeles(2020, 11, 1, 1, 30, fold=0)
    repeated = los_angeles(2020, 11, 1, 1, 30, fold=1)
    the_day_before = los_angeles(2020, 10, 31, 1, 30)

    assert repeated - first == timedelta(hours=1)
    assert when(FALL_GUARD, first, last_scheduled_time=the_day_before) is True
    assert when(FALL_GUARD, repeated, last_scheduled_time=first) is False


def test_dst_guards_run_the_very_first_time() -> None:
    assert when(SPRING_GUARD, last_scheduled_time=None) is True
    assert when(FALL_GUARD, last_scheduled_time=None) is True


@pytest.mark.parametrize(
    ("source", "counters", "expected"),
    [
        ("cronworkflow.failed >= 3", {"failed": 2}, False),
        ("cronworkflow.failed >= 3", {"failed": 3}, True),
        ("cronworkflow.succeeded >= 1", {"succeeded": 0}, False),
        ("cronworkflow.succeeded >= 1", {"succeeded": 2}, True),
        ("cronworkflow.consecutiveFailed >= 2", {"consecutive_failed": 1}, False),
        ("cronworkflow.consecutiveFailed >= 2", {"consecutive_failed": 2}, True),
        ("cronworkflow.consecutiveSucceeded >= 5", {"consecutive_succeeded": 5}, True),
    ],
)
def test_documented_stop_expressions_count_runs(
    source: str, counters: dict[str, int], expected: bool
) -> None:
    assert stop(source, **counters) is expected


# --------------------------------------------------------------------------------------------
# The dialect


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # comparisons
        ("cronworkflow.failed == 3", True),
        ("cronworkflow.failed != 3", False),
        ("cronworkflow.failed < 3", False),
        ("cronworkflow.failed <= 3", True),
        ("cronworkflow.failed > 2", True),
        ("cronworkflow.failed >= 4", False),
        ('cronworkflow.name < "zebra"', True),
        ("1 == 1.0", True),
        # logic, both spellings
        ("true && false", False),
        ("true || false", True),
        ("!false", True),
        ("true and false", False),
        ("false or true", True),
        ("not false", True),
        ("True and not False", True),
        ("cronworkflow.lastScheduledTime != None", True),
        # arithmetic, with Go's meaning of / and %
        ("cronworkflow.failed + cronworkflow.succeeded == 8", True),
        ("cronworkflow.succeeded - cronworkflow.failed == 2", True),
        ("cronworkflow.failed * 2 == 6", True),
        ("7 / 2 == 3.5", True),
        ("7 % 3 == 1", True),
        ("-7 % 3 == -1", True),
        ("-cronworkflow.failed == -3", True),
        ("+3 == 3", True),
        ('"a" + "b" == "ab"', True),
        # precedence: * over +, && over ||, ternary lowest and right-associative
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("true || false ? false : true", False),
        ("false ? false : true ? true : false", True),
        ("cronworkflow.failed > 2 ? cronworkflow.succeeded > 4 : false", True),
        ("!true == false", True),
        # in, not in, list literals, maps
        ('cronworkflow.namespace in ["argo", "prod"]', True),
        ('cronworkflow.namespace not in ["argo", "prod"]', False),
        ("cronworkflow.failed in [1, 2, 3]", True),
        ("true in [1]", False),
        ("[] == []", True),
        ('"team" in cronworkflow.labels', True),
        ('"missing" in cronworkflow.labels', False),
        ('!("missing" in cronworkflow.labels)', True),
        # literals
        ("0x10 == 16", True),
        ("1_000 == 1000", True),
        ("1.5e3 == 1500", True),
        ("`raw \\n` == 'raw \\\\n'", True),
        ("'it\\'s' == \"it's\"", True),
        ('"\\u00e9" == "é"', True),
        ("nil == nil", True),
        ("nil == 0", False),
    ],
)
def test_operators_and_literals(source: str, expected: bool) -> None:
    assert stop(source) is expected


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        ('cronworkflow.name == "a && b"', "a && b", True),
        ('cronworkflow.name == "a && b"', "a", False),
        ('cronworkflow.name == "x || y"', "x || y", True),
        ('cronworkflow.name == "!"', "!", True),
        ('cronworkflow.name != "!="', "!=", False),
        ("cronworkflow.name == 'a ? b : c'", "a ? b : c", True),
        ('cronworkflow.name == "nil and not true"', "nil and not true", True),
    ],
)
def test_string_literals_are_never_translated(source: str, name: str, expected: bool) -> None:
    assert stop(source, name=name) is expected


def test_the_translation_is_the_python_that_runs() -> None:
    compiled = compile_stop('cronworkflow.name == "a && b" ? !false : cronworkflow.failed != 3')

    assert compiled.python == (
        "not False if cronworkflow['name'] == 'a && b' else cronworkflow['failed'] != 3"
    )
    assert compiled.source == 'cronworkflow.name == "a && b" ? !false : cronworkflow.failed != 3'


def test_not_equal_is_one_operator_not_a_negation() -> None:
    assert compile_stop("cronworkflow.failed != 3").python == "cronworkflow['failed'] != 3"


def test_labels_are_read_with_a_dot_or_brackets() -> None:
    assert stop('cronworkflow.labels.team == "data"')
    assert stop('cronworkflow.labels["team"] == "data"')
    assert stop('cronworkflow["labels"]["team"] == "data"')
    assert stop('cronworkflow.labels["app.kubernetes.io/name"] == "etl"')
    assert stop('cronworkflow.labels[cronworkflow.name] == "yes"', labels={"hello-world": "yes"})


def test_annotations_are_the_annotations_not_the_labels() -> None:
    """Argo binds the labels to `cronworkflow.annotations` by mistake; cronwf does not."""
    assert stop('cronworkflow.annotations.owner == "sre@example.com"')
    assert stop('!("team" in cronworkflow.annotations)')
    assert stop('!("owner" in cronworkflow.labels)')


def test_name_and_namespace() -> None:
    assert stop('cronworkflow.name == "hello-world" && cronworkflow.namespace == "argo"')


@pytest.mark.parametrize(
    ("method", "expected"),
    [("Seconds", 5400.0), ("Minutes", 90.0), ("Hours", 1.5)],
)
def test_duration_methods_give_floats_like_go(method: str, expected: float) -> None:
    source = f"(now() - cronworkflow.lastScheduledTime).{method}() == {expected}"

    assert stop(source, last_scheduled_time=NOW - timedelta(minutes=90))


def test_duration_methods_keep_fractions_of_a_second() -> None:
    source = "(now() - cronworkflow.lastScheduledTime).Seconds() == 1.5"

    assert stop(source, last_scheduled_time=NOW - timedelta(milliseconds=1500))


def test_now_is_the_decision_time_whatever_its_zone() -> None:
    in_los_angeles = NOW.astimezone(LOS_ANGELES)

    assert stop("now() == cronworkflow.lastScheduledTime", in_los_angeles, last_scheduled_time=NOW)


def test_times_compare_with_times_and_durations_with_durations() -> None:
    assert stop("now() > cronworkflow.lastScheduledTime")
    assert stop("cronworkflow.lastScheduledTime <= now()")
    assert stop("now() - cronworkflow.lastScheduledTime > now() - now()")
    assert stop(
        "cronworkflow.lastScheduledTime + (now() - cronworkflow.lastScheduledTime) == now()"
    )


def test_lists_can_hold_expressions() -> None:
    assert stop("cronworkflow.failed in [cronworkflow.succeeded, 3]")


def test_a_multi_line_expression_is_one_expression() -> None:
    source = "cronworkflow.failed >= 3\n  && cronworkflow.consecutiveFailed >= 2\n"

    assert stop(source)


def test_when_accepts_argos_form_and_a_bare_expression() -> None:
    assert when("{{= cronworkflow.failed >= 3 }}")
    assert when("{{=cronworkflow.failed >= 3}}")
    assert when("  {{= cronworkflow.failed >= 3 }}\n")
    assert when("cronworkflow.failed >= 3")
    assert when('{{= cronworkflow.name != "}}" }}')


def test_compiling_the_same_source_twice_gives_the_same_object() -> None:
    source = "{{= cronworkflow.lastScheduledTime == nil }}"

    assert compile_when(source) is compile_when(source)
    assert compile_stop("cronworkflow.failed >= 3") is compile_stop("cronworkflow.failed >= 3")


def test_the_translation_uses_only_the_sandboxed_subset_of_python() -> None:
    """Whatever is written, only these nodes, names and attributes can ever be evaluated."""
    allowed_nodes = (
        ast.Expression, ast.Constant, ast.Name, ast.Load, ast.UnaryOp, ast.BinOp, ast.BoolOp,
        ast.Compare, ast.IfExp, ast.Call, ast.Attribute, ast.Subscript, ast.List,
        ast.Not, ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod,
        ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    )  # fmt: skip
    sources = [
        "{{= cronworkflow.lastScheduledTime == nil || "
        "(now() - cronworkflow.lastScheduledTime).Hours() > 1 }}",
        '!(cronworkflow.labels["a"] in ["x", "y"]) ? -1 % 2 == 1 : 2 / 3 * 4 + 5 - 6 <= 7',
        "(now() - now()).Minutes() != (now() - now()).Seconds() and not false or true",
    ]
    for source in sources:
        tree = ast.parse(compile_when(source).python, mode="eval")
        for node in ast.walk(tree):
            assert isinstance(node, allowed_nodes), ast.dump(node)
            if isinstance(node, ast.Name):
                assert node.id in {"cronworkflow", "now"}
            if isinstance(node, ast.Attribute):
                assert node.attr in {"Seconds", "Minutes", "Hours"}


def test_evaluations_in_parallel_threads_do_not_see_each_others_variables() -> None:
    compiled = compile_stop('cronworkflow.name == cronworkflow.labels["expected"]')

    def evaluate(index: int) -> bool:
        name = f"cron-{index}"
        return compiled.evaluate(variables(name=name, labels={"expected": name}), NOW)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(evaluate, range(2000)))

    assert all(results)


# --------------------------------------------------------------------------------------------
# Errors a user meets


def test_an_unknown_variable_is_a_compile_error_listing_the_variables() -> None:
    error = compile_error("foo")

    assert error == (
        'unknown variable "foo" at column 1: the variables are cronworkflow.name, '
        "cronworkflow.namespace, cronworkflow.labels, cronworkflow.annotations, "
        "cronworkflow.lastScheduledTime, cronworkflow.succeeded, cronworkflow.failed, "
        "cronworkflow.consecutiveSucceeded, cronworkflow.consecutiveFailed; "
        "the only function is now()"
    )


def test_a_misspelt_cronworkflow_variable_suggests_the_right_one() -> None:
    error = compile_error('cronworkflow.nmae == "x"')

    assert error.startswith(
        'unknown variable "cronworkflow.nmae" (did you mean cronworkflow.name?) at column 14: '
        "the variables are cronworkflow.name, "
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "cronworkflow",
            "cronworkflow is not a value by itself at column 1: use cronworkflow.name",
        ),
        ("cronworkflow.Failed > 1", '"cronworkflow.Failed" (did you mean cronworkflow.failed?)'),
        ('cronworkflow["nope"] == 1', 'unknown variable "cronworkflow.nope"'),
        ("cronworkflow[cronworkflow.name]", "cronworkflow is indexed with a quoted name"),
        ("now > cronworkflow.lastScheduledTime", "now is a function at column 1: write now()"),
        ("now(1) > now()", "now() takes no arguments"),
        ("len(cronworkflow.labels) > 1", "unknown function len() at column 1: the only function"),
        ("(now() - now()).Milliseconds() > 1", "unknown method .Milliseconds() at column 17"),
        ("(now() - now()).Seconds > 1", "Seconds is a method at column 17: write .Seconds()"),
        ("cronworkflow.failed.Seconds() > 1", ".Seconds() applies to a duration"),
        ("(now() - now()).Seconds(1) > 1", ".Seconds() takes no arguments"),
        ("cronworkflow.failed(1)", "only functions can be called"),
    ],
)
def test_unknown_names_functions_and_methods_are_compile_errors(source: str, message: str) -> None:
    assert message in compile_error(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("cronworkflow.failed", "expected a boolean (true or false), but the expression gives a "
         "number: compare it, e.g. cronworkflow.failed >= 3"),
        ("cronworkflow.name", "but the expression gives a string"),
        ("now() - cronworkflow.lastScheduledTime", "but the expression gives a duration"),
        ("cronworkflow.lastScheduledTime", "but the expression gives a time or nil"),
        ("nil", "but the expression gives nil"),
        ("cronworkflow.labels", "but the expression gives a map"),
    ],
)  # fmt: skip
def test_a_result_that_cannot_be_a_boolean_is_a_compile_error(source: str, message: str) -> None:
    assert message in compile_error(source)
    assert message in compile_error("{{= " + source + " }}", compile_when)


def test_a_result_that_turns_out_not_boolean_is_an_evaluation_error() -> None:
    error = evaluation_error("cronworkflow.failed > 2 ? cronworkflow.failed : true")

    assert error == "expected a boolean (true or false), but the expression gave 3"


def test_subtracting_a_nil_last_scheduled_time_says_how_to_guard_it() -> None:
    error = evaluation_error(
        "(now() - cronworkflow.lastScheduledTime).Seconds() > 30", last_scheduled_time=None
    )

    assert error == (
        "cannot subtract nil from a time: cronworkflow.lastScheduledTime is nil before the "
        "first run; guard with cronworkflow.lastScheduledTime == nil || ..."
    )


def test_comparing_a_nil_last_scheduled_time_says_how_to_guard_it() -> None:
    error = evaluation_error("now() > cronworkflow.lastScheduledTime", last_scheduled_time=None)

    assert error.startswith("cannot compare a time with nil using >: ")
    assert "guard with cronworkflow.lastScheduledTime == nil || ..." in error


def test_subtracting_a_literal_nil_is_a_compile_error() -> None:
    error = compile_error("(now() - nil).Seconds() > 1")

    assert error.startswith("cannot subtract nil from a time at column 8: ")


def test_nil_is_compared_with_equality_only() -> None:
    error = compile_error("nil < 1")

    assert error == "nil can only be compared with == and !=, not with < at column 5"


def test_a_missing_label_is_an_error_naming_the_key_and_those_present() -> None:
    error = evaluation_error('cronworkflow.labels.missing == "x"')

    assert error == (
        'cronworkflow.labels has no key "missing" (its keys are "app.kubernetes.io/name", '
        '"team"); to test for it, write "missing" in cronworkflow.labels && ...'
    )


def test_a_missing_annotation_in_empty_annotations_says_they_are_empty() -> None:
    error = evaluation_error('cronworkflow.annotations["a b"] == "x"', annotations={})

    assert error.startswith('cronworkflow.annotations has no key "a b" (it is empty)')


def test_a_label_guarded_with_in_is_never_read_when_missing() -> None:
    assert stop('"missing" in cronworkflow.labels && cronworkflow.labels.missing == "x"') is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("now() > 5", "cannot compare a time with a number using > at column 7"),
        (
            "now() - cronworkflow.lastScheduledTime > 3600",
            "cannot compare a duration with a number using > at column 40: convert the duration "
            "to a number; durations have .Seconds(), .Minutes() and .Hours()",
        ),
        ("cronworkflow.labels.team == 3", "cannot compare a string with a number using =="),
        ("true == 1", "cannot compare a boolean with a number using =="),
        ("true < false", "cannot compare a boolean with a boolean using <"),
        ("cronworkflow.failed && true", "&& needs booleans on both sides, got a number"),
        ("cronworkflow.lastScheduledTime || true", "compare it with == nil"),
        ("!cronworkflow.failed", "! needs a boolean, got a number at column 1"),
        ('not cronworkflow.name in ["a"]', "write not(a in b)"),
        ("-cronworkflow.name == 1", "unary - needs a number, got a string"),
        ('"a" + 1 == "a1"', "cannot add a string and a number"),
        ("now() + now() > now()", "cannot add a time and a time"),
        ('cronworkflow.failed - "1" == 2', "cannot subtract a string from a number"),
        ('"ab" / 2 == 1', "/ needs two numbers, got a string and a number"),
        ('"x" in "xyz"', "in needs a list or a map on its right, got a string"),
        ("1 in cronworkflow.labels", "map keys are strings, got a number"),
        ("1 < 2 < 3", "cannot compare a boolean with a number using <"),
        ("cronworkflow.failed ? true : false", "the condition of ?: must be a boolean"),
        ("cronworkflow.name.first == 1", "a string has no keys at column 18"),
        ("cronworkflow.labels[1] == 1", "map keys are strings, got a number"),
    ],
)
def test_type_errors_are_found_at_compile_time(source: str, message: str) -> None:
    assert message in compile_error(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "the expression is empty"),
        ("   ", "the expression is empty"),
        ("cronworkflow.failed >= 3 ||", "unexpected end of the expression at column 28"),
        ("(cronworkflow.failed >= 3", 'end of the expression at column 26: expected ")"'),
        ("cronworkflow.failed >= 3)", 'unexpected ")" at column 25'),
        ("cronworkflow.failed = 3", "= at column 21 is not supported: assignment is not supported"),
        ("true & false", "the logical and is && (or and)"),
        ("true | false", "the logical or is || (or or)"),
        ("true ?: false", "?: without a middle operand is not supported"),
        ("true ? false", 'unexpected end of the expression at column 13: expected ":"'),
        ("true if true else false", "Python's conditional is not supported: write condition ?"),
        ("cronworkflow.failed is 3", "compare with == and !="),
        ("true; false", "an expression is a single condition"),
        ("cronworkflow.failed >= 3 true", 'unexpected "true" at column 26'),
        ('"open', "unterminated string starting at column 1"),
        ('"\\q" == ""', "invalid escape \\q"),
        ("cronworkflow.labels?.team", "optional chaining ?. is not supported"),
        ('cronworkflow.labels.team ?? "x"', "the nil-coalescing operator ?? is not supported"),
        ("1..3", "ranges are not supported"),
        ("3x > 1", "invalid number 3x"),
        ("1 ^ 2", "there is no power operator"),
        ("a € b", 'unexpected character "\\u20ac" at column 3'),
        ("cronworkflow.failed >= 3\n  && foo", 'unknown variable "foo" at line 2, column 6'),
    ],
)  # fmt: skip
def test_syntax_errors_say_where_and_what_is_allowed(source: str, message: str) -> None:
    assert message in compile_error(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ cronworkflow.name }}", "plain {{...}} tags are not supported in when"),
        ("{{= true", '"{{=" is not closed'),
        ("{{= }}", "the expression is empty"),
        ("{{= true }} && {{= false }}", "unexpected } at column 10: a when is {{= <expression> }}"),
    ],
)
def test_when_templates_other_than_one_expression_are_refused(source: str, message: str) -> None:
    assert message in compile_error(source, compile_when)


def test_a_stop_expression_is_bare() -> None:
    error = compile_error("{{= cronworkflow.failed >= 3 }}", compile_stop)

    assert error == "stopStrategy.expression is a bare expression: write it without {{= }}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0 > 1", "division by zero"),
        ("cronworkflow.failed % (cronworkflow.failed - 3) == 0", "modulo by zero"),
        ("1.5 % 1 == 0.5", "% needs two integers, got 1.5 and 1"),
        ("9223372036854775807 + 1 > 0", "integer overflow: the result does not fit in 64 bits"),
        ("-9223372036854775807 - 2 < 0", "integer overflow: the result does not fit in 64 bits"),
        ("3037000500 * 3037000500 > 0", "integer overflow: the result does not fit in 64 bits"),
    ],
)
def test_arithmetic_errors_are_evaluation_errors(source: str, message: str) -> None:
    assert evaluation_error(source) == message


def test_the_decision_time_must_be_aware() -> None:
    """A naive `now` is the caller's bug, not the user's: it is not an ExpressionError."""
    compiled = compile_stop("now() > cronworkflow.lastScheduledTime")

    with pytest.raises(ValueError, match="now must be timezone-aware") as raised:
        compiled.evaluate(variables(), datetime(2026, 3, 1, 12, 0))
    assert not isinstance(raised.value, ExpressionError)


def test_the_last_scheduled_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware"):
        variables(last_scheduled_time=datetime(2026, 3, 1, 12, 0))


# --------------------------------------------------------------------------------------------
# The sandbox: hostile input is refused clearly and quickly, at compile time where possible.


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("9**9**9**9", "** at column 2 is not supported: there is no power operator"),
        ('"a" * 10**9 == ""', "** at column 9 is not supported"),
        ('"a" * 1000000000 == ""', "* needs two numbers, got a string and a number at column 5: "
         "strings cannot be repeated"),
        ("cronworkflow.labels.team * 1000000000 == 1", "* needs two numbers, got a string"),
        ("__class__", '__class__ is not allowed at column 1: names starting with "_" are never'),
        ("().__class__", 'unexpected ")" at column 2: expected a value'),
        ('"".__class__', ".__class__ is not allowed at column 4"),
        ("cronworkflow.name.__class__", ".__class__ is not allowed"),
        ("(now() - now()).__class__", ".__class__ is not allowed"),
        ('__import__("os")', "__import__ is not allowed at column 1"),
        ("cronworkflow.__dict__", "cronworkflow.__dict__ is not allowed at column 14"),
        ('cronworkflow["__dict__"]', "cronworkflow.__dict__ is not allowed"),
        ("cronworkflow.labels._x == 1", "._x is not allowed"),
        ('cronworkflow.labels.get("team") == "x"', "unknown method .get()"),
        ("now().replace() > now()", "unknown method .replace()"),
        ("now().replace(year=1) > now()", "= at column 19 is not supported"),
        ('open("/etc/passwd")', "unknown function open()"),
        ('exec("1")', "unknown function exec()"),
        ("globals()", "unknown function globals()"),
        ("import os", "import is not part of the dialect at column 1: imports are not supported"),
        ("lambda: true", "lambda is not part of the dialect at column 1: functions cannot be"),
        ("[x for x in [1]]", 'unknown variable "x" at column 2'),
        ("[true for x in [1]]", 'unexpected "for" at column 7: comprehensions are not supported'),
        ('f"{1}" == ""', "string prefix f at column 1 is not supported"),
        ("(x := true)", ":= at column 4 is not supported: assignment is not supported"),
        ('cronworkflow.name[0] == "h"', "a string has no keys at column 18"),
        ('[1, 2][0] == 1', "a list has no keys at column 7"),
        ("99999999999999999999 > 1", "integer 99999999999999999999 at column 1 is too large: "
         "the limit is 9223372036854775807"),
        ("9" * 5000 + " > 1", "is too large: the limit is 9223372036854775807"),
        ("0xFFFFFFFFFFFFFFFFFF > 1", "is too large"),
        ("1e999 > 1", "number 1e999 at column 1 is out of range"),
        ("{}", "map literals are not supported"),
        ("cronworkflow.failed >= 3 # comment", 'unexpected character "#"'),
    ],
)  # fmt: skip
def test_hostile_input_is_refused_at_compile_time(source: str, message: str) -> None:
    assert message in compile_error(source)


def test_ten_thousand_nested_parentheses_are_refused_by_length() -> None:
    source = "(" * 10_000 + "true" + ")" * 10_000

    assert compile_error(source) == (
        f"expression too long: 20004 characters, the limit is {MAX_SOURCE_LENGTH}"
    )


def test_a_megabyte_string_is_refused_by_length() -> None:
    source = '"' + "a" * 1_000_000 + '" == ""'

    assert compile_error(source) == (
        f"expression too long: 1000008 characters, the limit is {MAX_SOURCE_LENGTH}"
    )


def test_an_expression_at_the_length_limit_compiles() -> None:
    padding = " " * (MAX_SOURCE_LENGTH - len("true"))

    assert stop("true" + padding) is True


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("(" * 4000 + "true" + ")" * 4000, MAX_DEPTH + 1),
        ("[" * 4000 + "]" * 4000, MAX_DEPTH + 1),
        ("!" * 5000 + "true", MAX_DEPTH + 1),
        ("not " * 2000 + "true", 4 * MAX_DEPTH + 1),
        ("-" * 5000 + "1 == 1", MAX_DEPTH + 1),
    ],
)
def test_deep_nesting_is_refused_before_it_can_exhaust_the_stack(source: str, column: int) -> None:
    error = compile_error(source)

    assert error == f"expression nested too deeply at column {column}: the limit is 100 levels"


def test_a_long_chain_of_operators_is_refused_as_a_deep_tree() -> None:
    """`1+1+...+1` is flat text but a left-deep tree: evaluating it would recurse as deep."""
    source = "+".join(["1"] * 4000) + " > 0"

    assert compile_error(source).startswith("expression nested too deeply at column ")


def test_nesting_just_under_the_limit_compiles_and_evaluates() -> None:
    depth = MAX_DEPTH - 2
    source = "(" * depth + "cronworkflow.failed >= 3" + ")" * depth

    assert stop(source) is True


def test_long_chains_of_and_and_or_stay_shallow() -> None:
    source = " && ".join(["cronworkflow.failed >= 3"] * 300)

    assert stop(source) is True


def test_building_a_huge_string_from_annotations_is_refused_at_evaluation() -> None:
    big = "x" * 60_000
    source = "cronworkflow.annotations.big + cronworkflow.annotations.big == cronworkflow.name"

    error = evaluation_error(source, annotations={"big": big})

    assert error == "string too long: the limit is 100000 characters"


@pytest.mark.parametrize("smuggled", [time, {"nested": time}, eval, open])
def test_a_module_or_function_smuggled_in_through_the_variables_is_refused_when_read(
    smuggled: object,
) -> None:
    """Defence in depth: values that enter from outside are scanned by simpleeval."""
    labels: Any = {"x": smuggled}

    error = evaluation_error('cronworkflow.labels.x == "a"', labels=labels)

    assert error.startswith("cannot evaluate 'cronworkflow.labels.x == \"a\"': ")
