"""Messages and queues: storage order, TTL, length limit and consumer rotation."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .channels import Connection, Consumer
    from .core import TimerHandle

# Queue arguments compared on redeclare, as RabbitMQ does for the ones it knows.
KNOWN_ARGUMENTS = ("x-expires", "x-message-ttl", "x-max-length")


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
    """A message waiting in one queue."""

    message: Message
    expires_at: float | None
    redelivered: bool = False

    def expired(self, now: float) -> bool:
        # strictly before now: a TTL of 0 still reaches a consumer that is ready at once
        return self.expires_at is not None and self.expires_at < now


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
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.owner = owner  # set for exclusive queues
        self.arguments = dict(arguments or {})
        self.message_ttl: int | None = self.arguments.get("x-message-ttl")
        self.max_length: int | None = self.arguments.get("x-max-length")
        self.expires: int | None = self.arguments.get("x-expires")
        self.messages: deque[Entry] = deque()
        self.consumers: list[Consumer] = []
        self.had_consumers = False
        self.expiry_timer: TimerHandle | None = None
        self._cursor = 0

    @property
    def exclusive(self) -> bool:
        return self.owner is not None

    def put(self, message: Message, now: float, ttl_ms: int | None) -> None:
        ttls = [t for t in (self.message_ttl, ttl_ms) if t is not None]
        expires_at = now + min(ttls) / 1000 if ttls else None
        self.messages.append(Entry(message, expires_at))
        if self.max_length is not None:
            # RabbitMQ's default overflow policy: drop from the head
            while len(self.messages) > self.max_length:
                self.messages.popleft()

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put entries back at the head, keeping their relative order."""
        for entry in reversed(list(entries)):
            entry.redelivered = True
            self.messages.appendleft(entry)

    def pop(self, now: float) -> Entry | None:
        self._drop_expired(now)
        return self.messages.popleft() if self.messages else None

    def message_count(self, now: float) -> int:
        self._drop_expired(now)
        return len(self.messages)

    def _drop_expired(self, now: float) -> None:
        # Like RabbitMQ, only the head is checked: a long-lived message shields later ones.
        while self.messages and self.messages[0].expired(now):
            self.messages.popleft()

    def purge(self) -> int:
        count = len(self.messages)
        self.messages.clear()
        return count

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True

    def remove_consumer(self, consumer: Consumer) -> None:
        index = self.consumers.index(consumer)
        del self.consumers[index]
        if index < self._cursor:
            self._cursor -= 1
        if self._cursor >= len(self.consumers):
            self._cursor = 0

    def next_consumer(self, can_take: Callable[[Consumer], bool]) -> Consumer | None:
        """The next consumer in round-robin order that has room for a message."""
        count = len(self.consumers)
        for step in range(count):
            index = (self._cursor + step) % count
            consumer = self.consumers[index]
            if can_take(consumer):
                self._cursor = (index + 1) % count
                return consumer
        return None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} messages={len(self.messages)}>"
