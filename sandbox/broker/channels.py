"""Connections and channels: consumers, delivery tags, acknowledgements and prefetch.

A connection collects what the broker sends to the client (deliveries, returned
messages, consumer cancellations) in ``inbox`` and calls ``on_event`` for each, which is
how a transport wakes the client blocked on it.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partialmethod
from typing import TYPE_CHECKING, Any, NamedTuple

from amqp import spec
from amqp.exceptions import (
    AccessRefused,
    NotAllowed,
    PreconditionFailed,
    RecoverableConnectionError,
)

from .deadletter import REJECTED
from .fates import ACKED, DELIVERED, REQUEUED
from .queues import Entry, Message, Queue

if TYPE_CHECKING:
    from .core import Broker

NO_ROUTE = 312


@dataclass(frozen=True, slots=True)
class Delivery:
    """basic.deliver (``consumer_tag`` set) or basic.get-ok (``consumer_tag`` None)."""

    channel: Channel
    consumer_tag: str | None
    delivery_tag: int
    redelivered: bool
    message: Message
    message_count: int = 0


@dataclass(frozen=True, slots=True)
class Returned:
    """basic.return: a mandatory message that no queue took."""

    channel: Channel
    reply_code: int
    reply_text: str
    message: Message


@dataclass(frozen=True, slots=True)
class Published:
    """What became of a basic.publish.

    ``returned`` is the basic.return of a mandatory message that no queue took; ``nacked``
    says a queue's ``x-overflow: reject-publish`` refused it, which a publisher in confirm
    mode hears as basic.nack (and one without confirms never hears of).
    """

    returned: Returned | None = None
    nacked: bool = False


@dataclass(frozen=True, slots=True)
class Cancelled:
    """basic.cancel from the broker: the consumer's queue was deleted."""

    channel: Channel
    consumer_tag: str


Event = Delivery | Returned | Cancelled


class _Unacked(NamedTuple):
    queue: Queue
    entry: Entry
    consumer: BrokerConsumer | None  # None for basic.get


class BrokerConsumer:
    __slots__ = ("tag", "queue", "channel", "no_ack", "exclusive", "prefetch", "unacked")

    def __init__(
        self, tag: str, queue: Queue, channel: Channel, *, no_ack: bool, exclusive: bool
    ) -> None:
        self.tag = tag
        self.queue = queue
        self.channel = channel
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = channel.prefetch_count
        self.unacked = 0

    def has_room(self) -> bool:
        channel = self.channel
        if not channel.is_open or channel.connection.closed:
            return False  # a closing connection must not take back what it requeues
        if self.no_ack:
            return True  # RabbitMQ ignores prefetch for automatic acknowledgement
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return not channel.global_prefetch or channel.consumer_unacked < channel.global_prefetch


class Connection:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.channels: list[Channel] = []
        self.inbox: deque[Event] = deque()
        self.on_event: Callable[[], None] | None = None
        self.closed = False

    def channel(self) -> Channel:
        if self.closed:
            raise RecoverableConnectionError("connection already closed")
        channel = Channel(self)
        self.channels.append(channel)
        return channel

    def post(self, event: Event) -> None:
        self.inbox.append(event)
        if self.on_event is not None:
            self.on_event()

    def close(self) -> None:
        """Close all channels (requeueing their unacked messages), drop exclusive queues."""
        if self.closed:
            return
        self.closed = True
        for channel in list(self.channels):
            channel.close()
        self.broker.drop_connection(self)
        self.inbox.clear()
        if self.on_event is not None:
            self.on_event()  # a client blocked on the inbox must notice the close


class Channel:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.broker = connection.broker
        self.is_open = True
        self.consumers: dict[str, BrokerConsumer] = {}
        self.unacked: dict[int, _Unacked] = {}
        self.prefetch_count = 0  # per consumer, for consumers started from now on
        self.global_prefetch = 0
        self.consumer_unacked = 0  # consumer deliveries awaiting ack, for global_prefetch
        self._delivery_tags = itertools.count(1)

    def _live(self) -> Broker:
        if not self.is_open:
            raise RecoverableConnectionError("channel is closed")
        return self.broker

    # -- entities (owned by the broker; the channel adds the connection) -------------------

    def exchange_declare(self, exchange: str, type: str = "direct", **options: Any) -> None:
        """``options`` are :meth:`Broker.declare_exchange`'s (``passive``, ``durable``...)."""
        self._live().declare_exchange(exchange, type, **options)

    def exchange_delete(self, exchange: str, *, if_unused: bool = False) -> None:
        self._live().delete_exchange(exchange, if_unused=if_unused)

    def queue_declare(self, queue: str = "", **options: Any) -> tuple[str, int, int]:
        """``options`` are :meth:`Broker.declare_queue`'s (``passive``, ``exclusive``...)."""
        return self._live().declare_queue(queue, self.connection, **options)

    def _binding(
        self,
        bind: bool,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self._live().change_binding(bind, queue, exchange, routing_key, arguments, self.connection)

    # queue_bind(queue, exchange, routing_key="", arguments=None), and queue_unbind alike
    queue_bind = partialmethod(_binding, True)
    queue_unbind = partialmethod(_binding, False)

    def queue_purge(self, queue: str) -> int:
        return self._live().purge_queue(queue, self.connection)

    def queue_delete(self, queue: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        return self._live().delete_queue(
            queue, self.connection, if_unused=if_unused, if_empty=if_empty
        )

    # -- publishing and consuming ----------------------------------------------------------

    def basic_publish(
        self, message: Message, exchange: str = "", routing_key: str = "", mandatory: bool = False
    ) -> Published:
        """Publish; an unroutable mandatory message comes back as a ``Returned``.

        Handing the return or the nack to the client (now or on its next read) is the
        caller's choice, as it differs between confirm mode and plain publishing.
        """
        message = replace(message, exchange=exchange, routing_key=routing_key)
        routed, refused = self._live().publish(message)
        if routed or not mandatory:
            return Published(nacked=refused)
        return Published(returned=Returned(self, NO_ROUTE, "NO_ROUTE", message))

    def basic_consume(
        self,
        queue: str,
        consumer_tag: str = "",
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a consumer. Consumer arguments (``x-priority``...) are not implemented:
        any is refused, naming it, rather than ignored."""
        broker = self._live()
        source = broker.queue(queue, self.connection, spec.Basic.Consume)
        for name in arguments or {}:
            raise PreconditionFailed(
                f"PRECONDITION_FAILED - consumer argument '{name}' is not implemented by "
                "sandbox's embedded broker",
                spec.Basic.Consume,
            )
        tag = consumer_tag or f"amq.ctag-{secrets.token_urlsafe(16)}"
        if tag in self.consumers:
            raise NotAllowed(f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'")
        if source.consumers and (exclusive or any(c.exclusive for c in source.consumers)):
            raise AccessRefused(
                f"ACCESS_REFUSED - queue '{queue}' in vhost '{broker.vhost}' in exclusive use",
                spec.Basic.Consume,
            )
        consumer = BrokerConsumer(tag, source, self, no_ack=no_ack, exclusive=exclusive)
        source.add_consumer(consumer)
        self.consumers[tag] = consumer
        broker.touch(source)
        broker.dispatch(source)
        return tag

    def basic_cancel(self, consumer_tag: str) -> None:
        consumer = self.consumers.pop(consumer_tag, None)
        if consumer is None:
            return  # RabbitMQ answers cancel-ok for unknown tags too
        queue = consumer.queue
        queue.remove_consumer(consumer)
        if not self.broker.is_live(queue):
            return
        if queue.consumers:
            self.broker.dispatch(queue)  # a single active consumer's successor takes over
        elif queue.auto_delete:
            self.broker.remove_queue(queue)
        else:
            self.broker.touch(queue)

    def basic_get(self, queue: str, *, no_ack: bool = False) -> Delivery | None:
        broker = self._live()
        source = broker.queue(queue, self.connection, spec.Basic.Get)
        broker.touch(source)
        entry = broker.take(source)
        if entry is None:
            return None
        tag = next(self._delivery_tags)
        self._delivered(source, entry, None)
        if not no_ack:
            self.unacked[tag] = _Unacked(source, entry, None)
        return Delivery(self, None, tag, entry.redelivered, entry.message, len(source))

    def deliver(self, consumer: BrokerConsumer, queue: Queue, entry: Entry) -> None:
        """Called by the broker's dispatch: hand one message to one of our consumers."""
        tag = next(self._delivery_tags)
        self._delivered(queue, entry, consumer.tag)
        if not consumer.no_ack:
            self.unacked[tag] = _Unacked(queue, entry, consumer)
            consumer.unacked += 1
            self.consumer_unacked += 1
        self.connection.post(Delivery(self, consumer.tag, tag, entry.redelivered, entry.message))

    def _delivered(self, queue: Queue, entry: Entry, consumer_tag: str | None) -> None:
        queue.delivered += 1
        self.broker.fates.note(entry.message, DELIVERED, queue.name, consumer_tag)

    # -- acknowledgements and flow control -------------------------------------------------

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._settle(self._take(delivery_tag, multiple), requeue=None)

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self._settle(self._take(delivery_tag, False), requeue=requeue)

    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self._settle(self._take(delivery_tag, multiple), requeue=requeue)

    def basic_recover(self) -> None:
        """Requeue every unacknowledged message of this channel."""
        self._live()
        self._settle(self._take_all(), requeue=True)

    def basic_qos(self, prefetch_count: int, global_: bool = False) -> None:
        """RabbitMQ semantics: per new consumer, or for the whole channel if ``global_``."""
        self._live()
        if global_:
            self.global_prefetch = prefetch_count
        else:
            self.prefetch_count = prefetch_count
        self._dispatch_own()

    def close(self) -> None:
        """Cancel our consumers and requeue our unacked messages, as RabbitMQ does."""
        if not self.is_open:
            return
        self.is_open = False
        for tag in list(self.consumers):
            self.basic_cancel(tag)
        self._settle(self._take_all(), requeue=True)
        self.connection.channels.remove(self)

    def _take(self, delivery_tag: int, multiple: bool) -> list[_Unacked]:
        self._live()
        if multiple:
            tags = [t for t in self.unacked if delivery_tag == 0 or t <= delivery_tag]
        elif delivery_tag in self.unacked:
            tags = [delivery_tag]
        else:
            raise PreconditionFailed(
                f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}", spec.Basic.Ack
            )
        return [self.unacked.pop(t) for t in tags]

    def _take_all(self) -> list[_Unacked]:
        taken = list(self.unacked.values())
        self.unacked.clear()
        return taken

    def _settle(self, settled: Iterable[_Unacked], requeue: bool | None) -> None:
        """Requeue (True), dead-letter as rejected (False) or forget (None, an ack)."""
        returned: dict[Queue, list[Entry]] = {}
        fates = self.broker.fates
        for queue, entry, consumer in settled:
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
            if requeue is None:
                fates.note(entry.message, ACKED, queue.name)
            elif requeue:
                fates.note(entry.message, REQUEUED, queue.name)
            if requeue is not None and self.broker.is_live(queue):
                returned.setdefault(queue, []).append(entry)
        for queue, entries in returned.items():
            if requeue:
                queue.requeue(entries)
                self.broker.trim(queue)
                self.broker.dispatch(queue)
            else:
                self.broker.dead_letter(queue, entries, REJECTED)
        self._dispatch_own()  # freed prefetch room

    def _dispatch_own(self) -> None:
        for queue in {c.queue for c in self.consumers.values()}:
            if self.broker.is_live(queue):
                self.broker.dispatch(queue)
