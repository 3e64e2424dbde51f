"""The monitoring artefacts of ``manifests/monitoring``, checked with Prometheus' own tools.

- ``cronwf-rules.yaml``, the alerting rules: ``promtool check rules`` accepts them, and
  ``promtool test rules`` runs the unit tests in ``manifests/monitoring/tests`` (each alert
  firing, and the CronWorkflows that must be left alone: suspended, stopped on purpose, a
  weekly schedule between runs, one leader). To show the unit tests have teeth, a few
  deliberately weakened copies of the rules must fail them.
- ``prometheusrule.yaml``, the same groups for the Prometheus Operator, rendered from the rule
  file by ``tests/render_prometheus_rule.py``: the committed file is exactly what it renders.
- every alert: the severity and scope of the table below, a summary and a description that
  name the CronWorkflow, and a runbook that exists in the README's "Runbooks" section.
- ``servicemonitor.yaml`` scrapes the base install's Service as ``job="cronwf"``, the job every
  rule selects.
- ``grafana-dashboard.json``: its shape (variables, panels, data source), the panels the
  on-call needs, and every query valid PromQL (promtool parses them as recording rules).

promtool comes with Debian's ``prometheus`` package, which ``make test`` installs; without it
these tests fail and say so. ``tests/test_e2e_prometheus.py`` runs the same rules in a real
Prometheus scraping a real ``cronwf serve``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from render_prometheus_rule import PROMETHEUS_RULE, RULES, render

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "manifests" / "monitoring"
RULE_TESTS = MONITORING / "tests"
SERVICE_MONITOR = MONITORING / "servicemonitor.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
SERVICE = ROOT / "manifests" / "base" / "service.yaml"
README = ROOT / "README.md"

PROMTOOL = shutil.which("promtool")
JOB = 'job="cronwf"'
RUNBOOKS = "https://github.com/cronwf/cronwf/blob/main/README.md"

# The alert table: who is told, how loudly, after how long (the rule file says why).
# scope "service": whoever runs cronwf; "cronworkflow": the team owning the namespace.
ALERTS: dict[str, tuple[str, str, str]] = {
    "CronWorkflowMissedSchedule": ("critical", "service", "0m"),
    "CronWorkflowLate": ("critical", "service", "1m"),
    "CronWorkflowNoRecentSuccess": ("warning", "cronworkflow", "5m"),
    "CronWorkflowStopped": ("info", "cronworkflow", "0m"),
    "CronWorkflowLostRuns": ("warning", "cronworkflow", "0m"),
    "CronWorkflowSpawnErrors": ("warning", "cronworkflow", "0m"),
    "CronWorkflowSpecErrors": ("warning", "cronworkflow", "0m"),
    "CronwfNoLeader": ("critical", "service", "2m"),
    "CronwfSeveralLeaders": ("warning", "service", "1m"),
    "CronwfDown": ("critical", "service", "2m"),
}
# The alerts about one CronWorkflow: their labels are namespace and name, their texts name it.
# (CronWorkflowSpecErrors is about one too, but its series carry no CronWorkflow label.)
PER_CRON_WORKFLOW = frozenset(
    {
        "CronWorkflowMissedSchedule",
        "CronWorkflowLate",
        "CronWorkflowNoRecentSuccess",
        "CronWorkflowStopped",
        "CronWorkflowLostRuns",
        "CronWorkflowSpawnErrors",
    }
)
NAMES_THE_CRON_WORKFLOW = "{{ $labels.namespace }}/{{ $labels.name }}"

Rule = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Helpers


def promtool(*arguments: str | Path, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    """Run promtool; fail (never skip) when it is not installed."""
    if PROMTOOL is None:
        pytest.fail(
            "promtool is not installed: the monitoring tests need Prometheus' own tools "
            "(`make test` installs Debian's prometheus package; or apt-get install prometheus)"
        )
    return subprocess.run(
        [PROMTOOL, *map(str, arguments)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load_groups(path: Path = RULES) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def alert_rules() -> dict[str, Rule]:
    return {rule["alert"]: rule for group in load_groups() for rule in group["rules"]}


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yaml"))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def as_promql(expr: str, namespace: str = "default", name: str = "tick") -> str:
    """A dashboard query with Grafana's variables replaced, ready for Prometheus."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$namespace", namespace)
        .replace("$name", name)
    )


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matchers) of every series selector of a PromQL expression."""
    found = []
    for match in re.finditer(r"\b(cronwf_[a-z_]+|up)\b(\{[^}]*\})?", expr):
        found.append((match.group(1), match.group(2) or ""))
    return found


def weakened(tmp_path: Path, change: Callable[[Rule], None]) -> Path:
    """A copy of the rule file and its unit tests, with ``change`` applied to every alert rule;
    returns the copy's folder."""
    copy = tmp_path / "monitoring"
    (copy / "tests").mkdir(parents=True)
    for path in rule_test_files():
        shutil.copy(path, copy / "tests" / path.name)
    groups = load_groups()
    for group in groups:
        for rule in group["rules"]:
            change(rule)
    (copy / RULES.name).write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return copy


# --------------------------------------------------------------------------------------------
# The rules, with promtool


def test_promtool_accepts_the_rule_file() -> None:
    result = promtool("check", "rules", RULES)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_the_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", *(p.relative_to(MONITORING) for p in rule_test_files()))

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_see_every_alert_fire_and_stay_quiet() -> None:
    """Each alert is expected firing at least once and expected quiet at least once."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in rule_test_files():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["rule_files"] == ["../cronwf-rules.yaml"], path
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])

    assert firing == set(ALERTS), f"never seen firing: {set(ALERTS) - firing}"
    assert quiet == set(ALERTS), f"never seen quiet: {set(ALERTS) - quiet}"


def _without_exclusion_of_suspended_and_stopped(rule: Rule) -> None:
    rule["expr"] = rule["expr"].split("unless on (namespace, name)")[0]


def _late_on_every_replica(rule: Rule) -> None:
    if rule.get("alert") == "CronWorkflowLate":
        leader_only = 'and on (job, instance) (cronwf_is_leader{job="cronwf"} == 1)'
        assert leader_only in rule["expr"]
        rule["expr"] = rule["expr"].replace(leader_only, "")


def _missed_as_a_bare_increase(rule: Rule) -> None:
    if rule.get("alert") == "CronWorkflowMissedSchedule":
        rule["expr"] = (
            'sum by (namespace, name) (increase(cronwf_missed_total{job="cronwf"}[15m])) > 0'
        )


def _missed_without_the_guard_against_a_fresh_prometheus(rule: Rule) -> None:
    if rule.get("alert") == "CronWorkflowMissedSchedule":
        guard = 'and on (job, instance) (cronwf_is_leader{job="cronwf"} offset 15m)'
        assert guard in rule["expr"]
        rule["expr"] = rule["expr"].replace(guard, "")


@pytest.mark.parametrize(
    ("change", "caught_by"),
    [
        pytest.param(
            _without_exclusion_of_suspended_and_stopped,
            'name="paused"',
            id="late-and-no-recent-success-for-suspended-and-stopped",
        ),
        pytest.param(_late_on_every_replica, 'name="sync"', id="late-from-a-standby"),
        pytest.param(_missed_as_a_bare_increase, 'name="ledger"', id="missed-as-bare-increase"),
        pytest.param(
            _missed_without_the_guard_against_a_fresh_prometheus,
            "freshly started Prometheus",
            id="missed-on-a-fresh-prometheus",
        ),
    ],
)
def test_the_unit_tests_fail_a_weakened_rule(
    tmp_path: Path, change: Callable[[Rule], None], caught_by: str
) -> None:
    """The unit tests have teeth: a rule that pages for a suspended CronWorkflow, trusts a
    standby's timer, misses the first missed instant of a series, or takes old counts for new
    ones on a freshly started Prometheus fails them, in the test written for that case."""
    copy = weakened(tmp_path, change)

    result = promtool(
        "test", "rules", *sorted(p.name for p in (copy / "tests").iterdir()), cwd=copy / "tests"
    )

    assert result.returncode != 0, "the unit tests passed a weakened rule"
    assert caught_by in result.stdout + result.stderr, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# The alerts' contract: table, texts, runbooks, job


def test_the_alerts_are_those_of_the_table_with_their_severity_scope_and_duration() -> None:
    rules = alert_rules()

    assert set(rules) == set(ALERTS)
    for name, (severity, scope, duration) in ALERTS.items():
        rule = rules[name]
        assert rule["labels"]["severity"] == severity, name
        assert rule["labels"]["scope"] == scope, name
        assert rule["for"] == duration, name


def test_every_alert_has_a_summary_a_description_and_a_runbook_url() -> None:
    for name, rule in alert_rules().items():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{RUNBOOKS}#runbook-{name.lower()}", name


def test_the_alerts_about_one_cron_workflow_name_it() -> None:
    """Summary and description say which CronWorkflow. (That these alerts carry exactly the
    labels namespace and name, whichever replica exported the series, is what the unit tests'
    exp_labels check.)"""
    for name in PER_CRON_WORKFLOW:
        rule = alert_rules()[name]
        assert NAMES_THE_CRON_WORKFLOW in rule["annotations"]["summary"], name
        assert NAMES_THE_CRON_WORKFLOW in rule["annotations"]["description"], name
        assert "by (namespace, name)" in rule["expr"], name


def test_every_series_a_rule_reads_is_selected_by_job_cronwf() -> None:
    for name, rule in alert_rules().items():
        found = selectors(rule["expr"])
        assert found, name
        for metric, matchers in found:
            assert JOB in matchers, f"{name}: {metric}{matchers} does not select {JOB}"


def test_the_readme_has_a_runbook_for_every_alert_at_the_anchor_its_rule_links() -> None:
    """``## Runbooks`` holds one ``### Runbook: <AlertName>`` per alert; GitHub turns each
    heading into the anchor ``runbook-<alertname>`` that the rule's runbook_url names."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Runbooks\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, "README.md has no '## Runbooks' section"
    headings = re.findall(r"^### (Runbook: .+)$", section.group(1), flags=re.M)
    anchors = {github_anchor(heading) for heading in headings}

    for name, rule in alert_rules().items():
        fragment = rule["annotations"]["runbook_url"].partition("#")[2]
        assert fragment in anchors, f"no '### Runbook: {name}' heading in README's Runbooks"


# --------------------------------------------------------------------------------------------
# The PrometheusRule and the ServiceMonitor


def test_the_prometheus_rule_is_rendered_from_the_rule_file() -> None:
    """Edit cronwf-rules.yaml, then run ``python tests/render_prometheus_rule.py``."""
    committed = PROMETHEUS_RULE.read_text(encoding="utf-8")

    assert committed == render(RULES.read_text(encoding="utf-8")), (
        "prometheusrule.yaml is stale: run `.venv/bin/python tests/render_prometheus_rule.py`"
    )
    assert yaml.safe_load(committed)["spec"]["groups"] == load_groups()


def test_the_prometheus_rule_is_a_prometheus_operator_object() -> None:
    document = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))

    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"]["name"] == "cronwf"
    assert document["metadata"]["namespace"] == "cronwf"
    assert set(document["spec"]) == {"groups"}


def test_the_service_monitor_scrapes_the_base_service_as_job_cronwf_with_its_labels() -> None:
    monitor = yaml.safe_load(SERVICE_MONITOR.read_text(encoding="utf-8"))
    service = yaml.safe_load(SERVICE.read_text(encoding="utf-8"))
    spec = monitor["spec"]
    service_labels = service["metadata"]["labels"]

    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    assert spec["selector"]["matchLabels"].items() <= service_labels.items()
    assert service_labels[spec["jobLabel"]] == "cronwf", "the job label would not be cronwf"
    assert spec["namespaceSelector"]["matchNames"] == [monitor["metadata"]["namespace"]]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True, "the CronWorkflow's namespace label would be renamed"


# --------------------------------------------------------------------------------------------
# The Grafana dashboard


def test_the_dashboard_has_a_prometheus_data_source_and_namespace_and_name_variables() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}

    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] == "cronwf"
    assert board["title"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "name"):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
        assert JOB in variable["definition"], name
    assert 'namespace="$namespace"' in variables["name"]["definition"]


def test_every_dashboard_panel_has_a_unique_id_fits_the_grid_and_uses_the_variable() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    occupied: dict[tuple[int, int], str] = {}

    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert 0 < grid["w"] <= 24 - grid["x"], panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[x, y]}"
                occupied[x, y] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["refId"], panel["title"]
            assert target["expr"], panel["title"]


def test_every_dashboard_query_selects_job_cronwf() -> None:
    for title, expr in queries(dashboard()):
        for metric, matchers in selectors(expr):
            assert JOB in matchers, f"{title}: {metric}{matchers}"


def test_the_dashboard_shows_fleet_health_lag_missed_skipped_errors_and_one_cron_workflow() -> None:
    exprs = [expr for _, expr in queries(dashboard())]

    def shown(*fragments: str) -> bool:
        return any(all(fragment in expr for fragment in fragments) for expr in exprs)

    assert shown("max by (state) (cronwf_cronworkflows")
    assert shown("cronwf_is_leader")
    assert shown("up{")
    for quantile in ("0.5", "0.9", "0.99"):
        assert shown(f"histogram_quantile({quantile},", "rate(cronwf_schedule_lag_seconds_bucket")
    assert shown("sum by (reason) (rate(cronwf_missed_total")
    assert shown("sum by (reason) (rate(cronwf_skipped_total")
    assert shown("rate(cronwf_spawn_errors_total")
    assert shown("rate(cronwf_spec_errors_total")
    assert shown("rate(cronwf_expression_errors_total")
    one = 'namespace="$namespace", name="$name"'
    for metric in (
        "cronwf_next_schedule_time_seconds",
        "cronwf_last_schedule_time_seconds",
        "cronwf_last_success_time_seconds",
        "cronwf_expected_interval_seconds",
        "cronwf_triggered_total",
        "cronwf_skipped_total",
        "cronwf_missed_total",
    ):
        assert shown(f"{metric}{{{JOB}, {one}}}"), metric


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, its Grafana variables filled in, as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{index}", "expr": as_promql(expr)}
        for index, (_, expr) in enumerate(queries(dashboard()))
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = promtool("check", "rules", path)

    assert result.returncode == 0, result.stdout + result.stderr
