"""A Kubernetes API server for the tests: kmock's ``KubernetesEmulator``, made faithful where
cronwf depends on it.

Why. DESIGN §13: the Kubernetes adapters are tested with the official ``kubernetes`` client
over HTTP, against an emulator rather than a mock of the client, so that what is tested is
what runs (URLs, content types, status codes, watch framing, model deserialization). kmock
0.8 gives us the plumbing — request parsing, the DSL of reactions, API discovery with the
bundled built-in resources, an object store with per-object history, Kubernetes ``Status``
error rendering — but it treats objects "as simple JSON structures": no resource versions,
no conflicts, no selectors, no resumable watches. A scheduler that elects a leader with a
Lease and resumes watches from a ``resourceVersion`` needs those, so :class:`KubeEmulator`
subclasses kmock's emulator and replaces its serving fallbacks (``_serve_list``,
``_serve_watch``, ``_serve_fetch``, ``_serve_create``, ``_serve_update``, ``_serve_delete``,
plus PUT and collection DELETE, which kmock does not route) with API-server semantics. The
fallbacks stay fallbacks: a reaction added with kmock's DSL still takes precedence.

Gaps of kmock 0.8 fixed here, and how:

1. **Status codes.** Create answers ``201 Created`` (the official client 37.x maps only 201
   for ``create_*`` and returns ``None`` on a 200); errors are ``Status`` bodies with the API
   server's reasons: ``AlreadyExists`` and ``Conflict`` (409), ``NotFound`` (404),
   ``BadRequest`` (400), ``Invalid`` (422), ``UnsupportedMediaType`` (415). They are returned
   as responses, not raised, so kmock's error log keeps meaning "the emulator broke".
2. **resourceVersion.** One counter for the whole server (etcd's revision): every write bumps
   it and stamps ``metadata.resourceVersion``; objects get ``uid``, ``creationTimestamp`` and
   ``generation`` (bumped when anything outside ``metadata`` changes, ``status`` excluded for
   resources with a status subresource). PUT or patch carrying a stale ``resourceVersion``
   answers 409 ``Conflict``; PUT of a custom resource without one answers 422, as for CRDs.
   A write that changes nothing bumps nothing and emits no event, like the API server.
3. **Label selectors** (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``, ``>``,
   ``<``) and field selectors (``=``, ``==``, ``!=`` on any dotted path) on list, watch and
   collection delete; label keys and values, and object names, are validated on writes.
4. **Patches.** ``application/merge-patch+json`` per RFC 7386 (null deletes, maps merge,
   lists replace); ``strategic-merge-patch+json`` is treated as a merge patch;
   ``json-patch+json`` per RFC 6902 (``jsonpatch``, kmock's own dependency). Status is patched
   on the main resource (Argo's CRDs have no status subresource); ``/status`` works only for
   resources that declare it.
5. **Watch.** ``?watch=true&resourceVersion=N`` streams the events after N from a change log
   (ADDED/MODIFIED/DELETED; with selectors, objects entering or leaving the selection arrive as
   ADDED/DELETED, as from the watch cache); no or ``"0"`` version starts with synthetic ADDED
   events for the current state. BOOKMARKs every :attr:`KubeEmulator.bookmark_interval` and
   on demand (:meth:`KubeEmulator.request_bookmarks`) when ``allowWatchBookmarks=true``.
   :meth:`KubeEmulator.compact` forgets history: a watch from an older version gets the
   API server's ``ERROR`` event with a 410 ``Expired`` Status. ``timeoutSeconds`` ends the
   stream; :meth:`KubeEmulator.drop_watches` ends them all (optionally with a 410 first).
6. **Fault injection.** :meth:`KubeEmulator.fail` makes the next N requests matching a method,
   verb and resource answer e.g. 500 or 429 with ``Retry-After``; :class:`EmulatorServer` can
   stop and start listening on the same port (:meth:`~EmulatorServer.outage`).
7. **Events and Leases** are ordinary resources here (both are in kmock's bundled discovery
   data), so core/v1 ``events`` and ``coordination.k8s.io/v1`` ``leases`` get the above.
8. **Discovery** also answers the trailing-slash paths the official client asks (``/apis/``,
   ``/api/v1/``, ``/apis/<group>/<version>/``), and the bundled resource data is read without
   kmock's deprecated ``importlib.resources.read_binary`` (a warning, so an error here).

:class:`EmulatorServer` serves an emulator from a thread with its own event loop, so that
synchronous tests and separate ``cronwf`` processes can use it. It serves kmock's handler with
aiohttp's public ``ServerRunner`` rather than ``kmock.Server``: the latter swaps aiohttp's
resolver globally and must be exited in LIFO order, which servers stopping and starting in
background threads cannot promise. It listens on a socket of its own (aiohttp's ``SockSite``),
so that stopping can stop accepting before it closes the listener: see
:meth:`EmulatorServer._stop` for the asyncio race this avoids.

All emulator state belongs to the server's event loop: inside it (an async test that runs the
emulator itself) call :class:`KubeEmulator` methods directly; from any other thread use the
:class:`EmulatorServer` methods, which run them on the loop.

Not faithful (on purpose or out of scope): server-side apply (415); strategic merge without
merge keys or directives; no admission, defaulting or schema validation beyond names and
labels, and no normalization of what is stored (a Lease's MicroTime keeps the client's
format); namespaces need not exist, and ``/api/v1/namespaces`` is not served (kmock's URL
parser reads ``namespaces/<x>`` as a namespace); ``continue`` tokens page over the current
state, not a snapshot, and never expire; a watch from a version newer than the current one
waits instead of answering "too large resource version"; no graceful deletion of pods; PUT
never creates (the API server allows it for a few built-ins, Leases among them): where unsure,
the emulator is the stricter of the two.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import copy
import dataclasses
import functools
import gzip
import importlib.resources
import json
import math
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock import Response  # type: ignore[attr-defined]  # public, but not in __all__
from kubernetes import client as kube_client

__all__ = [
    "ARGO_GROUP",
    "ARGO_VERSION",
    "EmulatorServer",
    "Fault",
    "FieldSelector",
    "KubeEmulator",
    "LabelSelector",
    "Latency",
    "merge_patch",
]

T = TypeVar("T")

ARGO_GROUP = "argoproj.io"
ARGO_VERSION = "v1alpha1"
# plural, kind, shortnames, namespaced — as in Argo's CRDs (none has a status subresource).
ARGO_RESOURCES = (
    ("workflows", "Workflow", ("wf",), True),
    ("cronworkflows", "CronWorkflow", ("cwf", "cronwf"), True),
    ("workflowtemplates", "WorkflowTemplate", ("wftmpl",), True),
    ("clusterworkflowtemplates", "ClusterWorkflowTemplate", ("clusterwftmpl", "cwft"), False),
)
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
COMPLETED_PHASES = frozenset({"Succeeded", "Failed", "Error"})

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

STOP_GRACE = 1.0  # seconds aiohttp waits for in-flight requests when the server stops
CALL_TIMEOUT = 10.0  # seconds a test thread waits for the emulator's loop

_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY = rf"(?:{_DNS_SUBDOMAIN}/)?{_LABEL_NAME}"
_LABEL_VALUE = rf"(?:{_LABEL_NAME})?"
_SELECTOR_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_GENERATED_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the API server's alphabet for generateName

_HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --- Selectors and patches ----------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """Split on the commas that are not inside ``( )`` (those separate set values)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@dataclasses.dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "gt" | "lt":
                try:
                    number = int(str(value))
                except ValueError:
                    return False
                limit = int(self.values[0])
                return present and (number > limit if self.operator == "gt" else number < limit)
        raise AssertionError(self.operator)


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector`` (apimachinery's grammar); empty selects everything."""

    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if text is None or not text.strip():
            return cls()
        requirements: list[_Requirement] = []
        for raw in _split_top_level(text):
            part = raw.strip()
            if match := re.fullmatch(rf"!\s*({_SELECTOR_KEY})", part):
                requirements.append(_Requirement(match[1], "!"))
            elif match := re.fullmatch(rf"({_SELECTOR_KEY})\s+(in|notin)\s*\(([^()]*)\)", part):
                values = tuple(value.strip() for value in match[3].split(","))
                if not all(re.fullmatch(_LABEL_VALUE, value) for value in values):
                    raise ValueError(f"invalid value in requirement {part!r}")
                requirements.append(_Requirement(match[1], match[2], values))
            elif match := re.fullmatch(rf"({_SELECTOR_KEY})\s*(==|=|!=)\s*(\S*)", part):
                if not re.fullmatch(_LABEL_VALUE, match[3]):
                    raise ValueError(f"invalid value in requirement {part!r}")
                operator = "!=" if match[2] == "!=" else "="
                requirements.append(_Requirement(match[1], operator, (match[3],)))
            elif match := re.fullmatch(rf"({_SELECTOR_KEY})\s*([<>])\s*(\d+)", part):
                operator = "gt" if match[2] == ">" else "lt"
                requirements.append(_Requirement(match[1], operator, (match[3],)))
            elif re.fullmatch(_SELECTOR_KEY, part):
                requirements.append(_Requirement(part, "exists"))
            else:
                raise ValueError(f"unable to parse requirement {part!r}")
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    """A parsed ``fieldSelector``: ``path=value``, ``path==value``, ``path!=value``, where path
    is any dotted path (the API server allows only a few per resource; we allow all)."""

    requirements: tuple[tuple[str, bool, str], ...] = ()  # (path, equal, value)

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        if text is None or not text.strip():
            return cls()
        requirements: list[tuple[str, bool, str]] = []
        for raw in text.split(","):
            match = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", raw)
            if match is None:
                raise ValueError(f"invalid field selector requirement {raw!r}")
            requirements.append((match[1], match[2] != "!=", match[3]))
        return cls(tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(
            (_field(obj, path) == value) == equal for path, equal, value in self.requirements
        )


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch. Pure: unchanged subtrees are shared, nothing is mutated."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- Emulator -----------------------------------------------------------------------------


class _Rejection(Exception):
    """An API error, answered with a ``Status`` body (not kmock's error log)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _HTTP_REASONS.get(code, "Unknown")
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    @property
    def body(self) -> dict[str, Any]:
        return _status(self.code, self.reason, self.message, self.details)

    def response(self) -> Response:
        return Response(status=self.code, payload=self.body)


def _status(code: int, reason: str, message: str, details: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": dict(details),
        "code": code,
    }


@dataclasses.dataclass(frozen=True)
class _Target:
    """A registered resource and what the API server knows about it."""

    resource: kmock.resource
    kind: str
    namespaced: bool
    custom: bool
    subresources: frozenset[str]

    @property
    def group(self) -> str:
        return str(self.resource.group or "")

    @property
    def plural(self) -> str:
        return str(self.resource.plural)

    @property
    def api_version(self) -> str:
        version = str(self.resource.version)
        return f"{self.group}/{version}" if self.group else version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def details(self, name: str) -> dict[str, Any]:
        details: dict[str, Any] = {"name": name, "kind": self.plural}
        if self.group:
            details["group"] = self.group
        return details

    def not_found(self, name: str) -> _Rejection:
        return _Rejection(
            404, f'{self.group_resource} "{name}" not found', details=self.details(name)
        )

    def conflict(self, name: str, message: str | None = None) -> _Rejection:
        return _Rejection(
            409,
            f'Operation cannot be fulfilled on {self.group_resource} "{name}": '
            + (
                message
                or "the object has been modified; please apply your changes to the latest "
                "version and try again"
            ),
            details=self.details(name),
        )


@dataclasses.dataclass(frozen=True)
class _Change:
    """One entry of the change log that watches replay (etcd's history, in short)."""

    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: kmock.resource
    namespace: str | None
    name: str
    old: dict[str, Any] | None
    new: dict[str, Any]  # for DELETED: the last state, stamped with the deletion's version


@dataclasses.dataclass(eq=False)
class _Watch:
    target: _Target
    namespace: str | None
    name: str | None
    labels: LabelSelector
    fields: FieldSelector
    bookmarks: bool
    wakeup: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    dropped: bool = False
    expired: bool = False
    bookmark_due: bool = False

    def selects(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        labels = (obj.get("metadata") or {}).get("labels")
        return self.labels.matches(labels) and self.fields.matches(obj)

    def translate(self, change: _Change) -> dict[str, Any] | None:
        """The event this watch sees for a change, as the watch cache filters it."""
        if change.resource != self.target.resource:
            return None
        if self.namespace is not None and change.namespace != self.namespace:
            return None
        if self.name is not None and change.name != self.name:
            return None
        if change.type == "DELETED":
            return {"type": "DELETED", "object": change.new} if self.selects(change.new) else None
        now, before = self.selects(change.new), self.selects(change.old)
        if now and (before or change.type == "ADDED"):
            return {"type": change.type, "object": change.new}
        if now:
            return {"type": "ADDED", "object": change.new}
        if before:
            old = change.old or {}
            gone = {
                **old,
                "metadata": {**old.get("metadata", {}), "resourceVersion": str(change.revision)},
            }
            return {"type": "DELETED", "object": gone}
        return None


@dataclasses.dataclass
class Fault:
    """Answer the next ``times`` matching requests with ``status`` (``times=None``: until
    cleared). ``method`` is an HTTP method, ``verb`` a Kubernetes verb (get, list, watch,
    create, update, patch, delete, deletecollection), ``resource`` a plural or
    ``group/version/plural``; ``None`` matches anything. ``hits`` counts the answers given."""

    method: str | None = None
    verb: str | None = None
    resource: str | None = None
    status: int = 500
    times: int | None = 1
    retry_after: int | None = None
    hits: int = 0

    def matches(self, request: kmock.Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != str(request.method.value).upper():
            return False
        if self.verb is not None and self.verb != _verb(request):
            return False
        if self.resource is not None:
            resource = request.resource
            if resource is None or resource.plural is None:
                return False
            if "/" in self.resource:
                if kmock.resource(self.resource) != kmock.resource(
                    resource.group, resource.version, resource.plural
                ):
                    return False
            elif self.resource != resource.plural:
                return False
        return True

    def rejection(self) -> _Rejection:
        messages = {
            429: "the server has received too many requests and has asked us to try again later",
            500: "Internal error occurred: injected fault",
            503: "the server is currently unable to handle the request",
        }
        details: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
            headers["Retry-After"] = str(self.retry_after)
        return _Rejection(
            self.status,
            messages.get(self.status, f"injected fault {self.status}"),
            details=details,
            headers=headers,
        )


@dataclasses.dataclass
class Latency:
    """Hold each request matching (method, resource) for ``seconds`` before serving it, and
    count how many were held at once (``peak``): what a slow API server looks like to a
    client that overlaps its requests."""

    method: str | None = None
    resource: str | None = None
    seconds: float = 0.1
    in_flight: int = 0
    peak: int = 0
    hits: int = 0

    def matches(self, request: kmock.Request) -> bool:
        return Fault(self.method, None, self.resource, times=None).matches(request)


def _verb(request: kmock.Request) -> str | None:
    method = str(request.method.value).upper()
    if request.action == kmock.action.WATCH:
        return "watch"
    named = request.name is not None
    return {
        ("GET", True): "get",
        ("GET", False): "list",
        ("POST", False): "create",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }.get((method, named))


@functools.cache
def _bundled_resources() -> str:
    packed = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
    return gzip.decompress(packed.read_bytes()).decode()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _header(request: kmock.Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def _ok(body: Any, status: int = 200) -> Response:
    return Response(status=status, payload=body)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the API server's semantics where cronwf needs them
    (see the module docstring). Built-in resources come from kmock's bundled discovery data;
    Argo's ``argoproj.io/v1alpha1`` resources are registered as custom resources.

    ``bookmark_interval``: seconds between BOOKMARK events on watches that allow them
    (``None``: only on demand). ``clock``: the time stamped on objects."""

    bookmark_interval: float | None = 1.0
    clock: Callable[[], datetime] = _utcnow

    _revision: int = attrs.field(default=1, init=False)
    _compacted: int = attrs.field(default=0, init=False)
    _log: list[_Change] = attrs.field(factory=list, init=False)
    _watches: set[_Watch] = attrs.field(factory=set, init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _faults_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _latencies: list[Latency] = attrs.field(factory=list, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock's discovery and our overridden _serve_* fallbacks
        self.fallback[kmock.method.PUT] << self._serve_replace
        self.fallback[kmock.method.DELETE] << self._serve_delete_collection
        # The official client asks discovery with a trailing slash (/apis/, /api/v1/, ...).
        self.fallback["get /api/"] << self._serve_api
        self.fallback["get /apis/"] << self._serve_apis
        self.fallback["get", re.compile(r"/apis/[^/]+/")] << self._serve_group
        self.fallback["get", re.compile(r"/apis/[^/]+/[^/]+/")] << self._serve_version
        self.fallback["get", re.compile(r"/api/[^/]+/")] << self._serve_version
        self.resources.load_data(_bundled_resources())  # what kmock's load_bundled() reads
        for plural, kind, shortnames, namespaced in ARGO_RESOURCES:
            self.register(
                f"{ARGO_GROUP}/{ARGO_VERSION}/{plural}",
                kind=kind,
                namespaced=namespaced,
                shortnames=shortnames,
            )

    # --- registry ---

    def register(
        self,
        resource: str,
        *,
        kind: str,
        namespaced: bool = True,
        shortnames: tuple[str, ...] = (),
        subresources: tuple[str, ...] = (),
        custom: bool = True,
    ) -> None:
        """Serve a resource (``group/version/plural``); ``custom`` gives it a CRD's rules."""
        key = kmock.resource(resource)
        self.resources[key] = kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs=set(ALL_VERBS),
            shortnames=set(shortnames),
            subresources=set(subresources),
        )
        if custom:
            self._custom.add(key)

    def resolve(self, resource: str | kmock.resource) -> _Target:
        """A registered resource from ``group/version/plural`` or a plural alone (the core
        group first, then Argo's, when a plural is served by several groups)."""
        if isinstance(resource, str) and "/" not in resource:
            candidates = [key for key in self.resources if key.plural == resource]
            candidates.sort(key=lambda key: (key.group != "", key.group != ARGO_GROUP))
            if not candidates:
                raise KeyError(f"unknown resource {resource!r}")
            return self._target_of(candidates[0])
        key = kmock.resource(resource)
        if key not in self.resources:
            raise KeyError(f"unknown resource {resource!r}")
        return self._target_of(key)

    def _target_of(self, key: kmock.resource) -> _Target:
        info = self.resources[key]
        return _Target(
            resource=kmock.resource(key.group, key.version, key.plural),
            kind=info.kind or str(key.plural).capitalize(),
            namespaced=bool(info.namespaced),
            custom=key in self._custom,
            subresources=frozenset(info.subresources),
        )

    def _target(self, request: kmock.Request, *, named: bool) -> _Target:
        """The resource a request addresses, checked as the API server routes it."""
        resource = request.resource
        if resource is None or resource.plural is None:
            raise NotImplementedError  # not a resource URL: let kmock's other fallbacks answer
        key = kmock.resource(resource.group, resource.version, resource.plural)
        if key not in self.resources:
            raise _Rejection(404, "the server could not find the requested resource")
        target = self._target_of(key)
        if target.namespaced and named and request.namespace is None:
            raise _Rejection(404, "the server could not find the requested resource")
        if not target.namespaced and request.namespace is not None:
            raise _Rejection(404, "the server could not find the requested resource")
        if request.subresource is not None and request.subresource not in target.subresources:
            raise _Rejection(404, "the server could not find the requested resource")
        return target

    # --- fault injection ---

    def fail(
        self,
        method: str | None = None,
        resource: str | None = None,
        *,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | None = None,
        verb: str | None = None,
    ) -> Fault:
        """Make the next ``times`` requests matching (method, verb, resource) answer
        ``status``; a 429 gets ``Retry-After`` when ``retry_after`` is given. Thread-safe."""
        fault = Fault(method, verb, resource, status, times, retry_after)
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()
            self._latencies.clear()

    def slow(
        self, method: str | None = None, resource: str | None = None, *, seconds: float = 0.1
    ) -> Latency:
        """Hold every request matching (method, resource) for ``seconds`` (until
        :meth:`clear_faults`); the rule counts the requests held at once. Thread-safe."""
        latency = Latency(method, resource, seconds)
        with self._faults_lock:
            self._latencies.append(latency)
        return latency

    async def _hold(self, request: kmock.Request) -> None:
        with self._faults_lock:
            held = [latency for latency in self._latencies if latency.matches(request)]
            for latency in held:
                latency.hits += 1
                latency.in_flight += 1
                latency.peak = max(latency.peak, latency.in_flight)
        try:
            for latency in held:
                await asyncio.sleep(latency.seconds)
        finally:
            with self._faults_lock:
                for latency in held:
                    latency.in_flight -= 1

    def _take_fault(self, request: kmock.Request) -> Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(request):
                    fault.hits += 1
                    return fault
        return None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        await self._hold(request)
        fault = self._take_fault(request)
        if fault is not None:
            rejection = fault.rejection()
            return aiohttp.web.json_response(
                rejection.body, status=rejection.code, headers=rejection.headers
            )
        # Skip kmock's emulator-level _handle: it mutates objects before the reactions run;
        # here the serving fallbacks below do it, with the API server's checks.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    # --- serving (kmock fallbacks) ---
    # kmock calls these as reaction payloads; a plain callable returning a Response (with an
    # async generator as the payload of a watch) serves as well as its coroutines do.

    def _serve_list(self, request: kmock.Request) -> Response:  # type: ignore[override]
        try:
            target = self._target(request, named=False)
            labels, fields = self._selectors(request)
            items = self._select(target, request.namespace, labels, fields)
            metadata: dict[str, Any] = {"resourceVersion": str(self._revision)}
            limit = self._int_param(request, "limit")
            token = request.params.get("continue")
            if token:
                try:
                    start = tuple(json.loads(base64.urlsafe_b64decode(token))["start"])
                except (ValueError, KeyError, TypeError) as error:
                    raise _Rejection(400, f"invalid continue token: {error}") from error
                items = [item for item in items if _sort_key(item) > start]
            if limit and len(items) > limit:
                metadata["remainingItemCount"] = len(items) - limit
                items = items[:limit]
                last = json.dumps({"start": list(_sort_key(items[-1]))}).encode()
                metadata["continue"] = base64.urlsafe_b64encode(last).decode()
            return _ok(
                {
                    "apiVersion": target.api_version,
                    "kind": f"{target.kind}List",
                    "metadata": metadata,
                    "items": items,
                }
            )
        except _Rejection as rejection:
            return rejection.response()

    def _serve_fetch(self, request: kmock.Request) -> Response:  # type: ignore[override]
        try:
            target = self._target(request, named=True)
            assert request.name is not None
            obj = self._current(target, request.namespace, request.name)
            if obj is None:
                raise target.not_found(request.name)
            return _ok(obj)
        except _Rejection as rejection:
            return rejection.response()

    def _serve_create(self, request: kmock.Request) -> Response:  # type: ignore[override]
        try:
            target = self._target(request, named=False)
            if target.namespaced and request.namespace is None:
                raise _Rejection(
                    405, "the server does not allow this method on the requested resource"
                )
            return _ok(self._create_object(target, request.namespace, request.data), status=201)
        except _Rejection as rejection:
            return rejection.response()

    def _serve_replace(self, request: kmock.Request) -> Response:
        try:
            target = self._target(request, named=True)
            if request.name is None:
                raise _Rejection(
                    405, "the server does not allow this method on the requested resource"
                )
            obj = self._replace_object(
                target, request.namespace, request.name, request.data, request.subresource
            )
            return _ok(obj)
        except _Rejection as rejection:
            return rejection.response()

    def _serve_update(self, request: kmock.Request) -> Response:  # type: ignore[override]
        try:
            target = self._target(request, named=True)
            assert request.name is not None
            content_type = _header(request, "Content-Type").split(";")[0].strip().lower()
            obj = self._patch_object(
                target,
                request.namespace,
                request.name,
                request.data,
                content_type,
                request.subresource,
            )
            return _ok(obj)
        except _Rejection as rejection:
            return rejection.response()

    def _serve_delete(self, request: kmock.Request) -> Response:  # type: ignore[override]
        try:
            target = self._target(request, named=True)
            assert request.name is not None
            options = request.data if isinstance(request.data, Mapping) else {}
            obj, deleted = self._delete_object(target, request.namespace, request.name, options)
            if deleted and not target.custom and target.plural != "pods":
                # Built-ins (but pods) answer with a Status; custom resources with the object.
                uid = obj.get("metadata", {}).get("uid")
                body = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {**target.details(request.name), "uid": uid},
                }
                return _ok(body)
            return _ok(obj)
        except _Rejection as rejection:
            return rejection.response()

    def _serve_delete_collection(self, request: kmock.Request) -> Response:
        try:
            target = self._target(request, named=False)
            if request.name is not None:
                raise NotImplementedError
            labels, fields = self._selectors(request)
            items = []
            for obj in self._select(target, request.namespace, labels, fields):
                metadata = obj["metadata"]
                deleted, _ = self._delete_object(
                    target, metadata.get("namespace"), metadata["name"], {}
                )
                items.append(deleted)
            return _ok(
                {
                    "apiVersion": target.api_version,
                    "kind": f"{target.kind}List",
                    "metadata": {"resourceVersion": str(self._revision)},
                    "items": items,
                }
            )
        except _Rejection as rejection:
            return rejection.response()

    def _serve_watch(self, request: kmock.Request) -> Response:  # type: ignore[override]
        try:
            target = self._target(request, named=False)
            labels, fields = self._selectors(request)
            timeout = self._int_param(request, "timeoutSeconds")
            version = request.params.get("resourceVersion") or "0"
            try:
                since = int(version)
            except ValueError as error:
                raise _Rejection(400, f"invalid resourceVersion {version!r}") from error
        except _Rejection as rejection:
            return rejection.response()
        watch = _Watch(
            target=target,
            namespace=request.namespace,
            name=request.name,
            labels=labels,
            fields=fields,
            bookmarks=request.params.get("allowWatchBookmarks") == "true",
        )
        initial: list[dict[str, Any]] = []
        if since == 0:
            initial = self._select(target, request.namespace, labels, fields, name=request.name)
            since = self._revision
        deadline = None if not timeout else asyncio.get_running_loop().time() + timeout
        return _ok(self._stream(watch, initial, since, deadline))

    async def _stream(
        self,
        watch: _Watch,
        initial: list[dict[str, Any]],
        since: int,
        deadline: float | None,
    ) -> AsyncIterator[kmock.Payload]:
        yield b""  # send the headers now: a watch may stay quiet for long
        if since < self._compacted:
            yield self._expired_event(since)
            return
        loop = asyncio.get_running_loop()
        self._watches.add(watch)
        try:
            for obj in initial:
                yield {"type": "ADDED", "object": obj}
            cursor = since
            next_bookmark = self._next_bookmark(loop.time())
            while True:
                watch.wakeup.clear()
                if watch.expired:
                    yield self._expired_event(cursor)
                    return
                if watch.dropped:
                    return
                start = bisect.bisect_right(self._log, cursor, key=lambda change: change.revision)
                events = [watch.translate(change) for change in self._log[start:]]
                cursor = self._revision
                for event in events:
                    if event is not None:
                        yield event
                now = loop.time()
                if watch.bookmarks and (watch.bookmark_due or now >= next_bookmark):
                    watch.bookmark_due = False
                    next_bookmark = self._next_bookmark(now)
                    yield self._bookmark_event(watch.target, cursor)
                if deadline is not None and now >= deadline:
                    return
                wake_at = min(
                    deadline if deadline is not None else math.inf,
                    next_bookmark if watch.bookmarks else math.inf,
                )
                delay = None if wake_at == math.inf else max(0.0, wake_at - now)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await watch.wakeup.wait()
        finally:
            self._watches.discard(watch)

    def _next_bookmark(self, now: float) -> float:
        return now + self.bookmark_interval if self.bookmark_interval else math.inf

    def _expired_event(self, since: int) -> dict[str, Any]:
        message = f"too old resource version: {since} ({self._compacted})"
        return {"type": "ERROR", "object": _status(410, "Expired", message, {})}

    @staticmethod
    def _bookmark_event(target: _Target, revision: int) -> dict[str, Any]:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": target.kind,
                "apiVersion": target.api_version,
                "metadata": {"resourceVersion": str(revision), "creationTimestamp": None},
            },
        }

    @staticmethod
    def _selectors(request: kmock.Request) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = LabelSelector.parse(request.params.get("labelSelector"))
            fields = FieldSelector.parse(request.params.get("fieldSelector"))
        except ValueError as error:
            raise _Rejection(400, f"unable to parse selector: {error}") from error
        return labels, fields

    @staticmethod
    def _int_param(request: kmock.Request, name: str) -> int:
        raw = request.params.get(name)
        if not raw:
            return 0
        try:
            return int(raw)
        except ValueError as error:
            raise _Rejection(400, f"invalid {name} {raw!r}") from error

    # --- the API operations (loop thread only) ---

    def _create_object(
        self, target: _Target, namespace: str | None, body: Any, *, strict: bool = True
    ) -> dict[str, Any]:
        """POST: a new object, 409 ``AlreadyExists`` if the name is taken."""
        if not isinstance(body, Mapping):
            raise _Rejection(400, "the body of the request was in an unknown format")
        body = copy.deepcopy(dict(body))
        metadata = dict(body.get("metadata") or {})
        if target.namespaced:
            claimed = metadata.get("namespace")
            if claimed and namespace and claimed != namespace:
                raise _Rejection(
                    400,
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            namespace = namespace or claimed or "default"
        else:
            namespace = None
        self._check_type(target, body, strict=strict)
        if strict and metadata.get("resourceVersion"):
            raise _Rejection(400, "resourceVersion should not be set on objects to be created")
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            for _ in range(10):
                suffix = "".join(secrets.choice(_GENERATED_SUFFIX) for _ in range(5))
                name = f"{metadata['generateName']}{suffix}"
                if self._current(target, namespace, name) is None:
                    break
        if not name:
            raise _Rejection(
                422,
                "metadata.name: Required value: name or generateName is required",
                details={"kind": target.plural},
            )
        self._check_name(target, name)
        if self._current(target, namespace, name) is not None:
            raise _Rejection(
                409,
                f'{target.group_resource} "{name}" already exists',
                reason="AlreadyExists",
                details=target.details(name),
            )
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            metadata.pop(transient, None)
        metadata.update(
            name=name,
            uid=self._uid(),
            creationTimestamp=self._timestamp(),
            generation=1,
        )
        if namespace is not None:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        self._check_labels(target, name, metadata)
        if "status" in target.subresources:
            body.pop("status", None)
        obj = {**body, "apiVersion": target.api_version, "kind": target.kind, "metadata": metadata}
        return self._write(target, namespace, name, obj, None)

    def _replace_object(
        self,
        target: _Target,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        """PUT: the whole object; 409 ``Conflict`` on a stale ``resourceVersion``."""
        old = self._current(target, namespace, name)
        if old is None:
            raise target.not_found(name)
        if not isinstance(body, Mapping):
            raise _Rejection(400, "the body of the request was in an unknown format")
        body = copy.deepcopy(dict(body))
        metadata = dict(body.get("metadata") or {})
        if metadata.get("name", name) != name:
            raise _Rejection(
                400,
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({name})",
            )
        if target.namespaced and metadata.get("namespace", namespace) != namespace:
            raise _Rejection(
                400,
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        self._check_type(target, body, strict=not force)
        version = metadata.get("resourceVersion")
        if not force:
            if version and version != old["metadata"]["resourceVersion"]:
                raise target.conflict(name)
            if not version and target.custom:
                raise _Rejection(
                    422,
                    f'{target.kind}.{target.group} "{name}" is invalid: metadata.resourceVersion: '
                    "Invalid value: 0x0: must be specified for an update",
                    details=target.details(name),
                )
        body["metadata"] = metadata
        return self._update(target, old, self._merge_system_fields(target, old, body, subresource))

    def _patch_object(
        self,
        target: _Target,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str = MERGE_PATCH,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PATCH: merge, strategic-merge (as merge) or JSON patch; 409 ``Conflict`` when the
        patch carries a stale ``metadata.resourceVersion``."""
        old = self._current(target, namespace, name)
        if old is None:
            raise target.not_found(name)
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise _Rejection(400, "the JSON patch must be a list of operations")
            try:
                patched = jsonpatch.apply_patch(old, patch, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
                raise _Rejection(422, f"the JSON patch could not be applied: {error}") from error
        elif content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            if not isinstance(patch, Mapping):
                raise _Rejection(400, "the merge patch must be a JSON object")
            patched = merge_patch(old, patch)
        else:
            raise _Rejection(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH} "
                f"(not {content_type or 'none'})",
            )
        if not isinstance(patched, Mapping):
            raise _Rejection(422, "the patched object is not a JSON object")
        version = (patched.get("metadata") or {}).get("resourceVersion")
        if version and version != old["metadata"]["resourceVersion"]:
            raise target.conflict(name)
        return self._update(
            target, old, self._merge_system_fields(target, old, patched, subresource)
        )

    def _delete_object(
        self,
        target: _Target,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
    ) -> tuple[dict[str, Any], bool]:
        """DELETE: gone at once, or marked with ``deletionTimestamp`` while finalizers remain.
        Returns the object and whether it is gone."""
        old = self._current(target, namespace, name)
        if old is None:
            raise target.not_found(name)
        metadata = old["metadata"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != metadata.get("uid"):
            raise target.conflict(
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {metadata.get('uid')}",
            )
        version = preconditions.get("resourceVersion")
        if version and version != metadata.get("resourceVersion"):
            raise target.conflict(
                name,
                f"Precondition failed: ResourceVersion in precondition: {version}, "
                f"ResourceVersion in meta: {metadata.get('resourceVersion')}",
            )
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return old, False
            marked = {
                **old,
                "metadata": {
                    **metadata,
                    "deletionTimestamp": self._timestamp(),
                    "deletionGracePeriodSeconds": 0,
                },
            }
            return self._write(target, namespace, name, marked, old), False
        return self._remove(target, namespace, name, old, old), True

    def _merge_system_fields(
        self,
        target: _Target,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        subresource: str | None,
    ) -> dict[str, Any]:
        """What the server keeps whatever the client sent: identity, versions, timestamps;
        and, with a status subresource, the part the request may not touch."""
        old_meta = old["metadata"]
        metadata = dict(new.get("metadata") or {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if field in old_meta:
                metadata[field] = old_meta[field]
            else:
                metadata.pop(field, None)
        metadata["resourceVersion"] = old_meta["resourceVersion"]
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in old_meta:
                metadata[field] = old_meta[field]
            else:
                metadata.pop(field, None)
        merged = {
            **new,
            "apiVersion": target.api_version,
            "kind": target.kind,
            "metadata": metadata,
        }
        if subresource == "status":
            merged = {**old}
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
        elif "status" in target.subresources:
            if "status" in old:
                merged["status"] = old["status"]
            else:
                merged.pop("status", None)
        return merged

    def _update(self, target: _Target, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        metadata = new["metadata"]
        self._check_labels(target, metadata["name"], metadata)
        if new == old:
            return old  # a no-op write: no new version, no event
        excluded = {"metadata"} | ({"status"} if "status" in target.subresources else set())
        if {k: v for k, v in new.items() if k not in excluded} != {
            k: v for k, v in old.items() if k not in excluded
        }:
            new = {
                **new,
                "metadata": {**metadata, "generation": int(metadata.get("generation") or 0) + 1},
            }
        namespace = metadata.get("namespace")
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return self._remove(target, namespace, metadata["name"], old, new)
        return self._write(target, namespace, metadata["name"], new, old)

    def _check_type(self, target: _Target, body: Mapping[str, Any], *, strict: bool) -> None:
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if strict and target.custom and (not api_version or not kind):
            raise _Rejection(400, f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        if api_version and api_version != target.api_version:
            raise _Rejection(
                400,
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({target.api_version})",
            )
        if kind and kind != target.kind:
            raise _Rejection(
                400,
                f"the kind in the data ({kind}) does not match the expected kind ({target.kind})",
            )

    @staticmethod
    def _check_name(target: _Target, name: str) -> None:
        if len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name):
            raise _Rejection(
                422,
                f'{target.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a '
                "lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                details=target.details(name),
            )

    @staticmethod
    def _check_labels(target: _Target, name: str, metadata: Mapping[str, Any]) -> None:
        for key, value in (metadata.get("labels") or {}).items():
            prefix, _, label = str(key).rpartition("/")
            bad_key = not re.fullmatch(_LABEL_KEY, str(key)) or len(prefix) > 253 or len(label) > 63
            bad_value = not isinstance(value, str) or not re.fullmatch(_LABEL_VALUE, value)
            if bad_key or bad_value:
                raise _Rejection(
                    422,
                    f'{target.kind} "{name}" is invalid: metadata.labels: Invalid value: '
                    f'"{key if bad_key else value}": a valid label must be an empty string or '
                    "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character (at most 63 characters)",
                    details=target.details(name),
                )

    # --- storage: kmock's ObjectsArray (with history) plus our change log ---

    def _current(self, target: _Target, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (target.resource, namespace if target.namespaced else None, name)
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else stored.raw

    def _select(
        self,
        target: _Target,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        found = []
        for (resource, object_namespace, object_name), stored in self.objects.items():
            if resource != target.resource or stored.deleted:
                continue
            if namespace is not None and object_namespace != namespace:
                continue
            if name is not None and object_name != name:
                continue
            obj = stored.raw
            if labels.matches(obj.get("metadata", {}).get("labels")) and fields.matches(obj):
                found.append(obj)
        return sorted(found, key=_sort_key)

    def _write(
        self,
        target: _Target,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        self._revision += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._revision)}}
        key = (target.resource, namespace, name)
        if key in self.objects:
            self.objects[key].history.append(obj)  # continues the history, even after deletion
        else:
            self.objects[key] = obj
        self._record(
            _Change(
                self._revision,
                "MODIFIED" if old else "ADDED",
                target.resource,
                namespace,
                name,
                old,
                obj,
            )
        )
        return obj

    def _remove(
        self,
        target: _Target,
        namespace: str | None,
        name: str,
        old: dict[str, Any],
        last: dict[str, Any],
    ) -> dict[str, Any]:
        self._revision += 1
        final = {**last, "metadata": {**last["metadata"], "resourceVersion": str(self._revision)}}
        self.objects[target.resource, namespace, name].delete()
        self._record(
            _Change(self._revision, "DELETED", target.resource, namespace, name, old, final)
        )
        return final

    def _record(self, change: _Change) -> None:
        self._log.append(change)
        for watch in self._watches:
            watch.wakeup.set()

    def _timestamp(self) -> str:
        return _rfc3339(self.clock())

    @staticmethod
    def _uid() -> str:
        return str(uuid.uuid4())

    # --- direct access for tests (loop thread only; EmulatorServer marshals) ---

    @property
    def revision(self) -> int:
        """The current resourceVersion of the server (its last write)."""
        return self._revision

    def list_objects(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        target = self.resolve(resource)
        found = self._select(
            target, namespace, LabelSelector.parse(label_selector), FieldSelector()
        )
        return copy.deepcopy(found)

    def read_object(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        target = self.resolve(resource)
        return copy.deepcopy(self._current(target, namespace, name))

    def put_object(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace, as a user's ``kubectl apply`` would, without preconditions
        (watches see ADDED or MODIFIED). The namespace comes from the object (``default``)."""
        target = self.resolve(resource)
        metadata = obj.get("metadata") or {}
        namespace = (metadata.get("namespace") or "default") if target.namespaced else None
        name = metadata.get("name")
        if name and self._current(target, namespace, name) is not None:
            return copy.deepcopy(self._replace_object(target, namespace, name, obj, force=True))
        return copy.deepcopy(self._create_object(target, namespace, obj, strict=False))

    def patch_object(
        self, resource: str, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an object (status included) without preconditions."""
        target = self.resolve(resource)
        return copy.deepcopy(self._patch_object(target, namespace, name, patch, MERGE_PATCH))

    def delete_object(self, resource: str, namespace: str | None, name: str) -> bool:
        """Delete (or mark for deletion, with finalizers); False if there was none."""
        target = self.resolve(resource)
        if self._current(target, namespace, name) is None:
            return False
        self._delete_object(target, namespace, name, {})
        return True

    def set_workflow_phase(
        self,
        namespace: str,
        name: str,
        phase: str,
        *,
        message: str | None = None,
        finished_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Move a Workflow to ``phase`` as Argo's controller does: ``status.phase``,
        ``startedAt``, ``finishedAt`` when completed, and the ``phase``/``completed`` labels."""
        target = self.resolve(f"{ARGO_GROUP}/{ARGO_VERSION}/workflows")
        old = self._current(target, namespace, name)
        if old is None:
            raise KeyError(f"no workflow {namespace}/{name}")
        status = dict(old.get("status") or {})
        status["phase"] = phase
        status.setdefault("startedAt", self._timestamp())
        completed = phase in COMPLETED_PHASES
        if completed:
            status["finishedAt"] = _rfc3339(finished_at) if finished_at else self._timestamp()
        else:
            status.pop("finishedAt", None)
        if message is not None:
            status["message"] = message
        metadata = old["metadata"]
        labels = {
            **(metadata.get("labels") or {}),
            "workflows.argoproj.io/phase": phase,
            "workflows.argoproj.io/completed": "true" if completed else "false",
        }
        new = {**old, "metadata": {**metadata, "labels": labels}, "status": status}
        return copy.deepcopy(self._update(target, old, new))

    def watch_count(self, resource: str | None = None) -> int:
        """How many watches are open (on ``resource``, if given)."""
        if resource is None:
            return len(self._watches)
        target = self.resolve(resource)
        return sum(1 for watch in self._watches if watch.target.resource == target.resource)

    def drop_watches(self, *, expired: bool = False) -> int:
        """End every open watch stream (``expired``: after an ERROR 410 event, as when the
        watch cache is reset). Returns how many were open."""
        for watch in self._watches:
            watch.dropped = True
            watch.expired = expired
            watch.wakeup.set()
        return len(self._watches)

    def request_bookmarks(self) -> int:
        """Send a BOOKMARK now on every open watch that allows them; returns how many."""
        count = 0
        for watch in self._watches:
            if watch.bookmarks:
                watch.bookmark_due = True
                watch.wakeup.set()
                count += 1
        return count

    def compact(self, revision: int | None = None) -> int:
        """Forget the history up to ``revision`` (default: now), as etcd compaction does:
        watches from an older version get 410 Expired. Returns the compacted revision."""
        self._compacted = max(self._compacted, self._revision if revision is None else revision)
        start = bisect.bisect_right(self._log, self._compacted, key=lambda change: change.revision)
        del self._log[:start]
        return self._compacted


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata", {})
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Serving from a thread ----------------------------------------------------------------


class EmulatorServer:
    """Serves a :class:`KubeEmulator` on ``http://127.0.0.1:<port>`` from a background thread
    with its own event loop. State survives :meth:`stop`/:meth:`start` (the API server
    "restarted"); the port stays the same. Every method is safe to call from any thread but
    the server's own. Keyword ``options`` go to :class:`KubeEmulator`."""

    def __init__(
        self,
        emulator: KubeEmulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        **options: Any,
    ) -> None:
        self.emulator = emulator if emulator is not None else KubeEmulator(**options)
        self.host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        # Loop-thread state.
        self._runner: aiohttp.web.ServerRunner | None = None
        self._listener: socket.socket | None = None
        self._entered = False
        self._resume: asyncio.TimerHandle | None = None
        self._resuming: asyncio.Task[None] | None = None
        self._gate = asyncio.Lock()  # serializes listening and stopping inside the loop
        self._closed = False

    # --- lifecycle ---

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Listen (again, on the same port). Idempotent."""
        with self._lifecycle:
            self._run(self._start())

    def stop(self) -> None:
        """Stop listening and close every connection (watches end); the state is kept."""
        with self._lifecycle:
            if self._loop is not None:
                self._run(self._stop())

    def restart(self) -> None:
        self.stop()
        self.start()

    def outage(self, seconds: float) -> None:
        """Become unreachable now and listen again after ``seconds`` (returns at once)."""
        with self._lifecycle:
            self._run(self._stop())
            self._call(self._schedule_resume, seconds)

    def close(self) -> None:
        """Stop for good and end the thread."""
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                self._closed = True
                return
            self._run(self._close())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)
            self._loop = self._thread = None
            self._closed = True

    async def _start(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        async with self._gate:
            if self._runner is None:
                await self._listen()

    async def _listen(self) -> None:
        if not self._entered:
            await self.emulator.__aenter__()
            self._entered = True
        # SO_REUSEADDR (set by create_server): the same port again at once after a stop.
        listener = socket.create_server((self.host, self._port or 0))
        server = aiohttp.web.Server(self.emulator, handler_cancellation=True, access_log=None)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=STOP_GRACE)
        await runner.setup()
        site = aiohttp.web.SockSite(runner, listener)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            listener.close()
            raise
        self._port = int(listener.getsockname()[1])
        self._runner, self._listener = runner, listener

    async def _stop(self) -> None:
        """Stop listening, then close every connection, including one accepted just now.

        asyncio accepts a connection in the listener's reader callback but makes its transport
        in a task, whose first step runs on a later loop iteration; when the server is closed
        in between (a client connecting while the emulator stops: a test's outage, or a
        client thread still running at teardown), that step fails an assertion and the
        accepted socket is never closed (CPython gh-109564, open at the time of writing).
        Collected later, it is a ``ResourceWarning``, which ``filterwarnings = error`` turns
        into an error of whatever test runs then. So: accept no more (remove the listener's
        reader), yield once (callbacks run in the order they were scheduled, so every accepted
        connection's transport is made before this coroutine resumes), and only then let
        aiohttp close the listener and the connections it knows.
        """
        async with self._gate:
            runner, self._runner = self._runner, None
            listener, self._listener = self._listener, None
            if runner is None:
                return
            if listener is not None:
                asyncio.get_running_loop().remove_reader(listener)
            self.emulator.drop_watches()
            await asyncio.sleep(0)  # connections accepted get their transport; streams end
            await runner.cleanup()

    def _schedule_resume(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()

        def resume() -> None:
            self._resume = None
            self._resuming = loop.create_task(self._start())

        self._resume = loop.call_later(seconds, resume)

    async def _close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._resuming is not None:
            with contextlib.suppress(Exception):
                await self._resuming
            self._resuming = None
        await self._stop()
        if self._entered:
            await self.emulator.__aexit__(None, None, None)
            self._entered = False

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("the emulator server is closed")
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._serve, args=(loop,), name="kube-emulator", daemon=True
            )
            self._loop, self._thread = loop, thread
            thread.start()
        return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("EmulatorServer methods cannot be called from its own loop")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CALL_TIMEOUT)

    def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def invoke() -> T:
            return function(*args, **kwargs)

        return self._run(invoke())

    # --- clients ---

    def kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (plain HTTP, no credentials); returns the path."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def api_client(self) -> kube_client.ApiClient:
        """An official-client ``ApiClient`` for this server (close it when done)."""
        return kube_client.ApiClient(kube_client.Configuration(host=self.url))

    # --- direct access (no HTTP) ---

    def register(
        self,
        resource: str,
        *,
        kind: str,
        namespaced: bool = True,
        shortnames: tuple[str, ...] = (),
        subresources: tuple[str, ...] = (),
        custom: bool = True,
    ) -> None:
        """Serve one more resource; see :meth:`KubeEmulator.register`."""
        self._call(
            self.emulator.register,
            resource,
            kind=kind,
            namespaced=namespaced,
            shortnames=shortnames,
            subresources=subresources,
            custom=custom,
        )

    @property
    def revision(self) -> int:
        return self._call(lambda: self.emulator.revision)

    def objects(
        self, resource: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Copies of the stored objects, sorted by namespace and name."""
        return self._call(self.emulator.list_objects, resource, namespace, label_selector)

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._call(self.emulator.read_object, resource, namespace, name)

    def put(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object (no preconditions); watches see it."""
        return self._call(self.emulator.put_object, resource, obj)

    def patch(
        self, resource: str, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._call(self.emulator.patch_object, resource, namespace, name, patch)

    def delete(self, resource: str, namespace: str | None, name: str) -> bool:
        return self._call(self.emulator.delete_object, resource, namespace, name)

    def set_phase(
        self,
        namespace: str,
        name: str,
        phase: str,
        *,
        message: str | None = None,
        finished_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Move a Workflow to ``phase`` as Argo's controller would."""
        return self._call(
            self.emulator.set_workflow_phase,
            namespace,
            name,
            phase,
            message=message,
            finished_at=finished_at,
        )

    def fail(
        self,
        method: str | None = None,
        resource: str | None = None,
        *,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | None = None,
        verb: str | None = None,
    ) -> Fault:
        """See :meth:`KubeEmulator.fail`."""
        return self.emulator.fail(
            method, resource, status=status, times=times, retry_after=retry_after, verb=verb
        )

    def slow(
        self, method: str | None = None, resource: str | None = None, *, seconds: float = 0.1
    ) -> Latency:
        """See :meth:`KubeEmulator.slow`."""
        return self.emulator.slow(method, resource, seconds=seconds)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()

    def watches(self, resource: str | None = None) -> int:
        return self._call(self.emulator.watch_count, resource)

    def drop_watches(self, *, expired: bool = False) -> int:
        return self._call(self.emulator.drop_watches, expired=expired)

    def bookmark(self) -> int:
        return self._call(self.emulator.request_bookmarks)

    def compact(self, revision: int | None = None) -> int:
        return self._call(self.emulator.compact, revision)

    def wait(
        self, condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.01
    ) -> T:
        """Poll ``condition`` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)
