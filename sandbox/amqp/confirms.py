"""Pipelined publisher confirms: many publishes in flight on one channel, each waiting for its own.

A publish that waits for its confirm before the next goes out pays a broker round trip (and,
for persistent messages, a disk write) per message. Here any number of green threads publish
on one channel in confirm mode at once, and each still returns only once the broker confirmed
its own message:

* a publish takes the channel's next delivery tag as its frames join the outgoing buffer, and
  one green thread writes the buffer in order, so tags and the wire agree;
* one green thread reads the connection while confirms are awaited, and hands each ack, nack
  or return to the publish it belongs to;
* a connection that fails fails every publish still waiting: none is reported confirmed.

A return carries no delivery tag. RabbitMQ sends it before the confirm of the same message,
so it is held until a confirm settles a mandatory message of the same exchange, routing key
and body.

Used in the hub thread only, like the connections of :mod:`sandbox.amqp.transport`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import amqp
import eventlet
import eventlet.event
import kombu
from amqp.exceptions import MessageNacked

Returned = tuple[Exception, str, str]


class PendingConfirm:
    """A published message waiting for the broker's word on it."""

    __slots__ = ("_outcome", "returnable", "notify")

    def __init__(self, returnable: tuple[str, str, bytes] | None):
        # (exchange, routing key, body) of a mandatory message: what its return would show.
        self.returnable = returnable
        self._outcome = eventlet.event.Event()
        # Told ``(returned, error)`` as it settles, in the hub, instead of a green thread
        # waiting: for a publish that a plain thread waits for.
        self.notify: Callable[[Returned | None, BaseException | None], None] | None = None

    def wait(self) -> Returned | None:
        """Until confirmed: None, or what the return said; raises on a nack or a failure."""
        return self._outcome.wait()

    def settle(self, returned: Returned | None) -> None:
        self._outcome.send(returned)
        if self.notify is not None:
            self.notify(returned, None)

    def fail(self, exc: BaseException) -> None:
        self._outcome.send_exception(exc)
        if self.notify is not None:
            self.notify(None, exc)


class ConfirmPipeline:
    """One connection with a publishing channel in confirm mode, shared by many green threads.

    :meth:`publish` queues a message's frames and returns its :class:`PendingConfirm`; the
    caller waits on it. ``known`` is for the publisher: what it made sure exists (exchanges,
    declared entities) since this connection opened, so a broker restart forgets it.
    """

    def __init__(self, connection: kombu.Connection):
        self.connection = connection
        self.channel = connection.channel()
        self.channel.confirm_select()
        for event, callback in (
            ("basic_ack", self._on_ack),
            ("basic_nack", self._on_nack),
            ("basic_return", self._on_return),
        ):
            self.channel.events[event].add(callback)
        self.known: set[Any] = set()
        self.broken: BaseException | None = None
        self._tags = itertools.count(1)
        self._waiting: dict[int, PendingConfirm] = {}
        self._returns: list[tuple[tuple[str, str, bytes], Returned]] = []
        self._outgoing: list[bytes] = []
        self._writer: Any = None
        self._reader: Any = None

    def publish(self, frames: bytes, returnable: tuple[str, str, bytes] | None) -> PendingConfirm:
        """Queue a Basic.Publish's frames; ``returnable`` as :class:`PendingConfirm` takes it."""
        if self.broken is not None:
            raise amqp.RecoverableConnectionError(f"connection lost: {self.broken!r}")
        pending = self._waiting[next(self._tags)] = PendingConfirm(returnable)
        self._outgoing.append(frames)
        # Spawned, not run here: the publishes of this hub turn go out in one write.
        if self._writer is None:
            self._writer = eventlet.spawn(self._write)
        if self._reader is None:
            self._reader = eventlet.spawn(self._read)
        return pending

    def _write(self) -> None:
        try:
            while self._outgoing and self.broken is None:
                frames, self._outgoing = b"".join(self._outgoing), []
                self.channel.connection.frame_writer.send(frames)
        except BaseException as exc:
            self.fail(exc)
        finally:
            self._writer = None

    def _read(self) -> None:
        try:
            while self._waiting and self.broken is None:
                self.connection.drain_events()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self._reader = None

    def _on_ack(self, tag: int, multiple: bool) -> None:
        for pending in self._settled(tag, multiple):
            pending.settle(self._return_of(pending))
        if not self._waiting:
            self._returns.clear()  # returns of messages someone else published: not ours

    def _on_nack(self, tag: int, multiple: bool) -> None:
        for pending in self._settled(tag, multiple):
            pending.fail(MessageNacked(f"the broker nacked message {tag}"))

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        body = message.body
        if isinstance(body, str):  # py-amqp decodes a body that names its encoding
            body = body.encode(message.properties.get("content_encoding") or "utf-8")
        self._returns.append(((exchange, routing_key, body), (exc, exchange, routing_key)))

    def _settled(self, tag: int, multiple: bool) -> list[PendingConfirm]:
        if not multiple:
            pending = self._waiting.pop(tag, None)
            return [] if pending is None else [pending]
        # Tags are keys in the order they were given, the lowest first.
        tags = list(itertools.takewhile(lambda t: t <= tag, self._waiting))
        return [self._waiting.pop(t) for t in tags]

    def _return_of(self, pending: PendingConfirm) -> Returned | None:
        if pending.returnable is None:
            return None
        for index, (returnable, returned) in enumerate(self._returns):
            if returnable == pending.returnable:
                del self._returns[index]
                return returned
        return None

    def fail(self, exc: BaseException) -> None:
        """The connection is done for: every publish still waiting raises a connection error
        (so a publisher may send it again), and the connection is dropped."""
        if self.broken is not None:
            return
        self.broken = exc
        waiting, self._waiting = self._waiting, {}
        error = exc if isinstance(exc, Exception) else amqp.RecoverableConnectionError(repr(exc))
        for pending in waiting.values():
            pending.fail(error)
        for green in (self._reader, self._writer):
            if green is not None and green is not eventlet.getcurrent():
                green.kill()
        with contextlib.suppress(Exception):
            self.connection.collect()

    def close(self) -> None:
        """Close the connection, politely when nothing is in flight (within a second)."""
        if self.broken is None and not self._waiting:
            with eventlet.Timeout(1, False), contextlib.suppress(Exception):
                self.connection.release()
        self.fail(amqp.RecoverableConnectionError("connection closed"))
