"""Loading CronWorkflows from YAML manifest files and folders.

Manifests are written by people, so most of what can go wrong here is the user's to fix, and
the loader's job is to say where: every problem names the file, the 1-based document number
in that file and the field path (`manifests/nightly.yaml (document 2): spec.schedules: must be a
list of strings, ...`). A bad document never hides the good ones around it; a bad file never
stops the others. Nothing here raises for user input: problems are returned as values, in
file and document order, so `lint`, `next` and the file-watching catalog all report them the
same way.

Loading is deliberately close to what `kubectl apply` would accept:
- YAML is read with a safe loader, multi-document, with two departures from PyYAML's
  defaults that match Kubernetes' YAML-to-JSON conversion: unquoted timestamps stay strings
  (so `workflowSpec` remains JSON-compatible and passes through unchanged), and a key written
  twice in one mapping is an error instead of silently keeping the last value.
- A missing namespace means `default`.
- Other kinds (a ConfigMap next to the CronWorkflow) are reported and skipped, not errors;
  `List` and `CronWorkflowList` documents (`kubectl get cronwf -o yaml`) are unpacked.
- Folders are searched recursively for `*.yaml` and `*.yml`, in sorted order. Hidden entries
  are skipped: a ConfigMap mounted as a volume keeps a second copy of every file under
  `..data/`, which would otherwise load each CronWorkflow twice.

Semantic validation (schedules, timezone...) is not done here; see `policies.validation`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, ScalarNode

from policies.spec import DEFAULT_NAMESPACE, CronWorkflowSpec
from scheduler.model import (
    API_VERSION,
    KIND,
    CronWorkflowModel,
    CronWorkflowModelError,
    parse_cron_workflow,
)

__all__ = [
    "LoadedCronWorkflow",
    "ManifestEntry",
    "ManifestError",
    "ManifestItem",
    "ManifestNotice",
    "ManifestSet",
    "Source",
    "find_manifest_files",
    "load_document",
    "load_paths",
    "load_text",
]

_MANIFEST_SUFFIXES = (".yaml", ".yml")
_LIST_KINDS = ("List", "CronWorkflowList")
_API_GROUP = API_VERSION.split("/", 1)[0]


@dataclass(frozen=True)
class Source:
    """Where something was read: a file and, when it got that far, a 1-based document."""

    file: str
    document: int | None = None

    def __str__(self) -> str:
        if self.document is None:
            return self.file
        return f"{self.file} (document {self.document})"


@dataclass(frozen=True)
class LoadedCronWorkflow:
    """A well-typed CronWorkflow and where it came from. It may still fail validation."""

    source: Source
    model: CronWorkflowModel
    spec: CronWorkflowSpec

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass(frozen=True)
class ManifestError:
    """A document (or a whole file) that yields no usable CronWorkflow.

    `messages` each name the field they are about; `name`/`namespace` are filled in when the
    document got far enough to tell which CronWorkflow it meant.
    """

    source: Source
    messages: tuple[str, ...]
    name: str | None = None
    namespace: str | None = None

    @property
    def key(self) -> str | None:
        if self.name is None:
            return None
        return f"{self.namespace or DEFAULT_NAMESPACE}/{self.name}"

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {message}" for message in self.messages)


@dataclass(frozen=True)
class ManifestNotice:
    """Worth telling the user, but not an error.

    `category` is `skipped` for a document of another kind, `warning` for a file or folder
    with no CronWorkflow in it.
    """

    source: Source
    category: Literal["skipped", "warning"]
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


ManifestEntry = LoadedCronWorkflow | ManifestError
ManifestItem = LoadedCronWorkflow | ManifestError | ManifestNotice


@dataclass(frozen=True)
class ManifestSet:
    """Everything read from some paths, in file and document order."""

    items: tuple[ManifestItem, ...] = ()

    @property
    def entries(self) -> tuple[ManifestEntry, ...]:
        """The CronWorkflows and the errors: one per document that meant a CronWorkflow."""
        return tuple(item for item in self.items if not isinstance(item, ManifestNotice))

    @property
    def cron_workflows(self) -> tuple[LoadedCronWorkflow, ...]:
        return tuple(item for item in self.items if isinstance(item, LoadedCronWorkflow))

    @property
    def errors(self) -> tuple[ManifestError, ...]:
        return tuple(item for item in self.items if isinstance(item, ManifestError))

    @property
    def notices(self) -> tuple[ManifestNotice, ...]:
        return tuple(item for item in self.items if isinstance(item, ManifestNotice))

    def __add__(self, other: ManifestSet) -> ManifestSet:
        return ManifestSet(self.items + other.items)


def load_paths(paths: Iterable[str | os.PathLike[str]]) -> ManifestSet:
    """Load every CronWorkflow under `paths` (files or folders), in the order given."""
    result = ManifestSet()
    for path in paths:
        result += _load_path(Path(path))
    return result


def find_manifest_files(folder: Path) -> list[Path]:
    """The `*.yaml` and `*.yml` files under `folder`, recursively, sorted, hidden ones skipped."""
    found: list[Path] = []
    for root, directories, files in os.walk(folder):
        directories[:] = [name for name in directories if not name.startswith(".")]
        found.extend(
            Path(root, name)
            for name in files
            if name.endswith(_MANIFEST_SUFFIXES) and not name.startswith(".")
        )
    return sorted(found)


def load_text(text: str, file: str = "<string>") -> ManifestSet:
    """Load the CronWorkflows of one YAML stream; `file` is only used in messages."""
    items: list[ManifestItem] = []
    for source, document in _documents(text, file):
        if isinstance(document, ManifestError):
            items.append(document)
        else:
            items.extend(_load_object(document, source, prefix=""))
    if not any(isinstance(item, LoadedCronWorkflow | ManifestError) for item in items):
        items.append(ManifestNotice(Source(file), "warning", "no CronWorkflow found"))
    return ManifestSet(tuple(items))


def load_document(document: object, source: Source) -> ManifestSet:
    """Load one decoded document (a mapping, as from YAML or a client library)."""
    return ManifestSet(tuple(_load_object(document, source, prefix="")))


def _load_path(path: Path) -> ManifestSet:
    if path.is_dir():
        files = find_manifest_files(path)
        if not files:
            message = "no *.yaml or *.yml file in this folder"
            return ManifestSet((ManifestNotice(Source(str(path)), "warning", message),))
        result = ManifestSet()
        for file in files:
            result += _load_file(file)
        return result
    return _load_file(path)


def _load_file(path: Path) -> ManifestSet:
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        return _file_error(path, f"cannot read the file: {reason}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return _file_error(
            path,
            f"cannot read the file: not UTF-8 text (byte {raw[error.start]:#04x} at line {line})",
        )
    return load_text(text, str(path))


def _file_error(path: Path, message: str) -> ManifestSet:
    return ManifestSet((ManifestError(Source(str(path)), (message,)),))


# libyaml's parser when PyYAML was built with it: ten times faster on large fleets.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ManifestLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader, minus timestamps, plus duplicate-key detection."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[str] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            identity = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if identity in first_seen:
                self.duplicate_keys.append(
                    f"duplicate key {json.dumps(key_node.value)} at line {line}, column "
                    f"{key_node.start_mark.column + 1} (first at line {first_seen[identity]}): "
                    "a key may appear once per mapping"
                )
            else:
                first_seen[identity] = line
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep)
        return mapping


_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _documents(text: str, file: str) -> Iterator[tuple[Source, object | ManifestError]]:
    """Each document of the stream with its source; a YAML error ends the stream."""
    loader = _ManifestLoader(text)
    number = 0
    try:
        while True:
            number += 1
            source = Source(file, number)
            try:
                if not loader.check_node():
                    return
                document = loader.get_data()
            except yaml.YAMLError as error:
                yield source, ManifestError(source, (_describe_yaml_error(error),))
                return
            if loader.duplicate_keys:
                yield source, ManifestError(source, tuple(loader.duplicate_keys))
                loader.duplicate_keys.clear()
                continue
            yield source, document
    finally:
        loader.dispose()


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        problem = error.problem or "invalid YAML"
        if error.context and error.context_mark is not None:
            context = error.context_mark
            problem = (
                f"{error.context} (from line {context.line + 1}, column {context.column + 1})"
                f": {problem}"
            )
        elif error.context:
            problem = f"{error.context}: {problem}"
        return f"invalid YAML at {where}: {problem}; documents after this point were not read"
    return f"invalid YAML: {error}; documents after this point were not read"


def _load_object(document: object, source: Source, prefix: str) -> list[ManifestItem]:
    if document is None:
        return []
    where = prefix.rstrip(".") or "the document"
    if not isinstance(document, Mapping):
        message = (
            f"{where} is {_kind_of_value(document)}, not a mapping: a CronWorkflow manifest is "
            "a mapping with apiVersion, kind, metadata and spec"
        )
        return [ManifestError(source, (message,))]
    name, namespace = _identity(document)
    kind = document.get("kind")
    api_version = document.get("apiVersion")

    def error(*messages: str) -> list[ManifestItem]:
        return [ManifestError(source, messages, name, namespace)]

    if kind is None:
        return error(
            f"{prefix}kind: is required: a CronWorkflow starts with "
            f"apiVersion: {API_VERSION} and kind: {KIND}"
        )
    if not isinstance(kind, str):
        return error(f"{prefix}kind: must be a string, got {_kind_of_value(kind)}")
    if kind in _LIST_KINDS:
        return _load_list(document, source, prefix)
    if kind != KIND or _is_other_api(api_version):
        what = f'{kind} "{name}"' if name else kind
        version = f" ({api_version})" if isinstance(api_version, str) else ""
        message = f"{what}{version} is not a CronWorkflow"
        if prefix:
            message = f"{where}: {message}"
        return [ManifestNotice(source, "skipped", message)]
    if api_version is None:
        return error(f"{prefix}apiVersion: is required: write apiVersion: {API_VERSION}")
    if api_version != API_VERSION:
        return error(f"{prefix}apiVersion: must be {API_VERSION}, got {json.dumps(api_version)}")
    try:
        model = parse_cron_workflow(document)
    except CronWorkflowModelError as problems:
        return error(*(f"{prefix}{problem}" for problem in problems.problems))
    return [LoadedCronWorkflow(source, model, model.to_spec())]


def _load_list(document: Mapping[str, Any], source: Source, prefix: str) -> list[ManifestItem]:
    items = document.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        message = f"{prefix}items: must be a list, got {_kind_of_value(items)}"
        return [ManifestError(source, (message,))]
    loaded: list[ManifestItem] = []
    for index, item in enumerate(items):
        loaded.extend(_load_object(item, source, f"{prefix}items[{index}]."))
    return loaded


def _is_other_api(api_version: object) -> bool:
    if not isinstance(api_version, str):
        return False
    return api_version.split("/", 1)[0] != _API_GROUP


def _identity(document: Mapping[Any, Any]) -> tuple[str | None, str | None]:
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return None, None
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    return (
        name if isinstance(name, str) and name else None,
        namespace if isinstance(namespace, str) and namespace else None,
    )


def _kind_of_value(value: object) -> str:
    if isinstance(value, str):
        return f"a string ({json.dumps(value)})"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
