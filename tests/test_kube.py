"""The Kubernetes adapters and ``cronwf serve --kubernetes``, in-process, with the official
client against the API emulator (DESIGN §7, §9, §10, §13; reference §1.13, §1.14, §2, §3, §5).

What runs here is what runs in a pod: ``KubeSource``, ``KubeSink``, ``WorkflowWatcher``,
``KubeStatus`` and ``KubeLease`` speak HTTP to :class:`kube_emulator.EmulatorServer` (URLs,
content types, status codes, watch framing, resourceVersion conflicts, label selectors), and
the Kubernetes-mode :class:`Service` is wired exactly as ``scheduler/cli`` wires it, on a
real ``redis-server`` with a published fence. The emulator plays the API server; a few lines
of ``kube.set_phase`` play Argo's workflow controller.

Time: the Lease tests give each replica a :class:`FakeClock`; the Service tests give the
service one set on 2028-02-29, with schedules that only fire on February 29th, so the real
timer never fires during a test and every tick is driven by :meth:`Service.on_due` with the
instants a test wants decided. The housekeeping loop, the informers and the lease renewals
run for real with short intervals; every wait is bounded (``WAIT`` seconds at most).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from threading import Lock
from typing import Any

import pytest
import redis
import yaml
from conftest import RedisServer
from kube_emulator import EmulatorServer
from kubernetes import client

from policies.decision import History, Phase, WorkflowPhase
from policies.spec import CronWorkflowSpec
from policies.workflow import render_workflow, rfc3339, workflow_name
from scheduler.adapters.kube.client import api_client
from scheduler.adapters.kube.lease import KubeLease
from scheduler.adapters.kube.runs import ObservedRun, WorkflowWatcher
from scheduler.adapters.kube.sink import KubeSink
from scheduler.adapters.kube.source import KubeSource
from scheduler.adapters.kube.status import COMPLETED_LABEL, KubeStatus
from scheduler.adapters.local.executor import RunFinished
from scheduler.adapters.redis.history import RedisHistory, connect
from scheduler.adapters.redis.leadership import PublishedFence
from scheduler.core.engine import SinkUnavailable, SpawnRejected
from scheduler.runtime.service import Cluster, FencedLease, Service, ServiceConfig

GROUP_VERSION = "argoproj.io/v1alpha1"
NS = "argo"
CRON_LABEL = "workflows.argoproj.io/cron-workflow"
INSTANCE_LABEL = "workflows.argoproj.io/controller-instanceid"
LAST_USED_SCHEDULE = "cronworkflows.argoproj.io/last-used-schedule"
LAST_DECIDED_TIME = "cronwf.io/last-decided-time"
GOLDEN = Path(__file__).parent / "golden"
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation")
WAIT = 10.0  # seconds: the longest any test waits for anything
REACT = 5.0  # seconds for the service to react; its loops run every 0.1 to 0.2 s
QUIET = 0.5  # seconds after which nothing the service started is still in flight (5 reloads)

T0 = datetime(2028, 2, 29, 9, 0, tzinfo=UTC)
EVERY_FIVE_ON_LEAP_DAY = "*/5 * 29 2 *"
HELLO = {
    "entrypoint": "main",
    "templates": [{"name": "main", "container": {"image": "alpine:3.20", "command": ["true"]}}],
}


def at(minutes: float, seconds: float = 0.0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


# --------------------------------------------------------------------------------------------
# Fakes and helpers


class FakeClock:
    """A replica's clock; only the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RivalFirstClock(FakeClock):
    """A clock that, the first time it is read after :meth:`arm`, lets a rival act first.

    A Lease replica reads its clock between reading the Lease and writing it back (to judge
    expiry, to stamp ``renewTime``), so the rival's write lands exactly in that window: the
    race of two replicas that read the same Lease version, made deterministic.
    """

    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self._rival: Callable[[], object] | None = None

    def arm(self, rival: Callable[[], object]) -> None:
        self._rival = rival

    def __call__(self) -> datetime:
        rival, self._rival = self._rival, None
        if rival is not None:
            rival()
        return self.now


def cron_workflow(
    name: str,
    *,
    schedule: str = EVERY_FIVE_ON_LEAP_DAY,
    namespace: str = NS,
    labels: Mapping[str, str] | None = None,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A CronWorkflow object as ``kubectl apply`` would store it."""
    body: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "CronWorkflow",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"schedules": [schedule], "workflowSpec": HELLO, **(spec or {})},
    }
    if status is not None:
        body["status"] = dict(status)
    return body


def spec_of(kube: EmulatorServer, name: str, **fields: Any) -> CronWorkflowSpec:
    """The spec of a stored CronWorkflow as cronwf sees it (uid included), for rendering."""
    return CronWorkflowSpec(
        name=name,
        namespace=NS,
        uid=stored(kube, "cronworkflows", name)["metadata"]["uid"],
        schedules=(EVERY_FIVE_ON_LEAP_DAY,),
        workflow_spec=HELLO,
        **fields,
    )


def put_workflow(kube: EmulatorServer, spec: CronWorkflowSpec, scheduled_at: datetime) -> str:
    """Create the Workflow of ``scheduled_at`` directly in the cluster, exactly as cronwf would
    (the state after a crash between create and record); returns its name."""
    created = kube.put("workflows", render_workflow(spec, scheduled_at, ""))
    return str(created["metadata"]["name"])


def workflows_of(kube: EmulatorServer, name: str) -> list[str]:
    """The names of the Workflows of CronWorkflow ``name``."""
    found = kube.objects("workflows", NS, label_selector=f"{CRON_LABEL}={name}")
    return [str(item["metadata"]["name"]) for item in found]


def stored(kube: EmulatorServer, resource: str, name: str) -> dict[str, Any]:
    """An object as the API server stores it (it must exist)."""
    found = kube.get(resource, NS, name)
    assert found is not None, f"no {resource} {NS}/{name}"
    return found


def status_of(kube: EmulatorServer, name: str) -> dict[str, Any]:
    found = kube.get("cronworkflows", NS, name) or {}
    return dict(found.get("status") or {})


def events_of(kube: EmulatorServer, name: str) -> list[dict[str, Any]]:
    return [
        event
        for event in kube.objects("events", NS)
        if event.get("involvedObject", {}).get("name") == name
    ]


def finish(kube: EmulatorServer, workflow: str, phase: str, **options: Any) -> None:
    """Argo's workflow controller, in two lines: the run starts, then ends in ``phase``."""
    kube.set_phase(NS, workflow, "Running")
    kube.set_phase(NS, workflow, phase, **options)


def load_golden(name: str, **values: str) -> dict[str, Any]:
    text = (GOLDEN / name).read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def without_server_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj["metadata"].items() if k not in SERVER_SET}
    return {**obj, "metadata": metadata}


@pytest.fixture
def custom(kube_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_client)


# --------------------------------------------------------------------------------------------
# The spawned Workflow, against golden YAML (DESIGN §7, reference §2)


@pytest.mark.parametrize(
    ("workflow_instance_id", "scheduled_at", "golden"),
    [
        (
            "",
            datetime(2026, 3, 8, 1, 0, tzinfo=UTC),
            "nightly-report-1772931600.workflow.yaml",
        ),
        (
            "argo-prod",
            datetime(2026, 3, 9, 1, 0, tzinfo=UTC),
            "nightly-report-1773018000.workflow-instance-id.yaml",
        ),
    ],
)
def test_the_spawned_workflow_equals_the_golden_file(
    kube: EmulatorServer,
    kube_client: client.ApiClient,
    workflow_instance_id: str,
    scheduled_at: datetime,
    golden: str,
) -> None:
    """The Workflow as stored by the API server (fetched back, server-set fields aside):
    deterministic name, creator labels copied then ``workflowMetadata.labels`` on top,
    ``scheduled-time`` in RFC 3339 UTC then ``workflowMetadata.annotations``, finalizers, one
    controller owner reference to the CronWorkflow's uid, ``workflowSpec`` verbatim.

    The CronWorkflow's instance-id label selects the scheduler and is not copied: the
    Workflow carries ``--workflow-instance-id`` (none when empty), the id of the Argo workflow
    controller that runs it. Argo copies the CronWorkflow's label because there one controller
    plays both roles (reference §2, "Instance-id handling").
    """
    kube.put("cronworkflows", load_golden("nightly-report.cronworkflow.yaml"))
    source = KubeSource(kube_client, NS, "cronwf-prod")
    source.start()
    try:
        assert source.wait_synced(WAIT)
        snapshot = source.poll()
    finally:
        source.stop()
    assert snapshot.problems == ()
    spec = snapshot.cron_workflows["argo/nightly-report"]

    assert KubeSink(kube_client, workflow_instance_id).spawn(spec, scheduled_at) is True

    name = f"nightly-report-{int(scheduled_at.timestamp())}"
    created = stored(kube, "workflows", name)
    cron_uid = stored(kube, "cronworkflows", "nightly-report")["metadata"]["uid"]
    expected = load_golden(golden, **{"<uid of the CronWorkflow>": cron_uid})
    assert without_server_fields(created) == expected


# --------------------------------------------------------------------------------------------
# KubeSink: create under the deterministic name, terminate by merge patch


@pytest.fixture
def nightly() -> CronWorkflowSpec:
    return CronWorkflowSpec(
        name="nightly",
        namespace=NS,
        uid="0b5c7f3e-0000-4000-8000-000000000001",
        schedules=(EVERY_FIVE_ON_LEAP_DAY,),
        workflow_spec=HELLO,
    )


def test_spawn_creates_the_workflow_and_the_same_instant_again_is_already_spawned(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    """409 AlreadyExists is success: this instant was spawned before (DESIGN §4.7)."""
    sink = KubeSink(kube_client)
    assert sink.spawn(nightly, at(5)) is True
    assert sink.spawn(nightly, at(5)) is False
    assert workflows_of(kube, "nightly") == [workflow_name("nightly", at(5))]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_spawn_reports_a_server_outage_as_sink_unavailable(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec, status: int
) -> None:
    """5xx and 429 (here without Retry-After, so the client does not retry by itself) are the
    world's: retry later, lose nothing. Nothing was created, and the next try succeeds."""
    fault = kube.fail("POST", "workflows", status=status)
    sink = KubeSink(kube_client)
    with pytest.raises(SinkUnavailable, match="creating Workflow"):
        sink.spawn(nightly, at(5))
    assert fault.hits == 1
    assert workflows_of(kube, "nightly") == []
    assert sink.spawn(nightly, at(5)) is True


def test_spawn_reports_an_unreachable_api_server_as_sink_unavailable(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    kube.stop()
    try:
        with pytest.raises(SinkUnavailable):
            KubeSink(kube_client).spawn(nightly, at(5))
    finally:
        kube.start()


@pytest.mark.parametrize("status", [403, 422])
def test_spawn_reports_a_refusal_as_spawn_rejected_with_the_servers_message(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec, status: int
) -> None:
    """Other 4xx are the user's: a ``SubmissionError`` carrying what the server said."""
    kube.fail("POST", "workflows", status=status)
    with pytest.raises(SpawnRejected) as caught:
        KubeSink(kube_client).spawn(nightly, at(5))
    assert str(caught.value) == f"injected fault {status}"


def test_spawn_of_an_invalid_workflow_name_is_rejected_with_the_servers_message(
    kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    """A real 422 from the API server's own validation, not an injected one."""
    upper = CronWorkflowSpec(name="Nightly", namespace=NS, workflow_spec=HELLO)
    with pytest.raises(SpawnRejected, match=r'Workflow "Nightly-\d+" is invalid: metadata.name'):
        KubeSink(kube_client).spawn(upper, at(5))


def test_spawn_many_creates_workflows_at_once_and_reports_each_outcome(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    """Instants due together are created by overlapping requests (never more than the
    sink's workers at once); each gets its own outcome: created, already there, refused."""
    upper = CronWorkflowSpec(name="Nightly", namespace=NS, workflow_spec=HELLO)
    sink = KubeSink(kube_client, workers=3)
    try:
        assert sink.spawn(nightly, at(5)) is True
        latency = kube.slow("POST", "workflows", seconds=0.2)
        spawns = [(nightly, at(minutes)) for minutes in range(5, 35, 5)] + [(upper, at(5))]

        outcomes = sink.spawn_many(spawns)
    finally:
        sink.close()

    assert outcomes[:6] == [False, True, True, True, True, True]
    assert isinstance(outcomes[6], SpawnRejected)
    assert "metadata.name" in str(outcomes[6])
    assert latency.hits == 7
    assert latency.peak == 3
    assert sorted(workflows_of(kube, "nightly")) == sorted(
        workflow_name("nightly", at(minutes)) for minutes in range(5, 35, 5)
    )


def test_spawn_many_stops_creating_once_the_api_server_is_unavailable(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    """After a 503 the creates not yet started are not attempted: each reports the outage
    and nothing else is created (catch-up retries them)."""
    fault = kube.fail("POST", "workflows", status=503)
    sink = KubeSink(kube_client, workers=1)
    try:
        outcomes = sink.spawn_many([(nightly, at(minutes)) for minutes in (5, 10, 15)])
    finally:
        sink.close()

    assert [type(outcome) for outcome in outcomes] == [SinkUnavailable] * 3
    assert fault.hits == 1
    assert workflows_of(kube, "nightly") == []


def test_spawn_many_after_close_reports_the_sink_unavailable(
    kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    sink = KubeSink(kube_client)
    sink.close()
    outcomes = sink.spawn_many([(nightly, at(5)), (nightly, at(10))])
    assert [str(outcome) for outcome in outcomes] == ["the Kubernetes sink is shutting down"] * 2


def test_the_client_keeps_a_connection_for_each_concurrent_create(
    kube: EmulatorServer, tmp_path: Path, nightly: CronWorkflowSpec
) -> None:
    """urllib3 would otherwise discard (and warn about) every connection beyond its default
    pool of ten, opening a new one for each create of a burst."""
    api = api_client(str(kube.kubeconfig(tmp_path / "kubeconfig", namespace=NS)), 40)
    try:
        assert api.configuration.connection_pool_maxsize >= 40
        assert KubeSink(api).spawn(nightly, at(5)) is True
    finally:
        api.close()


def test_the_sink_needs_at_least_one_worker(kube_client: client.ApiClient) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        KubeSink(kube_client, workers=0)


def test_terminate_merge_patches_spec_shutdown_and_keeps_the_rest_of_the_spec(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    """Argo's ``util.TerminateWorkflow`` (reference §1.5); a Workflow already gone is fine
    (#5024)."""
    sink = KubeSink(kube_client)
    sink.spawn(nightly, at(5))
    name = workflow_name("nightly", at(5))
    kube.set_phase(NS, name, "Running")

    sink.terminate(NS, name)

    terminated = stored(kube, "workflows", name)
    assert terminated["spec"] == {**HELLO, "shutdown": "Terminate"}
    assert terminated["status"]["phase"] == "Running"
    sink.terminate(NS, "nightly-1")  # 404: nothing to stop


def test_terminate_reports_a_server_outage_as_sink_unavailable(
    kube: EmulatorServer, kube_client: client.ApiClient, nightly: CronWorkflowSpec
) -> None:
    sink = KubeSink(kube_client)
    sink.spawn(nightly, at(5))
    kube.fail("PATCH", "workflows", status=503)
    with pytest.raises(SinkUnavailable):
        sink.terminate(NS, workflow_name("nightly", at(5)))


# --------------------------------------------------------------------------------------------
# KubeSource: list, watch, select, reconnect, relist


@pytest.fixture
def sources(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> Iterator[Callable[..., KubeSource]]:
    """Started sources (namespace, instance id), stopped at the end of the test."""
    started: list[KubeSource] = []

    def start(namespace: str = NS, instance_id: str = "") -> KubeSource:
        source = KubeSource(kube_client, namespace, instance_id)
        source.start()
        started.append(source)
        assert source.wait_synced(WAIT), "the source did not list CronWorkflows"
        kube.wait(lambda: kube.watches("cronworkflows") >= len(started), timeout=WAIT)
        return source

    yield start
    for source in started:
        source.stop()


def keys(source: KubeSource) -> set[str]:
    return set(source.poll().cron_workflows)


def test_source_lists_one_namespace_or_all(
    kube: EmulatorServer, sources: Callable[..., KubeSource]
) -> None:
    kube.put("cronworkflows", cron_workflow("nightly"))
    kube.put("cronworkflows", cron_workflow("hourly", namespace="reports"))
    assert keys(sources(NS)) == {"argo/nightly"}
    assert keys(sources("")) == {"argo/nightly", "reports/hourly"}


def test_source_selects_by_instance_id_as_argo_does(
    kube: EmulatorServer, sources: Callable[..., KubeSource]
) -> None:
    """With an id: only CronWorkflows labelled with it; without: only unlabelled ones, so
    cronwf runs beside an Argo controller with another id (reference §2)."""
    kube.put("cronworkflows", cron_workflow("ours", labels={INSTANCE_LABEL: "cronwf-prod"}))
    kube.put("cronworkflows", cron_workflow("theirs", labels={INSTANCE_LABEL: "argo-prod"}))
    kube.put("cronworkflows", cron_workflow("unlabelled"))
    assert keys(sources(NS, "cronwf-prod")) == {"argo/ours"}
    assert keys(sources(NS, "")) == {"argo/unlabelled"}


def test_source_reflects_additions_changes_and_deletions(
    kube: EmulatorServer, sources: Callable[..., KubeSource]
) -> None:
    source = sources()
    assert keys(source) == set()

    kube.put("cronworkflows", cron_workflow("nightly"))
    kube.wait(lambda: keys(source) == {"argo/nightly"}, timeout=WAIT)

    kube.patch("cronworkflows", NS, "nightly", {"spec": {"suspend": True}})
    kube.wait(lambda: source.poll().cron_workflows["argo/nightly"].suspend, timeout=WAIT)

    kube.patch("cronworkflows", NS, "nightly", {"metadata": {"labels": {INSTANCE_LABEL: "x"}}})
    kube.wait(lambda: keys(source) == set(), timeout=WAIT)  # left the selection

    kube.put("cronworkflows", cron_workflow("hourly"))
    kube.delete("cronworkflows", NS, "hourly")
    kube.put("cronworkflows", cron_workflow("daily"))
    kube.wait(lambda: keys(source) == {"argo/daily"}, timeout=WAIT)


def test_source_reads_the_state_annotations_under_argos_rule(
    kube: EmulatorServer, sources: Callable[..., KubeSource]
) -> None:
    """An object in the cluster may come from Argo's controller: a missing
    ``last-used-schedule`` means "the schedule just changed" (reference §1.6), and the two
    state annotations seed the history rather than count as the CronWorkflow's annotations."""
    body = cron_workflow("nightly")
    body["metadata"]["annotations"] = {
        "team": "data",
        LAST_USED_SCHEDULE: EVERY_FIVE_ON_LEAP_DAY,
        LAST_DECIDED_TIME: "2028-02-29T09:10:00Z",
    }
    kube.put("cronworkflows", body)
    kube.put("cronworkflows", cron_workflow("hourly"))

    found = sources().poll().cron_workflows

    nightly, hourly = found["argo/nightly"], found["argo/hourly"]
    assert nightly.annotations == {"team": "data"}
    assert nightly.status.last_used_schedule == EVERY_FIVE_ON_LEAP_DAY
    assert nightly.status.last_decided_time == at(10)
    assert (hourly.status.last_used_schedule, hourly.status.last_decided_time) == (None, None)
    assert nightly.status.last_used_schedule_required
    assert hourly.status.last_used_schedule_required


def test_source_reports_an_invalid_object_as_a_problem_naming_it(
    kube: EmulatorServer, sources: Callable[..., KubeSource]
) -> None:
    """A malformed object (``schedules`` as a string) is the user's to fix; it never hides
    the valid CronWorkflows beside it."""
    broken = cron_workflow("broken")
    broken["spec"]["schedules"] = "0 2 * * *"
    kube.put("cronworkflows", broken)
    kube.put("cronworkflows", cron_workflow("nightly"))

    snapshot = sources().poll()

    assert set(snapshot.cron_workflows) == {"argo/nightly"}
    [problem] = snapshot.problems
    assert problem.file == "cronworkflow argo/broken"
    assert any("spec.schedules" in message for message in problem.messages)


def test_source_watch_survives_dropped_connections(
    kube: EmulatorServer, sources: Callable[..., KubeSource], caplog: pytest.LogCaptureFixture
) -> None:
    """A watch the server ends (a timeout, an API server restart) resumes from the last
    resourceVersion: later changes are seen, and no relist is needed."""
    caplog.set_level(logging.INFO, logger="scheduler.adapters.kube.client")
    source = sources()
    assert kube.drop_watches() >= 1

    kube.put("cronworkflows", cron_workflow("nightly"))
    kube.wait(lambda: keys(source) == {"argo/nightly"}, timeout=WAIT)
    assert "relisting" not in caplog.text


def test_source_relists_after_410_gone_and_loses_nothing(
    kube: EmulatorServer, sources: Callable[..., KubeSource], caplog: pytest.LogCaptureFixture
) -> None:
    """While the API server is unreachable, CronWorkflows are created and deleted and the
    history the watch would resume from is compacted: the reconnecting watch gets 410 Gone,
    relists, and ends with exactly the current objects (client-go's rule)."""
    caplog.set_level(logging.INFO, logger="scheduler.adapters.kube.client")
    kube.put("cronworkflows", cron_workflow("doomed"))
    kube.put("cronworkflows", cron_workflow("kept"))
    source = sources()
    assert keys(source) == {"argo/doomed", "argo/kept"}

    kube.outage(1.0)
    kube.delete("cronworkflows", NS, "doomed")
    kube.put("cronworkflows", cron_workflow("created-in-the-gap"))
    kube.compact()

    kube.wait(lambda: keys(source) == {"argo/kept", "argo/created-in-the-gap"}, timeout=WAIT)
    assert "watch expired (410 Gone): relisting" in caplog.text


def test_source_relists_when_the_watch_cache_expires(
    kube: EmulatorServer, sources: Callable[..., KubeSource]
) -> None:
    """An ERROR 410 event on an open watch (the watch cache was reset) also relists."""
    source = sources()
    kube.put("cronworkflows", cron_workflow("nightly"))
    kube.wait(lambda: keys(source) == {"argo/nightly"}, timeout=WAIT)
    kube.drop_watches(expired=True)
    kube.put("cronworkflows", cron_workflow("hourly"))
    kube.wait(lambda: keys(source) == {"argo/nightly", "argo/hourly"}, timeout=WAIT)


def test_source_retries_a_failing_list_with_backoff_then_syncs(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    kube.put("cronworkflows", cron_workflow("nightly"))
    fault = kube.fail("GET", "cronworkflows", status=500, times=2, verb="list")
    source = KubeSource(kube_client, NS, "")
    source.start()
    try:
        assert not source.synced
        assert source.wait_synced(WAIT)
        assert fault.hits == 2
        assert keys(source) == {"argo/nightly"}
    finally:
        source.stop()


# --------------------------------------------------------------------------------------------
# WorkflowWatcher: finished, running, deleted; history limits


@dataclass
class Reports:
    """What a :class:`WorkflowWatcher` reported, in order (callbacks come from its thread)."""

    finished: list[RunFinished] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    running: list[ObservedRun] = field(default_factory=list)
    _lock: Lock = field(default_factory=Lock)

    def on_finished(self, run: RunFinished) -> None:
        with self._lock:
            self.finished.append(run)

    def on_deleted(self, key: str, workflow: str) -> None:
        with self._lock:
            self.deleted.append((key, workflow))

    def on_running(self, run: ObservedRun) -> None:
        with self._lock:
            self.running.append(run)

    def finished_of(self, workflow: str) -> list[RunFinished]:
        with self._lock:
            return [run for run in self.finished if run.workflow == workflow]

    def running_of(self, workflow: str) -> list[ObservedRun]:
        with self._lock:
            return [run for run in self.running if run.workflow == workflow]

    def deleted_of(self, workflow: str) -> list[tuple[str, str]]:
        with self._lock:
            return [entry for entry in self.deleted if entry[1] == workflow]


WATCHER_NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def watched(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> Iterator[tuple[WorkflowWatcher, Reports]]:
    """A started watcher of Workflows without an instance id, and what it reports."""
    reports = Reports()
    watcher = WorkflowWatcher(
        kube_client,
        NS,
        "",
        reports.on_finished,
        reports.on_deleted,
        reports.on_running,
        lambda: WATCHER_NOW,
    )
    watcher.start()
    kube.wait(lambda: kube.watches("workflows") >= 1, timeout=WAIT)
    yield watcher, reports
    watcher.stop()


@pytest.fixture
def spec(kube: EmulatorServer) -> CronWorkflowSpec:
    kube.put("cronworkflows", cron_workflow("nightly"))
    return spec_of(kube, "nightly")


@pytest.mark.parametrize("phase", list(WorkflowPhase))
def test_watcher_reports_a_finished_run_once_with_its_instant_and_finish_time(
    kube: EmulatorServer,
    watched: tuple[WorkflowWatcher, Reports],
    spec: CronWorkflowSpec,
    phase: WorkflowPhase,
) -> None:
    """``scheduled_at`` comes from the ``scheduled-time`` annotation, ``finished_at`` from
    ``status.finishedAt``; one observation of the final phase is one report."""
    _, reports = watched
    name = put_workflow(kube, spec, at(5))
    finished_at = datetime(2028, 2, 29, 9, 6, 30, tzinfo=UTC)
    finish(kube, name, phase.value, message="main: exit code 0", finished_at=finished_at)

    [run] = kube.wait(lambda: reports.finished_of(name), timeout=WAIT)
    assert run == RunFinished("argo/nightly", name, at(5), phase, finished_at, "main: exit code 0")

    # A later event for another Workflow has been delivered: still one report for this one.
    other = put_workflow(kube, spec, at(10))
    kube.wait(lambda: reports.running_of(other), timeout=WAIT)
    assert len(reports.finished_of(name)) == 1


def test_watcher_reports_a_running_workflow_as_running(
    kube: EmulatorServer, watched: tuple[WorkflowWatcher, Reports], spec: CronWorkflowSpec
) -> None:
    """Created (no phase yet) and Running are both "running": what adoption needs."""
    _, reports = watched
    name = put_workflow(kube, spec, at(5))
    kube.wait(lambda: reports.running_of(name), timeout=WAIT)
    kube.set_phase(NS, name, "Running")
    kube.wait(lambda: len(reports.running_of(name)) == 2, timeout=WAIT)
    assert set(reports.running_of(name)) == {ObservedRun("argo/nightly", name, at(5))}
    assert reports.finished_of(name) == []


def test_watcher_reports_a_workflow_deleted_before_it_finished(
    kube: EmulatorServer, watched: tuple[WorkflowWatcher, Reports], spec: CronWorkflowSpec
) -> None:
    """A deleted unfinished run leaves ``active`` uncounted; a deleted finished one (history
    limits, TTL) is no news."""
    _, reports = watched
    running = put_workflow(kube, spec, at(5))
    done = put_workflow(kube, spec, at(10))
    finish(kube, done, "Succeeded")
    kube.wait(lambda: reports.finished_of(done), timeout=WAIT)

    kube.delete("workflows", NS, done)
    kube.delete("workflows", NS, running)

    kube.wait(lambda: reports.deleted_of(running), timeout=WAIT)
    assert reports.deleted == [("argo/nightly", running)]


def test_watcher_ignores_workflows_not_spawned_for_a_cronworkflow(
    kube: EmulatorServer, watched: tuple[WorkflowWatcher, Reports], spec: CronWorkflowSpec
) -> None:
    """Without the cron-workflow label a Workflow is not ours; nor is one of another Argo
    controller (another instance id)."""
    _, reports = watched
    unlabelled = render_workflow(spec, at(5), "")
    del unlabelled["metadata"]["labels"][CRON_LABEL]
    unlabelled["metadata"]["name"] = "by-hand"
    kube.put("workflows", unlabelled)
    kube.put("workflows", render_workflow(spec, at(10), "argo-other"))
    finish(kube, "by-hand", "Succeeded")
    finish(kube, workflow_name("nightly", at(10)), "Succeeded")

    ours = put_workflow(kube, spec, at(15))
    kube.wait(lambda: reports.running_of(ours), timeout=WAIT)
    assert {run.workflow for run in reports.running} == {ours}
    assert reports.finished == []


def test_history_limits_delete_the_oldest_finished_beyond_the_defaults(
    kube: EmulatorServer, watched: tuple[WorkflowWatcher, Reports], spec: CronWorkflowSpec
) -> None:
    """3 Succeeded and 1 Failed-or-Error are kept, newest ``finishedAt`` first (not the
    newest instant); running Workflows and other CronWorkflows' are never touched
    (reference §1.8)."""
    watcher, reports = watched
    finished_at = {  # instant (minutes) -> phase, finishedAt (minutes)
        0: ("Succeeded", 30),  # the oldest instant finished last: kept
        5: ("Succeeded", 6),
        10: ("Succeeded", 11),
        15: ("Succeeded", 16),
        20: ("Succeeded", 21),
        25: ("Failed", 26),
        35: ("Error", 36),
        40: ("Failed", 31),
    }
    for minutes, (phase, end) in finished_at.items():
        name = put_workflow(kube, spec, at(minutes))
        finish(kube, name, phase, finished_at=at(end))
    running = put_workflow(kube, spec, at(45))
    kube.set_phase(NS, running, "Running")
    kube.put("cronworkflows", cron_workflow("other"))
    foreign = put_workflow(kube, spec_of(kube, "other"), at(0))
    finish(kube, foreign, "Succeeded")
    kube.wait(lambda: len(reports.finished) == len(finished_at) + 1, timeout=WAIT)
    kube.wait(lambda: len(reports.running_of(running)) == 2, timeout=WAIT)

    deleted = watcher.enforce_history_limits({"argo/nightly": spec})

    assert deleted == 4
    kept = {workflow_name("nightly", at(m)) for m in (0, 20, 15, 35)} | {running}
    assert set(workflows_of(kube, "nightly")) == kept
    assert workflows_of(kube, "other") == [foreign]


def test_a_history_limit_of_zero_deletes_every_finished_workflow_of_that_class(
    kube: EmulatorServer, watched: tuple[WorkflowWatcher, Reports], spec: CronWorkflowSpec
) -> None:
    """``successfulJobsHistoryLimit: 0`` keeps no Succeeded run; Failed and Error share the
    failed limit (here 2)."""
    watcher, reports = watched
    limited = CronWorkflowSpec(
        name=spec.name,
        namespace=NS,
        uid=spec.uid,
        successful_jobs_history_limit=0,
        failed_jobs_history_limit=2,
    )
    for minutes, phase in ((0, "Succeeded"), (5, "Succeeded"), (10, "Failed"), (15, "Error")):
        finish(kube, put_workflow(kube, spec, at(minutes)), phase, finished_at=at(minutes + 1))
    running = put_workflow(kube, spec, at(20))
    kube.wait(lambda: len(reports.finished) == 4, timeout=WAIT)
    kube.wait(lambda: reports.running_of(running), timeout=WAIT)

    assert watcher.enforce_history_limits({"argo/nightly": limited}) == 2

    kept = {workflow_name("nightly", at(10)), workflow_name("nightly", at(15)), running}
    assert set(workflows_of(kube, "nightly")) == kept


# --------------------------------------------------------------------------------------------
# Stopping KubeSource and WorkflowWatcher


def watch_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("cronwf-watch-")}


@pytest.mark.parametrize("kind", ["source", "watcher"])
def test_stop_ends_the_watch_thread_even_with_its_watch_request_in_flight(
    kube: EmulatorServer, kube_client: client.ApiClient, spec: CronWorkflowSpec, kind: str
) -> None:
    """Stopped the moment its list is applied, while its watch request is on its way, an
    informer still ends its thread before ``stop()`` returns. It used to run on until its next
    event, talking to an API server that its owner went on to close (in these tests: a
    connection accepted while the emulator was stopping, whose socket leaked into, and
    failed, a later test)."""
    put_workflow(kube, spec, at(5))  # listed, the watcher reports it running: it has listed

    def listed_informer() -> KubeSource | WorkflowWatcher:
        if kind == "source":
            source = KubeSource(kube_client, NS, "")
            source.start()
            assert source.wait_synced(WAIT)
            return source
        listed = threading.Event()
        reports = Reports()
        watcher = WorkflowWatcher(
            kube_client,
            NS,
            "",
            reports.on_finished,
            reports.on_deleted,
            lambda run: listed.set(),
            lambda: WATCHER_NOW,
        )
        watcher.start()
        assert listed.wait(WAIT)
        return watcher

    before = watch_threads()
    for _ in range(20):
        listed_informer().stop()
        assert watch_threads() - before == set()


# --------------------------------------------------------------------------------------------
# KubeStatus: Argo's status fields, by merge patch; Events


def test_projection_has_argos_status_fields() -> None:
    """``active`` as ObjectReferences, ``lastScheduledTime`` in RFC 3339 UTC, conditions with
    ``status: "True"``, the counters and the phase (reference §1.13); and the two state
    annotations (reference §3.3, Argo's ``persistUpdate``: status and annotations in one
    merge patch)."""
    spec = CronWorkflowSpec(name="nightly", namespace=NS)
    paris = timezone(timedelta(hours=1))
    history = History(
        cursor=at(10),
        signature="CRON_TZ=Europe/Paris */5 * 29 2 *",
        last_scheduled_time=datetime(2028, 2, 29, 10, 5, tzinfo=paris),
        succeeded=4,
        failed=2,
        phase=Phase.ACTIVE,
        active=("nightly-1835427900",),
        conditions={"SubmissionError": "Failed to submit Workflow: forbidden"},
    )
    assert KubeStatus.projection(spec, history) == {
        "metadata": {
            "annotations": {
                LAST_USED_SCHEDULE: "CRON_TZ=Europe/Paris */5 * 29 2 *",
                LAST_DECIDED_TIME: "2028-02-29T09:10:00Z",
            }
        },
        "status": {
            "active": [
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Workflow",
                    "name": "nightly-1835427900",
                    "namespace": NS,
                }
            ],
            "lastScheduledTime": "2028-02-29T09:05:00Z",
            "conditions": [
                {
                    "type": "SubmissionError",
                    "status": "True",
                    "message": "Failed to submit Workflow: forbidden",
                }
            ],
            "succeeded": 4,
            "failed": 2,
            "phase": "Active",
        },
    }


def test_projection_writes_the_cursor_to_the_second_in_utc() -> None:
    """A cursor moved to "now" by a schedule change has a fraction of a second; every instant
    is on a whole second, so the truncated cursor covers the same instants."""
    spec = CronWorkflowSpec(name="nightly", namespace=NS)
    history = History(cursor=at(7, 12.75).astimezone(timezone(timedelta(hours=-8))))

    annotations = KubeStatus.projection(spec, history)["metadata"]["annotations"]

    assert annotations == {LAST_DECIDED_TIME: "2028-02-29T09:07:12Z"}


def test_projection_of_a_cronworkflow_with_a_spec_error_leaves_the_last_used_schedule() -> None:
    """Argo never runs an invalid CronWorkflow, so never writes its annotation; the cursor is
    still written."""
    spec = CronWorkflowSpec(name="nightly", namespace=NS)
    history = History(
        cursor=at(5),
        signature="*/5 * 29 2 *",
        conditions={"SpecError": "cron schedule * * is malformed: expected exactly 5 fields"},
    )

    annotations = KubeStatus.projection(spec, history)["metadata"]["annotations"]

    assert annotations == {LAST_DECIDED_TIME: "2028-02-29T09:05:00Z"}


def test_projection_sends_nulls_when_empty_so_the_merge_patch_clears_them() -> None:
    """Argo serializes an empty ``active``, no ``lastScheduledTime`` and no conditions as
    null; a merge patch then removes them."""
    spec = CronWorkflowSpec(name="nightly", namespace=NS)
    assert KubeStatus.projection(spec, History()) == {
        "status": {
            "active": None,
            "lastScheduledTime": None,
            "conditions": None,
            "succeeded": 0,
            "failed": 0,
            "phase": None,
        }
    }


def test_status_write_merge_patches_the_cronworkflow_and_leaves_the_rest_alone(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """Argo's CRD has no status subresource: the status is merge-patched onto the object.
    The nulls of an empty projection clear what a previous writer left (a stale ``active``);
    spec and labels are untouched; an unchanged projection is not sent again."""
    kube.put(
        "cronworkflows",
        cron_workflow(
            "nightly",
            labels={"team": "data"},
            spec={"concurrencyPolicy": "Forbid"},
            status={"active": [{"name": "nightly-1"}], "lastScheduledTime": "2028-02-29T08:55:00Z"},
        ),
    )
    before = kube.get("cronworkflows", NS, "nightly")
    assert before is not None
    spec = spec_of(kube, "nightly")
    status = KubeStatus(kube_client, lambda: T0)
    history = History(last_scheduled_time=at(5), succeeded=1, phase=Phase.ACTIVE)

    assert status.write(spec, history) is True

    after = kube.get("cronworkflows", NS, "nightly")
    assert after is not None
    assert after["status"] == {
        "lastScheduledTime": "2028-02-29T09:05:00Z",
        "succeeded": 1,
        "failed": 0,
        "phase": "Active",
    }
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == {"team": "data"}

    version = after["metadata"]["resourceVersion"]
    assert status.write(spec, history) is False  # unchanged: no request at all
    assert stored(kube, "cronworkflows", "nightly")["metadata"]["resourceVersion"] == version


def test_status_write_merges_the_state_annotations_into_the_objects_own(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """Annotations are merged (a merge patch of the map): a user's stay, a stale
    ``last-used-schedule`` is replaced by the schedule the history follows."""
    body = cron_workflow("nightly")
    body["metadata"]["annotations"] = {"team": "data", LAST_USED_SCHEDULE: "0 * * * *"}
    kube.put("cronworkflows", body)
    status = KubeStatus(kube_client, lambda: T0)
    history = History(cursor=at(5), signature=EVERY_FIVE_ON_LEAP_DAY)

    assert status.write(spec_of(kube, "nightly"), history) is True

    assert stored(kube, "cronworkflows", "nightly")["metadata"]["annotations"] == {
        "team": "data",
        LAST_USED_SCHEDULE: EVERY_FIVE_ON_LEAP_DAY,
        LAST_DECIDED_TIME: "2028-02-29T09:05:00Z",
    }


def test_status_write_of_a_stopped_cronworkflow_adds_the_completed_label(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """``cronworkflows.argoproj.io/completed: "true"`` joins the existing labels, in the same
    patch as the status."""
    kube.put("cronworkflows", cron_workflow("nightly", labels={"team": "data"}))
    status = KubeStatus(kube_client, lambda: T0)
    history = History(failed=1, phase=Phase.STOPPED, last_scheduled_time=at(5))

    assert status.write(spec_of(kube, "nightly"), history) is True

    stopped = stored(kube, "cronworkflows", "nightly")
    assert stopped["metadata"]["labels"] == {"team": "data", COMPLETED_LABEL: "true"}
    assert stopped["status"]["phase"] == "Stopped"


def test_status_write_of_a_deleted_cronworkflow_is_not_an_error(
    kube_client: client.ApiClient,
) -> None:
    """404: the CronWorkflow was deleted between the change and the write."""
    status = KubeStatus(kube_client, lambda: T0)
    assert status.write(CronWorkflowSpec(name="gone", namespace=NS), History()) is False


@pytest.mark.parametrize(("warning", "kind"), [(True, "Warning"), (False, "Normal")])
def test_event_records_a_core_event_on_the_cronworkflow(
    kube: EmulatorServer, kube_client: client.ApiClient, warning: bool, kind: str
) -> None:
    """A core/v1 Event whose involvedObject is the CronWorkflow (uid included), so that
    ``kubectl describe cronwf`` shows it."""
    kube.put("cronworkflows", cron_workflow("nightly"))
    spec = spec_of(kube, "nightly")
    KubeStatus(kube_client, lambda: T0).event(spec, "Stopped", "no more Workflows", warning)

    [event] = events_of(kube, "nightly")
    assert event["involvedObject"] == {
        "apiVersion": GROUP_VERSION,
        "kind": "CronWorkflow",
        "name": "nightly",
        "namespace": NS,
        "uid": spec.uid,
    }
    assert (event["reason"], event["message"], event["type"]) == (
        "Stopped",
        "no more Workflows",
        kind,
    )
    assert datetime.fromisoformat(event["lastTimestamp"]) == T0


def test_event_is_best_effort(kube: EmulatorServer, kube_client: client.ApiClient) -> None:
    """An Event the server refuses is logged, never raised: it must not fail a tick."""
    kube.fail("POST", "events", status=500)
    spec = CronWorkflowSpec(name="nightly", namespace=NS)
    KubeStatus(kube_client, lambda: T0).event(spec, "SpecError", "bad", True)
    assert events_of(kube, "nightly") == []


# --------------------------------------------------------------------------------------------
# KubeLease: client-go's election, judged by each replica's own clock

LEASE = "cronwf"


def replica(
    api: client.ApiClient,
    identity: str,
    clock: FakeClock,
    *,
    lease_duration: float = 15.0,
    renew_deadline: float = 10.0,
    retry_period: float = 2.0,
) -> KubeLease:
    """One replica's view of the Lease ``argo/cronwf``, with cronwf's default timings."""
    return KubeLease(
        api,
        NS,
        LEASE,
        identity,
        lease_duration=timedelta(seconds=lease_duration),
        renew_deadline=timedelta(seconds=renew_deadline),
        retry_period=timedelta(seconds=retry_period),
        clock=clock,
    )


def lease_spec(kube: EmulatorServer) -> dict[str, Any]:
    return dict(stored(kube, "leases", LEASE)["spec"])


def test_the_first_replica_creates_the_lease_and_gets_token_0(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """The token is the Lease's ``leaseTransitions``: 0 for the Lease's first holder."""
    a = replica(kube_client, "a", FakeClock(T0))
    assert a.try_acquire() == 0
    assert a.token == 0
    spec = lease_spec(kube)
    assert (spec["holderIdentity"], spec["leaseTransitions"], spec["leaseDurationSeconds"]) == (
        "a",
        0,
        15,
    )
    assert a.try_acquire() == 0  # the holder keeps its token


def test_a_second_replica_cannot_take_a_lease_that_is_renewed(
    kube_client: client.ApiClient,
) -> None:
    """Each renewal changes the record, and the waiting replica counts the lease duration
    from when *it* saw the last change."""
    a_clock, b_clock = FakeClock(T0), FakeClock(T0)
    a, b = replica(kube_client, "a", a_clock), replica(kube_client, "b", b_clock)
    assert a.try_acquire() == 0
    assert b.try_acquire() is None
    for _ in range(3):
        a_clock.advance(10)
        b_clock.advance(10)
        assert a.renew() is True
        assert b.try_acquire() is None


def test_a_replica_takes_over_once_the_lease_duration_passed_by_its_own_clock(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """The holder's clock is an hour behind, so by timestamps its lease looks long expired;
    the other replica still waits the full duration from its own first sight of the record
    (client-go's rule: immune to clock skew). The token (``leaseTransitions``) grows."""
    a = replica(kube_client, "a", FakeClock(T0 - timedelta(hours=1)))
    b_clock = FakeClock(T0)
    b = replica(kube_client, "b", b_clock)
    assert a.try_acquire() == 0

    assert b.try_acquire() is None  # first sight of the record
    b_clock.advance(14.9)
    assert b.try_acquire() is None
    b_clock.advance(0.1)
    assert b.try_acquire() == 1

    spec = lease_spec(kube)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert a.renew() is False  # lost: known at once, not after the renew deadline
    assert a.token is None


def test_renew_failures_keep_the_lead_within_the_renew_deadline_and_lose_it_beyond(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """An API server that answers 500 for a while: the leader keeps acting as long as its
    last successful renewal is at most ``renew_deadline`` (10 s) old, then steps down."""
    clock = FakeClock(T0)
    a = replica(kube_client, "a", clock)
    assert a.try_acquire() == 0
    kube.fail(resource="leases", status=500, times=None)

    clock.advance(5)
    assert a.renew() is True
    clock.advance(5)  # 10 s since the last successful renewal: the deadline itself
    assert a.renew() is True
    clock.advance(0.1)
    assert a.renew() is False
    assert a.token is None

    kube.clear_faults()
    assert a.renew() is False  # stays lost until acquired again


def test_release_lets_another_replica_acquire_at_once(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """On shutdown the leader empties ``holderIdentity``: a successor need not wait for the
    lease to expire."""
    a = replica(kube_client, "a", FakeClock(T0))
    b = replica(kube_client, "b", FakeClock(T0))
    assert a.try_acquire() == 0
    a.release()
    assert a.token is None
    assert lease_spec(kube)["holderIdentity"] in ("", None)

    assert b.try_acquire() == 1  # no waiting: nobody holds it


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "retry_period"),
    [(10, 10, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0)],
)
def test_invalid_lease_timings_are_refused_with_a_clear_message(
    kube_client: client.ApiClient, lease_duration: float, renew_deadline: float, retry_period: float
) -> None:
    """client-go's validation: a renew deadline not shorter than the lease would let two
    leaders overlap; a retry period not shorter than the deadline could never renew in time."""
    with pytest.raises(
        ValueError,
        match=r"lease duration > renew deadline > retry period > 0, got "
        rf"{lease_duration:g}s > {renew_deadline:g}s > {retry_period:g}s",
    ):
        replica(
            kube_client,
            "a",
            FakeClock(T0),
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )


def test_two_replicas_creating_the_lease_at_once_elect_one(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """Both saw no Lease; the rival's create lands first, ours answers 409 AlreadyExists."""
    a_clock = RivalFirstClock(T0)
    a, b = replica(kube_client, "a", a_clock), replica(kube_client, "b", FakeClock(T0))
    a_clock.arm(b.try_acquire)
    assert a.try_acquire() is None
    assert (a.token, b.token) == (None, 0)
    assert lease_spec(kube)["holderIdentity"] == "b"


def test_two_replicas_taking_a_free_lease_at_once_elect_one(
    kube: EmulatorServer, kube_client: client.ApiClient
) -> None:
    """Both read the released Lease at the same resourceVersion; the rival's replace lands
    first, ours answers 409 Conflict."""
    a_clock = RivalFirstClock(T0)
    a, b = replica(kube_client, "a", a_clock), replica(kube_client, "b", FakeClock(T0))
    holder = replica(kube_client, "old", FakeClock(T0))
    assert holder.try_acquire() == 0
    holder.release()

    a_clock.arm(b.try_acquire)
    assert a.try_acquire() is None
    assert (a.token, b.token) == (None, 1)
    assert lease_spec(kube)["holderIdentity"] == "b"


# --------------------------------------------------------------------------------------------
# Service in Kubernetes mode, wired as `cronwf serve --kubernetes --redis-url ...`

KEY = "argo/nightly"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def serve(
    kube: EmulatorServer, redis_client: redis.Redis, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[..., Service]]:
    """Start a Kubernetes-mode service (identity ``cronwf-0``) the way ``scheduler/cli``
    builds it: Lease + published Redis fence, Redis history (the session's ``redis-server``
    unless ``store`` is given; with ``without_redis``, the in-process store and no fence, as
    without ``--redis-url``), KubeSource (for CronWorkflows of ``instance_id``, default none),
    KubeSink, KubeStatus and a WorkflowWatcher; short intervals (reload 0.1 s, Lease
    3 s/2 s/0.2 s, GC 0.2 s)."""
    started: list[tuple[Service, client.ApiClient]] = []

    def start(
        identity: str = "cronwf-0",
        store: redis.Redis | None = None,
        *,
        without_redis: bool = False,
        instance_id: str = "",
    ) -> Service:
        api = kube.api_client()
        fence: PublishedFence | None = None
        if without_redis:
            history = RedisHistory.in_process()
        else:
            store_client = redis_client if store is None else store
            fence = PublishedFence(store_client, identity)
            history = RedisHistory(store_client, fence=fence)
        lease = KubeLease(
            api,
            NS,
            LEASE,
            identity,
            lease_duration=timedelta(seconds=3),
            renew_deadline=timedelta(seconds=2),
            retry_period=timedelta(seconds=0.2),
        )
        cluster = Cluster(
            source=KubeSource(api, NS, instance_id),
            sink=KubeSink(api, ""),
            status=KubeStatus(api, clock),
            watcher=lambda finished, deleted, running: WorkflowWatcher(
                api, NS, "", finished, deleted, running, clock
            ),
            sync_timeout=5.0,
            gc_interval=0.2,
        )
        config = ServiceConfig(
            manifests=(),
            state_dir=tmp_path / identity,
            host="127.0.0.1",
            port=0,
            reload_interval=0.1,
            renew_interval=0.2,
        )
        service = Service(
            config,
            history,
            FencedLease(lease, fence),
            clock=clock,
            cluster=cluster,
        )
        started.append((service, api))
        service.start()
        return service

    yield start
    for service, api in reversed(started):
        service.shutdown()
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def history(redis_client: redis.Redis) -> Callable[[str], History]:
    """The history in Redis, read without a fence (reads are never fenced)."""
    reader = RedisHistory(redis_client)

    def load(key: str) -> History:
        found = reader.load(key)
        assert found is not None, f"no history of {key} in Redis"
        return found

    return load


def leading(kube: EmulatorServer, service: Service, cron_workflows: int) -> None:
    """Wait until ``service`` leads and its catalog holds ``cron_workflows`` objects."""
    kube.wait(service.is_leader, timeout=WAIT)
    kube.wait(lambda: service.ready().detail["cronWorkflows"] == cron_workflows, timeout=WAIT)


def tick(service: Service, clock: FakeClock, instant: datetime, key: str = KEY) -> None:
    """The timer fires for ``instant``, one second late (well within ``late_after``)."""
    clock.set(instant + timedelta(seconds=1))
    service.on_due(key, [instant])


def status_shows(kube: EmulatorServer, name: str, **expected: Any) -> dict[str, Any]:
    """Wait until the CronWorkflow's status has the ``expected`` fields (None: absent)."""

    def matches() -> list[dict[str, Any]]:
        status = status_of(kube, name)
        ok = all(status.get(field_) == value for field_, value in expected.items())
        return [status] if ok else []

    try:
        [status] = kube.wait(matches, timeout=REACT)
        return status
    except TimeoutError:
        pytest.fail(f"status of {name} never showed {expected}; it is {status_of(kube, name)}")


def quiesce() -> None:
    """Let the service take in the status it has just written. Its catalog follows the watch
    one reload (0.1 s) behind, and a changed catalog entry re-syncs the history, which would
    mask what a test wants to see happen *without* any change. Not a wait for a schedule."""
    time.sleep(QUIET)


def active_ref(name: str) -> dict[str, str]:
    return {"apiVersion": GROUP_VERSION, "kind": "Workflow", "name": name, "namespace": NS}


def test_a_cronworkflow_created_in_the_cluster_is_picked_up_and_spawns_once_per_instant(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """The instant's Workflow is created once, however often the instant is due, and the
    status says so: ``active``, ``lastScheduledTime``, phase ``Active``."""
    service = serve()
    leading(kube, service, 0)
    kube.put("cronworkflows", cron_workflow("nightly"))
    leading(kube, service, 1)

    tick(service, clock, at(5))
    tick(service, clock, at(5))

    workflow = workflow_name("nightly", at(5))
    assert workflows_of(kube, "nightly") == [workflow]
    status_shows(
        kube,
        "nightly",
        active=[active_ref(workflow)],
        lastScheduledTime="2028-02-29T09:05:00Z",
        phase="Active",
        succeeded=0,
        failed=0,
    )


def test_a_succeeded_run_is_counted_in_redis_and_in_the_status(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    kube.put("cronworkflows", cron_workflow("nightly"))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    workflow = workflow_name("nightly", at(5))

    finish(kube, workflow, "Succeeded")

    status_shows(
        kube,
        "nightly",
        succeeded=1,
        failed=0,
        active=None,
        lastScheduledTime="2028-02-29T09:05:00Z",
        phase="Active",
    )
    recorded = history(KEY)
    assert (recorded.succeeded, recorded.failed, recorded.active) == (1, 0, ())
    assert recorded.consecutive_succeeded == 1


def test_a_stop_strategy_that_becomes_true_stops_the_cronworkflow(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """``cronworkflow.failed >= 1`` and a Failed run: phase ``Stopped``, the completed label
    (written with the status, not a tick later as in Argo) and a ``Stopped`` Event; later
    instants spawn nothing."""
    kube.put(
        "cronworkflows",
        cron_workflow("nightly", spec={"stopStrategy": {"expression": "cronworkflow.failed >= 1"}}),
    )
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    finish(kube, workflow_name("nightly", at(5)), "Failed")

    status_shows(kube, "nightly", phase="Stopped", failed=1, succeeded=0, active=None)
    kube.wait(
        lambda: (
            stored(kube, "cronworkflows", "nightly")["metadata"]["labels"].get(COMPLETED_LABEL)
            == "true"
        ),
        timeout=WAIT,
    )
    kube.wait(lambda: [e for e in events_of(kube, "nightly") if e["reason"] == "Stopped"])

    tick(service, clock, at(10))
    assert workflows_of(kube, "nightly") == [workflow_name("nightly", at(5))]


def test_a_spec_error_is_persisted_in_status_with_a_warning_event(
    kube: EmulatorServer, serve: Callable[..., Service]
) -> None:
    """Argo keeps a SpecError found on add or update in memory only, so an invalid
    CronWorkflow silently never runs (#14350, #14794); here it is a ``SpecError`` condition in
    status and a Warning Event."""
    service = serve()
    leading(kube, service, 0)
    kube.put("cronworkflows", cron_workflow("nightly", schedule="61 * * * *"))
    leading(kube, service, 1)

    kube.wait(lambda: status_of(kube, "nightly").get("conditions"), timeout=WAIT)
    status = status_of(kube, "nightly")
    [condition] = status["conditions"]
    assert condition["type"] == "SpecError"
    assert condition["status"] == "True"
    assert condition["message"].startswith("cron schedule 61 * * * * is malformed")
    assert (status.get("lastScheduledTime"), status.get("phase")) == (None, None)
    [event] = kube.wait(lambda: events_of(kube, "nightly"), timeout=WAIT)
    assert (event["type"], event["reason"]) == ("Warning", "SpecError")
    assert event["message"] == condition["message"]


def test_fixing_a_spec_error_clears_the_condition_in_status(
    kube: EmulatorServer, serve: Callable[..., Service], history: Callable[[str], History]
) -> None:
    """Argo removes ``SpecError`` whenever validation succeeds (reference §1.14); the status
    must not keep showing an error that is gone until the next tick, which may be a day
    away."""
    service = serve()
    leading(kube, service, 0)
    kube.put("cronworkflows", cron_workflow("nightly", schedule="61 * * * *"))
    kube.wait(lambda: status_of(kube, "nightly").get("conditions"), timeout=WAIT)

    kube.patch("cronworkflows", NS, "nightly", {"spec": {"schedules": [EVERY_FIVE_ON_LEAP_DAY]}})

    kube.wait(lambda: "SpecError" not in history(KEY).conditions, timeout=REACT)
    status_shows(kube, "nightly", conditions=None)


def test_a_running_workflow_unknown_to_the_history_is_adopted_and_counted(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """A Workflow created for an instant that the history never recorded (a crash between
    create and record) is adopted as the run of its instant: never spawned again, counted
    when it finishes."""
    kube.put("cronworkflows", cron_workflow("nightly"))
    service = serve()
    leading(kube, service, 1)
    workflow = put_workflow(kube, spec_of(kube, "nightly"), at(5))

    kube.wait(lambda: history(KEY).active == (workflow,), timeout=WAIT)
    tick(service, clock, at(5))
    assert workflows_of(kube, "nightly") == [workflow]

    finish(kube, workflow, "Succeeded")
    status_shows(kube, "nightly", succeeded=1, active=None)
    assert history(KEY).succeeded == 1


def test_an_adopted_workflow_is_shown_in_status_active(
    kube: EmulatorServer, serve: Callable[..., Service], history: Callable[[str], History]
) -> None:
    """Adoption is a change of the history, so the status projection shows it (Argo's
    ``reconcileActiveWfs`` appends such runs to ``status.active``, reference §3.4)."""
    kube.put("cronworkflows", cron_workflow("nightly"))
    service = serve()
    leading(kube, service, 1)
    status_shows(kube, "nightly", succeeded=0, failed=0)  # the projection after the election
    quiesce()
    workflow = put_workflow(kube, spec_of(kube, "nightly"), at(5))
    kube.wait(lambda: history(KEY).active == (workflow,), timeout=WAIT)

    status_shows(kube, "nightly", active=[active_ref(workflow)])


def test_a_workflow_deleted_while_running_leaves_active_uncounted(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """Argo #2297: a deleted run must not stay in ``active`` (it would block ``Forbid``
    forever); it is not counted either way (reference §3.4)."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"concurrencyPolicy": "Forbid"}))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    workflow = workflow_name("nightly", at(5))
    kube.set_phase(NS, workflow, "Running")
    status_shows(kube, "nightly", active=[active_ref(workflow)])

    kube.delete("workflows", NS, workflow)

    kube.wait(lambda: history(KEY).active == (), timeout=REACT)
    recorded = history(KEY)
    assert (recorded.succeeded, recorded.failed) == (0, 0)
    status_shows(kube, "nightly", active=None, succeeded=0, failed=0)


def test_a_standby_that_takes_over_counts_a_run_that_finished_while_nobody_led(
    kube: EmulatorServer,
    kube_client: client.ApiClient,
    serve: Callable[..., Service],
    clock: FakeClock,
) -> None:
    """The leader died with a run active; the run finished before a standby was elected.
    The new leader must count it and clear ``active`` (Argo's sync loop reconciles
    ``status.active`` with the Workflows it sees every 10 s, reference §3.4); otherwise the
    run stays active forever and a ``Forbid`` CronWorkflow never runs again (#2297)."""
    workflow = workflow_name("nightly", at(0))
    kube.put(
        "cronworkflows",
        cron_workflow(
            "nightly",
            spec={"concurrencyPolicy": "Forbid"},
            status={
                "active": [active_ref(workflow)],
                "lastScheduledTime": rfc3339(at(0)),
                "phase": "Active",
                "succeeded": 0,
                "failed": 0,
            },
        ),
    )
    put_workflow(kube, spec_of(kube, "nightly"), at(0))
    finish(kube, workflow, "Succeeded")
    dead_leader = replica(kube_client, "dead-leader", FakeClock(T0), lease_duration=60)
    assert dead_leader.try_acquire() == 0
    clock.set(at(2))

    service = serve()
    kube.wait(lambda: kube.watches("workflows") >= 1, timeout=WAIT)  # the standby has listed
    assert not service.is_leader()
    dead_leader.release()  # stands in for the lease expiring
    kube.wait(service.is_leader, timeout=WAIT)

    status_shows(kube, "nightly", succeeded=1, active=None)
    tick(service, clock, at(5))
    assert workflow_name("nightly", at(5)) in workflows_of(kube, "nightly")


def test_a_standby_that_takes_over_adopts_a_run_the_dead_leader_never_recorded(
    kube: EmulatorServer,
    kube_client: client.ApiClient,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """The crash between create and record, seen by the replica that takes over: the
    Workflow is already running when it is elected. It is adopted and counted when it
    finishes."""
    kube.put(
        "cronworkflows",
        cron_workflow("nightly", status={"lastScheduledTime": rfc3339(at(0)), "phase": "Active"}),
    )
    workflow = put_workflow(kube, spec_of(kube, "nightly"), at(5))
    kube.set_phase(NS, workflow, "Running")
    dead_leader = replica(kube_client, "dead-leader", FakeClock(T0), lease_duration=60)
    assert dead_leader.try_acquire() == 0
    clock.set(at(5, 30))

    service = serve()
    kube.wait(lambda: kube.watches("workflows") >= 1, timeout=WAIT)
    dead_leader.release()
    kube.wait(service.is_leader, timeout=WAIT)

    def adopted() -> bool:
        try:
            return workflow in history(KEY).active
        except AssertionError:  # elected, but the new leader has not synced yet
            return False

    try:
        kube.wait(adopted, timeout=REACT)
    except TimeoutError:
        pytest.fail(f"{workflow} was never adopted: the history is {history(KEY)}")
    finish(kube, workflow, "Succeeded")
    status_shows(kube, "nightly", succeeded=1, active=None)


def test_after_redis_is_wiped_an_instant_already_run_is_not_run_again(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    redis_client: redis.Redis,
) -> None:
    """The status is the durable copy: with the history gone, the cursor is re-seeded from
    ``status.lastScheduledTime`` (DESIGN §5, §9). The instant's Workflow is gone too
    (``successfulJobsHistoryLimit: 0``), so only the cursor prevents a re-run."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"successfulJobsHistoryLimit": 0}))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    finish(kube, workflow_name("nightly", at(5)), "Succeeded")
    status_shows(kube, "nightly", succeeded=1, lastScheduledTime=rfc3339(at(5)))
    kube.wait(lambda: workflows_of(kube, "nightly") == [], timeout=WAIT)  # history limit
    quiesce()

    redis_client.flushall()
    tick(service, clock, at(5))

    assert workflows_of(kube, "nightly") == []


def test_after_redis_is_wiped_the_next_instant_runs_and_counting_resumes_from_status(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    redis_client: redis.Redis,
    history: Callable[[str], History],
) -> None:
    """Redis emptied (FLUSHALL) while the service leads: the counters are re-seeded from
    status, and the next instant still spawns its Workflow (within its starting deadline)."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"startingDeadlineSeconds": 300}))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    finish(kube, workflow_name("nightly", at(5)), "Succeeded")
    status_shows(kube, "nightly", succeeded=1, lastScheduledTime=rfc3339(at(5)))
    quiesce()

    redis_client.flushall()
    tick(service, clock, at(10))

    following = workflow_name("nightly", at(10))
    try:
        kube.wait(lambda: following in workflows_of(kube, "nightly"), timeout=REACT)
    except TimeoutError:
        pytest.fail(f"no Workflow for the first instant after the wipe: {redis_client.keys('*')}")
    finish(kube, following, "Succeeded")
    status_shows(kube, "nightly", succeeded=2, active=None, lastScheduledTime=rfc3339(at(10)))
    assert history(KEY).succeeded == 2


def test_after_redis_restarts_empty_the_next_instant_runs_and_counting_resumes_from_status(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    persistent_redis: RedisServer,
) -> None:
    """The same with a Redis that restarts without its data (no persistence, a new pod),
    through the production client of :func:`scheduler.adapters.redis.history.connect`, which
    reconnects on the next call."""
    store = connect(persistent_redis.url)
    kube.put("cronworkflows", cron_workflow("nightly", spec={"startingDeadlineSeconds": 300}))
    service = serve(store=store)
    leading(kube, service, 1)
    tick(service, clock, at(5))
    finish(kube, workflow_name("nightly", at(5)), "Succeeded")
    status_shows(kube, "nightly", succeeded=1, lastScheduledTime=rfc3339(at(5)))
    quiesce()

    persistent_redis.stop()
    persistent_redis.wipe()
    persistent_redis.start()
    tick(service, clock, at(10))

    following = workflow_name("nightly", at(10))
    try:
        kube.wait(lambda: following in workflows_of(kube, "nightly"), timeout=REACT)
    except TimeoutError:
        pytest.fail(f"no Workflow for the first instant after the restart: {store.keys('*')}")
    finish(kube, following, "Succeeded")
    status_shows(kube, "nightly", succeeded=2, active=None, lastScheduledTime=rfc3339(at(10)))


def test_watch_failures_lose_no_completion_and_count_none_twice(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API server is unreachable while a run finishes and a CronWorkflow is created, and
    the watch history is compacted meanwhile: after the relist the run is counted and the new
    CronWorkflow scheduled. Another expired watch re-reports the finished run: still counted
    once."""
    caplog.set_level(logging.INFO, logger="scheduler.adapters.kube.client")
    kube.put("cronworkflows", cron_workflow("nightly"))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    workflow = workflow_name("nightly", at(5))
    kube.set_phase(NS, workflow, "Running")

    kube.outage(1.0)
    kube.set_phase(NS, workflow, "Succeeded")
    kube.put("cronworkflows", cron_workflow("hourly"))
    kube.compact()

    status_shows(kube, "nightly", succeeded=1, active=None)
    leading(kube, service, 2)
    assert "workflows watch expired (410 Gone): relisting" in caplog.text

    relists = caplog.text.count("workflows watch expired")
    kube.drop_watches(expired=True)
    kube.wait(lambda: caplog.text.count("workflows watch expired") > relists, timeout=WAIT)
    kube.wait(lambda: kube.watches("workflows") >= 1, timeout=WAIT)
    assert history(KEY).succeeded == 1
    tick(service, clock, at(10), key="argo/hourly")
    assert workflows_of(kube, "hourly") == [workflow_name("hourly", at(10))]
    assert workflows_of(kube, "nightly") == [workflow]


def test_a_spawn_refused_by_an_api_outage_is_caught_up_once(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """A 500 on create leaves the instant undecided; once the API answers, catch-up decides
    it (within ``startingDeadlineSeconds``): one Workflow for the instant, counted once."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"startingDeadlineSeconds": 300}))
    service = serve()
    leading(kube, service, 1)
    fault = kube.fail("POST", "workflows", status=500)

    tick(service, clock, at(5))

    assert fault.hits == 1
    workflow = workflow_name("nightly", at(5))
    kube.wait(lambda: workflows_of(kube, "nightly") == [workflow], timeout=WAIT)
    finish(kube, workflow, "Succeeded")
    status_shows(kube, "nightly", succeeded=1, active=None, lastScheduledTime=rfc3339(at(5)))
    assert history(KEY).succeeded == 1


def test_a_spawn_refused_for_longer_than_one_recovery_attempt_is_still_caught_up(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """The API keeps answering 500 through the first catch-up attempts: the service keeps
    retrying with backoff (lose nothing) until the Workflow is created, once."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"startingDeadlineSeconds": 300}))
    service = serve()
    leading(kube, service, 1)
    fault = kube.fail("POST", "workflows", status=500, times=3)

    tick(service, clock, at(5))

    workflow = workflow_name("nightly", at(5))
    kube.wait(lambda: workflows_of(kube, "nightly") == [workflow], timeout=REACT)
    assert fault.hits == 3
    # The recovery that created it finishes (reconciling) before it reports the store reachable.
    kube.wait(lambda: service.ready().store_reachable, timeout=REACT)


def test_a_create_whose_reply_was_lost_is_recorded_once(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """The create answered 500 although the Workflow was stored (a lost reply): the catch-up
    create answers AlreadyExists, which is success, and the run is recorded and counted once."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"startingDeadlineSeconds": 300}))
    service = serve()
    leading(kube, service, 1)
    kube.fail("POST", "workflows", status=500)

    tick(service, clock, at(5))
    workflow = put_workflow(kube, spec_of(kube, "nightly"), at(5))

    kube.wait(lambda: history(KEY).active == (workflow,), timeout=WAIT)
    finish(kube, workflow, "Succeeded")
    status_shows(kube, "nightly", succeeded=1, active=None, lastScheduledTime=rfc3339(at(5)))
    assert workflows_of(kube, "nightly") == [workflow]
    assert history(KEY).succeeded == 1


# --------------------------------------------------------------------------------------------
# Hand-over with Argo's controller: the last-used-schedule annotation (DESIGN §5; reference
# §1.6, §3.3). Argo's side is played by the functions below, written from Argo's Go source.

PARIS = "Europe/Paris"
ARGOS_STRING = f"CRON_TZ={PARIS} {EVERY_FIVE_ON_LEAP_DAY}"


def argos_schedule_string(obj: Mapping[str, Any]) -> str:
    """Argo's ``GetScheduleWithTimezoneString()`` of a stored CronWorkflow."""
    spec = obj["spec"]
    prefix = f"CRON_TZ={spec['timezone']} " if spec.get("timezone") else ""
    return ",".join(prefix + schedule for schedule in spec.get("schedules") or ())


def argo_sees_a_new_schedule(obj: Mapping[str, Any]) -> bool:
    """Argo's ``IsUsingNewSchedule()``: when true, its controller runs nothing outstanding."""
    annotations = obj["metadata"].get("annotations") or {}
    return annotations.get(LAST_USED_SCHEDULE) != argos_schedule_string(obj)


def left_by_argo(
    name: str,
    *,
    last_used_schedule: str | None,
    last_scheduled: datetime,
    labels: Mapping[str, str] | None = None,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A CronWorkflow in Paris as Argo's controller leaves it: its status and, unless None,
    its ``last-used-schedule`` annotation."""
    body = cron_workflow(
        name,
        labels=labels,
        spec={"timezone": PARIS, **(spec or {})},
        status={
            "lastScheduledTime": rfc3339(last_scheduled),
            "succeeded": 1,
            "failed": 0,
            "phase": "Active",
            **(status or {}),
        },
    )
    if last_used_schedule is not None:
        body["metadata"]["annotations"] = {LAST_USED_SCHEDULE: last_used_schedule}
    return body


def annotations_of(kube: EmulatorServer, name: str) -> dict[str, str]:
    return dict(stored(kube, "cronworkflows", name)["metadata"].get("annotations") or {})


def annotations_show(kube: EmulatorServer, name: str, **expected: str) -> dict[str, str]:
    """Wait until the CronWorkflow's annotations have the ``expected`` values (keyword
    ``last_used_schedule`` and ``last_decided_time``)."""
    keys = {"last_used_schedule": LAST_USED_SCHEDULE, "last_decided_time": LAST_DECIDED_TIME}
    wanted = {keys[field_]: value for field_, value in expected.items()}

    def matches() -> list[dict[str, str]]:
        annotations = annotations_of(kube, name)
        return [annotations] if all(annotations.get(k) == v for k, v in wanted.items()) else []

    try:
        [annotations] = kube.wait(matches, timeout=REACT)
        return annotations
    except TimeoutError:
        pytest.fail(
            f"{name} never showed {wanted}; its annotations are {annotations_of(kube, name)}"
        )


MISSED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def missed_events(kube: EmulatorServer, name: str) -> list[datetime]:
    """The instants named by the ``MissedSchedule`` Events of ``name``, one per instant named
    (an Event for a long gap names its first and last)."""
    return sorted(
        datetime.fromisoformat(moment)
        for event in events_of(kube, name)
        if event["reason"] == "MissedSchedule"
        for moment in MISSED_AT.findall(event["message"])
    )


def test_taken_over_from_argo_with_its_schedule_unchanged_the_missed_instant_is_caught_up_once(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """Argo's annotation names the current schedule (``IsUsingNewSchedule()`` false): the
    instants since ``lastScheduledTime`` are outstanding, and the catch-up rule runs the latest
    inside ``startingDeadlineSeconds``, once, where Argo would have run it (reference §1.6)."""
    kube.put(
        "cronworkflows",
        left_by_argo(
            "nightly",
            last_used_schedule=ARGOS_STRING,
            last_scheduled=at(0),
            spec={"startingDeadlineSeconds": 300},
        ),
    )
    assert not argo_sees_a_new_schedule(stored(kube, "cronworkflows", "nightly"))
    clock.set(at(12))  # at(5) and at(10) passed; at(10) is inside the deadline

    service = serve()
    leading(kube, service, 1)

    caught_up = workflow_name("nightly", at(10))
    kube.wait(lambda: workflows_of(kube, "nightly") == [caught_up], timeout=REACT)
    annotations_show(kube, "nightly", last_decided_time=rfc3339(at(10)))
    quiesce()  # the status write is seen, synced again: nothing more runs
    assert workflows_of(kube, "nightly") == [caught_up]
    assert missed_events(kube, "nightly") == [at(5)]  # superseded by at(10)
    assert history(KEY).cursor == at(10)
    assert history(KEY).succeeded == 1  # from the status Argo left

    tick(service, clock, at(15))
    assert sorted(workflows_of(kube, "nightly")) == [caught_up, workflow_name("nightly", at(15))]


@pytest.mark.parametrize(
    "last_used_schedule",
    [None, "CRON_TZ=Europe/Paris 0 * * * *", EVERY_FIVE_ON_LEAP_DAY],
    ids=["missing", "another schedule", "without the time zone"],
)
def test_taken_over_from_argo_with_a_changed_schedule_nothing_outstanding_runs(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
    last_used_schedule: str | None,
) -> None:
    """Argo's ``IsUsingNewSchedule()`` is true (the annotation is missing, or is not the
    current schedule string byte for byte): Argo would run nothing outstanding, so neither
    does cronwf (argo-workflows#7182). The cursor starts at now, nothing is recorded missed,
    and the annotation is set to the current string, so Argo would now agree."""
    kube.put(
        "cronworkflows",
        left_by_argo(
            "nightly",
            last_used_schedule=last_used_schedule,
            last_scheduled=at(0),
            spec={"startingDeadlineSeconds": 300},
        ),
    )
    assert argo_sees_a_new_schedule(stored(kube, "cronworkflows", "nightly"))
    clock.set(at(12))

    service = serve()
    leading(kube, service, 1)

    annotations_show(
        kube, "nightly", last_used_schedule=ARGOS_STRING, last_decided_time=rfc3339(at(12))
    )
    quiesce()
    assert workflows_of(kube, "nightly") == []
    assert missed_events(kube, "nightly") == []
    assert history(KEY).cursor == at(12)
    assert history(KEY).last_scheduled_time == at(0)  # still what Argo spawned last
    assert not argo_sees_a_new_schedule(stored(kube, "cronworkflows", "nightly"))

    tick(service, clock, at(15))
    assert workflows_of(kube, "nightly") == [workflow_name("nightly", at(15))]


def test_after_cronwf_ticks_argo_would_see_its_schedule_unchanged_and_the_cursor_is_kept(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """cronwf writes ``last-used-schedule`` as Argo does, in the status patch: Argo, handed
    the CronWorkflow back, sees the schedule unchanged and catches up from
    ``lastScheduledTime``. Beside it the cursor, which skips move too (``lastScheduledTime``
    stays at the last spawn)."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"timezone": PARIS}))
    service = serve()
    leading(kube, service, 1)

    tick(service, clock, at(5))
    status_shows(kube, "nightly", lastScheduledTime=rfc3339(at(5)))
    annotations_show(
        kube, "nightly", last_used_schedule=ARGOS_STRING, last_decided_time=rfc3339(at(5))
    )
    assert not argo_sees_a_new_schedule(stored(kube, "cronworkflows", "nightly"))

    kube.patch("cronworkflows", NS, "nightly", {"spec": {"suspend": True}})
    kube.wait(lambda: [g.state for g in service.gauges()] == ["suspended"], timeout=WAIT)
    tick(service, clock, at(10))
    annotations_show(kube, "nightly", last_decided_time=rfc3339(at(10)))
    assert status_of(kube, "nightly")["lastScheduledTime"] == rfc3339(at(5))


def test_a_schedule_change_moves_the_cursor_to_now_and_the_annotation_follows(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """DESIGN §5: instants of the new schedule before the change are never caught up; the
    annotation names the new schedule, so Argo would not catch them up either."""
    kube.put("cronworkflows", cron_workflow("nightly", spec={"timezone": PARIS}))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    annotations_show(kube, "nightly", last_used_schedule=ARGOS_STRING)

    clock.set(at(7, 30))
    changed = ["*/10 * 29 2 *", "3 * 29 2 *"]
    kube.patch("cronworkflows", NS, "nightly", {"spec": {"schedules": changed}})

    new_string = f"CRON_TZ={PARIS} */10 * 29 2 *,CRON_TZ={PARIS} 3 * 29 2 *"
    annotations_show(
        kube, "nightly", last_used_schedule=new_string, last_decided_time=rfc3339(at(7, 30))
    )
    assert not argo_sees_a_new_schedule(stored(kube, "cronworkflows", "nightly"))


def test_a_spec_error_leaves_argos_annotation_as_it_is(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """Argo never runs an invalid CronWorkflow, so it never writes the annotation of one."""
    kube.put(
        "cronworkflows",
        left_by_argo("nightly", last_used_schedule=ARGOS_STRING, last_scheduled=at(0)),
    )
    service = serve()
    leading(kube, service, 1)
    annotations_show(kube, "nightly", last_decided_time=rfc3339(T0))

    kube.patch("cronworkflows", NS, "nightly", {"spec": {"schedules": ["61 * * * *"]}})
    kube.wait(lambda: service.ready().detail["invalid"] == 1, timeout=WAIT)
    kube.wait(lambda: status_of(kube, "nightly").get("conditions"), timeout=REACT)
    quiesce()

    assert annotations_of(kube, "nightly")[LAST_USED_SCHEDULE] == ARGOS_STRING


def kubectl(kube: EmulatorServer, directory: Path, *arguments: str) -> str:
    """Run ``kubectl`` against the emulator, as an operator would; its output."""
    config = kube.kubeconfig(directory / "kubeconfig", namespace=NS)
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(config), *arguments],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(arguments)}: {done.stderr}"
    return done.stdout


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
def test_moving_a_cronworkflow_from_argo_to_cronwf_and_back_neither_runs_nor_drops_an_instant(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    """The README's two ``kubectl label`` commands. Argo → cronwf: the instant missed during
    the switch runs once (inside ``startingDeadlineSeconds``); cronwf → Argo: the object
    carries what Argo's catch-up reads, unchanged schedule and the last spawn, so Argo would
    run the instant due while it was being handed back, and cronwf no longer acts."""
    kube.put(
        "cronworkflows",
        left_by_argo(
            "nightly",
            last_used_schedule=ARGOS_STRING,
            last_scheduled=at(0),
            spec={"startingDeadlineSeconds": 300},
        ),
    )
    clock.set(at(7))
    service = serve(instance_id="cronwf")
    leading(kube, service, 0)

    kubectl(kube, tmp_path, "label", "cwf", "nightly", f"{INSTANCE_LABEL}=cronwf")
    switched = workflow_name("nightly", at(5))
    kube.wait(lambda: workflows_of(kube, "nightly") == [switched], timeout=REACT)
    tick(service, clock, at(10))
    status_shows(kube, "nightly", lastScheduledTime=rfc3339(at(10)))
    annotations_show(kube, "nightly", last_decided_time=rfc3339(at(10)))

    kubectl(kube, tmp_path, "label", "cwf", "nightly", f"{INSTANCE_LABEL}-")
    leading(kube, service, 0)
    tick(service, clock, at(15))

    handed_back = stored(kube, "cronworkflows", "nightly")
    assert not argo_sees_a_new_schedule(handed_back)
    assert handed_back["status"]["lastScheduledTime"] == rfc3339(at(10))
    assert sorted(workflows_of(kube, "nightly")) == [
        workflow_name("nightly", at(5)),
        workflow_name("nightly", at(10)),
    ]


# --------------------------------------------------------------------------------------------
# Without Redis: the cursor survives a restart on the object (DESIGN §4, §9)


def decided(service: Service, key: str) -> dict[datetime, str]:
    """The instants ``service``'s own store recorded for ``key``, with their decisions."""
    store = service.store
    assert isinstance(store, RedisHistory)
    return {run.scheduled_at: run.decision for run in store.recent_runs(key)}


@pytest.mark.parametrize(
    "restarted_at", [at(16), at(21)], ids=["no instant in the gap", "an instant in the gap"]
)
def test_a_restart_without_redis_decides_no_instant_twice(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    restarted_at: datetime,
) -> None:
    """The history lives in the process and is re-seeded from the object after a restart.
    ``lastScheduledTime`` only moves on spawns; seeded from it alone, the instants a stopped
    or suspended CronWorkflow skipped since were decided again, as missed, with a
    ``MissedSchedule`` Event each (39 for one 8 s restart). The cursor annotation keeps them
    decided. The instants inside the gap are decided once, by the new process (how, for a
    suspended or stopped CronWorkflow, is not this test's concern)."""
    unchanged = ARGOS_STRING  # the objects come from Argo, schedules unchanged
    kube.put(
        "cronworkflows", left_by_argo("active", last_used_schedule=unchanged, last_scheduled=at(0))
    )
    kube.put(
        "cronworkflows",
        left_by_argo(
            "stopped",
            last_used_schedule=unchanged,
            last_scheduled=at(0),
            labels={COMPLETED_LABEL: "true"},
            status={"phase": "Stopped"},
        ),
    )
    kube.put(
        "cronworkflows",
        left_by_argo(
            "suspended",
            last_used_schedule=unchanged,
            last_scheduled=at(0),
            spec={"suspend": True},
        ),
    )
    names = ("active", "stopped", "suspended")
    clock.set(at(1))
    first = serve(without_redis=True)
    leading(kube, first, 3)
    before = (at(5), at(10), at(15))
    for instant in before:
        for name in names:
            tick(first, clock, instant, key=f"{NS}/{name}")
    for name in names:
        annotations_show(kube, name, last_decided_time=rfc3339(at(15)))
    quiesce()
    assert {name: decided(first, f"{NS}/{name}") for name in names} == {
        "active": dict.fromkeys(before, "Spawned"),
        "stopped": dict.fromkeys(before, "Skipped"),
        "suspended": dict.fromkeys(before, "Skipped"),
    }
    first.shutdown()

    clock.set(restarted_at)
    second = serve(without_redis=True)
    leading(kube, second, 3)
    gap = [at(20)] if restarted_at > at(20) else []
    for name in names:  # the catch-up after the restart is done
        annotations_show(kube, name, last_decided_time=rfc3339(max([at(15), *gap])))
    after = at(25)
    for instant in [at(20), after] if not gap else [after]:
        for name in names:
            tick(second, clock, instant, key=f"{NS}/{name}")
    for name in names:
        annotations_show(kube, name, last_decided_time=rfc3339(after))
    quiesce()

    for name in names:
        again = decided(second, f"{NS}/{name}")
        assert sorted(again) == [at(20), after], f"{name} decided again: {again}"
        missed = missed_events(kube, name)
        assert [moment for moment in missed if moment <= at(15)] == [], name
        assert len(missed) == len(set(missed)) <= len(gap), f"{name}: {missed}"
    for name in ("stopped", "suspended"):  # catch-up follows the tick order: skipped
        assert set(decided(second, f"{NS}/{name}").values()) == {"Skipped"}, name
        assert missed_events(kube, name) == [], name
    spawned_again = [after] if gap else [at(20), after]  # without a deadline at(20) is missed
    assert sorted(workflows_of(kube, "active")) == [
        workflow_name("active", instant) for instant in (*before, *spawned_again)
    ]
    assert status_of(kube, "active")["lastScheduledTime"] == rfc3339(after)


def test_a_leader_stopped_with_sigterm_writes_its_last_decisions_to_the_objects(
    kube: EmulatorServer, serve: Callable[..., Service], clock: FakeClock
) -> None:
    """Without Redis the objects are the only memory: decisions made just before a shutdown
    must reach them before the lead goes, or the next process decides those instants again."""
    kube.put(
        "cronworkflows",
        left_by_argo("active", last_used_schedule=ARGOS_STRING, last_scheduled=at(0)),
    )
    clock.set(at(1))
    first = serve(without_redis=True)
    leading(kube, first, 1)
    first._stop.set()  # the housekeeping loop writes nothing more from here on
    tick(first, clock, at(5), key=f"{NS}/active")

    first.shutdown()

    assert annotations_of(kube, "active")[LAST_DECIDED_TIME] == rfc3339(at(5))
    assert status_of(kube, "active")["lastScheduledTime"] == rfc3339(at(5))


def test_a_redis_history_stays_the_source_of_truth_whatever_the_annotations_say(
    kube: EmulatorServer,
    serve: Callable[..., Service],
    clock: FakeClock,
    history: Callable[[str], History],
) -> None:
    """The annotations only seed a history the store does not have: with one in Redis, a
    cursor annotation moved ahead (by hand, or a stale copy) decides nothing."""
    kube.put("cronworkflows", cron_workflow("nightly"))
    service = serve()
    leading(kube, service, 1)
    tick(service, clock, at(5))
    annotations_show(kube, "nightly", last_decided_time=rfc3339(at(5)))

    ahead = {LAST_DECIDED_TIME: rfc3339(at(20)), LAST_USED_SCHEDULE: "0 0 1 1 *"}
    kube.patch("cronworkflows", NS, "nightly", {"metadata": {"annotations": ahead}})
    quiesce()
    tick(service, clock, at(10))

    assert workflow_name("nightly", at(10)) in workflows_of(kube, "nightly")
    assert history(KEY).cursor == at(10)


def test_source_warns_once_about_unknown_fields_and_keeps_the_cron_workflow(
    kube: EmulatorServer, sources: Callable[..., KubeSource], caplog: pytest.LogCaptureFixture
) -> None:
    """Argo's controller ignores fields it does not know: so does the source, with a warning
    when they first appear or change, not at every poll."""
    source = sources()
    typo = cron_workflow("nightly")
    typo["spec"]["concurrencypolicy"] = "Forbid"
    kube.put("cronworkflows", typo)
    with caplog.at_level(logging.WARNING, logger="scheduler.adapters.kube.source"):
        kube.wait(lambda: keys(source) == {"argo/nightly"}, timeout=WAIT)
        for _ in range(3):
            source.poll()
    warnings = [r.getMessage() for r in caplog.records if "field ignored" in r.getMessage()]
    assert warnings == [
        "field ignored: CronWorkflow argo/nightly: spec.concurrencypolicy: unknown field "
        '"concurrencypolicy" (did you mean "concurrencyPolicy"?); Argo\'s controller ignores '
        "it too, and cronwf lint reports it"
    ]
