"""`cronwf lint` on the payloads of issue 12 (items 1 and 3): names and namespaces by
Kubernetes' rules, labels and annotations, unknown fields and `--strict`, duplicates.

Each payload is a manifest that linted `ok` and then misbehaved in `serve`: a name or
namespace that reached a shell, a path or a Redis key; a typo'd field silently ignored; a
second definition of a CronWorkflow. Each test states lint's verdict and its exact message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.cli import main

SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QUALIFIED_NAME = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def document(
    name: str = "nightly",
    namespace: str | None = None,
    metadata: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **(metadata or {})}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": meta,
        "spec": {
            "schedules": ["0 2 * * *"],
            **spec,
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
            },
        },
    }


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def lint(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[dict[str, Any]]]:
    code = main(["lint", "-o", "json", *map(str, args)])
    reports = json.loads(capsys.readouterr().out)
    assert isinstance(reports, list)
    return code, reports


def lint_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, doc: dict[str, Any], *flags: str
) -> tuple[int, dict[str, Any]]:
    path = write(tmp_path / "cron.yaml", doc)
    code, reports = lint(capsys, *flags, path)
    (report,) = reports
    assert report["file"] == str(path)
    assert report["document"] == 1
    return code, report


# --- names and namespaces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("{x}", '"{x}"'),
        ("a\x00b", '"a\\x00b"'),
        ("../x", '"../x"'),
        ("$(touch /tmp/cronwf-pwned)", '"$(touch /tmp/cronwf-pwned)"'),
        ("Bad_Name", '"Bad_Name"'),
        ("UPPER", '"UPPER"'),
        ("line\nbreak", '"line\\nbreak"'),
    ],
    ids=["braces", "nul", "dot-dot-slash", "command-substitution", "underscore", "upper", "nl"],
)
def test_a_name_kubernetes_refuses_is_an_error_with_its_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, shown: str
) -> None:
    code, report = lint_one(capsys, tmp_path, document(name))

    assert code == 1
    assert report["valid"] is False
    assert report["errors"] == [f"metadata.name: Invalid value: {shown}: {SUBDOMAIN}"]
    assert report["cronWorkflow"] is None  # an invalid name is quoted, never used as a key


def test_a_300_character_name_is_too_long(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, report = lint_one(capsys, tmp_path, document("a" * 300))

    assert code == 1
    shown = '"' + "a" * 100 + '"... (300 characters)'
    assert report["errors"] == [
        f"metadata.name: Invalid value: {shown}: must be no more than 253 characters"
    ]


def test_a_name_of_253_characters_is_a_valid_name_but_over_argos_limit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Kubernetes' rule is 253; Argo's 52-character limit stays the validation error it is."""
    name = ".".join(["a" * 63] * 4)[:253]
    code, report = lint_one(capsys, tmp_path, document(name))

    assert code == 1
    (error,) = report["errors"]
    assert not error.startswith("metadata.name: Invalid value")
    assert "52" in error


def test_a_name_both_too_long_and_upper_case_reports_both_as_kubernetes_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, report = lint_one(capsys, tmp_path, document("A" * 254))

    assert code == 1
    shown = '"' + "A" * 100 + '"... (254 characters)'
    assert report["errors"] == [
        f"metadata.name: Invalid value: {shown}: must be no more than 253 characters",
        f"metadata.name: Invalid value: {shown}: {SUBDOMAIN}",
    ]


@pytest.mark.parametrize(
    ("namespace", "errors"),
    [
        ("a/b", [f'metadata.namespace: Invalid value: "a/b": {LABEL}']),
        ("../etc", [f'metadata.namespace: Invalid value: "../etc": {LABEL}']),
        ("/abs", [f'metadata.namespace: Invalid value: "/abs": {LABEL}']),
        ("$(touch x)", [f'metadata.namespace: Invalid value: "$(touch x)": {LABEL}']),
        ("with.dot", [f'metadata.namespace: Invalid value: "with.dot": {LABEL}']),
        (
            "n" * 300,
            [
                'metadata.namespace: Invalid value: "'
                + "n" * 100
                + '"... (300 characters): must be no more than 63 characters'
            ],
        ),
    ],
    ids=["slash", "dot-dot", "absolute", "command-substitution", "dot", "300-characters"],
)
def test_a_namespace_kubernetes_refuses_is_an_error_with_its_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, namespace: str, errors: list[str]
) -> None:
    code, report = lint_one(capsys, tmp_path, document(namespace=namespace))

    assert code == 1
    assert report["errors"] == errors
    assert report["cronWorkflow"] is None


def test_a_valid_name_and_namespace_lint_ok(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, report = lint_one(capsys, tmp_path, document("nightly.backup-2", namespace="team-a"))

    assert code == 0
    assert report["cronWorkflow"] == "team-a/nightly.backup-2"
    assert report["errors"] == []


# --- labels and annotations --------------------------------------------------------------------


def test_bad_label_keys_and_values_are_errors_with_kubernetes_messages(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    labels = {"-team": "ok", "example.com/": "x", "a/b/c": "x", "tier": "has space", "v": "x" * 64}
    code, report = lint_one(capsys, tmp_path, document(metadata={"labels": labels}))

    assert code == 1
    assert report["errors"] == [
        f'metadata.labels: Invalid value: "-team": name part {QUALIFIED_NAME}',
        'metadata.labels: Invalid value: "example.com/": name part must be non-empty',
        f'metadata.labels: Invalid value: "example.com/": name part {QUALIFIED_NAME}',
        f'metadata.labels: Invalid value: "a/b/c": a qualified name {QUALIFIED_NAME} with an '
        "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        f'metadata.labels: Invalid value: "has space": {LABEL_VALUE}',
        f'metadata.labels: Invalid value: "{"x" * 64}": must be no more than 63 characters',
    ]


def test_workflow_metadata_labels_and_annotation_keys_are_checked_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = document(
        workflowMetadata={
            "labels": {"Bad_Prefix.io/x": "v"},
            "annotations": {"UPPER.example.com/Key": "any value at all", "$(x)": "v"},
        }
    )
    code, report = lint_one(capsys, tmp_path, doc)

    assert code == 1
    assert report["errors"] == [
        'spec.workflowMetadata.labels: Invalid value: "Bad_Prefix.io/x": prefix part ' + SUBDOMAIN,
        # Annotation keys are checked in lower case: an upper-case prefix is fine.
        f'spec.workflowMetadata.annotations: Invalid value: "$(x)": name part {QUALIFIED_NAME}',
    ]


def test_annotations_over_256_kib_in_total_are_too_long(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    annotations = {"a": "x" * (128 * 1024), "b": "y" * (128 * 1024)}
    code, report = lint_one(capsys, tmp_path, document(metadata={"annotations": annotations}))

    assert code == 1
    assert report["errors"] == ["metadata.annotations: Too long: may not be more than 262144 bytes"]


def test_annotations_of_exactly_256_kib_are_accepted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    annotations = {"a": "x" * (256 * 1024 - 1)}
    code, report = lint_one(capsys, tmp_path, document(metadata={"annotations": annotations}))

    assert code == 0, report["errors"]


# --- unknown fields and --strict ---------------------------------------------------------------

CONCURRENCYPOLICY = (
    'spec.concurrencypolicy: unknown field "concurrencypolicy" (did you mean "concurrencyPolicy"?)'
)
STARTING_DEADLINE = (
    'spec.startingDeadline: unknown field "startingDeadline" (did you mean '
    '"startingDeadlineSeconds"?)'
)


def test_typoed_spec_fields_are_errors_with_a_suggestion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = document(concurrencypolicy="Forbid", startingDeadline=60)
    code, report = lint_one(capsys, tmp_path, doc)

    assert code == 1
    assert report["valid"] is False
    assert report["errors"] == [CONCURRENCYPOLICY, STARTING_DEADLINE]
    assert report["cronWorkflow"] == "default/nightly"


def test_unknown_top_level_and_metadata_fields_are_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = document(metadata={"lables": {"team": "a"}, "resourceVersion": "7", "uid": "u"})
    doc["specs"] = {}
    code, report = lint_one(capsys, tmp_path, doc)

    assert code == 1
    assert report["errors"] == [
        'specs: unknown field "specs" (did you mean "spec"?)',
        'metadata.lables: unknown field "lables" (did you mean "labels"?)',
    ]


def test_fields_kubernetes_sets_on_metadata_are_known(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """What `kubectl get -o yaml` returns lints clean: the API server's own fields are not
    typos."""
    metadata = {
        "uid": "6a1c",
        "resourceVersion": "123",
        "generation": 2,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        "selfLink": "/apis/argoproj.io/v1alpha1/namespaces/default/cronworkflows/nightly",
        "ownerReferences": [],
        "finalizers": [],
        "deletionTimestamp": "2026-01-02T00:00:00Z",
        "deletionGracePeriodSeconds": 0,
        "generateName": "nightly-",
        "labels": {"team": "a"},
        "annotations": {"note": "x"},
    }
    code, report = lint_one(capsys, tmp_path, document(metadata=metadata))

    assert code == 0, report["errors"]


def test_strict_false_makes_unknown_fields_warnings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = document(concurrencypolicy="Forbid", startingDeadline=60)
    code, report = lint_one(capsys, tmp_path, doc, "--strict=false")

    assert code == 0
    assert report["valid"] is True
    assert report["errors"] == []
    assert report["warnings"] == [CONCURRENCYPOLICY, STARTING_DEADLINE]


@pytest.mark.parametrize(
    ("flags", "strict"),
    [
        ([], True),
        (["--strict"], True),
        (["--strict=true"], True),
        (["--strict=1"], True),
        (["--strict=false"], False),
        (["--strict=False"], False),
        (["--strict=0"], False),
        (["--strict=false", "--strict"], True),
    ],
)
def test_strict_is_a_boolean_flag_like_argos(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], strict: bool
) -> None:
    code, report = lint_one(capsys, tmp_path, document(concurrencypolicy="Forbid"), *flags)

    assert code == (1 if strict else 0)
    assert report["errors" if strict else "warnings"] == [CONCURRENCYPOLICY]


def test_strict_before_a_path_does_not_take_the_path_as_its_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "cron.yaml", document())
    code, reports = lint(capsys, "--strict", path)

    assert code == 0
    assert [report["file"] for report in reports] == [str(path)]


@pytest.mark.parametrize("value", ["maybe", "", "yes", "no"])
def test_a_bad_strict_value_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    path = write(tmp_path / "cron.yaml", document())
    with pytest.raises(SystemExit) as exited:
        main(["lint", f"--strict={value}", str(path)])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --strict: '{value}' is not true or false; write --strict" in err


def test_unknown_fields_in_text_output_are_error_lines_or_warning_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "cron.yaml", document(concurrencypolicy="Forbid"))

    assert main(["lint", str(path)]) == 1
    strict = capsys.readouterr().out.splitlines()
    assert main(["lint", "--strict=false", str(path)]) == 0
    lenient = capsys.readouterr().out.splitlines()

    where = f"{path} (document 1) default/nightly"
    assert strict == [
        f"error   {where}: {CONCURRENCYPOLICY}",
        "1 CronWorkflow: 0 valid, 1 invalid, 0 warnings",
    ]
    assert lenient == [
        f"ok      {where}",
        f"warning {where}: {CONCURRENCYPOLICY}",
        "1 CronWorkflow: 1 valid, 0 invalid, 1 warning",
    ]


def test_argo_field_names_only_a_python_name_is_an_unknown_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`concurrency_policy:` is not Argo's spelling: Argo ignores it, so must we (and say so)
    rather than honour a policy the controller would not."""
    code, report = lint_one(
        capsys, tmp_path, document(concurrency_policy="Forbid"), "--strict=false"
    )

    assert code == 0
    assert report["warnings"] == [
        'spec.concurrency_policy: unknown field "concurrency_policy" (did you mean '
        '"concurrencyPolicy"?)'
    ]


# --- duplicates --------------------------------------------------------------------------------


def test_a_cron_workflow_defined_twice_in_one_file_is_an_error_of_the_second(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "a.yaml", document("x"), document("x", schedules=["0 3 * * *"]))
    code, reports = lint(capsys, path)

    assert code == 1
    assert [(r["document"], r["valid"], r["errors"]) for r in reports] == [
        (1, True, []),
        (
            2,
            False,
            [
                f"CronWorkflow default/x is already defined in {path} (document 1); each "
                "namespace/name must be defined once"
            ],
        ),
    ]
    assert reports[1]["cronWorkflow"] == "default/x"


def test_a_cron_workflow_defined_in_two_files_is_an_error_of_the_second(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = write(tmp_path / "a.yaml", document("x", namespace="jobs"))
    second = write(tmp_path / "b.yaml", document("y"), document("x", namespace="jobs"))
    code, reports = lint(capsys, tmp_path)

    assert code == 1
    assert [(r["file"], r["document"], r["errors"]) for r in reports] == [
        (str(first), 1, []),
        (str(second), 1, []),
        (
            str(second),
            2,
            [
                f"CronWorkflow jobs/x is already defined in {first} (document 1); each "
                "namespace/name must be defined once"
            ],
        ),
    ]


def test_the_default_namespace_written_or_not_is_the_same_cron_workflow(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "a.yaml", document("x"), document("x", namespace="default"))
    code, reports = lint(capsys, path)

    assert code == 1
    assert "already defined" in reports[1]["errors"][0]


def test_a_file_named_twice_is_linted_once_and_is_no_duplicate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "a.yaml", document("x"))
    code, reports = lint(capsys, path, tmp_path, path)

    assert code == 0
    assert len(reports) == 1
