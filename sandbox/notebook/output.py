"""Route output of green threads to the cell that caused them.

The runtime copies the caller's ContextVars into each green thread, which routes output on
ipykernel 7. We also set the parent explicitly, because ipykernel 6 keeps the stream parent
elsewhere. Never ``set_parent`` from background code: that moves every thread's output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from IPython import get_ipython


def current_parent() -> dict[str, Any] | None:
    """The header of the message (cell execution) running right now, if in a kernel."""
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return None
    try:
        return ip.get_parent() if hasattr(ip, "get_parent") else ip.kernel.get_parent()
    except Exception:
        return None


def route_to(parent: dict[str, Any] | None) -> None:
    """Send the calling green thread's output to the cell that ``parent`` names."""
    ip = get_ipython()
    if ip is None or not parent:
        return
    if hasattr(ip, "set_thread_parent"):
        ip.set_thread_parent(parent)
        return
    from jupyter_client.session import extract_header

    header = extract_header(parent)
    for stream in (sys.stdout, sys.stderr):
        var = getattr(stream, "_parent_header", None)
        if hasattr(var, "set"):
            var.set(header)


def capture_cell() -> Callable[[], None] | None:
    """A runtime context capturer: remember the cell now, route to it in the green thread."""
    parent = current_parent()
    if parent is None:
        return None
    return lambda: route_to(parent)


class CellRouter:
    """A recorder observer: a worker that starts while a cell runs prints into that cell.

    Otherwise its output goes where its green thread was started from: the cell that started
    the service. The kernel's ``pre_run_cell``/``post_run_cell`` events keep ``running`` true.
    """

    def __init__(self) -> None:
        self.running: dict[str, Any] | None = None

    def pre_run_cell(self, info: Any = None) -> None:
        self.running = current_parent()

    def post_run_cell(self, result: Any = None) -> None:
        self.running = None

    def worker_started(self, worker_ctx: Any) -> None:
        if self.running is not None:
            route_to(self.running)
