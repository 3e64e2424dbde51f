"""The Kubernetes API emulator, spoken to with the official client as cronwf speaks to a
cluster: each test pins one behaviour of the API server that the Kubernetes adapters rely on
(DESIGN §13) and that kmock 0.8's emulator lacks on its own."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kube_emulator import EmulatorServer, LabelSelector, merge_patch
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION = "argoproj.io", "v1alpha1"
NS = "argo"
INSTANCE = "workflows.argoproj.io/controller-instanceid"
CRON = "workflows.argoproj.io/cron-workflow"


def workflow(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": spec,
    }


def lease_body(holder: str, version: str | None = None) -> client.V1Lease:
    metadata: dict[str, Any] = {"name": "cronwf", "namespace": NS}
    if version is not None:
        metadata["resourceVersion"] = version
    return client.V1Lease.model_validate(
        {"metadata": metadata, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}
    )


def status_of(error: ApiException) -> dict[str, Any]:
    body = json.loads(error.body)
    assert body["kind"] == "Status"
    return body


@pytest.fixture
def custom(kube_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_client)


@pytest.fixture
def leases(kube_client: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(kube_client)


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


def create(custom: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", body
    )
    return created


def names(listing: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listing["items"]]


@contextlib.contextmanager
def watching(custom: client.CustomObjectsApi, **options: Any) -> Iterator[Iterator[dict[str, Any]]]:
    """A Workflow watch stream, closed (connection released) on exit."""
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, NS, "workflows", **options
    )
    try:
        yield stream
    finally:
        stream.close()


def take(stream: Iterator[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    """The next ``count`` events as (type, name-or-resourceVersion)."""
    events = []
    for event in stream:
        metadata = event["raw_object"].get("metadata", {})
        events.append((event["type"], metadata.get("name") or metadata.get("resourceVersion")))
        if len(events) == count:
            break
    return events


# --- create, get, list, delete ------------------------------------------------------------


def test_create_answers_201_with_the_server_fields(custom: client.CustomObjectsApi) -> None:
    """kmock answers 200, for which the official client 37.x returns None."""
    body, code, _ = custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, NS, "workflows", workflow("nightly-1")
    )
    assert code == 201
    metadata = body["metadata"]
    assert metadata["name"] == "nightly-1"
    assert metadata["namespace"] == NS
    assert metadata["generation"] == 1
    assert metadata["uid"]
    assert metadata["creationTimestamp"].endswith("Z")
    assert int(metadata["resourceVersion"]) > 0


def test_a_taken_name_is_409_already_exists(custom: client.CustomObjectsApi) -> None:
    create(custom, workflow("nightly-1"))
    with pytest.raises(ApiException) as caught:
        create(custom, workflow("nightly-1"))
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "AlreadyExists"


def test_a_missing_object_is_404_not_found(
    custom: client.CustomObjectsApi, leases: client.CoordinationV1Api
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "absent")
    assert caught.value.status == 404
    assert status_of(caught.value)["reason"] == "NotFound"
    with pytest.raises(ApiException) as caught:
        leases.read_namespaced_lease("absent", NS)
    assert caught.value.status == 404


def test_an_unknown_resource_is_404(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as caught:
        custom.list_namespaced_custom_object("example.com", "v1", NS, "things")
    assert caught.value.status == 404


def test_a_custom_object_without_kind_is_400(custom: client.CustomObjectsApi) -> None:
    body = workflow("nightly-1")
    del body["kind"]
    with pytest.raises(ApiException) as caught:
        create(custom, body)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("Nightly", {}),
        ("nightly-1", {CRON: "2024-05-01T02:00:00Z"}),
        ("nightly-1", {"bad key/x": "v"}),
    ],
)
def test_invalid_names_and_labels_are_422(
    custom: client.CustomObjectsApi, name: str, labels: dict[str, str]
) -> None:
    with pytest.raises(ApiException) as caught:
        create(custom, workflow(name, labels))
    assert caught.value.status == 422
    assert status_of(caught.value)["reason"] == "Invalid"


def test_list_is_sorted_and_carries_the_server_resource_version(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    for name in ("b", "a", "c"):
        create(custom, workflow(name))
    kube.put("workflows", {**workflow("elsewhere"), "metadata": {"name": "z", "namespace": "x"}})
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows")
    assert names(listing) == ["a", "b", "c"]
    assert listing["kind"] == "WorkflowList"
    assert listing["metadata"]["resourceVersion"] == str(kube.revision)
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, "workflows")
    assert names(everywhere) == ["a", "b", "c", "z"]


def test_list_pages_with_limit_and_continue(custom: client.CustomObjectsApi) -> None:
    for name in ("a", "b", "c"):
        create(custom, workflow(name))
    first = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows", limit=2)
    assert names(first) == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 1
    rest = custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", limit=2, _continue=first["metadata"]["continue"]
    )
    assert names(rest) == ["c"]
    assert "continue" not in rest["metadata"]


def test_delete_answers_the_object_then_it_is_gone(custom: client.CustomObjectsApi) -> None:
    create(custom, workflow("nightly-1"))
    deleted = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "nightly-1")
    assert deleted["metadata"]["name"] == "nightly-1"
    with pytest.raises(ApiException) as caught:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "nightly-1")
    assert caught.value.status == 404
    create(custom, workflow("nightly-1"))  # the name is free again


def test_finalizers_hold_deletion_until_removed(custom: client.CustomObjectsApi) -> None:
    body = workflow("nightly-1")
    body["metadata"]["finalizers"] = ["example.com/keep"]
    create(custom, body)
    marked = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "nightly-1")
    assert marked["metadata"]["deletionTimestamp"]
    custom.get_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "nightly-1")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", "nightly-1", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "nightly-1")
    assert caught.value.status == 404


def test_delete_collection_removes_the_selected_objects_only(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a", {CRON: "nightly"}))
    create(custom, workflow("b", {CRON: "hourly"}))
    custom.delete_collection_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", label_selector=f"{CRON}=nightly"
    )
    assert [obj["metadata"]["name"] for obj in kube.objects("workflows", NS)] == ["b"]


def test_a_status_subresource_separates_status_from_the_rest(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    """Argo's CRDs have none; a resource that declares one behaves as the API server does."""
    kube.register("example.com/v1/widgets", kind="Widget", subresources=("status",))
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    created = custom.create_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", {**body, "spec": {"a": 1}, "status": {"x": 1}}
    )
    assert "status" not in created
    ignored = custom.patch_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w", {"status": {"x": 2}}
    )
    assert "status" not in ignored
    patched = custom.patch_namespaced_custom_object_status(
        "example.com", "v1", NS, "widgets", "w", {"status": {"x": 3}, "spec": {"a": 2}}
    )
    assert (patched["status"], patched["spec"]) == ({"x": 3}, {"a": 1})
    assert patched["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, "workflows", "w", {"status": {}}
        )
    assert caught.value.status == 404


# --- label selectors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (f"{INSTANCE}=abc", ["mine"]),
        (f"{INSTANCE}==abc", ["mine"]),
        (f"{INSTANCE}!=abc", ["plain", "theirs"]),
        (f"!{INSTANCE}", ["plain"]),
        (INSTANCE, ["mine", "theirs"]),
        (f"{INSTANCE} in (abc, xyz)", ["mine", "theirs"]),
        (f"{INSTANCE} notin (abc)", ["plain", "theirs"]),
        (f"{CRON},!{INSTANCE}", ["plain"]),
        (f"{CRON},{INSTANCE}=abc", ["mine"]),
        (f"{CRON}=nightly, {INSTANCE} in (abc,xyz)", ["mine", "theirs"]),
        ("", ["mine", "plain", "theirs"]),
    ],
)
def test_label_selectors_filter_lists(
    custom: client.CustomObjectsApi, selector: str, expected: list[str]
) -> None:
    create(custom, workflow("mine", {CRON: "nightly", INSTANCE: "abc"}))
    create(custom, workflow("theirs", {CRON: "nightly", INSTANCE: "xyz"}))
    create(custom, workflow("plain", {CRON: "nightly"}))
    listing = custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", label_selector=selector
    )
    assert names(listing) == expected


def test_label_selector_set_and_numeric_requirements() -> None:
    selector = LabelSelector.parse("a in (x, y), b notin (z), c > 2, !d")
    assert selector.matches({"a": "x", "c": "3"})
    assert not selector.matches({"a": "x", "c": "2"})
    assert not selector.matches({"a": "x", "b": "z", "c": "3"})
    assert not selector.matches({"a": "x", "c": "3", "d": ""})


def test_an_unparsable_selector_is_400(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ValueError, match="unable to parse"):
        LabelSelector.parse("a in b")
    with pytest.raises(ApiException) as caught:
        custom.list_namespaced_custom_object(
            GROUP, VERSION, NS, "workflows", label_selector="a in b"
        )
    assert caught.value.status == 400


# --- resourceVersion and Leases -----------------------------------------------------------


def test_lease_replace_with_the_current_version_succeeds_and_bumps_it(
    leases: client.CoordinationV1Api,
) -> None:
    created = leases.create_namespaced_lease(NS, lease_body("a"))
    version = created.metadata.resource_version
    replaced = leases.replace_namespaced_lease("cronwf", NS, lease_body("b", version))
    assert replaced.spec.holder_identity == "b"
    assert int(replaced.metadata.resource_version) > int(version)
    assert replaced.metadata.uid == created.metadata.uid
    assert leases.read_namespaced_lease("cronwf", NS).spec.holder_identity == "b"


def test_lease_replace_with_a_stale_version_is_409_conflict(
    leases: client.CoordinationV1Api,
) -> None:
    """Two replicas read the same Lease; the second write must lose (leader election)."""
    stale = leases.create_namespaced_lease(NS, lease_body("a")).metadata.resource_version
    leases.replace_namespaced_lease("cronwf", NS, lease_body("b", stale))
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("cronwf", NS, lease_body("c", stale))
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"
    assert leases.read_namespaced_lease("cronwf", NS).spec.holder_identity == "b"


def test_custom_object_replace_needs_a_resource_version(custom: client.CustomObjectsApi) -> None:
    create(custom, workflow("nightly-1"))
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(
            GROUP, VERSION, NS, "workflows", "nightly-1", workflow("nightly-1", a="b")
        )
    assert caught.value.status == 422


def test_lease_patch_merges_and_lease_delete_answers_success(
    leases: client.CoordinationV1Api,
) -> None:
    leases.create_namespaced_lease(NS, lease_body("a"))
    patched = leases.patch_namespaced_lease("cronwf", NS, {"spec": {"leaseTransitions": 3}})
    assert patched.spec.holder_identity == "a"
    assert patched.spec.lease_transitions == 3
    result = leases.delete_namespaced_lease("cronwf", NS)  # a dict in client 37.x
    assert (result["kind"], result["status"]) == ("Status", "Success")


# --- patches ------------------------------------------------------------------------------


def test_merge_patch_follows_rfc_7386(custom: client.CustomObjectsApi) -> None:
    created = create(
        custom, workflow("nightly-1", keep=1, drop=2, nested={"a": 1, "b": 2}, items=[1, 2, 3])
    )
    patched = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "workflows",
        "nightly-1",
        {
            "spec": {"drop": None, "nested": {"b": None, "c": 3}, "items": [9]},
            "status": {"phase": "Running"},
        },
    )
    assert patched["spec"] == {"keep": 1, "nested": {"a": 1, "c": 3}, "items": [9]}
    assert patched["status"] == {"phase": "Running"}  # no status subresource: main resource
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_merge_patch_function_matches_the_rfc_examples() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3], "new": {"x": None, "y": 1}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "list": [3], "new": {"y": 1}}
    assert merge_patch({"a": "b"}, {"a": {"c": 1}}) == {"a": {"c": 1}}
    assert merge_patch({"a": {"b": 1}}, ["x"]) == ["x"]
    assert target["c"] == {"d": "e", "f": "g"}  # untouched


def test_a_patch_with_a_stale_resource_version_is_409(custom: client.CustomObjectsApi) -> None:
    stale = create(custom, workflow("nightly-1"))["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", "nightly-1", {"spec": {"a": 1}}
    )
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "workflows",
            "nightly-1",
            {"metadata": {"resourceVersion": stale}, "spec": {"a": 2}},
        )
    assert caught.value.status == 409


def test_json_patch_applies_operations_and_fails_tests_with_422(
    custom: client.CustomObjectsApi,
) -> None:
    create(custom, workflow("nightly-1", items=[1]))
    operations = [
        {"op": "add", "path": "/spec/items/-", "value": 2},
        {"op": "replace", "path": "/metadata/labels", "value": {"x": "y"}},
    ]
    patched = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "workflows",
        "nightly-1",
        operations,
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["items"] == [1, 2]
    assert patched["metadata"]["labels"] == {"x": "y"}
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "workflows",
            "nightly-1",
            [{"op": "test", "path": "/spec/items", "value": []}],
            _content_type="application/json-patch+json",
        )
    assert caught.value.status == 422


def test_a_patch_that_changes_nothing_keeps_the_version(custom: client.CustomObjectsApi) -> None:
    created = create(custom, workflow("nightly-1", a=1))
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", "nightly-1", {"spec": {"a": 1}}
    )
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


# --- watch --------------------------------------------------------------------------------


def test_watch_from_a_resource_version_sees_only_later_events(
    custom: client.CustomObjectsApi,
) -> None:
    create(custom, workflow("before"))
    version = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows")["metadata"][
        "resourceVersion"
    ]
    create(custom, workflow("after"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", "before", {"status": {"phase": "Running"}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "workflows", "after")
    with watching(custom, resource_version=version, timeout_seconds=5) as stream:
        assert take(stream, 3) == [
            ("ADDED", "after"),
            ("MODIFIED", "before"),
            ("DELETED", "after"),
        ]


def test_watch_without_a_version_starts_with_the_current_state(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a"))
    create(custom, workflow("b"))
    with watching(custom, timeout_seconds=5) as stream:
        assert take(stream, 2) == [("ADDED", "a"), ("ADDED", "b")]
        kube.put("workflows", workflow("c"))  # a write from the test, not over HTTP
        assert take(stream, 1) == [("ADDED", "c")]


def test_watch_with_a_selector_sees_objects_enter_and_leave_it(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    """As the watch cache does: a label change out of the selection is a DELETED."""
    create(custom, workflow("nightly-1", {CRON: "nightly"}))
    create(custom, workflow("other", {}))
    with watching(custom, label_selector=CRON, timeout_seconds=5) as stream:
        assert take(stream, 1) == [("ADDED", "nightly-1")]
        kube.patch("workflows", NS, "other", {"metadata": {"labels": {CRON: "x"}}})
        kube.patch("workflows", NS, "nightly-1", {"metadata": {"labels": {CRON: None}}})
        assert take(stream, 2) == [("ADDED", "other"), ("DELETED", "nightly-1")]


def test_bookmarks_arrive_on_demand_when_allowed() -> None:
    with EmulatorServer(bookmark_interval=None) as kube:
        api = kube.api_client()
        custom = client.CustomObjectsApi(api)
        create(custom, workflow("a"))
        with watching(custom, allow_watch_bookmarks=True, timeout_seconds=5) as stream:
            assert take(stream, 1) == [("ADDED", "a")]
            assert kube.bookmark() == 1
            assert take(stream, 1) == [("BOOKMARK", str(kube.revision))]
        api.close()


def test_bookmarks_arrive_periodically() -> None:
    with EmulatorServer(bookmark_interval=0.05) as kube:
        api = kube.api_client()
        custom = client.CustomObjectsApi(api)
        with watching(custom, allow_watch_bookmarks=True, timeout_seconds=5) as stream:
            assert take(stream, 2) == [("BOOKMARK", "1"), ("BOOKMARK", "1")]
        api.close()


def test_timeout_seconds_ends_the_stream_and_bookmarks_need_consent(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a"))
    started = time.monotonic()
    with watching(custom, timeout_seconds=1) as stream:
        assert take(stream, 1) == [("ADDED", "a")]
        assert kube.bookmark() == 0
        assert list(stream) == []
    assert 0.9 < time.monotonic() - started < 3


def test_a_watch_from_a_compacted_version_is_410_expired(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    old = create(custom, workflow("a"))["metadata"]["resourceVersion"]
    create(custom, workflow("b"))
    kube.compact()
    response = custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "workflows", watch=True, resource_version=old, _preload_content=False
    )
    try:
        (line,) = response.data.decode().splitlines()
    finally:
        response.release_conn()
    event = json.loads(line)
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    with pytest.raises(ApiException) as caught, watching(custom, resource_version=old) as stream:
        next(stream)  # the client retries once from the same version, then gives up
    assert caught.value.status == 410
    with watching(custom, resource_version=str(kube.revision), timeout_seconds=5) as stream:
        kube.put("workflows", workflow("c"))
        assert take(stream, 1) == [("ADDED", "c")]


def test_dropped_watches_end_their_streams(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a"))
    with watching(custom, timeout_seconds=30) as stream:
        assert take(stream, 1) == [("ADDED", "a")]
        assert kube.watches("workflows") == 1
        assert kube.drop_watches() == 1
        started = time.monotonic()
        assert list(stream) == []
        assert time.monotonic() - started < 2
    kube.wait(lambda: kube.watches() == 0, timeout=5)


def test_a_watch_closed_by_the_client_is_released_by_the_server(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a"))
    with watching(custom, timeout_seconds=30) as stream:
        assert take(stream, 1) == [("ADDED", "a")]
        assert kube.watches() == 1
    kube.wait(lambda: kube.watches() == 0, timeout=5)


def test_watches_dropped_as_expired_get_410(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a"))
    with watching(custom, timeout_seconds=30) as stream:
        assert take(stream, 1) == [("ADDED", "a")]
        kube.drop_watches(expired=True)
        with pytest.raises(ApiException) as caught:
            next(stream)
    assert caught.value.status == 410


def test_a_lease_watch_is_typed(leases: client.CoordinationV1Api, kube: EmulatorServer) -> None:
    leases.create_namespaced_lease(NS, lease_body("a"))
    stream = watch.Watch().stream(leases.list_namespaced_lease, NS, timeout_seconds=5)
    try:
        event = next(stream)
    finally:
        stream.close()
    assert event["type"] == "ADDED"
    assert event["object"].spec.holder_identity == "a"


# --- faults and outages -------------------------------------------------------------------


def test_injected_500_answers_the_next_matching_request_only(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    fault = kube.fail("POST", "workflows", status=500)
    with pytest.raises(ApiException) as caught:
        create(custom, workflow("nightly-1"))
    assert caught.value.status == 500
    assert kube.get("workflows", NS, "nightly-1") is None  # the write did not happen
    create(custom, workflow("nightly-1"))
    assert fault.hits == 1


def test_injected_429_carries_retry_after(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    kube.fail("POST", "workflows", status=429, times=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            create(custom, workflow("nightly-1"))
        assert caught.value.status == 429
        assert caught.value.headers["Retry-After"] == "3"
        assert status_of(caught.value)["details"]["retryAfterSeconds"] == 3
    create(custom, workflow("nightly-1"))


def test_urllib3_itself_retries_a_429_on_a_read(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    """Worth knowing when testing backoff: the official client's urllib3 pool honours
    ``Retry-After`` on 429 for GET (up to three times) before any ApiException."""
    fault = kube.fail(resource="workflows", verb="list", status=429, times=2, retry_after=0)
    assert custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows")["items"] == []
    assert fault.hits == 2


def test_a_stopped_server_is_unreachable_and_restarts_with_its_state(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("nightly-1"))
    url = kube.url
    kube.stop()
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows")
    assert kube.objects("workflows", NS)[0]["metadata"]["name"] == "nightly-1"
    kube.start()
    assert kube.url == url
    assert names(custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows")) == [
        "nightly-1"
    ]


def test_an_outage_ends_watches_and_heals_by_itself(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("a"))
    with watching(custom, timeout_seconds=30) as stream:
        assert take(stream, 1) == [("ADDED", "a")]
        kube.outage(0.3)
        assert list(stream) == []
    kube.wait(lambda: kube.running, timeout=5)
    assert names(custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflows")) == ["a"]


# --- Events, discovery, kubeconfig, test helpers ------------------------------------------


def test_events_are_accepted_and_listable(core: client.CoreV1Api) -> None:
    body = {
        "metadata": {"name": "nightly.17c1", "namespace": NS},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CronWorkflow",
            "name": "nightly",
            "namespace": NS,
        },
        "reason": "Spawned",
        "message": "created nightly-1",
        "type": "Normal",
        "source": {"component": "cronwf"},
    }
    created = core.create_namespaced_event(NS, client.CoreV1Event.model_validate(body))
    assert created.metadata.resource_version
    listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=nightly")
    assert [event.reason for event in listed.items] == ["Spawned"]
    assert core.list_namespaced_event(NS, field_selector="involvedObject.name=other").items == []


def test_discovery_serves_argo_and_builtin_groups(kube_client: client.ApiClient) -> None:
    groups = {group.name for group in client.ApisApi(kube_client).get_api_versions().groups}
    assert {GROUP, "coordination.k8s.io", "events.k8s.io"} <= groups
    resources = client.CustomObjectsApi(kube_client).get_api_resources(GROUP, VERSION).resources
    kinds = {resource.name: (resource.kind, resource.namespaced) for resource in resources}
    assert kinds["cronworkflows"] == ("CronWorkflow", True)
    assert kinds["clusterworkflowtemplates"] == ("ClusterWorkflowTemplate", False)


def test_kubeconfig_points_at_the_emulator(kube: EmulatorServer, tmp_path: Path) -> None:
    kube.put("cronworkflows", {"metadata": {"name": "nightly", "namespace": NS}, "spec": {}})
    api = config.new_client_from_config(config_file=str(kube.kubeconfig(tmp_path / "config")))
    try:
        listing = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, NS, "cronworkflows"
        )
    finally:
        api.close()
    assert names(listing) == ["nightly"]


def test_set_phase_moves_a_workflow_as_argo_does(
    custom: client.CustomObjectsApi, kube: EmulatorServer
) -> None:
    create(custom, workflow("nightly-1", {CRON: "nightly"}))
    kube.set_phase(NS, "nightly-1", "Running")
    selector = f"{CRON},workflows.argoproj.io/completed!=true"
    with watching(custom, label_selector=selector, timeout_seconds=5) as stream:
        assert take(stream, 1) == [("ADDED", "nightly-1")]
        done = kube.set_phase(NS, "nightly-1", "Failed", message="boom")
        assert take(stream, 1) == [("DELETED", "nightly-1")]
    assert done["status"]["phase"] == "Failed"
    assert done["status"]["message"] == "boom"
    assert done["status"]["finishedAt"] >= done["status"]["startedAt"]
    assert done["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true"
    assert kube.objects("workflows", NS, label_selector=selector) == []
