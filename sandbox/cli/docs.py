"""``sandbox docs``: print or write the OpenAPI or AsyncAPI document of service classes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sandbox.cli import add_config_arguments, config_from_args
from sandbox.cli.run import load_services
from sandbox.config import config
from sandbox.docs import service_docs
from sandbox.exceptions import CommandError

HELP = "print the OpenAPI or AsyncAPI document of services"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="+", metavar="MODULE[:CLASS]")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--openapi",
        dest="kind",
        action="store_const",
        const="openapi",
        help="the @http routes, as OpenAPI 3.1 JSON",
    )
    kind.add_argument(
        "--asyncapi",
        dest="kind",
        action="store_const",
        const="asyncapi",
        help="RPC methods, events and messages, as AsyncAPI 3.0 JSON",
    )
    kind.add_argument(
        "--html",
        dest="kind",
        action="store_const",
        const="html",
        help="both, as one HTML page that needs no network",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not to stdout")
    add_config_arguments(parser)


def handle(args: argparse.Namespace) -> int:
    """Document the service classes of MODULE (or only CLASS), from their entrypoints, type hints
    and docstrings."""
    config.setup(config_from_args(args))
    documents = service_docs(load_services(args.services), config)
    if args.kind == "html":
        text = documents.page()
    else:
        text = json.dumps(getattr(documents, args.kind), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror}") from None
    return 0
