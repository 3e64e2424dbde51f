"""`cronwf simulate`: scenarios through the command line, checked against SIMULATE.md.

Each test writes CronWorkflow manifests to a temporary folder, runs ``cronwf simulate -o json``
in-process and compares the exact list of events and the final state with what SIMULATE.md and
DESIGN.md §4-§6 say must happen: stop strategies, ``when`` guards, the three concurrency
policies, downtime and catch-up, seeded status, coinciding schedules, DST days, spec and
expression errors. Then the contract of the command itself: determinism, the text form, exit
codes, and a window whose both ends are included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler.cli import main

DAY = "2026-03-02"  # a Monday, far from any DST change in the zones used below
NEEDS_LAST_SCHEDULED_TIME = "{{= (now() - cronworkflow.lastScheduledTime).Seconds() > 60 }}"
# Argo's documented guard against the repeated hour of a fall-back day.
FALL_BACK_GUARD = (
    "{{= cronworkflow.lastScheduledTime == nil || "
    "(now() - cronworkflow.lastScheduledTime).Seconds() > 7200 }}"
)


def t(clock: str, day: str = DAY) -> str:
    """``00:05`` or ``00:05:30`` on ``day``, as simulate prints it."""
    if clock.count(":") == 1:
        clock += ":00"
    return f"{day}T{clock}Z"


def unix(time: str) -> int:
    return int(datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp())


def write_manifest(
    folder: Path,
    *,
    name: str = "job",
    schedules: Sequence[str] = ("*/5 * * * *",),
    namespace: str | None = None,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> Path:
    """A CronWorkflow manifest (JSON is YAML); ``spec`` takes Argo's camelCase fields."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    document: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": metadata,
        "spec": {
            "schedules": list(schedules),
            **spec,
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
            },
        },
    }
    if status is not None:
        document["status"] = status
    path = folder / f"{namespace or 'default'}-{name}.yaml"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> tuple[int, str, str]:
    """``cronwf ARGV`` in-process: (exit code, stdout, stderr), usage errors included."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def simulate(
    capsys: pytest.CaptureFixture[str],
    paths: Path | Sequence[Path],
    start: str,
    end: str,
    *options: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``cronwf simulate -o json``; return (events, final), requiring success."""
    listed = [paths] if isinstance(paths, Path) else list(paths)
    argv = ["simulate", *map(str, listed), "--start", start, "--end", end, *options, "-o", "json"]
    code, out, err = run_cli(capsys, argv)
    assert (code, err) == (0, ""), err
    output = json.loads(out)
    assert set(output) == {"events", "final"}
    return output["events"], output["final"]


# -- expected events, in SIMULATE.md's shapes ------------------------------------------------


def workflow(time: str, key: str = "default/job") -> str:
    """The Workflow of the instant ``time`` (DESIGN §7)."""
    return f"{key.split('/')[1]}-{unix(time)}"


def spawned(time: str, scheduled: str | None = None, key: str = "default/job") -> dict[str, Any]:
    scheduled = time if scheduled is None else scheduled
    return {
        "time": time,
        "cronWorkflow": key,
        "event": "Spawned",
        "scheduledTime": scheduled,
        "workflow": workflow(scheduled, key),
    }


def completed(
    time: str, scheduled: str, phase: str = "Succeeded", key: str = "default/job"
) -> dict[str, Any]:
    return {
        "time": time,
        "cronWorkflow": key,
        "event": "Completed",
        "workflow": workflow(scheduled, key),
        "phase": phase,
    }


def skipped(time: str, reason: str, key: str = "default/job") -> dict[str, Any]:
    return {
        "time": time,
        "cronWorkflow": key,
        "event": "Skipped",
        "scheduledTime": time,
        "reason": reason,
    }


def missed(time: str, scheduled: str, reason: str, key: str = "default/job") -> dict[str, Any]:
    return {
        "time": time,
        "cronWorkflow": key,
        "event": "Missed",
        "scheduledTime": scheduled,
        "reason": reason,
    }


def terminated(time: str, scheduled: str, key: str = "default/job") -> dict[str, Any]:
    return {
        "time": time,
        "cronWorkflow": key,
        "event": "Terminated",
        "workflow": workflow(scheduled, key),
    }


def stopped(time: str, key: str = "default/job") -> dict[str, Any]:
    return {"time": time, "cronWorkflow": key, "event": "Stopped"}


def final(
    succeeded: int = 0,
    failed: int = 0,
    consecutive_succeeded: int = 0,
    consecutive_failed: int = 0,
    phase: str = "",
    last: str | None = None,
    active: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "succeeded": succeeded,
        "failed": failed,
        "consecutiveSucceeded": consecutive_succeeded,
        "consecutiveFailed": consecutive_failed,
        "phase": phase,
        "lastScheduledTime": last,
        "active": list(active),
    }


# --------------------------------------------------------------------------------------------
# Stop strategies


def test_stop_after_three_failures_spawns_three_times_then_skips_as_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, stopStrategy={"expression": "cronworkflow.failed >= 3"})

    events, finals = simulate(capsys, path, t("00:00"), t("00:30"), "--outcomes", "Failed")

    assert events == [
        spawned(t("00:00")),
        completed(t("00:00:30"), t("00:00"), "Failed"),
        spawned(t("00:05")),
        completed(t("00:05:30"), t("00:05"), "Failed"),
        spawned(t("00:10")),
        completed(t("00:10:30"), t("00:10"), "Failed"),
        stopped(t("00:10:30")),
        skipped(t("00:15"), "Stopped"),
        skipped(t("00:20"), "Stopped"),
        skipped(t("00:25"), "Stopped"),
        skipped(t("00:30"), "Stopped"),
    ]
    assert finals == {
        "default/job": final(
            failed=3, consecutive_failed=3, phase="Stopped", last=t("00:10"), active=()
        )
    }


def test_runs_active_when_the_cron_workflow_stops_still_finish_and_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Argo's documented caveat: completions can exceed the intended maximum; Stopped once."""
    path = write_manifest(tmp_path, stopStrategy={"expression": "cronworkflow.failed >= 3"})

    events, finals = simulate(
        capsys, path, t("00:00"), t("00:35"), "--outcomes", "Failed", "--run-duration", "12m"
    )

    assert events == [
        spawned(t("00:00")),
        spawned(t("00:05")),
        spawned(t("00:10")),
        completed(t("00:12"), t("00:00"), "Failed"),
        spawned(t("00:15")),
        completed(t("00:17"), t("00:05"), "Failed"),
        spawned(t("00:20")),
        completed(t("00:22"), t("00:10"), "Failed"),
        stopped(t("00:22")),
        skipped(t("00:25"), "Stopped"),
        completed(t("00:27"), t("00:15"), "Failed"),
        skipped(t("00:30"), "Stopped"),
        completed(t("00:32"), t("00:20"), "Failed"),
        skipped(t("00:35"), "Stopped"),
    ]
    assert finals["default/job"] == final(
        failed=5, consecutive_failed=5, phase="Stopped", last=t("00:20")
    )


def test_stop_on_a_streak_of_consecutive_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two failures in total do not stop it; two in a row do."""
    path = write_manifest(
        tmp_path, stopStrategy={"expression": "cronworkflow.consecutiveFailed >= 2"}
    )

    events, finals = simulate(
        capsys, path, t("00:00"), t("00:25"), "--outcomes", "Failed,Succeeded,Failed,Failed"
    )

    assert events == [
        spawned(t("00:00")),
        completed(t("00:00:30"), t("00:00"), "Failed"),
        spawned(t("00:05")),
        completed(t("00:05:30"), t("00:05"), "Succeeded"),
        spawned(t("00:10")),
        completed(t("00:10:30"), t("00:10"), "Failed"),
        spawned(t("00:15")),
        completed(t("00:15:30"), t("00:15"), "Failed"),
        stopped(t("00:15:30")),
        skipped(t("00:20"), "Stopped"),
        skipped(t("00:25"), "Stopped"),
    ]
    assert finals["default/job"] == final(
        succeeded=1, failed=3, consecutive_failed=2, phase="Stopped", last=t("00:15")
    )


def test_the_last_outcome_repeats_and_error_counts_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path)

    events, finals = simulate(capsys, path, t("00:00"), t("00:15"), "--outcomes", "Succeeded,Error")

    phases = [event["phase"] for event in events if event["event"] == "Completed"]
    assert phases == ["Succeeded", "Error", "Error"]
    assert finals["default/job"] == final(
        succeeded=1,
        failed=2,
        consecutive_failed=2,
        phase="Active",
        last=t("00:15"),
        active=[workflow(t("00:15"))],
    )


# --------------------------------------------------------------------------------------------
# when


def test_when_guard_skips_the_repeated_hour_of_a_fall_back_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Argo's DST pattern: 01:30 happens twice on 2025-11-02 in New York; the guard runs one."""
    path = write_manifest(
        tmp_path, schedules=["30 1 * * *"], timezone="America/New_York", when=FALL_BACK_GUARD
    )

    events, finals = simulate(capsys, path, "2025-11-01T00:00:00Z", "2025-11-03T12:00:00Z")

    assert events == [
        spawned("2025-11-01T05:30:00Z"),  # 01:30 EDT
        completed("2025-11-01T05:30:30Z", "2025-11-01T05:30:00Z"),
        spawned("2025-11-02T05:30:00Z"),  # 01:30 EDT, the first of the day
        completed("2025-11-02T05:30:30Z", "2025-11-02T05:30:00Z"),
        skipped("2025-11-02T06:30:00Z", "WhenFalse"),  # 01:30 EST, the repeat
        spawned("2025-11-03T06:30:00Z"),  # 01:30 EST
        completed("2025-11-03T06:30:30Z", "2025-11-03T06:30:00Z"),
    ]
    assert finals["default/job"] == final(
        succeeded=3, consecutive_succeeded=3, phase="Active", last="2025-11-03T06:30:00Z"
    )


def test_when_that_fails_to_evaluate_is_a_submission_error_counted_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No lastScheduledTime yet: ``now() - nil`` is an error at every tick, never a run."""
    path = write_manifest(tmp_path, when=NEEDS_LAST_SCHEDULED_TIME)

    events, finals = simulate(capsys, path, t("00:00"), t("00:10"))

    assert [(e["time"], e["event"], e["reason"]) for e in events] == [
        (t("00:00"), "Error", "SubmissionError"),
        (t("00:05"), "Error", "SubmissionError"),
        (t("00:10"), "Error", "SubmissionError"),
    ]
    for event in events:
        assert set(event) == {"time", "cronWorkflow", "event", "reason", "message"}
        assert event["cronWorkflow"] == "default/job"
        assert event["message"].startswith("run policy error: ")
        assert event["message"] == events[0]["message"]
    assert finals["default/job"] == final(failed=3, consecutive_failed=3)


# --------------------------------------------------------------------------------------------
# Concurrency policies


def test_forbid_skips_ticks_while_a_long_run_is_active(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, concurrencyPolicy="Forbid")

    events, finals = simulate(capsys, path, t("00:00"), t("00:30"), "--run-duration", "12m")

    assert events == [
        spawned(t("00:00")),
        skipped(t("00:05"), "ConcurrencyForbid"),
        skipped(t("00:10"), "ConcurrencyForbid"),
        completed(t("00:12"), t("00:00")),
        spawned(t("00:15")),
        skipped(t("00:20"), "ConcurrencyForbid"),
        skipped(t("00:25"), "ConcurrencyForbid"),
        completed(t("00:27"), t("00:15")),
        spawned(t("00:30")),
    ]
    assert finals["default/job"] == final(
        succeeded=2,
        consecutive_succeeded=2,
        phase="Active",
        last=t("00:30"),
        active=[workflow(t("00:30"))],
    )


def test_a_run_finishing_at_a_tick_is_completed_before_the_tick_is_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, concurrencyPolicy="Forbid")

    events, _ = simulate(capsys, path, t("00:00"), t("00:05"), "--run-duration", "5m")

    assert events == [
        spawned(t("00:00")),
        completed(t("00:05"), t("00:00")),
        spawned(t("00:05")),
    ]


def test_replace_terminates_the_active_run_before_spawning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, concurrencyPolicy="Replace")

    events, finals = simulate(capsys, path, t("00:00"), t("00:10"), "--run-duration", "12m")

    assert events == [
        spawned(t("00:00")),
        terminated(t("00:05"), t("00:00")),
        spawned(t("00:05")),
        completed(t("00:05"), t("00:00"), "Failed"),
        terminated(t("00:10"), t("00:05")),
        spawned(t("00:10")),
        completed(t("00:10"), t("00:05"), "Failed"),
    ]
    assert finals["default/job"] == final(
        failed=2,
        consecutive_failed=2,
        phase="Active",
        last=t("00:10"),
        active=[workflow(t("00:10"))],
    )


def test_replace_at_a_catch_up_tick_completes_the_terminated_run_right_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIMULATE.md: a Replace tick's terminated runs complete right after the tick, catch-up
    ticks included; a terminated run is never terminated twice."""
    path = write_manifest(tmp_path, concurrencyPolicy="Replace", startingDeadlineSeconds=600)

    events, finals = simulate(
        capsys,
        path,
        t("00:00"),
        t("00:10"),
        "--run-duration",
        "1h",
        "--down",
        f"{t('00:04')}/{t('00:07')}",
    )

    assert events == [
        spawned(t("00:00")),
        terminated(t("00:07"), t("00:00")),
        spawned(t("00:07"), t("00:05")),
        completed(t("00:07"), t("00:00"), "Failed"),
        terminated(t("00:10"), t("00:05")),
        spawned(t("00:10")),
        completed(t("00:10"), t("00:05"), "Failed"),
    ]
    assert finals["default/job"] == final(
        failed=2,
        consecutive_failed=2,
        phase="Active",
        last=t("00:10"),
        active=[workflow(t("00:10"))],
    )


def test_allow_lets_runs_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_manifest(tmp_path, concurrencyPolicy="Allow")

    events, finals = simulate(capsys, path, t("00:00"), t("00:15"), "--run-duration", "12m")

    assert events == [
        spawned(t("00:00")),
        spawned(t("00:05")),
        spawned(t("00:10")),
        completed(t("00:12"), t("00:00")),
        spawned(t("00:15")),
    ]
    assert finals["default/job"] == final(
        succeeded=1,
        consecutive_succeeded=1,
        phase="Active",
        last=t("00:15"),
        active=[workflow(t("00:05")), workflow(t("00:10")), workflow(t("00:15"))],
    )


def test_suspended_cron_workflow_skips_every_tick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, suspend=True)

    events, finals = simulate(capsys, path, t("00:00"), t("00:15"))

    assert events == [
        skipped(t("00:00"), "Suspended"),
        skipped(t("00:05"), "Suspended"),
        skipped(t("00:10"), "Suspended"),
        skipped(t("00:15"), "Suspended"),
    ]
    assert finals["default/job"] == final()


# --------------------------------------------------------------------------------------------
# Downtime and catch-up


def test_downtime_within_the_deadline_runs_the_latest_missed_instant_when_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, schedules=["* * * * *"], startingDeadlineSeconds=300)

    events, finals = simulate(
        capsys,
        path,
        t("00:00"),
        t("00:04"),
        "--run-duration",
        "20s",
        "--down",
        f"{t('00:00:30')}/{t('00:03:10')}",
    )

    assert events == [
        spawned(t("00:00")),
        completed(t("00:00:20"), t("00:00")),
        missed(t("00:03:10"), t("00:01"), "superseded"),
        missed(t("00:03:10"), t("00:02"), "superseded"),
        spawned(t("00:03:10"), t("00:03")),
        completed(t("00:03:30"), t("00:03")),
        spawned(t("00:04")),
    ]
    assert finals["default/job"] == final(
        succeeded=2,
        consecutive_succeeded=2,
        phase="Active",
        last=t("00:04"),
        active=[workflow(t("00:04"))],
    )


def test_downtime_beyond_the_deadline_misses_every_instant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, schedules=["* * * * *"], startingDeadlineSeconds=30)

    events, finals = simulate(
        capsys,
        path,
        t("00:00"),
        t("00:04"),
        "--run-duration",
        "20s",
        "--down",
        f"{t('00:00:30')}/{t('00:03:45')}",
    )

    assert events == [
        spawned(t("00:00")),
        completed(t("00:00:20"), t("00:00")),
        missed(t("00:03:45"), t("00:01"), "superseded"),
        missed(t("00:03:45"), t("00:02"), "superseded"),
        missed(t("00:03:45"), t("00:03"), "deadline"),
        spawned(t("00:04")),
    ]
    assert finals["default/job"]["lastScheduledTime"] == t("00:04")


def test_downtime_without_a_deadline_never_catches_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path)

    events, _ = simulate(
        capsys, path, t("00:00"), t("00:08"), "--down", f"{t('00:01')}/{t('00:07')}"
    )

    assert events == [
        spawned(t("00:00")),
        completed(t("00:00:30"), t("00:00")),
        missed(t("00:07"), t("00:05"), "deadline"),
    ]


def test_completions_during_downtime_are_handled_in_time_order_before_the_catch_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With Forbid, handling the completion after the catch-up would wrongly skip the run."""
    path = write_manifest(
        tmp_path, schedules=["* * * * *"], concurrencyPolicy="Forbid", startingDeadlineSeconds=600
    )

    events, finals = simulate(
        capsys,
        path,
        t("00:00"),
        t("00:05:10"),
        "--run-duration",
        "150s",
        "--outcomes",
        "Succeeded,Failed",
        "--down",
        f"{t('00:00:30')}/{t('00:05:10')}",
    )

    assert events == [
        spawned(t("00:00")),
        completed(t("00:05:10"), t("00:00")),
        missed(t("00:05:10"), t("00:01"), "superseded"),
        missed(t("00:05:10"), t("00:02"), "superseded"),
        missed(t("00:05:10"), t("00:03"), "superseded"),
        missed(t("00:05:10"), t("00:04"), "superseded"),
        spawned(t("00:05:10"), t("00:05")),
    ]
    assert finals["default/job"] == final(
        succeeded=1,
        consecutive_succeeded=1,
        phase="Active",
        last=t("00:05"),
        active=[workflow(t("00:05"))],
    )


def test_several_completions_during_downtime_are_handled_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, schedules=["* * * * *"], startingDeadlineSeconds=600)

    events, finals = simulate(
        capsys,
        path,
        t("00:00"),
        t("00:05:10"),
        "--run-duration",
        "150s",
        "--outcomes",
        "Succeeded,Failed",
        "--down",
        f"{t('00:01:30')}/{t('00:05:10')}",
    )

    assert events == [
        spawned(t("00:00")),
        spawned(t("00:01")),
        completed(t("00:05:10"), t("00:00"), "Succeeded"),
        completed(t("00:05:10"), t("00:01"), "Failed"),
        missed(t("00:05:10"), t("00:02"), "superseded"),
        missed(t("00:05:10"), t("00:03"), "superseded"),
        missed(t("00:05:10"), t("00:04"), "superseded"),
        spawned(t("00:05:10"), t("00:05")),
    ]
    assert finals["default/job"] == final(
        succeeded=1,
        failed=1,
        consecutive_failed=1,
        phase="Active",
        last=t("00:05"),
        active=[workflow(t("00:05"))],
    )


def test_a_status_with_an_old_last_scheduled_time_is_caught_up_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Taking over from Argo's controller: counters and lastScheduledTime come from status."""
    status = {
        "lastScheduledTime": "2026-03-01T21:00:00Z",
        "succeeded": 5,
        "failed": 2,
        "phase": "Active",
    }
    path = write_manifest(
        tmp_path, schedules=["0 * * * *"], status=status, startingDeadlineSeconds=600
    )

    events, finals = simulate(capsys, path, t("00:05"), t("01:00"))

    assert events == [
        missed(t("00:05"), "2026-03-01T22:00:00Z", "superseded"),
        missed(t("00:05"), "2026-03-01T23:00:00Z", "superseded"),
        spawned(t("00:05"), t("00:00")),
        completed(t("00:05:30"), t("00:00")),
        spawned(t("01:00")),
    ]
    assert finals["default/job"] == final(
        succeeded=6,
        failed=2,
        consecutive_succeeded=1,
        phase="Active",
        last=t("01:00"),
        active=[workflow(t("01:00"))],
    )


def annotate(path: Path, annotations: dict[str, str]) -> Path:
    """Give the manifest at ``path`` these metadata annotations."""
    document = json.loads(path.read_text())
    document["metadata"]["annotations"] = annotations
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def test_a_manifest_whose_last_used_schedule_is_another_schedule_has_nothing_outstanding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exported from a cluster after a schedule change: the status belongs to the old
    schedule, and as in the service (and Argo) nothing outstanding runs."""
    status = {"lastScheduledTime": "2026-03-01T21:00:00Z", "succeeded": 5}
    path = write_manifest(
        tmp_path, schedules=["0 * * * *"], status=status, startingDeadlineSeconds=600
    )
    annotate(path, {"cronworkflows.argoproj.io/last-used-schedule": "30 * * * *"})

    events, finals = simulate(capsys, path, t("00:05"), t("01:00"))

    assert events == [spawned(t("01:00"))]
    assert finals["default/job"]["succeeded"] == 5


def test_a_manifest_with_the_cursor_annotation_under_its_schedule_starts_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exported from a cluster where cronwf skipped instants after its last spawn: those
    were decided, and only the instants after the cursor are outstanding."""
    status = {"lastScheduledTime": "2026-03-01T21:00:00Z", "succeeded": 5}
    path = write_manifest(
        tmp_path, schedules=["0 * * * *"], status=status, startingDeadlineSeconds=600
    )
    annotate(
        path,
        {
            "cronworkflows.argoproj.io/last-used-schedule": "0 * * * *",
            "cronwf.io/last-decided-time": "2026-03-01T22:00:00Z",
        },
    )

    events, _ = simulate(capsys, path, t("00:05"), t("00:30"))

    assert events == [
        missed(t("00:05"), "2026-03-01T23:00:00Z", "superseded"),
        spawned(t("00:05"), t("00:00")),
        completed(t("00:05:30"), t("00:00")),
    ]


def test_a_status_with_counters_only_starts_the_cursor_before_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, status={"succeeded": 5, "failed": 2})

    events, finals = simulate(capsys, path, t("00:02"), t("00:05"))

    assert events == [spawned(t("00:05"))]
    assert finals["default/job"] == final(
        succeeded=5, failed=2, phase="Active", last=t("00:05"), active=[workflow(t("00:05"))]
    )


def test_runs_listed_in_the_status_do_not_block_the_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIMULATE.md seeds only succeeded, failed and lastScheduledTime from the status: a run
    in status.active is unknown to the simulated controller, never finishes, and with Forbid
    would skip every tick of the window."""
    status = {
        "active": [{"kind": "Workflow", "name": "job-1772409000", "namespace": "default"}],
        "succeeded": 1,
    }
    path = write_manifest(tmp_path, concurrencyPolicy="Forbid", status=status)

    events, finals = simulate(capsys, path, t("00:00"), t("00:05"))

    assert events == [
        spawned(t("00:00")),
        completed(t("00:00:30"), t("00:00")),
        spawned(t("00:05")),
    ]
    assert finals["default/job"] == final(
        succeeded=2,
        consecutive_succeeded=1,
        phase="Active",
        last=t("00:05"),
        active=[workflow(t("00:05"))],
    )


# --------------------------------------------------------------------------------------------
# Schedules


def test_two_schedules_at_the_same_instant_spawn_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, schedules=["0 * * * *", "*/30 * * * *"])

    events, finals = simulate(capsys, path, t("00:00"), t("02:00"))

    spawns = [e["scheduledTime"] for e in events if e["event"] == "Spawned"]
    assert spawns == [t("00:00"), t("00:30"), t("01:00"), t("01:30"), t("02:00")]
    assert [e["event"] for e in events].count("Completed") == 4
    assert finals["default/job"]["succeeded"] == 4


def test_spring_forward_skips_the_missing_local_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2025-03-09 in New York has no 02:30."""
    path = write_manifest(tmp_path, schedules=["30 2 * * *"], timezone="America/New_York")

    events, _ = simulate(capsys, path, "2025-03-08T00:00:00Z", "2025-03-10T23:59:00Z")

    spawns = [e["scheduledTime"] for e in events if e["event"] == "Spawned"]
    assert spawns == ["2025-03-08T07:30:00Z", "2025-03-10T06:30:00Z"]


def test_fall_back_fires_twice_at_the_repeated_local_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2025-11-02 in New York has 01:30 EDT and 01:30 EST."""
    path = write_manifest(tmp_path, schedules=["30 1 * * *"], timezone="America/New_York")

    events, _ = simulate(capsys, path, "2025-11-01T12:00:00Z", "2025-11-02T12:00:00Z")

    spawns = [e["scheduledTime"] for e in events if e["event"] == "Spawned"]
    assert spawns == ["2025-11-02T05:30:00Z", "2025-11-02T06:30:00Z"]


def test_an_invalid_cron_workflow_reports_a_spec_error_and_never_fires(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Argo's TestSpecError: the malformed schedule's message, once."""
    path = write_manifest(tmp_path, schedules=["10 * * 12737123 *"], timezone="America/Los_Angeles")

    events, finals = simulate(capsys, path, t("00:00"), t("06:00"))

    assert events == [
        {
            "time": t("00:00"),
            "cronWorkflow": "default/job",
            "event": "Error",
            "reason": "SpecError",
            "message": "cron schedule 10 * * 12737123 * is malformed: "
            "end of range (12737123) above maximum (12): 12737123",
        }
    ]
    assert finals == {"default/job": final()}


def test_an_expression_that_does_not_compile_is_a_spec_error_and_never_fires(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DESIGN §3 rule 7; SIMULATE.md: invalid CronWorkflows produce an Error event."""
    path = write_manifest(tmp_path, stopStrategy={"expression": "cronworkflow.failed"})

    events, finals = simulate(capsys, path, t("00:00"), t("00:30"))

    assert [(e["time"], e["event"], e["reason"]) for e in events] == [
        (t("00:00"), "Error", "SpecError")
    ]
    assert "expected a boolean" in events[0]["message"]
    assert finals == {"default/job": final()}


def test_an_invalid_cron_workflow_does_not_stop_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(tmp_path, name="broken", concurrencyPolicy="Sometimes")
    write_manifest(tmp_path, name="fine")

    events, finals = simulate(capsys, tmp_path, t("00:00"), t("00:05"))

    assert [(e["cronWorkflow"], e["event"]) for e in events] == [
        ("default/broken", "Error"),
        ("default/fine", "Spawned"),
        ("default/fine", "Completed"),
        ("default/fine", "Spawned"),
    ]
    assert finals["default/broken"] == final()
    assert finals["default/fine"]["succeeded"] == 1


# --------------------------------------------------------------------------------------------
# The command's contract


def test_cron_workflows_are_handled_in_namespace_and_name_order_at_one_instant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(tmp_path, name="alpha", namespace="zeta")
    write_manifest(tmp_path, name="beta", namespace="alpha")
    write_manifest(tmp_path, name="alpha", namespace="alpha")

    events, finals = simulate(capsys, tmp_path, t("00:00"), t("00:00"))

    assert [(e["cronWorkflow"], e["event"]) for e in events] == [
        ("alpha/alpha", "Spawned"),
        ("alpha/beta", "Spawned"),
        ("zeta/alpha", "Spawned"),
    ]
    assert list(finals) == ["alpha/alpha", "alpha/beta", "zeta/alpha"]


def test_both_ends_of_the_window_are_ticked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path)

    events, _ = simulate(capsys, path, t("00:05"), t("00:15"))

    assert events == [
        spawned(t("00:05")),
        completed(t("00:05:30"), t("00:05")),
        spawned(t("00:10")),
        completed(t("00:10:30"), t("00:10")),
        spawned(t("00:15")),
    ]


def test_instants_before_start_are_not_missed_without_a_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, startingDeadlineSeconds=3600)

    events, _ = simulate(capsys, path, t("00:04"), t("00:05"))

    assert events == [spawned(t("00:05"))]


def test_every_event_has_exactly_the_fields_of_its_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(
        tmp_path,
        name="replaced",
        schedules=["* * * * *"],
        concurrencyPolicy="Replace",
        startingDeadlineSeconds=90,
        stopStrategy={"expression": "cronworkflow.failed >= 2"},
    )
    write_manifest(tmp_path, name="suspended", suspend=True)
    write_manifest(tmp_path, name="broken", timezone="Mars/Olympus_Mons")
    write_manifest(tmp_path, name="plain", schedules=["* * * * *"])  # misses the down window

    events, finals = simulate(
        capsys,
        tmp_path,
        t("00:00"),
        t("00:10"),
        "--run-duration",
        "90s",
        "--down",
        f"{t('00:02:30')}/{t('00:06:10')}",
    )

    common = {"time", "cronWorkflow", "event"}
    extra = {
        "Spawned": {"scheduledTime", "workflow"},
        "Skipped": {"scheduledTime", "reason"},
        "Missed": {"scheduledTime", "reason"},
        "Terminated": {"workflow"},
        "Completed": {"workflow", "phase"},
        "Stopped": set(),
        "Error": {"reason", "message"},
    }
    assert {e["event"] for e in events} == set(extra)
    for event in events:
        assert set(event) == common | extra[event["event"]], event
        assert event["time"].endswith("Z")
    for state in finals.values():
        assert set(state) == set(final())
        assert state["lastScheduledTime"] is None or state["lastScheduledTime"].endswith("Z")


def test_the_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    """Across processes with different hash seeds, for both output forms."""
    write_manifest(
        tmp_path, name="replaced", schedules=["*/2 * * * *"], concurrencyPolicy="Replace"
    )
    write_manifest(tmp_path, name="forbidden", schedules=["* * * * *"], concurrencyPolicy="Forbid")
    write_manifest(
        tmp_path,
        name="stopping",
        schedules=["*/3 * * * *", "*/2 * * * *"],
        namespace="ops",
        startingDeadlineSeconds=300,
        stopStrategy={"expression": "cronworkflow.failed >= 3"},
    )
    argv = [
        str(tmp_path),
        "--start",
        t("00:00"),
        "--end",
        t("01:00"),
        "--run-duration",
        "150s",
        "--outcomes",
        "Succeeded,Failed",
        "--down",
        f"{t('00:20')}/{t('00:26:30')}",
    ]
    program = "import sys; from scheduler.cli import main; sys.exit(main(sys.argv[1:]))"

    def run(seed: str, *output: str) -> bytes:
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", program, "simulate", *argv, *output],
            capture_output=True,
            env=environment,
            check=False,
            timeout=30,
        )
        assert (done.returncode, done.stderr) == (0, b"")
        return done.stdout

    json_output = run("1", "-o", "json")
    assert run("2", "-o", "json") == json_output
    assert run("3") == run("4")
    assert len(json.loads(json_output)["events"]) > 30


def test_text_output_has_one_line_per_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(
        tmp_path, name="replaced", schedules=["*/5 * * * *"], concurrencyPolicy="Replace"
    )
    write_manifest(tmp_path, name="broken", concurrencyPolicy="Sometimes")
    args = [str(tmp_path), "--start", t("00:00"), "--end", t("00:20"), "--run-duration", "7m"]
    events, _ = simulate(capsys, tmp_path, t("00:00"), t("00:20"), "--run-duration", "7m")

    code, out, err = run_cli(capsys, ["simulate", *args])

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "CRONWORKFLOW", "EVENT", "DETAILS"]
    event_lines = lines[1 : 1 + len(events)]
    assert [line.split()[:3] for line in event_lines] == [
        [e["time"], e["cronWorkflow"], e["event"]] for e in events
    ]
    for line, event in zip(event_lines, events, strict=True):
        if "workflow" in event:
            assert event["workflow"] in line
        if "reason" in event:
            assert event["reason"] in line
    assert lines[1 + len(events)] == ""
    assert lines[2 + len(events)] == "FINAL"
    assert len(lines) == 3 + len(events) + 2, "then one line per CronWorkflow"


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--start", "yesterday", "RFC 3339"),
        ("--start", "2026-03-02T00:00:00", "no UTC offset"),
        ("--end", "2026-13-02T00:00:00Z", "--end"),
        ("--down", "2026-03-02T00:10:00Z", "START/END"),
        ("--down", "2026-03-02T00:10:00Z/2026-03-02T00:05:00Z", "after the start"),
        ("--down", "2026-03-02T00:10:00Z/soon", "--down"),
        ("--outcomes", "Succeeded,Running", "Running"),
        ("--outcomes", "", "unknown phase"),
        ("--run-duration", "forever", "duration"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    complaint: str,
) -> None:
    path = write_manifest(tmp_path)
    options = {"--start": t("00:00"), "--end": t("01:00"), option: value}
    argv = ["simulate", str(path)]
    for name, given in options.items():
        argv += [name, given]

    code, out, err = run_cli(capsys, argv)

    assert code == 2
    assert out == ""
    assert complaint in err
    assert "Traceback" not in err


def test_an_end_before_the_start_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path)

    code, out, err = run_cli(
        capsys, ["simulate", str(path), "--start", t("01:00"), "--end", t("00:00")]
    )

    assert (code, out) == (2, "")
    assert "--end" in err


def test_a_manifest_that_fails_to_load_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(tmp_path, name="fine")
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata: {name: broken}\n"
        "spec: {schedules: '*/5 * * * *'}\n"
    )

    code, out, err = run_cli(
        capsys, ["simulate", str(tmp_path), "--start", t("00:00"), "--end", t("00:10")]
    )

    assert (code, out) == (1, "")
    assert "broken.yaml" in err
    assert "cannot simulate" in err


def test_a_suspended_cronworkflow_skips_the_instants_of_a_down_window_never_misses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue: after any gap every instant of a suspended or stopped CronWorkflow was recorded
    Missed (and paged), not Skipped: catch-up now follows the tick order, as Argo's does."""
    path = write_manifest(tmp_path, suspend=True, startingDeadlineSeconds=600)

    events, _ = simulate(
        capsys, path, t("00:00"), t("00:20"), "--down", f"{t('00:02')}/{t('00:16')}"
    )

    skips = [(e["time"], e["scheduledTime"], e["reason"]) for e in events]
    assert [e["event"] for e in events] == ["Skipped"] * 5
    assert skips == [
        (t("00:00"), t("00:00"), "Suspended"),
        (t("00:16"), t("00:05"), "Suspended"),
        (t("00:16"), t("00:10"), "Suspended"),
        (t("00:16"), t("00:15"), "Suspended"),
        (t("00:20"), t("00:20"), "Suspended"),
    ]


def test_a_stopped_cronworkflow_skips_the_instants_of_a_down_window_as_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, stopStrategy={"expression": "cronworkflow.failed >= 1"})

    events, _ = simulate(
        capsys,
        path,
        t("00:00"),
        t("00:20"),
        "--outcomes",
        "Failed",
        "--run-duration",
        "60s",
        "--down",
        f"{t('00:02')}/{t('00:16')}",
    )

    assert "Missed" not in {e["event"] for e in events}
    after = [(e["scheduledTime"], e["reason"]) for e in events if e["event"] == "Skipped"]
    assert after == [
        (t("00:05"), "Stopped"),
        (t("00:10"), "Stopped"),
        (t("00:15"), "Stopped"),
        (t("00:20"), "Stopped"),
    ]
