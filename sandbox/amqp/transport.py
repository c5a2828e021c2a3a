"""kombu connections: green py-amqp for RabbitMQ, the embedded broker for ``memory://``.

Nothing is monkey patched. py-amqp's transport module is re-imported with eventlet's green
``socket`` and ``ssl``, and kombu gets a transport class that uses it, so a connection waits
greenly in the thread whose hub it was created in: the runtime's hub thread.

Events and messages are published through :class:`ConnectionPool`: a few connections per broker
address and hub thread, each lent to one green thread at a time, so a publish never opens a
connection of its own. RPC requests and replies go out on their consumer's connection instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import amqp
import eventlet
import eventlet.hubs
import eventlet.semaphore
import greenlet
import kombu
import kombu.transport.pyamqp
from amqp import method_framing
from amqp.exceptions import MessageNacked, NotFound, UnexpectedFrame

from sandbox.amqp import memory, wire
from sandbox.amqp.confirms import ConfirmPipeline
from sandbox.amqp.limits import DEFAULT_MAX_MESSAGE_SIZE, unopened_message
from sandbox.config import DEFAULTS
from sandbox.exceptions import BrokerUnavailable
from sandbox.runtime import get_runtime
from sandbox.utils import sanitize_url

GREEN_SCHEMES = frozenset({"amqp", "pyamqp", "amqps"})

# Both transports raise py-amqp's errors; these mean "try again on a fresh connection". Not a
# nack, which py-amqp counts among them: it is the broker's answer (a queue's x-overflow
# reject-publish), and the connection is fine.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = tuple(
    error
    for error in (
        *amqp.Connection.connection_errors,
        *amqp.Connection.recoverable_connection_errors,
    )
    if error is not MessageNacked
)

_green_amqp_transport = eventlet.import_patched("amqp.transport")


class FrameWriter:
    """Writes a connection's frames, one green thread at a time (py-amqp's ``frame_writer``).

    A consumer connection is written to by its loop (heartbeats) and by workers (acks,
    replies, requests). py-amqp guards its frame buffer with a real lock: a green write that
    blocks half way while holding it would freeze the whole hub thread at the next writer,
    and would let another green thread's frames in between.

    Frames encoded by :mod:`sandbox.amqp.wire` go through :meth:`send`; inside :meth:`batch`
    they wait to go out together, in one write (a reply and the ack of its request). A plain
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
        # Between the hub thread and plain threads: who is on the socket, and what a plain
        # thread left half written (the hub writes it before anything else).
        self._socket = getattr(transport, "plain_socket", None)
        self._wire = threading.Lock()
        self._writing = False
        self._rest = b""

    def __call__(self, *frame: Any) -> None:
        """Write a frame py-amqp encodes (after what waits in a batch, to keep the order)."""
        with self._writing_greenly():
            self._write_frame(*frame)

    def send(self, frames: bytes) -> None:
        """Write encoded frames, or keep them for the end of the batch."""
        if self._batching:
            self._pending.append(frames)
            return
        with self._writing_greenly():
            self._write(frames)
        self._connection.bytes_sent += 1

    def send_soon(self, frames: bytes) -> None:
        """Write encoded frames at the end of this hub turn, in one write with the others
        sent so by then: the acks of a consumer's workers."""
        self._pending.append(frames)
        if not self._flush_soon_pending:
            self._flush_soon_pending = True
            eventlet.spawn_n(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_soon_pending = False
        # A dead connection: its reader hears of it; acks lost with it mean redeliveries.
        with contextlib.suppress(*CONNECTION_ERRORS):
            if self._pending:
                self.flush()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching and self._pending:
                self.flush()

    def flush(self) -> None:
        """Write what waits: a batch, what a plain thread left half written."""
        with self._writing_greenly():
            pass
        self._connection.bytes_sent += 1

    @contextlib.contextmanager
    def _writing_greenly(self) -> Iterator[None]:
        with self._lock:
            with self._wire:
                self._writing = True
                rest, self._rest = self._rest, b""
            try:
                waiting, self._pending = b"".join((rest, *self._pending)), []
                if waiting:
                    self._write(waiting)
                yield
            finally:
                with self._wire:
                    self._writing = False

    def send_from_thread(self, frames: bytes) -> bool:
        """Write frames from a plain thread, unless the hub is writing; whether it did.

        A plain thread (a notebook cell) is spared a trip through the hub thread to send a
        request. The socket takes what it can without waiting; the rest, if any, goes to
        the hub, to be written before anything else.
        """
        if self._socket is None:
            return False
        with self._wire:
            if self._writing or self._rest or self._pending or self._lock.locked():
                return False
            try:
                sent = self._socket.send(frames)
            except OSError:  # full (nothing sent), or broken: the hub's writers will know
                return False
            self._rest = frames[sent:]
        if self._rest:
            get_runtime().post(self.flush)
        self._connection.bytes_sent += 1
        return True


class GreenChannel(kombu.transport.pyamqp.Channel):
    """kombu's py-amqp channel, with the hot path's frames encoded by :mod:`wire`."""

    def basic_ack(self, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> None:
        connection = self._live_connection()
        connection.frame_writer.send_soon(wire.ack_frame(self.channel_id, delivery_tag, multiple))

    def message_to_python(self, raw_message: amqp.Message, decompress: bool = True) -> Any:
        """kombu's Message of a delivery; with ``decompress=False`` its body as it came, for
        a consumer that opens it within limits (:mod:`sandbox.amqp.limits`)."""
        if decompress:
            return super().message_to_python(raw_message)
        return unopened_message(
            raw_message.body, raw_message.properties, raw_message.delivery_info, self
        )

    def publish_content(self, *message: Any, **options: Any) -> None:
        """Basic.Publish, unconfirmed, in one write (:meth:`publish_frames`'s arguments)."""
        self._live_connection().frame_writer.send(self.publish_frames(*message, **options))

    def publish_frames(
        self,
        body: bytes | str,
        exchange: str,
        routing_key: str,
        properties: Mapping[str, Any],
        headers: Mapping[str, Any] | None = None,
        mandatory: bool = False,
    ) -> bytes:
        """A Basic.Publish's frames."""
        fields = {**properties, "application_headers": headers}
        if isinstance(body, str):
            body = body.encode(fields.setdefault("content_encoding", "utf-8"))
        frame_max = self._live_connection().frame_max
        return wire.publish_frames(
            self.channel_id, exchange, routing_key, body, fields, frame_max, mandatory
        )

    def _live_connection(self) -> Any:
        # A closed channel has lost its connection and its id.
        if self.connection is None:
            raise amqp.RecoverableConnectionError("connection already closed")
        return self.connection


class FrameReader:
    """What a consumer's loop reads with: every whole frame that has arrived, in one go.

    py-amqp reads a frame as header, payload and end byte, with a timeout set and restored
    around each: a few dozen Python calls per frame, and a trip through the hub for each
    read that finds nothing buffered. A delivery is three frames: given ``on_delivery``,
    they are assembled here (:class:`wire.Delivery`) instead of by py-amqp.
    """

    _RECV_SIZE = 65536
    # The largest body a delivery keeps; a larger one is counted, not kept (the consumer
    # refuses it, see sandbox.amqp.limits). Set by the consumer that drains the transport.
    max_body_size = DEFAULT_MAX_MESSAGE_SIZE

    def drain(
        self,
        on_frame: Callable[[tuple[int, int, bytes]], Any],
        timeout: float | None,
        on_delivery: Callable[[wire.Delivery, bool], Any] | None = None,
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
        on_frame: Callable[[tuple[int, int, bytes]], Any],
        timeout: float | None,
        on_delivery: Callable[[wire.Delivery, bool], Any] | None,
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
                deliveries[channel] = wire.Delivery(channel, payload)
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
        sock = self.sock.fd  # the plain socket under the green one, non-blocking
        waited = self._drained
        if waited:
            self._wait_readable(timeout)
        while True:
            try:
                chunk = sock.recv(self._RECV_SIZE)
            except BlockingIOError:
                self._wait_readable(timeout)
                waited = True
                continue
            self._drained = len(chunk) < self._RECV_SIZE
            return chunk, waited

    def drain_in_thread(
        self,
        on_frame: Callable[[tuple[int, int, bytes]], Any],
        timeout: float | None,
        on_delivery: Callable[[wire.Delivery, bool], Any],
        interrupt: int,
    ) -> None:
        """:meth:`drain`, from a plain thread, while the consumer's loop does not read; data
        on the ``interrupt`` pipe (read end) ends the wait too, with TimeoutError."""
        receive = partial(self._receive_in_thread, interrupt=interrupt)
        self._drain_with(receive, on_frame, timeout, on_delivery)

    def _receive_in_thread(self, timeout: float | None, interrupt: int) -> tuple[bytes, bool]:
        sock = self.sock.fd
        waiting = select.poll()
        waiting.register(sock, select.POLLIN)
        waiting.register(interrupt, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return sock.recv(self._RECV_SIZE), False
            except BlockingIOError:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("timed out") from None
                # No GIL held while it waits; a socket shut down (the connection closed by
                # the hub thread) wakes it.
                ready = waiting.poll(None if remaining is None else max(remaining * 1000, 1))
                if any(fd == interrupt for fd, _ in ready):
                    with contextlib.suppress(BlockingIOError):
                        while os.read(interrupt, 512):
                            pass
                    raise TimeoutError("interrupted") from None

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


class GreenAmqpConnection(kombu.transport.pyamqp.Connection):
    Channel = GreenChannel

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, frame_writer=FrameWriter, **kwargs)

    def Transport(  # noqa: N802 (py-amqp's name)
        self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None, **kwargs
    ):
        transport_cls = GreenSSLTransport if ssl else GreenTCPTransport
        return transport_cls(
            host,
            connect_timeout=connect_timeout,
            ssl=ssl,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            **kwargs,
        )


class GreenTransport(kombu.transport.pyamqp.Transport):
    """kombu's py-amqp transport on green sockets."""

    Connection = GreenAmqpConnection


def connect(
    uri: str,
    *,
    ssl: Any = None,
    login_method: str | None = None,
    heartbeat: float | None = None,
    transport_options: Mapping[str, Any] | None = None,
) -> kombu.Connection:
    """An open kombu connection to ``uri``; RabbitMQ schemes get green sockets, ``memory://``
    the embedded broker.

    It raises at once when the broker does not answer: kombu's own retries sleep without
    yielding, which would freeze the whole hub. Retrying is the caller's business.
    """
    scheme = uri.partition("://")[0].lower()
    options: dict[str, Any] = {
        "ssl": ssl or scheme == "amqps",
        "login_method": login_method,
        "heartbeat": heartbeat or 0,
        "transport_options": dict(transport_options or {}),
    }
    if scheme in GREEN_SCHEMES:
        options["transport"] = GreenTransport
    elif scheme in memory.SCHEMES:
        options["transport"] = memory.Transport  # kombu's own memory:// is another broker
    connection = kombu.Connection(uri, **options)
    return connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)


@contextlib.contextmanager
def broker_errors(uri: str) -> Iterator[None]:
    """Raise the connection errors of py-amqp, kombu and sockets inside as BrokerUnavailable,
    with a one-line message that names the broker, without its password."""
    try:
        yield
    except BrokerUnavailable:
        raise
    except CONNECTION_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BrokerUnavailable(
            f"the broker at {sanitize_url(uri)} is unavailable: {reason}"
        ) from exc


def amqp_uri(config: Mapping[str, Any]) -> str:
    """The broker a config names; the embedded one when it names none."""
    return config.get("AMQP_URI") or DEFAULTS["AMQP_URI"]


def connection_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`connect` options a config names (``AMQP_SSL``, ``LOGIN_METHOD``)."""
    return {"ssl": config.get("AMQP_SSL"), "login_method": config.get("LOGIN_METHOD")}


def retry_delays(policy: Mapping[str, Any] | None = None) -> Iterator[float]:
    """Back-off delays in seconds: ``interval_start``, then ``interval_step`` more each time,
    at most ``interval_max``; ``max_retries`` of them, or endless when it is None."""
    policy = policy or {}
    start = float(policy.get("interval_start", 0))
    step = float(policy.get("interval_step", 1))
    maximum = float(policy.get("interval_max", 5))
    delays = (min(start + step * n, maximum) for n in itertools.count())
    max_retries = policy.get("max_retries")
    return delays if max_retries is None else itertools.islice(delays, max_retries)


class PooledChannel:
    """One pooled connection with its publishing channel.

    Returns (unroutable mandatory messages) are collected in :attr:`returned` while a publish
    waits for its confirm; the publisher reads them afterwards.
    """

    def __init__(self, connection: kombu.Connection):
        self.connection = connection
        self.channel = connection.channel()
        self.producer = kombu.Producer(self.channel, auto_declare=False)
        self.returned: list[tuple[Exception, str, str]] = []
        self.channel.events["basic_return"].add(self._on_return)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append((exc, exchange, routing_key))

    def queue_exists(self, name: str) -> bool:
        # A passive declare of a missing queue closes its channel: use a throwaway one, made
        # on the raw connection (kombu's would reconnect a dead one, sleeping, by itself).
        channel = self.channel.connection.channel()
        try:
            channel.queue_declare(name, passive=True)
            return True
        except NotFound:
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def close(self) -> None:
        close_quietly(self.connection)


def close_quietly(connection: kombu.Connection) -> None:
    """Close politely if the broker answers within a second, else just drop the socket.

    The connection may be in any state: dead, or cut half way through reading a frame.
    """
    with eventlet.Timeout(1, False), contextlib.suppress(Exception):
        connection.release()
        return
    with contextlib.suppress(Exception):
        connection.collect()


class ConnectionPool:
    """Connections to one broker, lent to one green thread at a time.

    It grows on demand up to ``limit`` connections, then borrowers wait greenly. A connection
    that failed while lent is closed instead of coming back. Queues known to exist are cached
    here too, per broker address (see :meth:`queue_exists`).
    """

    def __init__(
        self,
        uri: str,
        *,
        confirms: bool = True,
        limit: int = 10,
        transport_options: Mapping[str, Any] | None = None,
        **options: Any,
    ):
        self.uri = uri
        self.confirms = confirms
        transport_options = {**(transport_options or {}), "confirm_publish": confirms}
        self._options = {**options, "transport_options": transport_options}
        self._idle: list[PooledChannel] = []
        self._slots = eventlet.semaphore.Semaphore(limit)
        self._known_queues: set[str] = set()
        self.pipelines = confirms and uri.partition("://")[0].lower() in GREEN_SCHEMES
        self._pipeline: ConfirmPipeline | None = None
        self._opening = eventlet.semaphore.Semaphore()

    @contextlib.contextmanager
    def acquire(self) -> Iterator[PooledChannel]:
        with self._slots:
            pooled = self._idle.pop() if self._idle else self._open()
            try:
                yield pooled
            except BaseException as exc:
                # Whatever broke (a dead socket, a kill half way through a confirm), the
                # connection's state is unknown: never lend it again.
                pooled.close()
                if isinstance(exc, CONNECTION_ERRORS):
                    self.close()  # the idle ones most likely lost the broker too
                raise
            pooled.returned.clear()
            self._idle.append(pooled)

    def _open(self) -> PooledChannel:
        return PooledChannel(connect(self.uri, **self._options))

    def pipeline(self) -> ConfirmPipeline:
        """The connection that publishes with confirms in flight at once (RabbitMQ only, see
        :attr:`pipelines`); a new one when the last one failed."""
        with self._opening:
            if self._pipeline is None or self._pipeline.broken is not None:
                self._pipeline = ConfirmPipeline(connect(self.uri, **self._options))
            return self._pipeline

    def queue_exists(self, name: str) -> bool:
        """Whether the broker has queue ``name``; a yes is remembered until :meth:`forget_queue`."""
        if name in self._known_queues:
            return True
        try:
            exists = self._queue_exists(name)
        except CONNECTION_ERRORS:
            exists = self._queue_exists(name)  # on a fresh connection: the idle ones are gone
        if exists:
            self._known_queues.add(name)
        return exists

    def _queue_exists(self, name: str) -> bool:
        with self.acquire() as pooled:
            return pooled.queue_exists(name)

    def knows_queue(self, name: str) -> bool:
        """Whether :meth:`queue_exists` would say yes without asking the broker."""
        return name in self._known_queues

    def forget_queue(self, name: str) -> None:
        self._known_queues.discard(name)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()


# Connections belong to the hub of the thread that made them, so each thread has its own pools.
_local = threading.local()


def get_pool(
    uri: str,
    *,
    confirms: bool = True,
    ssl: Any = None,
    login_method: str | None = None,
    transport_options: Mapping[str, Any] | None = None,
) -> ConnectionPool:
    """This thread's pool for these connection parameters, created on first use."""
    pools: dict[tuple, ConnectionPool] = _local.__dict__.setdefault("pools", {})
    key = (uri, confirms, repr(ssl), login_method, repr(sorted((transport_options or {}).items())))
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = ConnectionPool(
            uri,
            confirms=confirms,
            ssl=ssl,
            login_method=login_method,
            transport_options=transport_options,
        )
    return pool


def close_pools(uri: str | None = None) -> None:
    """Close this thread's pooled connections (to ``uri`` only, when given)."""
    pools: dict[tuple, ConnectionPool] = _local.__dict__.get("pools", {})
    for key in [key for key in pools if uri is None or key[0] == uri]:
        pools.pop(key).close()
