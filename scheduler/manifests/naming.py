"""Kubernetes' rules for names, namespaces, label keys and values and annotation keys.

Why these checks exist here, though the API server applies them to every object: in file mode
nothing applies them, and a name or namespace becomes a Redis key, a path under the state
folder and a value in a local run's environment. A name like `../x`, `{x}` or `$(touch x)`
must therefore be refused where the document is read, before it can reach any of them, and
with the words `kubectl apply` would use, so that a manifest that loads here applies there.

The rules and messages are apimachinery's (`k8s.io/apimachinery/pkg/util/validation` and
`pkg/api/validation`), field paths included (`metadata.name: Invalid value: "Bad_Name": ...`).
Two details matter for fidelity: Go's `len` counts bytes, so lengths are UTF-8 byte counts;
and Go's `^...$` does not match before a trailing newline as Python's `$` does, so every
pattern is matched with `re.fullmatch`. Values are quoted like Go's `%q`, so a NUL or a
newline in a name shows as an escape, never as a raw byte in a log line. Quoted values are
cut to `MAX_QUOTED_CHARACTERS` (the API server prints them whole; a message should not be a
megabyte long).

Everything here is pure and total: any `str` gives a list of messages, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "DNS1123_LABEL_MAX_LENGTH",
    "DNS1123_SUBDOMAIN_MAX_LENGTH",
    "LABEL_VALUE_MAX_LENGTH",
    "MAX_QUOTED_CHARACTERS",
    "QUALIFIED_NAME_MAX_LENGTH",
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "annotation_problems",
    "dns1123_label_problems",
    "dns1123_subdomain_problems",
    "go_quote",
    "invalid_value",
    "label_problems",
    "label_value_problems",
    "qualified_name_problems",
]

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
"""Bytes, the keys and values of all annotations of one object together."""
MAX_QUOTED_CHARACTERS = 100
"""How much of an invalid value a message repeats; longer ones end with `...`."""

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)

# ASCII only: Go's regexp classes never match other letters or digits.
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT, re.ASCII)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT, re.ASCII)
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT, re.ASCII)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT, re.ASCII)


def _length(value: str) -> int:
    """Go's `len`: UTF-8 bytes (a lone surrogate, which YAML escapes can produce, counts 3)."""
    return len(value.encode("utf-8", "surrogatepass"))


def _max_length_error(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    # apimachinery's RegexError, spacing included: "(e.g. 'my-name',  or '123-abc', ...".
    text = message + " (e.g. "
    for index, example in enumerate(examples):
        if index > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{pattern}')"


def dns1123_label_problems(value: str) -> list[str]:
    """What makes `value` not a DNS-1123 label (a namespace): [] when it is one."""
    problems = []
    if _length(value) > DNS1123_LABEL_MAX_LENGTH:
        problems.append(_max_length_error(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL.fullmatch(value):
        problems.append(_regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return problems


def dns1123_subdomain_problems(value: str) -> list[str]:
    """What makes `value` not a DNS-1123 subdomain (an object name): [] when it is one."""
    problems = []
    if _length(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        problems.append(_max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        problems.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """What makes `value` not a qualified name (a label or annotation key), `prefix/name`."""
    name_error = _regex_error(
        _QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"
    )
    parts = value.split("/")
    problems: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems.extend(
                f"prefix part {problem}" for problem in dns1123_subdomain_problems(prefix)
            )
    else:
        return [
            f"a qualified name {name_error} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        problems.append("name part must be non-empty")
    elif _length(name) > QUALIFIED_NAME_MAX_LENGTH:
        problems.append(f"name part {_max_length_error(QUALIFIED_NAME_MAX_LENGTH)}")
    if not _QUALIFIED_NAME.fullmatch(name):
        problems.append(f"name part {name_error}")
    return problems


def label_value_problems(value: str) -> list[str]:
    """What makes `value` not a label value: [] when it is one (the empty string is one)."""
    problems = []
    if _length(value) > LABEL_VALUE_MAX_LENGTH:
        problems.append(_max_length_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE.fullmatch(value):
        problems.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return problems


def label_problems(labels: Mapping[str, str]) -> list[str]:
    """apimachinery's ValidateLabels: every bad key and value (the path is the map's)."""
    problems: list[str] = []
    for key, value in labels.items():
        problems.extend(invalid_value(key, problem) for problem in qualified_name_problems(key))
        problems.extend(invalid_value(value, problem) for problem in label_value_problems(value))
    return problems


def annotation_problems(annotations: Mapping[str, str]) -> list[str]:
    """apimachinery's ValidateAnnotations: keys are qualified names in any case, and all keys
    and values together at most `TOTAL_ANNOTATION_SIZE_LIMIT` bytes (the path is the map's)."""
    problems: list[str] = []
    total = 0
    for key, value in annotations.items():
        problems.extend(
            invalid_value(key, problem) for problem in qualified_name_problems(key.lower())
        )
        total += _length(key) + _length(value)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        problems.append(f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")
    return problems


def invalid_value(value: str, detail: str) -> str:
    """apimachinery's `field.Invalid` error text after the path: `Invalid value: "v": detail`."""
    return f"Invalid value: {go_quote(value)}: {detail}"


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(value: str, limit: int = MAX_QUOTED_CHARACTERS) -> str:
    """`value` as Go's `%q` writes it (printable characters kept, the rest escaped), cut to
    `limit` characters with `...` after the closing quote."""
    shown = value[:limit]
    parts = ['"']
    for char in shown:
        code = ord(char)
        if char in _GO_ESCAPES:
            parts.append(_GO_ESCAPES[char])
        elif char.isprintable():
            parts.append(char)
        elif code < 0x80:
            parts.append(f"\\x{code:02x}")
        elif code < 0x10000:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    if len(value) > limit:
        parts.append(f"... ({len(value)} characters)")
    return "".join(parts)
