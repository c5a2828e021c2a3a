"""Text views of services: the status line under a cell, and the ``%sandbox status`` table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.notebook.http import base_url

MARKS = {"running": "●", "stopped": "○", "crashed": "✖"}


def describe_entrypoint(entrypoint: Any) -> str:
    """A short human description: ``rpc hello``, ``http GET /items/<int:id>``, ``timer 5s``."""
    describe = getattr(entrypoint, "describe", None)
    if callable(describe):
        return describe()
    kind = type(entrypoint).__name__.lower()
    if hasattr(entrypoint, "interval"):
        return f"timer {entrypoint.interval}s -> {entrypoint.method_name}"
    if hasattr(entrypoint, "url") and hasattr(entrypoint, "method"):
        return f"http {entrypoint.method} {entrypoint.url}"
    if hasattr(entrypoint, "source_service") and hasattr(entrypoint, "event_type"):
        return (
            f"event {entrypoint.source_service}.{entrypoint.event_type} -> {entrypoint.method_name}"
        )
    return f"{kind} {entrypoint.method_name}"


def describe_entrypoints(container: Any) -> list[str]:
    if container is None:
        return []
    return sorted(describe_entrypoint(e) for e in container.entrypoints)


def service_line(handle: Any, reloaded: bool = False) -> str:
    verb = "reloaded" if reloaded and handle.state == "running" else handle.state
    line = f"{MARKS.get(handle.state, '?')} {handle.name} {verb}"
    if handle.state == "crashed" and handle.error:
        line += f": {handle.error}"
    entrypoints = describe_entrypoints(handle.container) if handle.state == "running" else []
    if entrypoints:
        line += ": " + ", ".join(entrypoints)
    if any(e.startswith("http ") for e in entrypoints):
        line += f" (on {base_url()})"
    return line


def services_table(handles: Iterable[Any]) -> str:
    rows = [service_line(h) for h in handles]
    return "\n".join(rows) if rows else "no services yet: define a service class in a cell"
