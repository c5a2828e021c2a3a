"""Messages and queues: storage order, priorities, length limits and consumer rotation.

A queue keeps its ready messages in one FIFO per priority (one in all unless it has
``x-max-priority``); its head is the oldest message of the highest priority, which is both
the next one delivered and the one ``drop-head`` and TTL expiry look at. Acting on what
the queue holds (dead-lettering, timers) is the broker's business.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .channels import BrokerConsumer, Connection
    from .clock import TimerHandle


@dataclass(frozen=True, slots=True)
class Message:
    """A message as published: the encoded body and the AMQP basic properties.

    Property names are py-amqp's (``application_headers`` holds the headers).
    """

    body: bytes
    properties: Mapping[str, Any]
    exchange: str = ""
    routing_key: str = ""

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.get("application_headers") or {}


@dataclass(slots=True)
class Entry:
    """A message held by one queue (ready, or delivered and not yet settled)."""

    message: Message
    expires_at: float | None
    seq: int = 0  # arrival order: a requeued message goes back to its place
    level: int = 0  # priority, capped at the queue's x-max-priority
    redelivered: bool = False
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.message.body)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Queue:
    def __init__(
        self,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        owner: Connection | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """``arguments`` must be valid (see :mod:`sandbox.broker.arguments`)."""
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.owner = owner  # set for exclusive queues
        args = self.arguments = dict(arguments or {})
        self.message_ttl: int | None = args.get("x-message-ttl")
        self.expires: int | None = args.get("x-expires")
        self.max_length: int | None = args.get("x-max-length")
        self.max_length_bytes: int | None = args.get("x-max-length-bytes")
        self.max_priority: int = args.get("x-max-priority") or 0
        self.overflow: str = _text(args.get("x-overflow", "drop-head"))
        dlx = args.get("x-dead-letter-exchange")
        self.dead_letter_exchange = None if dlx is None else _text(dlx)
        dlrk = args.get("x-dead-letter-routing-key")
        self.dead_letter_routing_key = None if dlrk is None else _text(dlrk)
        self.single_active_consumer = bool(args.get("x-single-active-consumer", False))
        self._levels: list[deque[Entry]] = [deque() for _ in range(self.max_priority + 1)]
        self._ready = 0
        self.ready_bytes = 0
        self._arrivals = itertools.count()
        self.consumers: list[BrokerConsumer] = []
        self.had_consumers = False
        self.received = 0  # messages taken in, and handed to consumers: counts for watchers
        self.delivered = 0
        self.expiry_timer: TimerHandle | None = None  # x-expires
        self.ttl_timer: TimerHandle | None = None  # expiry of the head message
        self.ttl_due: float | None = None
        self._cursor = 0

    @property
    def exclusive(self) -> bool:
        return self.owner is not None

    # -- ready messages ---------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of ready messages."""
        return self._ready

    def entry(self, message: Message, now: float, ttl_ms: int | None) -> Entry:
        """A new entry for ``message``, expiring after the shorter of the queue's and the
        message's TTL."""
        ttls = [t for t in (self.message_ttl, ttl_ms) if t is not None]
        priority = message.properties.get("priority")
        level = priority if isinstance(priority, int) and priority > 0 else 0
        return Entry(
            message,
            now + min(ttls) / 1000 if ttls else None,
            seq=next(self._arrivals),
            level=min(level, self.max_priority),
        )

    def put(self, entry: Entry) -> None:
        self._levels[entry.level].append(entry)
        self._counted(entry, 1)

    def head(self) -> Entry | None:
        """The next message out: the oldest of the highest priority."""
        for level in reversed(self._levels):
            if level:
                return level[0]
        return None

    def pop(self) -> Entry | None:
        for level in reversed(self._levels):
            if level:
                entry = level.popleft()
                self._counted(entry, -1)
                return entry
        return None

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put entries back where they were among the ready messages, as RabbitMQ does."""
        for entry in entries:
            entry.redelivered = True
            level = self._levels[entry.level]
            if not level or entry.seq < level[0].seq:
                level.appendleft(entry)
            else:
                level.insert(bisect.bisect(level, entry.seq, key=lambda e: e.seq), entry)
            self._counted(entry, 1)

    def over_limit(self) -> bool:
        """More ready messages (or bytes) than ``x-max-length`` (``-bytes``) allows."""
        return (self.max_length is not None and self._ready > self.max_length) or (
            self.max_length_bytes is not None and self.ready_bytes > self.max_length_bytes
        )

    def would_overflow(self, entry: Entry) -> bool:
        """Whether taking ``entry`` would break a length limit (for ``reject-publish``)."""
        return (self.max_length is not None and self._ready + 1 > self.max_length) or (
            self.max_length_bytes is not None
            and self.ready_bytes + entry.size > self.max_length_bytes
        )

    def purge(self) -> int:
        count = self._ready
        for level in self._levels:
            level.clear()
        self._ready = self.ready_bytes = 0
        return count

    def _counted(self, entry: Entry, sign: int) -> None:
        self._ready += sign
        self.ready_bytes += sign * entry.size

    # -- consumers --------------------------------------------------------------------------

    def add_consumer(self, consumer: BrokerConsumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True

    def remove_consumer(self, consumer: BrokerConsumer) -> None:
        index = self.consumers.index(consumer)
        del self.consumers[index]
        if index < self._cursor:
            self._cursor -= 1
        if self._cursor >= len(self.consumers):
            self._cursor = 0

    def next_consumer(self, can_take: Callable[[BrokerConsumer], bool]) -> BrokerConsumer | None:
        """The next consumer in round-robin order that has room for a message; with
        ``x-single-active-consumer``, the oldest consumer or nobody."""
        if self.single_active_consumer:
            active = self.consumers[:1]
            return active[0] if active and can_take(active[0]) else None
        count = len(self.consumers)
        for step in range(count):
            index = (self._cursor + step) % count
            consumer = self.consumers[index]
            if can_take(consumer):
                self._cursor = (index + 1) % count
                return consumer
        return None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} messages={self._ready}>"
