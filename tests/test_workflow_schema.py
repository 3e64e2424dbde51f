"""A CronWorkflow's workflowSpec is checked as Argo's full CRD checks it: types, required
fields, unknown fields with a "did you mean", the API server's field paths, and a bounded cost
whatever the input."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.manifests.workflow_schema import MAX_REPORTED, SchemaReport, check_workflow_spec
from scheduler.manifests.workflow_types import STR, WORKFLOW_SPEC, ListOf, MapOf, Obj, Schema

DATA = Path(__file__).parent / "data" / "workflow_schema"
ROOT = "spec.workflowSpec"


def only_errors(report: SchemaReport) -> tuple[str, ...]:
    assert report.unknown == ()
    assert report.deprecated == ()
    return report.errors


# --- The issue's payloads ---------------------------------------------------------------------


def test_parameters_as_a_mapping_is_refused_with_the_list_to_write() -> None:
    """Issue 12, item 3: Argo's e2e TestMalformedCronWorkflow, refused by the API server with
    `.spec.workflowSpec.arguments.parameters: expected list`."""
    report = check_workflow_spec({"arguments": {"parameters": {"someParam": "Hello, world!"}}})
    assert only_errors(report) == (
        f"{ROOT}.arguments.parameters: must be a list, got a mapping; "
        'write parameters: [{name: someParam, value: "Hello, world!"}]',
    )
    assert not report.ok


def test_arguments_as_a_string_is_refused() -> None:
    report = check_workflow_spec({"arguments": "x"})
    assert only_errors(report) == (
        f'{ROOT}.arguments: must be a mapping, got a string ("x"); '
        "write arguments: {parameters: [{name: message, value: hello}]}",
    )


def test_pod_gc_as_a_string_is_refused_with_the_object_to_write() -> None:
    report = check_workflow_spec({"podGC": "OnPodCompletion"})
    assert only_errors(report) == (
        f'{ROOT}.podGC: must be a mapping, got a string ("OnPodCompletion"); '
        "write podGC: {strategy: OnPodCompletion}",
    )


def test_a_parameter_without_a_name_is_refused() -> None:
    report = check_workflow_spec({"arguments": {"parameters": [{"value": "x"}]}})
    assert only_errors(report) == (f"{ROOT}.arguments.parameters[0].name: is required",)


# --- Typos, with their suggestion -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            {"templates": [{"name": "main", "contianer": {"image": "alpine"}}]},
            'templates[0].contianer: unknown field "contianer" (did you mean "container"?)',
        ),
        (
            {"entryPoint": "main"},
            'entryPoint: unknown field "entryPoint" (did you mean "entrypoint"?)',
        ),
        (
            {
                "templates": [
                    {"name": "a", "dag": {"tasks": [{"name": "t", "dependancies": ["s"]}]}}
                ]
            },
            "templates[0].dag.tasks[0].dependancies: unknown field "
            '"dependancies" (did you mean "dependencies"?)',
        ),
        (
            {"templates": [{"name": "a", "steps": [[{"name": "s", "tempalte": "b"}]]}]},
            "templates[0].steps[0][0].tempalte: unknown field "
            '"tempalte" (did you mean "template"?)',
        ),
        (
            {"templates": [{"name": "a", "retryStrategy": {"retrypolicy": "Always"}}]},
            "templates[0].retryStrategy.retrypolicy: unknown field "
            '"retrypolicy" (did you mean "retryPolicy"?)',
        ),
        (
            {"templates": [{"name": "a", "container": {"volumeMount": []}}]},
            "templates[0].container.volumeMount: unknown field "
            '"volumeMount" (did you mean "volumeMounts"?)',
        ),
        (
            {"ttlStrategy": {"secondsAfterSucess": 10}},
            "ttlStrategy.secondsAfterSucess: unknown field "
            '"secondsAfterSucess" (did you mean "secondsAfterSuccess"?)',
        ),
        (
            {"templates": [{"name": "a", "script": {"image": "python", "sauce": "x"}}]},
            'templates[0].script.sauce: unknown field "sauce"',
        ),
    ],
)
def test_an_unknown_field_is_reported_with_the_field_meant(spec: dict[str, Any], line: str) -> None:
    report = check_workflow_spec(spec)
    assert report.unknown == (f"{ROOT}.{line}",)
    assert report.errors == ()
    assert not report.ok


def test_unknown_fields_inside_kubernetes_core_types_are_not_reported() -> None:
    """Affinity, probes, security contexts and volume sources are Kubernetes' own: not
    modelled field by field, so never a false alarm (a new Kubernetes field passes)."""
    spec = {
        "affinity": {"nodeAffinity": {"someFutureField": 1}},
        "volumes": [{"name": "v", "emptyDir": {"newOption": True}}],
        "templates": [{"name": "a", "container": {"securityContext": {"anything": "goes"}}}],
    }
    assert check_workflow_spec(spec) == SchemaReport()


# --- Type errors at depth, with exact paths ---------------------------------------------------


DEEP = {
    "templates": [
        {"name": "first", "container": {"image": "alpine"}},
        {
            "name": "second",
            "dag": {
                "tasks": [
                    {"name": "a", "template": "first"},
                    {"name": "b", "template": "first", "dependencies": "a"},
                    {
                        "name": "c",
                        "template": "first",
                        "arguments": {
                            "parameters": [
                                {"name": "p", "valueFrom": {"configMapKeyRef": {"name": "cm"}}}
                            ]
                        },
                    },
                ]
            },
        },
        {
            "name": "third",
            "container": {
                "image": 3,
                "env": [{"name": "PORT", "value": 8080}, {"value": "x"}],
                "resources": {"limits": {"cpu": [1]}},
                "ports": [{"containerPort": "80"}],
            },
            "retryStrategy": {"limit": True, "retryPolicy": "Allways"},
            "steps": [[{"name": "s", "template": "first", "withItems": "abc"}]],
        },
    ]
}


def test_type_errors_at_depth_carry_the_api_servers_field_paths() -> None:
    assert only_errors(check_workflow_spec(DEEP)) == (
        f"{ROOT}.templates[1].dag.tasks[1].dependencies: must be a list, got a string "
        '("a"); write dependencies: [a]',
        f"{ROOT}.templates[1].dag.tasks[2].arguments.parameters[0].valueFrom"
        ".configMapKeyRef.key: is required",
        f"{ROOT}.templates[2].container.image: must be a string, got an integer (3); "
        'quote it: image: "3"',
        f"{ROOT}.templates[2].container.env[0].value: must be a string, got an integer (8080); "
        'quote it: value: "8080"',
        f"{ROOT}.templates[2].container.env[1].name: is required",
        f"{ROOT}.templates[2].container.resources.limits.cpu: must be a quantity such as 500m "
        "or 1Gi, got a list",
        f"{ROOT}.templates[2].container.ports[0].containerPort: must be an integer, "
        'got a string ("80"); write it unquoted: containerPort: 80',
        f"{ROOT}.templates[2].retryStrategy.limit: must be an integer or a string, "
        "got a boolean (true)",
        f'{ROOT}.templates[2].retryStrategy.retryPolicy: must be one of "Always", "OnFailure", '
        '"OnError", "OnTransientError", got a string ("Allways") (did you mean "Always"?)',
        f'{ROOT}.templates[2].steps[0][0].withItems: must be a list, got a string ("abc"); '
        "write withItems: [abc]",
    )


def test_a_flat_list_of_steps_is_told_that_steps_are_groups() -> None:
    spec = {"templates": [{"name": "a", "steps": [{"name": "s", "template": "b"}]}]}
    (line,) = only_errors(check_workflow_spec(spec))
    assert line.startswith(f"{ROOT}.templates[0].steps[0]: must be a list, got a mapping; ")
    assert "write steps: [[{name: first, template: a}]" in line


def test_env_as_a_mapping_gets_the_list_to_write() -> None:
    spec = {"templates": [{"name": "a", "container": {"env": {"A": "1", "B": "x y"}}}]}
    assert only_errors(check_workflow_spec(spec)) == (
        f"{ROOT}.templates[0].container.env: must be a list, got a mapping; "
        'write env: [{name: A, value: "1"}, {name: B, value: "x y"}]',
    )


def test_labels_values_must_be_strings() -> None:
    spec = {"podMetadata": {"labels": {"team": "data", "tier": 1, "on-call": True}}}
    assert only_errors(check_workflow_spec(spec)) == (
        f"{ROOT}.podMetadata.labels.tier: must be a string, got an integer (1); "
        'quote it: tier: "1"',
        f'{ROOT}.podMetadata.labels["on-call"]: must be a string, got a boolean (true); '
        'quote it: on-call: "true"',
    )


def test_non_string_keys_are_reported_where_they_are() -> None:
    spec = {1: "x", "nodeSelector": {2: "y"}, "templates": [{"name": "a", None: 1}]}
    assert only_errors(check_workflow_spec(spec)) == (
        f"{ROOT}: a field name must be a string, got an integer (1)",
        f"{ROOT}.nodeSelector: a key must be a string, got an integer (2)",
        f"{ROOT}.templates[0]: a field name must be a string, got null",
    )


def test_a_template_and_a_step_need_a_name_but_template_defaults_do_not() -> None:
    spec = {
        "templateDefaults": {"timeout": "1h"},
        "templates": [{"container": {"image": "a"}}, {"name": "b", "steps": [[{"template": "x"}]]}],
    }
    assert only_errors(check_workflow_spec(spec)) == (
        f"{ROOT}.templates[0].name: is required",
        f"{ROOT}.templates[1].steps[0][0].name: is required",
    )


def test_null_fields_count_as_absent() -> None:
    """The API server drops nulls before validating, and YAML writes `podGC:` for a null."""
    spec = {"podGC": None, "arguments": {"parameters": None}, "templates": [None]}
    assert check_workflow_spec(spec) == SchemaReport()
    assert only_errors(check_workflow_spec({"arguments": {"parameters": [{"name": None}]}})) == (
        f"{ROOT}.arguments.parameters[0].name: is required",
    )


def test_parameter_values_are_any_string_but_not_structures() -> None:
    params = [{"name": n, "value": v} for n, v in [("a", 1), ("b", 1.5), ("c", True), ("d", "s")]]
    assert check_workflow_spec({"arguments": {"parameters": params}}) == SchemaReport()
    bad = {"arguments": {"parameters": [{"name": "e", "value": [1, 2]}]}}
    assert only_errors(check_workflow_spec(bad)) == (
        f"{ROOT}.arguments.parameters[0].value: must be a string, a number or a boolean, "
        "got a list",
    )


def test_integers_refuse_fractions_and_booleans_and_accept_whole_floats() -> None:
    assert check_workflow_spec({"parallelism": 2.0}) == SchemaReport()
    assert only_errors(
        check_workflow_spec({"parallelism": 2.5, "activeDeadlineSeconds": False})
    ) == (
        f"{ROOT}.parallelism: must be an integer, got a number (2.5)",
        f"{ROOT}.activeDeadlineSeconds: must be an integer, got a boolean (false)",
    )


def test_an_unquoted_date_counts_as_a_string() -> None:
    spec = {"arguments": {"parameters": [{"name": "d", "value": datetime.date(2026, 1, 31)}]}}
    assert check_workflow_spec(spec) == SchemaReport()


def test_deprecated_fields_are_reported_apart_with_what_to_write() -> None:
    report = check_workflow_spec({"synchronization": {"mutex": {"name": "m"}}, "podPriority": 1})
    assert report.errors == ()
    assert report.unknown == ()
    assert report.ok
    assert report.deprecated == (
        f"{ROOT}.podPriority: deprecated in Argo 3.6 and removed in 4.0; use podPriorityClassName",
        f"{ROOT}.synchronization.mutex: deprecated in Argo 3.6 and removed in 4.0; "
        "write mutexes: [{name: ...}]",
    )


def test_the_path_prefix_is_the_callers() -> None:
    report = check_workflow_spec({"podGC": 1}, "spec")
    assert report.errors[0].startswith("spec.podGC: must be a mapping, got an integer (1)")


def test_a_non_mapping_spec_is_refused() -> None:
    assert check_workflow_spec(None).errors == (f"{ROOT}: must be a mapping, got null",)
    assert check_workflow_spec(["x"]).errors == (f"{ROOT}: must be a mapping, got a list",)


def test_long_values_are_clipped_in_messages() -> None:
    (line,) = check_workflow_spec({"podGC": "x" * 10_000, "entrypoint": 10**5000}).errors[:1]
    assert len(line) < 300
    (big,) = check_workflow_spec({"entrypoint": 10**5000}).errors
    assert big == f"{ROOT}.entrypoint: must be a string, got an integer (too long to show); " + (
        'quote it: entrypoint: "too long to show"'
    )


# --- Valid specs: nothing to report -----------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DATA.glob("*.yaml")), ids=lambda p: p.name)
def test_realistic_valid_specs_report_nothing(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert check_workflow_spec(document["spec"]["workflowSpec"]) == SchemaReport()


def test_the_test_data_uses_many_features() -> None:
    """The valid specs above exercise what the brief lists, so that a missing field in the
    schema would show up as a false alarm there."""
    text = "\n".join(path.read_text() for path in DATA.glob("*.yaml"))
    for feature in [
        "steps:",
        "dag:",
        "script:",
        "retryStrategy:",
        "podGC:",
        "ttlStrategy:",
        "volumes:",
        "volumeClaimTemplates:",
        "synchronization:",
        "hooks:",
        "onExit:",
        "metrics:",
        "containerSet:",
        "http:",
        "resource:",
        "suspend:",
        "data:",
        "memoize:",
        "sidecars:",
        "initContainers:",
        "templateDefaults:",
        "workflowTemplateRef:",
        "withItems:",
        "withParam:",
        "withSequence:",
        "artifactGC:",
        "workflowMetadata:",
    ]:
        assert feature in text, feature


# --- Cost: iterative, linear, bounded ---------------------------------------------------------


def test_shared_nodes_are_checked_once_so_an_alias_bomb_is_cheap() -> None:
    """A YAML alias bomb: each level a list of 1,000 references to the level below. Expanded,
    it holds 10^12 parameters; checked, it costs what its 4 distinct lists do."""
    parameters = [{"name": "p", "value": "v", "typo": 1}] * 1000
    step = {"name": "s", "template": "t", "arguments": {"parameters": parameters}}
    group = [step] * 1000
    template = {"name": "t", "steps": [group] * 1000}
    spec = {"templates": [template] * 1000}
    started = time.monotonic()
    report = check_workflow_spec(spec)
    assert time.monotonic() - started < 10  # loose: unshared, it would never end
    assert report.unknown == (
        f'{ROOT}.templates[0].steps[0][0].arguments.parameters[0].typo: unknown field "typo"',
    )


BOMB = """
a0: &a0 [lol]
a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
a9: &a9 [*a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8]
spec:
  unusedField: *a9
  affinity: {nodeAffinity: *a9}
  templates:
    - name: main
      container: {image: alpine, args: *a9}
      steps: *a9
"""


def test_a_ten_level_yaml_alias_bomb_costs_its_text_not_its_expansion() -> None:
    """Issue 12, item 2: a 10-level bomb in an unused field and in container args."""
    spec = yaml.safe_load(BOMB)["spec"]
    started = time.monotonic()
    report = check_workflow_spec(spec)
    assert time.monotonic() - started < 5  # loose: expanded, the bomb holds 9^9 strings
    assert report.unknown == (f'{ROOT}.unusedField: unknown field "unusedField"',)
    assert f"{ROOT}.templates[0].container.args[0]: must be a string, got a list" in report.errors
    assert len(report.errors) <= 30


def test_a_cycle_ends() -> None:
    items: list[object] = []
    items.append(items)
    group: list[object] = []
    group.append(group)
    spec = {"templates": [{"name": "a", "steps": [group], "affinity": {"self": items}}]}
    report = check_workflow_spec(spec)
    assert report.errors == (f"{ROOT}.templates[0].steps[0][0]: must be a mapping, got a list",)


def test_a_thousand_levels_deep_is_no_recursion_problem() -> None:
    schema: Schema = STR
    value: object = "leaf"
    for _ in range(1000):
        schema = ListOf(schema)
        value = [value]
    assert check_workflow_spec(value, schema=schema) == SchemaReport()
    assert check_workflow_spec([[[1]]], schema=ListOf(ListOf(ListOf(STR)))).errors == (
        f'{ROOT}[0][0][0]: must be a string, got an integer (1); quote it: "1"',
    )


def test_the_budget_stops_the_check_with_an_error() -> None:
    spec = {"templates": [{"name": f"t{i}", "container": {"image": "a"}} for i in range(1000)]}
    assert check_workflow_spec(spec, budget=10_000) == SchemaReport()
    report = check_workflow_spec(spec, budget=100)
    assert report.errors == (
        f"{ROOT}: too large to check: more than 100 values (the limit); "
        "nothing past it was checked",
    )


def test_reports_are_capped_and_count_the_rest() -> None:
    spec = {"arguments": {"parameters": [{"value": str(i)} for i in range(510)]}}
    report = check_workflow_spec(spec)
    assert len(report.errors) == MAX_REPORTED + 1
    assert report.errors[-1] == f"{ROOT}: {510 - MAX_REPORTED} more not shown"


def test_a_schema_naming_undeclared_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="declare"):
        Obj({"name": STR}, required=("nmae",))


# --- Random input: never an exception, bounded time --------------------------------------------


def _field_names(schema: Schema, names: set[str]) -> set[str]:
    stack = [schema]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Obj):
            names.update(node.fields)
            stack.extend(node.fields.values())
        elif isinstance(node, ListOf):
            stack.append(node.item)
        elif isinstance(node, MapOf):
            stack.append(node.value)
    return names


FIELD_NAMES = sorted(_field_names(WORKFLOW_SPEC, set()))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["OnPodCompletion", "Always", "create", "", "{{item}}"])
)
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=8) | st.integers() | st.none()
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_random_values_never_raise_and_report_under_the_root(value: object) -> None:
    started = time.monotonic()
    report = check_workflow_spec(value)
    assert time.monotonic() - started < 2  # loose
    for line in (*report.errors, *report.unknown, *report.deprecated):
        assert line.startswith(ROOT)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=6), st.integers(1, 50))
def test_random_specs_never_raise_even_on_a_small_budget(spec: dict[str, Any], budget: int) -> None:
    spec.setdefault("templates", [dict(spec)])
    check_workflow_spec(spec, budget=budget)
    check_workflow_spec(spec)


def test_a_flood_of_unknown_fields_is_counted_cheaply() -> None:
    """No suggestion is sought past the cap: 100,000 unknown fields cost what their keys do."""
    spec = {f"field{i}": i for i in range(100_000)}
    started = time.monotonic()
    report = check_workflow_spec(spec)
    assert time.monotonic() - started < 5  # loose
    assert len(report.unknown) == MAX_REPORTED + 1
    assert report.unknown[-1] == f"{ROOT}: {100_000 - MAX_REPORTED} more not shown"
