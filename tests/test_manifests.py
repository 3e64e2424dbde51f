"""Loading manifests: every problem names the file, the document and the field."""

from __future__ import annotations

import datetime
import errno
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hera.workflows import Container, CronWorkflow, Script
from hera.workflows.models import StopStrategy
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.validation import validate
from scheduler.manifests.loading import (
    LoadedCronWorkflow,
    ManifestError,
    ManifestNotice,
    ManifestSet,
    Source,
    find_manifest_files,
    load_document,
    load_paths,
    load_text,
)
from scheduler.manifests.loading import _documents as documents_of

DATA = Path(__file__).parent / "data"
PROBLEMS = DATA / "problems"
ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "manifests" / "examples"
NOW = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)

CRON_WORKFLOW = """\
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: {name}
spec:
  schedules: ["0 * * * *"]
  workflowSpec:
    entrypoint: main
    templates:
      - name: main
        container: {{image: alpine:3.20, command: [sh, -c], args: [echo {name}]}}
"""


def only_error(result: ManifestSet) -> ManifestError:
    (error,) = result.errors
    return error


def test_argo_documentation_examples_load_unchanged_and_validate() -> None:
    result = load_paths([DATA / "argo"])

    assert result.errors == ()
    keys = [loaded.key for loaded in result.cron_workflows]
    assert keys == [
        "argo/daylight-saving",
        "argo/hello-world",
        "default/hello-world",
        "default/hello-world-multiple-schedules",
        "argo/from-template",
    ]
    for loaded in result.cron_workflows:
        assert validate(loaded.spec, NOW).valid, loaded.key


def test_the_example_manifests_are_valid_cron_workflows() -> None:
    result = load_paths([EXAMPLES])

    assert result.errors == ()
    assert result.notices == ()
    assert len(result.cron_workflows) >= 5
    for loaded in result.cron_workflows:
        validation = validate(loaded.spec, NOW)
        assert validation.valid, (loaded.key, validation.errors)
        assert validation.warnings == (), loaded.key


def test_a_cron_workflow_rendered_by_hera_loads_and_validates() -> None:
    with CronWorkflow(
        name="hera-report",
        namespace="analytics",
        schedules=["0 6 * * 1-5", "30 9 * * sat"],
        timezone="Europe/Paris",
        concurrency_policy="Forbid",
        starting_deadline_seconds=120,
        successful_jobs_history_limit=5,
        stop_strategy=StopStrategy(expression="cronworkflow.failed >= 3"),
        entrypoint="report",
    ) as cron_workflow:
        Container(name="report", image="alpine:3.20", command=["sh", "-c"], args=["echo hi"])
        Script(name="unused", image="python:3.12-alpine", command=["python"], source="print(1)")

    from_yaml = load_text(cron_workflow.to_yaml(), "hera.yaml")
    from_dict = load_document(cron_workflow.to_dict(), Source("hera", 1))

    for result in (from_yaml, from_dict):
        (loaded,) = result.cron_workflows
        assert loaded.key == "analytics/hera-report"
        assert loaded.spec.schedules == ("0 6 * * 1-5", "30 9 * * sat")
        assert loaded.spec.concurrency_policy == "Forbid"
        assert loaded.spec.stop_expression == "cronworkflow.failed >= 3"
        assert validate(loaded.spec, NOW).valid
    assert from_yaml.cron_workflows[0].spec == from_dict.cron_workflows[0].spec


def test_documents_are_numbered_from_one_and_empty_ones_are_counted_but_ignored() -> None:
    text = "\n---\n".join(
        [CRON_WORKFLOW.format(name="first"), "", CRON_WORKFLOW.format(name="third")]
    )

    result = load_text(text, "two.yaml")

    assert [(c.source, c.key) for c in result.cron_workflows] == [
        (Source("two.yaml", 1), "default/first"),
        (Source("two.yaml", 3), "default/third"),
    ]
    assert result.errors == ()
    assert result.notices == ()


def test_a_missing_namespace_means_default_and_an_explicit_one_is_kept() -> None:
    explicit = CRON_WORKFLOW.format(name="x").replace("name: x", "name: x\n  namespace: jobs")

    assert load_text(CRON_WORKFLOW.format(name="x")).cron_workflows[0].key == "default/x"
    assert load_text(explicit).cron_workflows[0].key == "jobs/x"


def test_an_empty_file_is_not_an_error_but_warns_that_no_cron_workflow_was_found() -> None:
    result = load_paths([PROBLEMS / "empty.yaml"])

    assert result.entries == ()
    assert result.notices == (
        ManifestNotice(Source(str(PROBLEMS / "empty.yaml")), "warning", "no CronWorkflow found"),
    )


def test_a_file_of_comments_and_separators_only_is_like_an_empty_file() -> None:
    result = load_text("# nothing yet\n---\n---\n", "comments.yaml")

    assert result.entries == ()
    assert [notice.message for notice in result.notices] == ["no CronWorkflow found"]


def test_yaml_syntax_error_names_file_document_line_and_column() -> None:
    path = PROBLEMS / "syntax-error.yaml"

    result = load_paths([path])

    (before,) = result.cron_workflows
    assert before.key == "default/before-the-error"
    error = only_error(result)
    assert error.source == Source(str(path), 2)
    (message,) = error.messages
    assert message.startswith("invalid YAML at line 19, column 3: ")
    assert "flow sequence (from line 18, column 14)" in message
    assert str(error).startswith(f"{path} (document 2): invalid YAML at line 19")


def test_a_key_written_twice_is_an_error_and_later_documents_still_load() -> None:
    duplicated = CRON_WORKFLOW.format(name="dup").replace(
        '  schedules: ["0 * * * *"]\n',
        '  schedules: ["0 * * * *"]\n  schedules: ["5 * * * *"]\n',
    )
    text = duplicated + "---\n" + CRON_WORKFLOW.format(name="after")

    result = load_text(text, "dup.yaml")

    error = only_error(result)
    assert error.source == Source("dup.yaml", 1)
    assert error.messages == (
        'duplicate key "schedules" at line 7, column 3 (first at line 6): '
        "a key may appear once per mapping",
    )
    assert [c.key for c in result.cron_workflows] == ["default/after"]


def test_merge_keys_are_not_mistaken_for_duplicates() -> None:
    text = (
        CRON_WORKFLOW.format(name="merged").replace(
            "metadata:\n  name: merged\n",
            "metadata: &meta\n  name: merged\n  labels: &labels {team: a}\n",
        )
        + "  workflowMetadata:\n    labels:\n      <<: *labels\n      team: b\n"
    )

    result = load_text(text)

    (loaded,) = result.cron_workflows
    assert loaded.spec.workflow_metadata.labels == {"team": "b"}


def test_other_kinds_in_the_same_file_are_reported_and_skipped() -> None:
    path = PROBLEMS / "mixed-kinds.yaml"

    result = load_paths([path])

    assert result.errors == ()
    assert [c.key for c in result.cron_workflows] == ["default/report"]
    assert [(n.category, str(n)) for n in result.notices] == [
        ("skipped", f'{path} (document 1): ConfigMap "report-settings" (v1) is not a CronWorkflow'),
        (
            "skipped",
            f'{path} (document 3): WorkflowTemplate "report-template" (argoproj.io/v1alpha1) '
            "is not a CronWorkflow",
        ),
    ]


def test_a_list_from_kubectl_get_is_unpacked_with_item_paths() -> None:
    item = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "listed", "namespace": "argo"},
        "spec": {"schedules": ["@daily"], "workflowSpec": {"entrypoint": "x"}},
    }
    bad_item = {**item, "metadata": {"name": "bad"}, "spec": {"schedules": "@daily"}}
    document = {"apiVersion": "v1", "kind": "List", "items": [item, bad_item]}

    result = load_document(document, Source("list.yaml", 1))

    assert [c.key for c in result.cron_workflows] == ["argo/listed"]
    error = only_error(result)
    assert error.key == "default/bad"
    assert error.messages == (
        "items[1].spec.schedules: must be a list of strings, got a string; "
        'write schedules: ["@daily"]',
    )


def test_a_document_that_is_not_a_mapping_is_an_error() -> None:
    result = load_text(CRON_WORKFLOW.format(name="ok") + "---\n- just\n- a list\n", "list.yaml")

    error = only_error(result)
    assert error.source == Source("list.yaml", 2)
    assert error.messages[0].startswith("the document is a list, not a mapping")


def test_a_document_without_kind_is_an_error_that_says_what_to_write() -> None:
    text = CRON_WORKFLOW.format(name="no-kind").replace("kind: CronWorkflow\n", "")

    error = only_error(load_text(text, "no-kind.yaml"))

    assert error.key == "default/no-kind"
    assert error.messages == (
        "kind: is required: a CronWorkflow starts with apiVersion: argoproj.io/v1alpha1 "
        "and kind: CronWorkflow",
    )


def test_a_cron_workflow_without_api_version_is_an_error() -> None:
    text = CRON_WORKFLOW.format(name="x").replace("apiVersion: argoproj.io/v1alpha1\n", "")

    error = only_error(load_text(text))

    assert error.messages == ("apiVersion: is required: write apiVersion: argoproj.io/v1alpha1",)


def test_a_cron_workflow_of_another_argo_version_is_an_error() -> None:
    text = CRON_WORKFLOW.format(name="x").replace("v1alpha1", "v2")

    error = only_error(load_text(text))

    assert error.messages == ('apiVersion: must be argoproj.io/v1alpha1, got "argoproj.io/v2"',)


def test_a_cron_workflow_kind_of_another_api_group_is_skipped() -> None:
    text = CRON_WORKFLOW.format(name="x").replace("argoproj.io/v1alpha1", "example.com/v1")

    result = load_text(text)

    assert result.entries == ()
    assert [n.category for n in result.notices] == ["skipped", "warning"]


def test_missing_metadata_name_names_file_document_and_field() -> None:
    path = PROBLEMS / "missing-name.yaml"

    error = only_error(load_paths([path]))

    assert error.key is None
    assert str(error) == f"{path} (document 1): metadata.name: is required"


def test_schedules_given_as_a_string_names_file_document_and_field() -> None:
    path = PROBLEMS / "schedules-string.yaml"

    result = load_paths([path])

    assert [c.key for c in result.cron_workflows] == ["default/fine"]
    error = only_error(result)
    assert error.key == "jobs/schedules-as-string"
    assert str(error) == (
        f"{path} (document 2): spec.schedules: must be a list of strings, got a string; "
        'write schedules: ["0 6 * * *"]'
    )


def test_wrong_types_are_all_reported_for_the_document() -> None:
    path = PROBLEMS / "wrong-types.yaml"

    error = only_error(load_paths([path]))

    assert error.key == "default/wrong-types"
    assert str(error).splitlines() == [
        f"{path} (document 1): metadata.labels.enabled: must be a string, got a boolean (true) "
        '(quote it: "true")',
        f'{path} (document 1): spec.suspend: must be true or false, got a string ("false")',
        f"{path} (document 1): spec.startingDeadlineSeconds: must be an integer, "
        'got a string ("60")',
    ]


def test_a_missing_path_is_an_error_naming_it() -> None:
    missing = DATA / "does-not-exist.yaml"

    error = only_error(load_paths([missing]))

    assert error.source == Source(str(missing))
    assert str(error) == f"{missing}: cannot read the file: no such file or directory"


def test_a_path_through_a_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file.yaml").write_text("")
    through_a_file = tmp_path / "file.yaml" / "inner.yaml"

    error = only_error(load_paths([through_a_file]))

    assert str(error) == f"{through_a_file}: cannot read the file: not a directory"


def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# menu\nmetadata: {name: caf\xe9}\n".encode("latin-1"))

    error = only_error(load_paths([path]))

    assert str(error) == f"{path}: cannot read the file: not UTF-8 text (byte 0xe9 at line 2)"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + CRON_WORKFLOW.format(name="bom").encode())

    assert [c.key for c in load_paths([path]).cron_workflows] == ["default/bom"]


def test_folders_are_searched_recursively_in_sorted_order_for_yaml_and_yml(
    tmp_path: Path,
) -> None:
    for relative in ["b.yaml", "a/z.yml", "a/c.yaml", "notes.txt", "a/.hidden.yaml"]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CRON_WORKFLOW.format(name=path.stem.strip(".")))
    configmap_copy = tmp_path / "..2026_03_01" / "b.yaml"
    configmap_copy.parent.mkdir()
    configmap_copy.write_text(CRON_WORKFLOW.format(name="copy"))

    files = find_manifest_files(tmp_path)
    result = load_paths([tmp_path])

    assert files == [tmp_path / "a" / "c.yaml", tmp_path / "a" / "z.yml", tmp_path / "b.yaml"]
    assert [c.key for c in result.cron_workflows] == ["default/c", "default/z", "default/b"]
    assert result.cron_workflows[0].source == Source(str(tmp_path / "a" / "c.yaml"), 1)


def test_links_to_files_are_read_and_links_to_folders_are_not_followed(tmp_path: Path) -> None:
    """As ``os.walk`` does: a link to a file is a file (a ConfigMap volume is made of them), a
    link to a folder is not searched (no cycles, no copies)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "target.yaml").write_text(CRON_WORKFLOW.format(name="target"))
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "linked.yaml").symlink_to(elsewhere / "target.yaml")
    (folder / "linked-folder").symlink_to(elsewhere, target_is_directory=True)

    assert find_manifest_files(folder) == [folder / "linked.yaml"]


def unlistable(monkeypatch: pytest.MonkeyPatch, folder: Path, error: OSError) -> None:
    """``os.scandir`` fails for ``folder`` as it does for a folder without read permission
    (the tests run as root, where ``chmod 000`` stops nothing)."""
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Iterator[os.DirEntry[Any]]:
        if not isinstance(path, int) and Path(path) == folder:
            raise error
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_folder_that_cannot_be_listed_is_an_error_naming_it_not_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.walk`` skips such a folder silently; here it is an error naming the folder and
    what to do, and the files around it still load."""
    (tmp_path / "a.yaml").write_text(CRON_WORKFLOW.format(name="a"))
    team = tmp_path / "team"
    team.mkdir()
    (team / "b.yaml").write_text(CRON_WORKFLOW.format(name="b"))
    unlistable(monkeypatch, team, PermissionError(errno.EACCES, "Permission denied", str(team)))

    result = load_paths([tmp_path])

    assert [c.key for c in result.cron_workflows] == ["default/a"]
    assert only_error(result) == ManifestError(
        Source(str(team)),
        (
            "cannot list the folder: permission denied (this user needs read and execute "
            "permission on the folder); the manifests under it were not read",
        ),
    )
    with pytest.raises(PermissionError):
        find_manifest_files(tmp_path)


def test_a_configured_folder_that_cannot_be_listed_is_an_error_not_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text(CRON_WORKFLOW.format(name="a"))
    unlistable(monkeypatch, tmp_path, OSError(errno.EMFILE, "Too many open files"))

    result = load_paths([tmp_path])

    assert result.notices == ()
    assert str(only_error(result)) == (
        f"{tmp_path}: cannot list the folder: too many open files (raise the open-file limit, "
        "ulimit -n); the manifests under it were not read"
    )


def test_an_explicit_file_is_read_whatever_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "cron.json"
    path.write_text(CRON_WORKFLOW.format(name="json"))

    assert [c.key for c in load_paths([path]).cron_workflows] == ["default/json"]


def test_a_folder_without_manifests_warns(tmp_path: Path) -> None:
    result = load_paths([tmp_path])

    assert result.entries == ()
    assert [str(n) for n in result.notices] == [
        f"{tmp_path}: no *.yaml or *.yml file in this folder"
    ]


def test_paths_are_loaded_in_the_order_given() -> None:
    result = load_paths([PROBLEMS / "never-fires.yaml", PROBLEMS / "deprecated-schedule.yaml"])

    assert [c.key for c in result.cron_workflows] == ["default/february-30", "default/legacy"]


def test_unquoted_timestamps_stay_strings_so_the_workflow_spec_passes_through() -> None:
    text = CRON_WORKFLOW.format(name="ts") + (
        "    arguments:\n      parameters:\n        - {name: since, value: 2026-01-01}\n"
        "status:\n  lastScheduledTime: 2020-02-28T19:05:00Z\n"
    )

    (loaded,) = load_text(text).cron_workflows

    assert loaded.spec.workflow_spec is not None
    parameters = loaded.spec.workflow_spec["arguments"]["parameters"]
    assert parameters == [{"name": "since", "value": "2026-01-01"}]
    assert loaded.spec.status.last_scheduled_time == datetime.datetime(
        2020, 2, 28, 19, 5, tzinfo=datetime.UTC
    )


def test_a_loaded_cron_workflow_keeps_its_model_for_writing_back() -> None:
    (loaded,) = load_paths([DATA / "argo" / "hello-world.yaml"]).cron_workflows

    assert isinstance(loaded, LoadedCronWorkflow)
    assert loaded.model.to_document()["spec"]["successfulJobsHistoryLimit"] == 4


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (Source("a.yaml", 2), "a.yaml (document 2)"),
        (Source("a.yaml"), "a.yaml"),
    ],
)
def test_a_source_reads_file_then_document(source: Source, text: str) -> None:
    assert str(source) == text


# Building documents: the loader's own constructor against PyYAML's, with the same parser and
# resolver (timestamps stay strings) but none of the loader's overrides.


class PlainLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def plain_documents(text: str) -> list[object]:
    """What PyYAML builds, document by document, up to a YAML error if there is one."""
    loader = PlainLoader(text)
    built: list[object] = []
    try:
        while loader.check_data():
            built.append(loader.get_data())
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return built


def typed(value: object) -> object:
    """`value` with the type of everything in it, so that 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", [(typed(key), typed(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(item) for item in value])
    if isinstance(value, set):
        return ("set", sorted(map(repr, value)))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def shared_objects(value: object) -> list[tuple[int, int]]:
    """Where the same dict or list is found twice, as pairs of positions in a walk of `value`."""
    positions: dict[int, int] = {}
    found: list[tuple[int, int]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if id(item) in positions:
            found.append((positions[id(item)], len(positions)))
            continue
        positions[id(item)] = len(positions)
        stack.extend(reversed(list(item.values()) if isinstance(item, dict) else item))
    return found


def assert_built_as_pyyaml_builds(text: str) -> list[object]:
    ours = [document for _, document in documents_of(text, "test.yaml")]
    plain = plain_documents(text)
    for number, document in enumerate(ours):
        if isinstance(document, ManifestError):
            continue
        assert typed(document) == typed(plain[number]), f"document {number + 1}"
        assert shared_objects(document) == shared_objects(plain[number])
    return ours


REPOSITORY_YAML = sorted(
    path
    for folder in (ROOT / "manifests", ROOT / "tests" / "golden", DATA)
    for path in [*folder.rglob("*.yaml"), *folder.rglob("*.yml")]
)


@pytest.mark.parametrize("path", REPOSITORY_YAML, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_yaml_file_of_the_repository_is_built_as_pyyaml_builds_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8-sig")

    ours = assert_built_as_pyyaml_builds(text)

    if DATA / "problems" not in path.parents:
        assert [d for d in ours if isinstance(d, ManifestError)] == []
        assert len(ours) == len(plain_documents(text))


JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["yes", "off", "~", "0x1F", "0o17", "1_000", "2026-01-01", "<<", "=", ""]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.booleans(), children, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    documents=st.lists(JSON_LIKE, min_size=1, max_size=3),
    flow_style=st.sampled_from([False, True, None]),
)
def test_any_json_like_document_is_built_as_pyyaml_builds_it(
    documents: list[Any], flow_style: bool | None
) -> None:
    text = yaml.safe_dump_all(
        documents, default_flow_style=flow_style, allow_unicode=True, sort_keys=False
    )

    ours = assert_built_as_pyyaml_builds(text)

    assert len(ours) == len(documents)


ALIASES_AND_TAGS = """defaults: &defaults {image: alpine, replicas: 2, debug: off}
sizes: &sizes [1, 2.5, .inf, -0x1F, 0o17, ~, null, true, "3"]
empty: &empty []
first:
  <<: *defaults
  replicas: 3
second:
  <<: [*defaults, {extra: yes}]
  sizes: *sizes
  again: *sizes
third: {<<: {a: 1}, b: *empty, c: *empty}
= : equals
tags: [!!str 12, !!int "12", !!float "1", !!bool "yes", !!null "", !!binary aGVsbG8=]
set: !!set {a, b}
omap: !!omap [{one: 1}, {two: *defaults}]
pairs: !!pairs [{k: v}, {k: w}]
when: 2026-03-01T06:00:00Z
explicit: !!timestamp 2026-03-01
keys: {1: int, 1.5: float, null: none, true: bool, "1": string}
---
- *undefined_in_a_new_document_is_an_error_so_this_stream_ends_here
"""


def test_anchors_aliases_merge_keys_and_tags_are_built_as_pyyaml_builds_them() -> None:
    (document, error) = assert_built_as_pyyaml_builds(ALIASES_AND_TAGS)

    assert isinstance(document, dict)
    assert document["first"] == {"image": "alpine", "replicas": 3, "debug": False}
    assert document["second"]["extra"] is True
    assert document["second"]["sizes"] is document["sizes"] is document["second"]["again"]
    assert document["third"]["b"] is document["third"]["c"] is document["empty"]
    assert document["when"] == "2026-03-01T06:00:00Z"
    assert document["explicit"] == datetime.date(2026, 3, 1)
    assert document["set"] == {"a", "b"}
    assert document["omap"][1][1] is document["defaults"]
    assert isinstance(error, ManifestError)
    assert error.messages[0].startswith("invalid YAML at line 21, column 3: found undefined alias")


def test_an_aliased_node_is_built_once_and_shared_so_an_alias_bomb_stays_small() -> None:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 5)]
    bomb = "\n".join(levels) + "\n"  # 10**5 strings once expanded, within the limits

    ((_, document),) = documents_of(bomb, "bomb.yaml")

    assert isinstance(document, dict)
    top = document["a4"]
    assert all(item is document["a3"] for item in top)
    assert all(item is document["a0"] for item in document["a1"])
    assert len(shared_objects(document)) == 4 * 10  # every alias is the object of its anchor


def test_a_document_that_contains_itself_is_an_error_and_later_documents_still_load() -> None:
    recursive = CRON_WORKFLOW.format(name="loop").replace(
        "  workflowSpec:\n", "  workflowSpec: &spec\n    again: *spec\n"
    )
    text = recursive + "---\n&list [1, *list]\n---\n" + CRON_WORKFLOW.format(name="after")

    result = load_text(text, "loop.yaml")

    assert [(error.source.document, error.messages) for error in result.errors] == [
        (
            1,
            (
                'recursive alias: the value of "again" at line 8, column 5 is the mapping at '
                "line 7, column 17 that contains it; a manifest cannot contain itself (JSON and "
                "the Kubernetes API cannot represent it)",
            ),
        ),
        (
            2,
            (
                "recursive alias: item 2 of the sequence at line 14, column 1 is the sequence "
                "at line 14, column 1 that contains it; a manifest cannot contain itself (JSON "
                "and the Kubernetes API cannot represent it)",
            ),
        ),
    ]
    assert [c.key for c in result.cron_workflows] == ["default/after"]


def test_a_mapping_merged_into_itself_is_not_recursive_but_one_used_as_its_own_key_is() -> None:
    merged = load_text("&m {kind: ConfigMap, <<: *m}\n", "merged.yaml")
    keyed = load_text("&m {*m : 1}\n", "keyed.yaml")

    assert [str(notice) for notice in merged.notices] == [
        "merged.yaml (document 1): ConfigMap is not a CronWorkflow",
        "merged.yaml: no CronWorkflow found",
    ]
    assert only_error(keyed).messages == (
        "invalid YAML at line 1, column 1: while constructing a mapping (from line 1, column 1): "
        "found unhashable key; documents after this point were not read",
    )


def test_aliases_nested_thousands_deep_are_refused_before_being_built() -> None:
    chain = "".join(f"  - &a{n} [*a{n - 1}]\n" for n in range(1, 5000))
    text = f"chain:\n  - &a0 [end]\n{chain}deepest: *a4999\n"

    ((_, document),) = documents_of(text, "deep.yaml")

    assert isinstance(document, ManifestError)
    assert document.messages == (
        "the document nests mappings and sequences more than 100 levels deep (through an alias "
        "in the sequence at line 100, column 5), the limit per document; aliases expand: each "
        "`*name` nests the whole anchored subtree where it is used",
    )


def test_merge_keys_nested_too_deeply_are_an_error_not_a_crash() -> None:
    # Merge keys are resolved recursively, by PyYAML: a chain of thousands of them is refused.
    chain = "".join(f"    - &m{n} {{<<: *m{n - 1}}}\n" for n in range(1, 5000))
    text = f"defs:\n  chain:\n    - &m0 {{a: 0}}\n{chain}use: {{<<: *m4999}}\n"

    error = only_error(load_text(text, "merges.yaml"))

    assert str(error) == (
        "merges.yaml (document 1): the document nests mappings and sequences more than 100 "
        "levels deep (through an alias in the mapping at line 100, column 7), the limit per "
        "document; aliases expand: each `*name` nests the whole anchored subtree where it is used"
    )


def test_duplicate_keys_are_reported_breadth_first_as_before() -> None:
    text = "a:\n  deep: {x: 1, x: 2}\nb: {y: 1, y: 2}\nb: 3\n"

    error = only_error(load_text(text, "dups.yaml"))

    assert error.messages == (
        'duplicate key "b" at line 4, column 1 (first at line 3): a key may appear once per '
        "mapping",
        'duplicate key "y" at line 3, column 11 (first at line 3): a key may appear once per '
        "mapping",
        'duplicate key "x" at line 2, column 16 (first at line 2): a key may appear once per '
        "mapping",
    )


def test_keys_merged_into_a_mapping_that_is_merged_later_are_not_duplicates() -> None:
    text = (
        "metadata:\n  labels:\n    base: &base {<<: {team: a}, team: b}\n"
        "spec: {<<: *base, extra: c}\n"
    )

    ((_, document),) = documents_of(text, "merges.yaml")

    assert document == {
        "metadata": {"labels": {"base": {"team": "b"}}},
        "spec": {"team": "b", "extra": "c"},
    }


def test_a_duplicate_key_in_a_merged_mapping_is_still_reported() -> None:
    text = "base: &base {team: a, team: b}\nspec: {<<: *base}\n"

    error = only_error(load_text(text, "merges.yaml"))

    assert error.messages == (
        'duplicate key "team" at line 1, column 23 (first at line 1): a key may appear once '
        "per mapping",
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("!!int abc", 'cannot read "abc" as !!int: invalid literal for int() with base 10'),
        ("!!bool maybe", "cannot read \"maybe\" as !!bool: 'maybe'"),
        ("!!map abc", "expected a mapping node, but found scalar"),
        ("1" * 5000, 'cannot read "1111111111111111111111111111111111111..." as !!int'),
    ],
)
def test_a_scalar_that_cannot_be_read_as_its_tag_is_a_yaml_error(value: str, problem: str) -> None:
    text = f"apiVersion: v1\nkind: ConfigMap\ndata: {value}\n"

    error = only_error(load_text(text, "tags.yaml"))

    (message,) = error.messages
    assert message.startswith(f"invalid YAML at line 3, column 7: {problem}")
    assert message.endswith("; documents after this point were not read")


def test_a_list_item_names_its_unknown_fields_and_its_invalid_name_by_item_path() -> None:
    item = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "listed"},
        "spec": {"schedules": ["@daily"], "workflowSpec": {"entrypoint": "x"}, "suspended": True},
    }
    bad_name = {**item, "metadata": {"name": "{listed}"}}
    document = {"apiVersion": "v1", "kind": "List", "items": [item, bad_name]}

    result = load_document(document, Source("list.yaml", 1))

    (loaded,) = result.cron_workflows
    assert loaded.unknown_fields == (
        'items[0].spec.suspended: unknown field "suspended" (did you mean "suspend"?)',
    )
    error = only_error(result)
    assert error.key is None
    assert error.messages[0].startswith('items[1].metadata.name: Invalid value: "{listed}": ')


def test_the_same_cron_workflow_twice_in_a_list_is_an_error_of_the_second() -> None:
    item = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "listed"},
        "spec": {"schedules": ["@daily"], "workflowSpec": {"entrypoint": "x"}},
    }
    document = {"apiVersion": "v1", "kind": "List", "items": [item, item]}

    result = load_document(document, Source("list.yaml", 1)).rejecting_duplicates()

    assert len(result.cron_workflows) == 1
    assert only_error(result).messages == (
        "CronWorkflow default/listed is already defined in list.yaml (document 1); each "
        "namespace/name must be defined once",
    )


def test_load_paths_rejects_duplicates_across_files_and_reads_a_file_named_twice_once(
    tmp_path: Path,
) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(CRON_WORKFLOW.format(name="x"))
    (tmp_path / "b.yaml").write_text(CRON_WORKFLOW.format(name="x"))

    result = load_paths([first, tmp_path, first])

    assert [item.source.file for item in result.entries] == [str(first), str(tmp_path / "b.yaml")]
    assert [c.source.file for c in result.cron_workflows] == [str(first)]
    assert only_error(result).key == "default/x"
