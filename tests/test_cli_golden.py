"""The text and JSON outputs of `cronwf lint`, `next` and `simulate` on the bundled examples and
the test manifests, byte for byte.

Users script against these outputs, so a change of layout or wiring must leave them exactly as
they are; a deliberate change of an output regenerates its file and shows in review:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_cli_golden.py

Never in CI: without the variable a missing or different file fails. `lint` judges "the years
ahead" from the wall clock, so the test fixes it at `NOW`.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from scheduler import cli
from scheduler.cli import _args

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "cli"
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
SOURCES = {"examples": "manifests/examples", "data": "tests/data"}
COMMANDS = {
    "lint": ["lint"],
    "lint-not-strict": ["lint", "--strict=false"],
    "next": ["next", "--from", "2026-03-08T00:00:00Z", "--count", "3"],
    "simulate": [
        "simulate",
        "--start",
        "2026-03-29T00:59:30Z",
        "--end",
        "2026-03-29T01:00:30Z",
        "--outcomes",
        "Succeeded,Failed",
    ],
}
CASES = [
    (command, source, output)
    for command in COMMANDS
    for source in SOURCES
    for output in ("text", "json")
]


@pytest.mark.parametrize(
    ("command", "source", "output"), CASES, ids=[f"{c}-{s}-{o}" for c, s, o in CASES]
)
def test_the_output_is_the_recorded_one(
    command: str,
    source: str,
    output: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(_args, "now", lambda: NOW)
    for name in [name for name in os.environ if name.startswith("CRONWF_")]:
        monkeypatch.delenv(name)
    code = cli.main([*COMMANDS[command], "-o", output, SOURCES[source]])
    captured = capsys.readouterr()
    produced = f"exit {code}\n--- stdout\n{captured.out}--- stderr\n{captured.err}"

    golden = GOLDEN / f"{command}-{source}.{output}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(produced, encoding="utf-8")
    assert golden.exists(), f"{golden} is missing: regenerate with UPDATE_GOLDEN=1"
    assert produced == golden.read_text(encoding="utf-8")
