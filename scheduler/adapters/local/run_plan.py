"""What a local run executes: the entrypoint's command line, with Argo's placeholders filled in
so that no value is ever read as code.

The local executor substitutes ``{{workflow.name}}``, ``{{workflow.namespace}}``,
``{{workflow.scheduledTime}}``, ``{{workflow.parameters.NAME}}`` (``spec.workflowSpec.arguments.
parameters``), ``{{workflow.labels.KEY}}`` and ``{{workflow.annotations.KEY}}`` (the labels and
annotations of the spawned Workflow, :mod:`policies.workflow`). Labels, annotations and
parameters carry arbitrary text, and Argo substitutes textually: ``sh -c "echo {{...}}"`` would
run whatever the value says. Argo does that inside a pod; here it would be the service's host
and user. So where a value lands decides how it is inserted:

* **shell code** (the operand that ``-c`` makes a command string, for sh, bash, dash, zsh, ksh,
  ash, mksh, directly, through ``env`` or as ``busybox sh``/``toybox sh``; and a ``script``
  template's ``source`` run by such a shell): a value made only of characters no shell treats
  specially (``[A-Za-z0-9_@%+=:,./-]``: every valid name, the scheduled time) goes in unchanged;
  any other is inserted as one shell word with :func:`shlex.quote`, closing and reopening the
  surrounding single or double quotes when the placeholder is written inside them. Where
  quoting cannot make a value inert (a here-document, a comment, after a backslash, inside
  backquotes, ``${...}`` or ``$'...'``, or after a ``case`` inside ``$(...)`` where this reader
  could lose track) such a value is refused: the run ends ``Error``.
* **other interpreters' code** (a ``script`` source run by python, node or any command that is
  not one of those shells, and the code operand of ``python -c``, ``node -e``, ``perl -e``,
  ``ruby -e``, ``php -r``, ``lua -e``, ``Rscript -e``, ``fish``/``csh``/``tcsh -c``): a value is
  inserted only when made of those same safe characters; otherwise the run ends ``Error``,
  naming the placeholder and saying to pass the value through the template's ``env``.
* **any other argv element**: the value, literally, inside that one element; argv goes to
  ``exec`` without a shell.
* **env values**: literally (data, not code).

The command is classified on the command line as ``exec`` will see it (values substituted
literally), so that a value cannot turn an argument into ``-c`` unseen. The reader of shell
quoting is deliberately small; where it is unsure it refuses rather than guesses.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policies.spec import CronWorkflowSpec
from policies.workflow import rfc3339, workflow_annotations, workflow_labels, workflow_name

__all__ = ["SAFE_CHARACTERS", "SHELLS", "LocalRun", "Unrunnable", "plan_run"]

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"})
"""POSIX-like shells: their ``-c`` operand and their scripts get shell-quoted values."""
_MULTICALL = frozenset({"busybox", "toybox"})
_CODE_FLAGS: Mapping[str, tuple[str, frozenset[str]]] = {
    # basename: (single-letter flags whose argument is code, long flags that are)
    "python": ("c", frozenset()),
    "node": ("ep", frozenset({"--eval", "--print"})),
    "nodejs": ("ep", frozenset({"--eval", "--print"})),
    "bun": ("ep", frozenset({"--eval", "--print"})),
    "perl": ("eE", frozenset()),
    "ruby": ("e", frozenset()),
    "php": ("r", frozenset()),
    "lua": ("e", frozenset()),
    "luajit": ("e", frozenset()),
    "Rscript": ("e", frozenset()),
    "fish": ("c", frozenset({"--command"})),
    "csh": ("c", frozenset()),
    "tcsh": ("c", frozenset()),
}
SAFE_CHARACTERS = "A-Za-z0-9_@%+=:,./-"
_SAFE = re.compile(f"[{SAFE_CHARACTERS}]*")
_PLACEHOLDER = re.compile(
    r"\{\{\s*(workflow\.(?:name|namespace|scheduledTime"
    r"|(?:parameters|labels|annotations)\.[A-Za-z0-9_./-]+))\s*\}\}"
)


class Unrunnable(Exception):
    """The entrypoint cannot be run locally; the run ends ``Error`` with this message."""


@dataclass(frozen=True)
class LocalRun:
    """What to execute for one Workflow: a command line, the template's environment (the
    executor adds its base environment), the deadline, the script, and how values that needed
    care were inserted (``notes``, written to the run's log)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    timeout: float
    script: str | None = None
    notes: tuple[str, ...] = ()


def plan_run(spec: CronWorkflowSpec, scheduled_at: datetime, default_timeout: float) -> LocalRun:
    """The command line of the Workflow's entrypoint; raises :class:`Unrunnable`."""
    workflow_spec: Mapping[str, Any] = spec.workflow_spec or {}
    entrypoint = workflow_spec.get("entrypoint")
    templates = workflow_spec.get("templates") or []
    if not isinstance(templates, Sequence) or isinstance(templates, str):
        templates = []
    template = next(
        (t for t in templates if isinstance(t, Mapping) and t.get("name") == entrypoint), None
    )
    if template is None:
        raise Unrunnable(
            f"entrypoint {entrypoint!r} is not a template of this Workflow (workflowTemplateRef "
            "is not supported by the local executor)"
        )
    values = _values(spec, scheduled_at, workflow_spec)
    deadline = workflow_spec.get("activeDeadlineSeconds") or template.get("activeDeadlineSeconds")
    timeout = float(deadline) if isinstance(deadline, int | float) and deadline > 0 else None
    if "container" in template:
        body = _mapping(template["container"])
        raw_argv = [*_strings(body.get("command")), *_strings(body.get("args"))]
        source = None
    elif "script" in template:
        body = _mapping(template["script"])
        raw_argv = [*(_strings(body.get("command")) or ["sh"]), *_strings(body.get("args"))]
        source = str(body.get("source", ""))
    else:
        kinds = ", ".join(sorted(k for k in template if k not in ("name", "inputs", "outputs")))
        raise Unrunnable(
            f"template {entrypoint!r} is not a container or script template ({kinds}); the "
            "local executor runs only those: use Kubernetes mode for the rest"
        )
    if not raw_argv:
        raise Unrunnable(
            f"template {entrypoint!r} has no command: the local executor does not know the "
            "image's entrypoint; set command (and args)"
        )
    notes: list[str] = []
    literal = [_substitute(a, values, _literal) for a in raw_argv]
    runner, code_at = _code_element(literal)
    argv = list(literal)
    if code_at is not None:
        where = f"argv[{code_at}] (the code of {runner})"
        if runner in SHELLS:
            argv[code_at] = _substitute_shell(raw_argv[code_at], values, where, notes)
        else:
            argv[code_at] = _substitute(raw_argv[code_at], values, _in_code(where, runner))
    script = None
    if source is not None:
        runner = _command_name(literal)
        where = f"the script source (run by {runner})"
        if runner in SHELLS:
            script = _substitute_shell(source, values, where, notes)
        else:
            script = _substitute(source, values, _in_code(where, runner))
    env = {
        str(item["name"]): _substitute(str(item.get("value", "")), values, _literal)
        for item in _items(body.get("env"))
        if "name" in item and "valueFrom" not in item
    }
    return LocalRun(
        argv=tuple(argv),
        env=env,
        timeout=timeout or default_timeout,
        script=script,
        notes=tuple(dict.fromkeys(notes)),
    )


# -- values ------------------------------------------------------------------------------------


def _values(
    spec: CronWorkflowSpec, scheduled_at: datetime, workflow_spec: Mapping[str, Any]
) -> dict[str, str]:
    values = {
        "workflow.name": workflow_name(spec.name, scheduled_at),
        "workflow.namespace": spec.namespace,
        "workflow.scheduledTime": rfc3339(scheduled_at),
    }
    for key, value in workflow_labels(spec).items():
        values[f"workflow.labels.{key}"] = value
    for key, value in workflow_annotations(spec, scheduled_at).items():
        values[f"workflow.annotations.{key}"] = value
    arguments = _mapping(workflow_spec.get("arguments"))
    for parameter in _items(arguments.get("parameters")):
        name, given = parameter.get("name"), parameter.get("value")
        if isinstance(name, str) and given is not None:
            values[f"workflow.parameters.{name}"] = _text(given)
    return values


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return []
    return [_text(item) for item in value]


def _items(value: object) -> list[Mapping[str, Any]]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _safe(value: str) -> bool:
    return _SAFE.fullmatch(value) is not None


# -- substitution ------------------------------------------------------------------------------


def _literal(_placeholder: str, value: str) -> str:
    return value


def _substitute(text: str, values: Mapping[str, str], insert: Callable[[str, str], str]) -> str:
    """``text`` with each known placeholder replaced by ``insert(placeholder, value)``;
    unknown ones are left as written."""

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None else insert(match.group(0), value)

    return _PLACEHOLDER.sub(replace, text)


def _env_hint(placeholder: str) -> str:
    return (
        f"pass it through the template's env instead (env: [{{name: VALUE, value: "
        f"'{placeholder}'}}]) and read the variable VALUE in the code"
    )


def _in_code(where: str, runner: str) -> Callable[[str, str], str]:
    """A value in another interpreter's code: inserted only when made of safe characters."""

    def insert(placeholder: str, value: str) -> str:
        if _safe(value):
            return value
        raise Unrunnable(
            f"{placeholder} in {where}: its value {_shorten(value)} has characters a {runner} "
            f"program could read as code (only {SAFE_CHARACTERS} are inserted into code); "
            + _env_hint(placeholder)
        )

    return insert


def _substitute_shell(text: str, values: Mapping[str, str], where: str, notes: list[str]) -> str:
    """``text`` is shell code: each value goes in as one plain word (or is refused)."""
    reader = _ShellReader()
    out: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        before = text[position : match.start()]
        reader.feed(before)
        out.append(before)
        position = match.end()
        value = values.get(match.group(1))
        if value is None:
            reader.feed(match.group(0))
            out.append(match.group(0))
        else:
            out.append(_insert_shell(reader, match.group(0), value, where, notes))
    out.append(text[position:])
    return "".join(out)


def _insert_shell(
    reader: _ShellReader, placeholder: str, value: str, where: str, notes: list[str]
) -> str:
    context = reader.context()
    if not value:
        # Nothing to read as code anywhere; unquoted, an empty word rather than none.
        if context != "unquoted":
            return ""
        reader.feed("x")
        return "''"
    if _safe(value):
        reader.feed(value)  # safe characters change no quoting, but end words and lines
        return value
    if context not in ("unquoted", "single", "double"):
        raise Unrunnable(
            f"{placeholder} in {where}: its value {_shorten(value)} has characters a shell "
            f"could read as code, and the placeholder stands {context}, where quoting cannot "
            "keep it a plain word; " + _env_hint(placeholder) + ' (as "$VALUE")'
        )
    reader.feed("x")  # one word part, whatever the value
    quoted = shlex.quote(value)
    notes.append(f"{placeholder} in {where}: inserted shell-quoted (its value is not a plain word)")
    if context == "single":
        return f"'{quoted}'"
    if context == "double":
        return f'"{quoted}"'
    return quoted


def _shorten(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


# -- which element is code ---------------------------------------------------------------------


def _basename(word: str) -> str:
    name = word.rsplit("/", 1)[-1]
    if re.fullmatch(r"python[0-9.]*|pypy[0-9.]*", name):
        return "python"
    return name


def _command_start(argv: Sequence[str]) -> tuple[int, int | None]:
    """Where the real command is, past ``env`` (its options and assignments) and a multi-call
    binary's applet name (``busybox sh``); or, for ``env -S STRING`` (env splits that string
    into a command line itself), ``len(argv)`` and where that string is."""
    i = 0
    while i < len(argv) and _basename(argv[i]) == "env":
        i += 1
        while i < len(argv):
            word = argv[i]
            split_at = _split_string_operand(word, i)
            if split_at is not None:
                return len(argv), split_at if split_at < len(argv) else None
            if word in ("-u", "-C", "--unset", "--chdir"):
                i += 2
            elif word.startswith("-") or ("=" in word and not word.startswith("=")):
                i += 1
            else:
                break
    if i + 1 < len(argv) and _basename(argv[i]) in _MULTICALL:
        i += 1
    return i, None


def _split_string_operand(word: str, i: int) -> int | None:
    if word in ("-S", "--split-string"):
        return i + 1
    if word.startswith("--split-string="):
        return i
    if word.startswith("-") and not word.startswith("--") and "S" in word:
        return i + 1 if word.endswith("S") else i
    return None


def _command_name(argv: Sequence[str]) -> str:
    start, _ = _command_start(argv)
    return _basename(argv[start]) if start < len(argv) else "env -S"


def _code_element(argv: Sequence[str]) -> tuple[str, int | None]:
    """The command's name and which element of ``argv`` it reads as code (None: none)."""
    start, split_at = _command_start(argv)
    if start >= len(argv):
        return "env -S", split_at
    name = _basename(argv[start])
    args = argv[start + 1 :]
    if name in SHELLS:
        found = _shell_code_operand(args)
    elif name in _CODE_FLAGS:
        found = _flag_code_operand(args, *_CODE_FLAGS[name])
    else:
        found = None
    return name, None if found is None else start + 1 + found


def _shell_code_operand(args: Sequence[str]) -> int | None:
    """POSIX ``sh [options] -c [options] command_string [name [argument...]]``: the first
    operand after the options, when ``c`` is among them."""
    command_string = False
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if len(word) < 2 or word[0] not in "-+":
            break
        if word.startswith("--"):  # bash's long options; two take an argument
            i += 2 if word in ("--rcfile", "--init-file") else 1
            continue
        letters = word[1:]
        if word[0] == "-" and "c" in letters:
            command_string = True
        i += 1 + sum(1 for letter in letters if letter in "oO")
    return i if command_string and i < len(args) else None


def _flag_code_operand(args: Sequence[str], letters: str, long: frozenset[str]) -> int | None:
    for i, word in enumerate(args):
        if word == "--" or not word.startswith("-") or word == "-":
            return None
        if word in long:
            return i + 1 if i + 1 < len(args) else None
        if word.startswith("--"):
            if any(word.startswith(f"{flag}=") for flag in long):
                return i
            continue
        for position, letter in enumerate(word[1:], start=1):
            if letter in letters:
                # `-c code` or the code attached, `-c'print(1)'`
                if position == len(word) - 1:
                    return i + 1 if i + 1 < len(args) else None
                return i
    return None


# -- reading shell quoting ---------------------------------------------------------------------

_BREAKS = frozenset(" \t\n;&|()<>")


class _ShellReader:
    """Where in shell syntax the text read so far ends: unquoted, inside single or double
    quotes, or somewhere quoting cannot help (then a phrase for the message).

    It follows quotes, backslashes, ``$(...)``, ``${...}``, backquotes, ``$'...'``, comments and
    here-documents: enough for the scripts people write. It stays unsure (so values that need
    quoting are refused) from a ``case`` inside ``$(...)`` on, whose patterns' unbalanced ``)``
    could end the substitution where this reader would not see it end."""

    def __init__(self) -> None:
        # Innermost last: top, cmd ($(...), with its depth of plain parentheses), param
        # (${...}, with its depth of braces), single, double, backquote, ansi ($'...').
        self._frames: list[list[Any]] = [["top", 0]]
        self._last = ""  # the previous character: $( ${ $' << are two characters
        self._escaped = False
        self._comment = False
        self._word_start = True
        self._word = ""  # the unquoted word being read inside $(...), to see a case
        self._unsure = False
        self._pending: list[tuple[str, bool]] = []  # here-documents to read: (delimiter, -)
        self._body: tuple[str, bool] | None = None  # the here-document being read
        self._line = ""
        self._delimiter: list[str] | None = None  # the word after << being read
        self._delimiter_first = False
        self._delimiter_strip = False
        self._delimiter_quote = ""

    def context(self) -> str:
        """``unquoted``, ``single``, ``double``, or where the text stands (for a message)."""
        kind = self._frames[-1][0]
        if self._unsure:
            return "after a case inside $(...)"
        if self._body is not None:
            return "in a here-document"
        if self._delimiter is not None:
            return "in a here-document's delimiter"
        if self._comment:
            return "in a comment"
        if self._escaped:
            return "after a backslash"
        return {
            "top": "unquoted",
            "cmd": "unquoted",
            "single": "single",
            "double": "double",
            "param": "inside ${...}",
            "backquote": "inside backquotes",
            "ansi": "inside $'...'",
        }[kind]

    def feed(self, text: str) -> None:
        for char in text:
            escaped = self._escaped
            self._char(char)
            # An escaped character starts nothing with the next one (\$( is no substitution).
            self._last = "" if escaped and not self._escaped else char

    def _char(self, char: str) -> None:
        if self._body is not None:
            self._heredoc_char(char)
            return
        if self._delimiter is not None and self._delimiter_char(char):
            return
        kind = self._frames[-1][0]
        if self._escaped:
            self._escaped = False
            self._word_start = False
            if char == "\n" and kind in ("top", "cmd", "param"):
                self._word_start = True  # a line continuation
            return
        if kind == "single":
            if char == "'":
                self._frames.pop()
        elif kind in ("ansi", "backquote"):
            if char == "\\":
                self._escaped = True
            elif char == ("'" if kind == "ansi" else "`"):
                self._frames.pop()
        elif self._comment:
            if char == "\n":
                self._comment = False
                self._newline()
        elif kind == "double":
            self._double_char(char)
        else:
            self._unquoted_char(char)

    def _double_char(self, char: str) -> None:
        if char == "\\":
            self._escaped = True
        elif char == '"':
            self._frames.pop()
        elif char == "`":
            self._frames.append(["backquote", 0])
        elif char == "(" and self._last == "$":
            self._frames.append(["cmd", 0])
        elif char == "{" and self._last == "$":
            self._frames.append(["param", 0])

    def _unquoted_char(self, char: str) -> None:
        frame = self._frames[-1]
        kind = frame[0]
        word_start, self._word_start = self._word_start, char in _BREAKS
        if kind == "cmd":
            if char in _BREAKS:
                if self._word == "case":
                    self._unsure = True
                self._word = ""
            elif len(self._word) < 5:
                self._word += char
        if kind == "param" and char == "}":
            if frame[1] == 0:
                self._frames.pop()
            else:
                frame[1] -= 1
        elif char == "\\":
            self._escaped = True
        elif char == "'":
            self._frames.append(["ansi" if self._last == "$" else "single", 0])
        elif char == '"':
            self._frames.append(["double", 0])
        elif char == "`":
            self._frames.append(["backquote", 0])
        elif char == "#" and word_start and kind != "param":
            self._comment = True
        elif char == "(" and self._last == "$":
            self._frames.append(["cmd", 0])
        elif char == "{" and self._last == "$":
            self._frames.append(["param", 0])
        elif char in "({" and kind == ("cmd" if char == "(" else "param"):
            frame[1] += 1
        elif char == ")" and kind == "cmd":
            if frame[1] == 0:
                self._frames.pop()
            else:
                frame[1] -= 1
        elif char == "<" and self._last == "<" and kind != "param":
            self._delimiter = []
            self._delimiter_first = True
            self._delimiter_strip = False
            self._delimiter_quote = ""
        elif char == "\n":
            self._newline()

    def _delimiter_char(self, char: str) -> bool:
        """A character of the word after ``<<``; False when it ends the word (then it is read
        as usual)."""
        assert self._delimiter is not None
        first, self._delimiter_first = self._delimiter_first, False
        if first and char == "<":  # <<< : a here-string, not a here-document
            self._delimiter = None
            return True
        if first and char == "-":
            self._delimiter_strip = True
            return True
        if self._delimiter_quote:
            if char == self._delimiter_quote:
                self._delimiter_quote = ""
            else:
                self._delimiter.append(char)
            return True
        if char in "'\"":
            self._delimiter_quote = char
            return True
        if char == "\\":
            return True
        if char in " \t" and not self._delimiter:
            return True
        if char in _BREAKS:
            word = "".join(self._delimiter)
            self._delimiter = None
            if word:
                self._pending.append((word, self._delimiter_strip))
            return False
        self._delimiter.append(char)
        return True

    def _newline(self) -> None:
        self._word_start = True
        if self._pending:
            self._body = self._pending.pop(0)
            self._line = ""

    def _heredoc_char(self, char: str) -> None:
        assert self._body is not None
        if char != "\n":
            self._line += char
            return
        delimiter, strip = self._body
        line = self._line.lstrip("\t") if strip else self._line
        self._line = ""
        if line == delimiter:
            self._body = self._pending.pop(0) if self._pending else None
