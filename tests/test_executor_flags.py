"""``cronwf serve``'s cap on local runs: flags, environment variables, and the wiring from the
command line to the executor and the metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from scheduler.adapters.local.executor import DEFAULT_MAX_LOCAL_RUNS, DEFAULT_MAX_WAITING_LOCAL_RUNS
from scheduler.cli import build_parser
from scheduler.core.memory import MemoryHistory
from scheduler.runtime.service import Service, ServiceConfig


def test_thirty_two_local_runs_and_a_thousand_waiting_by_default() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.max_local_runs, args.max_waiting_local_runs) == (32, 1_000)
    assert (DEFAULT_MAX_LOCAL_RUNS, DEFAULT_MAX_WAITING_LOCAL_RUNS) == (32, 1_000)


def test_the_caps_come_from_flags_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = build_parser().parse_args
    args = parse(["serve", "--max-local-runs", "4", "--max-waiting-local-runs", "0"])
    assert (args.max_local_runs, args.max_waiting_local_runs) == (4, 0)
    monkeypatch.setenv("CRONWF_MAX_LOCAL_RUNS", "8")
    monkeypatch.setenv("CRONWF_MAX_WAITING_LOCAL_RUNS", "50")
    args = build_parser().parse_args(["serve"])
    assert (args.max_local_runs, args.max_waiting_local_runs) == (8, 50)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-local-runs", "0"], "argument --max-local-runs: must be between 1 and"),
        (["--max-waiting-local-runs", "-1"], "--max-waiting-local-runs: must be between 0 and"),
        (["--max-local-runs", "lots"], "argument --max-local-runs: 'lots' is not a whole number"),
    ],
)
def test_a_bad_cap_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_service_hands_the_caps_to_its_executor_and_exposes_its_slots(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    config = ServiceConfig(
        manifests=(tmp_path / "manifests",),
        state_dir=tmp_path / "state",
        max_local_runs=3,
        max_waiting_local_runs=7,
    )
    service = Service(config, store=MemoryHistory())
    assert service.executor is not None
    assert (service.executor._max_running, service.executor._max_waiting) == (3, 7)

    text = generate_latest(service.registry).decode()

    assert 'cronwf_local_runs{state="running"} 0.0' in text
    assert 'cronwf_local_runs{state="waiting"} 0.0' in text
    assert "cronwf_local_runs_refused_total 0.0" in text
