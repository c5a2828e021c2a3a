"""The broker of one virtual host: exchanges, queues, routing and delivery to consumers.

Errors are py-amqp's exception classes with RabbitMQ's reply texts, so code that handles
a real RabbitMQ failure handles the embedded broker's the same way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from amqp import spec
from amqp.exceptions import (
    AccessRefused,
    InvalidCommand,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)

from .channels import Cancelled, Connection, Consumer
from .exchanges import EXCHANGE_TYPES, Exchange
from .queues import KNOWN_ARGUMENTS, Message, Queue


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], TimerHandle]

_PREDECLARED = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}


def _expiration_ms(message: Message) -> int | None:
    value = message.properties.get("expiration")
    if value is None:
        return None
    try:
        ms = int(value)
    except (TypeError, ValueError):
        ms = -1
    if ms < 0:
        raise PreconditionFailed(
            f"PRECONDITION_FAILED - invalid expiration '{value}'", spec.Basic.Publish
        )
    return ms


class Broker:
    """One virtual host. Synchronous and single-threaded: callers serialise access.

    ``call_later(seconds, fn)`` schedules ``x-expires`` timers and ``clock()`` times
    message TTLs; both are injectable so the broker runs without an event loop in tests.
    """

    def __init__(
        self,
        vhost: str = "/",
        *,
        call_later: CallLater,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vhost = vhost
        self.clock = clock
        self._call_later = call_later
        self.exchanges: dict[str, Exchange] = {
            name: Exchange(name, type, durable=True) for name, type in _PREDECLARED.items()
        }
        self.queues: dict[str, Queue] = {}
        self.connections: set[Connection] = set()

    def connect(self) -> Connection:
        connection = Connection(self)
        self.connections.add(connection)
        return connection

    def close(self) -> None:
        """Close every connection and stop every timer."""
        for connection in list(self.connections):
            connection.close()
        for queue in self.queues.values():
            self._stop_expiry(queue)

    # -- exchanges -------------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type: str = "direct",
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        method = spec.Exchange.Declare
        if not name:
            if passive:
                return
            raise AccessRefused(
                "ACCESS_REFUSED - operation not permitted on the default exchange", method
            )
        exchange = self.exchanges.get(name)
        if passive:
            self.exchange(name, method)
        elif exchange is not None:
            self._check_equivalent(
                f"exchange '{name}'",
                [
                    ("type", exchange.type, type),
                    ("durable", exchange.durable, durable),
                    ("auto_delete", exchange.auto_delete, auto_delete),
                ],
            )
        elif name.startswith("amq."):
            raise AccessRefused(
                f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'",
                method,
            )
        elif type not in EXCHANGE_TYPES:
            raise InvalidCommand(f"COMMAND_INVALID - unknown exchange type '{type}'", method)
        else:
            self.exchanges[name] = Exchange(
                name, type, durable=durable, auto_delete=auto_delete, arguments=arguments
            )

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        method = spec.Exchange.Delete
        if not name or name.startswith("amq."):
            raise AccessRefused(
                f"ACCESS_REFUSED - operation not permitted on exchange '{name}'", method
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise PreconditionFailed(
                f"PRECONDITION_FAILED - exchange '{name}' in vhost '{self.vhost}' in use", method
            )
        del self.exchanges[name]

    def exchange(self, name: str, method: tuple = spec.Exchange.Declare) -> Exchange:
        try:
            return self.exchanges[name]
        except KeyError:
            raise NotFound(
                f"NOT_FOUND - no exchange '{name}' in vhost '{self.vhost}'", method
            ) from None

    # -- queues ----------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        connection: Connection,
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> tuple[str, int, int]:
        """Declare a queue; returns ``(name, message_count, consumer_count)``."""
        method = spec.Queue.Declare
        arguments = dict(arguments or {})
        queue = self.queues.get(name) if name else None
        if passive or queue is not None:
            queue = self.queue(name, connection, method)
            if not passive:
                self._check_equivalent(
                    f"queue '{name}'",
                    [
                        ("durable", queue.durable, durable),
                        ("exclusive", queue.exclusive, exclusive),
                        ("auto_delete", queue.auto_delete, auto_delete),
                    ]
                    + [(k, queue.arguments.get(k), arguments.get(k)) for k in KNOWN_ARGUMENTS],
                )
        else:
            if name.startswith("amq."):
                raise AccessRefused(
                    f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
                    method,
                )
            self._check_arguments(name, arguments)
            name = name or f"amq.gen-{secrets.token_urlsafe(16)}"
            queue = self.queues[name] = Queue(
                name,
                durable=durable,
                auto_delete=auto_delete,
                owner=connection if exclusive else None,
                arguments=arguments,
            )
        self.touch(queue)
        return queue.name, queue.message_count(self.clock()), len(queue.consumers)

    def queue(self, name: str, connection: Connection, method: tuple) -> Queue:
        """Look a queue up on behalf of ``connection``, enforcing exclusivity."""
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"NOT_FOUND - no queue '{name}' in vhost '{self.vhost}'", method)
        if queue.owner is not None and queue.owner is not connection:
            raise ResourceLocked(
                f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' "
                f"in vhost '{self.vhost}'",
                method,
            )
        return queue

    def bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: Mapping[str, Any] | None,
        connection: Connection,
    ) -> None:
        method = spec.Queue.Bind
        target = self.queue(queue, connection, method)
        self._bindable(exchange, method).bind(target.name, routing_key, arguments)

    def unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: Mapping[str, Any] | None,
        connection: Connection,
    ) -> None:
        method = spec.Queue.Unbind
        if queue not in self.queues or (exchange and exchange not in self.exchanges):
            return  # RabbitMQ answers unbind-ok: there is nothing to unbind
        target = self.queue(queue, connection, method)
        source = self._bindable(exchange, method)
        source.unbind(target.name, routing_key, arguments)
        self._maybe_auto_delete(source)

    def purge_queue(self, name: str, connection: Connection) -> int:
        return self.queue(name, connection, spec.Queue.Purge).purge()

    def delete_queue(
        self,
        name: str,
        connection: Connection,
        *,
        if_unused: bool = False,
        if_empty: bool = False,
    ) -> int:
        """Delete a queue (a missing one is fine, as in RabbitMQ); returns its message count."""
        method = spec.Queue.Delete
        if name not in self.queues:
            return 0
        queue = self.queue(name, connection, method)
        where = f"queue '{name}' in vhost '{self.vhost}'"
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"PRECONDITION_FAILED - {where} in use", method)
        if if_empty and queue.messages:
            raise PreconditionFailed(f"PRECONDITION_FAILED - {where} not empty", method)
        count = len(queue.messages)
        self.remove_queue(queue)
        return count

    def remove_queue(self, queue: Queue) -> None:
        """Drop a queue with its bindings; its consumers get a cancel notification."""
        del self.queues[queue.name]
        self._stop_expiry(queue)
        for exchange in list(self.exchanges.values()):
            bound = len(exchange.bindings)
            exchange.unbind_queue(queue.name)
            if len(exchange.bindings) != bound:
                self._maybe_auto_delete(exchange)
        for consumer in queue.consumers:
            channel = consumer.channel
            channel.consumers.pop(consumer.tag, None)
            channel.connection.post(Cancelled(channel, consumer.tag))
        queue.consumers.clear()
        queue.messages.clear()

    def drop_connection(self, connection: Connection) -> None:
        """Forget a closed connection and delete the exclusive queues it owned."""
        self.connections.discard(connection)
        for queue in [q for q in self.queues.values() if q.owner is connection]:
            self.remove_queue(queue)

    def is_live(self, queue: Queue) -> bool:
        return self.queues.get(queue.name) is queue

    # -- messages --------------------------------------------------------------------------

    def publish(self, message: Message) -> bool:
        """Route a message to every matching queue; False when no queue matched."""
        ttl = _expiration_ms(message)
        if message.exchange:
            exchange = self.exchange(message.exchange, spec.Basic.Publish)
            names = exchange.route(message.routing_key, message.headers)
        else:
            names = [message.routing_key] if message.routing_key in self.queues else []
        now = self.clock()
        for name in names:
            queue = self.queues[name]
            queue.put(message, now, ttl)
            self.dispatch(queue)
        return bool(names)

    def dispatch(self, queue: Queue) -> None:
        """Push ready messages to consumers that have room (the wake-up point)."""
        now = self.clock()
        while queue.consumers and queue.message_count(now):
            consumer = queue.next_consumer(Consumer.has_room)
            if consumer is None:
                return
            entry = queue.pop(now)
            assert entry is not None  # message_count just dropped expired heads
            consumer.channel.deliver(consumer, queue, entry)

    def touch(self, queue: Queue) -> None:
        """Restart the ``x-expires`` countdown, which only runs while nobody consumes."""
        self._stop_expiry(queue)
        if queue.expires and not queue.consumers:
            queue.expiry_timer = self._call_later(queue.expires / 1000, lambda: self._expire(queue))

    def _expire(self, queue: Queue) -> None:
        queue.expiry_timer = None
        if self.is_live(queue) and not queue.consumers:
            self.remove_queue(queue)

    @staticmethod
    def _stop_expiry(queue: Queue) -> None:
        if queue.expiry_timer is not None:
            queue.expiry_timer.cancel()
            queue.expiry_timer = None

    # -- helpers ---------------------------------------------------------------------------

    def _bindable(self, exchange: str, method: tuple) -> Exchange:
        if not exchange:
            raise AccessRefused(
                "ACCESS_REFUSED - operation not permitted on the default exchange", method
            )
        return self.exchange(exchange, method)

    def _maybe_auto_delete(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings:
            self.exchanges.pop(exchange.name, None)

    def _check_equivalent(self, what: str, pairs: Iterable[tuple[str, Any, Any]]) -> None:
        for arg, current, received in pairs:
            if current != received:
                raise PreconditionFailed(
                    f"PRECONDITION_FAILED - inequivalent arg '{arg}' for {what} in vhost "
                    f"'{self.vhost}': received {received!r} but current is {current!r}",
                    spec.Queue.Declare if what.startswith("queue") else spec.Exchange.Declare,
                )

    def _check_arguments(self, name: str, arguments: Mapping[str, Any]) -> None:
        for key, minimum in (("x-expires", 1), ("x-message-ttl", 0), ("x-max-length", 0)):
            value = arguments.get(key)
            if value is not None and (not isinstance(value, int) or value < minimum):
                raise PreconditionFailed(
                    f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{name}' in vhost "
                    f"'{self.vhost}': {value!r}",
                    spec.Queue.Declare,
                )
