"""What a manifest may expand to is bounded: alias bombs, deep nesting and huge files are errors
of their document or file, found at a cost proportional to the text (issue 12, item 2).

Before these limits, a 0.8 KB file with a 10-level alias bomb in an unused `workflowSpec` field
froze the service for 40-50 s when the file was edited (the catalog compared the old and the
new spec with `==`, walking ~9**10 leaves), and a bomb in container `args` took 1.7 GB per run.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.workflow import render_workflow
from scheduler.adapters.local.files import FileSource
from scheduler.core.memory import MemoryHistory
from scheduler.manifests import yaml_loader
from scheduler.manifests.loading import (
    LoadedCronWorkflow,
    ManifestError,
    ManifestNotice,
    ManifestSet,
    Source,
    load_bytes,
    load_document,
    load_paths,
    load_text,
)
from scheduler.manifests.yaml_loader import MAX_DOCUMENT_DEPTH, MAX_FILE_BYTES
from scheduler.runtime.service import Service, ServiceConfig

T = TypeVar("T")

ALIAS_ADVICE = (
    "aliases expand: each `*name` counts the whole anchored subtree, so aliases of aliases "
    "multiply: write fewer aliases"
)
TOO_MANY_NODES = (
    "the document expands to more than 250000 nodes (mappings, sequences, keys, values and "
    f"items), the limit per document; {ALIAS_ADVICE}"
)

MANIFEST = """\
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: {name}
spec:
  schedules: ["* * * * *"]
  workflowSpec:
    entrypoint: main
    templates:
      - name: main
        container:
          image: alpine:3.20
          command: [echo]
          args: {args}
"""


def bomb_lines(levels: int, fan_out: int = 9, indent: str = "      ") -> str:
    """`levels` mappings entries, each a sequence of `fan_out` aliases of the one before."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * fan_out)}]"]
    lines += [
        f"{indent}l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * fan_out)}]" for n in range(1, levels)
    ]
    return "\n".join(lines) + "\n"


def with_unused_bomb(name: str, levels: int, fan_out: int = 9) -> str:
    """A CronWorkflow whose `workflowSpec` carries a bomb in a field nothing reads."""
    return (
        MANIFEST.format(name=name, args="[hello]")
        + "    unused:\n"
        + bomb_lines(levels, fan_out, indent="      ")
    )


def with_args_bomb(name: str, levels: int) -> str:
    """A CronWorkflow whose container `args` hold a bomb, anchors and aliases alike."""
    items = [f"&l0 [{', '.join(['lol'] * 9)}]"]
    items += [f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return MANIFEST.format(name=name, args=f"[{', '.join(items)}]")


@dataclass(frozen=True)
class Cost:
    seconds: float
    peak_bytes: int


def measured(call: Callable[[], T]) -> tuple[T, Cost]:
    """What `call` returns, how long it took and the peak of memory it allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, Cost(seconds, peak)


def only_error(result: ManifestSet) -> ManifestError:
    (error,) = result.errors
    return error


# --------------------------------------------------------------------------------------------
# The payloads of the issue


def test_the_ten_level_bomb_in_an_unused_field_is_an_error_of_its_document() -> None:
    text = with_unused_bomb("bomb", levels=10)
    assert 700 < len(text) < 900  # the 0.8 KB of the issue

    result, cost = measured(lambda: load_text(text, "bomb.yaml"))

    error = only_error(result)
    assert result.cron_workflows == ()
    assert str(error) == f"bomb.yaml (document 1): {TOO_MANY_NODES}"
    assert error.key == "default/bomb"  # the catalog can say which CronWorkflow it is
    assert cost.seconds < 1.0
    assert cost.peak_bytes < 5_000_000


def test_a_bomb_in_container_args_is_an_error_of_its_document() -> None:
    result, cost = measured(lambda: load_text(with_args_bomb("args", levels=10), "args.yaml"))

    error = only_error(result)
    assert error.messages == (TOO_MANY_NODES,)
    assert error.key == "default/args"
    assert cost.seconds < 1.0
    assert cost.peak_bytes < 5_000_000


def test_the_larger_bomb_that_passed_three_gigabytes_costs_no_more_to_refuse() -> None:
    text = with_unused_bomb("larger", levels=12)

    result, cost = measured(lambda: load_text(text, "larger.yaml"))

    assert only_error(result).messages == (TOO_MANY_NODES,)
    assert cost.seconds < 1.0
    assert cost.peak_bytes < 5_000_000


def test_a_bomb_between_two_good_documents_leaves_them_loaded() -> None:
    text = (
        MANIFEST.format(name="before", args="[hi]")
        + "---\n"
        + with_unused_bomb("bomb", levels=10)
        + "---\n"
        + MANIFEST.format(name="after", args="[hi]")
    )

    result, cost = measured(lambda: load_text(text, "mixed.yaml"))

    assert [loaded.key for loaded in result.cron_workflows] == ["default/before", "default/after"]
    error = only_error(result)
    assert (error.source, error.key, error.messages) == (
        Source("mixed.yaml", 2),
        "default/bomb",
        (TOO_MANY_NODES,),
    )
    assert [type(item) for item in result.items] == [
        LoadedCronWorkflow,
        ManifestError,
        LoadedCronWorkflow,
    ]
    assert cost.seconds < 1.0


def test_flow_nesting_ten_thousand_deep_is_refused_by_the_parser_with_the_limit() -> None:
    text = "[" * 10_000 + "]" * 10_000

    result, cost = measured(lambda: load_text(text, "deep.yaml"))

    assert str(only_error(result)) == (
        "deep.yaml (document 1): invalid YAML at line 1, column 1001: while increasing flow "
        "level (from line 1, column 1001): exceeded maximum nesting depth (a document may nest "
        "at most 100 levels of mappings and sequences); documents after this point were not read"
    )
    assert cost.seconds < 1.0
    assert cost.peak_bytes < 5_000_000


def test_block_nesting_ten_thousand_deep_is_refused_by_the_parser_with_the_limit() -> None:
    text = "- " * 10_000 + "x\n"  # a sequence in a sequence..., each one column further

    result, cost = measured(lambda: load_text(text, "deep.yaml"))

    (message,) = only_error(result).messages
    assert message.startswith("invalid YAML at line 1, column 1999: while increasing block level")
    assert "exceeded maximum nesting depth (a document may nest at most 100 levels" in message
    assert cost.seconds < 1.0


@pytest.mark.parametrize("style", ["flow", "block"])
def test_nesting_past_the_depth_limit_is_an_error_naming_where(style: str) -> None:
    depth = MAX_DOCUMENT_DEPTH + 1
    if style == "flow":
        text = "[" * depth + "x" + "]" * depth + "\n"
        where = "the sequence at line 1, column 101"
    else:
        text = "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "x\n"
        where = "the sequence at line 101, column 201"

    error = only_error(load_text(text, "deep.yaml"))

    assert error.messages == (
        f"the document nests mappings and sequences more than 100 levels deep (at {where}), the "
        "limit per document; a CronWorkflow needs far fewer",
    )


def test_nesting_at_the_depth_limit_loads() -> None:
    depth = MAX_DOCUMENT_DEPTH
    text = "[" * depth + "x" + "]" * depth + "\n"

    result = load_text(text, "deep.yaml")

    assert only_error(result).messages[0].startswith("the document is a list, not a mapping")


def test_nesting_made_deep_by_aliases_counts_the_aliased_levels() -> None:
    # Ten levels written, each alias nesting the one before: 10 * 11 levels once expanded.
    chain = "".join(f"  - &d{n} [[[[[[[[[[*d{n - 1}]]]]]]]]]]\n" for n in range(1, 11))
    text = f"chain:\n  - &d0 [x]\n{chain}"

    error = only_error(load_text(text, "deep.yaml"))

    (message,) = error.messages
    assert message.startswith(
        "the document nests mappings and sequences more than 100 levels deep (through an alias"
    )
    assert message.endswith("each `*name` nests the whole anchored subtree where it is used")


def test_a_file_over_the_size_limit_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as sparse:
        sparse.truncate(64 * 1024**3)  # 64 GiB, no disk used: reading it whole is impossible

    result, cost = measured(lambda: load_paths([huge]))

    assert str(only_error(result)) == (
        f"{huge}: the file is bigger than 16777216 bytes (16 MiB), the limit per file: nothing in "
        "it was loaded; split it into smaller files"
    )
    assert cost.peak_bytes < 2 * MAX_FILE_BYTES
    assert cost.seconds < 2.0


def test_content_one_byte_over_the_file_limit_is_refused_and_at_the_limit_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = MANIFEST.format(name="sized", args="[hi]")
    monkeypatch.setattr(yaml_loader, "MAX_FILE_BYTES", len(text.encode()))

    assert [loaded.key for loaded in load_bytes(text.encode(), "f.yaml").cron_workflows] == [
        "default/sized"
    ]
    assert [loaded.key for loaded in load_text(text, "f.yaml").cron_workflows] == ["default/sized"]
    for result in (load_bytes(text.encode() + b"\n", "f.yaml"), load_text(text + " ", "f.yaml")):
        assert only_error(result).messages[0].startswith("the file is bigger than")


def test_content_over_the_file_limit_is_refused_before_being_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yaml_loader, "MAX_FILE_BYTES", 100)

    assert (
        only_error(load_bytes(b"\xff" * 101, "f.yaml"))
        .messages[0]
        .startswith("the file is bigger than 100 bytes")
    )
    assert "not UTF-8" in only_error(load_bytes(b"\xff" * 100, "f.yaml")).messages[0]


def test_the_file_limit_counts_bytes_not_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    text = MANIFEST.format(name="sized", args="[hi]") + "# " + "é" * 100 + "\n"
    monkeypatch.setattr(yaml_loader, "MAX_FILE_BYTES", len(text) + 50)

    assert only_error(load_text(text, "f.yaml")).messages[0].startswith("the file is bigger")


def test_a_document_over_the_size_limit_is_refused_and_the_others_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = MANIFEST.format(name="small", args="[hi]")
    big = MANIFEST.format(name="big", args="[" + ", ".join(["é"] * 40) + "]")
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_BYTES", len(small.encode()))

    result = load_text(small + "---\n" + big, "f.yaml")

    assert [loaded.key for loaded in result.cron_workflows] == ["default/small"]
    error = only_error(result)
    size = len(big.encode())
    assert (error.source.document, error.key) == (2, "default/big")
    assert error.messages == (
        f"the document is {size} bytes long, more than the {len(small.encode())} bytes "
        f"({len(small.encode()) / 1024**2:g} MiB) a document may hold (the Kubernetes API "
        "server refuses bigger requests): split it into smaller documents",
    )


@pytest.mark.parametrize("over", [False, True])
def test_nodes_are_counted_with_aliases_expanded_up_to_the_limit(
    monkeypatch: pytest.MonkeyPatch, over: bool
) -> None:
    text = "a: &a [x, y]\nb: [*a, *a, *a]\n"  # 1 + (1 + 3) + 1 + (1 + 3 * 3) = 16 nodes
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_NODES", 15 if over else 16)

    result = load_text(text, "n.yaml")

    messages = only_error(result).messages
    if over:
        assert messages == (TOO_MANY_NODES.replace("250000", "15"),)
    else:
        assert messages[0].startswith("kind: is required")


def test_aliases_used_by_the_document_itself_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_NODES", 20)

    error = only_error(load_text("[&a [x, y, z], *a, *a, *a, *a, *a]\n", "n.yaml"))

    assert error.messages == (TOO_MANY_NODES.replace("250000", "20"),)  # 1 + 6 * 4 nodes


def test_a_document_over_the_node_limit_without_aliases_is_told_to_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_NODES", 10)

    error = only_error(load_text("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n", "n.yaml"))

    assert error.messages == (
        "the document expands to more than 10 nodes (mappings, sequences, keys, values and "
        "items), the limit per document; split it into smaller documents",
    )


def test_the_text_aliases_expand_to_is_bounded_like_the_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Few nodes, but each alias repeats a long string: rendered, it would be 40 times longer.
    text = f"a: &long {'x' * 1000}\nb: [{', '.join(['*long'] * 40)}]\n"
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_BYTES", 30_000)

    error = only_error(load_text(text, "t.yaml"))

    assert error.messages == (
        "the values of the document expand to more than 30000 bytes (0.0286102 MiB), the limit "
        f"per document; {ALIAS_ADVICE}",
    )


def test_many_documents_each_under_the_limit_are_bounded_by_the_file_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yaml_loader, "MAX_FILE_NODES", 70)
    document = MANIFEST.format(name="n{}", args="[hi]")  # 33 nodes
    text = "---\n".join(document.format(n) for n in range(3))

    result = load_text(text, "many.yaml")

    assert [loaded.key for loaded in result.cron_workflows] == ["default/n0", "default/n1"]
    error = only_error(result)
    assert (error.source.document, error.key) == (3, "default/n2")
    assert error.messages == (
        "the documents of this file up to this one expand to 99 nodes (mappings, sequences, "
        f"keys, values and items), more than the 70 a file may hold; {ALIAS_ADVICE}, or split "
        "the file",
    )


def test_the_text_all_documents_expand_to_is_bounded_like_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = (
        f"a: &long {'x' * 100}\nb: [{', '.join(['*long'] * 15)}]\n"  # 1,602 bytes, keys included
    )
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_BYTES", 2_000)
    monkeypatch.setattr(yaml_loader, "MAX_FILE_BYTES", 3_000)

    result = load_text(document + "---\n" + document, "t.yaml")

    assert [(error.source.document, error.messages) for error in result.errors] == [
        (
            1,
            (
                "kind: is required: a CronWorkflow starts with apiVersion: argoproj.io/v1alpha1 "
                "and kind: CronWorkflow",
            ),
        ),
        (
            2,
            (
                "the documents of this file up to this one expand to 3204 bytes of values, more "
                f"than the 3000 (0.00286102 MiB) a file may hold; {ALIAS_ADVICE}, or split the "
                "file",
            ),
        ),
    ]


def test_a_bomb_under_the_limits_is_built_small_and_loads() -> None:
    text = with_unused_bomb("under", levels=5)  # 66,430 nodes in l4 alone

    result, cost = measured(lambda: load_text(text, "under.yaml"))

    assert [loaded.key for loaded in result.cron_workflows] == ["default/under"]
    assert cost.seconds < 1.0
    assert cost.peak_bytes < 5_000_000


# --------------------------------------------------------------------------------------------
# Decoded documents (the Kubernetes API, a client): the same limits, counted with a budget


def cron_workflow_object(name: str, unused: object) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "schedules": ["* * * * *"],
            "workflowSpec": {"entrypoint": "main", "unused": unused},
        },
    }


def shared_bomb(levels: int) -> list[Any]:
    value: list[Any] = ["lol"] * 9
    for _ in range(levels - 1):
        value = [value] * 9
    return value


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def test_a_decoded_object_that_shares_a_bomb_is_refused_within_the_budget() -> None:
    obj = cron_workflow_object("bomb", shared_bomb(10))

    result, cost = measured(lambda: load_document(obj, Source("cronworkflow team/bomb")))

    error = only_error(result)
    assert error.key == "team/bomb"
    assert error.messages == (
        "the document holds more than 250000 nodes (mappings, sequences, keys, values and "
        "items), the limit per document",
    )
    assert cost.seconds < 2.0  # 0.1 s without tracemalloc


def test_a_decoded_object_with_millions_of_keys_is_refused_without_visiting_them() -> None:
    wide = dict.fromkeys(range(3_000_000), 0)

    result, cost = measured(lambda: load_document(cron_workflow_object("w", wide), Source("w")))

    assert only_error(result).messages[0].startswith("the document holds more than 250000 nodes")
    assert cost.seconds < 0.1  # visiting 6 million nodes would take a second


def test_a_decoded_object_nested_deeper_than_the_limit_is_refused() -> None:
    deep = cron_workflow_object("deep", nested(10_000))
    at_limit = cron_workflow_object("ok", nested(MAX_DOCUMENT_DEPTH - 4))  # 4 levels above it

    error = only_error(load_document(deep, Source("deep")))

    assert error.messages == (
        "the document nests mappings and sequences more than 100 levels deep, the limit per "
        "document",
    )
    assert load_document(at_limit, Source("ok")).errors == ()
    one_more = cron_workflow_object("over", nested(MAX_DOCUMENT_DEPTH - 3))
    assert (
        only_error(load_document(one_more, Source("over")))
        .messages[0]
        .startswith("the document nests")
    )


def test_a_decoded_object_that_contains_itself_is_refused_not_walked_forever() -> None:
    loop: dict[str, Any] = {}
    loop["again"] = loop

    result, cost = measured(lambda: load_document(cron_workflow_object("loop", loop), Source("l")))

    assert only_error(result).messages[0].startswith("the document nests")
    assert cost.seconds < 1.0


def test_a_decoded_object_with_long_strings_is_held_to_the_text_limit() -> None:
    long = "x" * (1024 * 1024)
    obj = cron_workflow_object("long", [long] * 4)  # 4 MiB of text, 4 strings

    error = only_error(load_document(obj, Source("long")))

    assert error.messages == (
        "the values of the document hold more than 3145728 bytes (3 MiB) of text, the limit "
        "per document",
    )


def test_a_decoded_object_at_the_node_limit_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = cron_workflow_object("ok", ["a", "b"])  # 24 nodes
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_NODES", 24)
    assert load_document(obj, Source("ok")).errors == ()
    monkeypatch.setattr(yaml_loader, "MAX_DOCUMENT_NODES", 23)
    assert (
        only_error(load_document(obj, Source("ok")))
        .messages[0]
        .startswith("the document holds more than 23 nodes")
    )


# --------------------------------------------------------------------------------------------
# The service: with the limits, reloading an edited bomb is cheap


def service_on(folder: Path, state: Path) -> Service:
    config = ServiceConfig(manifests=(folder,), state_dir=state, host="127.0.0.1", port=0)
    return Service(config, store=MemoryHistory(), clock=lambda: datetime(2026, 3, 1, tzinfo=UTC))


def test_editing_a_file_with_a_bomb_under_the_limit_reloads_quickly(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    path = folder / "bomb.yaml"
    # l0 to l4 (75,000 nodes), then l4 twice more: about 208,000 nodes, under the limit.
    body = with_unused_bomb("bomb", levels=5) + "      l5: [*l4, *l4]\n"
    path.write_text(body)
    service = service_on(folder, tmp_path / "state")
    service._reload()
    assert list(service._catalog) == ["default/bomb"]
    spec = service._catalog["default/bomb"].spec

    path.write_text(body.replace("lol", "lul"))  # every expanded leaf differs
    _, reload = measured(service._reload)

    edited = service._catalog["default/bomb"].spec
    assert edited != spec
    assert reload.seconds < 2.0
    _, render = measured(
        lambda: json.dumps(render_workflow(edited, datetime(2026, 3, 1, tzinfo=UTC)))
    )
    assert render.seconds < 2.0
    assert render.peak_bytes < 50_000_000


def test_editing_a_file_into_a_bomb_over_the_limit_keeps_the_old_spec_and_reloads_quickly(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    path = folder / "bomb.yaml"
    path.write_text(with_unused_bomb("bomb", levels=5))
    service = service_on(folder, tmp_path / "state")
    service._reload()
    spec = service._catalog["default/bomb"].spec

    path.write_text(with_unused_bomb("bomb", levels=10).replace("lol", "lul"))
    _, reload = measured(service._reload)

    assert service._catalog["default/bomb"].spec is spec  # a failing file changes nothing
    (problem,) = service.source.poll().problems
    assert problem.messages == (f"{path} (document 1) default/bomb: {TOO_MANY_NODES}",)
    assert reload.seconds < 2.0


# --------------------------------------------------------------------------------------------
# Random YAML: only documented errors, bounded time


@dataclass(frozen=True)
class Alias:
    pick: int


@dataclass(frozen=True)
class Raw:
    """Text written as it is, however it reads as YAML."""

    text: str


Tree = Any


def trees() -> st.SearchStrategy[Tree]:
    scalars = st.one_of(
        st.sampled_from(["lol", "", "null", "1", "true", "~", "'q'", '"d"', "-", "2026-03-01"]),
        st.text(alphabet="ab:-[]{}&*!|>#%@`,?' \"\n\t\\", max_size=8),
        st.builds(Alias, st.integers(0, 50)),
        st.builds(Raw, st.text(alphabet="ab:-[]{}&*!|>#%@`,?' \"\n\t\\<=", max_size=6)),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=9),
            st.lists(st.tuples(scalars, children), max_size=6),
            st.tuples(st.just("anchor"), children),
        ),
        max_leaves=60,
    )


def render(tree: Tree, anchors: list[str]) -> str:
    """Flow-style YAML of `tree`; an `Alias` refers to an anchor written before it, if any."""
    if isinstance(tree, Alias):
        return f"*{anchors[tree.pick % len(anchors)]}" if anchors else "lol"
    if isinstance(tree, Raw):
        return tree.text
    if isinstance(tree, str):
        return json.dumps(tree) if tree.strip() != tree or not tree.isalnum() else tree
    if isinstance(tree, tuple):
        name = f"a{len(anchors)}"
        rendered = render(tree[1], anchors)
        anchors.append(name)  # defined after its value: an alias inside it is not recursion
        return f"&{name} {rendered}"
    if tree and isinstance(tree[0], tuple) and len(tree[0]) == 2 and tree[0][0] != "anchor":
        pairs = [f"{render(key, anchors)}: {render(value, anchors)}" for key, value in tree]
        return "{" + ", ".join(pairs) + "}"
    return "[" + ", ".join(render(item, anchors) for item in tree) + "]"


def assert_only_documented(result: ManifestSet) -> None:
    assert isinstance(result, ManifestSet)
    for item in result.items:
        assert isinstance(item, LoadedCronWorkflow | ManifestError | ManifestNotice)
        if isinstance(item, ManifestError):
            assert item.messages
            assert all(isinstance(message, str) and message for message in item.messages)


def timed(call: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = call()
    assert time.perf_counter() - started < 2.0
    return result


RANDOM = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RANDOM
@given(st.lists(trees(), min_size=1, max_size=3), st.booleans())
def test_random_structures_with_anchors_and_aliases_only_give_documented_results(
    documents: list[Tree], as_bytes: bool
) -> None:
    text = "".join(f"--- {render(tree, [])}\n" for tree in documents)

    result = timed(lambda: load_bytes(text.encode(), "r.yaml") if as_bytes else load_text(text))

    assert_only_documented(result)


@RANDOM
@given(st.binary(max_size=300))
def test_random_bytes_only_give_documented_results(raw: bytes) -> None:
    assert_only_documented(timed(lambda: load_bytes(raw, "r.yaml")))


@RANDOM
@given(st.integers(1, 14), st.integers(1, 12), st.booleans())
def test_random_bombs_are_refused_or_loaded_in_bounded_time(
    levels: int, fan_out: int, in_args: bool
) -> None:
    text = (
        with_args_bomb("b", levels)
        if in_args
        else with_unused_bomb("b", levels=levels, fan_out=fan_out)
    )

    result = timed(lambda: load_text(text, "b.yaml"))

    assert_only_documented(result)
    for error in result.errors:
        assert error.key == "default/b"


# --- files that are not files ------------------------------------------------------------------


def test_a_named_pipe_in_the_folder_is_an_error_and_never_blocks_the_reader(
    tmp_path: Path,
) -> None:
    """Nobody writes to it: opening it for reading the usual way would wait forever."""
    (tmp_path / "good.yaml").write_text(MANIFEST.format(name="good", args="[x]"), encoding="utf-8")
    os.mkfifo(tmp_path / "pipe.yaml")

    started = time.monotonic()
    loaded = load_paths([tmp_path])
    snapshot = FileSource([tmp_path]).poll()

    assert time.monotonic() - started < 2.0
    assert [item.key for item in loaded.cron_workflows] == ["default/good"]
    (error,) = loaded.errors
    assert error.source.file == str(tmp_path / "pipe.yaml")
    assert "not a regular file" in error.messages[0]
    assert set(snapshot.cron_workflows) == {"default/good"}
    assert [problem.file for problem in snapshot.problems] == [str(tmp_path / "pipe.yaml")]


def test_a_link_to_a_device_that_never_ends_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")

    started = time.monotonic()
    (error,) = load_paths([tmp_path]).errors

    assert time.monotonic() - started < 2.0
    assert "not a regular file" in error.messages[0]
