"""Reading a connection's frames in bulk: the consumer loop's fast path.

py-amqp's transport module is re-imported with eventlet's green ``socket`` and ``ssl`` (nothing
is monkey patched); the transports here read through it, whole frames at a time, and hand
deliveries assembled (:class:`sandbox.amqp.wire.WireDelivery`) to the consumer's loop, or to a
plain thread that waits for a reply (:mod:`sandbox.amqp.thread_reader`).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import eventlet
import eventlet.hubs
import greenlet
from amqp.exceptions import UnexpectedFrame

from sandbox.amqp import wire
from sandbox.amqp.fast_path import DeliveryCallback, FrameCallback
from sandbox.amqp.limits import DEFAULT_MAX_MESSAGE_SIZE

_green_amqp_transport = eventlet.import_patched("amqp.transport")


class FrameReader:
    """What a consumer's loop reads with: every whole frame that has arrived, in one go.

    py-amqp reads a frame as header, payload and end byte, with a timeout set and restored
    around each: a few dozen Python calls per frame, and a trip through the hub for each
    read that finds nothing buffered. A delivery is three frames: given ``on_delivery``,
    they are assembled here (:class:`wire.WireDelivery`) instead of by py-amqp.
    """

    _RECV_SIZE = 65536
    # The largest body a delivery keeps; a larger one is counted, not kept (the consumer
    # refuses it, see sandbox.amqp.limits). Set by the consumer that drains the transport.
    max_body_size = DEFAULT_MAX_MESSAGE_SIZE
    thread_drainable = False  # see GreenTCPTransport.drain_in_thread

    def drain(
        self,
        on_frame: FrameCallback,
        timeout: float | None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Wait up to ``timeout`` seconds for data (TimeoutError), then hand each whole frame
        received to ``on_frame`` (py-amqp's ``Connection.on_inbound_frame``), and each whole
        delivery to ``on_delivery(delivery, alone)``.

        ``alone``: the delivery came by itself, after a wait for data, and nothing more came
        with it. Its handler may run at once, overtaking nothing.
        """
        self._drain_with(self._receive, on_frame, timeout, on_delivery)

    def _drain_with(
        self,
        receive: Callable[[float | None], tuple[bytes, bool]],
        on_frame: FrameCallback,
        timeout: float | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        buffer = self._read_buffer
        waited = False
        if not _holds_a_frame(buffer):
            chunk, waited = receive(timeout)
            if not chunk:
                raise OSError("Server unexpectedly closed connection")
            buffer += chunk
        offset, end = 0, len(buffer)
        try:
            while end - offset >= 8:
                frame_type, channel, size = _FRAME_HEADER.unpack_from(buffer, offset)
                last = offset + 7 + size
                if last >= end:
                    break
                if buffer[last] != 0xCE:
                    raise UnexpectedFrame(f"bad frame end byte {buffer[last]:#x}")
                payload = buffer[offset + 7 : last]
                offset = last + 1
                if on_delivery is None or not self._assemble(frame_type, channel, payload):
                    on_frame((frame_type, channel, payload))
                    continue
                delivery = self._deliveries[channel]
                if delivery.complete:
                    del self._deliveries[channel]
                    alone = waited and offset == end
                    if alone:
                        # Its handler may read this transport (a py-amqp call) before the
                        # loop goes on: what is left to read must be here, not in ``buffer``.
                        self._read_buffer = b""
                    waited = False
                    on_delivery(delivery, alone)
        finally:
            # Before anything raised by a callback goes on: no frame is handled twice.
            self._read_buffer = buffer[offset:]

    def _receive(self, timeout: float | None) -> tuple[bytes, bool]:
        """What arrived, and whether it came after a wait for it (False when unknown)."""
        sock = self.sock
        sock.settimeout(timeout)
        try:
            return sock.recv(self._RECV_SIZE), False
        finally:
            sock.settimeout(None)

    def stop_draining(self) -> None:
        """The loop that drained this transport is gone: let others read it (to close it)."""

    def _assemble(self, frame_type: int, channel: int, payload: bytes) -> bool:
        """Whether the frame is part of a delivery (and was added to it)."""
        deliveries = self.__dict__.setdefault("_deliveries", {})
        delivery = deliveries.get(channel)
        if delivery is None:
            if frame_type == wire.METHOD_FRAME and wire.is_delivery(payload):
                deliveries[channel] = wire.WireDelivery(channel, payload)
                return True
            return False
        if frame_type == wire.HEADER_FRAME and delivery.body_size < 0:
            delivery.on_header(payload)
        elif frame_type == wire.BODY_FRAME and delivery.body_size >= 0:
            delivery.received += len(payload)
            if delivery.body_size <= self.max_body_size:
                delivery.chunks.append(payload)
        elif frame_type == wire.HEARTBEAT_FRAME:
            return False  # heartbeats may come between a delivery's frames
        else:
            raise UnexpectedFrame(f"frame type {frame_type} in the middle of a delivery")
        return True


_FRAME_HEADER = struct.Struct(">BHI")


def _holds_a_frame(buffer: bytes) -> bool:
    return len(buffer) >= 8 and len(buffer) > 7 + _FRAME_HEADER.unpack_from(buffer)[2]


class GreenTCPTransport(FrameReader, _green_amqp_transport.TCPTransport):
    # py-amqp reads a frame as header, payload and end byte, one recv each: through eventlet
    # that is three trips. Read what has arrived instead (bounded, as leftovers are copied).
    _READ_AHEAD = 4096

    def _read(self, n: int, initial: bool = False) -> bytes:
        # py-amqp reads here, through the green socket, even inside the consumer's loop (a
        # channel closed by the broker reopens in a callback): the loop's registration must
        # not stand in the way.
        self.stop_draining()
        buffer = self._read_buffer
        try:
            while len(buffer) < n:
                chunk = self.sock.recv(max(n - len(buffer), self._READ_AHEAD))
                if not chunk:
                    raise OSError("Server unexpectedly closed connection")
                buffer += chunk
        except BaseException:
            # Kept for the next read: a timeout may interrupt a frame half way.
            self._read_buffer = buffer
            raise
        result, self._read_buffer = buffer[:n], buffer[n:]
        return result

    @property
    def plain_socket(self) -> socket.socket:
        """The socket under the green one (non-blocking), for writes from plain threads."""
        return self.sock.fd

    # A consumer's loop waits for the socket between most deliveries. A green socket's recv
    # registers it with the hub and unregisters it for every wait (two epoll_ctl calls and
    # a listener each); here it stays registered while the loop drains.
    _listener: Any = None
    _waiter: Any = None
    _timer: Any = None

    _drained = False  # the last read took all there was: wait before the next

    def _receive(self, timeout: float | None) -> tuple[bytes, bool]:
        return self._receive_waiting_with(partial(self._wait_readable, timeout))

    def _receive_waiting_with(self, wait: Callable[[], object]) -> tuple[bytes, bool]:
        """What arrived on the plain socket under the green one (non-blocking), calling
        ``wait()`` until it is readable; and whether it waited."""
        sock = self.sock.fd
        # After a read that took all there was, the next would find nothing: wait first.
        waited = self._drained
        if waited:
            wait()
        while True:
            try:
                chunk = sock.recv(self._RECV_SIZE)
            except BlockingIOError:
                wait()
                waited = True
                continue
            self._drained = len(chunk) < self._RECV_SIZE
            return chunk, waited

    # Not over TLS (GreenSSLTransport): a plain thread reads the raw socket under the green
    # one, and TLS records must go through the SSL object the hub's green threads use.
    thread_drainable = True

    def drain_in_thread(
        self,
        on_frame: FrameCallback,
        timeout: float | None,
        on_delivery: DeliveryCallback,
        interrupt: int,
        before_wait: Callable[[], object],
    ) -> None:
        """:meth:`drain`, from a plain thread, while the consumer's loop does not read; data
        on the ``interrupt`` pipe (read end) ends the wait too, with TimeoutError.
        ``before_wait`` is called just before the thread sleeps until data comes."""
        receive = partial(self._receive_in_thread, interrupt=interrupt, before_wait=before_wait)
        self._drain_with(receive, on_frame, timeout, on_delivery)

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what is still to be read (a frame handed back)."""
        self._read_buffer = data + self._read_buffer

    def _receive_in_thread(
        self, timeout: float | None, interrupt: int, before_wait: Callable[[], object]
    ) -> tuple[bytes, bool]:
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = partial(self._wait_in_thread, deadline, interrupt, before_wait)
        return self._receive_waiting_with(wait)[0], False

    _poller: Any = None  # (poll object, interrupt fd) of the threads that read

    def _wait_in_thread(
        self, deadline: float | None, interrupt: int, before_wait: Callable[[], object]
    ) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        if self._poller is None or self._poller[1] != interrupt:
            poller = select.poll()
            poller.register(self.sock.fd, select.POLLIN)
            poller.register(interrupt, select.POLLIN)
            self._poller = (poller, interrupt)
        before_wait()
        # No GIL held while it waits; a socket shut down (the connection closed by the hub
        # thread) wakes it.
        ready = self._poller[0].poll(None if remaining is None else max(remaining * 1000, 1))
        if any(fd == interrupt for fd, _ in ready):
            with contextlib.suppress(BlockingIOError):
                while os.read(interrupt, 512):
                    pass
            raise TimeoutError("interrupted")

    def _wait_readable(self, timeout: float | None) -> None:
        hub = eventlet.hubs.get_hub()
        waiter = greenlet.getcurrent()
        if self._listener is None:
            self._listener = hub.add(
                hub.READ, self.sock.fileno(), self._readable, self._closed, None
            )
        # One timer for many waits, not one per wait: a timeout only paces the loop's
        # heartbeat checks, and ending a wait early is no harm.
        if timeout is not None and self._timer is None:
            self._timer = hub.schedule_call_global(timeout, self._time_out)
        self._waiter = waiter
        try:
            hub.switch()
        finally:
            self._waiter = None

    def _time_out(self) -> None:
        self._timer = None
        if self._waiter is not None:
            self._waiter.throw(TimeoutError("timed out"))

    def _readable(self, fileno: int) -> None:
        if self._waiter is not None:
            self._waiter.switch()
        else:
            # Nobody waits (the loop is busy elsewhere): the hub polls level-triggered and
            # would call us on every turn until then. The next wait registers again.
            self.stop_draining()

    def _closed(self, exc: BaseException) -> None:
        self.stop_draining()
        if self._waiter is not None:
            self._waiter.throw(exc)

    def stop_draining(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            eventlet.hubs.get_hub().remove(listener)
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


class GreenSSLTransport(FrameReader, _green_amqp_transport.SSLTransport):
    pass
