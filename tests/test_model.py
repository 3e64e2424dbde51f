"""The pydantic model of Argo's CronWorkflow: what it accepts, what it refuses, what it keeps."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.spec import CronWorkflowSpec, StatusSeed, WorkflowMetadata
from scheduler.manifests.models import (
    CronWorkflowModel,
    CronWorkflowModelError,
    CronWorkflowSpecModel,
    FieldProblem,
    format_field_path,
    parse_cron_workflow,
    unknown_fields,
)

DATA = Path(__file__).parent / "data"


def minimal(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "hello-world"},
        "spec": {
            "schedules": ["* * * * *"],
            "workflowSpec": {
                "entrypoint": "main",
                "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
            },
            **spec,
        },
    }


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(CronWorkflowModelError) as raised:
        parse_cron_workflow(document)
    return [str(problem) for problem in raised.value.problems]


def read_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_argos_documented_hello_world_parses_with_every_field() -> None:
    model = parse_cron_workflow(read_yaml(DATA / "argo" / "hello-world.yaml"))

    spec = model.spec
    assert spec.schedules == ["* * * * *"]
    assert spec.timezone == "America/Los_Angeles"
    assert spec.starting_deadline_seconds == 0
    assert spec.concurrency_policy == "Replace"
    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (4, 4)
    assert spec.suspend is False
    assert spec.workflow_spec is not None
    assert spec.workflow_spec["entrypoint"] == "whalesay"


def test_fields_can_be_given_by_python_name_as_well_as_by_argo_name() -> None:
    by_name = CronWorkflowSpecModel(schedules=["@hourly"], starting_deadline_seconds=30)
    by_alias = CronWorkflowSpecModel.model_validate(
        {"schedules": ["@hourly"], "startingDeadlineSeconds": 30}
    )

    assert by_name == by_alias


def test_an_object_read_from_a_cluster_dumps_back_unchanged() -> None:
    document = read_yaml(DATA / "argo" / "from-cluster.yaml")
    original = copy.deepcopy(document)

    dumped = parse_cron_workflow(document).to_document()

    assert dumped == original


def test_unknown_fields_are_kept_at_every_level() -> None:
    document = minimal(futureField={"enabled": True})
    document["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    document["spec"]["workflowMetadata"] = {"labels": {"a": "b"}, "generateName": "ignored-"}
    document["status"] = {"phase": "Active", "newCounter": 4}

    dumped = parse_cron_workflow(document).to_document()

    assert dumped["spec"]["futureField"] == {"enabled": True}
    assert dumped["metadata"]["managedFields"] == [{"manager": "kubectl"}]
    assert dumped["spec"]["workflowMetadata"]["generateName"] == "ignored-"
    assert dumped["status"]["newCounter"] == 4


def test_unknown_fields_are_listed_at_every_level_the_model_knows() -> None:
    document = minimal(
        futureField={"enabled": True}, stopStrategy={"expression": "false", "expresion": "x"}
    )
    document["kind2"] = "x"
    document["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    document["metadata"]["nmae"] = "typo"
    document["spec"]["workflowMetadata"] = {"generateName": "known-", "lables": {}}
    document["status"] = {
        "newCounter": 4,
        "active": [{"name": "w", "fieldPath": "known", "uuid": "x"}],
        "conditions": [{"type": "SpecError", "reason": "x"}],
    }
    document["spec"]["workflowSpec"]["notChecked"] = True  # workflowSpec has its own checker

    problems = [str(problem) for problem in unknown_fields(parse_cron_workflow(document))]

    assert problems == [
        'kind2: unknown field "kind2" (did you mean "kind"?)',
        'metadata.nmae: unknown field "nmae" (did you mean "name"?)',
        'spec.futureField: unknown field "futureField"',
        'spec.workflowMetadata.lables: unknown field "lables" (did you mean "labels"?)',
        'spec.stopStrategy.expresion: unknown field "expresion" (did you mean "expression"?)',
        'status.newCounter: unknown field "newCounter"',
        'status.active[0].uuid: unknown field "uuid" (did you mean "uid"?)',
        'status.conditions[0].reason: unknown field "reason"',
    ]


def test_an_argo_document_read_from_a_cluster_has_no_unknown_field() -> None:
    model = parse_cron_workflow(read_yaml(DATA / "argo" / "from-cluster.yaml"))

    assert unknown_fields(model) == ()


def test_a_python_field_name_in_a_document_is_an_unknown_field_and_dumps_back_unchanged() -> None:
    """Documents are read by Argo's names only: `concurrency_policy` is ignored as Argo's
    controller ignores it, and kept as it was written."""
    document = minimal(concurrency_policy="Forbid", starting_deadline_seconds=30)
    original = copy.deepcopy(document)

    model = parse_cron_workflow(document)

    assert model.spec.concurrency_policy is None
    assert model.spec.starting_deadline_seconds is None
    assert [problem.path for problem in unknown_fields(model)] == [
        "spec.concurrency_policy",
        "spec.starting_deadline_seconds",
    ]
    assert model.to_document() == original


def test_names_kubernetes_refuses_are_problems_beside_the_type_errors() -> None:
    document = minimal(schedules="0 6 * * *")
    document["metadata"] = {"name": "Bad_Name", "namespace": "ok", "labels": {"k": "v v"}}

    problems = problems_of(document)

    assert [problem.split(":")[0] for problem in problems] == [
        "metadata.name",
        "metadata.labels",
        "spec.schedules",
    ]
    assert problems[0].startswith('metadata.name: Invalid value: "Bad_Name": a lowercase RFC')


def test_schedules_given_as_a_string_is_rejected_with_the_field_path() -> None:
    assert problems_of(minimal(schedules="0 6 * * *")) == [
        'spec.schedules: must be a list of strings, got a string; write schedules: ["0 6 * * *"]'
    ]


def test_a_schedule_that_is_not_a_string_names_its_index() -> None:
    problems = problems_of(minimal(schedules=["0 6 * * *", 5]))

    assert problems == ['spec.schedules[1]: must be a string, got an integer (5) (quote it: "5")']


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("suspend", "yes", 'spec.suspend: must be true or false, got a string ("yes")'),
        (
            "startingDeadlineSeconds",
            "60",
            'spec.startingDeadlineSeconds: must be an integer, got a string ("60")',
        ),
        (
            "successfulJobsHistoryLimit",
            2.5,
            "spec.successfulJobsHistoryLimit: must be an integer, got a number (2.5)",
        ),
        ("timezone", 1, 'spec.timezone: must be a string, got an integer (1) (quote it: "1")'),
        ("workflowSpec", "main", 'spec.workflowSpec: must be a mapping, got a string ("main")'),
        ("stopStrategy", {}, "spec.stopStrategy.expression: is required"),
        ("workflowMetadata", [], "spec.workflowMetadata: must be a mapping, got a list"),
    ],
)
def test_wrong_types_are_rejected_naming_the_field_path(
    field: str, value: object, expected: str
) -> None:
    assert problems_of(minimal(**{field: value})) == [expected]


def test_a_label_value_yaml_read_as_a_boolean_suggests_quoting() -> None:
    document = minimal()
    document["metadata"]["labels"] = {"app.kubernetes.io/enabled": True}

    assert problems_of(document) == [
        'metadata.labels["app.kubernetes.io/enabled"]: must be a string, got a boolean (true) '
        '(quote it: "true")'
    ]


def test_every_wrong_field_is_reported_not_only_the_first() -> None:
    problems = problems_of(minimal(suspend="no", when=False))

    assert len(problems) == 2
    assert {problem.split(":")[0] for problem in problems} == {"spec.suspend", "spec.when"}


def test_missing_metadata_name_is_rejected() -> None:
    document = minimal()
    del document["metadata"]["name"]

    assert problems_of(document) == ["metadata.name: is required"]


def test_empty_metadata_name_is_rejected() -> None:
    document = minimal()
    document["metadata"]["name"] = ""

    assert problems_of(document) == ["metadata.name: must not be empty"]


def test_missing_spec_is_rejected() -> None:
    document = minimal()
    del document["spec"]

    assert problems_of(document) == ["spec: is required"]


@pytest.mark.parametrize(
    "written",
    [
        "2020-02-28T19:05:00Z",
        "2020-02-28T11:05:00-08:00",
        datetime.datetime(2020, 2, 28, 19, 5, tzinfo=datetime.UTC),
        datetime.datetime(2020, 2, 28, 19, 5),
        "2020-02-28T19:05:00",
    ],
)
def test_last_scheduled_time_parses_from_a_string_or_a_datetime_naive_meaning_utc(
    written: object,
) -> None:
    document = minimal()
    document["status"] = {"lastScheduledTime": written}

    spec = parse_cron_workflow(document).to_spec()

    assert spec.status.last_scheduled_time == datetime.datetime(
        2020, 2, 28, 19, 5, tzinfo=datetime.UTC
    )


def test_an_unreadable_last_scheduled_time_is_rejected_with_an_example() -> None:
    document = minimal()
    document["status"] = {"lastScheduledTime": "yesterday"}

    (problem,) = problems_of(document)

    assert problem.startswith("status.lastScheduledTime: must be an RFC 3339 time such as ")


def test_argos_null_status_fields_are_accepted() -> None:
    document = minimal()
    document["status"] = {"active": None, "lastScheduledTime": None, "conditions": None}

    assert parse_cron_workflow(document).to_spec().status == StatusSeed()


def test_the_pure_view_carries_what_the_policies_need() -> None:
    model = parse_cron_workflow(read_yaml(DATA / "argo" / "from-cluster.yaml"))

    spec = model.to_spec()

    assert spec.key == "argo/hello-world"
    assert spec.uid == "f230ee83-2ddc-434d-b27a-3b3b5c1a2a34"
    assert spec.labels == {
        "workflows.argoproj.io/creator": "system-serviceaccount-argo-argo-server"
    }
    assert spec.schedules == ("* * * * *",)
    assert spec.deprecated_schedule is None
    assert spec.timezone == "America/Los_Angeles"
    assert spec.concurrency_policy == "Allow"
    assert spec.starting_deadline_seconds == 30
    assert spec.workflow_metadata == WorkflowMetadata(
        labels={"label1": "value1"},
        annotations={"annotation2": "value2"},
        finalizers=("finalizer1",),
    )
    assert spec.workflow_spec is not None
    assert spec.workflow_spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert spec.status == StatusSeed(
        succeeded=7,
        failed=1,
        last_scheduled_time=datetime.datetime(2020, 2, 28, 19, 5, tzinfo=datetime.UTC),
        phase="Active",
        active=("hello-world-1582916700",),
        last_used_schedule="CRON_TZ=America/Los_Angeles * * * * *",
    )
    assert set(spec.annotations) == {"kubectl.kubernetes.io/last-applied-configuration"}


def test_the_state_annotations_travel_on_the_status_seed_not_among_the_annotations() -> None:
    """Argo's ``last-used-schedule`` and cronwf's ``last-decided-time`` are rewritten by the
    controllers as they go: a change of either is a change of state, not of the spec (and
    ``cronworkflow.annotations`` shows the user's annotations only)."""
    document = minimal()
    document["metadata"]["annotations"] = {
        "team": "data",
        "cronworkflows.argoproj.io/last-used-schedule": "* * * * *",
        "cronwf.io/last-decided-time": "2020-02-28T19:07:00Z",
    }

    spec = parse_cron_workflow(document).to_spec()

    assert spec.annotations == {"team": "data"}
    assert spec.status == StatusSeed(
        last_used_schedule="* * * * *",
        last_decided_time=datetime.datetime(2020, 2, 28, 19, 7, tzinfo=datetime.UTC),
    )
    dumped = parse_cron_workflow(document).to_document()
    assert dumped["metadata"]["annotations"] == document["metadata"]["annotations"]


@pytest.mark.parametrize("written", ["", "yesterday", "2020-02-30T00:00:00Z", "1582916820"])
def test_an_unreadable_last_decided_time_is_ignored_not_refused(written: str) -> None:
    """It only ever shortens a catch-up; a typo in it must not make the object unschedulable."""
    document = minimal()
    document["metadata"]["annotations"] = {"cronwf.io/last-decided-time": written}

    spec = parse_cron_workflow(document).to_spec()

    assert spec.status.last_decided_time is None
    assert spec.annotations == {}


def test_a_naive_last_decided_time_means_utc() -> None:
    document = minimal()
    document["metadata"]["annotations"] = {"cronwf.io/last-decided-time": "2020-02-28T19:07:00"}

    spec = parse_cron_workflow(document).to_spec()

    assert spec.status.last_decided_time == datetime.datetime(
        2020, 2, 28, 19, 7, tzinfo=datetime.UTC
    )


def test_a_manifest_keeps_its_status_as_written_without_the_last_used_schedule() -> None:
    """Only the Kubernetes source applies Argo's reading of a missing annotation (SIMULATE.md:
    a manifest's ``lastScheduledTime`` seeds the cursor)."""
    document = minimal()
    document["status"] = {"lastScheduledTime": "2020-02-28T19:05:00Z"}

    assert parse_cron_workflow(document).to_spec().status.last_used_schedule_required is False


def test_defaults_follow_argo_when_fields_are_left_out() -> None:
    spec = parse_cron_workflow(minimal()).to_spec()

    assert spec == CronWorkflowSpec(
        name="hello-world",
        namespace="default",
        schedules=("* * * * *",),
        workflow_spec=spec.workflow_spec,
    )
    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (3, 1)
    assert spec.concurrency_policy == ""
    assert spec.concurrency.value == "Allow"
    assert spec.suspend is False
    assert spec.when == ""
    assert spec.stop_expression is None


def test_negative_history_limits_fall_back_to_the_defaults() -> None:
    document = minimal(successfulJobsHistoryLimit=-1, failedJobsHistoryLimit=-1)

    spec = parse_cron_workflow(document).to_spec()

    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (3, 1)


def test_zero_history_limits_are_kept() -> None:
    document = minimal(successfulJobsHistoryLimit=0, failedJobsHistoryLimit=0)

    spec = parse_cron_workflow(document).to_spec()

    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (0, 0)


def test_the_deprecated_schedule_is_kept_apart_for_validation() -> None:
    document = minimal()
    del document["spec"]["schedules"]
    document["spec"]["schedule"] = "0 6 * * *"

    spec = parse_cron_workflow(document).to_spec()

    assert spec.schedules == ()
    assert spec.deprecated_schedule == "0 6 * * *"
    assert spec.effective_schedules == ("0 6 * * *",)


def test_stop_strategy_and_when_reach_the_pure_view() -> None:
    document = minimal(
        stopStrategy={"expression": "cronworkflow.failed >= 3"},
        when="{{= cronworkflow.lastScheduledTime == nil }}",
    )

    spec = parse_cron_workflow(document).to_spec()

    assert spec.stop_expression == "cronworkflow.failed >= 3"
    assert spec.when == "{{= cronworkflow.lastScheduledTime == nil }}"


def test_the_model_key_defaults_the_namespace() -> None:
    model = CronWorkflowModel.model_validate(minimal())

    assert (model.namespace, model.key) == ("default", "default/hello-world")


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (("spec", "schedules", 1), "spec.schedules[1]"),
        (
            ("metadata", "labels", "app.kubernetes.io/name"),
            'metadata.labels["app.kubernetes.io/name"]',
        ),
        (("status", "active", 0, "name"), "status.active[0].name"),
        ((), ""),
    ],
)
def test_field_paths_read_like_jq(location: tuple[int | str, ...], path: str) -> None:
    assert format_field_path(location) == path


def test_a_field_problem_reads_path_then_message() -> None:
    assert str(FieldProblem("spec.suspend", "must be true or false")) == (
        "spec.suspend: must be true or false"
    )
