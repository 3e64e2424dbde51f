"""Benchmark of ``cronwf simulate``: a year of a ``* * * * *`` CronWorkflow (525,600 instants).

Target (issue: policies and the decision engine): under a minute, with the JSON output
written. Two variants: a plain CronWorkflow, and one with a ``when`` guard and a stop
strategy, which evaluate expressions at every tick. Run with ``python -m bench.simulate_bench``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = """\
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: every-minute}
spec:
  schedules: ["* * * * *"]
  workflowSpec:
    entrypoint: main
    templates: [{name: main, container: {image: alpine, command: [sh, -c, "true"]}}]
"""

GUARDED = """\
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: every-minute-guarded}
spec:
  schedules: ["* * * * *"]
  concurrencyPolicy: Forbid
  when: >-
    {{= cronworkflow.lastScheduledTime == nil
    || (now() - cronworkflow.lastScheduledTime).Seconds() > 30 }}
  stopStrategy: {expression: "cronworkflow.consecutiveFailed >= 3"}
  workflowSpec:
    entrypoint: main
    templates: [{name: main, container: {image: alpine, command: [sh, -c, "true"]}}]
"""

TARGET_SECONDS = 60.0


def run(manifest: str, folder: Path) -> dict[str, float | int]:
    path = folder / "cronworkflow.yaml"
    path.write_text(manifest)
    output = folder / "out.json"
    command = [
        sys.executable, "-c", "import sys; from scheduler.cli import main; sys.exit(main())",
        "simulate", str(path),
        "--start", "2026-01-01T00:00:00Z", "--end", "2026-12-31T23:59:59Z", "-o", "json",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with output.open("w") as out:
        subprocess.run(command, stdout=out, check=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with output.open() as result:
        events = sum(1 for line in result if line.startswith(('{"time"', ',{"time"')))
    if events == 0:
        raise SystemExit(f"simulate produced no events: see {output}")
    return {
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2
        ),
        "max_rss_mb": round(after.ru_maxrss / 1024, 1),
        "events": events,
        "output_mb": round(output.stat().st_size / 2**20, 1),
    }


def main() -> None:
    results: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, manifest in (("plain", PLAIN), ("when+stop", GUARDED)):
            results[name] = run(manifest, Path(tmp))
            fast = results[name]["seconds"] < TARGET_SECONDS
            status = "ok" if fast else "OVER TARGET"
            target = f"target < {TARGET_SECONDS:.0f} s"
            print(f"{name:<10} {json.dumps(results[name])}  [{target}: {status}]")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "simulate.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {os.path.relpath(out / 'simulate.json')}")


if __name__ == "__main__":
    main()
