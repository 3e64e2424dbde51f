"""The "did you mean" of unknown fields: typos find their field, other words find nothing."""

from __future__ import annotations

import pytest

from scheduler.manifests.suggest import closest, did_you_mean

SPEC_FIELDS = [
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "schedules",
    "schedule",
    "timezone",
    "suspend",
    "workflowSpec",
    "when",
    "stopStrategy",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "workflowMetadata",
]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("concurrencypolicy", "concurrencyPolicy"),
        ("concurrency_policy", "concurrencyPolicy"),
        ("startingDeadline", "startingDeadlineSeconds"),
        ("shedules", "schedules"),
        ("timeZone", "timezone"),
        ("stopstrategy", "stopStrategy"),
    ],
)
def test_a_typo_finds_its_field(typed: str, meant: str) -> None:
    assert closest(typed, SPEC_FIELDS) == meant
    assert did_you_mean(typed, SPEC_FIELDS) == f' (did you mean "{meant}"?)'


@pytest.mark.parametrize("typed", ["tz", "foo", "deadline", "x"])
def test_another_word_finds_nothing(typed: str) -> None:
    assert closest(typed, SPEC_FIELDS) is None
    assert did_you_mean(typed, SPEC_FIELDS) == ""
