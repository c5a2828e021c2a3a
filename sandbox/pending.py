"""An outcome that lands once, from any thread, and whoever waits for it, from any thread.

A call's reply (:mod:`sandbox.rpc_replies`) and a message's confirm (a plain thread
publishing, see :meth:`sandbox.amqp.publish.AmqpPublisher.publish_from_any_thread`) land
in the hub thread, while their caller may wait in it, in a green thread, or in a plain one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import eventlet
import eventlet.event

from sandbox.runtime import ThreadWakeup, get_runtime, runs_eventlet

if TYPE_CHECKING:
    from sandbox.amqp.thread_reader import ThreadReader


class Pending:
    """Where one outcome lands: waited for greenly in the hub, or by any other thread.

    A plain thread (a notebook cell, a script) blocks on a lock the hub releases (as it
    polls, see ``GreenRuntime.wake_thread``): no green thread of its own in the hub, and no
    trip back through the hub to be woken.
    """

    __slots__ = ("outcome", "interrupt", "_done", "_event", "_settling")

    def __init__(self) -> None:
        self.outcome: tuple[Any, BaseException | None] | None = None
        self._done = threading.Lock()
        self._done.acquire()
        self._event: eventlet.event.Event | None = None
        # The hub thread and a caller's thread reading replies (ThreadReader) may both settle.
        self._settling = threading.Lock()
        self.interrupt: Callable[[], None] | None = None  # set by the thread reading for it

    def settle(self, body: Any = None, error: BaseException | None = None) -> None:
        """The outcome (a reply's body, whether a message went out), or the error to raise
        instead (once; any thread)."""
        with self._settling:
            if self.outcome is not None:
                return
            self.outcome = (body, error)
            interrupt = self.interrupt
        runtime = get_runtime()
        if interrupt is not None:
            runtime.wake_thread(interrupt)
        runtime.wake_thread(self._done.release)
        if self._event is not None:
            if runtime.in_hub():
                self._event.send(None)
            else:
                runtime.post(self._event.send, None)

    def wait(self, timeout: float | None, reader: ThreadReader | None = None) -> bool:
        """Whether it settled within ``timeout`` seconds; ``reader``: the connection's."""
        if self.outcome is not None:
            return True
        if get_runtime().in_hub():
            if self._event is None:
                self._event = eventlet.event.Event()
            waiting = reader.waiting() if reader is not None else contextlib.nullcontext()
            # Settled meanwhile from another thread, which saw no event to send.
            with waiting, eventlet.Timeout(timeout, False):
                if self.outcome is None:
                    self._event.wait()
        elif runs_eventlet():
            with reader.waiting() if reader is not None else contextlib.nullcontext():
                self._wait_green(timeout)
        elif reader is not None:
            reader.wait(self, timeout)
        else:
            self.wait_released(timeout)
        return self.outcome is not None

    def _wait_green(self, timeout: float | None) -> None:
        """In a plain thread that runs eventlet: wait greenly, its hub going on meanwhile."""
        with ThreadWakeup() as wakeup:
            with self._settling:
                if self.outcome is not None:
                    return
                self.interrupt = wakeup.set
            try:
                wakeup.wait(timeout)
            finally:
                self.interrupt = None

    def wait_released(self, timeout: float | None) -> None:
        """In a plain thread: wait up to ``timeout`` seconds for :meth:`settle`."""
        if self._done.acquire(timeout=-1 if timeout is None else timeout):
            self._done.release()
