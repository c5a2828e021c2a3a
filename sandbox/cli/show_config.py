"""``sandbox show-config``: print the config a command line resolves to, secrets masked."""

from __future__ import annotations

import argparse

import yaml

from sandbox.cli import add_config_arguments, config_from_args
from sandbox.config import ConfigDict
from sandbox.utils import mask_secrets


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show-config",
        help="print the resolved config as YAML",
        description="Print the config that `sandbox run` would use, with secrets masked.",
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=show_config)


def show_config(args: argparse.Namespace) -> int:
    resolved = ConfigDict()
    resolved.setup(config_from_args(args))
    print(yaml.safe_dump(mask_secrets(resolved), default_flow_style=False, sort_keys=False), end="")
    return 0
