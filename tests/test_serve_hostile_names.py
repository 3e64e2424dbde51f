"""``serve`` beside manifests that Kubernetes would refuse, or that define a CronWorkflow twice.

Pins issue 12, item 1: with a file holding a CronWorkflow named ``{x}`` beside good ones,
``serve`` could not start (the Redis history refused the key while the service synced every
CronWorkflow, valid or not). Such a document is now an error of its file: the service starts,
stays ready, reports the file where file errors are reported (``/readyz``, the
``cronwf_manifest_errors`` metric) and runs the good CronWorkflows. And a file added later
cannot take over a CronWorkflow another file defines.

The service is the real one on the in-process Redis store (the same key code as Redis), with
the harness of ``test_runtime``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runtime import Harness, at, cron_workflow, get, scrape, succeeded, wait_until


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


HOSTILE = ["{x}", "a\x00b", "../x", "$(touch /tmp/cronwf-pwned)", "b" * 300]


def test_serve_starts_beside_hostile_names_and_runs_the_good_cron_workflows(
    harness: Harness,
) -> None:
    hostile = [cron_workflow(name) for name in HOSTILE]
    bad_namespace = cron_workflow("ns")
    bad_namespace["metadata"]["namespace"] = "../../outside"
    path = harness.write(*hostile, bad_namespace, file="hostile.yaml")
    harness.write(cron_workflow("report"), file="report.yaml")

    service = harness.started()

    assert service.timer.keys() == ["default/report"]
    readiness = service.ready()
    assert readiness.ready
    (problem,) = readiness.file_errors
    assert problem.file == str(path)
    assert len(problem.messages) == len(HOSTILE) + 1
    reply = json.loads(get(service, "/readyz")[1])
    assert {(e["kind"], e["file"]) for e in reply["sourceErrors"]} == {("file", str(path))}
    assert scrape(service)[("cronwf_manifest_errors", (("kind", "file"),))] == 1
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the good one to run")
    assert sorted(harness.store.calls) == ["default/report"]  # nothing else touched the store
    assert not (harness.tmp_path / "outside").exists()


def test_a_file_added_later_cannot_take_over_a_running_cron_workflow(harness: Harness) -> None:
    """The newcomer sorts first, so on a fresh start it would win; while the running
    definition stands, it keeps running and the newcomer is a file error."""
    harness.write(cron_workflow("report", "echo owner"), file="m.yaml")
    service = harness.started()

    newcomer = harness.write(cron_workflow("report", "echo takeover"), file="a.yaml")
    wait_until(lambda: bool(service.ready().file_errors), "the newcomer to be reported")

    assert [problem.file for problem in service.ready().file_errors] == [str(newcomer)]
    harness.clock.set(at(5, 0.1))
    service.on_due("default/report", [at(5)])
    wait_until(succeeded(harness.store, "default/report"), "the owner's run")
    ran = harness.log(service, "report", at(5)).read_text().splitlines()
    assert "owner" in ran
    assert "takeover" not in ran
