"""End-to-end: the shipped alert rules, in a real Prometheus, scraping a real ``cronwf serve``.

``promtool test rules`` (tests/test_monitoring.py) evaluates the rules on series written by
hand. Here they meet the series cronwf really exports, through a real scrape:

* one ``cronwf serve`` (embedded mode) with one CronWorkflow ``@every 2s``, no
  ``startingDeadlineSeconds``;
* Debian's ``prometheus`` binary with a generated configuration: scrape it every second as
  ``job="cronwf"`` (``honor_labels``, as servicemonitor.yaml does), evaluate every second,
  load ``manifests/monitoring/cronwf-rules.yaml`` as shipped, unmodified;
* the outage: the scheduler is frozen with SIGSTOP across several instants, then resumed with
  SIGCONT. Its timer then fires more than ``--late-after`` (5 s) late, so the runtime routes
  the instants through catch-up, which records them as missed (no deadline: none may run).
  ``CronWorkflowMissedSchedule`` (``for: 0m``) must then be *firing* in Prometheus' own
  alerts API, and no other alert.

Every rule must also evaluate without error on the real series (``/api/v1/rules``), and every
query of the Grafana dashboard must run and the key panels show data.

Each wait polls against a deadline; the fixtures kill every process they started (a frozen
one is resumed first). Marked ``e2e``: ``make test`` runs it with the other end-to-end tests,
after everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import eventually as poll_until
from e2e_support import http_get

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "cronwf-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
CRONWF = Path(sys.executable).with_name("cronwf")
PROMETHEUS = shutil.which("prometheus")

NAMESPACE = "default"
NAME = "tick"
INTERVAL = 2
"""Seconds between the CronWorkflow's instants (``@every 2s``)."""
FROZEN_FOR = 9.0
"""How long the scheduler stays frozen: more than ``--late-after`` (5 s) plus one interval, so
the first instant it owes is late enough for catch-up, and several instants are missed."""
START_WITHIN = 20.0
"""Seconds for a process to answer (Python or Prometheus start-up on a busy 2-core machine)."""
SCRAPED_WITHIN = 10.0
"""Seconds for Prometheus to scrape a few ticks and evaluate every rule (1 s intervals)."""
ALERT_WITHIN = 15.0
"""Seconds from the resumption to the alert firing: a scrape and an evaluation (1 s each)
after the catch-up, with a wide margin."""


# Prometheus is polled every 0.2 s: often enough, and gentle on a busy two-core machine.
eventually = partial(poll_until, every=0.2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cron_workflow_manifest() -> str:
    """``default/tick``: ``@every 2s``, a run that succeeds at once, no starting deadline."""
    document = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "schedules": [f"@every {INTERVAL}s"],
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [
                    {
                        "name": "main",
                        "container": {
                            "image": "alpine:3.20",
                            "command": ["sh", "-c"],
                            "args": ["true"],
                        },
                    }
                ],
            },
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class Process:
    """A process of the test, its log file, and how to tell it is up."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process could not exit
            self.process.kill()
        self.process.wait(10)


class Processes:
    """Starts the processes of one test; the fixture kills whatever is left and prints logs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Process] = []

    def start(self, name: str, command: list[str]) -> Process:
        log_path = self.directory / f"{name}.log"
        # Flags only: an operator's CRONWF_* variables must not change the test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRONWF_")}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        started = Process(name, process, log_path)
        self.started.append(started)
        return started

    def close(self) -> None:
        for started in self.started:
            started.close()

    def dump(self) -> None:
        """Print every log: pytest shows it when the test failed."""
        for started in self.started:
            print(f"----- {started.name} (exit {started.process.returncode}) -----")
            print(started.log())


@dataclass
class Scheduler:
    """The ``cronwf serve`` under test."""

    port: int
    process: Process

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self) -> bool:
        reply = http_get(f"http://{self.target}/readyz")
        return self.process.alive() and reply is not None and reply[0] == 200

    def missed_events(self) -> list[dict[str, Any]]:
        """The ``Missed`` decisions of its JSON log."""
        found = []
        for line in self.process.log().splitlines():
            if line.startswith("{") and line.endswith("}"):
                record = json.loads(line)
                if record.get("event") == "Missed":
                    found.append(record)
        return found


@dataclass
class Prometheus:
    """The Prometheus under test and its HTTP API."""

    port: int
    process: Process

    def api(self, path: str, **parameters: str) -> Any:
        query = f"?{urllib.parse.urlencode(parameters)}" if parameters else ""
        reply = http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}{query}")
        assert reply is not None, f"prometheus does not answer /api/v1/{path}"
        body = json.loads(reply[1])
        assert body["status"] == "success", f"/api/v1/{path} {parameters}: {body}"
        return body["data"]

    def ready(self) -> bool:
        reply = http_get(f"http://127.0.0.1:{self.port}/-/ready")
        return self.process.alive() and reply is not None and reply[0] == 200

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` now."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", f"{promql}: {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, state: str = "firing") -> list[dict[str, Any]]:
        """The alerts in ``state`` (``firing`` or ``pending``)."""
        return [a for a in self.api("alerts")["alerts"] if a["state"] == state]

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def evaluated_every_rule(self) -> list[dict[str, Any]] | None:
        """Every rule once it has been evaluated at least once after the first scrape."""
        rules = self.rules()
        if not rules or any(rule["health"] == "unknown" for rule in rules):
            return None
        return rules


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()
        started.dump()


@pytest.fixture
def scheduler(tmp_path: Path, processes: Processes) -> Scheduler:
    """``cronwf serve`` with ``default/tick``, ready and leading."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "tick.yaml").write_text(cron_workflow_manifest())
    port = free_port()
    command = [str(CRONWF), "serve", "--manifests", str(manifests)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--state-dir", str(tmp_path / "state")]
    command += ["--identity", "e2e", "--log-format", "json", "--late-after", "5s"]
    started = Scheduler(port, processes.start("cronwf", command))
    eventually("cronwf serve ready", START_WITHIN, started.ready)
    return started


@pytest.fixture
def prometheus(tmp_path: Path, processes: Processes, scheduler: Scheduler) -> Prometheus:
    """Prometheus scraping the scheduler every second as job="cronwf", with the shipped rules."""
    if PROMETHEUS is None:
        pytest.fail(
            "prometheus is not installed: this test runs the real server "
            "(`make test` installs Debian's prometheus package; or apt-get install prometheus)"
        )
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "cronwf",
                "honor_labels": True,
                "static_configs": [{"targets": [scheduler.target]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        PROMETHEUS,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    started = Prometheus(port, processes.start("prometheus", command))
    eventually("prometheus ready", START_WITHIN, started.ready)
    return started


def firing_names(prometheus: Prometheus) -> list[str]:
    return sorted(alert["labels"]["alertname"] for alert in prometheus.alerts())


def missed_alert(prometheus: Prometheus) -> dict[str, Any] | None:
    for alert in prometheus.alerts():
        labels = alert["labels"]
        if labels["alertname"] == "CronWorkflowMissedSchedule" and (
            labels.get("namespace"),
            labels.get("name"),
        ) == (NAMESPACE, NAME):
            return alert
    return None


def spawned(prometheus: Prometheus, at_least: int) -> bool:
    """Prometheus has scraped ``at_least`` triggered ticks of the CronWorkflow."""
    result = prometheus.query(f'cronwf_triggered_total{{job="cronwf", name="{NAME}"}}')
    return bool(result) and float(result[0]["value"][1]) >= at_least


def freeze_across_instants(scheduler: Scheduler) -> None:
    """SIGSTOP the scheduler for :data:`FROZEN_FOR` seconds, starting in the middle of an
    interval (away from an instant), then SIGCONT."""
    time.sleep((INTERVAL / 2 - time.time() % INTERVAL) % INTERVAL)
    scheduler.process.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(FROZEN_FOR)
    finally:
        scheduler.process.process.send_signal(signal.SIGCONT)


@pytest.mark.timeout(90)  # the bounded waits add up to 85 s at worst
def test_instants_missed_while_the_scheduler_was_frozen_fire_the_missed_schedule_alert(
    scheduler: Scheduler, prometheus: Prometheus
) -> None:
    eventually("two ticks scraped", SCRAPED_WITHIN, lambda: spawned(prometheus, 2))
    rules = eventually("every rule evaluated", SCRAPED_WITHIN, prometheus.evaluated_every_rule)
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert missed_alert(prometheus) is None, "the alert fired before anything was missed"
    assert firing_names(prometheus) == [], "a healthy scheduler raised an alert"

    freeze_across_instants(scheduler)

    alert = eventually(
        lambda: (
            f"CronWorkflowMissedSchedule firing; firing: {firing_names(prometheus)}, "
            f"pending: {[a['labels']['alertname'] for a in prometheus.alerts('pending')]}"
        ),
        ALERT_WITHIN,
        lambda: missed_alert(prometheus),
    )
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == (
        f"CronWorkflow {NAMESPACE}/{NAME} missed a scheduled instant"
    )
    assert alert["annotations"]["runbook_url"].endswith("#runbook-cronworkflowmissedschedule")
    missed = scheduler.missed_events()
    assert len(missed) >= 2, "the scheduler recorded fewer missed instants than it was frozen"
    assert {event["reason"] for event in missed} == {"superseded", "deadline"}
    assert firing_names(prometheus) == ["CronWorkflowMissedSchedule"]
    assert [r["name"] for r in prometheus.rules() if r["health"] != "ok"] == []


def test_every_dashboard_query_runs_on_the_real_series_and_the_key_panels_show_data(
    scheduler: Scheduler, prometheus: Prometheus
) -> None:
    eventually("three ticks scraped", SCRAPED_WITHIN, lambda: spawned(prometheus, 3))
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = {
        (panel["title"], target["legendFormat"]): target["expr"]
        for row in board["panels"]
        for panel in [row, *row.get("panels", [])]
        for target in panel.get("targets", [])
    }

    def data(expr: str) -> list[dict[str, Any]]:
        return prometheus.query(
            expr.replace("$__rate_interval", "1m")
            .replace("$namespace", NAMESPACE)
            .replace("$name", NAME)
        )

    for expr in exprs.values():
        data(expr)  # a query Prometheus refuses fails the test here

    def shows(title: str, legend: str) -> list[dict[str, Any]] | None:
        return data(exprs[title, legend]) or None

    # rate() over one minute needs two scrapes of a growing counter: poll briefly.
    eventually(
        "the lag percentiles", SCRAPED_WITHIN, lambda: shows("Schedule lag percentiles", "p50")
    )
    for key in (
        ("Replicas up", "up"),
        ("Leaders", "leaders"),
        ("CronWorkflows by state", "{{state}}"),
        ("Workflows triggered", "triggered"),
        ("Spec and expression errors", "invalid now"),
        ("Next instant", "next instant"),
        ("Last spawned instant", "last spawned instant"),
        ("Last success", "last success"),
        ("Expected interval", "expected interval"),
        ("Triggered, skipped and missed", "triggered"),
    ):
        assert shows(*key), f"the panel {key[0]!r} ({key[1]}) shows no data"
    (interval,) = data(exprs["Expected interval", "expected interval"])
    assert float(interval["value"][1]) == INTERVAL
    states = {
        r["metric"]["state"]: float(r["value"][1])
        for r in data(exprs["CronWorkflows by state", "{{state}}"])
    }
    assert states == {"active": 1.0, "suspended": 0.0, "stopped": 0.0, "invalid": 0.0}
