"""`cronwf lint`: validate every CronWorkflow in the given files or folders, as `argo cron
lint` does.

Each CronWorkflow is one report (file, document, CronWorkflow, valid, errors, warnings): in
text one line per fact, `ok`, `error` or `warning` first; in JSON the list of reports, the
loader's notices on stderr. Fields that neither Argo nor Kubernetes defines are errors under
`--strict` (the default, as Argo's) and warnings with `--strict=false`; they come first, since
a typo'd field is often the cause of the errors after it. "Fires in the next 5 years" is
judged from the wall clock (:func:`scheduler.cli._args.now`). Exit 0 when every CronWorkflow
is valid, 1 otherwise or when none was found.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from policies.validation import Validation, validate
from scheduler.cli import _args
from scheduler.cli._report import print_nothing_found, print_notice
from scheduler.manifests.loading import (
    LoadedCronWorkflow,
    ManifestError,
    ManifestNotice,
    load_paths,
)

__all__ = ["add_command"]


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    command = commands.add_parser(
        "lint",
        help="validate CronWorkflow manifests",
        description="Validate every CronWorkflow in the given YAML files or folders. "
        "Exit 0 when all are valid, 1 otherwise.",
    )
    _args.add_paths_argument(command)
    _args.add_output_option(command)
    _args.add_boolean_flag(
        command,
        "--strict",
        default=True,
        help="report fields that neither Argo nor Kubernetes defines as errors, as "
        "`argo cron lint` does (default: true); --strict=false makes them warnings",
    )
    command.set_defaults(handler=_run_lint)


def _run_lint(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifests = load_paths(args.paths)
    now = _args.now()
    reports: list[dict[str, Any]] = []
    for item in manifests.items:
        if isinstance(item, ManifestNotice):
            print_notice(item, err if args.output == "json" else out)
            continue
        report = _lint_report(item, now, strict=args.strict)
        reports.append(report)
        if args.output == "text":
            _print_lint_report(report, out)
    if not reports:
        print_nothing_found(args.paths, err if args.output == "json" else out)
    if args.output == "json":
        json.dump(reports, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(_lint_summary(reports) + "\n")
    return 0 if reports and all(report["valid"] for report in reports) else 1


def _lint_report(
    entry: LoadedCronWorkflow | ManifestError, now: datetime.datetime, *, strict: bool = True
) -> dict[str, Any]:
    if isinstance(entry, ManifestError):
        return {
            "file": entry.source.file,
            "document": entry.source.document,
            "cronWorkflow": entry.key,
            "valid": False,
            "errors": list(entry.messages),
            "warnings": [],
        }
    validation: Validation = validate(entry.spec, now)
    # Unknown fields first: they are where they are in the document, and a typo'd field is
    # often the cause of a validation error after it (`schedule` misspelled, none left).
    unknown = list(entry.unknown_fields)
    errors = (unknown if strict else []) + list(validation.errors)
    return {
        "file": entry.source.file,
        "document": entry.source.document,
        "cronWorkflow": entry.key,
        "valid": not errors,
        "errors": errors,
        "warnings": ([] if strict else unknown) + list(entry.warnings) + list(validation.warnings),
    }


def _where(report: dict[str, Any]) -> str:
    where = report["file"]
    if report["document"] is not None:
        where += f" (document {report['document']})"
    if report["cronWorkflow"] is not None:
        where += f" {report['cronWorkflow']}"
    return str(where)


def _print_lint_report(report: dict[str, Any], out: TextIO) -> None:
    where = _where(report)
    if report["valid"]:
        out.write(f"ok      {where}\n")
    for error in report["errors"]:
        out.write(f"error   {where}: {error}\n")
    for warning in report["warnings"]:
        out.write(f"warning {where}: {warning}\n")


def _lint_summary(reports: list[dict[str, Any]]) -> str:
    valid = sum(1 for report in reports if report["valid"])
    invalid = len(reports) - valid
    warnings = sum(len(report["warnings"]) for report in reports)
    noun = "CronWorkflow" if len(reports) == 1 else "CronWorkflows"
    return (
        f"{len(reports)} {noun}: {valid} valid, {invalid} invalid, "
        f"{warnings} warning{'' if warnings == 1 else 's'}"
    )
