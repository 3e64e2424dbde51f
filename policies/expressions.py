"""The expression dialect of ``when`` and ``stopStrategy.expression`` (DESIGN.md §8).

Argo evaluates these with expr-lang; cronwf evaluates the subset that Argo users actually write
with simpleeval. The two languages differ in syntax (``&&``, ``!``, ``nil``, ``a ? b : c``,
``.Seconds()`` on durations), so an expression is *translated* before simpleeval sees it.

Why a parser and not text substitution: rewriting ``&&`` to ``and`` over the raw text breaks
string literals (``cronworkflow.name == "a && b"``), turns ``!=`` into ``not =``, and cannot
express the ternary, whose operands can be any expression. So the source is tokenized (string
literals are decoded once and never looked into again) and parsed with expr-lang's own
precedences into a Python :mod:`ast` tree; :attr:`CompiledExpression.python` is that tree
unparsed, for people who want to see what runs. Python's parser never sees user text.

Why this is a sandbox and not merely "safe by convention":

* The only tree nodes that exist are the ones the parser builds: literals, the
  ``cronworkflow`` variables, the listed operators, ``now()`` and the three duration methods.
  The evaluator is restricted to those node types too, and simpleeval's attribute whitelist
  allows ``.Seconds()``, ``.Minutes()`` and ``.Hours()`` on a duration and nothing else.
  There is no way to name ``__class__``, a builtin, a module or a Python keyword.
* Sizes are bounded before anything is allocated: the source (:data:`MAX_SOURCE_LENGTH`),
  nesting (:data:`MAX_DEPTH`, checked while tokenizing brackets and while building the tree,
  so neither our parser nor simpleeval can exhaust the Python stack), integer literals and
  results (64-bit, as in Go), and strings (no repetition operator; concatenation is capped).
  There is no ``**``, no loop and no comprehension, so evaluation time is linear in the size
  of the tree.

Types are checked at compile time wherever they are known (they nearly always are: every
variable has a fixed type), so ``cronworkflow.failed`` as a stop expression, ``"a" * 3`` or
``now() > 5`` are reported by ``cronwf lint`` rather than at 3 a.m. The operators check again
at evaluation, because ``cronworkflow.lastScheduledTime`` may be nil and a ternary may mix
types. Operands of ``&&``, ``||``, ``!`` and ``?:`` must be booleans (expr-lang's rule, not
Python's truthiness), and so must the result.

Deliberate choices where DESIGN.md is silent:

* A missing map key (``cronworkflow.labels.team`` without that label) is an evaluation
  error naming the key and the keys present, like expr-lang's strict mode: an unknown
  variable is an error, never false. ``"team" in cronworkflow.labels && ...`` guards it.
* ``not``/``!`` binds as in expr-lang (tighter than comparisons); since operands must be
  booleans, Python habits such as ``not x in y`` are reported instead of misread.
* ``==`` between values of different known types (a label and a number) is a compile error;
  ``nil`` may be compared with anything.
* ``/`` always divides as floats (as expr-lang does); dividing by zero is an error rather
  than Go's infinity; ``%`` takes integers and truncates like Go.
* List literals (``["a", "b"]``) exist for ``in``; maps cannot be written.
* ``cronworkflow.annotations`` holds the annotations (Argo binds the labels there by mistake).

What compiles may still be certain to fail whenever it runs: ``now() -
cronworkflow.lastScheduledTime`` with no nil guard (it fails on every tick before the first run,
so the first run never comes), a label the manifest does not have, a constant that overflows.
:func:`lint` finds these in the compiled tree, without evaluating anything that depends on the
variables, in one pass over the tree, and says what to write instead; ``cronwf lint`` prints its
findings as warnings. It recognises the guards people write (``x == nil || ...``, ``x != nil &&
...``, the two ternaries, ``"k" in m && ...``; the dialect has no ``??``); a guard it cannot see
through (``cronworkflow.succeeded > 0 && ...``) still gets the warning, with a guard that works.

Evaluation reuses one simpleeval evaluator per thread (building one costs more than most
evaluations) and costs a few microseconds; compilation is cached per source text.
"""

from __future__ import annotations

import ast
import difflib
import enum
import json
import keyword
import math
import operator
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeGuard

import simpleeval

__all__ = [
    "MAX_DEPTH",
    "MAX_SOURCE_LENGTH",
    "MAX_STRING_LENGTH",
    "CompiledExpression",
    "ExpressionError",
    "Finding",
    "FindingKind",
    "Variables",
    "compile_stop",
    "compile_when",
    "lint",
]

MAX_SOURCE_LENGTH: Final = 10_000
"""Longest accepted expression, in characters; real ones are well under 200."""

MAX_DEPTH: Final = 100
"""Deepest accepted nesting (brackets, operators, the height of the tree)."""

MAX_STRING_LENGTH: Final = 100_000
"""Longest string an evaluation may build (annotations can be large; ``+`` concatenates)."""

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1

_DURATION_METHODS: Final = ("Seconds", "Minutes", "Hours")
_METHODS_HINT: Final = "durations have .Seconds(), .Minutes() and .Hours()"
_NIL_TIME_HINT: Final = (
    "cronworkflow.lastScheduledTime is nil before the first run; guard with "
    "cronworkflow.lastScheduledTime == nil || ..."
)


class ExpressionError(ValueError):
    """An expression that does not compile or cannot be evaluated; the message says why.

    It is always the user's error (DESIGN.md rule 4): the message names what is wrong, where
    (for compile errors), and what is allowed instead.
    """


# --------------------------------------------------------------------------------------------
# Variables and values


@dataclass(frozen=True)
class Variables:
    """The ``cronworkflow.*`` variables of one evaluation.

    ``last_scheduled_time`` is aware, or None before the first run (``nil`` in expressions).
    """

    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    last_scheduled_time: datetime | None
    succeeded: int
    failed: int
    consecutive_succeeded: int
    consecutive_failed: int

    def __post_init__(self) -> None:
        last = self.last_scheduled_time
        if last is not None and last.utcoffset() is None:
            raise ValueError("Variables.last_scheduled_time must be timezone-aware")


class _Kind(enum.Enum):
    """The static type of a sub-expression; the value is how messages name it."""

    BOOL = "a boolean"
    NUMBER = "a number"
    STRING = "a string"
    TIME = "a time"
    DURATION = "a duration"
    NIL = "nil"
    TIME_OR_NIL = "a time or nil"
    MAP = "a map"
    LIST = "a list"
    ANY = "a value"  # only known at evaluation (a ternary mixing types)


# The expr-lang name of each variable, the Variables field behind it, and its type.
_VARIABLES: Final[dict[str, tuple[str, _Kind]]] = {
    "name": ("name", _Kind.STRING),
    "namespace": ("namespace", _Kind.STRING),
    "labels": ("labels", _Kind.MAP),
    "annotations": ("annotations", _Kind.MAP),
    "lastScheduledTime": ("last_scheduled_time", _Kind.TIME_OR_NIL),
    "succeeded": ("succeeded", _Kind.NUMBER),
    "failed": ("failed", _Kind.NUMBER),
    "consecutiveSucceeded": ("consecutive_succeeded", _Kind.NUMBER),
    "consecutiveFailed": ("consecutive_failed", _Kind.NUMBER),
}
_VARIABLE_LIST: Final = ", ".join(f"cronworkflow.{name}" for name in _VARIABLES)


@dataclass(frozen=True, order=True, slots=True)
class _Duration:
    """``now() - t``: Go's ``time.Duration``, as far as expressions can use one."""

    delta: timedelta

    # Go's method names, so Argo's expressions work unchanged.
    def Seconds(self) -> float:  # noqa: N802
        return self.delta.total_seconds()

    def Minutes(self) -> float:  # noqa: N802
        return self.delta.total_seconds() / 60

    def Hours(self) -> float:  # noqa: N802
        return self.delta.total_seconds() / 3600


class _Scope(Mapping[str, object]):
    """The value of ``cronworkflow``: a read-only view of :class:`Variables`.

    A Mapping rather than a dict built per call: nothing is copied, and simpleeval's check of
    every intermediate result does not walk into it.
    """

    __slots__ = ("_variables",)

    def __init__(self, variables: Variables) -> None:
        self._variables = variables

    def __getitem__(self, key: str) -> object:
        value = getattr(self._variables, _VARIABLES[key][0])
        if isinstance(value, Mapping):
            return MappingProxyType(value)  # read-only, and cheap for simpleeval to check
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_VARIABLES)

    def __len__(self) -> int:
        return len(_VARIABLES)


def _describe(value: object) -> str:
    """What a runtime value is, in the words of :class:`_Kind`."""
    if value is None:
        return _Kind.NIL.value
    kind = type(value)
    if kind is bool:
        return _Kind.BOOL.value
    if kind is int or kind is float:
        return _Kind.NUMBER.value
    if kind is str:
        return _Kind.STRING.value
    if isinstance(value, datetime):
        return _Kind.TIME.value
    if kind is _Duration:
        return _Kind.DURATION.value
    if isinstance(value, Mapping):
        return _Kind.MAP.value
    if kind is tuple:
        return _Kind.LIST.value
    return _Kind.ANY.value


def _render(value: object) -> str:
    """A value as an expression would spell it, for messages."""
    if value is None:
        return "nil"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return json.dumps(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, _Duration):
        return f"{value.Seconds():g}s"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, tuple):
        return "a list"
    return repr(value)


# --------------------------------------------------------------------------------------------
# Operators at evaluation. Each checks its operand types, because the static check cannot see
# a nil lastScheduledTime or the branch a ternary takes.


def _is_number(value: object) -> TypeGuard[int | float]:
    return type(value) is int or type(value) is float  # bool is not a number here


def _bounded(value: object) -> object:
    if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
        raise ExpressionError("integer overflow: the result does not fit in 64 bits")
    return value


def _nil_time_hint(left: object, right: object) -> str:
    if (left is None and isinstance(right, datetime)) or (
        right is None and isinstance(left, datetime)
    ):
        return f": {_NIL_TIME_HINT}"
    return ""


def _add(left: object, right: object) -> object:
    if _is_number(left) and _is_number(right):
        return _bounded(left + right)
    if type(left) is str and type(right) is str:
        if len(left) + len(right) > MAX_STRING_LENGTH:
            raise ExpressionError(f"string too long: the limit is {MAX_STRING_LENGTH} characters")
        return left + right
    if isinstance(left, datetime) and isinstance(right, _Duration):
        return left + right.delta
    if isinstance(left, _Duration) and isinstance(right, datetime):
        return right + left.delta
    if isinstance(left, _Duration) and isinstance(right, _Duration):
        return _Duration(left.delta + right.delta)
    raise ExpressionError(
        f"cannot add {_describe(left)} and {_describe(right)}{_nil_time_hint(left, right)}"
    )


def _subtract(left: object, right: object) -> object:
    if _is_number(left) and _is_number(right):
        return _bounded(left - right)
    if isinstance(left, datetime):
        if isinstance(right, datetime):
            return _Duration(left - right)
        if isinstance(right, _Duration):
            return left - right.delta
        if right is None:
            raise ExpressionError(f"cannot subtract nil from a time: {_NIL_TIME_HINT}")
    if isinstance(left, _Duration) and isinstance(right, _Duration):
        return _Duration(left.delta - right.delta)
    raise ExpressionError(
        f"cannot subtract {_describe(right)} from {_describe(left)}{_nil_time_hint(left, right)}"
    )


def _not_numbers(symbol: str, left: object, right: object) -> ExpressionError:
    return ExpressionError(
        f"{symbol} needs two numbers, got {_describe(left)} and {_describe(right)}"
    )


def _multiply(left: object, right: object) -> object:
    # Checked before multiplying: "a" * 10**9 must never allocate.
    if not (_is_number(left) and _is_number(right)):
        raise _not_numbers("*", left, right)
    return _bounded(left * right)


def _divide(left: object, right: object) -> object:
    if not (_is_number(left) and _is_number(right)):
        raise _not_numbers("/", left, right)
    if right == 0:
        raise ExpressionError("division by zero")
    return left / right


def _modulo(left: object, right: object) -> object:
    if type(left) is not int or type(right) is not int:
        raise ExpressionError(f"% needs two integers, got {_render(left)} and {_render(right)}")
    if right == 0:
        raise ExpressionError("modulo by zero")
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder  # Go truncates: -7 % 3 == -1


def _equal(left: object, right: object) -> bool:
    if type(left) is bool or type(right) is bool:
        return type(left) is type(right) and left == right  # true is not 1
    return bool(left == right)


def _not_equal(left: object, right: object) -> bool:
    return not _equal(left, right)


def _ordered(left: object, right: object) -> bool:
    if _is_number(left) and _is_number(right):
        return True
    if type(left) is str and type(right) is str:
        return True
    if isinstance(left, datetime) and isinstance(right, datetime):
        return True
    return isinstance(left, _Duration) and isinstance(right, _Duration)


def _ordering(symbol: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def checked(left: object, right: object) -> bool:
        if not _ordered(left, right):
            raise ExpressionError(
                f"cannot compare {_describe(left)} with {_describe(right)} using {symbol}"
                f"{_nil_time_hint(left, right)}"
            )
        return compare(left, right)

    return checked


def _contains(item: object, container: object) -> bool:
    if type(container) is tuple:
        return any(_equal(item, element) for element in container)
    if isinstance(container, Mapping):
        if type(item) is not str:
            raise ExpressionError(f"map keys are strings, got {_describe(item)}")
        return item in container
    raise ExpressionError(f"in needs a list or a map on its right, got {_describe(container)}")


def _not_contains(item: object, container: object) -> bool:
    return not _contains(item, container)


def _not(value: object) -> bool:
    if type(value) is not bool:
        raise ExpressionError(f"! (not) needs a boolean, got {_render(value)}")
    return not value


def _negate(value: object) -> object:
    if not _is_number(value):
        raise ExpressionError(f"unary - needs a number, got {_describe(value)}")
    return _bounded(-value)


def _plus(value: object) -> object:
    if not _is_number(value):
        raise ExpressionError(f"unary + needs a number, got {_describe(value)}")
    return value


# Keyed by the node types of the translated tree; anything absent (**, bit operators, is)
# has no implementation at all.
_OPERATORS: Final[dict[type, Callable[..., object]]] = {
    ast.Add: _add,
    ast.Sub: _subtract,
    ast.Mult: _multiply,
    ast.Div: _divide,
    ast.Mod: _modulo,
    ast.Eq: _equal,
    ast.NotEq: _not_equal,
    ast.Lt: _ordering("<", operator.lt),
    ast.LtE: _ordering("<=", operator.le),
    ast.Gt: _ordering(">", operator.gt),
    ast.GtE: _ordering(">=", operator.ge),
    ast.In: _contains,
    ast.NotIn: _not_contains,
    ast.Not: _not,
    ast.USub: _negate,
    ast.UAdd: _plus,
}


def _display(node: ast.expr) -> str:
    """The expr-lang spelling of a variable or map access, for messages."""
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and type(node.slice.value) is str
    ):
        key = node.slice.value
        base = _display(node.value)
        return f"{base}.{key}" if key.isidentifier() else f"{base}[{json.dumps(key)}]"
    return "the map"


def _missing_key(owner: str, key: str, mapping: Mapping[str, object]) -> str:
    keys = sorted(mapping)
    if keys:
        listed = ", ".join(json.dumps(k) for k in keys[:10])
        present = f"its keys are {listed}{', ...' if len(keys) > 10 else ''}"
    else:
        present = "it is empty"
    quoted = json.dumps(key)
    return (
        f"{owner} has no key {quoted} ({present}); to test for it, write {quoted} in {owner} && ..."
    )


class _Evaluator(simpleeval.SimpleEval):  # type: ignore[misc]  # simpleeval has no types
    """simpleeval, restricted to the tree the translation builds, with expr-lang's rules.

    Not thread-safe: it carries the variables and ``now`` of the current evaluation, so each
    thread has its own (see :func:`_evaluator`).
    """

    def __init__(self) -> None:
        super().__init__(
            operators=_OPERATORS,
            functions={"now": self._now},
            names={},
            allowed_attrs={_Duration: frozenset(_DURATION_METHODS)},
        )
        # Only the node types the parser produces: anything else cannot be evaluated even if
        # it were somehow built.
        self.nodes = {
            ast.Constant: self._eval_constant,
            ast.Name: self._eval_name,
            ast.UnaryOp: self._eval_unaryop,
            ast.BinOp: self._eval_binop,
            ast.BoolOp: self._eval_boolop,
            ast.Compare: self._eval_compare,
            ast.IfExp: self._eval_ifexp,
            ast.Call: self._eval_call,
            ast.Attribute: self._eval_attribute,
            ast.Subscript: self._eval_subscript,
            ast.List: self._eval_list,
        }
        self.current_now: datetime | None = None

    def _now(self) -> datetime | None:
        return self.current_now

    def _eval(self, node: ast.AST) -> Any:
        # simpleeval scans every intermediate result for modules and forbidden functions. Here
        # outside values enter only through reads of cronworkflow and its maps, which
        # _eval_subscript scans; every other result is a literal or comes from the operators
        # above. Scanning once where it matters saves a quarter of each evaluation.
        try:
            handler = self.nodes[type(node)]
        except KeyError:
            raise ExpressionError(f"{type(node).__name__} is not part of the dialect") from None
        return handler(node)

    def _eval_boolop(self, node: ast.BoolOp) -> bool:
        # Short-circuits like Python, but only booleans are allowed (expr-lang), and the
        # result is a boolean, not the last operand.
        stop_at = isinstance(node.op, ast.Or)
        symbol = "||" if stop_at else "&&"
        for value in node.values:
            result = self._eval(value)
            if type(result) is not bool:
                raise ExpressionError(f"{symbol} needs booleans, got {_render(result)}")
            if result is stop_at:
                return stop_at
        return not stop_at

    def _eval_ifexp(self, node: ast.IfExp) -> object:
        condition = self._eval(node.test)
        if type(condition) is not bool:
            raise ExpressionError(
                f"the condition of ?: must be a boolean, got {_render(condition)}"
            )
        return self._eval(node.body if condition else node.orelse)

    def _eval_subscript(self, node: ast.Subscript) -> object:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if type(container) is _Scope:
            value = container[key]  # the key was checked at compile time
            self._check_disallowed_items(value)
            return value
        if not isinstance(container, Mapping):
            raise ExpressionError(
                f"{_describe(container)} has no keys: only maps (cronworkflow.labels, "
                "cronworkflow.annotations) can be indexed"
            )
        if type(key) is not str:
            raise ExpressionError(f"map keys are strings, got {_render(key)}")
        try:
            value = container[key]
        except KeyError:
            raise ExpressionError(_missing_key(_display(node.value), key, container)) from None
        self._check_disallowed_items(value)
        return value

    def _eval_list(self, node: ast.List) -> tuple[object, ...]:
        return tuple(self._eval(element) for element in node.elts)  # immutable


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.evaluator = _Evaluator()


_PER_THREAD = _PerThread()


def _evaluator() -> _Evaluator:
    return _PER_THREAD.evaluator


# --------------------------------------------------------------------------------------------
# Compiled expressions


class CompiledExpression:
    """A parsed, translated and type-checked expression, ready to evaluate many times.

    ``source`` is the text as written; ``python`` is the translation that runs; ``variables``
    the ``cronworkflow.*`` variables it reads. Immutable and shared: :func:`compile_when` and
    :func:`compile_stop` return one object per distinct source.
    """

    __slots__ = ("_tree", "python", "source", "variables")

    def __init__(self, source: str, tree: ast.expr) -> None:
        self.source = source
        self.python = ast.unparse(tree)
        self._tree = tree
        self.variables: frozenset[str] = frozenset(
            node.slice.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and isinstance(node.slice, ast.Constant)
            and type(node.slice.value) is str
        )

    def __repr__(self) -> str:
        return f"CompiledExpression({self.source!r})"

    def evaluate(self, variables: Variables, now: datetime) -> bool:
        """The expression's value for ``variables`` at the decision time ``now`` (aware).

        Raises :class:`ExpressionError` when evaluation fails or the result is not a boolean.
        """
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        evaluator = _evaluator()
        evaluator.current_now = now
        evaluator.names = {"cronworkflow": _Scope(variables)}
        try:
            result = evaluator.eval(self.python, previously_parsed=self._tree)
        except ExpressionError:
            raise
        except simpleeval.InvalidExpression as error:
            raise ExpressionError(f"cannot evaluate {self.source!r}: {error}") from None
        except (ArithmeticError, TypeError, ValueError, KeyError, RecursionError) as error:
            raise ExpressionError(f"cannot evaluate {self.source!r}: {error}") from None
        finally:
            # Do not keep the last evaluation's variables alive in the thread.
            evaluator.names = {}
            evaluator.current_now = None
        if type(result) is not bool:
            raise ExpressionError(
                f"expected a boolean (true or false), but the expression gave {_render(result)}"
            )
        return result


@lru_cache(maxsize=4096)
def compile_when(source: str) -> CompiledExpression:
    """Compile ``spec.when``: ``{{= <expression> }}`` (Argo's form) or a bare expression."""
    _check_length(source)
    stripped = source.strip()
    start = len(source) - len(source.lstrip())
    end = start + len(stripped)
    if stripped.startswith("{{="):
        if not stripped.endswith("}}"):
            raise ExpressionError('"{{=" is not closed: write {{= <expression> }}')
        start, end = start + 3, end - 2
    elif stripped.startswith("{{"):
        raise ExpressionError(
            "plain {{...}} tags are not supported in when: write {{= <expression> }} "
            "or a bare expression"
        )
    return _compile(source, start, end, "when")


@lru_cache(maxsize=4096)
def compile_stop(source: str) -> CompiledExpression:
    """Compile ``spec.stopStrategy.expression``, a bare expression (as in Argo)."""
    _check_length(source)
    if source.lstrip().startswith("{{"):
        raise ExpressionError(
            "stopStrategy.expression is a bare expression: write it without {{= }}"
        )
    return _compile(source, 0, len(source), "stop")


def _check_length(source: str) -> None:
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"expression too long: {len(source)} characters, the limit is {MAX_SOURCE_LENGTH}"
        )


def _compile(source: str, start: int, end: int, context: str) -> CompiledExpression:
    if not source[start:end].strip():
        raise ExpressionError("the expression is empty")
    try:
        tokens = _tokenize(source, start, end, context)
        typed = _Parser(source, tokens).parse()
    except RecursionError:
        # MAX_DEPTH keeps far from the stack limit; this only guards a caller already deep.
        raise ExpressionError("expression too complex to compile") from None
    if typed.kind not in (_Kind.BOOL, _Kind.ANY):
        hint = ": compare it, e.g. cronworkflow.failed >= 3" if typed.kind is _Kind.NUMBER else ""
        raise ExpressionError(
            f"expected a boolean (true or false), but the expression gives {typed.kind.value}{hint}"
        )
    return CompiledExpression(source, typed.node)


# --------------------------------------------------------------------------------------------
# Tokenizer


class _TokenKind(enum.Enum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    OPERATOR = "operator"
    END = "end"


class _Token(NamedTuple):
    kind: _TokenKind
    text: str
    value: str | int | float | None  # the decoded literal, for numbers and strings
    position: int  # offset in the whole source


_OPERATORS_TWO: Final = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_OPERATORS_ONE: Final = frozenset("<>+-*/%!()[],.?:")
_NO_POWER: Final = "there is no power operator; the arithmetic operators are + - * / %"
_NO_BITS: Final = "bitwise operators are not supported"
_REFUSED: Final[dict[str, str]] = {
    "**": _NO_POWER,
    "??": "the nil-coalescing operator ?? is not supported",
    "?.": "optional chaining ?. is not supported",
    "..": "ranges are not supported",
    ":=": "assignment is not supported",
    "<<": _NO_BITS,
    ">>": _NO_BITS,
    "=": "assignment is not supported; to compare, write ==",
    "&": f"{_NO_BITS}; the logical and is && (or and)",
    "|": f"{_NO_BITS}; the logical or is || (or or)",
    "^": _NO_POWER,
    "~": _NO_BITS,
    ";": "an expression is a single condition",
}
_BRACE_HINT: Final = {
    "when": "a when is {{= <expression> }} as the whole value, or a bare expression; "
    "map literals are not supported",
    "stop": "a stop expression is bare, without {{= }}; map literals are not supported",
}
_STRING_PREFIXES: Final = frozenset({"f", "b", "r", "u", "rb", "br", "fr", "rf"})
_ESCAPES: Final = {
    "\\": "\\",
    '"': '"',
    "'": "'",
    "`": "`",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_HEX_ESCAPES: Final = {"x": 2, "u": 4, "U": 8}
_NUMBER: Final = re.compile(
    r"0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*"
    r"|[0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][+-]?[0-9]+)?"
)
_NAME_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_PART: Final = _NAME_START | frozenset("0123456789")
_SPACE: Final = frozenset(" \t\r\n")


def _where(source: str, position: int) -> str:
    line = source.count("\n", 0, position) + 1
    column = position - (source.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}" if "\n" in source else f"column {column}"


def _tokenize(source: str, start: int, end: int, context: str) -> list[_Token]:
    """Split ``source[start:end]`` into tokens, refusing what the dialect does not have.

    Bracket depth is bounded here, before any recursion happens.
    """
    tokens: list[_Token] = []
    depth = 0
    i = start
    while i < end:
        char = source[i]
        if char in _SPACE:
            i += 1
        elif char in _NAME_START:
            j = i + 1
            while j < end and source[j] in _NAME_PART:
                j += 1
            name = source[i:j]
            if j < end and source[j] in "\"'" and name.lower() in _STRING_PREFIXES:
                raise ExpressionError(
                    f"string prefix {name} at {_where(source, i)} is not supported: "
                    'f-strings, b"", r"" are Python; write a plain "string"'
                )
            tokens.append(_Token(_TokenKind.NAME, name, None, i))
            i = j
        elif "0" <= char <= "9":
            token = _number(source, i, end)
            tokens.append(token)
            i += len(token.text)
        elif char in "\"'`":
            token, i = _string(source, i, end)
            tokens.append(token)
        else:
            pair = source[i : i + 2] if i + 1 < end else ""
            if pair in _OPERATORS_TWO:
                tokens.append(_Token(_TokenKind.OPERATOR, pair, None, i))
                i += 2
            elif pair in _REFUSED:
                raise ExpressionError(
                    f"{pair} at {_where(source, i)} is not supported: {_REFUSED[pair]}"
                )
            elif char in _OPERATORS_ONE:
                if char in "([":
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise ExpressionError(
                            f"expression nested too deeply at {_where(source, i)}: "
                            f"the limit is {MAX_DEPTH} levels"
                        )
                elif char in ")]":
                    depth -= 1
                tokens.append(_Token(_TokenKind.OPERATOR, char, None, i))
                i += 1
            elif char in _REFUSED:
                raise ExpressionError(
                    f"{char} at {_where(source, i)} is not supported: {_REFUSED[char]}"
                )
            elif char in "{}":
                raise ExpressionError(
                    f"unexpected {char} at {_where(source, i)}: {_BRACE_HINT[context]}"
                )
            else:
                raise ExpressionError(
                    f"unexpected character {json.dumps(char)} at {_where(source, i)}"
                )
    tokens.append(_Token(_TokenKind.END, "", None, end))
    return tokens


def _number(source: str, start: int, end: int) -> _Token:
    match = _NUMBER.match(source, start, end)
    assert match is not None  # called on a digit
    text = match.group()
    after = match.end()
    where = _where(source, start)
    if after < end and source[after] in _NAME_PART:
        raise ExpressionError(f"invalid number {source[start : after + 1]}... at {where}")
    digits = text.replace("_", "")
    if digits[:2] in ("0x", "0X"):
        # Bounded before converting: a 10,000-digit literal must not become an int.
        if len(digits.lstrip("0xX")) > 16 or int(digits, 16) > _INT_MAX:
            raise ExpressionError(
                f"integer {text} at {where} is too large: the limit is {_INT_MAX}"
            )
        value: int | float = int(digits, 16)
    elif any(c in digits for c in ".eE"):
        number = float(digits)
        if math.isinf(number):
            raise ExpressionError(f"number {text} at {where} is out of range")
        value = number
    else:
        if len(digits.lstrip("0")) > 19 or int(digits) > _INT_MAX:
            shown = text if len(text) <= 30 else text[:27] + "..."
            raise ExpressionError(
                f"integer {shown} at {where} is too large: the limit is {_INT_MAX}"
            )
        value = int(digits)
    return _Token(_TokenKind.NUMBER, text, value, start)


def _string(source: str, start: int, end: int) -> tuple[_Token, int]:
    """A quoted string ("..." or '...' with Go escapes) or a raw `...` string."""
    quote = source[start]
    where = _where(source, start)
    if quote == "`":
        close = source.find("`", start + 1, end)
        if close < 0:
            raise ExpressionError(f"unterminated string starting at {where}")
        text = source[start + 1 : close]
        return _Token(_TokenKind.STRING, source[start : close + 1], text, start), close + 1
    parts: list[str] = []
    i = start + 1
    while i < end:
        char = source[i]
        if char == quote:
            token = _Token(_TokenKind.STRING, source[start : i + 1], "".join(parts), start)
            return token, i + 1
        if char != "\\":
            parts.append(char)
            i += 1
            continue
        code = source[i + 1] if i + 1 < end else ""
        if code in _ESCAPES:
            parts.append(_ESCAPES[code])
            i += 2
        elif code in _HEX_ESCAPES:
            size = _HEX_ESCAPES[code]
            digits = source[i + 2 : i + 2 + size]
            try:
                if len(digits) != size:
                    raise ValueError(digits)
                parts.append(chr(int(digits, 16)))
            except ValueError:
                raise ExpressionError(
                    f"invalid escape \\{code}{digits} in the string at {where}"
                ) from None
            i += 2 + size
        elif "0" <= code <= "7" and re.fullmatch("[0-7]{3}", source[i + 1 : i + 4]):
            parts.append(chr(int(source[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise ExpressionError(
                f"invalid escape \\{code} in the string at {where}: "
                'write \\\\ for a backslash, \\" for a quote'
            )
    raise ExpressionError(f"unterminated string starting at {where}")


# --------------------------------------------------------------------------------------------
# Parser: expr-lang's grammar and precedences (parser/parser.go), building a Python tree.


class _Typed(NamedTuple):
    node: ast.expr
    kind: _Kind
    height: int


class _Mismatch(Exception):
    """A type error found while building a node; the parser adds where it is."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint


_Op = type[ast.boolop] | type[ast.cmpop] | type[ast.operator]

# expr-lang's binary precedences (all left-associative); the ternary is lowest of all.
_BINARY: Final[dict[str, tuple[int, _Op]]] = {
    "||": (10, ast.Or),
    "or": (10, ast.Or),
    "&&": (15, ast.And),
    "and": (15, ast.And),
    "==": (20, ast.Eq),
    "!=": (20, ast.NotEq),
    "<": (20, ast.Lt),
    "<=": (20, ast.LtE),
    ">": (20, ast.Gt),
    ">=": (20, ast.GtE),
    "in": (20, ast.In),
    "not in": (20, ast.NotIn),
    "+": (30, ast.Add),
    "-": (30, ast.Sub),
    "*": (60, ast.Mult),
    "/": (60, ast.Div),
    "%": (60, ast.Mod),
}
_NOT_PRECEDENCE: Final = 50  # tighter than comparisons, as in expr-lang
_SIGN_PRECEDENCE: Final = 90
_ORDERED_KINDS: Final = frozenset({_Kind.NUMBER, _Kind.STRING, _Kind.TIME, _Kind.DURATION})
_LITERALS: Final[dict[str, tuple[bool | None, _Kind]]] = {
    "true": (True, _Kind.BOOL),
    "false": (False, _Kind.BOOL),
    "nil": (None, _Kind.NIL),
    "True": (True, _Kind.BOOL),
    "False": (False, _Kind.BOOL),
    "None": (None, _Kind.NIL),
}
_PYTHON_HINTS: Final = {
    "if": "Python's conditional is not supported: write condition ? a : b",
    "else": "Python's conditional is not supported: write condition ? a : b",
    "lambda": "functions cannot be defined",
    "for": "comprehensions are not supported",
    "import": "imports are not supported",
    "from": "imports are not supported",
    "is": "compare with == and !=",
}


def _time_like(kind: _Kind) -> _Kind:
    # Statically a time or nil is a time; evaluation reports the nil with a hint.
    return _Kind.TIME if kind is _Kind.TIME_OR_NIL else kind


def _equality_compatible(left: _Kind, right: _Kind) -> bool:
    if _Kind.ANY in (left, right) or _Kind.NIL in (left, right):
        return True
    if _Kind.TIME_OR_NIL in (left, right):
        return _time_like(left) is _time_like(right)
    return left is right


def _binary_kind(symbol: str, op: _Op, left: _Kind, right: _Kind) -> _Kind:
    """The type of ``left <symbol> right``; raises :class:`_Mismatch` when there is none."""
    if op is ast.And or op is ast.Or:
        for side in (left, right):
            if side not in (_Kind.BOOL, _Kind.ANY):
                hint = "compare it with == nil" if side is _Kind.TIME_OR_NIL else ""
                raise _Mismatch(f"{symbol} needs booleans on both sides, got {side.value}", hint)
        return _Kind.BOOL
    if op is ast.Eq or op is ast.NotEq:
        if not _equality_compatible(left, right):
            raise _Mismatch(
                f"cannot compare {left.value} with {right.value} using {symbol}",
                "the two sides have different types",
            )
        return _Kind.BOOL
    if op in (ast.Lt, ast.LtE, ast.Gt, ast.GtE):
        if _Kind.NIL in (left, right):
            raise _Mismatch(f"nil can only be compared with == and !=, not with {symbol}")
        if _Kind.ANY in (left, right):
            return _Kind.BOOL
        if _time_like(left) is not _time_like(right) or _time_like(left) not in _ORDERED_KINDS:
            hint = ""
            if {left, right} == {_Kind.DURATION, _Kind.NUMBER}:
                hint = f"convert the duration to a number; {_METHODS_HINT}"
            raise _Mismatch(f"cannot compare {left.value} with {right.value} using {symbol}", hint)
        return _Kind.BOOL
    if op is ast.In or op is ast.NotIn:
        if right not in (_Kind.MAP, _Kind.LIST, _Kind.ANY):
            raise _Mismatch(f"{symbol} needs a list or a map on its right, got {right.value}")
        if right is _Kind.MAP and left not in (_Kind.STRING, _Kind.ANY):
            raise _Mismatch(f"map keys are strings, got {left.value}")
        return _Kind.BOOL
    return _arithmetic_kind(symbol, op, left, right)


_SUMS: Final = {
    (_Kind.NUMBER, _Kind.NUMBER): _Kind.NUMBER,
    (_Kind.STRING, _Kind.STRING): _Kind.STRING,
    (_Kind.TIME, _Kind.DURATION): _Kind.TIME,
    (_Kind.DURATION, _Kind.TIME): _Kind.TIME,
    (_Kind.DURATION, _Kind.DURATION): _Kind.DURATION,
}
_DIFFERENCES: Final = {
    (_Kind.NUMBER, _Kind.NUMBER): _Kind.NUMBER,
    (_Kind.TIME, _Kind.TIME): _Kind.DURATION,
    (_Kind.TIME, _Kind.DURATION): _Kind.TIME,
    (_Kind.DURATION, _Kind.DURATION): _Kind.DURATION,
}


def _arithmetic_kind(symbol: str, op: _Op, left: _Kind, right: _Kind) -> _Kind:
    pair = (_time_like(left), _time_like(right))
    if op is ast.Add:
        if _Kind.ANY in pair:
            return _Kind.ANY
        if pair in _SUMS:
            return _SUMS[pair]
        raise _Mismatch(f"cannot add {left.value} and {right.value}")
    if op is ast.Sub:
        if _Kind.ANY in pair:
            return _Kind.ANY
        if pair in _DIFFERENCES:
            return _DIFFERENCES[pair]
        if pair == (_Kind.TIME, _Kind.NIL):
            raise _Mismatch("cannot subtract nil from a time", _NIL_TIME_HINT)
        raise _Mismatch(f"cannot subtract {right.value} from {left.value}")
    for side in (left, right):
        if side not in (_Kind.NUMBER, _Kind.ANY):
            hint = "strings cannot be repeated" if side is _Kind.STRING and symbol == "*" else ""
            raise _Mismatch(f"{symbol} needs two numbers, got {left.value} and {right.value}", hint)
    return _Kind.NUMBER


def _join(left: _Kind, right: _Kind) -> _Kind:
    """The type of ``c ? left : right``."""
    if left is right:
        return left
    if {left, right} <= {_Kind.TIME, _Kind.NIL, _Kind.TIME_OR_NIL}:
        return _Kind.TIME_OR_NIL
    return _Kind.ANY


class _Parser:
    """Recursive descent with precedence climbing, as expr-lang's parser does it."""

    def __init__(self, source: str, tokens: list[_Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    # Token helpers

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind is not _TokenKind.END:
            self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.kind in (_TokenKind.OPERATOR, _TokenKind.NAME) and token.text == text

    def error(self, what: str, token: _Token, hint: str = "") -> ExpressionError:
        where = _where(self.source, token.position)
        return ExpressionError(f"{what} at {where}: {hint}" if hint else f"{what} at {where}")

    def unexpected(self, token: _Token, expected: str) -> ExpressionError:
        if token.kind is _TokenKind.END:
            return self.error("unexpected end of the expression", token, f"expected {expected}")
        shown = "a string" if token.kind is _TokenKind.STRING else json.dumps(token.text)
        hint = _PYTHON_HINTS.get(token.text) if token.kind is _TokenKind.NAME else None
        return self.error(f"unexpected {shown}", token, hint or f"expected {expected}")

    def expect(self, text: str) -> _Token:
        if not self.at(text):
            raise self.unexpected(self.peek(), json.dumps(text))
        return self.next()

    def make(self, node: ast.expr, kind: _Kind, token: _Token, *children: _Typed) -> _Typed:
        return self.sized(node, kind, token, 1 + max((c.height for c in children), default=0))

    def sized(self, node: ast.expr, kind: _Kind, token: _Token, height: int) -> _Typed:
        # Bounds the tree, not only the brackets: 1+1+...+1 is shallow text but a deep tree.
        if height > MAX_DEPTH:
            raise self.error(
                "expression nested too deeply", token, f"the limit is {MAX_DEPTH} levels"
            )
        return _Typed(node, kind, height)

    # Grammar

    def parse(self) -> _Typed:
        typed = self.expression(0)
        if self.peek().kind is not _TokenKind.END:
            raise self.unexpected(self.peek(), "an operator or the end of the expression")
        return typed

    def expression(self, precedence: int) -> _Typed:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                "expression nested too deeply", self.peek(), f"the limit is {MAX_DEPTH} levels"
            )
        left = self.unary()
        while True:
            token = self.peek()
            symbol = self.binary_symbol()
            if symbol is None or _BINARY[symbol][0] < precedence:
                break
            self.next()
            if symbol == "not in":
                self.next()
            right = self.expression(_BINARY[symbol][0] + 1)
            left = self.binary(symbol, token, left, right)
        if precedence == 0:
            left = self.conditional(left)
        self.depth -= 1
        return left

    def binary_symbol(self) -> str | None:
        token = self.peek()
        if token.kind is _TokenKind.OPERATOR and token.text in _BINARY:
            return token.text
        if token.kind is _TokenKind.NAME:
            if token.text in ("and", "or", "in"):
                return token.text
            following = self.peek(1)
            if token.text == "not" and following.kind is _TokenKind.NAME:
                return "not in" if following.text == "in" else None
        return None

    def binary(self, symbol: str, token: _Token, left: _Typed, right: _Typed) -> _Typed:
        op = _BINARY[symbol][1]
        try:
            kind = _binary_kind(symbol, op, left.kind, right.kind)
        except _Mismatch as mismatch:
            raise self.error(mismatch.what, token, mismatch.hint) from None
        node: ast.expr
        if issubclass(op, ast.boolop):
            # a && b && c is one node: short-circuits the same, and keeps the tree shallow.
            if isinstance(left.node, ast.BoolOp) and isinstance(left.node.op, op):
                node = ast.BoolOp(op=op(), values=[*left.node.values, right.node])
                return self.sized(node, kind, token, max(left.height, right.height + 1))
            node = ast.BoolOp(op=op(), values=[left.node, right.node])
        elif issubclass(op, ast.cmpop):
            node = ast.Compare(left=left.node, ops=[op()], comparators=[right.node])
        else:
            node = ast.BinOp(left=left.node, op=op(), right=right.node)
        return self.make(node, kind, token, left, right)

    def conditional(self, condition: _Typed) -> _Typed:
        while self.at("?"):
            token = self.next()
            if self.at(":"):
                raise self.error("?: without a middle operand is not supported", token)
            if condition.kind not in (_Kind.BOOL, _Kind.ANY):
                raise self.error(
                    f"the condition of ?: must be a boolean, got {condition.kind.value}", token
                )
            then = self.expression(0)
            self.expect(":")
            otherwise = self.expression(0)
            node = ast.IfExp(test=condition.node, body=then.node, orelse=otherwise.node)
            kind = _join(then.kind, otherwise.kind)
            condition = self.make(node, kind, token, condition, then, otherwise)
        return condition

    def unary(self) -> _Typed:
        token = self.peek()
        if (token.kind is _TokenKind.OPERATOR and token.text == "!") or (
            token.kind is _TokenKind.NAME and token.text == "not"
        ):
            self.next()
            operand = self.expression(_NOT_PRECEDENCE)
            if operand.kind not in (_Kind.BOOL, _Kind.ANY):
                raise self.error(
                    f"{token.text} needs a boolean, got {operand.kind.value}",
                    token,
                    f"{token.text} binds tighter than comparisons and in; "
                    f"write {token.text}(a in b)",
                )
            node = ast.UnaryOp(op=ast.Not(), operand=operand.node)
            return self.make(node, _Kind.BOOL, token, operand)
        if token.kind is _TokenKind.OPERATOR and token.text in ("-", "+"):
            self.next()
            operand = self.expression(_SIGN_PRECEDENCE)
            if operand.kind not in (_Kind.NUMBER, _Kind.ANY):
                raise self.error(
                    f"unary {token.text} needs a number, got {operand.kind.value}", token
                )
            sign: ast.unaryop = ast.USub() if token.text == "-" else ast.UAdd()
            return self.make(
                ast.UnaryOp(op=sign, operand=operand.node), operand.kind, token, operand
            )
        return self.postfix(self.primary())

    def primary(self) -> _Typed:
        token = self.next()
        if token.kind in (_TokenKind.NUMBER, _TokenKind.STRING):
            kind = _Kind.NUMBER if token.kind is _TokenKind.NUMBER else _Kind.STRING
            return self.make(ast.Constant(value=token.value), kind, token)
        if token.kind is _TokenKind.NAME:
            return self.name(token)
        if token.kind is _TokenKind.OPERATOR and token.text == "(":
            inner = self.expression(0)
            self.expect(")")
            return inner
        if token.kind is _TokenKind.OPERATOR and token.text == "[":
            return self.list_literal(token)
        raise self.unexpected(token, "a value")

    def name(self, token: _Token) -> _Typed:
        name = token.text
        if name in _LITERALS:
            value, kind = _LITERALS[name]
            return self.make(ast.Constant(value=value), kind, token)
        if name.startswith("_"):
            raise self.error(
                f"{name} is not allowed", token, 'names starting with "_" are never accessible'
            )
        if name == "cronworkflow":
            return self.variable(token)
        if name == "now":
            if not self.at("("):
                raise self.error("now is a function", token, "write now()")
            self.next()
            if not self.at(")"):
                raise self.error("now() takes no arguments", token)
            self.next()
            call = ast.Call(func=ast.Name(id="now", ctx=ast.Load()), args=[], keywords=[])
            return self.make(call, _Kind.TIME, token)
        if name in _PYTHON_HINTS:
            raise self.error(f"{name} is not part of the dialect", token, _PYTHON_HINTS[name])
        if keyword.iskeyword(name) or name in ("not", "and", "or", "in"):
            raise self.unexpected(token, "a value")
        if self.at("("):
            raise self.error(
                f"unknown function {name}()", token, f"the only function is now(); {_METHODS_HINT}"
            )
        raise self.error(
            f"unknown variable {json.dumps(name)}",
            token,
            f"the variables are {_VARIABLE_LIST}; the only function is now()",
        )

    def variable(self, token: _Token) -> _Typed:
        """``cronworkflow.<attribute>`` or ``cronworkflow["<attribute>"]``, checked here."""
        if self.at("."):
            self.next()
            attribute_token = self.next()
            if attribute_token.kind is not _TokenKind.NAME:
                raise self.unexpected(attribute_token, "a variable name after cronworkflow.")
        elif self.at("["):
            self.next()
            attribute_token = self.next()
            if attribute_token.kind is not _TokenKind.STRING:
                raise self.error(
                    "cronworkflow is indexed with a quoted name",
                    attribute_token,
                    'e.g. cronworkflow["name"]',
                )
            self.expect("]")
        else:
            raise self.error(
                "cronworkflow is not a value by itself", token, f"use {_VARIABLE_LIST}"
            )
        attribute = (
            str(attribute_token.value)
            if attribute_token.kind is _TokenKind.STRING
            else attribute_token.text
        )
        if attribute.startswith("_"):
            raise self.error(
                f"cronworkflow.{attribute} is not allowed",
                attribute_token,
                'names starting with "_" are never accessible',
            )
        if attribute not in _VARIABLES:
            close = difflib.get_close_matches(attribute, _VARIABLES, n=1)
            guess = f" (did you mean cronworkflow.{close[0]}?)" if close else ""
            raise self.error(
                f'unknown variable "cronworkflow.{attribute}"{guess}',
                attribute_token,
                f"the variables are {_VARIABLE_LIST}",
            )
        node = ast.Subscript(
            value=ast.Name(id="cronworkflow", ctx=ast.Load()),
            slice=ast.Constant(value=attribute),
            ctx=ast.Load(),
        )
        return self.make(node, _VARIABLES[attribute][1], token)

    def list_literal(self, opening: _Token) -> _Typed:
        elements: list[_Typed] = []
        while not self.at("]"):
            elements.append(self.expression(0))
            if self.at(","):
                self.next()
            elif not self.at("]"):
                raise self.unexpected(self.peek(), '"," or "]"')
        self.next()
        node = ast.List(elts=[element.node for element in elements], ctx=ast.Load())
        return self.make(node, _Kind.LIST, opening, *elements)

    def postfix(self, typed: _Typed) -> _Typed:
        while True:
            if self.at("."):
                token = self.next()
                member = self.next()
                if member.kind is not _TokenKind.NAME:
                    raise self.unexpected(member, "a name after .")
                if member.text.startswith("_"):
                    raise self.error(
                        f".{member.text} is not allowed",
                        member,
                        'names starting with "_" are never accessible',
                    )
                if self.at("("):
                    typed = self.method(typed, member)
                elif member.text in _DURATION_METHODS and typed.kind is _Kind.DURATION:
                    raise self.error(
                        f"{member.text} is a method", member, f"write .{member.text}()"
                    )
                else:
                    typed = self.member(typed, token, ast.Constant(value=member.text))
            elif self.at("["):
                token = self.next()
                key = self.expression(0)
                self.expect("]")
                typed = self.member(typed, token, key.node, key)
            elif self.at("("):
                raise self.error(
                    "only functions can be called", self.peek(), "the only function is now()"
                )
            else:
                return typed

    def member(self, typed: _Typed, token: _Token, key: ast.expr, *key_typed: _Typed) -> _Typed:
        """``a.b`` or ``a[k]``: both read a key of a map."""
        if typed.kind not in (_Kind.MAP, _Kind.ANY):
            raise self.error(
                f"{typed.kind.value} has no keys",
                token,
                "only maps (cronworkflow.labels, cronworkflow.annotations) can be indexed",
            )
        if key_typed and key_typed[0].kind not in (_Kind.STRING, _Kind.ANY):
            raise self.error(f"map keys are strings, got {key_typed[0].kind.value}", token)
        kind = _Kind.STRING if typed.kind is _Kind.MAP else _Kind.ANY
        node = ast.Subscript(value=typed.node, slice=key, ctx=ast.Load())
        return self.make(node, kind, token, typed, *key_typed)

    def method(self, receiver: _Typed, member: _Token) -> _Typed:
        name = member.text
        if name not in _DURATION_METHODS:
            raise self.error(f"unknown method .{name}()", member, _METHODS_HINT)
        if receiver.kind is not _Kind.DURATION:
            raise self.error(
                f".{name}() applies to a duration, such as "
                f"(now() - cronworkflow.lastScheduledTime), not to {receiver.kind.value}",
                member,
            )
        self.expect("(")
        if not self.at(")"):
            raise self.error(f".{name}() takes no arguments", self.peek())
        self.next()
        function = ast.Attribute(value=receiver.node, attr=name, ctx=ast.Load())
        node = ast.Call(func=function, args=[], keywords=[])
        return self.make(node, _Kind.NUMBER, member, receiver)


# --------------------------------------------------------------------------------------------
# Lint: parts of an expression that are certain to fail when they are evaluated.
#
# One walk of the tree the parser built, each node visited once. Going down, it carries what
# is known on the path to the node (the guards of DESIGN §8: `x == nil || ...`, `x != nil &&
# ...`, `"k" in m && ...`, and the branches of `?:`); coming up, it returns what a boolean
# node's truth or falsehood proves (`_Facts`) and the value of a constant number. Nothing that
# depends on the variables is ever evaluated: constants are folded with the evaluator's own
# operators, so the lint and the run agree on what overflows. What a node proves travels up
# at most MAX_DEPTH levels, so the cost stays linear in the size of the expression.


class FindingKind(enum.Enum):
    """What :func:`lint` found; the value is how a person would name it."""

    NIL = "an unguarded nil"
    MISSING_KEY = "a missing label or annotation"
    CONSTANT = "a constant that always fails"


@dataclass(frozen=True)
class Finding:
    """A part of an expression that fails whenever it is evaluated.

    ``problem`` says which part and why it fails; ``instead`` (a sentence) what to write
    instead. Neither
    names the field: the caller knows where the expression came from.
    """

    kind: FindingKind
    problem: str
    instead: str
    until_first_run: bool = False
    """It fails until the first Workflow is spawned, which it prevents: so forever."""


_LAST_SCHEDULED_TIME: Final = "cronworkflow.lastScheduledTime"
_NOT_NIL: Final = ("not nil", "lastScheduledTime")
_MAPS: Final = {"labels": "metadata.labels", "annotations": "metadata.annotations"}
_SHOWN_LENGTH: Final = 120

_Atom = tuple[str, str]  # (_NOT_NIL) or ("labels" | "annotations", key): the key is present


class _Facts(NamedTuple):
    """What a node proves when it is true and when it is false, whether it may be nil, and
    its value when it is a constant number."""

    true: frozenset[_Atom] = frozenset()
    false: frozenset[_Atom] = frozenset()
    nilable: str | None = None  # what may be nil: the variable, or a literal nil
    number: int | float | None = None


_NOTHING: Final = _Facts()


@dataclass(frozen=True)
class _KeyRead:
    """A read of ``cronworkflow.<map>.<key>`` that no guard protects."""

    owner: str
    key: str
    read: str
    condition: str


@dataclass(frozen=True)
class _Analysis:
    """What a compiled expression is certain to do, apart from the labels it is given."""

    findings: tuple[Finding, ...]
    key_reads: tuple[_KeyRead, ...]


def lint(
    compiled: CompiledExpression,
    context: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> tuple[Finding, ...]:
    """The parts of ``compiled`` certain to fail when evaluated, with what to write instead.

    ``context`` is ``"when"`` or ``"stop"`` (the suggested nil guard differs: a ``when`` should
    run the first time, a stop expression should not stop). ``labels`` and ``annotations`` are
    the manifest's: a constant key that is not among them fails at every evaluation.
    The analysis of one source is cached; checking the keys costs a lookup each.
    """
    analysis = _analyze(compiled, context)
    findings = list(analysis.findings)
    maps = {"labels": labels, "annotations": annotations}
    for read in analysis.key_reads:
        mapping = maps[read.owner]
        if read.key not in mapping:
            findings.append(_missing_key_finding(read, mapping))
    return tuple(findings)


@lru_cache(maxsize=4096)
def _analyze(compiled: CompiledExpression, context: str) -> _Analysis:
    walker = _Lint(context)
    walker.visit(compiled._tree, compiled._tree)
    return _Analysis(tuple(walker.findings()), tuple(walker.key_reads.values()))


def _missing_key_finding(read: _KeyRead, mapping: Mapping[str, str]) -> Finding:
    keys = sorted(mapping)
    if keys:
        listed = ", ".join(json.dumps(k) for k in keys[:5])
        present = f"it has {listed}{' and more' if len(keys) > 5 else ''}"
    else:
        present = "it has none"
    quoted = json.dumps(read.key)
    owner = _MAPS[read.owner]
    return Finding(
        FindingKind.MISSING_KEY,
        f"{read.read} reads {quoted}, which {owner} does not have ({present}); reading a "
        "missing key is an error at run time, not an empty string",
        f"Add {quoted} to {owner}, or guard the read, e.g. "
        f"{quoted} in cronworkflow.{read.owner} && {read.condition}",
    )


def _is_variable(node: ast.expr, name: str) -> bool:
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "cronworkflow"
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == name
    )


def _is_nil(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _numeric(value: object) -> int | float | None:
    return value if _is_number(value) else None


class _Lint:
    """One walk over a tree; see the comment above :class:`FindingKind`."""

    def __init__(self, context: str) -> None:
        self.context = context
        self.known: dict[_Atom, int] = {}  # a multiset: guards nest and overlap
        self.nil_use: tuple[ast.expr, ast.expr, str] | None = None
        self.key_reads: dict[tuple[str, str], _KeyRead] = {}
        self.constants: dict[str, Finding] = {}

    def findings(self) -> list[Finding]:
        found: list[Finding] = []
        if self.nil_use is not None:
            found.append(self.nil_finding(*self.nil_use))
        found.extend(list(self.constants.values())[:3])
        return found

    # What is known on the way down

    def assume(self, atoms: frozenset[_Atom]) -> None:
        for atom in atoms:
            self.known[atom] = self.known.get(atom, 0) + 1

    def retract(self, atoms: frozenset[_Atom]) -> None:
        for atom in atoms:
            count = self.known[atom] - 1
            if count:
                self.known[atom] = count
            else:
                del self.known[atom]

    # The walk

    def visit(self, node: ast.expr, condition: ast.expr) -> _Facts:
        """``condition`` is the nearest enclosing operand of a boolean operator (or the whole
        expression): the part a suggested guard goes in front of."""
        if isinstance(node, ast.Constant):
            nilable = "nil" if node.value is None else None
            return _Facts(nilable=nilable, number=_numeric(node.value))
        if isinstance(node, ast.Subscript):
            return self.subscript(node, condition)
        if isinstance(node, ast.BoolOp):
            return self.bool_op(node)
        if isinstance(node, ast.IfExp):
            return self.if_exp(node, condition)
        if isinstance(node, ast.Compare):
            return self.compare(node, condition)
        if isinstance(node, ast.BinOp):
            return self.bin_op(node, condition)
        if isinstance(node, ast.UnaryOp):
            operand = self.visit(node.operand, condition)
            if isinstance(node.op, ast.Not):
                return _Facts(true=operand.false, false=operand.true)
            if operand.number is None:
                return _NOTHING
            return _Facts(number=self.fold(node, operand.number, None))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            self.visit(node.func.value, condition)
        elif isinstance(node, ast.List):
            for element in node.elts:
                self.visit(element, condition)
        return _NOTHING

    def subscript(self, node: ast.Subscript, condition: ast.expr) -> _Facts:
        if isinstance(node.value, ast.Name):  # cronworkflow.<variable>
            if _is_variable(node, "lastScheduledTime") and _NOT_NIL not in self.known:
                return _Facts(nilable=_LAST_SCHEDULED_TIME)
            return _NOTHING
        self.visit(node.value, condition)
        self.visit(node.slice, condition)
        owner = next((name for name in _MAPS if _is_variable(node.value, name)), None)
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if owner is not None and type(key) is str and (owner, key) not in self.known:
            self.key_reads.setdefault(
                (owner, key),
                _KeyRead(owner, key, _shown(node), _shown(condition, _AND + 1)),
            )
        return _NOTHING

    def bool_op(self, node: ast.BoolOp) -> _Facts:
        # a && b: b runs only where a is true, so what a's truth proves guards b; || likewise
        # with falsehood. The whole is true (for &&) when every operand is.
        conjunction = isinstance(node.op, ast.And)
        assumed: list[frozenset[_Atom]] = []
        proved: list[frozenset[_Atom]] = []
        both: list[frozenset[_Atom]] = []
        for value in node.values:
            facts = self.visit(value, value)
            guard, other = (facts.true, facts.false) if conjunction else (facts.false, facts.true)
            self.assume(guard)
            assumed.append(guard)
            proved.append(other)
            both.append(guard)
        for guard in assumed:
            self.retract(guard)
        every = frozenset().union(*both)
        some = frozenset.intersection(*proved) if proved else frozenset()
        return _Facts(true=every, false=some) if conjunction else _Facts(true=some, false=every)

    def if_exp(self, node: ast.IfExp, condition: ast.expr) -> _Facts:
        test = self.visit(node.test, node.test)
        self.assume(test.true)
        body = self.visit(node.body, condition)
        self.retract(test.true)
        self.assume(test.false)
        orelse = self.visit(node.orelse, condition)
        self.retract(test.false)
        return _Facts(
            true=(test.true | body.true) & (test.false | orelse.true),
            false=(test.true | body.false) & (test.false | orelse.false),
            nilable=body.nilable or orelse.nilable,
        )

    def compare(self, node: ast.Compare, condition: ast.expr) -> _Facts:
        left_node, right_node = node.left, node.comparators[0]
        left = self.visit(left_node, condition)
        right = self.visit(right_node, condition)
        op = node.ops[0]
        if isinstance(op, ast.Eq | ast.NotEq):
            # Equality never fails, with nil or anything else.
            tested = (_is_variable(left_node, "lastScheduledTime") and _is_nil(right_node)) or (
                _is_variable(right_node, "lastScheduledTime") and _is_nil(left_node)
            )
            if not tested:
                return _NOTHING
            atoms = frozenset({_NOT_NIL})
            return _Facts(false=atoms) if isinstance(op, ast.Eq) else _Facts(true=atoms)
        if isinstance(op, ast.In | ast.NotIn):
            owner = next((name for name in _MAPS if _is_variable(right_node, name)), None)
            key = left_node.value if isinstance(left_node, ast.Constant) else None
            if owner is None or type(key) is not str:
                return _NOTHING
            atoms = frozenset({(owner, key)})
            return _Facts(true=atoms) if isinstance(op, ast.In) else _Facts(false=atoms)
        self.check_nil(node, condition, left, right)
        return _NOTHING

    def bin_op(self, node: ast.BinOp, condition: ast.expr) -> _Facts:
        left = self.visit(node.left, condition)
        right = self.visit(node.right, condition)
        self.check_nil(node, condition, left, right)
        if left.number is not None and right.number is not None:
            return _Facts(number=self.fold(node, left.number, right.number))
        if isinstance(node.op, ast.Div | ast.Mod) and right.number == 0:
            shown = _shown(node)
            divisor = (
                "" if isinstance(node.right, ast.Constant) else f" ({_shown(node.right)} is 0)"
            )
            what = "divides" if isinstance(node.op, ast.Div) else "takes a remainder"
            self.constants.setdefault(
                shown,
                Finding(
                    FindingKind.CONSTANT,
                    f"{shown} {what} by zero{divisor}, an error at run time",
                    "Divide by a number other than 0",
                ),
            )
        return _NOTHING

    def check_nil(self, use: ast.expr, condition: ast.expr, *operands: _Facts) -> None:
        if self.nil_use is not None:
            return
        for operand in operands:
            if operand.nilable is not None:
                self.nil_use = (use, condition, operand.nilable)
                return

    def fold(
        self, node: ast.expr, left: int | float, right: int | float | None
    ) -> int | float | None:
        """The evaluator's own result for a constant node, or None (recorded) when it fails."""
        try:
            if isinstance(node, ast.UnaryOp):
                result = _OPERATORS[type(node.op)](left)
            else:
                assert isinstance(node, ast.BinOp)
                assert right is not None
                result = _OPERATORS[type(node.op)](left, right)
        except ExpressionError as error:
            shown = _shown(node)
            self.constants.setdefault(shown, self.constant_finding(node, shown, left, right, error))
            return None
        return _numeric(result)

    @staticmethod
    def constant_finding(
        node: ast.expr,
        shown: str,
        left: int | float,
        right: int | float | None,
        error: ExpressionError,
    ) -> Finding:
        exact: int | float | None = None
        if isinstance(node, ast.BinOp) and right is not None:
            folded = f"{_literal(left)} {_SPELLING[type(node.op)][0]} {_literal(right)}"
            exact_op = _EXACT.get(type(node.op))
            if exact_op is not None and type(left) is int and type(right) is int:
                exact = exact_op(left, right)
        else:
            folded = f"-{_literal(left)}"
            exact = -left if type(left) is int else None
        also = "" if folded == shown else f" (folded: {folded})"
        if exact is not None and not _INT_MIN <= exact <= _INT_MAX:
            return Finding(
                FindingKind.CONSTANT,
                f"{shown}{also} is {exact}, beyond the 64-bit integers expressions compute "
                f"with ({_INT_MIN} to {_INT_MAX}): it fails with an integer overflow at run time",
                "Use smaller numbers, or write a float (e.g. 1e19) where an approximate "
                "value will do",
            )
        return Finding(
            FindingKind.CONSTANT,
            f"{shown}{also} always fails at run time: {error}",
            "Compute the constant by hand and write its value",
        )

    def nil_finding(self, use: ast.expr, condition: ast.expr, source: str) -> Finding:
        if source != _LAST_SCHEDULED_TIME:
            return Finding(
                FindingKind.NIL,
                f"{_shown(use)} fails where a ?: gives nil: nil has no arithmetic and no order",
                "Give that branch of the ?: a value of the other branch's type",
            )
        if self.context == "stop":
            guard = f"{source} != nil && {_shown(condition, _AND + 1)}"
        else:
            guard = f"{source} == nil || {_shown(condition, _OR + 1)}"
        return Finding(
            FindingKind.NIL,
            f"{_shown(use)} fails while {source} is nil, and it is nil until the first "
            "Workflow is spawned",
            f"Guard it: {guard}",
            until_first_run=True,
        )


# --------------------------------------------------------------------------------------------
# Spelling a tree back in expr-lang, for messages.

_OR: Final = 10
_AND: Final = 15
_ATOM: Final = 100
_SPELLING: Final[dict[type, tuple[str, int]]] = {
    ast.Or: ("||", _OR),
    ast.And: ("&&", _AND),
    ast.Eq: ("==", 20),
    ast.NotEq: ("!=", 20),
    ast.Lt: ("<", 20),
    ast.LtE: ("<=", 20),
    ast.Gt: (">", 20),
    ast.GtE: (">=", 20),
    ast.In: ("in", 20),
    ast.NotIn: ("not in", 20),
    ast.Add: ("+", 30),
    ast.Sub: ("-", 30),
    ast.Mult: ("*", 60),
    ast.Div: ("/", 60),
    ast.Mod: ("%", 60),
}


_EXACT: Final[dict[type, Callable[[int, int], int]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def _literal(value: int | float) -> str:
    return f"({value!r})" if value < 0 else repr(value)


def _shown(node: ast.expr, minimum: int = 0) -> str:
    """``node`` as expr-lang text, parenthesized if it binds looser than ``minimum``,
    shortened for a message."""
    text = _wrapped(node, minimum)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 3] + "..."


def _wrapped(node: ast.expr, minimum: int) -> str:
    text, precedence = _spelled(node)
    return f"({text})" if precedence < minimum else text


def _spelled(node: ast.expr) -> tuple[str, int]:
    """expr-lang text for ``node`` and how tightly it binds (precedences of :data:`_BINARY`)."""
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or type(value) is bool:
            return _render(value), _ATOM
        if type(value) is str:
            return json.dumps(value), _ATOM
        return repr(value), _ATOM  # the parser's constants are never negative
    if isinstance(node, ast.Subscript):
        base = (
            _wrapped(node.value, _ATOM) if not isinstance(node.value, ast.Name) else "cronworkflow"
        )
        key = node.slice
        if isinstance(key, ast.Constant) and type(key.value) is str and key.value.isidentifier():
            return f"{base}.{key.value}", _ATOM
        return f"{base}[{_wrapped(key, 0)}]", _ATOM
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            return f"{_wrapped(node.func.value, _ATOM)}.{node.func.attr}()", _ATOM
        return "now()", _ATOM
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return f"!{_wrapped(node.operand, _NOT_PRECEDENCE)}", _NOT_PRECEDENCE
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return f"{sign}{_wrapped(node.operand, _SIGN_PRECEDENCE + 1)}", _SIGN_PRECEDENCE
    if isinstance(node, ast.BinOp):
        symbol, precedence = _SPELLING[type(node.op)]
        left = _wrapped(node.left, precedence)
        return f"{left} {symbol} {_wrapped(node.right, precedence + 1)}", precedence
    if isinstance(node, ast.Compare):
        symbol, precedence = _SPELLING[type(node.ops[0])]
        left = _wrapped(node.left, precedence)
        return f"{left} {symbol} {_wrapped(node.comparators[0], precedence + 1)}", precedence
    if isinstance(node, ast.BoolOp):
        symbol, precedence = _SPELLING[type(node.op)]
        parts = [_wrapped(value, precedence + 1) for value in node.values]
        return f" {symbol} ".join(parts), precedence
    if isinstance(node, ast.IfExp):
        test = _wrapped(node.test, 1)
        return f"{test} ? {_wrapped(node.body, 0)} : {_wrapped(node.orelse, 0)}", 0
    if isinstance(node, ast.List):
        return "[" + ", ".join(_wrapped(element, 0) for element in node.elts) + "]", _ATOM
    return "...", _ATOM
