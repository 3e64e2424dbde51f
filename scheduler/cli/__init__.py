"""The `cronwf` command line.

Each subcommand is one module with an `add_command(subparsers)` function that declares its
arguments and binds a handler `(args, out, err) -> exit code`; `build_parser` lists them.
Adding a command is one more such module, with no change to the others. Handlers write to the
streams they are given, never to `sys.stdout` directly, so tests run `main([...])` in-process.

Each command imports what it uses: the modules of `lint`, `next` and `simulate` import only
the manifests, the core and the policies, and `serve` and `history` import the runtime and
the adapters (Redis, Kubernetes, APScheduler, the HTTP server) inside their handlers, so
`cronwf lint` does not pay for, nor depend on, a client library it never calls. A flag's
default that only an adapter knows is read when its own command is parsed (see `_args`).

Output contracts (DESIGN §11) are stable: scripts parse `-o json`, people grep the text form.
So the text form is one self-contained line per fact (`ok`, `error`, `warning`, `skipped`
first, then where, then what), and the JSON form is a plain list of objects.

Exit codes: 0 all good, 1 some CronWorkflow is invalid or could not be read, or none was
found, 2 a usage error (argparse's convention, also used for an unreadable `--from` and for a
bad value of a ``CRONWF_`` variable). Errors about user input never produce a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from scheduler.cli import history, lint, next, serve, simulate
from scheduler.cli._args import Handler, Parser, parse_rfc3339

__all__ = ["build_parser", "main", "parse_rfc3339"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cronwf` with `argv` (default: the process arguments); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, sys.stdout, sys.stderr)
    except BrokenPipeError:
        # `cronwf next ... | head` closed the pipe: not an error worth a traceback. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cronwf",
        description="Schedule Argo CronWorkflows: lint manifests, preview their next runs.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    lint.add_command(commands)
    next.add_command(commands)
    simulate.add_command(commands)
    serve.add_command(commands)
    history.add_command(commands)
    return parser
