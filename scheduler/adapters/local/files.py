"""The file source: CronWorkflow manifests in a folder, reloaded when files change.

Embedded mode reads CronWorkflows from YAML files instead of the Kubernetes API. The folder is
polled (a stat of each file every couple of seconds, a full parse only of files whose size or
modification time changed): portable, dependency-free, and cheap for hundreds of files. Each
file is judged on its own, so an invalid file never disturbs the CronWorkflows of the others:
while a file fails to parse, the CronWorkflows it defined *before* keep running unchanged
(like ``kubectl apply`` of a broken manifest, which changes nothing) and the error is reported
once per change.

The catalog takes a CronWorkflow missing from a snapshot for deleted, and deletes its history.
So only a successful listing may make a CronWorkflow disappear; an error never does:

* A folder that cannot be listed (permission denied, too many open files, an I/O error, a
  volume being remounted) is a *scan error*: the files that were under it keep what they
  defined, and the next successful listing tells what really changed.
* A configured path (``--manifests``) that existed and is gone, or that was a folder and is
  now a file (or the other way round), is a scan error too, not a deletion: a mounted volume
  that disappears for a moment looks exactly like that. To remove CronWorkflows, delete (or
  empty) their files; a configured path that was never there defines nothing and is not an
  error.
* A file that cannot be read keeps what it defined, like a file that fails to parse, and is
  read again at the next poll.

Scan errors are logged once per change (and once more when they clear), and carried by every
snapshot so that the service can report them (``/readyz``, ``cronwf_manifest_errors``).

A ``namespace/name`` defined twice runs once, and never changes hands while its definition
stands: whoever can add a file must not be able to take over, or stop, a CronWorkflow another
file defines. The definition in use keeps running; any other is a file problem. When none is
in use yet (a fresh start), the first in sorted file and document order wins; when the one in
use goes away, another takes its place at that scan.

Fields neither Argo nor Kubernetes defines are logged as warnings, once per change of the
CronWorkflow that carries them, and otherwise ignored, as Argo's controller does.

A poll returns a :class:`Snapshot` of every CronWorkflow by key; the catalog diffs snapshots.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from policies.spec import CronWorkflowSpec
from scheduler.core.events import FileProblem, Snapshot
from scheduler.manifests.loading import (
    LoadedCronWorkflow,
    ManifestError,
    Source,
    describe_listing_error,
    describe_os_error,
    load_bytes,
    read_manifest_file,
    scan_manifest_files,
)

__all__ = ["FileSource"]

log = logging.getLogger(__name__)

_KEPT = "the CronWorkflows it defined keep running unchanged until it can be read again"
_UNREAD = (-1, -1)
"""The signature of a file that could not be read: any real one differs, so it is read again."""


@dataclass(frozen=True)
class _Definition:
    """A CronWorkflow as one document defines it."""

    spec: CronWorkflowSpec
    source: Source
    unknown_fields: tuple[str, ...] = ()


@dataclass
class _FileState:
    signature: tuple[int, int]
    definitions: dict[str, _Definition]
    problem: FileProblem | None


@dataclass
class _Listing:
    """One pass over the configured paths."""

    files: list[Path] = field(default_factory=list)
    unknown: list[Path] = field(default_factory=list)
    """Paths whose content is unknown this time: what was under them is kept."""
    errors: dict[Path, str] = field(default_factory=dict)
    """The message of each scan error, by path."""


class FileSource:
    """Polls ``paths`` (files or folders) and returns what they define."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._paths = [Path(p) for p in paths]
        self._files: dict[Path, _FileState] = {}
        self._found: dict[Path, bool] = {}
        """Each configured path seen at least once, and whether it was a folder."""
        self._scan_errors: dict[Path, str] = {}
        self._owners: dict[str, Path] = {}
        """The file whose definition of each CronWorkflow the last snapshot uses."""
        self._duplicates: set[str] = set()
        """The duplicate definitions the last snapshot ignored, as logged."""
        self._last: Snapshot | None = None

    def _list(self) -> _Listing:
        listing = _Listing()
        for path in self._paths:
            try:
                is_folder = stat.S_ISDIR(os.stat(path).st_mode)
            except OSError as error:
                absent = isinstance(error, FileNotFoundError | NotADirectoryError)
                if absent and path not in self._found:
                    continue  # never there: it defines nothing (yet)
                listing.unknown.append(path)
                listing.errors[path] = self._describe_root_error(path, error, absent)
                continue
            was_folder = self._found.setdefault(path, is_folder)
            if is_folder != was_folder:
                listing.unknown.append(path)
                listing.errors[path] = (
                    f"{path}: the configured {'folder' if was_folder else 'file'} is now a "
                    f"{'folder' if is_folder else 'file'}; {_KEPT} (to change what a configured "
                    "path is, restart the service)"
                )
                continue
            if not is_folder:
                listing.files.append(path)
                continue
            scan = scan_manifest_files(path)
            listing.files.extend(scan.files)
            for failure in scan.failures:
                listing.unknown.append(failure.folder)
                if not failure.vanished:
                    listing.errors[failure.folder] = (
                        f"{failure.folder}: cannot list the folder: {failure.reason}; the "
                        "CronWorkflows of the files under it keep running unchanged until it "
                        "can be listed again"
                    )
        return listing

    def _describe_root_error(self, path: Path, error: OSError, absent: bool) -> str:
        was_folder = self._found.get(path)
        what = "path" if was_folder is None else "folder" if was_folder else "file"
        if absent:
            return (
                f"{path}: the configured {what} is gone ({describe_os_error(error)}); the "
                "CronWorkflows it defined keep running unchanged until it is back: a "
                "configured path that disappears is taken for an unmounted volume, not a "
                "deletion (to remove CronWorkflows, delete or empty their files)"
            )
        return (
            f"{path}: cannot examine the configured {what}: {describe_listing_error(error)}; "
            f"{_KEPT}"
        )

    def poll(self) -> Snapshot:
        """Re-read the files that changed; returns the whole current picture.

        When nothing changed it returns the very same :class:`Snapshot` object, so a caller
        can skip its own comparison of thousands of CronWorkflows with an identity check.
        """
        listing = self._list()
        changed = self._report(listing.errors)
        seen: set[Path] = set()
        if listing.unknown:
            unknown = set(listing.unknown)
            seen.update(
                path
                for path in self._files
                if path in unknown or not unknown.isdisjoint(path.parents)
            )
        for path in listing.files:
            seen.add(path)
            try:
                status = path.stat()
            except FileNotFoundError:
                continue  # removed between listing and stat: the next poll sees it gone
            except OSError as error:
                changed |= self._store(path, self._unreadable(path, error, self._files.get(path)))
                continue
            signature = (status.st_mtime_ns, status.st_size)
            state = self._files.get(path)
            if state is not None and state.signature == signature:
                continue
            changed |= self._store(path, self._load(path, signature, state))
        for gone in set(self._files) - seen:
            log.info("manifest file removed: %s", gone)
            del self._files[gone]
            changed = True
        if changed or self._last is None:
            self._last = self._snapshot()
        return self._last

    def _report(self, errors: dict[Path, str]) -> bool:
        """Log the scan errors that are new or changed, and those that cleared."""
        if errors == self._scan_errors:
            return False
        for path, message in sorted(errors.items()):
            if self._scan_errors.get(path) != message:
                log.error("cannot list manifests: %s", message)
        for path in sorted(set(self._scan_errors) - set(errors)):
            log.info("manifests listed again under %s: its files are loaded as they are now", path)
        self._scan_errors = dict(errors)
        return True

    def _store(self, path: Path, state: _FileState | None) -> bool:
        """Keep ``state`` for ``path``; whether that changed anything."""
        if state is None or state == self._files.get(path):
            return False
        self._files[path] = state
        return True

    def _load(
        self, path: Path, signature: tuple[int, int], old: _FileState | None
    ) -> _FileState | None:
        try:
            raw = read_manifest_file(path)
        except FileNotFoundError:
            return None  # removed between stat and read: the next poll sees it gone
        except OSError as error:
            return self._unreadable(path, error, old)
        manifests = load_bytes(raw, str(path)).rejecting_duplicates()
        definitions: dict[str, _Definition] = {}
        messages: list[str] = []
        for entry in manifests.entries:
            if isinstance(entry, LoadedCronWorkflow):
                definitions[entry.key] = _Definition(entry.spec, entry.source, entry.unknown_fields)
            elif isinstance(entry, ManifestError):
                where = f"{entry.source} {entry.key}" if entry.key else str(entry.source)
                messages.extend(f"{where}: {message}" for message in entry.messages)
        if messages:
            for message in messages:
                log.error("cannot load manifest: %s", message)
            # Keep what the file defined before: a half-edited file changes nothing (and a
            # definition added before one already in use cannot take its place).
            kept = old.definitions if old is not None else definitions
            state = _FileState(signature, kept, FileProblem(str(path), tuple(messages)))
        else:
            state = _FileState(signature, definitions, None)
        _warn_unknown_fields(state, old)
        return state

    @staticmethod
    def _unreadable(path: Path, error: OSError, old: _FileState | None) -> _FileState:
        """A file that cannot be read keeps what it defined; it is read again next time."""
        problem = FileProblem(
            str(path),
            (f"{path}: cannot read the file: {describe_os_error(error)}; {_KEPT}",),
        )
        if old is None or old.problem != problem:
            log.error("cannot load manifest: %s", problem.messages[0])
        return _FileState(_UNREAD, old.definitions if old is not None else {}, problem)

    def _snapshot(self) -> Snapshot:
        paths = sorted(self._files)
        defined_in: dict[str, list[Path]] = {}
        for path in paths:
            for key in self._files[path].definitions:
                defined_in.setdefault(key, []).append(path)
        owners: dict[str, Path] = {}
        cron_workflows: dict[str, CronWorkflowSpec] = {}
        ignored: dict[Path, list[str]] = {}
        for key, candidates in defined_in.items():
            owner = self._owners.get(key)
            if owner not in candidates:
                owner = candidates[0]
            owners[key] = owner
            used = self._files[owner].definitions[key]
            cron_workflows[key] = used.spec
            for path in candidates:
                if path != owner:
                    source = self._files[path].definitions[key].source
                    ignored.setdefault(path, []).append(
                        f"{source} {key}: CronWorkflow {key} is already defined in "
                        f"{used.source}; each namespace/name must be defined once (the "
                        "definition in use keeps running, this one is ignored)"
                    )
        problems: list[FileProblem] = []
        for path in paths:
            problem = self._files[path].problem
            if problem is not None:
                problems.append(problem)
            if path in ignored:
                problems.append(FileProblem(str(path), tuple(ignored[path])))
        duplicates = {message for messages in ignored.values() for message in messages}
        for message in sorted(duplicates - self._duplicates):
            log.error("cannot load manifest: %s", message)
        self._owners, self._duplicates = owners, duplicates
        scan_errors = tuple(
            FileProblem(str(path), (message,))
            for path, message in sorted(self._scan_errors.items())
        )
        return Snapshot(cron_workflows, tuple(problems), scan_errors)


def _warn_unknown_fields(state: _FileState, old: _FileState | None) -> None:
    """Log the unknown fields of each definition that is new or changed."""
    before = old.definitions if old is not None else {}
    for key, definition in state.definitions.items():
        if before.get(key) == definition:
            continue
        for message in definition.unknown_fields:
            log.warning(
                "manifest field ignored: %s %s: %s; Argo's controller ignores it too, "
                "and cronwf lint reports it",
                definition.source,
                key,
                message,
            )
