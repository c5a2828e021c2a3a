"""A plain thread that waits for a reply reads the consumer's connection itself.

A notebook cell or a script calls services from a plain thread. Were the hub thread to read
each reply and then wake the caller, every call would wake two threads in turn: on a busy
machine that costs as much as the rest of the round trip. So while one caller keeps calling,
the consumer's loop parks (it stops listening to the socket) and the caller reads: it takes
the replies and the broker's heartbeats, and hands anything else back to the loop. The loop
listens again when more than one caller waits at once, when a green thread waits, and once
no caller has read for a moment: the connection is never left unwatched for long.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import eventlet
import eventlet.event

from sandbox.amqp import wire
from sandbox.amqp.fast_path import ThreadFrameSource
from sandbox.runtime import get_runtime

log = logging.getLogger(__name__)

PARK_GRACE = 0.1  # seconds without a caller reading before the loop listens again


class Awaited(Protocol):
    """What a caller waits on: an outcome, set once, and a lock released when it is.

    Whoever settles it calls ``interrupt`` if set: the thread reading for it, in the middle
    of a wait for data, must learn that the outcome came another way (an error from the hub).
    """

    outcome: Any
    interrupt: Callable[[], None] | None

    def wait_released(self, timeout: float | None) -> None: ...


class _HandBack(Exception):
    def __init__(self, frame: tuple[int, int, bytes]):
        self.frame = frame


class ThreadReader:
    """Who reads a consumer's connection: its loop, or a plain thread waiting for a reply.

    At any time one of them reads, or nobody while the loop is parked and no caller waits.
    ``idle()`` tells whether no reply is awaited. Only then does the loop park, so that a
    caller who waits afterwards finds it parked and reads: none is left with nobody reading.
    """

    def __init__(self, idle: Callable[[], bool]):
        self._idle = idle
        # Guards the state below; held only for a moment, so any thread may wait for it.
        self._state = threading.Lock()
        self._waiting = 0  # callers (plain or green threads) waiting for a reply
        self._reading = False  # a plain thread reads
        self.parked = False
        self._park_wanted = False
        self._unparked: eventlet.event.Event | None = None
        self._last_read = 0.0
        self._transport: ThreadFrameSource | None = None
        self._connection: Any = None
        self._deliver: Callable[[wire.WireDelivery], None] | None = None
        self._interrupt_read, self._interrupt_write = os.pipe()
        os.set_blocking(self._interrupt_read, False)
        os.set_blocking(self._interrupt_write, False)
        self._reader_thread: int | None = None

    def close(self) -> None:
        os.close(self._interrupt_read)
        os.close(self._interrupt_write)

    # --- the consumer's loop (hub thread) -----------------------------------------------------

    def reset(self) -> None:
        """A new connection: its loop reads until a caller asks otherwise."""
        with self._state:
            self.parked = self._park_wanted = False

    def parked_for(
        self,
        transport: ThreadFrameSource,
        connection: Any,
        deliver: Callable[[wire.WireDelivery], None],
    ) -> bool:
        """Before the loop reads: park if a lone caller asked and no reply is awaited, and
        stay parked up to :data:`PARK_GRACE`; whether the loop is (still) parked."""
        if not self.parked and (
            not self._park_wanted or not self._park(transport, connection, deliver)
        ):
            return False
        self._unparked = eventlet.event.Event()
        try:
            self._unparked.wait(PARK_GRACE)
        finally:
            self._unparked = None
        if time.monotonic() - self._last_read >= PARK_GRACE:
            self._unpark()
        return self.parked

    def _park(
        self, transport: ThreadFrameSource, connection: Any, deliver: Callable[..., None]
    ) -> bool:
        with self._state:
            if not (self._park_wanted and self._idle()):
                return False
            self._park_wanted = False
            self._transport, self._connection, self._deliver = transport, connection, deliver
            transport.stop_draining()  # no hub listener while a thread reads
            self._last_read = time.monotonic()
            self.parked = True
        return True

    def _wake_loop(self) -> None:
        if self._unparked is not None and not self._unparked.ready():
            self._unparked.send(None)

    def _unpark(self) -> None:
        """Any thread: the loop reads again, unless a thread reads (it hands back as it
        leaves, should anyone else wait)."""
        with self._state:
            if not self.parked or self._reading:
                return
            self.parked = False
        runtime = get_runtime()
        if runtime.in_hub():
            self._wake_loop()
        else:
            runtime.post(self._wake_loop)

    # --- callers -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a green thread's wait for a reply: the loop must read for it."""
        with self._state:
            self._waiting += 1
        self._unpark()
        try:
            yield
        finally:
            with self._state:
                self._waiting -= 1

    def wait(self, awaited: Awaited, timeout: float | None) -> None:
        """In a plain thread: wait up to ``timeout`` seconds for ``awaited``, reading the
        connection while the loop is parked."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            self._waiting += 1
            reads = self.parked and not self._reading
            if reads:
                self._reading = True
            elif not self.parked and self._waiting == 1:
                self._park_wanted = True  # the loop parks once this reply is in
        try:
            if reads:
                self._read_for(awaited, deadline)
            if awaited.outcome is None:
                awaited.wait_released(_remaining(deadline))
        finally:
            with self._state:
                self._waiting -= 1
                if reads:
                    self._reading = False
                    self._last_read = time.monotonic()
                others = self._waiting
            if others:
                self._unpark()  # they need a reader

    def _read_for(self, awaited: Awaited, deadline: float | None) -> None:
        transport = self._transport
        self._reader_thread = threading.get_ident()
        awaited.interrupt = self._interrupt
        try:
            self._read_until(transport, awaited, deadline)
        finally:
            awaited.interrupt = self._reader_thread = None

    def _interrupt(self) -> None:
        if threading.get_ident() != self._reader_thread:
            with contextlib.suppress(OSError):  # full already, or closed with the proxy
                os.write(self._interrupt_write, b"!")

    def _read_until(
        self, transport: ThreadFrameSource, awaited: Awaited, deadline: float | None
    ) -> None:
        while awaited.outcome is None:
            remaining = _remaining(deadline)
            if remaining == 0:
                return
            try:
                transport.drain_in_thread(
                    self._on_frame, remaining, self._on_delivery, self._interrupt_read
                )
            except TimeoutError:
                continue  # interrupted, or out of time: looked at above
            except _HandBack as handed:
                transport.unread(wire.frame(*handed.frame))
                self._hand_back()
                return
            except Exception as exc:
                log.debug("a caller's read failed; the consumer's loop takes over: %r", exc)
                self._hand_back()
                return

    def _hand_back(self) -> None:
        with self._state:
            self._reading = False
            self.parked = False
        get_runtime().post(self._wake_loop)

    def _on_frame(self, frame: tuple[int, int, bytes]) -> None:
        if frame[0] != wire.HEARTBEAT_FRAME:
            raise _HandBack(frame)  # py-amqp's, in the hub thread
        self._connection.bytes_recv += 1

    def _on_delivery(self, delivery: wire.WireDelivery, alone: bool) -> None:
        self._connection.bytes_recv += 1
        self._deliver(delivery)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0)
