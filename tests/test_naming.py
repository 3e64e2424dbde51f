"""Kubernetes' naming rules (`scheduler.manifests.naming`) and the loader that applies them.

The property tests feed random text as names and namespaces to the loader and compare its
verdict with the rules written a second, independent way (split on dots, character sets),
not with the module's own regular expressions.
"""

from __future__ import annotations

import string
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.manifests.loading import (
    LoadedCronWorkflow,
    ManifestError,
    Source,
    load_document,
    load_text,
)
from scheduler.manifests.naming import (
    annotation_problems,
    dns1123_label_problems,
    dns1123_subdomain_problems,
    go_quote,
    label_value_problems,
    qualified_name_problems,
)

LOWER_ALNUM = frozenset(string.ascii_lowercase + string.digits)


def is_dns_label(text: str, limit: int = 63) -> bool:
    return (
        0 < len(text) <= limit
        and text[0] in LOWER_ALNUM
        and text[-1] in LOWER_ALNUM
        and set(text) <= LOWER_ALNUM | {"-"}
    )


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and all(is_dns_label(part, 253) for part in text.split("."))


def document(name: str, namespace: str | None) -> dict[str, Any]:
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": metadata,
        "spec": {"schedules": ["@hourly"], "workflowSpec": {"entrypoint": "main"}},
    }


# Mostly near-miss names (the characters that matter, at lengths around the limits), and
# some arbitrary unicode text.
near_names = st.text(alphabet="ab09-._/{}$()A \n\x00é", max_size=80) | st.builds(
    lambda part, count: ".".join([part] * count),
    st.text(alphabet="az09-", min_size=1, max_size=63),
    st.integers(1, 6),
)
names = near_names | st.text(max_size=300)
namespaces = st.none() | near_names | st.text(max_size=100)


@settings(max_examples=400, deadline=None)
@given(names, namespaces)
def test_the_loader_accepts_a_name_exactly_when_kubernetes_would(
    name: str, namespace: str | None
) -> None:
    (entry,) = load_document(document(name, namespace), Source("random.yaml", 1)).entries

    expected = is_dns_subdomain(name) and (not namespace or is_dns_label(namespace))
    assert isinstance(entry, LoadedCronWorkflow) is expected, entry
    if isinstance(entry, ManifestError):
        # An invalid name is quoted in the message, never used as the key.
        assert entry.key is None or (is_dns_subdomain(name) and entry.name == name)
        assert all("\x00" not in message and "\n" not in message for message in entry.messages)


@settings(max_examples=200, deadline=None)
@given(names, namespaces)
def test_random_names_through_yaml_never_raise(name: str, namespace: str | None) -> None:
    text = yaml.safe_dump(document(name, namespace), allow_unicode=True)

    (entry,) = load_text(text, "random.yaml").entries

    assert isinstance(entry, LoadedCronWorkflow | ManifestError)


@given(st.text(max_size=100))
def test_the_rules_are_total(value: str) -> None:
    for rule in (
        dns1123_label_problems,
        dns1123_subdomain_problems,
        qualified_name_problems,
        label_value_problems,
    ):
        assert isinstance(rule(value), list)
    assert isinstance(annotation_problems({value: value}), list)


def test_a_trailing_newline_is_not_a_valid_name() -> None:
    """Python's `$` matches before a final newline, Go's does not: `"a\\n"` is invalid."""
    assert dns1123_subdomain_problems("a\n")
    assert dns1123_label_problems("a\n")
    assert qualified_name_problems("a\n")
    assert label_value_problems("a\n")


def test_lengths_are_counted_in_bytes_as_go_does() -> None:
    """A label value of 32 two-byte characters is 64 bytes: too long, as in Kubernetes."""
    assert "must be no more than 63 characters" in label_value_problems("é" * 32)


def test_limits_are_inclusive() -> None:
    assert dns1123_label_problems("a" * 63) == []
    assert dns1123_label_problems("a" * 64) == ["must be no more than 63 characters"]
    assert dns1123_subdomain_problems("a" * 253) == []
    assert dns1123_subdomain_problems("a" * 254) == ["must be no more than 253 characters"]
    assert qualified_name_problems("example.com/" + "a" * 63) == []
    assert label_value_problems("") == []


def test_values_are_quoted_as_go_quotes_them() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\there\x00\x7f") == '"tab\\there\\x00\\x7f"'
    assert go_quote("é\u2028") == '"é\\u2028"'
    assert go_quote("x" * 5, limit=3) == '"xxx"... (5 characters)'
