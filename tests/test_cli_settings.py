"""The command line's settings, zero CronWorkflows found, and Redis URLs (issue 12).

* Every command reads only its own settings: ``CRONWF_PORT=abc cronwf lint ...`` ended in a
  traceback because serve's variables were parsed for every command when the parser was
  built. A bad value, from a flag or a variable, is a usage error (exit 2) naming the one
  the value came from. Every ``CRONWF_`` variable of ``serve`` and ``history`` is covered.
* Zero CronWorkflows found (an empty folder, only other kinds, an empty file) is an error for
  ``lint``, ``next`` and ``simulate``, as in Argo's CLI: a check that checked nothing passed.
* A Redis URL is shown with its password as ``***`` everywhere (``history`` printed it whole
  when there was no history), and a malformed one is a usage error, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RedisServer

from scheduler.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests" / "examples"
CRONWF = Path(sys.executable).with_name("cronwf")
PASSWORD = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def no_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the variables they mean; none of the machine's may leak in."""
    for name in list(os.environ):
        if name.startswith("CRONWF_") or name in ("POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)


def serve_parser() -> argparse.ArgumentParser:
    subcommands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    parser: argparse.ArgumentParser = subcommands.choices["serve"]
    return parser


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``argv``; it must be a usage error (exit 2). The last line of stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err.rstrip("\n").splitlines()[-1]


# -- every CRONWF_ variable of serve: read when serve runs, a bad value named -----------------

DURATIONS = {
    "LOCK_TTL": "lock_ttl",
    "RENEW_INTERVAL": "renew_interval",
    "RELOAD_INTERVAL": "reload_interval",
    "RUN_TIMEOUT": "run_timeout",
    "LATE_AFTER": "late_after",
    "LOST_AFTER": "lost_after",
    "LEASE_DURATION": "lease_duration",
    "RENEW_DEADLINE": "renew_deadline",
    "RETRY_PERIOD": "retry_period",
}

GOOD_VALUES: list[tuple[str, str, str, Any]] = [
    ("MANIFESTS", "", "manifests", None),  # read by serve's handler itself: see below
    ("REDIS_URL", "rediss://app:pw@redis:6380/1", "redis_url", "rediss://app:pw@redis:6380/1"),
    ("STATE_DIR", "/var/lib/cronwf", "state_dir", Path("/var/lib/cronwf")),
    ("HOST", "127.0.0.1", "host", "127.0.0.1"),
    ("PORT", "9191", "port", 9191),
    ("IDENTITY", "replica-a", "identity", "replica-a"),
    *((name, "1m30s", dest, 90.0) for name, dest in DURATIONS.items()),
    ("KUBERNETES", "true", "kubernetes", True),
    ("NAMESPACE", "team-a", "namespace", "team-a"),
    ("INSTANCE_ID", "blue", "instance_id", "blue"),
    ("WORKFLOW_INSTANCE_ID", "argo-blue", "workflow_instance_id", "argo-blue"),
    ("KUBECONFIG", "/etc/kube/config", "kubeconfig", "/etc/kube/config"),
    ("LEASE_NAMESPACE", "ops", "lease_namespace", "ops"),
    ("LEASE_NAME", "cronwf-main", "lease_name", "cronwf-main"),
    ("WORKERS", "3", "workers", 3),
    ("SPAWN_WORKERS", "32", "spawn_workers", 32),
    ("MAX_LOCAL_RUNS", "8", "max_local_runs", 8),
    ("MAX_WAITING_LOCAL_RUNS", "0", "max_waiting_local_runs", 0),
    ("METRICS_WITHOUT_NAME", "yes", "metrics_without_name", True),
    ("LOG_FORMAT", "json", "log_format", "json"),
    ("LOG_LEVEL", "WARNING", "log_level", "warning"),
]

BAD_VALUES: list[tuple[str, str, str]] = [
    ("PORT", "abc", "'abc' is not a port number"),
    ("PORT", "70000", "port must be between 0 and 65535, got 70000"),
    *((name, "soon", "invalid duration 'soon': write seconds or a duration") for name in DURATIONS),
    *((name, "0s", "must be more than 0 seconds, got '0s'") for name in DURATIONS),
    ("WORKERS", "many", "'many' is not a whole number"),
    ("WORKERS", "0", "must be between 1 and"),
    ("SPAWN_WORKERS", "-4", "must be between 1 and"),
    ("MAX_LOCAL_RUNS", "0", "must be between 1 and"),
    ("MAX_WAITING_LOCAL_RUNS", "-1", "must be between 0 and"),
    ("KUBERNETES", "maybe", "'maybe' is not a boolean: write true or false"),
    ("METRICS_WITHOUT_NAME", "2", "'2' is not a boolean: write true or false"),
    ("LOG_FORMAT", "xml", "invalid choice: 'xml' (choose from 'text', 'json')"),
    ("LOG_LEVEL", "loud", "invalid choice: 'loud' (choose from 'debug', 'info'"),
    ("REDIS_URL", f"http://app:{PASSWORD}@redis/0", "'http://app:***@redis/0' is not a Redis URL"),
    ("REDIS_URL", f"redis://:{PASSWORD}@redis:63x9/0", "the port must be a number from 1 to"),
]


def test_every_variable_serve_documents_is_covered_here() -> None:
    """A variable added to serve without a test of its reading fails here."""
    documented = {
        word.removeprefix("CRONWF_").rstrip(";,)")
        for action in serve_parser()._actions
        for word in (action.help or "").replace("(", " ").split()
        if word.startswith("CRONWF_")
    }
    assert documented == {name for name, *_ in GOOD_VALUES}


@pytest.mark.parametrize(
    ("name", "value", "dest", "expected"),
    [case for case in GOOD_VALUES if case[0] != "MANIFESTS"],
    ids=[case[0] for case in GOOD_VALUES if case[0] != "MANIFESTS"],
)
def test_serve_reads_each_variable_when_it_runs(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, dest: str, expected: Any
) -> None:
    parser = build_parser()  # built before the variable is set: it reads nothing then
    monkeypatch.setenv(f"CRONWF_{name}", value)

    assert getattr(parser.parse_args(["serve"]), dest) == expected


def test_serve_reads_the_manifest_folders_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """CRONWF_MANIFESTS is colon-separated; a missing path among them is named."""
    monkeypatch.setenv("CRONWF_MANIFESTS", f"{EXAMPLES}:{tmp_path / 'gone'}")

    assert main(["serve"]) == 2
    assert (
        capsys.readouterr().err == f"cronwf serve: error: no such file or folder: {tmp_path}/gone\n"
    )


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES, ids=lambda v: str(v)[:20])
def test_a_bad_variable_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    problem: str,
) -> None:
    monkeypatch.setenv(f"CRONWF_{name}", value)

    line = usage_error(capsys, ["serve", "--manifests", str(EXAMPLES)])

    assert line.startswith(f"cronwf serve: error: CRONWF_{name}: ")
    assert problem in line
    assert PASSWORD not in line


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [case for case in BAD_VALUES if case[0] not in ("KUBERNETES", "METRICS_WITHOUT_NAME")],
    ids=lambda v: str(v)[:20],
)
def test_a_bad_flag_is_a_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str], name: str, value: str, problem: str
) -> None:
    """(The two boolean flags take no value.)"""
    flag = "--" + name.lower().replace("_", "-")

    line = usage_error(capsys, ["serve", "--manifests", str(EXAMPLES), f"{flag}={value}"])

    assert line.startswith(f"cronwf serve: error: argument {flag}: ")
    assert problem in line
    assert PASSWORD not in line


def test_a_flag_wins_over_its_variable_which_is_then_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRONWF_PORT", "abc")
    monkeypatch.setenv("CRONWF_KUBERNETES", "maybe")

    args = build_parser().parse_args(["serve", "--port", "9191", "--kubernetes"])

    assert (args.port, args.kubernetes) == (9191, True)


def test_unset_or_empty_variables_give_the_documented_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRONWF_PORT", "")
    monkeypatch.setenv("POD_NAME", "cronwf-7d9f-abcde")
    monkeypatch.setenv("POD_NAMESPACE", "scheduling")

    args = build_parser().parse_args(["serve"])

    assert (args.port, args.host, args.state_dir) == (9090, "0.0.0.0", Path(".cronwf"))
    assert (args.identity, args.lease_namespace) == ("cronwf-7d9f-abcde", "scheduling")
    assert (args.kubernetes, args.metrics_without_name) == (False, False)
    assert (args.log_format, args.log_level, args.redis_url) == ("text", "info", None)
    assert (args.lock_ttl, args.renew_interval, args.run_timeout) == (15.0, 5.0, 600.0)


@pytest.fixture
def every_variable_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every serve variable set to a value serve would refuse."""
    for name, value, _ in BAD_VALUES:
        monkeypatch.setenv(f"CRONWF_{name}", value)


@pytest.mark.usefixtures("every_variable_bad")
@pytest.mark.parametrize(
    "argv",
    [
        ["lint", str(EXAMPLES)],
        ["lint", "-o", "json", str(EXAMPLES)],
        ["next", str(EXAMPLES), "--from", "2026-03-01T00:00:00Z"],
        [
            "simulate",
            str(EXAMPLES),
            "--start",
            "2026-03-01T00:00:00Z",
            "--end",
            "2026-03-01T06:00:00Z",
        ],
    ],
    ids=["lint", "lint-json", "next", "simulate"],
)
def test_the_other_commands_read_none_of_serves_variables(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 0
    assert "CRONWF_" not in capsys.readouterr().err


def test_the_reported_command_lints_and_serve_names_the_variable() -> None:
    """Issue 12's reproduction, as a user runs it: a traceback with exit 1 before."""
    env = {**os.environ, "CRONWF_PORT": "abc"}
    lint = subprocess.run(
        [str(CRONWF), "lint", str(EXAMPLES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    serve = subprocess.run(
        [str(CRONWF), "serve", "--manifests", str(EXAMPLES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (lint.returncode, "Traceback" in lint.stderr) == (0, False)
    assert serve.returncode == 2
    assert serve.stderr.splitlines()[-1] == (
        "cronwf serve: error: CRONWF_PORT: 'abc' is not a port number"
    )


# -- zero CronWorkflows is an error -----------------------------------------------------------


def empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def other_kinds(tmp_path: Path) -> Path:
    folder = tmp_path / "others"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n"
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {name: t}\n"
    )
    (folder / "notes.txt").write_text("kind: CronWorkflow (not a manifest: wrong suffix)\n")
    return folder


def empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    return path


COMMANDS = {
    "lint": ["lint"],
    "lint-json": ["lint", "-o", "json"],
    "next": ["next"],
    "simulate": ["simulate", "--start", "2026-03-01T00:00:00Z", "--end", "2026-03-02T00:00:00Z"],
}


@pytest.mark.parametrize("where", [empty_folder, other_kinds, empty_file])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_zero_cronworkflows_found_is_an_error_saying_what_was_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, where: Any
) -> None:
    path = where(tmp_path)

    code = main([*COMMANDS[command], str(path)])

    captured = capsys.readouterr()
    assert code == 1
    shown = captured.out if command == "lint" else captured.err
    message = next(line for line in shown.splitlines() if line.startswith("error"))
    assert message.startswith(f"error   no CronWorkflow found in {path}: searched the *.yaml")
    assert "check the path" in message
    assert "kind: CronWorkflow" in message
    if command == "lint-json":
        assert json.loads(captured.out) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_wrong_path_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    missing = tmp_path / "manifests-typo"

    assert main([*COMMANDS[command], str(missing)]) == 1
    captured = capsys.readouterr()
    if command == "lint-json":
        [report] = json.loads(captured.out)
        assert (report["file"], report["valid"]) == (str(missing), False)
        assert report["errors"] == ["cannot read the file: no such file or directory"]
    else:
        assert f"{missing}: cannot read the file: no such file or directory" in (
            captured.out + captured.err
        )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_one_cronworkflow_beside_other_kinds_is_enough(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    folder = other_kinds(tmp_path)
    (folder / "hello.yaml").write_text((EXAMPLES / "hourly-export.yaml").read_text())

    assert main([*COMMANDS[command], str(folder)]) == 0
    assert "no CronWorkflow found in" not in capsys.readouterr().out


# -- Redis URLs: never a password, a malformed one a usage error -----------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def user_with_password(redis_server: RedisServer) -> Iterator[str]:
    """A URL of the session server for an ACL user with a password (removed afterwards)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.acl_setuser(
        "app", enabled=True, passwords=[f"+{PASSWORD}"], keys="*", commands=["+@all"]
    )
    try:
        yield f"redis://app:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    finally:
        client.acl_deluser("app")
        client.close()


def test_history_with_no_history_shows_the_url_without_its_password(
    user_with_password: str, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: ``no history for default/backup in redis://app:hunter2@...``."""
    assert main(["history", "default/backup", "--redis-url", user_with_password]) == 1

    captured = capsys.readouterr()
    assert captured.err == (
        f"cronwf history: no history for default/backup in "
        f"redis://app:***@127.0.0.1:{redis_server.port}/0\n"
    )
    assert PASSWORD not in captured.out + captured.err


def test_history_reads_its_url_from_the_environment_ignoring_serves_variables(
    user_with_password: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    every_variable_bad: None,
) -> None:
    monkeypatch.setenv("CRONWF_REDIS_URL", user_with_password)

    assert main(["history", "default/backup"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("cronwf history: no history for default/backup in redis://app:***@")


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_an_unreachable_redis_is_named_with_its_scheme_and_without_its_password(
    capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    port = closed_port()

    url = f"{scheme}://app:{PASSWORD}@127.0.0.1:{port}/0"
    assert main(["history", "default/backup", "--redis-url", url]) == 1

    captured = capsys.readouterr()
    assert captured.err.startswith(
        f"cronwf history: error: Redis at {scheme}://app:***@127.0.0.1:{port}/0 is unreachable"
    )
    assert PASSWORD not in captured.out + captured.err


@pytest.mark.parametrize("command", [["history", "default/backup"], ["serve"]])
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("garbage", "'garbage' is not a Redis URL: write redis://"),
        (f"redis://:{PASSWORD}@redis:port/0", "the port must be a number from 1 to 65535"),
        (f"redis://app:{PASSWORD}@redis:6379/first", "the database must be a number"),
        (f"redis:/{PASSWORD}@redis", "is not a Redis URL"),
    ],
)
def test_a_malformed_url_is_a_usage_error_without_the_password(
    capsys: pytest.CaptureFixture[str], command: list[str], url: str, problem: str
) -> None:
    """Issue 12: a malformed ``--redis-url`` was a traceback from inside redis-py."""
    line = usage_error(capsys, [*command, "--redis-url", url])

    assert line.startswith(f"cronwf {command[0]}: error: argument --redis-url: ")
    assert problem in line
    assert PASSWORD not in line


def test_history_refuses_a_malformed_variable_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRONWF_REDIS_URL", f"redis://app:{PASSWORD}@redis:6379/x")

    line = usage_error(capsys, ["history", "default/backup"])

    assert line.startswith("cronwf history: error: CRONWF_REDIS_URL: 'redis://app:***@redis")
    assert PASSWORD not in line
