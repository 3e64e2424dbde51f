"""Real permission failures, also when the tests run as root.

Root reads through any permission bits, so a ``chmod 000`` alone proves nothing in a container
that runs the tests as root. :func:`unprivileged` runs a function of the test in a forked
child process that gives up root for ``nobody`` first (``os.setuid``; when the tests do not
run as root, the child keeps the current user, whom permission bits bind already). A fork
needs no interpreter or installed package readable by ``nobody``, only the files under test:
they go in a folder of :func:`unprivileged_folder`, outside pytest's temporary folders (which
only their owner may enter).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["NOBODY", "unprivileged", "unprivileged_folder"]

NOBODY = 65534
"""The uid and gid of ``nobody``."""

_AS_ROOT = os.geteuid() == 0


@contextmanager
def unprivileged_folder() -> Iterator[Path]:
    """A new empty folder, removed afterwards, that the child process may enter.

    Everything created in it before :func:`unprivileged` runs is handed over to the child's
    user, so that the child may change its permissions.
    """
    folder = Path(tempfile.mkdtemp(prefix="cronwf-permissions-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for root, folders, _ in os.walk(folder):
            for name in folders:
                Path(root, name).chmod(stat.S_IRWXU)
        shutil.rmtree(folder)


def _hand_over(folder: Path) -> None:
    os.chown(folder, NOBODY, NOBODY)
    for root, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            os.chown(Path(root, name), NOBODY, NOBODY, follow_symlinks=False)


def unprivileged(folder: Path, function: Callable[[], Any]) -> Any:
    """``function()`` run in a child process as ``nobody``, owner of ``folder``; its result,
    which must survive a round trip through JSON. A failure in the child fails the test."""
    if _AS_ROOT:
        _hand_over(folder)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's lines are not traced)
        try:
            os.close(reader)
            if _AS_ROOT:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            reply = json.dumps({"result": function()})
        except BaseException:
            reply = json.dumps({"error": traceback.format_exc()})
        with os.fdopen(writer, "w") as pipe:
            pipe.write(reply)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        reply = json.loads(pipe.read() or '{"error": "the child wrote nothing"}')
    os.waitpid(child, 0)
    if "error" in reply:
        pytest.fail(f"the unprivileged child failed:\n{reply['error']}")
    return reply["result"]
