"""What the commands share about their arguments: value types, the options several commands
take, and the ``CRONWF_`` environment defaults.

Types turn a bad value into argparse's usage error (exit 2, no traceback), worded to say what
to write instead. Settings: a flag's environment variable is read by its own command only,
once parsed (:class:`FromEnvironment`), so a bad `serve` setting cannot break `lint`. A default
that only an adapter knows (how many Workflows are created at a time, how many local runs
wait) is a callable, asked when its command is parsed and when its help is shown, so that
building the parser imports no adapter.

The command line is the one place that reads the real clock (:func:`now`): `next` starts from
now unless `--from` is given, and `lint` judges "fires in the next 5 years" from now.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from scheduler.core.simulate import SimulationError, parse_duration

__all__ = [
    "FromEnvironment",
    "Handler",
    "Parser",
    "add_boolean_flag",
    "add_output_option",
    "add_paths_argument",
    "boolean",
    "from_env",
    "now",
    "parse_rfc3339",
    "port",
    "positive_count",
    "redis_url",
    "seconds",
    "waiting_count",
]

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

MAX_COUNT = 10_000
MAX_WAITING_LOCAL_RUNS = 1_000_000


def now() -> datetime.datetime:
    """The wall clock, for `lint`'s warnings about the years ahead and `next` without --from."""
    return datetime.datetime.now(datetime.UTC)


def parse_rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time with an explicit offset (`Z` or `±hh:mm`), as an aware datetime."""
    try:
        parsed = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time; write e.g. 2026-03-08T09:30:00Z "
            "or 2026-03-08T01:30:00-08:00"
        ) from None
    if parsed.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add one, e.g. {parsed.isoformat()}Z "
            f"or {parsed.isoformat()}+01:00"
        )
    return parsed


def positive_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_COUNT}, got {count}")
    return count


def waiting_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= count <= MAX_WAITING_LOCAL_RUNS:
        raise argparse.ArgumentTypeError(
            f"must be between 0 and {MAX_WAITING_LOCAL_RUNS}, got {count}"
        )
    return count


def boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: write true or false")


def redis_url(text: str) -> str:
    # Checked by the Redis adapter's own rules; imported here, when a URL is given, so that
    # commands without one never load the Redis client.
    from scheduler.adapters.redis.history import RedisURLError, valid_redis_url  # noqa: PLC0415

    try:
        return valid_redis_url(text)
    except RedisURLError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def seconds(text: str) -> float:
    try:
        value = parse_duration(text).total_seconds()
    except SimulationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {number}")
    return number


def add_output_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )


def add_paths_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="CronWorkflow manifest files or folders (searched for *.yaml and *.yml)",
    )


# --- Argo's boolean flags ---------------------------------------------------------------------

# Go's strconv.ParseBool, which Argo's boolean flags use.
_TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
_FALSE_WORDS = ("0", "f", "F", "FALSE", "false", "False")


class _BooleanFlag(argparse.Action):
    """A boolean flag written as Argo's (Go's pflag) are: `--strict` alone means true, and a
    value is given only with `=` (`--strict=false`), so `--strict a.yaml` still lints a.yaml.

    argparse has no option whose value is optional only after `=`: the flag takes no value,
    and each accepted `--strict=<word>` is an option string of its own (argparse matches the
    whole argument before splitting it at `=`), hidden from the help. Any other value is a
    usage error, exit 2, which `add_boolean_flag` words.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        word = (option_string or "").partition("=")[2]
        setattr(namespace, self.dest, word not in _FALSE_WORDS)


def add_boolean_flag(
    command: argparse.ArgumentParser, flag: str, *, default: bool, help: str
) -> None:
    dest = flag.lstrip("-").replace("-", "_")
    command.add_argument(flag, action=_BooleanFlag, dest=dest, default=default, help=help)
    command.add_argument(
        *(f"{flag}={word}" for word in _TRUE_WORDS + _FALSE_WORDS),
        action=_BooleanFlag,
        dest=dest,
        default=default,
        help=argparse.SUPPRESS,
    )
    argparse_error = command.error
    ignored = f"argument {flag}: ignored explicit argument "

    def error(message: str) -> NoReturn:
        # argparse's words for `--strict=maybe` ("ignored explicit argument") say nothing
        # of what to write instead.
        if message.startswith(ignored):
            value = message.removeprefix(ignored)
            message = (
                f"argument {flag}: {value} is not true or false; write {flag}, {flag}=true "
                f"or {flag}=false"
            )
        argparse_error(message)

    command.error = error  # type: ignore[method-assign]


# --- CRONWF_ environment defaults -------------------------------------------------------------


@dataclass(frozen=True)
class FromEnvironment:
    """A flag's default, read from ``CRONWF_<name>`` only once its own command is parsed.

    Reading every command's variables when the parser is built made ``CRONWF_PORT=abc
    cronwf lint ...`` end in a traceback. Now a subcommand's parser resolves the defaults of
    its own flags only (:class:`Parser`), converted by the flag's ``type`` (or ``parse``),
    and a bad value is a usage error naming the variable. An empty variable counts as unset.
    """

    name: str
    fallback: str | Callable[[], str | None] | None = None
    """Used when the variable is unset; a callable is asked then (not at start-up)."""
    parse: Callable[[str], Any] | None = None
    """Converts the text instead of the flag's ``type`` (for flags that take no value)."""

    @property
    def variable(self) -> str:
        return f"CRONWF_{self.name}"

    def built_in(self) -> str | None:
        """The text used when the variable is unset (a callable fallback is asked now)."""
        return self.fallback() if callable(self.fallback) else self.fallback

    def __str__(self) -> str:
        """The built-in default, as a help text's ``%(default)s`` shows it."""
        return self.built_in() or ""


def from_env(
    name: str,
    default: str | Callable[[], str | None] | None = None,
    *,
    parse: Callable[[str], Any] | None = None,
) -> FromEnvironment:
    """The ``CRONWF_<NAME>`` environment variable behind a flag (flags win), as a default."""
    return FromEnvironment(name, default, parse)


class Parser(argparse.ArgumentParser):
    """Resolves the environment defaults of its own arguments after parsing them."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if isinstance(value, FromEnvironment):
                setattr(parsed, action.dest, self._resolve(action, value))
        return parsed, extras

    def _resolve(self, action: argparse.Action, default: FromEnvironment) -> Any:
        text = os.environ.get(default.variable) or None
        source: str | None = default.variable
        if text is None:
            fallback = default.built_in()
            if fallback is None:
                return None
            text, source = fallback, None
        convert: Callable[[str], Any] = default.parse or action.type or str  # type: ignore[assignment]
        try:
            value = convert(text)
        except argparse.ArgumentTypeError as error:
            problem = str(error)
        except (TypeError, ValueError):
            problem = f"invalid value {text!r}"
        else:
            if action.choices is None or value in action.choices:
                return value
            choices = ", ".join(repr(choice) for choice in action.choices)
            problem = f"invalid choice: {text!r} (choose from {choices})"
        if source is None:  # a built-in default that does not parse: a bug here
            raise AssertionError(f"the default of {action.dest}, {text!r}, is invalid: {problem}")
        return self.error(f"{source}: {problem}")
