"""``cronwf serve``'s concurrency flags: defaults, environment variables, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.adapters.kube.client import DEFAULT_SPAWN_WORKERS
from scheduler.cli import build_parser, main


def test_one_tick_worker_and_sixteen_creates_at_once_by_default() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.workers == 1
    assert args.spawn_workers == DEFAULT_SPAWN_WORKERS == 16


def test_the_workers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONWF_WORKERS", "3")
    monkeypatch.setenv("CRONWF_SPAWN_WORKERS", "32")
    args = build_parser().parse_args(["serve"])
    assert (args.workers, args.spawn_workers) == (3, 32)


@pytest.mark.parametrize("flag", ["--workers", "--spawn-workers"])
def test_a_count_of_workers_below_one_is_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", flag, "0"])
    assert exited.value.code == 2
    assert f"argument {flag}: must be between 1 and" in capsys.readouterr().err


def test_a_malformed_worker_count_in_the_environment_is_refused_with_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRONWF_WORKERS", "many")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])
    # The variable is named, not the flag: the operator did not write --workers.
    assert "cronwf serve: error: CRONWF_WORKERS: 'many' is not a whole number" in (
        capsys.readouterr().err
    )


def test_a_manifests_path_that_cannot_be_read_is_an_argument_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file where a folder should be (and, alike, a parent without search permission)."""
    (tmp_path / "manifests").write_text("not a folder\n")

    code = main(["serve", "--manifests", str(tmp_path / "manifests" / "cron.yaml")])

    assert code == 2
    message = capsys.readouterr().err
    assert "cannot read" in message
    assert "permission on it and on every folder above it" in message
