"""Consuming: several queues over one connection, read by one green thread that never blocks.

:class:`AmqpConsumer` owns the connection. Its loop is the only reader of the socket; callbacks run
inside it and must hand work over (spawn) instead of waiting. Other green threads may ack,
requeue, cancel or publish, which only write. When the connection fails the loop reconnects
with back-off and declares and consumes everything again.

Publishing on a consumer's connection (RPC requests and replies) costs a write and nothing
more: no confirms (an RPC reply confirms its request, and a service acks a request right after
its reply, in the same write). A mandatory message nobody takes comes back to the loop, which
hands it to the ``on_return`` callbacks.

Every delivery is held to the consumer's :class:`~sandbox.amqp.limits.MessageLimits` (config
``MAX_MESSAGE_SIZE`` and ``ACCEPT_COMPRESSION``) before its callback sees it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import amqp
import eventlet
import eventlet.event
import kombu
import kombu.serialization
from amqp.exceptions import ConsumerCancelled

from sandbox import recorder
from sandbox.amqp import wire
from sandbox.amqp.connection import CONNECTION_ERRORS, close_quietly, connect, retry_delays
from sandbox.amqp.fast_path import FramePublisher, fast_path
from sandbox.amqp.frame_writer import FrameWriter
from sandbox.amqp.limits import MessageLimits, unopened_message
from sandbox.amqp.publish import UndeliverableMessage
from sandbox.amqp.thread_reader import ThreadReader
from sandbox.constants import DEFAULT_TRANSPORT_OPTIONS
from sandbox.runtime import get_runtime
from sandbox.utils import sanitize_url

log = logging.getLogger(__name__)

MessageCallback = Callable[[kombu.Message], None]
ReturnCallback = Callable[[UndeliverableMessage, str, Any], None]

# A channel error (a bad ack, a queue declared with other arguments) closes the channel the
# whole consumer runs on: start afresh, as after a lost connection.
RECONNECT_ERRORS = (*CONNECTION_ERRORS, *amqp.Connection.channel_errors)


@dataclass(eq=False)
class QueueSubscription:
    queue: kombu.Queue
    callback: MessageCallback
    no_ack: bool = False
    prefetch_count: int | None = None
    on_lost: Callable[[], None] | None = None
    on_disconnect: Callable[[], None] | None = None
    consumer_tag: str | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)


class AmqpConsumer:
    """Consumes queues over one connection; :meth:`run` is its loop, for a green thread.

    ``on_lost`` callbacks learn that a queue vanished (deleted, or expired while the connection
    was down) and its messages with it; ``on_disconnect`` ones that the connection failed.
    A reply queue's waiting callers need to know either.
    """

    def __init__(
        self,
        amqp_uri: str,
        *,
        heartbeat: float | None = None,
        prefetch_count: int = 10,
        accept: Iterable[str] | None = None,
        ssl: Any = None,
        login_method: str | None = None,
        retry_policy: Mapping[str, Any] | None = None,
        thread_reader: ThreadReader | None = None,
        limits: MessageLimits | None = None,
    ):
        """``thread_reader``: plain threads that wait for replies read the connection while it
        says so; then the callbacks of no-ack queues run in those threads. ``limits``: what
        every delivery is held to (by default, the defaults of :class:`MessageLimits`)."""
        self.amqp_uri = amqp_uri
        self.thread_reader = thread_reader
        self.heartbeat = heartbeat
        self.prefetch_count = prefetch_count
        self.accept = kombu.serialization.prepare_accept_content(accept or ["json"])
        self.limits = limits or MessageLimits()
        self.retry_policy = {**DEFAULT_TRANSPORT_OPTIONS, **(retry_policy or {})}
        self._connection_options = {"ssl": ssl, "login_method": login_method}
        self._subscriptions: list[QueueSubscription] = []
        self._by_tag: dict[str, QueueSubscription] = {}
        self._connection: kombu.Connection | None = None
        # The py-amqp connection under it, while connected: kombu's property for it checks
        # the connection first, which every delivery would pay for.
        self._amqp: amqp.Connection | None = None
        self._channel: Any = None
        self._publish: Callable[..., None] | None = None  # while connected
        # While connected to RabbitMQ: what a plain thread publishes with.
        self._writer: FrameWriter | None = None
        self._publishing: FramePublisher | None = None
        self._connected = eventlet.event.Event()
        self._return_callbacks: list[ReturnCallback] = []
        self._ready = eventlet.event.Event()
        # Whether the message being handed to a callback came alone (see FrameReader.drain).
        self.alone = False

    def add_queue(
        self,
        queue: kombu.Queue,
        callback: MessageCallback,
        *,
        no_ack: bool = False,
        prefetch_count: int | None = None,
        on_lost: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> QueueSubscription:
        """Consume ``queue`` from the next (re)connection on; add queues before :meth:`run`."""
        subscription = QueueSubscription(
            queue, callback, no_ack, prefetch_count, on_lost, on_disconnect
        )
        self._subscriptions.append(subscription)
        return subscription

    def cancel(self, subscription: QueueSubscription) -> None:
        """Stop deliveries from a queue; the ones already on their way are requeued."""
        subscription.cancelled = True
        if subscription.consumer_tag is not None and self._channel is not None:
            # nowait: the loop is the only reader, so nobody could wait for the CancelOk.
            with contextlib.suppress(*CONNECTION_ERRORS):
                self._channel.basic_cancel(subscription.consumer_tag, nowait=True)

    def wait_until_ready(self) -> None:
        """Wait until every queue is consumed; raise when the first connection failed."""
        self._ready.wait()

    def publish(self, body: bytes | str, *, wait: float = 5, **options: Any) -> None:
        """Publish on this connection (hub thread); it is written, not confirmed. ``options``
        are :meth:`FramePublisher.publish_frames`'s: ``exchange``, ``routing_key``,
        ``properties``, ``headers`` and ``mandatory``.

        While the connection is being made again, waits up to ``wait`` seconds for it, then
        raises. A mandatory message nobody takes comes back to the :meth:`on_return` callbacks.
        """
        if self._publish is None:
            self.wait_connected(wait)
        publish = self._publish
        try:
            publish(body, **options)
        except CONNECTION_ERRORS:
            # The connection died before the loop noticed: the next publish waits for the
            # next connection rather than fail on this one again.
            if self._publish is publish:
                self._stop_publishing()
            raise

    def publish_from_thread(self, body: bytes | str, **options: Any) -> bool:
        """:meth:`publish` from a plain thread, straight onto the socket; whether it did.
        ``options`` are :meth:`publish`'s but ``wait``.

        It does not when that would wait (no connection, or the hub is writing) or on the
        embedded broker: the caller hands the message to the hub instead.
        """
        writer, channel = self._writer, self._publishing
        if writer is None or channel is None:
            return False
        try:
            frames = channel.publish_frames(body, **options)
        except amqp.RecoverableConnectionError:
            return False
        return writer.send_from_thread(frames)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Writes made inside (publishes, acks) go out together, in one write, at the end.

        The write waits for the end of the hub turn, unless the block handles a delivery that
        came alone (see :attr:`alone`): the workers of deliveries that came in one read then
        reply in one write, which spares the broker as much as it spares us. Should that write
        fail, the loop finds the connection dead too and starts afresh; what was left unacked
        comes back from the broker.
        """
        writer = self._writer
        if writer is None:
            return contextlib.nullcontext()
        return _Batch(writer.batch(soon=not self.alone))

    @property
    def connected(self) -> bool:
        """Whether :meth:`publish` would write at once, rather than wait for a connection."""
        return self._publish is not None

    def on_return(self, callback: ReturnCallback) -> None:
        """Call ``callback(error, routing_key, message)`` for each returned message, in the loop."""
        self._return_callbacks.append(callback)

    def wait_connected(self, timeout: float = 5) -> None:
        """Wait until :meth:`publish` would write at once; raise after ``timeout`` seconds."""
        error = amqp.RecoverableConnectionError(f"not connected to the broker after {timeout}s")
        with eventlet.Timeout(timeout, error):
            while self._publish is None:
                self._connected.wait()

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until killed; reconnect forever once the first connection succeeded.

        Until then, a failure ends the loop and :meth:`wait_until_ready` raises it: a
        connection error once ``max_retries`` attempts failed, anything else at once.
        """
        try:
            self._run()
        except Exception as exc:
            if self._ready.ready():
                raise
            self._ready.send_exception(exc)

    def _run(self) -> None:
        delays = retry_delays(self.retry_policy)
        lost = False
        while True:
            try:
                self._connect()
                if lost:
                    log.info("Reconnected to broker at %s", sanitize_url(self.amqp_uri))
                    recorder.notify("broker_reconnected", sanitize_url(self.amqp_uri))
                    lost = False
                delays = retry_delays({**self.retry_policy, "max_retries": None})
                if not self._ready.ready():
                    self._ready.send(None)
                self._drain()
            except RECONNECT_ERRORS as exc:
                self._drop_connection()
                lost = self._ready.ready()
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning(
                    "Error connecting to broker at %s (%s).\nRetrying in %s seconds.",
                    sanitize_url(self.amqp_uri),
                    exc,
                    delay,
                )
                eventlet.sleep(delay)

    def _connect(self) -> None:
        connection = connect(self.amqp_uri, heartbeat=self.heartbeat, **self._connection_options)
        self._connection, self._amqp = connection, connection.connection
        # First: deliveries may come (and be answered) while the consumers are being set up.
        publishing = connection.channel()
        publishing.events["basic_return"].add(self._on_return)
        fast = fast_path(connection.connection)
        if fast is None:
            self._publish = self._publisher(publishing)
        else:
            # Never through basic_publish: py-amqp's first reads the socket for "connection
            # blocked" news, and the loop must stay the socket's only reader.
            self._publish = publishing.publish_content
            self._writer, self._publishing = fast.writer, publishing
        channel = connection.channel()
        self._channel = channel
        reconnecting = self._ready.ready()
        for subscription in self._subscriptions:
            if subscription.cancelled:
                continue
            if reconnecting and subscription.on_lost is not None:
                self._check_queue(connection, subscription)
            self._consume(channel, subscription)
        self._connected.send(None)

    def _check_queue(self, connection: kombu.Connection, subscription: QueueSubscription) -> None:
        channel = connection.channel()
        try:
            subscription.queue(channel).queue_declare(passive=True)
        except connection.channel_errors:
            subscription.on_lost()
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def _consume(self, channel: Any, subscription: QueueSubscription) -> None:
        subscription.queue(channel).declare()
        if not subscription.no_ack:
            # Per consumer (global=False): it applies to the consumers started after it.
            prefetch = subscription.prefetch_count or self.prefetch_count
            channel.basic_qos(0, prefetch, False)
        subscription.consumer_tag = channel.basic_consume(
            subscription.queue.name,
            no_ack=subscription.no_ack,
            callback=lambda raw: self._deliver(
                subscription, channel.message_to_python(raw, decompress=False)
            ),
            on_cancel=lambda tag: self._cancelled_by_broker(subscription),
        )
        self._by_tag[subscription.consumer_tag] = subscription
        if subscription.cancelled:  # while we were declaring
            self.cancel(subscription)

    def _on_delivery(self, delivery: wire.WireDelivery, alone: bool) -> None:
        """A delivery our frame reader assembled (instead of py-amqp)."""
        channel, connection = self._channel, self._amqp
        connection.bytes_recv += 1  # news from the broker, for the heartbeat check
        subscription = self._by_tag.get(delivery.consumer_tag)
        if subscription is None or delivery.channel != channel.channel_id:
            log.warning("requeued a delivery for no known consumer: %s", delivery.delivery_info)
            connection.channels[delivery.channel].basic_reject(delivery.delivery_tag, True)
            return
        message = unopened_message(
            delivery.body, delivery.properties, delivery.delivery_info, channel
        )
        self.alone = alone
        try:
            self._deliver(subscription, message, delivery.body_size)
        finally:
            self.alone = False

    def _deliver_in_thread(self, delivery: wire.WireDelivery) -> None:
        """A delivery a waiting caller's thread read (see ThreadReader): a no-ack queue's is
        handled there, any other in the hub."""
        subscription = self._by_tag.get(delivery.consumer_tag)
        channel = self._channel
        if (
            subscription is None
            or not subscription.no_ack
            or subscription.cancelled
            or channel is None
            or delivery.channel != channel.channel_id
        ):
            get_runtime().post(self._on_delivery, delivery, False)
            return
        message = unopened_message(
            delivery.body, delivery.properties, delivery.delivery_info, channel
        )
        message.accept = self.accept
        self.limits.admit(message, delivery.body_size)
        try:
            subscription.callback(message)
        except Exception:
            log.exception("dropped a message from %s: its callback failed", subscription.queue)

    def _deliver(
        self, subscription: QueueSubscription, message: kombu.Message, size: int | None = None
    ) -> None:
        """``size``: the body's size as announced, when its frames were not all kept."""
        message.accept = self.accept
        if subscription.cancelled:
            requeue(message)
            return
        self.limits.admit(message, size)
        try:
            subscription.callback(message)
        except Exception:
            log.exception("dropped a message from %s: its callback failed", subscription.queue)
            reject(message)

    def _cancelled_by_broker(self, subscription: QueueSubscription) -> None:
        # The broker cancels a consumer whose queue was deleted. Start afresh, which declares
        # the queue again; the messages it held are gone.
        if subscription.on_lost is not None:
            subscription.on_lost()
        raise ConsumerCancelled(f"the broker cancelled the consumer of {subscription.queue.name}")

    def _drain(self) -> None:
        # Through the transport, not kombu.Connection: once the socket failed, its
        # drain_events would reconnect by itself (sleeping without yielding) and leave our
        # consumers behind on the old connection.
        transport, connection = self._connection.transport, self._connection.connection
        interval = transport.get_heartbeat_interval(connection)
        # py-amqp wants a tick at least twice per interval; a busy stream of deliveries must
        # not starve it, so ticks are also due after any event.
        tick = interval / 4 if interval else None
        next_tick = time.monotonic() + tick if tick else None
        fast = fast_path(connection)
        frames = None if fast is None else fast.frames
        if frames is None:

            def read(timeout: float | None) -> None:
                # kombu's py-amqp transport takes the timeout by keyword only.
                transport.drain_events(connection, timeout=timeout)

        else:
            frames.max_body_size = self.limits.max_size
            read = partial(frames.drain, connection.on_inbound_frame, on_delivery=self._on_delivery)
        reader = self.thread_reader if frames is not None and frames.thread_drainable else None
        if reader is not None:
            reader.reset()
        try:
            while True:
                if reader is None or not reader.parked_for(
                    frames, connection, self._deliver_in_thread
                ):
                    with contextlib.suppress(TimeoutError):
                        read(tick)
                if next_tick is not None and time.monotonic() >= next_tick:
                    transport.heartbeat_check(connection)
                    next_tick = time.monotonic() + tick
        finally:
            if frames is not None:
                frames.stop_draining()

    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._amqp = None
        self._by_tag.clear()
        for subscription in self._subscriptions:
            subscription.consumer_tag = None
        self._stop_publishing()
        if connection is None:
            return
        with contextlib.suppress(Exception):
            connection.collect()
        for subscription in self._subscriptions:
            if subscription.on_disconnect is not None:
                subscription.on_disconnect()

    def _stop_publishing(self) -> None:
        self._publish = self._writer = self._publishing = None
        if self._connected.ready():
            self._connected = eventlet.event.Event()

    def _publisher(self, channel: Any) -> Callable[..., None]:
        """Publishing through kombu's channel, on a connection without a fast path."""

        def publish(body, exchange, routing_key, properties, headers=None, mandatory=False) -> None:
            fields = dict(properties)
            message = channel.prepare_message(
                body,
                priority=fields.pop("priority", None),
                content_type=fields.pop("content_type", None),
                content_encoding=fields.pop("content_encoding", None),
                headers=headers,
                properties=fields,
            )
            channel.basic_publish(
                message, exchange=exchange, routing_key=routing_key, mandatory=mandatory
            )

        return publish

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        error = UndeliverableMessage(f"{exc} (exchange {exchange!r}, routing key {routing_key!r})")
        for callback in self._return_callbacks:
            try:
                callback(error, routing_key, message)
            except Exception:
                log.exception("a return callback failed")

    def close(self) -> None:
        """Close the connection once the loop has been killed."""
        connection, self._connection, self._channel = self._connection, None, None
        self._amqp = None
        self._stop_publishing()
        if connection is not None:
            close_quietly(connection)


class _Batch:
    """:meth:`AmqpConsumer.batch` on a connection with a writer. A class, not a generator:
    every RPC reply goes through one, and a generator's context manager costs several calls
    more."""

    __slots__ = ("_writes",)

    def __init__(self, writes: contextlib.AbstractContextManager[None]):
        self._writes = writes

    def __enter__(self) -> None:
        self._writes.__enter__()

    def __exit__(self, *exc_info: Any) -> bool:
        try:
            return bool(self._writes.__exit__(*exc_info))
        except CONNECTION_ERRORS as exc:
            if exc_info[0] is not None:  # the block failed first: that is the news
                raise
            log.debug("a batch of writes was lost with the connection: %r", exc)
            return False


def ack(message: kombu.Message) -> None:
    """Ack, unless the connection it came on is gone (the broker redelivers it then)."""
    _settle(message, "ack")


def requeue(message: kombu.Message) -> None:
    _settle(message, "requeue")


def reject(message: kombu.Message) -> None:
    """Reject without requeueing: drop it (or dead-letter it, when the queue says so)."""
    _settle(message, "reject")


def _settle(message: kombu.Message, how: str) -> None:
    try:
        getattr(message, how)()
    except CONNECTION_ERRORS as exc:
        log.debug("could not %s message %s: %r", how, message.delivery_tag, exc)
