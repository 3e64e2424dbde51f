"""`cronwf next`: the next instants of each CronWorkflow, with the offset of its timezone."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from scheduler.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "manifests" / "examples"
DATA = Path(__file__).parent / "data"
PROBLEMS = DATA / "problems"


def manifest(
    folder: Path, name: str, schedules: list[str], timezone: str = "", namespace: str = ""
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        "apiVersion: argoproj.io/v1alpha1\n"
        "kind: CronWorkflow\n"
        f"metadata: {{name: {name}{f', namespace: {namespace}' if namespace else ''}}}\n"
        "spec:\n"
        f"  schedules: {json.dumps(schedules)}\n"
        f"  timezone: {json.dumps(timezone)}\n"
        "  workflowSpec:\n"
        "    entrypoint: main\n"
        "    templates: [{name: main, container: {image: alpine:3.20}}]\n"
    )
    return path


def next_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["next", "-o", "json", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_spring_forward_instants_print_with_the_offset_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Argo's published example: 01:59 runs on 03-08 in PST, then in PDT."""
    path = manifest(tmp_path, "late-night", ["59 1 * * *"], "America/Los_Angeles")

    code, previews, err = next_json(
        capsys, str(path), "--count", "3", "--from", "2020-03-07T12:00:00Z"
    )

    assert (code, err) == (0, "")
    assert previews == [
        {
            "file": str(path),
            "document": 1,
            "cronWorkflow": "default/late-night",
            "schedules": ["59 1 * * *"],
            "timezone": "America/Los_Angeles",
            "times": [
                "2020-03-08T01:59:00-08:00",
                "2020-03-09T01:59:00-07:00",
                "2020-03-10T01:59:00-07:00",
            ],
        }
    ]


def test_fall_back_repeated_local_time_is_listed_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "late-night", ["59 1 * * *"], "America/Los_Angeles")

    _, previews, _ = next_json(capsys, str(path), "--count", "3", "--from", "2020-10-31T12:00:00Z")

    assert previews[0]["times"] == [
        "2020-11-01T01:59:00-07:00",
        "2020-11-01T01:59:00-08:00",
        "2020-11-02T01:59:00-08:00",
    ]


def test_text_output_lists_each_cron_workflow_then_its_instants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest(tmp_path, "a-paris", ["0 6 * * *", "30 9 * * sat"], "Europe/Paris", "reports")
    manifest(tmp_path, "b-utc", ["*/15 * * * *"])

    code = main(["next", str(tmp_path), "--count", "2", "--from", "2026-03-07T07:00:00+01:00"])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "reports/a-paris (Europe/Paris; 0 6 * * *, 30 9 * * sat)",
        "  2026-03-07T09:30:00+01:00",
        "  2026-03-08T06:00:00+01:00",
        "default/b-utc (UTC; */15 * * * *)",
        "  2026-03-07T06:15:00+00:00",
        "  2026-03-07T06:30:00+00:00",
    ]


def test_instants_are_strictly_after_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "hourly", ["@hourly"])

    _, previews, _ = next_json(capsys, str(path), "--count", "1", "--from", "2026-01-01T10:00:00Z")

    assert previews[0]["times"] == ["2026-01-01T11:00:00+00:00"]


def test_count_sets_how_many_instants_and_defaults_to_five(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "every-two", ["@every 2s"])
    start = "2026-01-01T00:00:00Z"

    _, default, _ = next_json(capsys, str(path), "--from", start)
    _, seven, _ = next_json(capsys, str(path), "--from", start, "--count", "7")

    assert len(default[0]["times"]) == 5
    assert seven[0]["times"][-1] == "2026-01-01T00:00:14+00:00"
    assert len(seven[0]["times"]) == 7


def test_the_examples_have_next_instants(capsys: pytest.CaptureFixture[str]) -> None:
    code, previews, err = next_json(
        capsys, str(EXAMPLES), "--count", "3", "--from", "2026-03-07T12:00:00Z"
    )

    assert (code, err) == (0, "")
    assert len(previews) >= 5
    assert all(len(preview["times"]) == 3 for preview in previews)
    by_name = {preview["cronWorkflow"]: preview for preview in previews}
    assert by_name["default/heartbeat"]["times"][0] == "2026-03-07T12:00:01+00:00"
    assert by_name["default/dst-safe-backup"]["times"][:2] == [
        "2026-03-08T01:30:00-05:00",
        "2026-03-09T01:30:00-04:00",
    ]


def test_without_from_the_instants_start_after_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "every-second", ["@every 1s"])
    before = datetime.datetime.now(datetime.UTC)

    _, previews, _ = next_json(capsys, str(path), "--count", "1")

    first = datetime.datetime.fromisoformat(previews[0]["times"][0])
    assert first > before - datetime.timedelta(seconds=1)
    assert first <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)


def test_a_schedule_that_never_fires_has_no_instants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "never-fires.yaml"

    code, previews, _ = next_json(capsys, str(path), "--from", "2026-01-01T00:00:00Z")
    text_code = main(["next", str(path), "--from", "2026-01-01T00:00:00Z"])

    assert (code, text_code) == (0, 0)
    assert previews[0]["times"] == []
    assert capsys.readouterr().out.splitlines()[1] == (
        "  no instant in the next 5 years: it never fires"
    )


def test_the_deprecated_single_schedule_is_previewed(capsys: pytest.CaptureFixture[str]) -> None:
    path = PROBLEMS / "deprecated-schedule.yaml"

    _, previews, _ = next_json(capsys, str(path), "--count", "1", "--from", "2026-01-01T00:00:00Z")

    assert previews[0]["schedules"] == ["0 6 * * *"]
    assert previews[0]["times"] == ["2026-01-01T06:00:00+00:00"]


def test_invalid_cron_workflows_are_reported_on_stderr_and_exit_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = manifest(tmp_path, "good", ["@hourly"])
    bad_timezone = PROBLEMS / "unknown-timezone.yaml"
    bad_type = PROBLEMS / "schedules-string.yaml"

    code, previews, err = next_json(
        capsys,
        str(good),
        str(bad_timezone),
        str(bad_type),
        "--count",
        "1",
        "--from",
        "2026-01-01T00:00:00Z",
    )

    assert code == 1
    assert [p["cronWorkflow"] for p in previews] == ["default/good", "default/fine"]
    assert err.splitlines() == [
        f"error   {bad_timezone} (document 1) default/zurich-report: "
        'invalid timezone "Europe/Zurch": unknown time zone Europe/Zurch',
        f"error   {bad_type} (document 2) jobs/schedules-as-string: spec.schedules: must be a "
        "list of strings, "
        'got a string; write schedules: ["0 6 * * *"]',
    ]


def test_every_problem_of_an_ill_typed_document_gets_its_own_stderr_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = PROBLEMS / "wrong-types.yaml"

    code, previews, err = next_json(capsys, str(path))

    assert (code, previews) == (1, [])
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(
        line.startswith(f"error   {path} (document 1) default/wrong-types: ") for line in lines
    )
    assert [line.split(": ")[1] for line in lines] == [
        "metadata.labels.enabled",
        "spec.suspend",
        "spec.startingDeadlineSeconds",
    ]


def test_a_missing_path_is_reported_on_stderr_and_exits_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = DATA / "missing.yaml"

    code, previews, err = next_json(capsys, str(missing))

    assert code == 1
    assert previews == []
    assert err == f"error   {missing}: cannot read the file: no such file or directory\n"


@pytest.mark.parametrize(
    ("value", "explanation"),
    [
        ("tomorrow", "'tomorrow' is not an RFC 3339 time"),
        ("2026-03-08T09:30:00", "'2026-03-08T09:30:00' has no UTC offset"),
    ],
)
def test_an_unreadable_from_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], value: str, explanation: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["next", str(EXAMPLES), "--from", value])

    assert exited.value.code == 2
    assert explanation in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-3", "many", "10001"])
def test_a_count_that_is_not_a_positive_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], count: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["next", str(EXAMPLES), "--count", count])

    assert exited.value.code == 2
    assert "--count" in capsys.readouterr().err
