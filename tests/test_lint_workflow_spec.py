"""`cronwf lint` on ill-typed and mistyped `workflowSpec`s (issue 12, item 3).

`scheduler.manifests.workflow_schema` is tested on its own; these tests pin how its findings reach
the
user: a wrong type or a missing required field makes the document an error (the API server
with Argo's full CRD refuses it), an unknown field follows `--strict`, a field Argo removed is
a warning, and `serve`'s catalog never holds an ill-typed CronWorkflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.adapters.local.files import FileSource
from scheduler.cli import main
from scheduler.manifests.loading import load_text


def manifest(**workflow_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "malformed"},
        "spec": {
            "schedules": ["* * * * *"],
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
                **workflow_spec,
            },
        },
    }


def lint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, document: dict[str, Any], *flags: str
) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "cron.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    code = main(["lint", "-o", "json", *flags, str(path)])
    (report,) = json.loads(capsys.readouterr().out)
    return code, report


@pytest.mark.parametrize(
    ("workflow_spec", "message"),
    [
        (  # Argo's e2e TestMalformedCronWorkflow
            {"arguments": {"parameters": {"someParam": "x"}}},
            "spec.workflowSpec.arguments.parameters: must be a list, got a mapping",
        ),
        ({"arguments": "x"}, "spec.workflowSpec.arguments: must be a mapping"),
        (
            {"podGC": "OnPodCompletion"},
            'spec.workflowSpec.podGC: must be a mapping, got a string ("OnPodCompletion")',
        ),
        (
            {"arguments": {"parameters": [{"value": "x"}]}},
            "spec.workflowSpec.arguments.parameters[0].name: is required",
        ),
    ],
    ids=["parameters-mapping", "arguments-string", "podgc-string", "parameter-without-name"],
)
def test_an_ill_typed_workflow_spec_is_an_error_of_its_document(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    workflow_spec: dict[str, Any],
    message: str,
) -> None:
    code, report = lint(capsys, tmp_path, manifest(**workflow_spec))

    assert code == 1
    assert report["valid"] is False
    assert report["document"] == 1
    assert len(report["errors"]) == 1
    assert report["errors"][0].startswith(message), report["errors"]


def test_an_unknown_workflow_spec_field_fails_lint_unless_not_strict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = manifest(serviceAcountName="runner")
    expected = (
        'spec.workflowSpec.serviceAcountName: unknown field "serviceAcountName" '
        '(did you mean "serviceAccountName"?)'
    )

    code, report = lint(capsys, tmp_path, document)
    assert (code, report["valid"], report["errors"]) == (1, False, [expected])

    code, report = lint(capsys, tmp_path, document, "--strict=false")
    assert (code, report["valid"], report["errors"]) == (0, True, [])
    assert report["warnings"] == [expected]


def test_a_field_argo_removed_is_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, report = lint(capsys, tmp_path, manifest(synchronization={"mutex": {"name": "one"}}))

    assert code == 0
    assert report["valid"] is True
    assert [w.split(":")[0] for w in report["warnings"]] == [
        "spec.workflowSpec.synchronization.mutex"
    ]


def test_a_list_item_is_reported_with_its_place_in_the_list(tmp_path: Path) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": [manifest(podGC="OnPodCompletion")]}

    (error,) = load_text(yaml.safe_dump(document), "list.yaml").errors

    assert error.messages[0].startswith("items[0].spec.workflowSpec.podGC: must be a mapping")


def test_serves_catalog_never_holds_an_ill_typed_cron_workflow(tmp_path: Path) -> None:
    good = manifest()
    good["metadata"] = {"name": "good"}
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good), encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump(manifest(podGC="OnPodCompletion")), encoding="utf-8"
    )

    snapshot = FileSource([tmp_path]).poll()

    assert set(snapshot.cron_workflows) == {"default/good"}
    messages = [m for problem in snapshot.problems for m in problem.messages]
    assert any("spec.workflowSpec.podGC: must be a mapping" in m for m in messages), messages
