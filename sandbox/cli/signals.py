"""Stop signals of the commands that run services (``sandbox run``, its supervisor).

Their handlers only put the signal on a queue; the main thread waits on that queue for what
to do next. The kernel may hand a process's signal to any of its threads, and Python runs the
handler only in the main thread, once that thread runs again: asleep on the queue until an
event came, it would never learn of a signal another thread took, and the command would not
stop. So the main thread never sleeps longer than :data:`SIGNAL_LATENCY` at a time.
"""

from __future__ import annotations

import queue
import time
from typing import Any

SIGNAL_LATENCY = 0.2  # seconds: the longest a signal taken by another thread waits to be seen


def next_event(events: queue.SimpleQueue, timeout: float | None = None) -> Any:
    """``events.get(timeout=timeout)`` for the main thread: queue.Empty once ``timeout``
    seconds passed with nothing, meanwhile running the handlers of signals that came."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = SIGNAL_LATENCY
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        try:
            return events.get(timeout=wait)
        except queue.Empty:
            if deadline is not None and time.monotonic() >= deadline:
                raise
