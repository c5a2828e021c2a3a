"""Helpers for tests that look inside containers and runners."""

from __future__ import annotations

import socket
from typing import Any

from sandbox.containers import ServiceContainer
from sandbox.runners import ServiceRunner


def get_extension(container: ServiceContainer, extension_cls: type, **match_attrs: Any):
    """The first extension of ``container`` that is an ``extension_cls`` with ``match_attrs``."""
    for extension in container.extensions:
        if isinstance(extension, extension_cls) and all(
            getattr(extension, key, object()) == value for key, value in match_attrs.items()
        ):
            return extension
    return None


def get_container(runner: ServiceRunner, service_cls: type) -> ServiceContainer | None:
    for container in runner.containers:
        if container.service_cls is service_cls:
            return container
    return None


def find_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
