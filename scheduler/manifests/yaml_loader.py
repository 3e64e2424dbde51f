"""The libyaml node builder of manifests, and the limits on what a document may expand to.

YAML is read with a safe loader, multi-document, with two departures from PyYAML's defaults
that match Kubernetes' YAML-to-JSON conversion: unquoted timestamps stay strings (so
`workflowSpec` remains JSON-compatible and passes through unchanged), and a key written twice
in one mapping is an error instead of silently keeping the last value. A document that
contains itself through an alias is an error too: PyYAML builds it, but JSON cannot represent
it, so neither can the Kubernetes API.

Limits. Everything after loading (the catalog's comparison of an old spec with its new one,
pydantic, rendering and serializing the spawned Workflow, the local executor's command line)
walks a spec as if its aliases were written out. An alias shares a node, so ten lines of
nested aliases stand for billions of values: the loader measures what each document expands
to on the composed node graph, before building anything, and refuses it past the `MAX_*`
limits below. An alias bomb, a document nested thousands deep or a file of gigabytes is an
error of that document or file, found at a cost proportional to the text, never to what its
aliases expand to. Each limit is far above what real CronWorkflows need, and low enough that a
spec at the limit costs milliseconds in every later step (README, "Limits"). A document
decoded elsewhere (by a Kubernetes client) is held to the same limits, counted on its objects
(`object_limit_problem`).

This module knows YAML and sizes, not CronWorkflows nor files: `documents` yields each
document of a stream as built objects, or as a `DocumentProblem` (the messages, and the
CronWorkflow a refused document names); `scheduler.manifests.loading` says in which file and
document, and makes CronWorkflows of the rest.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_DEPTH",
    "MAX_DOCUMENT_NODES",
    "MAX_FILE_BYTES",
    "MAX_FILE_NODES",
    "DocumentProblem",
    "documents",
    "file_size_problem",
    "object_limit_problem",
]

# -- Limits (see the module's docstring) --------------------------------------------------

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Bytes a manifest file may hold (16 MiB); at most one more is read from a file. The same
bound applies to the text of the file's values (scalars) once its aliases are expanded."""

MAX_FILE_NODES = 4_000_000
"""Nodes all the documents of one file may expand to together: without it, a file could
hold thousands of small documents each just under :data:`MAX_DOCUMENT_NODES`."""

MAX_DOCUMENT_BYTES = 3 * 1024 * 1024
"""Bytes one document may hold (3 MiB, the largest request body the Kubernetes API server
accepts; etcd stores objects of at most 1.5 MiB). The same bound applies to the text of its
values (scalars) once its aliases are expanded."""

MAX_DOCUMENT_NODES = 250_000
"""Nodes (mappings, sequences, keys, values and items) one document may expand to, each use of
an alias counting the whole subtree of its anchor. A CronWorkflow with a 500-task DAG has about
10,000; at this limit comparing two specs takes a few milliseconds and rendering one as JSON a
few tens."""

MAX_DOCUMENT_DEPTH = 100
"""Levels of mappings and sequences one document may nest, aliases expanded (the document's
own mapping is level 1). Argo's largest examples nest 20 to 30 levels; Python's recursive
walks (comparison, JSON, deep copies) fail at about 1,000 less the depth of their caller."""


def file_size_problem(content: bytes | str) -> str | None:
    """Why a file's content (its bytes, or its decoded text) exceeds `MAX_FILE_BYTES`, if it
    does: such a file is refused whole, before any of it is parsed."""
    if isinstance(content, bytes):
        too_big = len(content) > MAX_FILE_BYTES
    else:
        too_big = len(content) > MAX_FILE_BYTES or (
            len(content) * 4 > MAX_FILE_BYTES
            and len(content.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES
        )
    if not too_big:
        return None
    return (
        f"the file is bigger than {MAX_FILE_BYTES} bytes ({_mib(MAX_FILE_BYTES)}), the limit per "
        "file: nothing in it was loaded; split it into smaller files"
    )


@dataclass(frozen=True)
class DocumentProblem:
    """A document of a stream that yields no object: invalid YAML (which ends the stream), a
    limit passed, a duplicate key or a recursive alias.

    `name`/`namespace` are the plain `metadata.name` and `metadata.namespace` of a document
    refused for a limit, when it has them (it is not built, so they are read on its nodes).
    """

    messages: tuple[str, ...]
    name: str | None = None
    namespace: str | None = None


def documents(text: str) -> Iterator[object | DocumentProblem]:
    """Each document of the YAML stream, in order, built or refused; a YAML error ends the
    stream."""
    loader = _ManifestLoader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                document = loader.get_data()
            except yaml.YAMLError as error:
                yield DocumentProblem((_describe_yaml_error(error),))
                return
            except RecursionError:
                message = (
                    "cannot read the YAML: it is nested too deeply; documents after this point "
                    "were not read"
                )
                yield DocumentProblem((message,))
                return
            if loader.problems:
                name, namespace = loader.refused
                yield DocumentProblem(tuple(loader.problems), name, namespace)
                loader.problems.clear()
                loader.refused = (None, None)
                continue
            yield document
    finally:
        loader.dispose()


# libyaml's parser when PyYAML was built with it: ten times faster on large fleets.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_ABSENT = object()

_Pending = deque[tuple[Any, Any]]
"""Collections created empty, to fill in this order: (node, collection) or (None, generator)."""


class _ManifestLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader, minus timestamps, plus duplicate-key and recursion detection.

    Documents are built by `construct_document` below rather than by PyYAML's generic
    constructor, which spends most of a fleet's loading time dispatching on tags: plain
    strings, mappings and sequences (nearly every node of a manifest) are converted directly,
    any other node is handed to PyYAML's `construct_object`, so integers, booleans, nulls,
    floats, binaries, sets, omaps and explicit tags keep PyYAML's meaning. The result is the
    same, built in the same order (breadth first: a collection is created empty when first
    met and filled when its turn comes, as PyYAML's state generators do), so errors and
    duplicate keys come out in the same order too, building does not recurse however deep the
    document, and an aliased node is built once and shared wherever it is used (an alias bomb
    stays small). A document that contains itself through an alias is reported, not returned.

    Before building, each document is measured against the limits (`_limit_problem`): one
    over a limit is reported, with the CronWorkflow it names (`refused`), and not built.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[str] = []
        self.refused: tuple[str | None, str | None] = (None, None)
        """The name and namespace of the last document refused for a limit, when it says."""
        self._checked_mappings: set[MappingNode] = set()
        self._shared_nodes = False
        self._text = stream
        self._ascii = stream.isascii()
        self._file_nodes = 0
        self._file_text = 0

    def construct_document(self, node: Node) -> Any:
        pending: _Pending = deque()
        try:
            problem = self._limit_problem(node)
            if problem is not None:
                self.problems.append(problem)
                self.refused = _node_identity(node)
                return None
            document = self._construct_node(node, pending)
            while pending:
                filling, data = pending.popleft()
                if filling is None:  # a generator of PyYAML's own constructors
                    for _ in data:
                        pass
                    self._adopt_state_generators(pending)
                elif data.__class__ is list:
                    self._fill_sequence(filling, data, pending)
                else:
                    self._fill_mapping(filling, data, pending)
            if self._shared_nodes:
                recursion = _recursion_problem(node)
                if recursion is not None:
                    self.problems.append(recursion)
            return document
        finally:
            # What PyYAML's construct_document resets after each document.
            self.constructed_objects: dict[Node, Any] = {}
            self.recursive_objects: dict[Node, None] = {}
            self.state_generators: list[Iterator[Any]] = []
            self.deep_construct = False
            self._checked_mappings = set()
            self._shared_nodes = False

    def _limit_problem(self, root: Node) -> str | None:
        """Why the document of `root` exceeds a limit, if it does; its size counts for the file."""
        start, end = root.start_mark.index, root.end_mark.index
        size = end - start if self._ascii else len(self._text[start:end].encode("utf-8"))
        if size > MAX_DOCUMENT_BYTES:
            return (
                f"the document is {size} bytes long, more than the {MAX_DOCUMENT_BYTES} bytes "
                f"({_mib(MAX_DOCUMENT_BYTES)}) a document may hold (the Kubernetes API server "
                "refuses bigger requests): split it into smaller documents"
            )
        measured = _tree_size(root, size)
        if isinstance(measured, str):
            return measured
        nodes, text = measured
        self._file_nodes += nodes
        self._file_text += text
        if self._file_nodes > MAX_FILE_NODES:
            return (
                f"the documents of this file up to this one expand to {self._file_nodes} nodes "
                f"(mappings, sequences, keys, values and items), more than the {MAX_FILE_NODES} "
                f"a file may hold; {_ALIAS_ADVICE}, or split the file"
            )
        if self._file_text > MAX_FILE_BYTES:
            return (
                f"the documents of this file up to this one expand to {self._file_text} bytes "
                f"of values, more than the {MAX_FILE_BYTES} ({_mib(MAX_FILE_BYTES)}) a file may "
                f"hold; {_ALIAS_ADVICE}, or split the file"
            )
        return None

    def _construct_node(self, node: Node, pending: _Pending) -> Any:
        """The object of `node`: a new collection is returned empty and filled later."""
        data = self.constructed_objects.get(node, _ABSENT)
        if data is not _ABSENT:
            self._shared_nodes = True
            return data
        tag = node.tag
        node_class = node.__class__
        if tag == _STR_TAG and node_class is ScalarNode:
            return node.value
        if tag == _MAP_TAG and node_class is MappingNode:
            data = {}
        elif tag == _SEQ_TAG and node_class is SequenceNode:
            data = []
        else:
            if node_class is not ScalarNode:
                self._shared_nodes = True  # PyYAML builds it: check for recursion afterwards
            data = self.construct_object(node)
            self._adopt_state_generators(pending)
            return data
        self.constructed_objects[node] = data
        pending.append((node, data))
        return data

    def _fill_sequence(self, node: SequenceNode, data: list[Any], pending: _Pending) -> None:
        append = data.append
        for child in node.value:
            if child.tag == _STR_TAG and child.__class__ is ScalarNode:
                append(child.value)
            else:
                append(self._construct_node(child, pending))

    def _fill_mapping(self, node: MappingNode, data: dict[Any, Any], pending: _Pending) -> None:
        pairs = node.value
        tags = {key_node.tag for key_node, _ in pairs}
        merging = _MERGE_TAG in tags or _VALUE_TAG in tags
        if merging:
            self.flatten_mapping(node)  # checks the keys first
            pairs = node.value
        plain_keys = True
        for key_node, value_node in pairs:
            if key_node.tag == _STR_TAG and key_node.__class__ is ScalarNode:
                key = key_node.value
            else:
                plain_keys = False
                key = self._construct_node(key_node, pending)
                if not isinstance(key, Hashable):
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found unhashable key",
                        key_node.start_mark,
                    )
            if value_node.tag == _STR_TAG and value_node.__class__ is ScalarNode:
                data[key] = value_node.value
            else:
                data[key] = self._construct_node(value_node, pending)
        if merging:
            return
        if plain_keys and len(data) == len(pairs):
            self._checked_mappings.add(node)  # distinct strings: no duplicate
        else:
            # Checking after the values is the same: they are built later, or by constructors
            # that check no keys.
            self._check_duplicate_keys(node)

    def _adopt_state_generators(self, pending: _Pending) -> None:
        if self.state_generators:
            pending.extend((None, generator) for generator in self.state_generators)
            self.state_generators = []

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """PyYAML's, with a scalar it cannot convert (`!!int abc`) a YAML error, not a crash."""
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, LookupError, TypeError, ValueError) as error:
            raise ConstructorError(
                None, None, f"cannot read {_describe_node(node)}: {error}", node.start_mark
            ) from error

    def flatten_mapping(self, node: MappingNode) -> None:
        # Merging rewrites the pairs of the mapping and of those merged into it: each one's
        # keys are checked before that, so merged keys are not mistaken for duplicates.
        self._check_duplicate_keys(node)
        super().flatten_mapping(node)

    def _check_duplicate_keys(self, node: MappingNode) -> None:
        if node in self._checked_mappings:
            return
        self._checked_mappings.add(node)
        pairs = node.value
        try:
            if len({key_node.value for key_node, _ in pairs}) == len(pairs):
                return
        except TypeError:  # a mapping or a sequence as a key
            pass
        first_seen: dict[tuple[str, str], int] = {}
        for key_node, _ in pairs:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            identity = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if identity in first_seen:
                self.problems.append(
                    f"duplicate key {json.dumps(key_node.value)} at line {line}, column "
                    f"{key_node.start_mark.column + 1} (first at line {first_seen[identity]}): "
                    "a key may appear once per mapping"
                )
            else:
                first_seen[identity] = line


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


_ALIAS_ADVICE = (
    "aliases expand: each `*name` counts the whole anchored subtree, so aliases of aliases "
    "multiply: write fewer aliases"
)


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _tree_size(root: Node, size: int) -> tuple[int, int] | str:
    """`_expanded_size` of a document of `size` bytes, counted faster while it looks like a
    tree: no mapping or sequence met twice, values no longer than the document's text. Then
    each node is counted once, and the values hold at most the document's bytes. Anything
    else (an alias, or a limit passed) is left to `_expanded_size`, which says which."""
    if root.__class__ is ScalarNode:
        return 1, size
    characters = root.end_mark.index - root.start_mark.index
    nodes = 0
    text = 0
    seen: set[Node] = set()
    pending: list[tuple[Node, int]] = [(root, 1)]
    while pending:
        node, level = pending.pop()
        if node in seen or level > MAX_DOCUMENT_DEPTH:
            return _expanded_size(root)
        seen.add(node)
        nodes += 1
        children = node.value
        if node.__class__ is MappingNode:
            nodes += 2 * len(children)
            for pair in children:
                for child in pair:
                    if child.__class__ is ScalarNode:
                        text += len(child.value)
                    else:
                        nodes -= 1  # counted when popped
                        pending.append((child, level + 1))
        else:
            nodes += len(children)
            for child in children:
                if child.__class__ is ScalarNode:
                    text += len(child.value)
                else:
                    nodes -= 1
                    pending.append((child, level + 1))
        if nodes > MAX_DOCUMENT_NODES:
            return _size_problem(nodes, aliased=False)
    if text > characters:  # only an alias of a scalar repeats text
        return _expanded_size(root)
    return nodes, size


def _expanded_size(root: Node) -> tuple[int, int] | str:
    """The nodes and the bytes of scalar text the document of `root` expands to, or why it
    exceeds a limit of one document (depth, nodes, expanded text).

    Each mapping and sequence is measured once, however often aliases use it (memoized over
    the node graph, which aliases make a DAG), and the walk is iterative: the cost is that of
    the text, never of the expansion. The first subtree that passes a limit ends the walk. An
    alias back to a node being measured (a document that contains itself) counts nothing here:
    the loader reports it after building, as before.
    """
    if root.__class__ is ScalarNode:
        return 1, _utf8_size(root.value)
    # Per mapping or sequence measured: nodes, scalar bytes, levels (itself included).
    measured: dict[Node, tuple[int, int, int]] = {}
    # Per mapping or sequence being measured, root first: the node, its children still to
    # count, and so far its nodes, bytes and levels.
    path: list[list[Any]] = [[root, _child_nodes(root), 1, 0, 1]]
    on_path: set[Node] = {root}
    aliased = False
    while path:
        frame = path[-1]
        for child in frame[1]:
            if child.__class__ is ScalarNode:
                frame[2] += 1
                frame[3] += _utf8_size(child.value)
            elif child in measured:
                aliased = True
                nodes, text, levels = measured[child]
                frame[2] += nodes
                frame[3] += text
                if levels + 1 > frame[4]:
                    frame[4] = levels + 1
                    if len(path) + levels > MAX_DOCUMENT_DEPTH:
                        return _depth_problem(frame[0], through_alias=True)
            elif child in on_path:
                continue
            else:
                if len(path) >= MAX_DOCUMENT_DEPTH:
                    return _depth_problem(child, through_alias=False, aliased=aliased)
                on_path.add(child)
                path.append([child, _child_nodes(child), 1, 0, 1])
                break
        else:
            path.pop()
            node, _, nodes, text, levels = frame
            on_path.discard(node)
            if nodes > MAX_DOCUMENT_NODES or text > MAX_DOCUMENT_BYTES:
                return _size_problem(nodes, aliased)
            measured[node] = (nodes, text, levels)
            if not path:
                return nodes, text
            parent = path[-1]
            parent[2] += nodes
            parent[3] += text
            parent[4] = max(parent[4], levels + 1)
    raise AssertionError("unreachable: the root's frame returns")


def _size_problem(nodes: int, aliased: bool) -> str:
    advice = _ALIAS_ADVICE if aliased else "split it into smaller documents"
    if nodes > MAX_DOCUMENT_NODES:
        return (
            f"the document expands to more than {MAX_DOCUMENT_NODES} nodes (mappings, "
            f"sequences, keys, values and items), the limit per document; {advice}"
        )
    # Only aliases make the values longer than the document, which is within its own limit.
    return (
        f"the values of the document expand to more than {MAX_DOCUMENT_BYTES} bytes "
        f"({_mib(MAX_DOCUMENT_BYTES)}), the limit per document; {_ALIAS_ADVICE}"
    )


def _child_nodes(node: Node) -> Iterator[Node]:
    if node.__class__ is MappingNode:
        for key_node, value_node in node.value:
            yield key_node
            yield value_node
    else:
        yield from node.value


def _depth_problem(node: Node, through_alias: bool, aliased: bool = True) -> str:
    mark = node.start_mark
    where = f"the {_node_kind(node)} at line {mark.line + 1}, column {mark.column + 1}"
    where = f"through an alias in {where}" if through_alias else f"at {where}"
    advice = (
        "aliases expand: each `*name` nests the whole anchored subtree where it is used"
        if aliased
        else "a CronWorkflow needs far fewer"
    )
    return (
        f"the document nests mappings and sequences more than {MAX_DOCUMENT_DEPTH} levels deep "
        f"({where}), the limit per document; {advice}"
    )


def _node_identity(root: Node) -> tuple[str | None, str | None]:
    """The `metadata.name` and `metadata.namespace` of a document's node graph, when plain."""
    metadata = _plain_value(root, "metadata")
    return _plain_string(_plain_value(metadata, "name")), _plain_string(
        _plain_value(metadata, "namespace")
    )


def _plain_value(node: Node | None, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for key_node, value_node in node.value:
        if _plain_string(key_node) == key:
            found: Node = value_node
            return found
    return None


def _plain_string(node: Node | None) -> str | None:
    if isinstance(node, ScalarNode) and node.tag == _STR_TAG and node.value:
        value: str = node.value
        return value
    return None


def object_limit_problem(document: object) -> str | None:
    """Why a decoded document exceeds the node, depth or text limit of a document, if it does.

    Counted as `_expanded_size` counts a YAML document (a shared object wherever it appears),
    iteratively, and never past the limit: the items of a collection are counted when it is
    met, so a mapping with millions of keys is refused without visiting them.
    """
    nodes = 1
    text = 0
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, str):
            text += _utf8_size(value)
        elif isinstance(value, bytes):
            text += len(value)
        elif isinstance(value, dict | list | tuple | Mapping):
            if level > MAX_DOCUMENT_DEPTH:
                return (
                    f"the document nests mappings and sequences more than {MAX_DOCUMENT_DEPTH} "
                    "levels deep, the limit per document"
                )
            if isinstance(value, list | tuple):
                nodes += len(value)
                if nodes > MAX_DOCUMENT_NODES:
                    break
                items: Iterable[object] = value
            else:
                nodes += 2 * len(value)
                if nodes > MAX_DOCUMENT_NODES:
                    break
                items = itertools.chain.from_iterable(value.items())
            for item in items:
                if item.__class__ is str:
                    text += len(item) if item.isascii() else _utf8_size(item)
                elif not isinstance(item, int | float | bool | None):
                    pending.append((item, level + 1))
        if text > MAX_DOCUMENT_BYTES:
            return (
                f"the values of the document hold more than {MAX_DOCUMENT_BYTES} bytes "
                f"({_mib(MAX_DOCUMENT_BYTES)}) of text, the limit per document"
            )
    else:
        return None
    return (
        f"the document holds more than {MAX_DOCUMENT_NODES} nodes (mappings, sequences, keys, "
        "values and items), the limit per document"
    )


def _recursion_problem(root: Node) -> str | None:
    """Where the document's node graph contains itself through an alias, if it does.

    PyYAML builds such a document (a dict or list that contains itself), but JSON cannot
    represent it, so neither can the Kubernetes API: `kubectl apply` refuses it too.
    """
    state: dict[Node, bool] = {root: True}  # True while on the path from the root
    path: list[tuple[Node, Iterator[tuple[Node, Node, Node | int]]]] = [(root, _children(root))]
    while path:
        for child, parent, place in path[-1][1]:
            if child.__class__ is ScalarNode:
                continue
            seen = state.get(child)
            if seen is None:
                state[child] = True
                path.append((child, _children(child)))
                break
            if seen:
                mark = child.start_mark
                return (
                    f"recursive alias: {_describe_place(parent, place)} is the "
                    f"{_node_kind(child)} at line {mark.line + 1}, column {mark.column + 1} that "
                    "contains it; a manifest cannot contain itself (JSON and the Kubernetes API "
                    "cannot represent it)"
                )
        else:
            state[path.pop()[0]] = False
    return None


def _children(node: Node) -> Iterator[tuple[Node, Node, Node | int]]:
    """Each child node with its parent and where in it: a key node, or an item's index."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            yield key_node, node, -1
            yield value_node, node, key_node
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield item, node, index


def _describe_place(parent: Node, place: Node | int) -> str:
    if isinstance(place, Node):
        mark = place.start_mark
        what = (
            json.dumps(place.value)
            if isinstance(place, ScalarNode)
            else f"a {_node_kind(place)} key"
        )
        return f"the value of {what} at line {mark.line + 1}, column {mark.column + 1}"
    mark = parent.start_mark
    if place < 0:
        return f"a key of the mapping at line {mark.line + 1}, column {mark.column + 1}"
    return f"item {place + 1} of the sequence at line {mark.line + 1}, column {mark.column + 1}"


def _node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "sequence"
    return "scalar"


def _describe_node(node: Node) -> str:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    if isinstance(node, ScalarNode):
        value = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return f"{json.dumps(value)} as {tag}"
    return f"a {_node_kind(node)} as {tag}"


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        problem = error.problem or "invalid YAML"
        if problem == "exceeded maximum nesting depth":  # libyaml's own bound, at 1,000 levels
            problem += (
                f" (a document may nest at most {MAX_DOCUMENT_DEPTH} levels of mappings and "
                "sequences)"
            )
        if error.context and error.context_mark is not None:
            context = error.context_mark
            problem = (
                f"{error.context} (from line {context.line + 1}, column {context.column + 1})"
                f": {problem}"
            )
        elif error.context:
            problem = f"{error.context}: {problem}"
        return f"invalid YAML at {where}: {problem}; documents after this point were not read"
    return f"invalid YAML: {error}; documents after this point were not read"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
