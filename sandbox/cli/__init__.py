"""The `sandbox` command line (`sandbox.cli.main`) and the config options its commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from sandbox.config import load_config
from sandbox.exceptions import CommandError


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--broker`` and ``--define`` to a subcommand."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file; ${VAR} and ${VAR:default} are read from the environment",
    )
    parser.add_argument(
        "--broker",
        metavar="URI",
        help="broker to use, sets AMQP_URI (memory:// or amqp://user:pass@host:5672/vhost)",
    )
    parser.add_argument(
        "-d",
        "--define",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set a config key, VALUE is read as YAML; may be repeated",
    )


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config the command line asks for: the file, then ``--broker``, then ``--define``."""
    mapping = load_config(Path(args.config)) if args.config else {}
    if args.broker:
        mapping["AMQP_URI"] = args.broker
    for definition in args.define:
        key, value = parse_definition(definition)
        mapping[key] = value
    return mapping


def parse_definition(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` and read VALUE as YAML, so ``max_workers=4`` is an int."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CommandError(f"--define expects KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        raise CommandError(f"--define {key}: the value is not valid YAML: {value!r}") from None
