"""The one shape of this project's command lines: ``python -m <package> <command> [--flag value ...]``.

Each package's ``__main__`` declares a command table ``{name: Command(help, add_arguments, handler)}`` and
its ``main(argv)`` returns :func:`run` of it. A stage's config is a dataclass whose fields carry the
default, the help (``metadata={"help": ...}``) and the check (``__post_init__``); :func:`add_config` makes
each such field an option and :func:`config_from_args` builds the dataclass back from the parsed options,
so a default is declared once, in its field.

Errors: a bad argument and every error raised for bad input (:class:`UsageError`, which the packages' own
error classes extend, and the ``ValueError``, ``RuntimeError`` and ``OSError`` the libraries raise) become one
``error: <message>`` line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import operator
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, fields
from typing import NamedTuple

ERRORS = (ValueError, RuntimeError, OSError)   # what `run` answers with one error line; UsageError is a ValueError
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input, said in one line: `run` prints ``error: <message>`` and exits with code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are a :class:`UsageError` (one line, exit 2) instead of an exit."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} ({self.prog} --help lists the options)")


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int | None]


def check_positive(value, what: str = "value") -> int:
    """`value` as an int if it is a positive integer (numpy integers too), else ValueError naming `what`."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return number


def checked(check: Callable, parse: Callable = int) -> Callable[[str], object]:
    """An argparse type that parses, then validates with `check` (its message shown as is)."""

    def convert(text: str):
        try:
            return check(parse(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


positive_int = checked(check_positive)
positive_int.__name__ = "positive_int"


def option_fields(config) -> list[Field]:
    """The fields of a config dataclass that are command-line options (those with a help text)."""
    return [f for f in fields(config) if "help" in f.metadata]


def field_default(config, name: str):
    """The declared default of one field of a config dataclass."""
    (f,) = [f for f in fields(config) if f.name == name]
    return f.default if f.default is not MISSING else f.default_factory()


def flag_of(f: Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def shown(value) -> str:
    """A default as the help and `make help` show it."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def add_config(parser: argparse.ArgumentParser, config) -> None:
    """One option per field of the dataclass `config` that has a help text: the flag (``--name-with-dashes``,
    or metadata ``flag``), the type (metadata ``type``, else the default's), the default,
    ``choices``/``metavar``, and the help with its default (metadata ``shown``, else the value; ``shown`` ''
    shows none) all come from the field."""
    for f in option_fields(config):
        meta, default = f.metadata, field_default(config, f.name)
        default_shown = meta.get("shown", shown(default))   # '' : no default to show (a choice among options)
        kwargs = {"dest": f.name, "default": default,
                  "type": meta.get("type") or (type(default) if default is not None else str),
                  "help": (meta["help"] + (f" (default: {default_shown})" if default_shown else "")).replace("%", "%%")}
        kwargs.update({key: meta[key] for key in ("choices", "metavar") if key in meta})
        parser.add_argument(flag_of(f), **kwargs)


def config_from_args(config, args: argparse.Namespace, **values):
    """The dataclass `config` from parsed options (its ``__post_init__`` checks run); `values` set fields
    that are not options."""
    return config(**{f.name: getattr(args, f.name) for f in option_fields(config)}, **values)


def build_parser(prog: str, description: str, table: Mapping[str, Command]) -> Parser:
    parser = Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(table) + "}")
    for name, command in table.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def error_line(err: BaseException) -> str:
    return "error: " + " ".join(str(err).split())


def run(parser: argparse.ArgumentParser, table: Mapping[str, Command], argv: list[str] | None = None) -> int:
    """Parses `argv`, runs the command's handler and returns its exit code: 0, or 2 after one ``error:`` line."""
    try:
        args = parser.parse_args(argv)
        return table[args.command].handler(args) or 0
    except ERRORS as err:
        print(error_line(err), file=sys.stderr)
        return EXIT_USAGE
