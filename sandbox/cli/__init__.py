"""The `sandbox` command line (`sandbox.cli.main`) and the config options its commands share.

The broker URI, by precedence: ``--broker URI`` or ``--broker-file PATH`` (its first line), else
the environment variable ``SANDBOX_AMQP_URI``, else the config file's ``AMQP_URI`` (which may
read ``${VAR}``); a ``--define AMQP_URI=...`` overrides them all. Every local user can read a
process's command line, so a password belongs in the file or the environment: one given on
the command line anyway is masked there at start (see :mod:`sandbox.cli.argv`).

A broker URI whose password cannot be told apart from the rest (a space, a raw ``;``, ``/``,
``?`` or ``#``, a URI that does not parse) is refused with a one-line error that does not
quote it.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sandbox.config import load_config
from sandbox.constants import AMQP_URI_CONFIG_KEY
from sandbox.exceptions import CommandError
from sandbox.utils.masking import uri_problem

BROKER_VARIABLE = "SANDBOX_AMQP_URI"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--broker``, ``--broker-file`` and ``--define`` to a subcommand."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file; ${VAR} and ${VAR:default} are read from the environment",
    )
    broker = parser.add_mutually_exclusive_group()
    broker.add_argument(
        "--broker",
        metavar="URI",
        help=f"broker to use, sets AMQP_URI (default ${BROKER_VARIABLE}): memory:// or "
        "amqp://user@host:5672/vhost; a password here is seen by every local user, "
        "use --broker-file or the environment",
    )
    broker.add_argument(
        "--broker-file",
        metavar="PATH",
        help="read the broker URI from the first line of PATH (chmod 600 it)",
    )
    parser.add_argument(
        "-d",
        "--define",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set a config key, VALUE is read as YAML; may be repeated",
    )


def count_of(what: str) -> Callable[[str], int]:
    """An argparse type for a whole number of ``what`` (e.g. "processes"), at least 1."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a number of {what} >= 1, not {text!r}")
        return value

    return count


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config the command line asks for: the file, then the broker (``--broker``,
    ``--broker-file`` or ``$SANDBOX_AMQP_URI``), then ``--define``."""
    mapping = load_config(Path(args.config)) if args.config else {}
    broker = broker_uri(args)
    if broker:
        mapping[AMQP_URI_CONFIG_KEY] = broker
    for definition in args.define:
        key, value = parse_definition(definition)
        mapping[key] = value
    check_broker_uri(mapping.get(AMQP_URI_CONFIG_KEY))
    return mapping


def check_broker_uri(uri: object) -> None:
    """Refuse an AMQP_URI that is not a string, or whose password could show in a message."""
    if uri is None:
        return
    # A --define value YAML read as a mapping (at ": ") or a list would be shown in pieces.
    problem = uri_problem(uri) if isinstance(uri, str) else "must be a URI, a string"
    if problem:
        raise CommandError(f"{AMQP_URI_CONFIG_KEY} {problem}")


def broker_uri(args: argparse.Namespace) -> str | None:
    """The broker URI of ``--broker``, ``--broker-file`` or ``$SANDBOX_AMQP_URI``, if any."""
    if args.broker_file:
        return read_broker_file(Path(args.broker_file))
    return args.broker or os.environ.get(BROKER_VARIABLE)


def read_broker_file(path: Path) -> str:
    """The first line of ``path``, stripped; a warning when other users may read the file."""
    try:
        with path.open(encoding="utf-8") as file:
            uri = file.readline().strip()
            mode = os.fstat(file.fileno()).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CommandError(f"cannot read --broker-file {path}: {reason}") from None
    if not uri:
        raise CommandError(f"--broker-file {path}: the first line is empty")
    if os.name == "posix" and mode & stat.S_IROTH:
        warn(f"--broker-file {path} is readable by every local user: chmod o-r it")
    return uri


def warn(message: str) -> None:
    """Print a one-line warning of the command line, before logging is set up."""
    print(f"sandbox: warning: {message}", file=sys.stderr, flush=True)


def parse_definition(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` and read VALUE as YAML, so ``max_workers=4`` is an int."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CommandError(f"--define expects KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        # Not the value itself: it may hold a password.
        raise CommandError(f"--define {key}: the value is not valid YAML: {_where(exc)}") from None


def _where(exc: yaml.YAMLError) -> str:
    """What YAML found wrong and at which character of the value, without quoting it."""
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "cannot read it"
    mark = getattr(exc, "problem_mark", None)
    position = mark.index if mark is not None else getattr(exc, "position", None)
    return problem if position is None else f"{problem} (character {position + 1})"
