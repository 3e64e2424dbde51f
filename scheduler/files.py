"""The file source: CronWorkflow manifests in a folder, reloaded when files change.

Embedded mode reads CronWorkflows from YAML files instead of the Kubernetes API. The folder is
polled (a stat of each file every couple of seconds, a full parse only of files whose size or
modification time changed): portable, dependency-free, and cheap for hundreds of files. Each
file is judged on its own, so an invalid file never disturbs the CronWorkflows of the others:
while a file fails to parse, the CronWorkflows it defined *before* keep running unchanged
(like ``kubectl apply`` of a broken manifest, which changes nothing) and the error is reported
once per change.

A poll returns a :class:`Snapshot` of every CronWorkflow by key; the catalog diffs snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from policies.spec import CronWorkflowSpec
from scheduler.manifests import LoadedCronWorkflow, ManifestError, find_manifest_files, load_paths

__all__ = ["FileProblem", "FileSource", "Snapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileProblem:
    """A file (or document) that could not be loaded, with its messages."""

    file: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """Every CronWorkflow found, by ``namespace/name``, and the files that failed."""

    cron_workflows: dict[str, CronWorkflowSpec] = field(default_factory=dict)
    problems: tuple[FileProblem, ...] = ()


@dataclass
class _FileState:
    signature: tuple[int, int]
    specs: dict[str, CronWorkflowSpec]
    problem: FileProblem | None


class FileSource:
    """Polls ``paths`` (files or folders) and returns what they define."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._paths = [Path(p) for p in paths]
        self._files: dict[Path, _FileState] = {}
        self._last: Snapshot | None = None

    def _current_files(self) -> list[Path]:
        found: list[Path] = []
        for path in self._paths:
            if path.is_dir():
                found.extend(find_manifest_files(path))
            elif path.exists():
                found.append(path)
        return found

    def poll(self) -> Snapshot:
        """Re-read the files that changed; returns the whole current picture.

        When nothing changed it returns the very same :class:`Snapshot` object, so a caller
        can skip its own comparison of thousands of CronWorkflows with an identity check.
        """
        changed = False
        seen: set[Path] = set()
        for path in self._current_files():
            seen.add(path)
            try:
                stat = path.stat()
            except OSError:
                continue  # removed between listing and stat: the next poll sees it gone
            signature = (stat.st_mtime_ns, stat.st_size)
            state = self._files.get(path)
            if state is not None and state.signature == signature:
                continue
            self._files[path] = self._load(path, signature, state)
            changed = True
        for gone in set(self._files) - seen:
            log.info("manifest file removed: %s", gone)
            del self._files[gone]
            changed = True
        if changed or self._last is None:
            self._last = self._snapshot()
        return self._last

    def _load(self, path: Path, signature: tuple[int, int], old: _FileState | None) -> _FileState:
        manifests = load_paths([path])
        specs: dict[str, CronWorkflowSpec] = {}
        messages: list[str] = []
        for entry in manifests.entries:
            if isinstance(entry, LoadedCronWorkflow):
                if entry.key in specs:
                    messages.append(
                        f"{entry.source} {entry.key}: defined twice in this file: the first "
                        "definition is used; each namespace/name must be unique"
                    )
                    continue
                specs[entry.key] = entry.spec
            elif isinstance(entry, ManifestError):
                where = f"{entry.source} {entry.key}" if entry.key else str(entry.source)
                messages.extend(f"{where}: {message}" for message in entry.messages)
        if messages:
            for message in messages:
                log.error("cannot load manifest: %s", message)
            # Keep what the file defined before: a half-edited file changes nothing.
            kept = old.specs if old is not None else specs
            return _FileState(signature, kept, FileProblem(str(path), tuple(messages)))
        return _FileState(signature, specs, None)

    def _snapshot(self) -> Snapshot:
        cron_workflows: dict[str, CronWorkflowSpec] = {}
        origin: dict[str, Path] = {}
        problems: list[FileProblem] = []
        for path in sorted(self._files):
            state = self._files[path]
            if state.problem is not None:
                problems.append(state.problem)
            for key, spec in state.specs.items():
                if key in cron_workflows:
                    problems.append(
                        FileProblem(
                            str(path),
                            (
                                f"{key} is also defined in {origin[key]}: the first "
                                "definition is used; each namespace/name must be unique",
                            ),
                        )
                    )
                    continue
                cron_workflows[key] = spec
                origin[key] = path
        return Snapshot(cron_workflows, tuple(problems))
