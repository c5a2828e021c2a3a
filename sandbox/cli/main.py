"""The ``sandbox`` console script; each command is a module of ``sandbox.cli``."""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

import sandbox
from sandbox.cli import backdoor, docs, export, manifests, run, shell, show_config
from sandbox.cli.argv import hide_passwords, restore_passwords
from sandbox.exceptions import CommandError, ConfigurationError
from sandbox.utils.masking import mask_log_records, sanitize_url

# Each command is a module, named for it (``show_config`` is ``show-config``), with HELP (one
# line), ``add_arguments(parser)`` and ``handle(args) -> exit code``, whose docstring is the
# command's description.
COMMANDS = (run, shell, backdoor, show_config, export, manifests, docs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Nothing it prints or logs shows the password of a URI.
    """
    if argv is None:
        hide_passwords(sys.argv[1:])
        argv = restore_passwords(sys.argv[1:])
    mask_log_records()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors, already printed
        return int(exc.code or 0)
    args.command_line = list(argv)  # for commands that start copies of themselves
    try:
        return args.handler(args)
    except (CommandError, ConfigurationError) as exc:
        print(f"{parser.prog}: error: {sanitize_url(str(exc))}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = MaskingArgumentParser(
        prog="sandbox", description="Run and inspect Nameko-style services."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        add_command(subparsers, command)
    return parser


def add_command(subparsers: argparse._SubParsersAction, command: ModuleType) -> None:
    name = command.__name__.rpartition(".")[2].replace("_", "-")
    parser = subparsers.add_parser(
        name, help=command.HELP, description=inspect.getdoc(command.handle)
    )
    command.add_arguments(parser)
    parser.set_defaults(handler=command.handle)


class MaskingArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (which quote the argument) mask URI passwords;
    its subcommands' parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        super().error(sanitize_url(message))


def version() -> str:
    try:
        return importlib.metadata.version("service-sandbox")
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        return sandbox.__version__


if __name__ == "__main__":
    sys.exit(main())
