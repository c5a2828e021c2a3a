"""``sandbox manifests``: a Dockerfile, compose.yaml and Kubernetes manifests for a module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.cli import count_of
from sandbox.exceptions import CommandError
from sandbox.export import CONFIG_FILE
from sandbox.export.manifests import DEFAULT_REPLICAS, ManifestError, write_deployment

HELP = "write a Dockerfile, compose.yaml and k8s/ manifests for a module"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", metavar="MODULE", help="the module, as `sandbox run` takes it")
    parser.add_argument("-o", "--output", metavar="DIR", default="deploy", help="default: deploy")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"the module's config (default: {CONFIG_FILE} beside the module)",
    )
    parser.add_argument(
        "--replicas",
        type=count_of("replicas"),
        default=DEFAULT_REPLICAS,
        help=f"replicas in compose.yaml and the Deployment (default: {DEFAULT_REPLICAS})",
    )


def handle(args: argparse.Namespace) -> int:
    """Write to DIR a Dockerfile (a slim Python image running `sandbox run MODULE`), compose.yaml
    (RabbitMQ and REPLICAS replicas) and k8s/ (a Deployment with /healthz and /readyz
    probes, a ConfigMap for config.yaml, a Service for HTTP; secrets come from a Secret,
    never written). The module and config.yaml are copied to DIR, which is then the image's
    build context."""
    module = module_file(args.module)
    config = Path(args.config) if args.config else module.with_name(CONFIG_FILE)
    for path in (module, config):
        if not path.is_file():
            raise CommandError(f"{path} not found (sandbox export writes both)")
    written = write_manifests(module, config, Path(args.output), args.replicas)
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def module_file(spec: str) -> Path:
    """The file of ``services``, ``pkg.services`` or ``services.py``."""
    if spec.endswith(".py"):
        return Path(spec)
    return Path(*spec.split(".")).with_suffix(".py")


def write_manifests(module: Path, config: Path, directory: Path, replicas: int) -> list[Path]:
    """:func:`write_deployment`, its errors one line, its warnings on stderr."""
    try:
        written, warnings = write_deployment(module, config, directory, replicas)
    except ManifestError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {directory}: {exc.strerror or exc}") from None
    for warning in warnings:
        print(f"sandbox: warning: {warning}", file=sys.stderr)
    return written
