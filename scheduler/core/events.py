"""What sources and sinks hand the core: values shared by every adapter family.

An adapter never imports another family's module for a type: a source of CronWorkflows, the
HTTP endpoint that shows its problems and the service that applies its snapshots all meet here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.spec import CronWorkflowSpec

__all__ = ["FileProblem", "Snapshot"]


@dataclass(frozen=True)
class FileProblem:
    """A file (or document, or folder) that could not be loaded, with its messages."""

    file: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """Every CronWorkflow found, by ``namespace/name``, and what could not be loaded."""

    cron_workflows: dict[str, CronWorkflowSpec] = field(default_factory=dict)
    problems: tuple[FileProblem, ...] = ()
    """Files that fail to load now (unreadable, invalid YAML, not a usable manifest) and
    definitions ignored as duplicates. Each keeps what it defined before; none of them stops
    the service from doing its job for the rest."""
    scan_errors: tuple[FileProblem, ...] = ()
    """Folders and configured paths that cannot be listed now, sorted by path. Every file that
    was under them keeps what it defined before, but files added, changed or removed there
    are not seen until the folder can be listed again."""

    def error_counts(self) -> dict[str, int]:
        """How many folders cannot be listed (``listing``) and how many files have a problem
        (``file``), now."""
        return {
            "listing": len(self.scan_errors),
            "file": len({problem.file for problem in self.problems}),
        }
