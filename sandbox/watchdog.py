"""The watchdog: says so when something holds the hub thread, and with it every service.

Green threads take turns. One that computes for long, or blocks in C code that nothing made
green (:mod:`sandbox.blocking`), keeps the hub from turning, and no other service runs. A plain
thread per runtime looks at the hub ten times a second; when the hub has not come back to poll
for :data:`STALL` seconds, it logs one warning naming the service, the entrypoint and the
file:line where the hub is held, and what to do; and one line when the hub turns again.

It reports, never interrupts: a green thread cannot be stopped from another OS thread. A C call
that holds the interpreter lock keeps the watchdog waiting too: its warning comes late then.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import eventlet
import greenlet

log = logging.getLogger(__name__)

STALL = 0.5  # seconds without a turn of the hub before the warning
_INTERVAL = 0.1

LocationFormat = Callable[[str, int], str]


def _plain_location(filename: str, lineno: int) -> str:
    return f"{filename}:{lineno}"


_format_location: LocationFormat = _plain_location


def set_location_format(format_location: LocationFormat | None) -> None:
    """How a file:line is named (the notebook names cells as IPython does); None resets."""
    global _format_location
    _format_location = format_location or _plain_location


def watch(runtime: Any) -> threading.Thread:
    """Start watching ``runtime`` (a GreenRuntime) until it stops."""
    thread = threading.Thread(
        target=_watch, args=(runtime,), name=f"{runtime.name}-watchdog", daemon=True
    )
    thread.start()
    return thread


def _watch(runtime: Any) -> None:
    stalled_at: float | None = None  # the hub's last turn before the stall being reported
    who = ""
    pause = threading.Event()  # a plain wait: nothing here may turn green
    while runtime.running:
        pause.wait(_INTERVAL)
        # ``polling`` first: the hub sets ``turned_at`` before it clears ``polling``, so a
        # hub seen not polling has a ``turned_at`` no older than its last poll.
        polling = runtime.polling
        turned_at = runtime.turned_at
        if stalled_at is not None:
            if polling or turned_at != stalled_at:
                held = time.monotonic() - stalled_at
                log.warning("%s let go after %.1f s; the services run again", who, held)
                stalled_at = runtime.held_by = None
        elif not polling and time.monotonic() - turned_at >= STALL:
            stalled_at = turned_at
            who, message = describe_stall(runtime.thread.ident)
            log.warning("%s", message)
            runtime.held_by = who


def describe_stall(ident: int | None) -> tuple[str, str]:
    """Who holds hub thread ``ident`` (``service.entrypoint``), and the warning to give."""
    stack = _stack(sys._current_frames().get(ident))
    who = _worker_of(stack) or "code in the services' thread"
    where = _user_frame(stack)
    at = f" at {_format_location(where.f_code.co_filename, where.f_lineno)}" if where else ""
    in_ = f" (in {where.f_code.co_name})" if where else ""
    message = (
        f"{who} has held the services' thread for {STALL} s{at}{in_}: no other service runs "
        "until it lets go. Run CPU-heavy work or a blocking C call with "
        "sandbox.offload(fn, *args), which runs it on a plain thread."
    )
    return who, message


def _stack(frame: FrameType | None) -> list[FrameType]:
    """Innermost first."""
    stack = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    return stack


def _worker_of(stack: list[FrameType]) -> str | None:
    # A worker's lifecycle (the container's worker run, a dependency's hooks) has its context
    # in a local called ``worker_ctx``, as Nameko's does.
    for frame in stack:
        if "worker_ctx" in frame.f_code.co_varnames:
            worker_ctx = frame.f_locals.get("worker_ctx")
            entrypoint = getattr(worker_ctx, "entrypoint", None)
            if entrypoint is not None:
                return f"{worker_ctx.service_name}.{entrypoint.method_name}"
    return None


def _library_paths() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    packages = (eventlet, greenlet, sys.modules[__package__ or "sandbox"])
    roots.update(os.path.dirname(module.__file__ or "") for module in packages)
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots if root)


def _user_frame(stack: list[FrameType]) -> FrameType | None:
    """The innermost frame of the user's code, else the innermost frame."""
    libraries = _library_paths()
    for frame in stack:
        filename = frame.f_code.co_filename
        if filename.startswith("<frozen") or os.path.realpath(filename).startswith(libraries):
            continue
        return frame
    return stack[0] if stack else None
