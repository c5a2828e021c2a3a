"""Writing a connection's frames from green threads, and from plain threads when they may."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import amqp
import eventlet
import eventlet.semaphore
from amqp import method_framing

from sandbox.runtime import get_runtime

# How long a batch that ends soon may wait for others to join it. Workers that answer in
# microseconds share a write; one that takes longer does not hold back the replies before it.
SOON_LIMIT = 0.001  # seconds


class FrameWriter:
    """Writes a connection's frames, one green thread at a time (py-amqp's ``frame_writer``).

    A consumer connection is written to by its loop (heartbeats) and by workers (acks,
    replies, requests). py-amqp guards its frame buffer with a real lock: a green write that
    blocks half way while holding it would freeze the whole hub thread at the next writer,
    and would let another green thread's frames in between.

    Frames encoded by :mod:`sandbox.amqp.wire` go through :meth:`send`; inside :meth:`batch`
    they wait to go out together, in one write (a reply and the ack of its request), or with
    those of other batches that end in the same hub turn (the replies to requests that came
    in one read). A plain
    thread may write too (:meth:`send_from_thread`), while no green thread writes.
    """

    def __init__(self, connection: Any, transport: Any):
        self._connection = connection
        self._write = transport.write
        self._write_frame = method_framing.frame_writer(connection, transport)
        self._lock = eventlet.semaphore.Semaphore()
        self._batching = 0
        self._pending: list[bytes] = []
        self._flush_soon_pending = False
        self._soon_since = 0.0  # when the oldest batch waiting for the turn's end ended
        # Between the hub thread and plain threads: who is on the socket, and what a plain
        # thread left half written (the hub writes it before anything else).
        self._socket = getattr(transport, "plain_socket", None)
        self._wire = threading.Lock()
        self._writing = False
        self._rest = b""
        self._from_threads: collections.deque[bytes] = collections.deque()

    def __call__(self, *frame: Any) -> None:
        """Write a frame py-amqp encodes (after what waits in a batch, to keep the order)."""
        self._write_greenly(then=partial(self._write_frame, *frame))

    def send(self, frames: bytes) -> None:
        """Write encoded frames, or keep them for the end of the batch."""
        if self._batching:
            self._pending.append(frames)
            return
        self._write_greenly(frames)
        self._connection.bytes_sent += 1

    def send_soon(self, frames: bytes) -> None:
        """Write encoded frames at the end of this hub turn, in one write with the others
        sent so by then: the acks of a consumer's workers. Inside a batch they go out with
        it (an RPC request's ack with its reply), and nothing is left for the end of the turn."""
        self._pending.append(frames)
        if not self._batching:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_soon_pending:
            self._flush_soon_pending = True
            eventlet.spawn_n(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_soon_pending = False
        # A dead connection: its reader hears of it; acks lost with it mean redeliveries.
        with contextlib.suppress(OSError, amqp.RecoverableConnectionError):
            if self._pending or self._rest or self._from_threads:
                self.flush()

    def batch(self, soon: bool = False) -> contextlib.AbstractContextManager[None]:
        """Writes inside go out together, in one write at the end, or with ``soon`` at the
        end of this hub turn, with whatever else is written so by then."""
        return _WriteBatch(self, soon)

    def _end_batch(self, soon: bool) -> None:
        self._batching -= 1
        if not self._batching and self._pending:
            if soon and self._may_wait():
                self._schedule_flush()
            else:
                self.flush()

    def _may_wait(self) -> bool:
        now = time.monotonic()
        if not self._soon_since:
            self._soon_since = now
        return now - self._soon_since < SOON_LIMIT

    def flush(self) -> None:
        """Write what waits: a batch, what plain threads left (half) written."""
        self._write_greenly()
        self._connection.bytes_sent += 1

    def _write_greenly(self, frames: bytes = b"", then: Callable[[], Any] | None = None) -> None:
        """Write what plain threads left, what waits for the end of a batch or of the turn,
        and ``frames``, in one write; then call ``then`` (py-amqp writing a frame itself)."""
        with self._lock:
            with self._wire:
                self._writing = True
                rest, self._rest = self._rest + self._take_from_threads(), b""
            try:
                waiting, self._pending = b"".join((rest, *self._pending, frames)), []
                self._soon_since = 0.0
                if waiting:
                    self._write(waiting)
                if then is not None:
                    then()
            finally:
                with self._wire:
                    self._writing = False
                # Left by a thread that found _wire taken by us: its frames are ours to write.
                if self._from_threads:
                    self._schedule_flush()

    def send_from_thread(self, frames: bytes) -> bool:
        """Write frames from a plain thread, unless the hub is writing; whether it will.

        A plain thread (a notebook cell) is spared a trip through the hub thread to send a
        request. The socket takes what it can without waiting; the rest, if any, goes to
        the hub, to be written before anything else. A thread that finds another writing
        leaves its frames to it, which writes them before it leaves: many callers' requests
        go out in one write, and none sleeps until another's write is done.
        """
        if self._socket is None or self._hub_writes():
            return False
        self._from_threads.append(frames)
        # Appended before trying, and looked at again after letting go: frames left by a
        # thread that found the lock taken are never left behind.
        while self._from_threads and self._wire.acquire(blocking=False):
            try:
                self._write_from_thread()
            finally:
                self._wire.release()
        return True

    def _hub_writes(self) -> bool:
        return self._writing or bool(self._rest) or bool(self._pending) or self._lock.locked()

    def _write_from_thread(self) -> None:
        """Write what threads left, holding ``_wire``."""
        data = self._take_from_threads()
        if not data:  # another thread wrote them
            return
        sent = 0
        if not self._hub_writes():
            # Full (nothing sent) or broken: the hub's write waits, or finds out.
            with contextlib.suppress(OSError):
                sent = self._socket.send(data)
        if sent < len(data):
            self._rest += data[sent:]
            get_runtime().post(self._flush_soon)
        self._connection.bytes_sent += 1

    def _take_from_threads(self) -> bytes:
        left = []
        while self._from_threads:
            left.append(self._from_threads.popleft())
        return b"".join(left)


class _WriteBatch:
    """:meth:`FrameWriter.batch`. A class, not a generator: every RPC reply goes through one,
    and a generator's context manager costs several calls more."""

    __slots__ = ("_writer", "_soon")

    def __init__(self, writer: FrameWriter, soon: bool):
        self._writer = writer
        self._soon = soon

    def __enter__(self) -> None:
        self._writer._batching += 1

    def __exit__(self, *exc_info: Any) -> None:
        self._writer._end_batch(self._soon)
