"""Loading CronWorkflows from YAML manifest files and folders.

Manifests are written by people, so most of what can go wrong here is the user's to fix, and
the loader's job is to say where: every problem names the file, the 1-based document number
in that file and the field path (`manifests/nightly.yaml (document 2): spec.schedules: must be a
list of strings, ...`). A bad document never hides the good ones around it; a bad file never
stops the others. Nothing here raises for user input: problems are returned as values, in
file and document order, so `lint`, `next` and the file-watching catalog all report them the
same way.

Loading is deliberately close to what `kubectl apply` would accept:
- YAML is read by `scheduler.manifests.yaml_loader`: a safe loader, multi-document, where
  unquoted timestamps stay strings and a key written twice in one mapping is an error, as in
  Kubernetes' YAML-to-JSON conversion.
- A missing namespace means `default`. Names, namespaces, labels and annotations follow
  Kubernetes' rules (`scheduler.manifests.naming`): a document that breaks them is an error, so a
  hostile name never reaches a Redis key, a path or a command.
- A field neither Argo nor Kubernetes defines is kept, and listed on the CronWorkflow
  (`unknown_fields`, with a "did you mean"): `lint` refuses it by default, `serve` warns.
- `spec.workflowSpec` is checked against the types of Argo's Workflow
  (`scheduler.manifests.workflow_schema`): a wrong type or a missing required field is an error
  of the document, as the API server with Argo's full CRD refuses it; unknown fields join
  `unknown_fields`, fields a recent Argo removed are `warnings`.
- A `namespace/name` defined twice is an error of the second definition, naming the first;
  `load_paths` checks across every file it reads, `ManifestSet.rejecting_duplicates` does it
  for any set (the file-watching catalog uses it per file, and has its own rule across files).
- Other kinds (a ConfigMap next to the CronWorkflow) are reported and skipped, not errors;
  `List` and `CronWorkflowList` documents (`kubectl get cronwf -o yaml`) are unpacked.
- Folders are searched recursively for `*.yaml` and `*.yml`, in sorted order. Hidden entries
  are skipped: a ConfigMap mounted as a volume keeps a second copy of every file under
  `..data/`, which would otherwise load each CronWorkflow twice.
- What a file or a document may expand to is bounded (the `MAX_*` limits of
  `scheduler.manifests.yaml_loader`, which measures it): an alias bomb, a document nested
  thousands deep or a file of gigabytes is an error of that document or file, found before any
  Python object is built; a decoded document (`load_document`) is held to the same limits.
- A folder that cannot be listed is an error naming it, never an empty folder: `os.walk`
  would skip it silently, and to the file-watching catalog "no files" means "delete every
  CronWorkflow", so an unreadable folder (a permission change, too many open files, a volume
  being remounted) would look like a mass deletion.

Semantic validation (schedules, timezone...) is not done here; see `policies.validation`.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from policies.spec import DEFAULT_NAMESPACE, CronWorkflowSpec
from scheduler.manifests import yaml_loader
from scheduler.manifests.models import (
    API_VERSION,
    KIND,
    CronWorkflowModel,
    CronWorkflowModelError,
    parse_cron_workflow,
    unknown_fields,
)
from scheduler.manifests.naming import dns1123_label_problems, dns1123_subdomain_problems
from scheduler.manifests.workflow_schema import check_workflow_spec
from scheduler.manifests.yaml_loader import (
    DocumentProblem,
    file_size_problem,
    object_limit_problem,
)

__all__ = [
    "ListingFailure",
    "LoadedCronWorkflow",
    "ManifestEntry",
    "ManifestError",
    "ManifestFiles",
    "ManifestItem",
    "ManifestNotice",
    "ManifestSet",
    "NotARegularFile",
    "Source",
    "describe_listing_error",
    "describe_os_error",
    "find_manifest_files",
    "load_bytes",
    "load_document",
    "load_paths",
    "load_text",
    "read_manifest_file",
    "scan_manifest_files",
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
    unknown_fields: tuple[str, ...] = ()
    """One message per field that neither Argo nor Kubernetes defines, each starting with its
    path (`spec.concurrencypolicy: unknown field ...`), outer levels first. Argo's controller
    ignores such fields and so does the scheduler; `argo cron lint` refuses them (its
    `--strict`), and so does `cronwf lint` unless told `--strict=false`."""
    warnings: tuple[str, ...] = ()
    """What works but should change, each starting with its path: the `workflowSpec` fields a
    recent Argo no longer has (`spec.workflowSpec.synchronization.mutex ...`)."""

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

    def rejecting_duplicates(self) -> ManifestSet:
        """The same items, each CronWorkflow whose `namespace/name` an earlier one already
        defines replaced by an error naming where: the first definition stays as it is."""
        defined: dict[str, Source] = {}
        items: list[ManifestItem] = []
        for item in self.items:
            if not isinstance(item, LoadedCronWorkflow):
                items.append(item)
            elif item.key in defined:
                message = (
                    f"CronWorkflow {item.key} is already defined in {defined[item.key]}; each "
                    "namespace/name must be defined once"
                )
                spec = item.spec
                items.append(ManifestError(item.source, (message,), spec.name, spec.namespace))
            else:
                defined[item.key] = item.source
                items.append(item)
        return ManifestSet(tuple(items))


def load_paths(paths: Iterable[str | os.PathLike[str]]) -> ManifestSet:
    """Load every CronWorkflow under `paths` (files or folders), in the order given.

    A file named twice (`lint a.yaml a.yaml`, or a folder and a file in it) is read once; a
    `namespace/name` defined twice is an error of the second definition.
    """
    result = ManifestSet()
    read: set[str] = set()
    for path in paths:
        result += _load_path(Path(path), read)
    return result.rejecting_duplicates()


@dataclass(frozen=True)
class ListingFailure:
    """A folder whose entries could not be read: what is under it is unknown, not absent."""

    folder: Path
    error: OSError
    vanished: bool = False
    """True for a subfolder its parent listed a moment before and that is gone now (removed or
    replaced meanwhile): the next listing of the parent tells whether it is really gone."""

    @property
    def reason(self) -> str:
        return describe_listing_error(self.error)


@dataclass(frozen=True)
class ManifestFiles:
    """The manifest files found under a folder, and the folders that could not be listed."""

    files: tuple[Path, ...] = ()
    failures: tuple[ListingFailure, ...] = ()


def scan_manifest_files(folder: Path) -> ManifestFiles:
    """The `*.yaml` and `*.yml` files under `folder`, recursively, sorted, hidden ones skipped,
    and every folder (`folder` itself included) that could not be listed.

    Like `os.walk`, symbolic links to folders are not followed (a link to a file is a file),
    but no error is swallowed: the files under a failing folder are unknown, and the caller
    must not take them for removed.
    """
    found: list[Path] = []
    failures: list[ListingFailure] = []
    pending: list[tuple[Path, bool]] = [(folder, False)]
    while pending:
        current, listed_by_parent = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError as error:
            gone = isinstance(error, FileNotFoundError | NotADirectoryError)
            failures.append(ListingFailure(current, error, vanished=listed_by_parent and gone))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder, is_link = entry.is_dir(), entry.is_symlink()
            except OSError:  # a link whose target cannot be examined: taken for a file
                is_folder = is_link = False
            if is_folder:
                if not is_link:
                    pending.append((Path(entry.path), True))
            elif entry.name.endswith(_MANIFEST_SUFFIXES):
                found.append(Path(entry.path))
    return ManifestFiles(
        tuple(sorted(found)), tuple(sorted(failures, key=lambda failure: failure.folder))
    )


def find_manifest_files(folder: Path) -> list[Path]:
    """The `*.yaml` and `*.yml` files under `folder`, recursively, sorted, hidden ones skipped.

    Raises the `OSError` of the first folder that could not be listed (a subfolder removed
    while it was searched excepted): a folder that cannot be read is not an empty one.
    """
    scan = scan_manifest_files(folder)
    for failure in scan.failures:
        if not failure.vanished:
            raise failure.error
    return list(scan.files)


def describe_os_error(error: OSError) -> str:
    """The reason of `error` as a message fragment: `permission denied`."""
    return (error.strerror or str(error)).lower()


def describe_listing_error(error: OSError) -> str:
    """Why a folder could not be listed, and what to do about it when that is clear."""
    reason = describe_os_error(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{reason} (this user needs read and execute permission on the folder)"
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return f"{reason} (raise the open-file limit, ulimit -n)"
    return reason


def load_text(text: str, file: str = "<string>") -> ManifestSet:
    """Load the CronWorkflows of one YAML stream; `file` is only used in messages."""
    too_big = file_size_problem(text)
    if too_big is not None:
        return _file_error(file, too_big)
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
    """Load one decoded document (a mapping, as from YAML or a client library).

    The document is held to the node and depth limits of a YAML document, counted on the
    objects themselves (a shared object counts wherever it appears), within a budget: a huge,
    deep or self-containing object costs at most the limit to refuse.
    """
    problem = object_limit_problem(document)
    if problem is not None:
        name, namespace = _identity(document) if isinstance(document, Mapping) else (None, None)
        return ManifestSet((ManifestError(source, (problem,), name, namespace),))
    return ManifestSet(tuple(_load_object(document, source, prefix="")))


def _load_path(path: Path, read: set[str]) -> ManifestSet:
    """The manifests of a file or folder, skipping the files whose absolute path is in `read`
    (and adding the others to it)."""
    try:
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        is_folder = False  # reading it as a file says why it cannot be read
    if is_folder:
        scan = scan_manifest_files(path)
        failures = [failure for failure in scan.failures if not failure.vanished]
        if not scan.files and not failures:
            message = "no *.yaml or *.yml file in this folder"
            return ManifestSet((ManifestNotice(Source(str(path)), "warning", message),))
        result = ManifestSet(
            tuple(
                ManifestError(
                    Source(str(failure.folder)),
                    (
                        f"cannot list the folder: {failure.reason}; the manifests under it "
                        "were not read",
                    ),
                )
                for failure in failures
            )
        )
        for file in scan.files:
            result += _load_unread_file(file, read)
        return result
    return _load_unread_file(path, read)


def _load_unread_file(path: Path, read: set[str]) -> ManifestSet:
    absolute = os.path.abspath(path)
    if absolute in read:
        return ManifestSet()
    read.add(absolute)
    return _load_file(path)


def _load_file(path: Path) -> ManifestSet:
    try:
        raw = read_manifest_file(path)
    except OSError as error:
        return _file_error(str(path), f"cannot read the file: {describe_os_error(error)}")
    return load_bytes(raw, str(path))


class NotARegularFile(OSError):
    """A manifest path that is a named pipe, a device or a socket: never read (a pipe nobody
    writes would block the reader forever, a device may never end)."""


def read_manifest_file(path: Path) -> bytes:
    """The content of the file at `path`, or its first `MAX_FILE_BYTES` + 1 bytes if it is
    bigger: enough for `load_bytes` to refuse it, without reading a huge file into memory.

    Raises `NotARegularFile` for anything but a regular file (after following links): it is
    opened without blocking and examined before a byte is read.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotARegularFile(
                errno.EINVAL, "not a regular file (a named pipe, a device or a socket)"
            )
        return stream.read(yaml_loader.MAX_FILE_BYTES + 1)


def load_bytes(raw: bytes, file: str) -> ManifestSet:
    """Load the CronWorkflows of one file's content; `file` is only used in messages.

    Content over `MAX_FILE_BYTES` is refused whole (it may be the truncated read of a bigger
    file: see `read_manifest_file`).
    """
    too_big = file_size_problem(raw)
    if too_big is not None:
        return _file_error(file, too_big)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return _file_error(
            file,
            f"cannot read the file: not UTF-8 text (byte {raw[error.start]:#04x} at line {line})",
        )
    return load_text(text, file)


def _file_error(file: str, message: str) -> ManifestSet:
    return ManifestSet((ManifestError(Source(file), (message,)),))


def _documents(text: str, file: str) -> Iterator[tuple[Source, object | ManifestError]]:
    """Each document of the stream with its source; a YAML error ends the stream."""
    for number, document in enumerate(yaml_loader.documents(text), start=1):
        source = Source(file, number)
        if isinstance(document, DocumentProblem):
            error = ManifestError(source, document.messages, document.name, document.namespace)
            yield source, error
        else:
            yield source, document


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
    unknown = tuple(f"{prefix}{problem}" for problem in unknown_fields(model))
    warnings: tuple[str, ...] = ()
    workflow_spec = model.spec.workflow_spec
    if workflow_spec is not None:  # a missing one is a validation error, in Argo's words
        report = check_workflow_spec(workflow_spec, f"{prefix}spec.workflowSpec")
        if report.errors:
            return error(*report.errors)
        unknown += report.unknown
        warnings = report.deprecated
    return [LoadedCronWorkflow(source, model, model.to_spec(), unknown, warnings)]


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
    """The name and namespace the document means, when both are valid Kubernetes names.

    An invalid one is never repeated outside the message that quotes it: a name with a
    newline or a NUL would otherwise forge or break the lines that say where a problem is.
    """
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return None, None
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    if not isinstance(name, str) or not name or dns1123_subdomain_problems(name):
        return None, None
    if not isinstance(namespace, str) or not namespace:
        return name, None
    if dns1123_label_problems(namespace):
        return None, None
    return name, namespace


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
