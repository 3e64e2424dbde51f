"""pydantic models of Argo's `argoproj.io/v1alpha1` `CronWorkflow`, the edge of the service.

Why pydantic here and dataclasses inside: documents from YAML files or the Kubernetes API are
untrusted and loosely typed, so they are checked once, at the boundary, with error locations we
can turn into field paths (`spec.schedules[1]`); past the boundary, `to_spec()` hands the
policies a small frozen `policies.spec.CronWorkflowSpec` that owes nothing to pydantic.

Choices, and what they trade:
- Field names are Argo's JSON names (camelCase aliases, `populate_by_name`), so Argo YAML
  validates as it is, and Python code can still say `starting_deadline_seconds`.
- Unknown fields are kept (`extra="allow"`): Argo adds fields over time, and a scheduler that
  rejected or dropped them would break on upgrade and could not write objects back losslessly.
  `to_document()` dumps only what was given. They are not silently accepted either:
  `unknown_fields()` lists each one with a "did you mean" (`spec.concurrencypolicy`), for
  `lint` to refuse as `argo cron lint --strict` does and for `serve` to warn about, since
  Argo's controller ignores them. Only Argo's JSON names count: a document is read by alias
  alone, so `concurrency_policy:` is an unknown field here as it is for Argo, not a second
  spelling of `concurrencyPolicy` (Python code may still construct models by field name).
- Scalars are strict: Kubernetes would refuse `startingDeadlineSeconds: "30"` or a label value
  `true`, so we refuse them too, instead of coercing and hiding the mistake. Times are the
  exception: `status.lastScheduledTime` is accepted as an RFC 3339 string or as a datetime
  (YAML 1.1 loaders produce those), and a naive time is taken as UTC, as Kubernetes writes it.
- What the scheduler never interprets (`workflowSpec`, the rest of `workflowMetadata`) passes
  through as mappings, checked only for being mappings.
- Semantic rules (valid schedule, known timezone, concurrency policy...) are not type errors:
  they belong to `policies.validation`, which reports them with Argo's messages. Names,
  namespaces, label and annotation keys and label values are the exception: what the API
  server refuses (`scheduler.manifests.naming`, Kubernetes' rules and words) is refused here,
  because
  in file mode nothing else stands between a hostile name and a Redis key, a path or a shell.
- The annotations controllers keep as state (Argo's `last-used-schedule`, cronwf's
  `last-decided-time`) are read into the `StatusSeed`, not into the spec's annotations
  (`policies.spec` says why). An unreadable `last-decided-time` is ignored rather than refused:
  it only ever shortens a catch-up, and a typo in it must not make the object unschedulable.

`parse_cron_workflow` turns pydantic's errors into `FieldProblem`s (a field path and a message a
user can act on) and raises `CronWorkflowModelError`; callers add the file and document.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from policies.spec import (
    DEFAULT_FAILED_JOBS_HISTORY_LIMIT,
    DEFAULT_NAMESPACE,
    DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT,
    LAST_DECIDED_TIME_ANNOTATION,
    LAST_USED_SCHEDULE_ANNOTATION,
    STATE_ANNOTATIONS,
    CronWorkflowSpec,
    StatusSeed,
    WorkflowMetadata,
)
from scheduler.manifests.naming import (
    annotation_problems,
    dns1123_label_problems,
    dns1123_subdomain_problems,
    invalid_value,
    label_problems,
)
from scheduler.manifests.suggest import did_you_mean

__all__ = [
    "API_VERSION",
    "KIND",
    "ConditionModel",
    "CronWorkflowModel",
    "CronWorkflowModelError",
    "CronWorkflowSpecModel",
    "CronWorkflowStatusModel",
    "FieldProblem",
    "ObjectMetaModel",
    "ObjectReferenceModel",
    "StopStrategyModel",
    "WorkflowMetadataModel",
    "describe_value",
    "format_field_path",
    "parse_cron_workflow",
    "unknown_fields",
]

API_VERSION = "argoproj.io/v1alpha1"
KIND = "CronWorkflow"


class _ArgoModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        strict=True,
    )

    known_extras: ClassVar[frozenset[str]] = frozenset()
    """Fields of Argo's or Kubernetes' type that the scheduler does not read: kept as extras
    like unknown ones, but not reported as unknown."""


_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
"""Every field of Kubernetes' `ObjectMeta` (v1.33): the API server and its clients set them."""


def _as_aware_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


class ObjectMetaModel(_ArgoModel):
    """Kubernetes `metadata`: the fields the scheduler reads; the rest is kept as extras."""

    known_extras = _OBJECT_META_FIELDS

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    resource_version: str | None = None
    generation: int | None = None
    generate_name: str | None = None
    creation_timestamp: datetime.datetime | None = Field(default=None, strict=False)
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None


class WorkflowMetadataModel(_ArgoModel):
    """`spec.workflowMetadata`: Argo uses only labels, annotations and finalizers.

    Its type is `ObjectMeta`, so any metadata field is known (and, like Argo, ignored).
    """

    known_extras = _OBJECT_META_FIELDS

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None


class StopStrategyModel(_ArgoModel):
    """`spec.stopStrategy` (Argo 3.6+): a bare expression, true when the CronWorkflow stops."""

    expression: str


class CronWorkflowSpecModel(_ArgoModel):
    """`spec` of a CronWorkflow, every field of Argo 4.1 plus the deprecated `schedule`."""

    workflow_spec: dict[str, Any] | None = None
    schedules: list[str] | None = None
    schedule: str | None = None
    timezone: str | None = None
    concurrency_policy: str | None = None
    suspend: bool | None = None
    starting_deadline_seconds: int | None = None
    successful_jobs_history_limit: int | None = None
    failed_jobs_history_limit: int | None = None
    workflow_metadata: WorkflowMetadataModel | None = None
    stop_strategy: StopStrategyModel | None = None
    when: str | None = None

    @field_validator("schedules", mode="before")
    @classmethod
    def _schedules_is_a_list(cls, value: object) -> object:
        # The most common mistake when moving from the deprecated `schedule` field.
        if isinstance(value, str):
            raise PydanticCustomError(
                "schedules_is_a_string",
                "must be a list of strings, got a string; write schedules: [{example}]",
                {"example": json.dumps(value)},
            )
        return value


class ObjectReferenceModel(_ArgoModel):
    """An entry of `status.active`: a reference to a Workflow believed to be running."""

    known_extras = frozenset({"fieldPath"})

    kind: str | None = None
    api_version: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None


class ConditionModel(_ArgoModel):
    """A `status.conditions` entry (`SpecError`, `SubmissionError`)."""

    type: str | None = None
    status: str | None = None
    message: str | None = None


class CronWorkflowStatusModel(_ArgoModel):
    """`status` of a CronWorkflow. Argo serialises empty lists and times as `null`."""

    active: list[ObjectReferenceModel] | None = None
    last_scheduled_time: datetime.datetime | None = Field(default=None, strict=False)
    conditions: list[ConditionModel] | None = None
    succeeded: int | None = None
    failed: int | None = None
    phase: str | None = None

    @field_validator("last_scheduled_time", mode="after")
    @classmethod
    def _utc_when_naive(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        return _as_aware_utc(value)


class CronWorkflowModel(_ArgoModel):
    """A whole `CronWorkflow` object, as found in a manifest or returned by the API server."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMetaModel
    spec: CronWorkflowSpecModel
    status: CronWorkflowStatusModel | None = None

    @property
    def namespace(self) -> str:
        """The namespace, `default` when the manifest leaves it out (as `kubectl apply` does)."""
        return self.metadata.namespace or DEFAULT_NAMESPACE

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.metadata.name}"

    def to_document(self) -> dict[str, Any]:
        """The object as JSON-compatible data with Argo's field names; unknown fields kept."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def to_spec(self) -> CronWorkflowSpec:
        """The pure view the policies work on."""
        metadata = self.metadata
        spec = self.spec
        workflow_metadata = spec.workflow_metadata or WorkflowMetadataModel()
        annotations = metadata.annotations or {}
        return CronWorkflowSpec(
            name=metadata.name,
            namespace=self.namespace,
            uid=metadata.uid or "",
            labels=dict(metadata.labels or {}),
            annotations={k: v for k, v in annotations.items() if k not in STATE_ANNOTATIONS},
            schedules=tuple(spec.schedules or ()),
            deprecated_schedule=spec.schedule,
            timezone=spec.timezone or "",
            concurrency_policy=spec.concurrency_policy or "",
            suspend=bool(spec.suspend),
            starting_deadline_seconds=spec.starting_deadline_seconds,
            successful_jobs_history_limit=_history_limit(
                spec.successful_jobs_history_limit, DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT
            ),
            failed_jobs_history_limit=_history_limit(
                spec.failed_jobs_history_limit, DEFAULT_FAILED_JOBS_HISTORY_LIMIT
            ),
            when=spec.when or "",
            stop_expression=spec.stop_strategy.expression if spec.stop_strategy else None,
            workflow_metadata=WorkflowMetadata(
                labels=dict(workflow_metadata.labels or {}),
                annotations=dict(workflow_metadata.annotations or {}),
                finalizers=tuple(workflow_metadata.finalizers or ()),
            ),
            workflow_spec=spec.workflow_spec,
            status=self._status_seed(annotations),
        )

    def _status_seed(self, annotations: Mapping[str, str]) -> StatusSeed:
        status = self.status or CronWorkflowStatusModel()
        return StatusSeed(
            succeeded=status.succeeded or 0,
            failed=status.failed or 0,
            last_scheduled_time=status.last_scheduled_time,
            phase=status.phase or "",
            active=tuple(ref.name for ref in status.active or () if ref.name),
            last_used_schedule=annotations.get(LAST_USED_SCHEDULE_ANNOTATION),
            last_decided_time=_time_or_none(annotations.get(LAST_DECIDED_TIME_ANNOTATION)),
        )


def _time_or_none(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time, naive ones taken as UTC; None when absent or not a time."""
    if text is None:
        return None
    try:
        return _as_aware_utc(datetime.datetime.fromisoformat(text))
    except ValueError:
        return None


def _history_limit(value: int | None, default: int) -> int:
    return default if value is None or value < 0 else value


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field: `spec.schedules: must be a list of strings, ...`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class CronWorkflowModelError(ValueError):
    """A document that is not a well-typed CronWorkflow; `problems` lists every bad field."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


def parse_cron_workflow(document: Mapping[str, Any]) -> CronWorkflowModel:
    """Check a decoded CronWorkflow document; raise `CronWorkflowModelError` when ill-typed
    or when Kubernetes would refuse its name, namespace, labels or annotations."""
    problems = _object_meta_problems(document)
    try:
        model = CronWorkflowModel.model_validate(dict(document), by_alias=True, by_name=False)
    except ValidationError as error:
        problems.extend(_describe(detail) for detail in error.errors(include_url=False))
        raise CronWorkflowModelError(problems) from None
    if problems:
        raise CronWorkflowModelError(problems)
    for _, part in _parts(model, ()):
        _forget_shadowed_fields(part)
    return model


def unknown_fields(model: CronWorkflowModel) -> tuple[FieldProblem, ...]:
    """Every field at a level the model knows that neither Argo nor Kubernetes defines, with
    the field it most likely meant: `spec.concurrencypolicy: unknown field
    "concurrencypolicy" (did you mean "concurrencyPolicy"?)`. `workflowSpec` is not looked
    into (its type is Argo's Workflow spec, a schema of its own)."""
    found: list[FieldProblem] = []
    for location, part in _parts(model, ()):
        known = type(part).known_extras
        for key in part.model_extra or {}:
            if key in known:
                continue
            choices = [*_aliases(type(part)), *sorted(known)]
            found.append(
                FieldProblem(
                    format_field_path((*location, key)),
                    f"unknown field {json.dumps(key)}{did_you_mean(key, choices)}",
                )
            )
    return tuple(found)


def _parts(
    model: _ArgoModel, location: tuple[int | str, ...]
) -> Iterator[tuple[tuple[int | str, ...], _ArgoModel]]:
    """`model` and every model nested in it (lists of models included), with their paths."""
    yield location, model
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        where = (*location, field.alias or name)
        if isinstance(value, _ArgoModel):
            yield from _parts(value, where)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, _ArgoModel):
                    yield from _parts(item, (*where, index))


def _aliases(model_class: type[_ArgoModel]) -> list[str]:
    return [field.alias or name for name, field in model_class.model_fields.items()]


def _forget_shadowed_fields(model: _ArgoModel) -> None:
    # pydantic counts an extra (`concurrency_policy:`, read by alias only) as setting the field
    # of that Python name, and would then dump the field too (`concurrencyPolicy: null`).
    shadowed = set(model.model_extra or ()) & set(type(model).model_fields)
    model.model_fields_set.difference_update(shadowed)


def _object_meta_problems(document: Mapping[str, Any]) -> list[FieldProblem]:
    """What the API server refuses in the names, labels and annotations of `document`, with
    its messages. Values of the wrong type are left to the model, which says what they are."""
    problems: list[FieldProblem] = []
    metadata = document.get("metadata")
    if isinstance(metadata, Mapping):
        name = metadata.get("name")
        if isinstance(name, str) and name:
            problems.extend(
                FieldProblem("metadata.name", invalid_value(name, problem))
                for problem in dns1123_subdomain_problems(name)
            )
        namespace = metadata.get("namespace")
        if isinstance(namespace, str) and namespace:
            problems.extend(
                FieldProblem("metadata.namespace", invalid_value(namespace, problem))
                for problem in dns1123_label_problems(namespace)
            )
        problems.extend(_labels_and_annotations(metadata, "metadata"))
    spec = document.get("spec")
    if isinstance(spec, Mapping):
        workflow_metadata = spec.get("workflowMetadata")
        if isinstance(workflow_metadata, Mapping):
            problems.extend(_labels_and_annotations(workflow_metadata, "spec.workflowMetadata"))
    return problems


def _labels_and_annotations(metadata: Mapping[str, Any], path: str) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    labels = _strings(metadata.get("labels"))
    problems.extend(FieldProblem(f"{path}.labels", p) for p in label_problems(labels))
    annotations = _strings(metadata.get("annotations"))
    problems.extend(
        FieldProblem(f"{path}.annotations", p) for p in annotation_problems(annotations)
    )
    return problems


def _strings(value: object) -> dict[str, str]:
    """The string keys and values of a mapping (the model reports the others)."""
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def format_field_path(location: Sequence[int | str]) -> str:
    """`("spec", "schedules", 1)` → `spec.schedules[1]`; odd keys are quoted, as in `jq`."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.replace("_", "").isalnum() and not part[:1].isdigit():
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path


def _describe(detail: ErrorDetails) -> FieldProblem:
    location = [part for part in detail["loc"] if not _is_union_branch(part)]
    path = format_field_path(location)
    kind = detail["type"]
    value = detail["input"]
    expected = _EXPECTED.get(kind)
    if kind == "missing":
        message = "is required"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif expected is not None:
        message = f"must be {expected}, got {describe_value(value)}"
        if kind == "string_type" and isinstance(value, bool | int | float):
            message += f" (quote it: {_quoted(value)})"
    elif kind.startswith("datetime"):
        message = f"must be an RFC 3339 time such as 2026-01-31T12:00:00Z, got {value!r}"
    else:
        message = detail["msg"]
    return FieldProblem(path, message)


def _is_union_branch(part: int | str) -> bool:
    # pydantic names the branch of a union it tried (`list[str]`, `function-after[...]`);
    # users only care about the field.
    return isinstance(part, str) and ("[" in part or part in _TYPE_NAMES)


_TYPE_NAMES = {"str", "int", "bool", "float", "list", "dict", "none", "datetime"}

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _quoted(value: bool | float) -> str:
    # YAML turned an unquoted `true`, `yes` or `1` into a non-string; show the quoted form.
    return json.dumps(json.dumps(value) if isinstance(value, bool) else str(value))


def describe_value(value: object) -> str:
    """What a value is, for a message: `a string ("x")`, `an integer (3)`, `a mapping`.

    Long strings are cut (a type error on a 3 MB value must not repeat it) and huge integers
    are not written out.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int):
        return f"an integer ({value if value.bit_length() <= 128 else 'too long to show'})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, datetime.datetime | datetime.date):
        return f"a timestamp ({value.isoformat()})"
    return f"a {type(value).__name__}"
