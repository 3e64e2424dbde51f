"""Helpers shared by the end-to-end tests that run real ``cronwf serve`` processes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["NO_PROXY", "Record", "Replica", "Scrape", "eventually", "http_get"]

Record = dict[str, Any]

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Requests to 127.0.0.1 must not go through a proxy the environment may name."""

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


def http_get(url: str) -> tuple[int, str] | None:
    """The status and body of ``GET url``, or None while nothing answers."""
    try:
        with NO_PROXY.open(url, timeout=3) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Replica:
    """One ``cronwf serve`` process, its HTTP port and its JSON log file."""

    identity: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    stop_within: float = 10.0
    """Seconds a SIGTERM may take to end the process before the test fails."""

    def get(self, path: str) -> tuple[int, str] | None:
        """The status and body of ``GET path``, or None while nothing answers."""
        return http_get(f"http://127.0.0.1:{self.port}{path}")

    def readiness(self) -> tuple[int, Record] | None:
        """``/readyz``: its status code and JSON body."""
        reply = self.get("/readyz")
        return None if reply is None else (reply[0], json.loads(reply[1]))

    def is_leader(self) -> bool:
        """Whether ``/readyz`` says this replica leads."""
        state = self.readiness()
        return state is not None and state[1]["leader"] is True

    def scrape(self) -> Scrape:
        """One scrape of ``/metrics``."""
        reply = self.get("/metrics")
        assert reply is not None, f"{self.identity}: /metrics does not answer"
        assert reply[0] == 200, f"{self.identity}: /metrics: {reply}"
        return Scrape(reply[1])

    def metric(self, sample: str, **labels: str) -> float | None:
        """One value of a fresh scrape (see :meth:`Scrape.value`)."""
        return self.scrape().value(sample, **labels)

    def records(self) -> list[Record]:
        """Every JSON line of the log so far, tagged with this replica's identity."""
        found: list[Record] = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{") and line.endswith("}"):
                found.append({**json.loads(line), "replica": self.identity})
        return found

    def events(self, key: str, *kinds: str) -> list[Record]:
        """The engine events of CronWorkflow ``key`` this replica logged, of ``kinds`` (all
        if none)."""
        return [
            r
            for r in self.records()
            if r.get("cronWorkflow") == key and (not kinds or r.get("event") in kinds)
        ]

    def messages(self) -> list[str]:
        return [str(r.get("message", "")) for r in self.records()]

    def stop(self) -> int:
        """SIGTERM, then the exit code (failing after ``stop_within`` seconds)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.stop_within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.identity} did not exit within {self.stop_within:g}s of SIGTERM")

    def kill(self) -> None:
        """``kill -9``: no shutdown, no release of the lead."""
        self.process.kill()
        self.process.wait(self.stop_within)
