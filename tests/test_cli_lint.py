"""`cronwf lint`: the contract of DESIGN §11, in text and JSON."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from unprivileged import unprivileged, unprivileged_folder

from scheduler.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "manifests" / "examples"
DATA = Path(__file__).parent / "data"
PROBLEMS = DATA / "problems"
REPORT_KEYS = {"file", "document", "cronWorkflow", "valid", "errors", "warnings"}


def lint_json(
    capsys: pytest.CaptureFixture[str], *paths: Path
) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["lint", "-o", "json", *map(str, paths)])
    captured = capsys.readouterr()
    reports = json.loads(captured.out)
    assert isinstance(reports, list)
    return code, reports, captured.err


def lint_text(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str]]:
    code = main(["lint", *map(str, paths)])
    captured = capsys.readouterr()
    assert captured.err == ""
    return code, captured.out.splitlines()


def test_the_examples_are_all_valid_and_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = lint_text(capsys, EXAMPLES)

    assert code == 0
    *per_cron_workflow, summary = lines
    assert len(per_cron_workflow) >= 5
    assert all(line.startswith(f"ok      {EXAMPLES}/") for line in per_cron_workflow)
    count = len(per_cron_workflow)
    assert summary == f"{count} CronWorkflows: {count} valid, 0 invalid, 0 warnings"


def test_a_text_line_names_the_file_the_document_and_the_cron_workflow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = DATA / "argo" / "hello-world.yaml"

    code, lines = lint_text(capsys, path)

    assert code == 0
    assert lines == [
        f"ok      {path} (document 1) default/hello-world",
        "1 CronWorkflow: 1 valid, 0 invalid, 0 warnings",
    ]


def test_json_is_a_list_of_reports_with_the_documented_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = DATA / "argo" / "from-cluster.yaml"

    code, reports, err = lint_json(capsys, path)

    assert code == 0
    assert err == ""
    assert reports == [
        {
            "file": str(path),
            "document": 1,
            "cronWorkflow": "argo/hello-world",
            "valid": True,
            "errors": [],
            "warnings": [],
        }
    ]


@pytest.mark.parametrize(
    ("fixture", "cron_workflow", "error"),
    [
        (
            "name-too-long.yaml",
            "default/" + "a" * 60,
            f'cron workflow name "{"a" * 60}" must not be more than 52 characters long '
            "(currently 60)",
        ),
        (
            "both-schedule-fields.yaml",
            "default/both-fields",
            "cron workflow cant be configured with both Spec.Schedule and Spec.Schedules",
        ),
        (
            "malformed-schedule.yaml",
            "default/malformed",
            "cron schedule 10 * * 12737123 * is malformed: end of range (12737123) above "
            "maximum (12): 12737123",
        ),
        (
            "unknown-timezone.yaml",
            "default/zurich-report",
            'invalid timezone "Europe/Zurch": unknown time zone Europe/Zurch',
        ),
        (
            "bad-concurrency-policy.yaml",
            "default/lowercase-policy",
            "'forbid' is not a valid concurrencyPolicy",
        ),
        (
            "negative-deadline.yaml",
            "default/negative-deadline",
            "startingDeadlineSeconds must be positive",
        ),
        (
            "entrypoint-no-template.yaml",
            "default/typo-in-entrypoint",
            "cannot validate Workflow: spec.entrypoint template 'mian' undefined: "
            "spec.workflowSpec.entrypoint names no template in spec.workflowSpec.templates",
        ),
    ],
)
def test_an_invalid_cron_workflow_is_reported_with_argos_message_and_exits_one(
    capsys: pytest.CaptureFixture[str], fixture: str, cron_workflow: str, error: str
) -> None:
    path = PROBLEMS / fixture

    code, reports, _ = lint_json(capsys, path)
    text_code, lines = lint_text(capsys, path)

    assert (code, text_code) == (1, 1)
    assert reports == [
        {
            "file": str(path),
            "document": 1,
            "cronWorkflow": cron_workflow,
            "valid": False,
            "errors": [error],
            "warnings": [],
        }
    ]
    assert lines == [
        f"error   {path} (document 1) {cron_workflow}: {error}",
        "1 CronWorkflow: 0 valid, 1 invalid, 0 warnings",
    ]


def test_schedules_given_as_a_string_is_an_entry_naming_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "schedules-string.yaml"

    code, reports, _ = lint_json(capsys, path)

    assert code == 1
    assert [(r["document"], r["cronWorkflow"], r["valid"]) for r in reports] == [
        (1, "default/fine", True),
        (2, "jobs/schedules-as-string", False),
    ]
    assert reports[1]["errors"] == [
        'spec.schedules: must be a list of strings, got a string; write schedules: ["0 6 * * *"]'
    ]


def test_wrong_types_are_one_entry_with_every_field_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "wrong-types.yaml"

    code, lines = lint_text(capsys, path)

    assert code == 1
    prefix = f"error   {path} (document 1) default/wrong-types: "
    assert lines[:3] == [
        prefix
        + 'metadata.labels.enabled: must be a string, got a boolean (true) (quote it: "true")',
        prefix + 'spec.suspend: must be true or false, got a string ("false")',
        prefix + 'spec.startingDeadlineSeconds: must be an integer, got a string ("60")',
    ]
    assert lines[3] == "1 CronWorkflow: 0 valid, 1 invalid, 0 warnings"


def test_missing_metadata_name_is_an_entry_without_a_cron_workflow_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "missing-name.yaml"

    code, reports, _ = lint_json(capsys, path)

    assert code == 1
    assert reports == [
        {
            "file": str(path),
            "document": 1,
            "cronWorkflow": None,
            "valid": False,
            "errors": ["metadata.name: is required"],
            "warnings": [],
        }
    ]


def test_a_yaml_syntax_error_is_an_entry_and_earlier_documents_are_still_linted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "syntax-error.yaml"

    code, reports, _ = lint_json(capsys, path)
    _, lines = lint_text(capsys, path)

    assert code == 1
    assert [(r["document"], r["cronWorkflow"], r["valid"]) for r in reports] == [
        (1, "default/before-the-error", True),
        (2, None, False),
    ]
    assert reports[1]["errors"][0].startswith("invalid YAML at line 19, column 3: ")
    assert lines[1].startswith(f"error   {path} (document 2): invalid YAML at line 19, column 3")


def test_an_unreadable_path_is_an_entry_naming_it_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = DATA / "missing.yaml"

    code, reports, _ = lint_json(capsys, missing, DATA / "argo" / "hello-world.yaml")

    assert code == 1
    assert reports[0] == {
        "file": str(missing),
        "document": None,
        "cronWorkflow": None,
        "valid": False,
        "errors": ["cannot read the file: no such file or directory"],
        "warnings": [],
    }
    assert reports[1]["valid"] is True


def test_a_folder_that_cannot_be_listed_fails_the_lint_naming_the_folder_and_what_to_do() -> None:
    """With real permission bits (in a process of an unprivileged user): a folder that may not
    be read is an error naming it, not an empty folder, and the lint exits 1; the files
    around it are still linted."""
    with unprivileged_folder() as base:
        (base / "ok.yaml").write_text((DATA / "argo" / "hello-world.yaml").read_text())
        locked = base / "locked"
        locked.mkdir()
        (locked / "hidden-from-us.yaml").write_text("")

        def lint() -> tuple[int, str]:
            locked.chmod(0)
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = main(["lint", str(base)])
            return code, out.getvalue()

        code, text = unprivileged(base, lint)

    assert code == 1
    assert text.splitlines() == [
        f"error   {locked}: cannot list the folder: permission denied (this user needs read "
        "and execute permission on the folder); the manifests under it were not read",
        f"ok      {base / 'ok.yaml'} (document 1) default/hello-world",
        "2 CronWorkflows: 1 valid, 1 invalid, 0 warnings",
    ]


def test_other_kinds_are_reported_as_skipped_and_do_not_fail_the_lint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "mixed-kinds.yaml"

    code, lines = lint_text(capsys, path)
    json_code, reports, err = lint_json(capsys, path)

    assert (code, json_code) == (0, 0)
    assert lines == [
        f'skipped {path} (document 1): ConfigMap "report-settings" (v1) is not a CronWorkflow',
        f"ok      {path} (document 2) default/report",
        f'skipped {path} (document 3): WorkflowTemplate "report-template" '
        "(argoproj.io/v1alpha1) is not a CronWorkflow",
        "1 CronWorkflow: 1 valid, 0 invalid, 0 warnings",
    ]
    assert [r["cronWorkflow"] for r in reports] == ["default/report"]
    assert err.splitlines() == [lines[0], lines[2]]


def test_an_empty_file_warns_and_fails_as_nothing_was_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 12: zero CronWorkflows found is an error (exit 1), as in Argo's CLI; it was
    ``ok`` with exit 0. More cases in test_cli_settings.py."""
    path = PROBLEMS / "empty.yaml"

    code, lines = lint_text(capsys, path)
    json_code, reports, err = lint_json(capsys, path)

    assert (code, json_code) == (1, 1)
    assert lines[0] == f"warning {path}: no CronWorkflow found"
    assert lines[1].startswith(f"error   no CronWorkflow found in {path}: searched")
    assert lines[2] == "0 CronWorkflows: 0 valid, 0 invalid, 0 warnings"
    assert reports == []
    assert err.splitlines() == lines[:2]


def test_the_deprecated_single_schedule_is_valid_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "deprecated-schedule.yaml"

    code, lines = lint_text(capsys, path)
    _, reports, _ = lint_json(capsys, path)

    assert code == 0
    assert lines[0] == f"ok      {path} (document 1) default/legacy"
    assert lines[1].startswith(f"warning {path} (document 1) default/legacy: spec.schedule ")
    assert lines[2] == "1 CronWorkflow: 1 valid, 0 invalid, 1 warning"
    assert reports[0]["valid"] is True
    assert reports[0]["warnings"] == [
        "spec.schedule is deprecated (removed in Argo Workflows v4, which ignores it): "
        'write schedules: ["0 6 * * *"]'
    ]


def test_a_schedule_that_never_fires_is_valid_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "never-fires.yaml"

    code, reports, _ = lint_json(capsys, path)

    assert code == 0
    assert reports[0]["valid"] is True
    assert reports[0]["warnings"] == [
        'spec.schedules[0] "0 0 30 2 *" has no instant in the next 5 years: it never fires'
    ]


def test_one_invalid_cron_workflow_among_valid_ones_fails_the_lint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, reports, _ = lint_json(capsys, EXAMPLES, PROBLEMS / "negative-deadline.yaml")

    assert code == 1
    assert [r["valid"] for r in reports].count(False) == 1
    assert all(set(report) == REPORT_KEYS for report in reports)


def test_a_whole_folder_of_problems_is_linted_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = lint_text(capsys, DATA)

    assert code == 1
    assert lines[-1].endswith("warnings")
    assert {line.split()[0] for line in lines[:-1]} == {"ok", "error", "warning", "skipped"}


@pytest.mark.parametrize(
    "argv",
    [["lint"], ["lint", "-o", "yaml", "x.yaml"], ["frobnicate"], []],
)
def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert "usage: cronwf" in capsys.readouterr().err


def test_the_installed_console_script_lints_the_examples() -> None:
    script = Path(sys.executable).parent / "cronwf"

    completed = subprocess.run(
        [str(script), "lint", "-o", "json", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert completed.returncode == 0, completed.stderr
    reports = json.loads(completed.stdout)
    assert len(reports) >= 5
    assert all(report["valid"] for report in reports)

    failing = subprocess.run(
        [str(script), "lint", str(PROBLEMS / "syntax-error.yaml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert failing.returncode == 1
    assert "Traceback" not in failing.stderr
    assert "invalid YAML at line 19, column 3" in failing.stdout
