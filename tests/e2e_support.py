"""Helpers shared by the end-to-end tests that run real ``cronwf serve`` processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "eventually"]

T = TypeVar("T")


def eventually(
    what: str | Callable[[], str],
    within: float,
    probe: Callable[[], T | None],
    every: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds.

    ``what`` names the awaited condition; a callable is asked at failure time, so the message
    can show the last observation.
    """
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g}s: {what() if callable(what) else what}")
        time.sleep(every)


class Scrape:
    """The samples of one ``/metrics`` response."""

    def __init__(self, text: str) -> None:
        self._samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, sample: str, **labels: str) -> float | None:
        """The sum of the samples named ``sample`` that carry ``labels``; None if there is none."""
        values = [
            s.value
            for s in self._samples
            if s.name == sample and labels.items() <= s.labels.items()
        ]
        return sum(values) if values else None
