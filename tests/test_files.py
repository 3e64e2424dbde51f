"""The file source of embedded mode: CronWorkflow manifests in a folder, reloaded on change.

Each poll returns the whole current picture (every CronWorkflow by ``namespace/name``, and the
files that failed). Each file is judged on its own: a broken file never disturbs the others,
and a file that breaks after having loaded keeps what it defined before, as a failed
``kubectl apply`` changes nothing. Only files whose size or modification time changed are
parsed again.
"""

from __future__ import annotations

import errno
import logging
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from unprivileged import unprivileged, unprivileged_folder

from scheduler.adapters.local.files import FileSource
from scheduler.core.events import FileProblem, Snapshot
from scheduler.manifests.loading import ManifestSet, load_bytes


def manifest(name: str, schedule: str = "*/5 * * * *", namespace: str = "default") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: CronWorkflow
        metadata:
          name: {name}
          namespace: {namespace}
        spec:
          schedules: ["{schedule}"]
          workflowSpec:
            entrypoint: main
            templates:
              - name: main
                container: {{image: alpine:3.20, command: [sh, -c], args: ["true"]}}
        """
    )


INVALID_YAML = "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata: [unclosed\n"


def write(path: Path, text: str) -> Path:
    """Write ``text`` and move the modification time forward, so a change is always seen
    even when two writes fall within the file system's timestamp granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    stamp = max(path.stat().st_mtime_ns, before + 1_000_000)
    os.utime(path, ns=(stamp, stamp))
    return path


def schedules(snapshot: Snapshot) -> dict[str, tuple[str, ...]]:
    return {key: spec.schedules for key, spec in snapshot.cron_workflows.items()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


def test_an_empty_folder_defines_nothing(folder: Path) -> None:
    assert FileSource([folder]).poll() == Snapshot()


def test_a_missing_path_defines_nothing(tmp_path: Path) -> None:
    """A folder that does not exist (yet) is not an error: it simply holds nothing."""
    assert FileSource([tmp_path / "absent"]).poll() == Snapshot()


def test_files_added_are_loaded_by_the_next_poll(folder: Path) -> None:
    """Every ``*.yaml``/``*.yml`` file under the folder, nested ones included, is read;
    other files and hidden ones are not."""
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    assert schedules(source.poll()) == {"default/alpha": ("*/5 * * * *",)}

    (folder / "team").mkdir()
    write(folder / "team" / "b.yml", manifest("beta", namespace="team"))
    write(folder / "notes.txt", manifest("ignored-txt"))
    write(folder / ".hidden.yaml", manifest("ignored-hidden"))

    snapshot = source.poll()
    assert sorted(snapshot.cron_workflows) == ["default/alpha", "team/beta"]
    assert snapshot.problems == ()


def test_a_file_given_by_path_is_watched(folder: Path) -> None:
    """A path may be a single file rather than a folder."""
    path = write(folder / "one.yaml", manifest("alpha"))
    source = FileSource([path])
    assert list(source.poll().cron_workflows) == ["default/alpha"]

    write(path, manifest("alpha", schedule="0 * * * *"))
    assert schedules(source.poll()) == {"default/alpha": ("0 * * * *",)}


def test_a_changed_file_is_reloaded(folder: Path) -> None:
    source = FileSource([folder])
    path = write(folder / "a.yaml", manifest("alpha"))
    source.poll()

    write(path, manifest("alpha", schedule="0 2 * * *") + "---\n" + manifest("gamma"))

    assert schedules(source.poll()) == {
        "default/alpha": ("0 2 * * *",),
        "default/gamma": ("*/5 * * * *",),
    }


def test_a_deleted_file_takes_its_cron_workflows_with_it(folder: Path) -> None:
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    doomed = write(folder / "b.yaml", manifest("beta") + "---\n" + manifest("gamma"))
    assert len(source.poll().cron_workflows) == 3

    doomed.unlink()

    assert list(source.poll().cron_workflows) == ["default/alpha"]


def test_a_file_that_becomes_invalid_keeps_its_previous_cron_workflows(folder: Path) -> None:
    """A half-edited file changes nothing: its CronWorkflows stay as they were, the file is
    reported as a problem, and the other files keep working (and changing)."""
    source = FileSource([folder])
    broken = write(folder / "a.yaml", manifest("alpha", schedule="0 1 * * *"))
    other = write(folder / "b.yaml", manifest("beta"))
    source.poll()

    write(broken, INVALID_YAML)
    write(other, manifest("beta", schedule="0 3 * * *"))
    snapshot = source.poll()

    assert schedules(snapshot) == {
        "default/alpha": ("0 1 * * *",),
        "default/beta": ("0 3 * * *",),
    }
    (problem,) = snapshot.problems
    assert problem.file == str(broken)
    (message,) = problem.messages
    assert message.startswith(f"{broken} (document 1): invalid YAML at line 4")


def test_a_broken_file_that_is_fixed_again_is_loaded(folder: Path) -> None:
    """Once the file parses again, its new content replaces the kept one and the problem
    goes away."""
    source = FileSource([folder])
    path = write(folder / "a.yaml", manifest("alpha"))
    source.poll()
    write(path, INVALID_YAML)
    assert source.poll().problems != ()

    write(path, manifest("alpha", schedule="0 4 * * *"))

    snapshot = source.poll()
    assert schedules(snapshot) == {"default/alpha": ("0 4 * * *",)}
    assert snapshot.problems == ()


def test_a_new_invalid_file_reports_a_problem_and_defines_nothing(folder: Path) -> None:
    source = FileSource([folder])
    write(folder / "good.yaml", manifest("alpha"))
    bad = write(folder / "bad.yaml", INVALID_YAML)

    snapshot = source.poll()

    assert list(snapshot.cron_workflows) == ["default/alpha"]
    assert [problem.file for problem in snapshot.problems] == [str(bad)]


def test_a_document_that_is_not_a_valid_manifest_is_a_problem_of_its_file(folder: Path) -> None:
    """Well-formed YAML that is not a usable CronWorkflow (here: no ``kind``) is reported with
    the file, the document and the CronWorkflow it meant."""
    source = FileSource([folder])
    path = write(folder / "a.yaml", "apiVersion: argoproj.io/v1alpha1\nmetadata: {name: x}\n")

    (problem,) = source.poll().problems

    assert problem == FileProblem(
        str(path),
        (
            f"{path} (document 1) default/x: kind: is required: a CronWorkflow starts with "
            "apiVersion: argoproj.io/v1alpha1 and kind: CronWorkflow",
        ),
    )


def test_a_cron_workflow_failing_validation_is_still_defined(folder: Path) -> None:
    """A well-typed CronWorkflow with a bad schedule is not a file problem: it is defined, and
    the service reports it as invalid (SpecError) rather than silently dropping it."""
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha", schedule="61 * * * *"))

    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("61 * * * *",)}
    assert snapshot.problems == ()


def test_the_same_cron_workflow_in_two_files_keeps_the_first_and_reports_the_second(
    folder: Path,
) -> None:
    """On a fresh start files are taken in path order; a later definition of the same
    ``namespace/name`` is ignored and reported against the file that holds it, naming both
    places."""
    source = FileSource([folder])
    first = write(folder / "a.yaml", manifest("alpha", schedule="0 1 * * *"))
    second = write(folder / "b.yaml", manifest("alpha", schedule="0 2 * * *"))

    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("0 1 * * *",)}
    assert snapshot.problems == (
        FileProblem(
            str(second),
            (
                f"{second} (document 1) default/alpha: CronWorkflow default/alpha is already "
                f"defined in {first} (document 1); each namespace/name must be defined once "
                "(the definition in use keeps running, this one is ignored)",
            ),
        ),
    )
    assert snapshot.error_counts() == {"listing": 0, "file": 1}


def test_a_new_file_cannot_take_over_a_running_cron_workflow(folder: Path) -> None:
    """A file added later, even one sorting first, never replaces (or stops) the definition
    in use: whoever can add a file must not be able to take over another's CronWorkflow."""
    source = FileSource([folder])
    running = write(folder / "m.yaml", manifest("alpha", schedule="0 1 * * *"))
    assert schedules(source.poll()) == {"default/alpha": ("0 1 * * *",)}

    newcomer = write(folder / "a.yaml", manifest("alpha", schedule="0 2 * * *"))
    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("0 1 * * *",)}
    assert [problem.file for problem in snapshot.problems] == [str(newcomer)]
    assert f"already defined in {running} (document 1)" in snapshot.problems[0].messages[0]

    write(running, manifest("alpha", schedule="0 3 * * *"))  # its owner may still change it
    assert schedules(source.poll()) == {"default/alpha": ("0 3 * * *",)}


def test_when_the_definition_in_use_goes_away_the_other_takes_its_place(folder: Path) -> None:
    source = FileSource([folder])
    running = write(folder / "m.yaml", manifest("alpha", schedule="0 1 * * *"))
    source.poll()
    write(folder / "a.yaml", manifest("alpha", schedule="0 2 * * *"))
    source.poll()

    running.unlink()
    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("0 2 * * *",)}
    assert snapshot.problems == ()


def test_a_duplicate_across_files_is_logged_once(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    write(folder / "b.yaml", manifest("alpha"))
    caplog.set_level(logging.ERROR, logger="scheduler.adapters.local.files")

    source.poll()
    write(folder / "c.yaml", manifest("beta"))  # another change: a new snapshot
    source.poll()

    duplicates = [r for r in caplog.records if "already defined" in r.getMessage()]
    assert len(duplicates) == 1


def test_a_definition_added_before_the_one_in_use_in_its_file_changes_nothing(
    folder: Path,
) -> None:
    """Within a file as across files the definition in use keeps running: the file with a
    duplicate is a problem, and keeps what it defined before."""
    source = FileSource([folder])
    path = write(folder / "a.yaml", manifest("alpha", schedule="0 1 * * *"))
    source.poll()

    write(path, manifest("alpha", schedule="0 2 * * *") + "---\n" + path.read_text())
    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("0 1 * * *",)}
    assert snapshot.problems[0].messages == (
        f"{path} (document 2) default/alpha: CronWorkflow default/alpha is already defined in "
        f"{path} (document 1); each namespace/name must be defined once",
    )


def test_the_same_name_in_two_namespaces_is_two_cron_workflows(folder: Path) -> None:
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha", namespace="one"))
    write(folder / "b.yaml", manifest("alpha", namespace="two"))

    snapshot = source.poll()

    assert sorted(snapshot.cron_workflows) == ["one/alpha", "two/alpha"]
    assert snapshot.problems == ()


def test_the_same_cron_workflow_twice_in_one_file_keeps_the_first_and_reports_it(
    folder: Path,
) -> None:
    """Uniqueness holds within a file as across files: the first definition is used and the
    duplicate is reported. Pins a bug: within one file the *last* definition silently wins
    and no problem is reported."""
    source = FileSource([folder])
    path = write(
        folder / "a.yaml",
        manifest("alpha", schedule="0 1 * * *") + "---\n" + manifest("alpha", schedule="0 2 * * *"),
    )

    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("0 1 * * *",)}
    assert [problem.file for problem in snapshot.problems] == [str(path)]


def test_unchanged_files_are_not_parsed_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll stats every file but parses only those whose size or modification time changed;
    the picture it returns is the same."""
    parsed: list[Path] = []

    def counting_load_bytes(raw: bytes, file: str) -> ManifestSet:
        parsed.append(Path(file))
        return load_bytes(raw, file)

    monkeypatch.setattr("scheduler.adapters.local.files.load_bytes", counting_load_bytes)
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    changed = write(folder / "b.yaml", manifest("beta"))
    write(folder / "c.yaml", INVALID_YAML)

    first = source.poll()
    assert len(parsed) == 3
    assert source.poll() == first
    assert len(parsed) == 3

    write(changed, manifest("beta", schedule="0 * * * *"))
    source.poll()
    assert parsed[3:] == [changed]


def test_a_poll_of_hundreds_of_unchanged_files_is_cheap(folder: Path) -> None:
    """Polling is meant to run every couple of seconds on hundreds of files: with nothing
    changed it is a stat per file, well under the reload interval."""
    for index in range(200):
        write(folder / f"cw-{index:03d}.yaml", manifest(f"cw-{index:03d}"))
    source = FileSource([folder])
    first = source.poll()
    assert len(first.cron_workflows) == 200

    began = time.perf_counter()
    again = source.poll()
    elapsed = time.perf_counter() - began

    assert again == first
    assert elapsed < 0.5


# --------------------------------------------------------------------------------------------
# Listing and read errors: "no change", reported, never a deletion


class FailingFileSystem:
    """``os.scandir`` and ``os.open`` failing for the paths the test names, as they do
    for a folder or file without read permission, a process out of file descriptors, or a
    volume being remounted (the tests run as root, where ``chmod 000`` stops nothing). Other
    paths are untouched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.unlistable: dict[Path, OSError] = {}
        self.unreadable: dict[Path, OSError] = {}
        real_scandir, real_open = os.scandir, os.open

        def scandir(path: Any = ".") -> Iterator[os.DirEntry[Any]]:
            error = None if isinstance(path, int) else self.unlistable.get(Path(path))
            if error is not None:
                raise error
            return real_scandir(path)

        def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            error = None if isinstance(path, int) else self.unreadable.get(Path(path))
            if error is not None:
                raise error
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(os, "open", open_)


def permission_denied(path: Path) -> PermissionError:
    return PermissionError(errno.EACCES, "Permission denied", str(path))


def too_many_open_files(path: Path) -> OSError:
    return OSError(errno.EMFILE, "Too many open files", str(path))


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> FailingFileSystem:
    return FailingFileSystem(monkeypatch)


def test_a_subfolder_that_cannot_be_listed_keeps_its_cron_workflows_and_is_a_scan_error(
    folder: Path, failing: FailingFileSystem
) -> None:
    """Its files are unknown, not gone: what they defined stays, the folder is reported as a
    scan error (not as a file problem), and the rest of the folder keeps working and
    changing."""
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    team = folder / "team"
    team.mkdir()
    write(team / "b.yaml", manifest("beta", namespace="team"))
    write(team / "c.yaml", manifest("gamma", namespace="team"))
    assert sorted(source.poll().cron_workflows) == ["default/alpha", "team/beta", "team/gamma"]

    failing.unlistable[team] = permission_denied(team)
    write(folder / "a.yaml", manifest("alpha", schedule="0 1 * * *"))
    write(folder / "d.yaml", manifest("delta"))
    snapshot = source.poll()

    assert schedules(snapshot) == {
        "default/alpha": ("0 1 * * *",),
        "default/delta": ("*/5 * * * *",),
        "team/beta": ("*/5 * * * *",),
        "team/gamma": ("*/5 * * * *",),
    }
    assert snapshot.problems == ()
    assert snapshot.scan_errors == (
        FileProblem(
            str(team),
            (
                f"{team}: cannot list the folder: permission denied (this user needs read and "
                "execute permission on the folder); the CronWorkflows of the files under it "
                "keep running unchanged until it can be listed again",
            ),
        ),
    )
    assert snapshot.error_counts() == {"listing": 1, "file": 0}


def test_once_the_folder_can_be_listed_again_what_changed_there_meanwhile_takes_effect(
    folder: Path, failing: FailingFileSystem
) -> None:
    """Only a successful listing tells what was removed: a file deleted while its folder
    could not be listed is forgotten then, a file changed meanwhile is reloaded, and the
    scan error is gone."""
    source = FileSource([folder])
    team = folder / "team"
    team.mkdir()
    doomed = write(team / "b.yaml", manifest("beta", namespace="team"))
    changed = write(team / "c.yaml", manifest("gamma", namespace="team"))
    source.poll()
    failing.unlistable[team] = too_many_open_files(team)
    doomed.unlink()
    write(changed, manifest("gamma", namespace="team", schedule="0 2 * * *"))
    assert sorted(source.poll().cron_workflows) == ["team/beta", "team/gamma"]

    del failing.unlistable[team]
    snapshot = source.poll()

    assert schedules(snapshot) == {"team/gamma": ("0 2 * * *",)}
    assert snapshot.scan_errors == ()


def test_a_configured_folder_that_cannot_be_listed_changes_nothing(
    folder: Path, failing: FailingFileSystem
) -> None:
    """Out of file descriptors (``EMFILE``), the configured folder itself cannot be listed:
    everything stays as it was, and the message says what to do."""
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    write(folder / "b.yaml", manifest("beta"))
    before = source.poll()

    failing.unlistable[folder] = too_many_open_files(folder)
    snapshot = source.poll()

    assert snapshot.cron_workflows == before.cron_workflows
    (error,) = snapshot.scan_errors
    assert error.file == str(folder)
    assert error.messages == (
        f"{folder}: cannot list the folder: too many open files (raise the open-file limit, "
        "ulimit -n); the CronWorkflows of the files under it keep running unchanged until it "
        "can be listed again",
    )


def test_a_folder_that_cannot_be_listed_from_the_start_is_reported_though_it_defined_nothing(
    folder: Path, failing: FailingFileSystem
) -> None:
    write(folder / "a.yaml", manifest("alpha"))
    failing.unlistable[folder] = permission_denied(folder)
    source = FileSource([folder])

    snapshot = source.poll()

    assert snapshot.cron_workflows == {}
    assert [error.file for error in snapshot.scan_errors] == [str(folder)]

    del failing.unlistable[folder]
    assert list(source.poll().cron_workflows) == ["default/alpha"]


def test_a_configured_folder_that_disappears_is_a_scan_error_not_a_deletion(
    folder: Path,
) -> None:
    """A volume being remounted looks like a configured folder that is gone: its
    CronWorkflows keep running and the folder is reported; when it is back, its files are
    loaded as they are then. Removing CronWorkflows means removing their files."""
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    write(folder / "b.yaml", manifest("beta"))
    source.poll()
    away = folder.with_name("elsewhere")

    folder.rename(away)
    snapshot = source.poll()

    assert sorted(snapshot.cron_workflows) == ["default/alpha", "default/beta"]
    (error,) = snapshot.scan_errors
    assert error.messages == (
        f"{folder}: the configured folder is gone (no such file or directory); the "
        "CronWorkflows it defined keep running unchanged until it is back: a configured path "
        "that disappears is taken for an unmounted volume, not a deletion (to remove "
        "CronWorkflows, delete or empty their files)",
    )

    (away / "b.yaml").unlink()
    away.rename(folder)
    snapshot = source.poll()
    assert list(snapshot.cron_workflows) == ["default/alpha"]
    assert snapshot.scan_errors == ()


def test_a_configured_file_that_disappears_keeps_its_cron_workflows(folder: Path) -> None:
    """The same for a file given by path (an editor that renames the file away before
    writing the new one does this for a moment); emptying the file removes them."""
    path = write(folder / "one.yaml", manifest("alpha"))
    source = FileSource([path])
    source.poll()

    path.unlink()
    snapshot = source.poll()

    assert list(snapshot.cron_workflows) == ["default/alpha"]
    (error,) = snapshot.scan_errors
    assert error.messages[0].startswith(f"{path}: the configured file is gone")

    write(path, "")
    snapshot = source.poll()
    assert snapshot.cron_workflows == {}
    assert snapshot.scan_errors == ()


def test_a_configured_folder_replaced_by_a_file_is_a_scan_error(folder: Path) -> None:
    """What a configured path is (a folder or a file) is learnt at its first sight: a folder
    that turns into a file is not taken for a folder emptied."""
    write(folder / "a.yaml", manifest("alpha"))
    source = FileSource([folder])
    source.poll()
    (folder / "a.yaml").unlink()
    folder.rmdir()
    write(folder, manifest("other"))

    snapshot = source.poll()

    assert list(snapshot.cron_workflows) == ["default/alpha"]
    (error,) = snapshot.scan_errors
    assert error.messages[0].startswith(f"{folder}: the configured folder is now a file;")


def test_a_subfolder_removed_while_the_folder_is_listed_is_not_an_error(
    folder: Path, failing: FailingFileSystem
) -> None:
    """Listed by its parent and gone a moment later: its files are kept for this poll (the
    next listing tells whether it is really gone), and nothing is reported."""
    source = FileSource([folder])
    team = folder / "team"
    team.mkdir()
    write(team / "b.yaml", manifest("beta"))
    source.poll()

    failing.unlistable[team] = FileNotFoundError(errno.ENOENT, "No such file or directory")
    snapshot = source.poll()
    assert (list(snapshot.cron_workflows), snapshot.scan_errors) == (["default/beta"], ())

    del failing.unlistable[team]
    (team / "b.yaml").unlink()
    team.rmdir()
    assert source.poll().cron_workflows == {}


def test_a_scan_error_is_logged_once_per_change_and_its_end_is_logged(
    folder: Path, failing: FailingFileSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """Polls come every couple of seconds: an error that lasts is logged when it starts and
    when it changes, not at every poll; an unchanged error returns the very same snapshot."""
    source = FileSource([folder])
    write(folder / "a.yaml", manifest("alpha"))
    source.poll()
    caplog.set_level(logging.INFO, logger="scheduler.adapters.local.files")

    failing.unlistable[folder] = permission_denied(folder)
    first = source.poll()
    assert source.poll() is first
    failing.unlistable[folder] = too_many_open_files(folder)
    source.poll()
    source.poll()
    del failing.unlistable[folder]
    source.poll()
    source.poll()

    logged = [(record.levelname, record.getMessage()) for record in caplog.records]
    prefix = f"cannot list manifests: {folder}: cannot list the folder: "
    assert [level for level, _ in logged] == ["ERROR", "ERROR", "INFO"]
    assert logged[0][1].startswith(prefix + "permission denied")
    assert logged[1][1].startswith(prefix + "too many open files")
    assert logged[2][1] == (
        f"manifests listed again under {folder}: its files are loaded as they are now"
    )


def test_a_file_that_cannot_be_read_keeps_its_cron_workflows_and_is_read_again(
    folder: Path, failing: FailingFileSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable file is a file problem, like one that does not parse: what it defined
    stays, it is reported once, and it is read again at every poll, so that it loads as soon
    as it can be read, even though it did not change."""
    source = FileSource([folder])
    path = write(folder / "a.yaml", manifest("alpha"))
    fresh = folder / "b.yaml"
    source.poll()
    caplog.set_level(logging.INFO, logger="scheduler.adapters.local.files")

    failing.unreadable[path] = permission_denied(path)
    failing.unreadable[fresh] = too_many_open_files(fresh)
    write(path, manifest("alpha", schedule="0 3 * * *"))
    write(fresh, manifest("beta"))
    first = source.poll()
    assert source.poll() is first

    assert schedules(first) == {"default/alpha": ("*/5 * * * *",)}
    assert first.scan_errors == ()
    assert first.problems == (
        FileProblem(
            str(path),
            (
                f"{path}: cannot read the file: permission denied; the CronWorkflows it "
                "defined keep running unchanged until it can be read again",
            ),
        ),
        FileProblem(
            str(fresh),
            (
                f"{fresh}: cannot read the file: too many open files; the CronWorkflows it "
                "defined keep running unchanged until it can be read again",
            ),
        ),
    )
    assert first.error_counts() == {"listing": 0, "file": 2}
    assert len(caplog.records) == 2

    failing.unreadable.clear()
    snapshot = source.poll()
    assert schedules(snapshot) == {
        "default/alpha": ("0 3 * * *",),
        "default/beta": ("*/5 * * * *",),
    }
    assert snapshot.problems == ()


def test_real_permission_errors_change_nothing_and_clear_when_fixed() -> None:
    """With real permission bits, in a process of an unprivileged user: a folder without
    permissions (``chmod 000``) is a scan error; a changed file without them, and the files
    of a folder that may be read but not entered (``chmod 444``: names listed, files not
    examined), are file problems. Nothing is forgotten, and all clears once the permissions
    are back (the changed file then loads)."""

    def summary(snapshot: Snapshot) -> dict[str, list[str]]:
        return {
            "cronWorkflows": sorted(snapshot.cron_workflows),
            "alpha": list(snapshot.cron_workflows["default/alpha"].schedules),
            "scanErrors": [error.file for error in snapshot.scan_errors],
            "problems": [message for problem in snapshot.problems for message in problem.messages],
        }

    with unprivileged_folder() as base:
        folder = base / "manifests"
        folder.mkdir()
        write(folder / "alpha.yaml", manifest("alpha"))
        for sub, name in (("team", "beta"), ("search", "gamma")):
            (folder / sub).mkdir()
            write(folder / sub / f"{name}.yaml", manifest(name))

        def polls() -> list[dict[str, list[str]]]:
            source = FileSource([folder])
            found = [summary(source.poll())]
            (folder / "team").chmod(0)
            # Changed, so that it is read again, and unreadable (an unchanged file is not read).
            write(folder / "alpha.yaml", manifest("alpha", schedule="0 1 * * *")).chmod(0)
            (folder / "search").chmod(0o444)
            found.append(summary(source.poll()))
            (folder / "team").chmod(0o755)
            (folder / "alpha.yaml").chmod(0o644)
            (folder / "search").chmod(0o755)
            found.append(summary(source.poll()))
            return found

        before, denied, after = unprivileged(base, polls)

    every = ["default/alpha", "default/beta", "default/gamma"]
    assert before == {
        "cronWorkflows": every,
        "alpha": ["*/5 * * * *"],
        "scanErrors": [],
        "problems": [],
    }
    assert (denied["cronWorkflows"], denied["alpha"]) == (every, ["*/5 * * * *"])
    assert denied["scanErrors"] == [str(folder / "team")]
    assert denied["problems"] == [
        f"{folder / 'alpha.yaml'}: cannot read the file: permission denied; the CronWorkflows "
        "it defined keep running unchanged until it can be read again",
        f"{folder / 'search' / 'gamma.yaml'}: cannot read the file: permission denied; the "
        "CronWorkflows it defined keep running unchanged until it can be read again",
    ]
    assert after == {**before, "alpha": ["0 1 * * *"]}


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        ('"{x}"', "default"),
        ('"a\\0b"', "default"),
        ('"../x"', "default"),
        ('"$(touch /tmp/cronwf-pwned)"', "default"),
        ("a" * 300, "default"),
        ("alpha", '"../../etc"'),
        ("alpha", '"/abs"'),
        ("alpha", "n" * 300),
    ],
    ids=["braces", "nul", "dot-dot", "command", "long-name", "dot-dot-ns", "abs-ns", "long-ns"],
)
def test_a_cron_workflow_with_a_name_kubernetes_refuses_never_enters_the_catalog(
    folder: Path, name: str, namespace: str
) -> None:
    """Pins issue 12: a brace in a name made the Redis history raise while the service
    synced, so ``serve`` could not start; a namespace like ``../x`` wrote run logs outside
    the state folder. Such a document is now an error of its file and document, and the
    file's other CronWorkflows load."""
    source = FileSource([folder])
    path = write(folder / "a.yaml", manifest(name, namespace=namespace) + "---\n" + manifest("ok"))

    snapshot = source.poll()

    assert list(snapshot.cron_workflows) == ["default/ok"]
    (problem,) = snapshot.problems
    assert problem.file == str(path)
    (message,) = {m.split(": Invalid value: ")[0] for m in problem.messages}
    field = "name" if namespace == "default" else "namespace"
    assert message == f"{path} (document 1): metadata.{field}"


def test_unknown_fields_are_logged_once_per_change_and_the_cron_workflow_runs(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Argo's controller ignores unknown fields, and so does ``serve``, with a warning naming
    the file, the document, the CronWorkflow and the field."""
    caplog.set_level(logging.WARNING, logger="scheduler.adapters.local.files")
    source = FileSource([folder])
    typo = manifest("alpha").replace("  schedules:", "  concurrencypolicy: Forbid\n  schedules:")
    path = write(folder / "a.yaml", manifest("beta") + "---\n" + typo)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    assert "default/alpha" in source.poll().cron_workflows
    assert warnings() == [
        f"manifest field ignored: {path} (document 2) default/alpha: spec.concurrencypolicy: "
        'unknown field "concurrencypolicy" (did you mean "concurrencyPolicy"?); Argo\'s '
        "controller ignores it too, and cronwf lint reports it"
    ]

    write(path, manifest("beta", schedule="0 1 * * *") + "---\n" + typo)  # beta changes only
    source.poll()
    assert len(warnings()) == 1

    write(path, manifest("beta", schedule="0 1 * * *") + "---\n" + typo.replace("*/5", "*/7"))
    source.poll()
    assert len(warnings()) == 2
