"""What `lint`, `next` and `simulate` say about the manifests they read, said one way.

A notice of the loader (a file skipped, a document of another kind) is one line, its category
first; an entry that could not be read is one `error` line per message, where first (file,
document, CronWorkflow) then what. Zero CronWorkflows found is an error, as in Argo's CLI: a
wrong path or a folder of other manifests would otherwise pass a check that checked nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from scheduler.manifests.loading import ManifestError, ManifestNotice

__all__ = ["print_manifest_error", "print_nothing_found", "print_notice"]


def print_notice(notice: ManifestNotice, stream: TextIO) -> None:
    stream.write(f"{notice.category:<7} {notice}\n")


def print_manifest_error(error: ManifestError, stream: TextIO) -> None:
    where = f"{error.source} {error.key}" if error.key else str(error.source)
    for message in error.messages:
        stream.write(f"error   {where}: {message}\n")


def print_nothing_found(paths: Sequence[str], stream: TextIO) -> None:
    stream.write(
        f"error   no CronWorkflow found in {', '.join(paths)}: searched the *.yaml and *.yml "
        "files (in folders recursively, hidden ones skipped) for documents of kind "
        "CronWorkflow; check the path, or that the manifests say apiVersion: "
        "argoproj.io/v1alpha1 and kind: CronWorkflow\n"
    )
