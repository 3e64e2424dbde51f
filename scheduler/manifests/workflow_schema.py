"""Checking a CronWorkflow's `workflowSpec` as Argo's full CRD checks it.

`cronwf` never interprets the Workflow it spawns, so `scheduler.manifests.models` passes
`workflowSpec` through as a mapping. But the API server does check it when Argo's full CRD is
installed, and the workflow controller decodes it into Go types: `arguments: {parameters:
{someParam: x}}` is refused there (`.spec.workflowSpec.arguments.parameters: expected list`)
although it is a perfectly good mapping. `check_workflow_spec` finds such mistakes before a
CronWorkflow is deployed, with the API server's field paths and a line saying what to write
instead. The types it checks against are data, in `scheduler.manifests.workflow_types`.

Choices, and what they trade:
- Scalars follow the API server: a null field is as if absent (the API server drops nulls
  before validation), and an unquoted date counts as a string, as Kubernetes' YAML reads it.
- The walk is iterative (no recursion limit whatever the depth) and costs one step per value
  it checks: values under `OPEN` or `ANY` are never walked, and a container met again (a YAML
  alias, or a cycle) at the same place in the schema is checked once, so an alias bomb costs
  what the document's own nodes cost, never its expansion. An optional `budget` bounds the
  values checked; past it the check stops with an error saying so. Reports are capped at
  `MAX_REPORTED` lines per kind.
- Unknown fields and deprecated fields are kept apart from errors: the caller decides whether
  they fail lint (`--strict`) or only warn (`serve`).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from scheduler.manifests.models import describe_value, format_field_path
from scheduler.manifests.suggest import did_you_mean
from scheduler.manifests.workflow_types import (
    WORKFLOW_SPEC,
    AnyValue,
    Enum,
    ListOf,
    MapOf,
    Obj,
    OpenMapping,
    Scalar,
    Schema,
)

__all__ = [
    "MAX_REPORTED",
    "SchemaReport",
    "check_workflow_spec",
]

MAX_REPORTED = 100
"""At most this many lines per kind in a report; one more line counts the rest."""


# --- The check ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaReport:
    """What `check_workflow_spec` found, each line `"<field path>: <message>"`.

    `errors` are what the API server or the workflow controller would refuse (a wrong type, a
    missing required field, a value out of an enum, a spec too large to check); `unknown` are
    fields no version of Argo knows; `deprecated` are fields a recent Argo no longer has.
    """

    errors: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    deprecated: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing refused and nothing unknown (deprecated fields still work)."""
        return not (self.errors or self.unknown)


# A path is built only when something is reported: each value carries a link to its parent.
_Link: TypeAlias = "tuple[_Link, int | str] | None"


def check_workflow_spec(
    value: object,
    path: str = "spec.workflowSpec",
    *,
    schema: Schema = WORKFLOW_SPEC,
    budget: int | None = None,
) -> SchemaReport:
    """Check `value` (a decoded `workflowSpec`) against Argo's types; never raises.

    `path` prefixes every reported field. `budget`, when given, is the most values checked;
    past it the check stops with an error (what was found until then is kept).
    """
    found = _Found(path)
    stack: list[tuple[object, Schema, _Link]] = [(value, schema, None)]
    seen: set[tuple[int, int]] = set()
    checked = 0
    if value is None:
        found.error(None, "must be a mapping, got null")
        stack.clear()
    while stack:
        item, expected, link = stack.pop()
        checked += 1
        if budget is not None and checked > budget:
            found.error(
                None,
                f"too large to check: more than {budget} values (the limit); "
                "nothing past it was checked",
            )
            break
        if isinstance(item, Mapping | list | tuple):
            key = (id(item), id(expected))
            if key in seen:
                continue  # the same node again (a YAML alias, or a cycle): checked once
            seen.add(key)
        _check_one(item, expected, link, stack, found)
    return found.report()


def _check_one(
    item: object,
    expected: Schema,
    link: _Link,
    stack: list[tuple[object, Schema, _Link]],
    found: _Found,
) -> None:
    if isinstance(expected, AnyValue):
        return
    if isinstance(expected, Scalar):
        if not _is_scalar(item, expected):
            found.error(link, _type_message(expected.expected, item, link))
        return
    if isinstance(expected, Enum):
        if not (isinstance(item, str) and item in expected.values):
            found.error(link, _enum_message(expected, item))
        return
    if isinstance(expected, ListOf):
        if not isinstance(item, list | tuple):
            found.error(link, _type_message("a list", item, link, _list_hint(expected, item, link)))
            return
        # Pushed last first, so that problems are reported in the document's order.
        for index in range(len(item) - 1, -1, -1):
            element = item[index]
            if element is not None:
                stack.append((element, expected.item, (link, index)))
        return
    if not isinstance(item, Mapping):
        hint = _object_hint(expected, item, link) if isinstance(expected, Obj) else None
        found.error(link, _type_message("a mapping", item, link, hint))
        return
    if isinstance(expected, OpenMapping):
        return
    pending: list[tuple[object, Schema, _Link]] = []
    if isinstance(expected, MapOf):
        for name, element in item.items():
            if not isinstance(name, str):
                found.error(link, f"a key must be a string, got {describe_value(name)}")
            elif element is not None:
                pending.append((element, expected.value, (link, name)))
    else:
        for name, element in item.items():
            if not isinstance(name, str):
                found.error(link, f"a field name must be a string, got {describe_value(name)}")
                continue
            schema = expected.fields.get(name)
            if schema is None:
                found.unknown_field((link, name), name, expected.fields)
                continue
            if name in expected.deprecated:
                found.deprecated_field((link, name), expected.deprecated[name])
            if element is not None:
                pending.append((element, schema, (link, name)))
        for name in expected.required:
            if item.get(name) is None:
                found.error((link, name), "is required")
    stack.extend(reversed(pending))


def _is_scalar(item: object, expected: Scalar) -> bool:
    if isinstance(item, bool):
        return bool in expected.kinds
    if isinstance(item, datetime.date):
        # A YAML 1.1 loader reads an unquoted 2026-01-31 as a date; Kubernetes keeps a string.
        return str in expected.kinds
    if not isinstance(item, expected.kinds):
        return False
    if isinstance(item, float):
        return math.isfinite(item) and (item.is_integer() or not expected.integral)
    return True


class _Found:
    """The lines reported so far, capped, with paths under `root`."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._lines: dict[str, list[str]] = {"errors": [], "unknown": [], "deprecated": []}
        self._dropped = dict.fromkeys(self._lines, 0)

    def error(self, link: _Link, message: str) -> None:
        self._add("errors", link, message)

    def unknown_field(self, link: _Link, name: str, known: Mapping[str, Schema]) -> None:
        if len(self._lines["unknown"]) >= MAX_REPORTED:
            self._dropped["unknown"] += 1  # and no suggestion sought: a flood stays cheap
            return
        clipped = _clip(name)
        self._add("unknown", link, f'unknown field "{clipped}"' + did_you_mean(clipped, known))

    def deprecated_field(self, link: _Link, message: str) -> None:
        self._add("deprecated", link, message)

    def _add(self, kind: str, link: _Link, message: str) -> None:
        lines = self._lines[kind]
        if len(lines) >= MAX_REPORTED:
            self._dropped[kind] += 1
            return
        lines.append(f"{self.path(link)}: {message}")

    def path(self, link: _Link) -> str:
        parts: list[int | str] = []
        while link is not None:
            link, part = link
            parts.append(part if isinstance(part, int) else _clip(part))
        parts.reverse()
        if not parts:
            return self._root
        suffix = format_field_path(parts)
        return self._root + (suffix if suffix.startswith("[") else "." + suffix)

    def report(self) -> SchemaReport:
        out: dict[str, tuple[str, ...]] = {}
        for kind, lines in self._lines.items():
            dropped = self._dropped[kind]
            more = [f"{self._root}: {dropped} more not shown"] if dropped else []
            out[kind] = (*lines, *more)
        return SchemaReport(out["errors"], out["unknown"], out["deprecated"])


# --- Messages -------------------------------------------------------------------------------


def _type_message(expected: str, item: object, link: _Link, hint: str | None = None) -> str:
    message = f"must be {expected}, got {describe_value(item)}"
    if hint is None and link is not None:
        hint = _scalar_hint(expected, item, link[1])
    return f"{message}; {hint}" if hint else message


def _scalar_hint(expected: str, item: object, name: int | str) -> str | None:
    field_name = name if isinstance(name, str) else None
    if expected.startswith("a string") and isinstance(item, bool | int | float):
        # YAML read an unquoted `true`, `yes` or `8080` as a boolean or a number.
        shown = _int_text(item) if isinstance(item, int) and not isinstance(item, bool) else item
        quoted = json.dumps(json.dumps(shown) if isinstance(shown, bool) else str(shown))
        return f"quote it: {field_name}: {quoted}" if field_name else f"quote it: {quoted}"
    if expected == "an integer" and isinstance(item, str) and re.fullmatch(r"-?\d+", item):
        return f"write it unquoted: {field_name}: {item}" if field_name else "write it unquoted"
    return None


def _list_hint(expected: ListOf, item: object, link: _Link) -> str | None:
    name = link[1] if link is not None else None
    label = name if isinstance(name, str) else None
    if isinstance(item, Mapping) and isinstance(expected.item, Obj) and label is not None:
        fields = expected.item.fields
        if "name" in fields and item and all(isinstance(k, str) for k in item):
            entries = []
            for key, val in list(item.items())[:3]:
                if "value" in fields and _is_plain(val):
                    entries.append(f"{{name: {_flow(key)}, value: {_flow(val)}}}")
                else:
                    entries.append(f"{{name: {_flow(key)}, ...}}")
            if len(item) > 3:
                entries.append("...")
            return f"write {label}: [{', '.join(entries)}]"
    if _is_plain(item) and item is not None and isinstance(expected.item, Scalar | Enum | AnyValue):
        return f"write {label}: [{_flow(item)}]" if label else None
    return expected.hint


def _object_hint(expected: Obj, item: object, link: _Link) -> str | None:
    name = link[1] if link is not None else None
    label = name if isinstance(name, str) else None
    if label is None:
        return None
    if expected.shorthand is not None and _is_plain(item) and item is not None:
        return f"write {label}: {{{expected.shorthand}: {_flow(item)}}}"
    if expected.example is not None:
        return f"write {label}: {expected.example}"
    return None


def _enum_message(expected: Enum, item: object) -> str:
    choices = ", ".join(json.dumps(value) for value in expected.values if value)
    message = f"must be one of {choices}, got {describe_value(item)}"
    if isinstance(item, str):
        message += did_you_mean(item, [value for value in expected.values if value])
    return message


_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _is_plain(item: object) -> bool:
    return item is None or isinstance(item, str | int | float | bool)


def _flow(item: object) -> str:
    """A scalar as YAML flow style would show it, quoted where it must be."""
    if isinstance(item, str):
        clipped = _clip(item)
        if _PLAIN.fullmatch(clipped) and clipped.lower() not in _YAML_WORDS:
            return clipped
        return json.dumps(clipped)
    return json.dumps(item) if isinstance(item, bool | int | float) else "..."


def _int_text(item: int) -> str:
    # str() of a huge integer is slow, and refused past 4,300 digits.
    return str(item) if item.bit_length() <= 128 else "too long to show"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
