"""The file source of embedded mode: CronWorkflow manifests in a folder, reloaded on change.

Each poll returns the whole current picture (every CronWorkflow by ``namespace/name``, and the
files that failed). Each file is judged on its own: a broken file never disturbs the others,
and a file that breaks after having loaded keeps what it defined before, as a failed
``kubectl apply`` changes nothing. Only files whose size or modification time changed are
parsed again.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from scheduler.files import FileProblem, FileSource, Snapshot
from scheduler.manifests import ManifestSet, load_paths


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
                container: {{image: alpine:3.20, command: [sh, -c], args: [true]}}
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
    """Files are taken in path order; a later definition of the same ``namespace/name`` is
    ignored and reported against the file that holds it."""
    source = FileSource([folder])
    first = write(folder / "a.yaml", manifest("alpha", schedule="0 1 * * *"))
    second = write(folder / "b.yaml", manifest("alpha", schedule="0 2 * * *"))

    snapshot = source.poll()

    assert schedules(snapshot) == {"default/alpha": ("0 1 * * *",)}
    assert snapshot.problems == (
        FileProblem(
            str(second),
            (
                f"default/alpha is also defined in {first}: the first definition is used; "
                "each namespace/name must be unique",
            ),
        ),
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

    def counting_load_paths(paths: list[Path]) -> ManifestSet:
        parsed.extend(paths)
        return load_paths(paths)

    monkeypatch.setattr("scheduler.files.load_paths", counting_load_paths)
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
