"""Properties of the expression lint: random expressions of the dialect never make it raise,
it takes bounded time, and it never misses a failure it exists to find (whenever an evaluation
fails, the lint had a finding for that expression)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.expressions import (
    MAX_SOURCE_LENGTH,
    ExpressionError,
    FindingKind,
    Variables,
    _shown,
    compile_stop,
    compile_when,
    lint,
)

PROPERTIES = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
LAST = "cronworkflow.lastScheduledTime"
KEYS = ("team", "app", "env")
QUICKLY = 0.5  # seconds; a safety bound, not a benchmark

# A small grammar of the dialect: booleans, times that may be nil, constant numbers (which may
# overflow or divide by zero), and label reads and tests.
numbers = st.recursive(
    st.sampled_from(["0", "1", "7", "2.5", "3037000500", "4611686018427387904"])
    | st.just("9223372036854775807"),
    lambda inner: (
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from("+-*/%"), inner)
        | inner.map(lambda a: f"-{a}")
    ),
    max_leaves=6,
)
booleans: st.SearchStrategy[str] = st.deferred(
    lambda: st.one_of(
        st.sampled_from(["true", "false", f"{LAST} == nil", f"{LAST} != nil", f"nil != {LAST}"]),
        st.builds(lambda t: f"{t} < now()", times),
        st.builds(lambda t: f"(now() - {t}).Seconds() > 3600", times),
        st.builds(lambda n: f"cronworkflow.failed > {n}", numbers),
        st.builds(lambda k: f'"{k}" in cronworkflow.labels', st.sampled_from(KEYS)),
        st.builds(lambda k: f'"{k}" not in cronworkflow.labels', st.sampled_from(KEYS)),
        st.builds(lambda k: f'cronworkflow.labels.{k} == "x"', st.sampled_from(KEYS)),
        st.builds(lambda k: f'cronworkflow.labels["{k}"] != "x"', st.sampled_from(KEYS)),
        st.builds(lambda a, b: f"({a} && {b})", booleans, booleans),
        st.builds(lambda a, b: f"({a} || {b})", booleans, booleans),
        st.builds(lambda a: f"!({a})", booleans),
        st.builds(lambda c, a, b: f"({c} ? {a} : {b})", booleans, booleans, booleans),
    )
)
times: st.SearchStrategy[str] = st.deferred(
    lambda: (
        st.sampled_from([LAST, "now()"])
        | st.builds(lambda c, a, b: f"({c} ? {a} : {b})", booleans, times, times)
    )
)
label_sets = st.sets(st.sampled_from(KEYS)).map(lambda keys: dict.fromkeys(keys, "x"))


def variables(labels: dict[str, str], last: datetime | None, failed: int) -> Variables:
    return Variables(
        name="nightly",
        namespace="default",
        labels=labels,
        annotations={},
        last_scheduled_time=last,
        succeeded=0,
        failed=failed,
        consecutive_succeeded=0,
        consecutive_failed=0,
    )


@PROPERTIES
@given(
    source=booleans,
    labels=label_sets,
    last=st.sampled_from([None, NOW - timedelta(hours=2)]),
    failed=st.sampled_from([0, 5, 10**12]),
    context=st.sampled_from(["when", "stop"]),
)
def test_the_lint_never_raises_is_quick_and_finds_every_failure_it_is_for(
    source: str, labels: dict[str, str], last: datetime | None, failed: int, context: str
) -> None:
    try:
        compiled = (compile_when if context == "when" else compile_stop)(source)
    except ExpressionError:
        return  # too deep, or a type the parser refuses: lint only sees what compiles

    started = time.perf_counter()
    findings = lint(compiled, context, labels, {})
    assert time.perf_counter() - started < QUICKLY

    for finding in findings:
        # What a finding tells people to write is itself an expression that compiles.
        for marker in ("Guard it: ", ", e.g. "):
            if marker in finding.instead and "..." not in finding.instead:
                suggested = finding.instead.split(marker, 1)[1]
                compile_stop(suggested)

    try:
        compiled.evaluate(variables(labels, last, failed), NOW)
    except ExpressionError as error:
        # Every way this grammar can fail is one the lint is for: nil, a missing key, or a
        # constant. The lint is conservative, so it must have said something of that kind.
        message = str(error)
        if "has no key" in message:
            key = message.split('has no key "', 1)[1].split('"', 1)[0]
            assert any(
                f.kind is FindingKind.MISSING_KEY and f'reads "{key}"' in f.problem
                for f in findings
            ), (source, message, findings)
        elif "nil" in message:
            assert any(f.kind is FindingKind.NIL for f in findings), (source, message, findings)
        else:
            assert any(f.kind is FindingKind.CONSTANT for f in findings), (
                source,
                message,
                findings,
            )


def test_an_expression_at_the_length_limit_is_linted_quickly() -> None:
    """A long flat chain of guards and reads: what is known travels along it without being
    copied at each step, so the cost stays linear."""
    parts: list[str] = []
    index = 0
    while True:
        part = f'"k{index}" in cronworkflow.labels && cronworkflow.labels.k{index} == "x"'
        if sum(len(p) + 4 for p in parts) + len(part) > MAX_SOURCE_LENGTH:
            break
        parts.append(part)
        index += 1
    source = " && ".join(parts)
    compiled = compile_stop(source)

    started = time.perf_counter()
    findings = lint(compiled, "stop", {}, {})
    elapsed = time.perf_counter() - started

    assert findings == ()
    assert elapsed < QUICKLY
    assert len(parts) > 100


@PROPERTIES
@given(source=booleans | numbers.map(lambda n: f"{n} > 0"))
def test_messages_spell_a_part_of_the_tree_as_the_expression_that_parses_back_to_it(
    source: str,
) -> None:
    """Findings quote parts of the expression and build guards around them from the tree:
    the spelling must mean what the tree means (same operators, same grouping)."""
    try:
        compiled = compile_stop(source)
    except ExpressionError:
        return
    spelled = _shown(compiled._tree)  # the private spelling, tested directly
    if spelled.endswith("..."):
        return  # shortened for a message

    assert compile_stop(spelled).python == compiled.python
