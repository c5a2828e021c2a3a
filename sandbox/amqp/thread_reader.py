"""Plain threads that wait for replies read the consumer's connection themselves.

A notebook cell or a script calls services from a plain thread. Were the hub thread to read
each reply and then wake the caller, every call would wake two threads in turn: on a busy
machine that costs as much as the rest of the round trip. So while plain threads call, the
consumer's loop parks (it stops listening to the socket) and one of the waiting threads reads
for all: it takes the replies and the broker's heartbeats, wakes each reply's caller, and
hands anything else back to the loop. When its own reply is in, it passes the reading on to
another thread still waiting, so many callers in many threads keep the hub out of their round
trips. The loop listens again when a green thread waits, when a frame other than a reply
comes, and once no thread has read for a moment: the connection is never left unwatched.
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

PARK_GRACE = 0.1  # seconds without a thread reading before the loop listens again


class Awaited(Protocol):
    """What a caller waits on: an outcome, set once.

    Whoever settles it calls ``interrupt`` if set, from any thread: the waiting thread must
    learn that the outcome came, whether it sleeps or reads.
    """

    outcome: Any
    interrupt: Callable[[], None] | None


class _HandBack(Exception):
    def __init__(self, frame: tuple[int, int, bytes]):
        self.frame = frame


class _Waiter:
    """A plain thread waiting for its reply: asleep, or reading for everyone."""

    __slots__ = ("awaited", "_reader", "_thread", "_asleep")

    def __init__(self, reader: ThreadReader, awaited: Awaited):
        self.awaited = awaited
        self._reader = reader
        self._thread = threading.get_ident()
        # Released to wake it: its outcome came, or it is to read now.
        self._asleep = threading.Lock()
        self._asleep.acquire()

    def sleep(self, timeout: float | None) -> None:
        self._asleep.acquire(timeout=-1 if timeout is None else timeout)

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # woken already: once is enough
            self._asleep.release()

    def interrupt(self) -> None:
        """Its outcome came: wake it, or end its wait for data if it reads."""
        reader = self._reader
        if reader.reader is not self:
            reader.wake_soon(self)
        elif threading.get_ident() != self._thread:
            reader.interrupt_read()
        # Otherwise it settled its own call while reading, and sees that when done.


class ThreadReader:
    """Who reads a consumer's connection: its loop, or one plain thread waiting for a reply.

    At any time one of them reads, or nobody while the loop is parked and no plain thread
    waits. ``idle()`` tells whether no reply is awaited: with nobody waiting, the loop parks
    only then, so that whoever waits afterwards finds it parked and reads.
    """

    def __init__(self, idle: Callable[[], bool]):
        self._idle = idle
        # Guards the state below; held only for a moment, so any thread may wait for it.
        self._state = threading.Lock()
        self._waiters: list[_Waiter] = []  # plain threads waiting, the reader among them
        self.reader: _Waiter | None = None  # the plain thread reading, if one does
        self._green_waiting = 0  # green threads waiting: the loop must read for them
        self.parked = False
        self._park_wanted = False
        self._unparked: eventlet.event.Event | None = None
        self._last_read = 0.0
        self._transport: ThreadFrameSource | None = None
        self._connection: Any = None
        self._deliver: Callable[[wire.WireDelivery], None] | None = None
        self._reading_thread: int | None = None
        self._to_wake: list[_Waiter] = []  # woken once the reading thread lets go
        self._interrupt_read, self._interrupt_write = os.pipe()
        os.set_blocking(self._interrupt_read, False)
        os.set_blocking(self._interrupt_write, False)

    def close(self) -> None:
        os.close(self._interrupt_read)
        os.close(self._interrupt_write)

    # --- the consumer's loop (hub thread) -----------------------------------------------------

    def reset(self) -> None:
        """A new connection: its loop reads until a caller asks otherwise."""
        with self._state:
            self.parked = self._park_wanted = False
            self.reader = None  # one reading the old connection finds it closed

    def parked_for(
        self,
        transport: ThreadFrameSource,
        connection: Any,
        deliver: Callable[[wire.WireDelivery], None],
    ) -> bool:
        """Before the loop reads: park if a plain thread asked, and stay parked up to
        :data:`PARK_GRACE`; whether the loop is (still) parked."""
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
            if not self._park_wanted or self._green_waiting:
                return False
            reader = self._next_reader()
            if reader is None and not self._idle():
                return False  # replies are due, and no plain thread waits to read them
            self._park_wanted = False
            self._transport, self._connection, self._deliver = transport, connection, deliver
            transport.stop_draining()  # no hub listener while a thread reads
            self._last_read = time.monotonic()
            self.parked = True
            self.reader = reader
        if reader is not None:
            reader.wake()
        return True

    def _next_reader(self) -> _Waiter | None:
        """A plain thread still waiting for its reply (holding ``_state``): the latest to
        wait, as its reply is likely the last to come, so it reads the most for others."""
        return next((w for w in reversed(self._waiters) if w.awaited.outcome is None), None)

    def _wake_loop(self) -> None:
        if self._unparked is not None and not self._unparked.ready():
            self._unparked.send(None)

    def _unpark(self) -> None:
        """Any thread: the loop reads again, unless a plain thread reads (it hands back as it
        leaves, should a green thread wait)."""
        with self._state:
            if not self.parked or self.reader is not None:
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
            self._green_waiting += 1
        self._unpark()
        try:
            yield
        finally:
            with self._state:
                self._green_waiting -= 1

    def wait(self, awaited: Awaited, timeout: float | None) -> None:
        """In a plain thread: wait up to ``timeout`` seconds for ``awaited``, reading the
        connection when it is this thread's turn."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter(self, awaited)
        with self._state:
            self._waiters.append(waiter)
            if self.parked and self.reader is None:
                self.reader = waiter
            elif not self.parked:
                self._park_wanted = True  # the loop parks, and hands a thread the reading
        awaited.interrupt = waiter.interrupt
        try:
            while awaited.outcome is None:
                remaining = _remaining(deadline)
                if remaining == 0:
                    return
                if self.reader is waiter:
                    self._read_until(waiter, deadline)
                else:
                    waiter.sleep(remaining)
        finally:
            awaited.interrupt = None
            self._leave(waiter)

    def _leave(self, waiter: _Waiter) -> None:
        """``waiter`` is done; if it read, the reading passes to another plain thread still
        waiting, or back to the loop when a green thread waits."""
        with self._state:
            self._waiters.remove(waiter)
            if self.reader is not waiter:
                return
            self._last_read = time.monotonic()
            following = None if self._green_waiting else self._next_reader()
            self.reader = following
            if following is None and self._green_waiting:
                self.parked = False
        if following is not None:
            following.wake()
        elif not self.parked:
            get_runtime().post(self._wake_loop)

    def wake_soon(self, waiter: _Waiter) -> None:
        """Wake ``waiter``; from the reading thread, just before it sleeps until more comes
        (or as it leaves).

        Woken at once, the thread would only wait again, for the reader to let go of the
        interpreter lock: a second sleep and wake-up, for every reply in a batch.
        """
        if threading.get_ident() == self._reading_thread:
            self._to_wake.append(waiter)
        else:
            waiter.wake()

    def _wake_all(self) -> None:
        waking, self._to_wake = self._to_wake, []
        for waiter in waking:
            waiter.wake()

    def interrupt_read(self) -> None:
        """End the reading thread's wait for data: what it reads for came another way."""
        with contextlib.suppress(OSError):  # full already, or closed with the proxy
            os.write(self._interrupt_write, b"!")

    def _read_until(self, waiter: _Waiter, deadline: float | None) -> None:
        self._reading_thread = threading.get_ident()
        try:
            self._read_for(waiter, deadline)
        finally:
            self._reading_thread = None
            self._wake_all()

    def _read_for(self, waiter: _Waiter, deadline: float | None) -> None:
        transport = self._transport
        while waiter.awaited.outcome is None and self.reader is waiter:
            remaining = _remaining(deadline)
            if remaining == 0:
                return
            try:
                transport.drain_in_thread(
                    self._on_frame,
                    remaining,
                    self._on_delivery,
                    self._interrupt_read,
                    self._wake_all,
                )
            except TimeoutError:
                continue  # interrupted, or out of time: looked at above
            except _HandBack as handed:
                transport.unread(wire.frame(*handed.frame))
                self._hand_back(waiter)
                return
            except Exception as exc:
                log.debug("a caller's read failed; the consumer's loop takes over: %r", exc)
                self._hand_back(waiter)
                return

    def _hand_back(self, waiter: _Waiter) -> None:
        with self._state:
            if self.reader is not waiter:
                return  # a new connection: its loop reads already
            self.reader = None
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
