"""``sandbox show-config``: print the config a command line resolves to, secrets masked."""

from __future__ import annotations

import argparse

import yaml

from sandbox.cli import add_config_arguments, config_from_args
from sandbox.config import ConfigDict
from sandbox.utils import mask_secrets

HELP = "print the resolved config as YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def handle(args: argparse.Namespace) -> int:
    """Print the config that `sandbox run` would use, with secrets masked."""
    resolved = ConfigDict()
    resolved.setup(config_from_args(args))
    print(yaml.safe_dump(mask_secrets(resolved), default_flow_style=False, sort_keys=False), end="")
    return 0
