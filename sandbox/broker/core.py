"""The broker of one virtual host: exchanges, queues, routing and delivery to consumers.

Errors are py-amqp's exception classes with RabbitMQ's reply texts, so code that handles
a real RabbitMQ failure handles the embedded broker's the same way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

from amqp import spec
from amqp.exceptions import (
    AccessRefused,
    InvalidCommand,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)

from . import clock as clocks
from .arguments import (
    EXCHANGE_ARGUMENTS,
    QUEUE_ARGUMENTS,
    check_equivalent,
    check_exchange_arguments,
    check_queue_arguments,
)
from .channels import BrokerConsumer, Cancelled, Connection
from .deadletter import EXPIRED, MAXLEN, REJECTED, dead_lettered, is_cycle
from .exchanges import EXCHANGE_TYPES, Exchange
from .fates import DIED, QUEUED, REFUSED, ROUTED, Fates
from .queues import Entry, Message, Queue

_PREDECLARED = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}

_INTEGER = re.compile(r"([+-]?[0-9]+)(.*)", re.DOTALL)


def _expiration_ms(message: Message) -> int | None:
    """The ``expiration`` property in milliseconds, refused as RabbitMQ refuses it."""
    value = message.properties.get("expiration")
    if value is None:
        return None
    text = str(value)
    match = _INTEGER.fullmatch(text)
    if match is None:
        problem = "no_integer"
    elif match[2]:
        problem = f'{{leftover_string,"{match[2]}"}}'
    elif int(match[1]) < 0:
        problem = f"{{value_negative,{int(match[1])}}}"
    else:
        return int(match[1])
    raise PreconditionFailed(
        f"PRECONDITION_FAILED - invalid expiration '{text}': {problem}", spec.Basic.Publish
    )


class Routing(NamedTuple):
    """What a publish did: whether any queue matched, whether any refused the message."""

    routed: bool
    refused: bool


class Broker:
    """One virtual host. Synchronous and single-threaded: callers serialise access.

    Time (message TTLs, ``x-expires``) comes from ``clock``, by default the clock installed
    in :mod:`sandbox.broker.clock` when the broker is created.
    """

    def __init__(self, vhost: str = "/", *, clock: clocks.Clock | None = None) -> None:
        self.vhost = vhost
        self.clock = clock or clocks.current()
        self.exchanges: dict[str, Exchange] = {
            name: Exchange(name, type, durable=True) for name, type in _PREDECLARED.items()
        }
        self.queues: dict[str, Queue] = {}
        self.connections: set[Connection] = set()
        self.fates = Fates()

    def connect(self) -> Connection:
        connection = Connection(self)
        self.connections.add(connection)
        return connection

    def close(self) -> None:
        """Close every connection and stop every timer."""
        for connection in list(self.connections):
            connection.close()
        for queue in self.queues.values():
            self._stop_timers(queue)

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
        arguments = dict(arguments or {})
        what = f"exchange '{name}' in vhost '{self.vhost}'"
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
            check_equivalent(
                what,
                [
                    ("type", exchange.type, type),
                    ("durable", exchange.durable, durable),
                    ("auto_delete", exchange.auto_delete, auto_delete),
                ]
                + [(k, exchange.arguments.get(k), arguments.get(k)) for k in EXCHANGE_ARGUMENTS],
                method,
            )
            check_exchange_arguments(what, arguments)
        elif name.startswith("amq."):
            raise AccessRefused(
                f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'",
                method,
            )
        elif type not in EXCHANGE_TYPES:
            raise InvalidCommand(f"COMMAND_INVALID - unknown exchange type '{type}'", method)
        else:
            check_exchange_arguments(what, arguments)
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
                self._check_redeclare(queue, durable, exclusive, auto_delete, arguments)
        else:
            if name.startswith("amq."):
                raise AccessRefused(
                    f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
                    method,
                )
            name = name or f"amq.gen-{secrets.token_urlsafe(16)}"
            check_queue_arguments(f"queue '{name}' in vhost '{self.vhost}'", arguments)
            queue = self.queues[name] = Queue(
                name,
                durable=durable,
                auto_delete=auto_delete,
                owner=connection if exclusive else None,
                arguments=arguments,
            )
        self.touch(queue)
        return queue.name, self.ready_count(queue), len(queue.consumers)

    def _check_redeclare(
        self,
        queue: Queue,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: Mapping[str, Any],
    ) -> None:
        method = spec.Queue.Declare
        what = f"queue '{queue.name}' in vhost '{self.vhost}'"
        if exclusive != queue.exclusive:
            raise ResourceLocked(
                f"RESOURCE_LOCKED - cannot obtain exclusive access to locked {what}. It could "
                "be originally declared on another connection or the exclusive property value "
                "does not match that of the original declaration.",
                method,
            )
        check_equivalent(
            what,
            [("durable", queue.durable, durable), ("auto_delete", queue.auto_delete, auto_delete)]
            + [(k, queue.arguments.get(k), arguments.get(k)) for k in QUEUE_ARGUMENTS],
            method,
        )
        check_queue_arguments(what, arguments)

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

    def change_binding(
        self,
        bind: bool,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: Mapping[str, Any] | None,
        connection: Connection,
    ) -> None:
        """``queue.bind`` (``bind`` true) or ``queue.unbind``, which may free an auto-delete
        exchange."""
        method = spec.Queue.Bind if bind else spec.Queue.Unbind
        if not bind and (queue not in self.queues or (exchange and exchange not in self.exchanges)):
            return  # RabbitMQ answers unbind-ok: there is nothing to unbind
        target = self.queue(queue, connection, method)
        source = self._bindable(exchange, method)
        if bind:
            source.bind(target.name, routing_key, arguments)
        else:
            source.unbind(target.name, routing_key, arguments)
            self._maybe_auto_delete(source)

    def purge_queue(self, name: str, connection: Connection) -> int:
        """Empty a queue; purged messages are not dead-lettered, as in RabbitMQ."""
        queue = self.queue(name, connection, spec.Queue.Purge)
        count = queue.purge()
        self._arm_ttl(queue)
        return count

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
        if if_empty and len(queue):
            raise PreconditionFailed(f"PRECONDITION_FAILED - {where} not empty", method)
        count = len(queue)
        self.remove_queue(queue)
        return count

    def remove_queue(self, queue: Queue) -> None:
        """Drop a queue with its bindings and messages (never dead-lettered, as in RabbitMQ,
        even when ``x-expires`` deletes it); its consumers get a cancel notification."""
        del self.queues[queue.name]
        self._stop_timers(queue)
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
        queue.purge()

    def drop_connection(self, connection: Connection) -> None:
        """Forget a closed connection and delete the exclusive queues it owned."""
        self.connections.discard(connection)
        for queue in [q for q in self.queues.values() if q.owner is connection]:
            self.remove_queue(queue)

    def is_live(self, queue: Queue) -> bool:
        return self.queues.get(queue.name) is queue

    # -- messages --------------------------------------------------------------------------

    def publish(self, message: Message) -> Routing:
        """Route a message to every matching queue (through alternate exchanges when none
        matches); ``refused`` when a queue's ``x-overflow`` turned it away."""
        ttl = _expiration_ms(message)
        if message.exchange:
            self.exchange(message.exchange, spec.Basic.Publish).published += 1
        targets = self._route(message)
        self.fates.note(message, ROUTED, detail=tuple(q.name for q in targets))
        now = self.clock.now()
        refused = False
        for queue in targets:
            refused = not self.enqueue(queue, message, now, ttl) or refused
        return Routing(bool(targets), refused)

    def _route(self, message: Message) -> list[Queue]:
        if not message.exchange:
            queue = self.queues.get(message.routing_key)
            return [queue] if queue is not None else []
        seen: set[str] = set()
        name: str | None = message.exchange
        while name is not None and name not in seen:
            seen.add(name)
            exchange = self.exchanges.get(name)
            if exchange is None:
                return []
            names = exchange.route(message.routing_key, message.headers)
            if names:
                return [self.queues[n] for n in names]
            name = exchange.alternate_exchange
        return []

    def enqueue(self, queue: Queue, message: Message, now: float, ttl: int | None) -> bool:
        """Hand ``message`` to ``queue``: straight to a consumer when none is waiting ahead
        of it, else into the queue. False when ``x-overflow`` refuses it."""
        entry = queue.entry(message, now, ttl)
        if queue.overflow != "drop-head" and queue.would_overflow(entry):
            self.fates.note(message, REFUSED, queue.name)
            if queue.overflow == "reject-publish-dlx":
                self.dead_letter(queue, [entry], MAXLEN)
            return False
        queue.received += 1
        consumer = None if len(queue) else queue.next_consumer(BrokerConsumer.has_room)
        if consumer is not None:
            consumer.channel.deliver(consumer, queue, entry)  # even with a TTL of 0
            return True
        self.fates.note(message, QUEUED, queue.name)
        queue.put(entry)
        self.trim(queue)
        self.dispatch(queue)
        return True

    def trim(self, queue: Queue) -> None:
        """Enforce ``x-max-length``(``-bytes``) with ``drop-head``: dead-letter from the head."""
        if queue.overflow != "drop-head":
            return  # the reject-publish modes refuse publishes; requeues may exceed the limit
        dropped: list[Entry] = []
        while queue.over_limit():
            entry = queue.pop()
            assert entry is not None  # over the limit means not empty
            dropped.append(entry)
        self.dead_letter(queue, dropped, MAXLEN)

    def dead_letter(self, queue: Queue, entries: list[Entry], reason: str) -> None:
        """Republish ``entries`` to the queue's dead-letter exchange, if it has one."""
        name = queue.dead_letter_exchange
        if name is not None and name and name not in self.exchanges:
            name = None  # a missing dead-letter exchange drops the messages as none does
        for entry in entries:
            self.fates.note(entry.message, DIED, queue.name, (reason, name))
        if name is None or not entries:
            return
        now, timestamp = self.clock.now(), self.clock.timestamp()
        for entry in entries:
            message = dead_lettered(
                entry.message, reason, queue.name, timestamp, name, queue.dead_letter_routing_key
            )
            deaths = message.headers["x-death"]
            for target in self._route(message):
                if reason == REJECTED or not is_cycle(target.name, deaths):
                    self.enqueue(target, message, now, None)

    def dispatch(self, queue: Queue) -> None:
        """Drop expired heads, push ready messages to consumers that have room, and set the
        timer for the next head to expire (the wake-up point)."""
        while (entry := self._live_head(queue)) is not None:
            consumer = queue.next_consumer(BrokerConsumer.has_room)
            if consumer is None:
                break
            queue.pop()
            consumer.channel.deliver(consumer, queue, entry)
        self._arm_ttl(queue)

    def take(self, queue: Queue) -> Entry | None:
        """The head message for basic.get, expired ones dead-lettered first."""
        entry = self._live_head(queue)
        if entry is not None:
            queue.pop()
        self._arm_ttl(queue)
        return entry

    def ready_count(self, queue: Queue) -> int:
        self._live_head(queue)
        return len(queue)

    def _live_head(self, queue: Queue) -> Entry | None:
        """The head once the expired messages in front are dead-lettered: like RabbitMQ,
        only the head expires, so a long-lived message shields those behind it."""
        now = self.clock.now()
        expired: list[Entry] = []
        while (head := queue.head()) is not None and head.expired(now):
            queue.pop()
            expired.append(head)
        self.dead_letter(queue, expired, EXPIRED)
        return head

    def _arm_ttl(self, queue: Queue) -> None:
        head = queue.head()
        due = head.expires_at if head is not None else None
        if due == queue.ttl_due:
            return
        if queue.ttl_timer is not None:
            queue.ttl_timer.cancel()
        queue.ttl_due = due
        queue.ttl_timer = None
        if due is not None:
            delay = max(due - self.clock.now(), 0.0)
            queue.ttl_timer = self.clock.call_later(delay, lambda: self._ttl_due(queue))

    def _ttl_due(self, queue: Queue) -> None:
        queue.ttl_timer = queue.ttl_due = None
        if self.is_live(queue):
            self.dispatch(queue)

    def touch(self, queue: Queue) -> None:
        """Restart the ``x-expires`` countdown, which only runs while nobody consumes."""
        if queue.expiry_timer is not None:
            queue.expiry_timer.cancel()
            queue.expiry_timer = None
        if queue.expires and not queue.consumers:
            queue.expiry_timer = self.clock.call_later(
                queue.expires / 1000, lambda: self._expire(queue)
            )

    def _expire(self, queue: Queue) -> None:
        queue.expiry_timer = None
        if self.is_live(queue) and not queue.consumers:
            self.remove_queue(queue)

    @staticmethod
    def _stop_timers(queue: Queue) -> None:
        for timer in (queue.expiry_timer, queue.ttl_timer):
            if timer is not None:
                timer.cancel()
        queue.expiry_timer = queue.ttl_timer = queue.ttl_due = None

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
