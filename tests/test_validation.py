"""Validation rules of DESIGN §3, in order, with Argo's messages (reference §1.16)."""

from __future__ import annotations

import datetime
import json
from dataclasses import replace
from typing import Any

import pytest

from policies.spec import CronWorkflowSpec, StatusSeed
from policies.validation import MAX_NAME_LENGTH, Validation, validate

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)

WORKFLOW_SPEC: dict[str, Any] = {
    "entrypoint": "main",
    "templates": [{"name": "main", "container": {"image": "alpine:3.20"}}],
}


def cron_workflow(**changes: Any) -> CronWorkflowSpec:
    base = CronWorkflowSpec(
        name="hello-world",
        schedules=("* * * * *",),
        workflow_spec=WORKFLOW_SPEC,
    )
    return replace(base, **changes)


def only_error(validation: Validation) -> str:
    assert not validation.valid
    assert len(validation.errors) == 1, "the first error wins: exactly one is reported"
    return validation.errors[0]


def test_a_complete_cron_workflow_is_valid_without_warnings() -> None:
    validation = validate(cron_workflow(timezone="America/Los_Angeles"), NOW)

    assert validation == Validation(errors=(), warnings=())
    assert validation.valid


def test_name_longer_than_52_characters_gives_argos_message_with_the_length() -> None:
    name = "a" * 60

    error = only_error(validate(cron_workflow(name=name)))

    assert error == (
        f'cron workflow name "{name}" must not be more than 52 characters long (currently 60)'
    )


def test_name_of_exactly_52_characters_is_accepted() -> None:
    assert validate(cron_workflow(name="a" * MAX_NAME_LENGTH)).valid


def test_no_schedule_at_all_is_rejected() -> None:
    error = only_error(validate(cron_workflow(schedules=())))

    assert error == "cron workflow must have at least one schedule"


def test_an_empty_deprecated_schedule_counts_as_no_schedule() -> None:
    error = only_error(validate(cron_workflow(schedules=(), deprecated_schedule="")))

    assert error == "cron workflow must have at least one schedule"


def test_both_schedule_and_schedules_is_rejected() -> None:
    spec = cron_workflow(schedules=("0 7 * * *",), deprecated_schedule="0 6 * * *")

    error = only_error(validate(spec))

    assert error == "cron workflow cant be configured with both Spec.Schedule and Spec.Schedules"


def test_the_deprecated_single_schedule_alone_is_accepted_with_a_warning() -> None:
    spec = cron_workflow(schedules=(), deprecated_schedule="0 6 * * *")

    validation = validate(spec, NOW)

    assert validation.valid
    assert spec.effective_schedules == ("0 6 * * *",)
    assert len(validation.warnings) == 1
    warning = validation.warnings[0]
    assert "spec.schedule is deprecated" in warning
    assert 'write schedules: ["0 6 * * *"]' in warning


def test_a_malformed_deprecated_schedule_is_reported_like_any_schedule() -> None:
    spec = cron_workflow(schedules=(), deprecated_schedule="61 * * * *")

    error = only_error(validate(spec))

    assert error.startswith("cron schedule 61 * * * * is malformed: ")


def test_malformed_schedule_gives_argos_message() -> None:
    spec = cron_workflow(schedules=("* * * * *", "10 * * 12737123 *"))

    error = only_error(validate(spec))

    assert error == (
        "cron schedule 10 * * 12737123 * is malformed: "
        "end of range (12737123) above maximum (12): 12737123"
    )


def test_the_first_malformed_schedule_wins() -> None:
    spec = cron_workflow(schedules=("* * * * *", "0 0 * * 7", "61 * * * *"))

    error = only_error(validate(spec))

    assert error.startswith("cron schedule 0 0 * * 7 is malformed: ")


def test_a_malformed_schedule_is_reported_before_an_unknown_timezone() -> None:
    spec = cron_workflow(schedules=("61 * * * *",), timezone="Not/A_Real_Timezone")

    error = only_error(validate(spec))

    assert error.startswith("cron schedule 61 * * * * is malformed: ")


def test_unknown_timezone_gives_argos_message() -> None:
    error = only_error(validate(cron_workflow(timezone="Not/A_Real_Timezone")))

    assert error == (
        'invalid timezone "Not/A_Real_Timezone": unknown time zone Not/A_Real_Timezone'
    )


def test_empty_timezone_means_utc_and_is_valid() -> None:
    assert validate(cron_workflow(timezone="")).valid


@pytest.mark.parametrize("policy", ["", "Allow", "Forbid", "Replace"])
def test_known_concurrency_policies_are_accepted(policy: str) -> None:
    assert validate(cron_workflow(concurrency_policy=policy)).valid


@pytest.mark.parametrize("policy", ["forbid", "Skip", "ALLOW"])
def test_unknown_concurrency_policy_gives_argos_message(policy: str) -> None:
    error = only_error(validate(cron_workflow(concurrency_policy=policy)))

    assert error == f"'{policy}' is not a valid concurrencyPolicy"


def test_negative_starting_deadline_gives_argos_message() -> None:
    error = only_error(validate(cron_workflow(starting_deadline_seconds=-1)))

    assert error == "startingDeadlineSeconds must be positive"


@pytest.mark.parametrize("deadline", [None, 0, 300])
def test_absent_zero_or_positive_starting_deadline_is_accepted(deadline: int | None) -> None:
    assert validate(cron_workflow(starting_deadline_seconds=deadline)).valid


def test_missing_workflow_spec_is_rejected() -> None:
    error = only_error(validate(cron_workflow(workflow_spec=None)))

    assert error.startswith("cannot validate Workflow: spec.workflowSpec is required")


def test_workflow_spec_that_is_not_a_mapping_is_rejected() -> None:
    not_a_mapping: Any = ["entrypoint", "main"]

    error = only_error(validate(cron_workflow(workflow_spec=not_a_mapping)))

    assert error == "cannot validate Workflow: spec.workflowSpec must be a mapping, got list"


def test_entrypoint_naming_no_template_is_rejected_with_argos_wording() -> None:
    workflow_spec = {**WORKFLOW_SPEC, "entrypoint": "mian"}

    error = only_error(validate(cron_workflow(workflow_spec=workflow_spec)))

    assert error.startswith("cannot validate Workflow: spec.entrypoint template 'mian' undefined")
    assert "spec.workflowSpec.entrypoint" in error


def test_missing_entrypoint_is_rejected() -> None:
    workflow_spec = {"templates": WORKFLOW_SPEC["templates"]}

    error = only_error(validate(cron_workflow(workflow_spec=workflow_spec)))

    assert error.startswith("cannot validate Workflow: spec.entrypoint is required")


def test_templates_that_are_not_a_list_name_no_template() -> None:
    workflow_spec = {"entrypoint": "main", "templates": {"name": "main"}}

    error = only_error(validate(cron_workflow(workflow_spec=workflow_spec)))

    assert "spec.entrypoint template 'main' undefined" in error


def test_workflow_template_ref_needs_no_entrypoint_nor_templates() -> None:
    workflow_spec = {"workflowTemplateRef": {"name": "whalesay-template"}}

    assert validate(cron_workflow(workflow_spec=workflow_spec)).valid


def test_the_first_error_in_design_order_wins() -> None:
    spec = cron_workflow(
        name="n" * 53,
        timezone="Nowhere/Special",
        concurrency_policy="Sometimes",
        starting_deadline_seconds=-5,
        workflow_spec=None,
    )

    assert only_error(validate(spec)).startswith('cron workflow name "nnn')
    spec = replace(spec, name="ok")
    assert only_error(validate(spec)).startswith('invalid timezone "Nowhere/Special"')
    spec = replace(spec, timezone="")
    assert only_error(validate(spec)) == "'Sometimes' is not a valid concurrencyPolicy"
    spec = replace(spec, concurrency_policy="Forbid")
    assert only_error(validate(spec)) == "startingDeadlineSeconds must be positive"
    spec = replace(spec, starting_deadline_seconds=10)
    assert only_error(validate(spec)).startswith("cannot validate Workflow:")


def test_a_schedule_that_never_fires_is_valid_with_a_warning() -> None:
    validation = validate(cron_workflow(schedules=("0 0 30 2 *",)), NOW)

    assert validation.valid
    assert validation.warnings == (
        'spec.schedules[0] "0 0 30 2 *" has no instant in the next 5 years: it never fires',
    )


def test_each_schedule_that_never_fires_is_named_even_beside_one_that_fires() -> None:
    spec = cron_workflow(schedules=("0 6 * * *", "0 0 31 4 *"))

    validation = validate(spec, NOW)

    assert validation.valid
    assert [json.dumps("0 0 31 4 *") in w for w in validation.warnings] == [True]
    assert validation.warnings[0].startswith("spec.schedules[1] ")


def test_the_never_fires_warning_needs_a_reference_instant() -> None:
    """The policies never read the clock: without `now` there is nothing to judge from."""
    validation = validate(cron_workflow(schedules=("0 0 30 2 *",)))

    assert validation.valid
    assert validation.warnings == ()


def test_warnings_are_reported_beside_an_error() -> None:
    spec = cron_workflow(
        schedules=(), deprecated_schedule="0 6 * * *", concurrency_policy="Sometimes"
    )

    validation = validate(spec, NOW)

    assert validation.errors == ("'Sometimes' is not a valid concurrencyPolicy",)
    assert len(validation.warnings) == 1


def test_status_and_suspension_do_not_affect_validity() -> None:
    status = StatusSeed(failed=10, phase="Stopped")

    assert validate(cron_workflow(suspend=True, status=status)).valid


def test_negative_history_limits_fall_back_to_argos_defaults() -> None:
    spec = cron_workflow(successful_jobs_history_limit=-1, failed_jobs_history_limit=-7)

    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (3, 1)
    assert validate(spec).valid


# Rule 7: `when` and `stopStrategy.expression` must compile (DESIGN §3, §8).

ARGO_WHEN = (
    "{{= cronworkflow.lastScheduledTime == nil || "
    "(now() - cronworkflow.lastScheduledTime).Seconds() > 3600 }}"
)


def test_a_compiling_when_and_stop_expression_are_valid() -> None:
    spec = cron_workflow(when=ARGO_WHEN, stop_expression="cronworkflow.failed >= 3")

    assert validate(spec, NOW) == Validation(errors=(), warnings=())


def test_a_when_that_does_not_compile_is_reported_under_its_field() -> None:
    error = only_error(validate(cron_workflow(when="{{= foo > 1 }}")))

    assert error.startswith('spec.when: unknown variable "foo" at column 5: the variables are ')


def test_a_stop_expression_that_does_not_compile_is_reported_under_its_field() -> None:
    error = only_error(validate(cron_workflow(stop_expression="cronworkflow.failed")))

    assert error == (
        "spec.stopStrategy.expression: expected a boolean (true or false), but the expression "
        "gives a number: compare it, e.g. cronworkflow.failed >= 3"
    )


def test_a_blank_when_and_an_empty_stop_expression_mean_none() -> None:
    assert validate(cron_workflow(when="  \n", stop_expression="")).valid


def test_a_blank_stop_expression_is_an_error_not_silently_none() -> None:
    error = only_error(validate(cron_workflow(stop_expression="  ")))

    assert error == "spec.stopStrategy.expression: the expression is empty"


def test_when_is_checked_before_the_stop_expression() -> None:
    spec = cron_workflow(when="{{= 1 }}", stop_expression="foo")

    assert only_error(validate(spec)).startswith("spec.when: ")


def test_expressions_are_checked_after_the_deadline_and_before_the_workflow_spec() -> None:
    spec = cron_workflow(
        starting_deadline_seconds=-1, when="cronworkflow.failed >=", workflow_spec=None
    )

    assert only_error(validate(spec)) == "startingDeadlineSeconds must be positive"
    spec = replace(spec, starting_deadline_seconds=None)
    assert only_error(validate(spec)) == (
        "spec.when: unexpected end of the expression at column 23: expected a value"
    )
    spec = replace(spec, when="")
    assert only_error(validate(spec)).startswith("cannot validate Workflow:")
