"""Render ``manifests/monitoring/prometheusrule.yaml`` from ``cronwf-rules.yaml``.

The alerting rules exist once, as a plain Prometheus rule file (what ``promtool`` checks and
tests, and what a Prometheus without the Operator loads). The Prometheus Operator wants the
same groups wrapped in a ``PrometheusRule`` object; this script writes that wrapper, and
``tests/test_monitoring.py`` fails when the committed file differs from what it renders, so
the two cannot drift. After editing the rules::

    .venv/bin/python tests/render_prometheus_rule.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PROMETHEUS_RULE", "RULES", "render"]

MONITORING = Path(__file__).resolve().parent.parent / "manifests" / "monitoring"
RULES = MONITORING / "cronwf-rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"

HEADER = """\
# Generated from cronwf-rules.yaml by tests/render_prometheus_rule.py: edit that file and
# render again (tests/test_monitoring.py checks that the two agree). The comments there
# explain every threshold.
#
# For the Prometheus Operator. Its Prometheus must select this object: add the label its
# ruleSelector matches (kube-prometheus-stack: `release: <its release name>`) and make sure
# its ruleNamespaceSelector includes the cronwf namespace. The rules expect cronwf to be
# scraped as job="cronwf" with honorLabels (servicemonitor.yaml does both).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, the way people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(rules_text: str) -> str:
    """The PrometheusRule document holding the groups of ``rules_text``."""
    groups: list[dict[str, Any]] = yaml.safe_load(rules_text)["groups"]
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cronwf",
            "namespace": "cronwf",
            "labels": {
                "app.kubernetes.io/name": "cronwf",
                "app.kubernetes.io/component": "scheduler",
            },
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main() -> int:
    PROMETHEUS_RULE.write_text(render(RULES.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
