"""kombu transport for ``memory://``: the embedded broker of :mod:`sandbox.broker`.

``AMQP_URI=memory://`` means this transport wherever sandbox connects
(:func:`sandbox.amqp.connection.connect` picks it for the schemes in :data:`SCHEMES`), with
RabbitMQ semantics and consumers woken by the publish itself. kombu's own ``memory``
transport stays kombu's: other kombu or Celery code in the process gets it for
``memory://``. For kombu used directly, :func:`register` (run on import) adds the scheme
``sbmemory://``, or pass ``transport=Transport``.

The client side mirrors py-amqp where kombu users can see it: py-amqp's exceptions, the
property names in ``message.properties``, ``on_return(exc, exchange, routing_key, message)``
with an ``amqp.Message``, a channel reopened after a channel error. Deliveries wait in
the connection's inbox until :meth:`MemoryConnection.drain_events` picks them up; waiting there
is an eventlet wait on the calling thread's hub, never a sleep loop.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import amqp
import eventlet
from amqp import spec
from amqp.exceptions import (
    AMQPNotImplementedError,
    ConsumerCancelled,
    MessageNacked,
    RecoverableConnectionError,
    error_for_code,
)
from amqp.exceptions import ChannelError as AMQPChannelError
from amqp.protocol import queue_declare_ok_t
from kombu.transport import TRANSPORT_ALIASES, base

from sandbox import broker as embedded
from sandbox.amqp.limits import without_compression

# URI schemes that mean the embedded broker to sandbox; only the last is a kombu alias.
SCHEMES = ("memory", "sbmemory")


def _copied(value: Any) -> Any:
    """Copy a property value the way the wire would; deepcopy is several times slower."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def _decoded(body: bytes, encoding: str | None) -> bytes | str:
    """The body as py-amqp hands it over: text when its encoding is named and decodes it."""
    if encoding:
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            pass  # "binary", or a wrong name: py-amqp keeps the bytes too
    return body


def register() -> None:
    """Make kombu resolve ``sbmemory://`` to this transport (``memory://`` stays kombu's)."""
    TRANSPORT_ALIASES["sbmemory"] = f"{__name__}:Transport"


class MemoryMessage(base.Message):
    """A delivery as kombu sees it; with ``decompress=False`` its body as it came, for a
    consumer that opens it within limits (:mod:`sandbox.amqp.limits`)."""

    def __init__(
        self, delivery: embedded.Delivery, channel: MemoryChannel, decompress: bool = True
    ) -> None:
        raw = delivery.message
        # a private copy: several queues may hold the same published message
        properties = _copied(raw.properties)
        info: dict[str, Any] = {
            "delivery_tag": delivery.delivery_tag,
            "redelivered": delivery.redelivered,
            "exchange": raw.exchange,
            "routing_key": raw.routing_key,
        }
        if delivery.consumer_tag is None:
            info["message_count"] = delivery.message_count
        else:
            info["consumer_tag"] = delivery.consumer_tag
        headers = properties.get("application_headers") or {}
        super().__init__(
            body=_decoded(raw.body, properties.get("content_encoding")),
            channel=channel,
            delivery_tag=delivery.delivery_tag,
            content_type=properties.get("content_type"),
            content_encoding=properties.get("content_encoding"),
            delivery_info=info,
            properties=properties,
            headers=headers if decompress else without_compression(headers),
        )
        self.headers = headers


class MemoryChannel(base.StdChannel):
    Message = MemoryMessage

    def __init__(self, connection: MemoryConnection, channel_id: int) -> None:
        self.connection = connection
        self.channel_id = channel_id
        self.is_open = True
        self.events: defaultdict[str, set[Callable]] = defaultdict(set)
        self.callbacks: dict[str, Callable] = {}
        self.cancel_callbacks: dict[str, Callable] = {}
        self.no_ack_consumers: set[str] = set()
        self.confirm = bool(connection.client.transport_options.get("confirm_publish"))
        self._core = connection.open_core(self)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._core, method)(*args, **kwargs)
        except AMQPChannelError:
            # the broker closes a channel on a channel error; py-amqp reopens it and raises
            self.connection.forget(self._core)
            self._core.close()
            self._core = self.connection.open_core(self)
            raise

    # -- entities --------------------------------------------------------------------------
    # py-amqp's entity methods, keyword options as there; ``nowait`` changes nothing, as the
    # embedded broker answers at once. Unlike the broker's own, auto_delete defaults to True.

    def exchange_declare(
        self, exchange: str, type: str, *, nowait: bool = False, **options: Any
    ) -> None:
        """``options``: ``passive``, ``durable``, ``auto_delete`` and ``arguments``."""
        self._call("exchange_declare", exchange, type, **{"auto_delete": True, **options})

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        self._call("exchange_delete", exchange, if_unused=if_unused)

    def queue_declare(
        self, queue: str = "", *, nowait: bool = False, **options: Any
    ) -> queue_declare_ok_t:
        """``options``: ``passive``, ``durable``, ``exclusive``, ``auto_delete`` and
        ``arguments``."""
        declared = self._call("queue_declare", queue, **{"auto_delete": True, **options})
        return queue_declare_ok_t(*declared)

    def queue_bind(
        self,
        queue: str,
        exchange: str = "",
        routing_key: str = "",
        nowait: bool = False,
        arguments: dict | None = None,
    ) -> None:
        self._call("queue_bind", queue, exchange, routing_key, arguments)

    def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        nowait: bool = False,
        arguments: dict | None = None,
    ) -> None:
        self._call("queue_unbind", queue, exchange, routing_key, arguments)

    def queue_purge(self, queue: str = "", nowait: bool = False) -> int:
        return self._call("queue_purge", queue)

    def queue_delete(
        self, queue: str = "", if_unused: bool = False, if_empty: bool = False, nowait: bool = False
    ) -> int:
        return self._call("queue_delete", queue, if_unused=if_unused, if_empty=if_empty)

    def prepare_queue_arguments(self, arguments: dict, **kwargs: Any) -> dict:
        # Queue(expires=..., message_ttl=..., max_length=...) -> x-arguments, as for RabbitMQ
        return base.to_rabbitmq_queue_arguments(arguments, **kwargs)

    # -- publishing ------------------------------------------------------------------------

    def prepare_message(
        self,
        body: bytes | str,
        priority: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: dict | None = None,
        properties: dict | None = None,
    ) -> embedded.Message:
        props = {
            "priority": priority,
            "content_type": content_type,
            "content_encoding": content_encoding,
            "application_headers": headers,
            **(properties or {}),
        }
        if isinstance(body, str):  # py-amqp encodes text bodies the same way
            props["content_encoding"] = props["content_encoding"] or "utf-8"
            body = body.encode(props["content_encoding"])
        # copied now, as the wire would: the publisher may reuse its dicts
        props = _copied({k: v for k, v in props.items() if v is not None})
        return embedded.Message(body, props)

    def basic_publish(
        self,
        msg: embedded.Message,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        if immediate:
            raise AMQPNotImplementedError("immediate=True is not supported (nor by RabbitMQ)")
        published = self._call("basic_publish", msg, exchange, routing_key, mandatory)
        if published.returned is not None:
            if self.confirm:  # py-amqp reads the return while waiting for the confirm
                self.handle(published.returned)
            else:
                self.connection.core.post(published.returned)
        if published.nacked and self.confirm:
            raise MessageNacked()  # what py-amqp raises on a basic.nack

    def confirm_select(self, nowait: bool = False) -> None:
        """Publishes are confirmed by the time they return; only returns change timing."""
        self.confirm = True

    # -- consuming -------------------------------------------------------------------------

    def basic_consume(
        self,
        queue: str = "",
        consumer_tag: str = "",
        no_local: bool = False,
        no_ack: bool = False,
        exclusive: bool = False,
        nowait: bool = False,
        callback: Callable | None = None,
        arguments: dict | None = None,
        on_cancel: Callable | None = None,
    ) -> str:
        tag = self._call(
            "basic_consume",
            queue,
            consumer_tag,
            no_ack=no_ack,
            exclusive=exclusive,
            arguments=arguments,
        )
        if callback is not None:
            self.callbacks[tag] = callback
        if on_cancel is not None:
            self.cancel_callbacks[tag] = on_cancel
        if no_ack:
            self.no_ack_consumers.add(tag)
        return tag

    def basic_cancel(self, consumer_tag: str, nowait: bool = False) -> None:
        self._call("basic_cancel", consumer_tag)
        self._forget_consumer(consumer_tag)

    def basic_get(self, queue: str = "", no_ack: bool = False) -> embedded.Delivery | None:
        return self._call("basic_get", queue, no_ack=no_ack)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._call("basic_ack", delivery_tag, multiple)

    def basic_reject(self, delivery_tag: int, requeue: bool) -> None:
        self._call("basic_reject", delivery_tag, requeue)

    def basic_recover(self, requeue: bool = False) -> None:
        self._call("basic_recover")

    def basic_qos(self, prefetch_size: int, prefetch_count: int, a_global: bool) -> None:
        self._call("basic_qos", prefetch_count, a_global)

    def message_to_python(
        self, raw_message: embedded.Delivery, decompress: bool = True
    ) -> MemoryMessage:
        return self.Message(raw_message, self, decompress)

    def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        self.connection.forget(self._core)
        self._core.close()
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.no_ack_consumers.clear()
        self.events.clear()

    # -- what the broker sent ---------------------------------------------------------------

    def handle(self, event: embedded.Event) -> None:
        if isinstance(event, embedded.Delivery):
            callback = self.callbacks.get(event.consumer_tag)
            if callback is not None:
                callback(event)
            elif event.delivery_tag in self._core.unacked:
                # a delivery that raced the cancel of its consumer: give it back, as py-amqp
                self._core.basic_reject(event.delivery_tag, requeue=True)
        elif isinstance(event, embedded.Returned):
            self._on_return(event)
        else:
            self._forget_consumer(event.consumer_tag)
            on_cancel = self.cancel_callbacks.pop(event.consumer_tag, None)
            if on_cancel is None:
                raise ConsumerCancelled(event.consumer_tag, spec.Basic.Cancel)
            on_cancel(event.consumer_tag)

    def _on_return(self, returned: embedded.Returned) -> None:
        exc = error_for_code(
            returned.reply_code, returned.reply_text, spec.Basic.Return, AMQPChannelError
        )
        handlers = self.events.get("basic_return")
        if not handlers:
            raise exc
        raw = returned.message
        properties = _copied(raw.properties)
        body = _decoded(raw.body, properties.get("content_encoding"))
        message = amqp.Message(body, channel=self, **properties)
        for handler in list(handlers):
            handler(exc, raw.exchange, raw.routing_key, message)

    def _forget_consumer(self, consumer_tag: str) -> None:
        self.callbacks.pop(consumer_tag, None)
        self.no_ack_consumers.discard(consumer_tag)


class MemoryConnection:
    """The client end of one broker connection."""

    def __init__(self, client: Any, broker: embedded.Broker) -> None:
        self.client = client
        self.core = broker.connect()
        self.core.on_event = self._wake
        self._channels: dict[embedded.Channel, MemoryChannel] = {}
        self._channel_ids = itertools.count(1)
        self._waiters: list[eventlet.Event] = []

    @property
    def connected(self) -> bool:
        return not self.core.closed

    def channel(self) -> MemoryChannel:
        return MemoryChannel(self, next(self._channel_ids))

    def open_core(self, channel: MemoryChannel) -> embedded.Channel:
        core = self.core.channel()
        self._channels[core] = channel
        return core

    def forget(self, core: embedded.Channel) -> None:
        self._channels.pop(core, None)

    def drain_events(self, timeout: float | None = None) -> None:
        """Handle one event from the broker, waiting up to ``timeout`` seconds for it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._next_event(deadline)
            channel = self._channels.get(event.channel)
            if channel is not None:  # else: sent to a channel closed since
                channel.handle(event)
                return

    def _next_event(self, deadline: float | None) -> embedded.Event:
        inbox = self.core.inbox
        while not inbox:
            if self.core.closed:
                raise RecoverableConnectionError("connection already closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("timed out")  # socket.timeout, as kombu expects
            waiter = eventlet.Event()
            self._waiters.append(waiter)
            try:
                waiter.wait(remaining)
            finally:
                self._waiters.remove(waiter)
        return inbox.popleft()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.ready():
                waiter.send(True)

    def close(self) -> None:
        for channel in list(self._channels.values()):
            channel.close()
        self.core.close()


class Transport(base.Transport):
    Connection = MemoryConnection

    driver_type = "memory"
    driver_name = "sandbox-broker"

    connection_errors = amqp.Connection.connection_errors
    channel_errors = amqp.Connection.channel_errors
    recoverable_connection_errors = amqp.Connection.recoverable_connection_errors
    recoverable_channel_errors = amqp.Connection.recoverable_channel_errors

    implements = base.Transport.implements.extend(
        asynchronous=False,
        heartbeats=False,
        exchange_type=embedded.EXCHANGE_TYPES,
    )

    def establish_connection(self) -> MemoryConnection:
        return self.Connection(self.client, embedded.get_broker(self.client.virtual_host or "/"))

    def close_connection(self, connection: MemoryConnection) -> None:
        connection.close()

    def create_channel(self, connection: MemoryConnection) -> MemoryChannel:
        return connection.channel()

    def drain_events(self, connection: MemoryConnection, timeout: float | None = None) -> None:
        connection.drain_events(timeout=timeout)

    def verify_connection(self, connection: MemoryConnection) -> bool:
        return connection.connected


register()
