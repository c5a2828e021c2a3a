"""Publishing: one message on a pooled connection, confirmed, retried when the connection fails.

Nameko's low-level ``nameko.amqp.publish.Publisher`` under sandbox's name. Every publish is
reported to the recorder (``message_published``), whatever published it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import eventlet
import kombu.serialization

from sandbox import recorder
from sandbox.amqp.transport import (
    CONNECTION_ERRORS,
    ConnectionPool,
    PooledChannel,
    get_pool,
    retry_delays,
)
from sandbox.constants import PERSISTENT

log = logging.getLogger(__name__)

DEFAULT_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 2,
}


class UndeliverableMessage(Exception):
    """A ``mandatory`` message that no queue took."""


class Publisher:
    """Publishes messages to ``amqp_uri``; call options override the constructor's.

    Must be used in the thread whose hub owns the connections: the runtime's hub thread.
    """

    def __init__(
        self,
        amqp_uri: str,
        use_confirms: bool = True,
        serializer: str = "json",
        compression: str | None = None,
        delivery_mode: int = PERSISTENT,
        mandatory: bool = False,
        priority: int = 0,
        expiration: float | None = None,
        declare: Iterable[Any] = (),
        retry: bool = True,
        retry_policy: Mapping[str, Any] | None = None,
        ssl: Any = None,
        login_method: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        **publish_kwargs: Any,
    ):
        self.amqp_uri = amqp_uri
        self.use_confirms = use_confirms
        self.serializer = serializer
        self.declare = list(declare)
        self.retry = retry
        self.retry_policy = dict(DEFAULT_RETRY_POLICY if retry_policy is None else retry_policy)
        self.connection_options = {
            "ssl": ssl,
            "login_method": login_method,
            "transport_options": transport_options,
        }
        self.publish_kwargs = {
            "compression": compression,
            "delivery_mode": delivery_mode,
            "mandatory": mandatory,
            "priority": priority,
            "expiration": expiration,
            **publish_kwargs,
        }

    @property
    def pool(self) -> ConnectionPool:
        return get_pool(self.amqp_uri, confirms=self.use_confirms, **self.connection_options)

    def publish(self, payload: Any, **kwargs: Any) -> None:
        """Publish ``payload``; raise UndeliverableMessage when mandatory and unroutable.

        ``headers`` merge: the constructor's, then the call's, then ``extra_headers``.
        ``kind`` names the message for the recorder (``"message"`` by default).
        """
        self.send(self.prepare(payload, **kwargs))

    def prepare(self, payload: Any, **kwargs: Any) -> OutgoingMessage:
        """Encode a message for :meth:`send`: a value that cannot be serialized fails here,
        before any connection is used. Takes :meth:`publish`'s arguments."""
        kind = kwargs.pop("kind", "message")
        headers = {
            **(self.publish_kwargs.get("headers") or {}),
            **(kwargs.pop("headers", None) or {}),
            **(kwargs.pop("extra_headers", None) or {}),
        }
        serializer = kwargs.pop("serializer", self.serializer)
        declare = [*self.declare, *kwargs.pop("declare", ())]
        retry = kwargs.pop("retry", self.retry)
        retry_policy = kwargs.pop("retry_policy", self.retry_policy)
        options = {**self.publish_kwargs, **kwargs, "headers": headers, "declare": declare}
        content_type, content_encoding, body = kombu.serialization.dumps(payload, serializer)
        options.update(content_type=content_type, content_encoding=content_encoding)
        return OutgoingMessage(
            payload, body, options, kind, retry_delays(retry_policy) if retry else iter(())
        )

    def send(self, message: OutgoingMessage) -> None:
        """Publish a prepared message, on a fresh connection again when one fails."""
        while True:
            try:
                returned = self._send(message)
                break
            except CONNECTION_ERRORS as exc:
                delay = next(message.retry_delays, None)
                if delay is None:
                    raise
                log.debug("publish failed (%r), retrying in %ss", exc, delay)
                eventlet.sleep(delay)
                if not message.wanted():
                    raise
        if returned:
            exc, exchange, routing_key = returned[0]
            raise UndeliverableMessage(
                f"{exc} (exchange {exchange!r}, routing key {routing_key!r})"
            )
        recorder.notify("message_published", message.record())

    def _send(self, message: OutgoingMessage) -> list[tuple[Exception, str, str]]:
        with self.pool.acquire() as pooled:
            if not self.use_confirms:
                _read_unasked(pooled)
            pooled.producer.publish(message.body, retry=False, **message.options)
            # With confirms, returns arrive before the confirm, so they are all in by now.
            return list(pooled.returned)


@dataclass
class OutgoingMessage:
    """An encoded message and how to publish it."""

    payload: Any
    body: Any
    options: dict[str, Any]
    kind: str
    retry_delays: Iterator[float]
    created: float = field(default_factory=time.time)
    # Asked before each retry: a message nobody waits for any more is better not sent twice.
    wanted: Callable[[], bool] = lambda: True

    def record(self) -> dict[str, Any]:
        """What the recorder is told of it."""
        exchange = self.options.get("exchange") or ""
        return {
            "kind": self.kind,
            "time": self.created,
            "exchange": getattr(exchange, "name", exchange),
            "routing_key": self.options.get("routing_key"),
            "headers": self.options["headers"],
            "payload": self.payload,
            "correlation_id": self.options.get("correlation_id"),
            "reply_to": self.options.get("reply_to"),
        }


def _read_unasked(pooled: PooledChannel) -> None:
    """Read what the broker sent since the last publish (returns of unconfirmed messages).

    Without confirms nothing else reads this connection; unread frames would pile up.
    """
    with contextlib.suppress(TimeoutError):
        while True:
            pooled.connection.drain_events(timeout=0)
    if pooled.returned:
        log.warning("%d unconfirmed message(s) were returned unroutable", len(pooled.returned))
        pooled.returned.clear()
