"""Publishing: one message on a pooled connection, confirmed, retried when the connection fails.

Nameko's low-level ``nameko.amqp.publish.Publisher`` under sandbox's name. Every publish is
reported to the recorder (``message_published``), whatever published it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import eventlet
import kombu
import kombu.common
import kombu.compression
from kombu.entity import maybe_delivery_mode

from sandbox import recorder, serialization
from sandbox.amqp.confirms import ConfirmPipeline, Returned
from sandbox.amqp.connection import CONNECTION_ERRORS, broker_errors, retry_delays
from sandbox.amqp.pool import ConnectionPool, PooledChannel, get_pool
from sandbox.constants import DEFAULT_RETRY_POLICY, PERSISTENT
from sandbox.pending import Pending
from sandbox.runtime import RuntimeStopped, get_runtime, runs_eventlet

log = logging.getLogger(__name__)

T = TypeVar("T")

# Message ids unique to this process and cheap on the hot path: what lets ``sb.why`` find a
# recorded message's fate in the broker.
_ID_PREFIX = secrets.token_hex(6)
_message_numbers = itertools.count(1)

# How often a plain thread waiting for its confirm looks whether the runtime still runs.
STOPPED_CHECK = 1.0  # seconds


def published_here(message_id: str | None) -> bool:
    """Whether this process published the message with that id (and chose the id itself)."""
    return bool(message_id) and message_id.startswith(f"{_ID_PREFIX}-")


class UndeliverableMessage(Exception):
    """A ``mandatory`` message that no queue took."""


class AmqpPublisher:
    """Publishes messages to ``amqp_uri``; call options override the constructor's.

    Must be used in the thread whose hub owns the connections, the runtime's hub thread, but
    for :meth:`publish_from_any_thread`.
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
        ``kind`` names the message for the recorder (a ``recorder.PUBLISHED_*``).
        """
        self.send(self.prepare(payload, **kwargs))

    def prepare(self, payload: Any, **kwargs: Any) -> OutgoingMessage:
        """Encode a message for :meth:`send`: a value that cannot be serialized fails here,
        before any connection is used. Takes :meth:`publish`'s arguments."""
        kind = kwargs.pop("kind", recorder.PUBLISHED_MESSAGE)
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
        if options.get("message_id") is None:
            options["message_id"] = f"{_ID_PREFIX}-{next(_message_numbers)}"
        content_type, content_encoding, body = serialization.dumps(payload, serializer)
        options.update(content_type=content_type, content_encoding=content_encoding)
        return OutgoingMessage(payload, body, options, kind, _delays(retry, retry_policy))

    def publish_from_any_thread(self, payload: Any, **kwargs: Any) -> None:
        """:meth:`publish`, from any thread: it returns once the broker confirmed.

        A plain thread encodes the message itself and hands the hub its frames, which join
        the confirm pipeline at once when it is open and has seen the exchange and what
        ``declare`` names: no green thread per message, and the thread is woken once, as
        the confirm comes. Otherwise, and when that connection fails first, the hub
        publishes the message as :meth:`publish` does, retries and all.
        """
        runtime = get_runtime()
        if runtime.in_hub() or runs_eventlet():
            runtime.call(self.publish, payload, **kwargs)
            return
        message = self.prepare(payload, **kwargs)
        confirmed = Pending()
        runtime.post(self._send_at_once, message, confirmed)
        # A hub that stops meanwhile abandons the pipeline's green threads: none settles it.
        while not confirmed.wait(STOPPED_CHECK):
            if not runtime.running:
                raise RuntimeStopped("the sandbox runtime stopped before the broker confirmed")
        sent, error = confirmed.outcome
        if isinstance(error, CONNECTION_ERRORS):
            runtime.call(self.send, message, failed=error)
        elif error is not None:
            raise error
        elif not sent:
            runtime.call(self.send, message)

    def send(self, message: OutgoingMessage, failed: BaseException | None = None) -> None:
        """Publish a prepared message, on a fresh connection again when one fails;
        BrokerUnavailable once the retries are spent. ``failed``: the connection error that
        failed a first attempt, made elsewhere (the next one waits for the first delay)."""
        with broker_errors(self.amqp_uri):
            returned = _retrying(partial(self._send, message), message.retry_delays, failed)
        self._report(message, returned[0] if returned else None)

    def _report(self, message: OutgoingMessage, returned: Returned | None) -> None:
        """Tell the recorder of a confirmed message; UndeliverableMessage if it came back."""
        if returned is None:
            recorder.notify("message_published", message.record())
            return
        exc, exchange, routing_key = returned
        recorder.notify("message_published", {**message.record(), "returned": str(exc)})
        raise UndeliverableMessage(f"{exc} (exchange {exchange!r}, routing key {routing_key!r})")

    def _send_at_once(self, message: OutgoingMessage, confirmed: Pending) -> None:
        """In the hub's loop, for a plain thread: publish on the open pipeline, or settle
        ``confirmed`` with False to have the thread publish the usual way."""
        pipeline = self.pool.open_pipeline()
        declare, exchange = message.options["declare"], _exchange_name(message)
        if pipeline is None or not _knows_entities(pipeline, declare, exchange):
            confirmed.settle(False)
            return
        try:
            pending = pipeline.publish(*self._frames(pipeline, message))
        except Exception as exc:
            confirmed.settle(error=exc)
            return
        # In time: the frames go out once this task ends, and the confirm after them.
        pending.notify = partial(self._confirmed, message, confirmed)

    def _confirmed(
        self,
        message: OutgoingMessage,
        confirmed: Pending,
        returned: Returned | None,
        error: BaseException | None,
    ) -> None:
        # In the pipeline's reader: what fails here is the caller's (a return, a recorder
        # listener's error), never the pipeline's.
        if error is None:
            try:
                self._report(message, returned)
            except Exception as exc:
                error = exc
        confirmed.settle(error is None, error)

    def declare_entities(self) -> None:
        """Declare the entities of ``declare`` on the broker now, as Nameko's ``Publisher``
        does in its ``setup``; each publish declares them again on a connection that has not
        (one opened after the broker restarted)."""
        with broker_errors(self.amqp_uri):
            _retrying(self._declare_entities, _delays(self.retry, self.retry_policy))

    def _declare_entities(self) -> None:
        with self.pool.acquire() as pooled:
            for entity in self.declare:
                kombu.common.maybe_declare(entity, pooled.channel)

    def _send(self, message: OutgoingMessage) -> list[tuple[Exception, str, str]]:
        if self.pool.pipelines:
            return self._send_pipelined(message)
        with self.pool.acquire() as pooled:
            if not self.use_confirms:
                _read_unasked(pooled)
            pooled.producer.publish(message.body, retry=False, **message.options)
            # With confirms, returns arrive before the confirm, so they are all in by now.
            return list(pooled.returned)

    def _send_pipelined(self, message: OutgoingMessage) -> list[tuple[Exception, str, str]]:
        """Publish on the pool's confirm pipeline, in flight with others, until confirmed."""
        pipeline = self.pool.pipeline()
        self._ensure_entities(pipeline, message.options["declare"], _exchange_name(message))
        outcome = pipeline.publish(*self._frames(pipeline, message)).wait()
        return [] if outcome is None else [outcome]

    def _frames(
        self, pipeline: ConfirmPipeline, message: OutgoingMessage
    ) -> tuple[bytes, tuple[str, str, bytes] | None]:
        """A message's Basic.Publish frames on ``pipeline``'s channel, and what a return of
        it would show (if mandatory)."""
        exchange = message.options.get("exchange") or ""
        name = getattr(exchange, "name", exchange)
        compression, headers, properties = message_fields(message.options)
        if not properties.get("delivery_mode") and isinstance(exchange, kombu.Exchange):
            properties["delivery_mode"] = maybe_delivery_mode(exchange.delivery_mode)
        body = message.body
        if isinstance(body, str):
            body = body.encode(properties.setdefault("content_encoding", "utf-8"))
        if compression:
            body, headers["compression"] = kombu.compression.compress(body, compression)
        routing_key = message.options.get("routing_key") or ""
        mandatory = bool(message.options.get("mandatory"))
        channel = pipeline.channel
        frames = channel.publish_frames(body, name, routing_key, properties, headers, mandatory)
        return frames, (name, routing_key, body) if mandatory else None

    def _ensure_entities(self, pipeline: ConfirmPipeline, declare: list, exchange: str) -> None:
        """Declare what this pipeline's connection has not seen declared, and make sure the
        exchange exists: a publish to a missing one would close the channel under every
        publish in flight, not only under its own (this one raises NotFound instead)."""
        if _knows_entities(pipeline, declare, exchange):
            return
        missing = [entity for entity in declare if entity not in pipeline.known]
        with self.pool.acquire() as pooled:
            for entity in missing:
                kombu.common.maybe_declare(entity, pooled.channel)
                pipeline.known.add(entity)
                if isinstance(entity, kombu.Exchange):
                    pipeline.known.add(entity.name)
            if exchange and exchange not in pipeline.known:
                pooled.channel.exchange_declare(exchange, "topic", passive=True)
                pipeline.known.add(exchange)


# Nameko's name (``nameko.amqp.publish.Publisher``); unique names inside sandbox.
Publisher = AmqpPublisher


def _knows_entities(pipeline: ConfirmPipeline, declare: list, exchange: str) -> bool:
    """Whether ``pipeline`` has seen ``exchange``, and what ``declare`` names, declared."""
    known = pipeline.known
    return (not exchange or exchange in known) and all(entity in known for entity in declare)


def _exchange_name(message: OutgoingMessage) -> str:
    exchange = message.options.get("exchange") or ""
    return getattr(exchange, "name", exchange)


def _delays(retry: bool, policy: Mapping[str, Any]) -> Iterator[float]:
    return retry_delays(policy) if retry else iter(())


def _retrying(
    fn: Callable[[], T], delays: Iterator[float], failed: BaseException | None = None
) -> T:
    """``fn()``, called again after each delay while it fails with a connection error;
    ``failed``, the error of an attempt made before, waits for the first delay."""
    while True:
        if failed is not None:
            delay = next(delays, None)
            if delay is None:
                raise failed
            log.debug("publish failed (%r), retrying in %ss", failed, delay)
            eventlet.sleep(delay)
        try:
            return fn()
        except CONNECTION_ERRORS as exc:
            failed = exc


@dataclass
class OutgoingMessage:
    """An encoded message and how to publish it."""

    payload: Any
    body: Any
    options: dict[str, Any]
    kind: str
    retry_delays: Iterator[float]
    created: float = field(default_factory=time.time)

    def record(self) -> dict[str, Any]:
        """What the recorder is told of it."""
        exchange = self.options.get("exchange") or ""
        return publish_record(
            self.kind,
            self.payload,
            getattr(exchange, "name", exchange),
            self.options.get("routing_key"),
            self.options["headers"],
            self.options,
            self.created,
        )


def publish_record(
    kind: str,
    payload: Any,
    exchange: str,
    routing_key: str | None,
    headers: Mapping[str, Any],
    properties: Mapping[str, Any],
    created: float | None = None,
) -> dict[str, Any]:
    """What the recorder is told of a published message."""
    return {
        "kind": kind,
        "time": time.time() if created is None else created,
        "exchange": exchange,
        "routing_key": routing_key,
        "headers": headers,
        "payload": payload,
        "correlation_id": properties.get("correlation_id"),
        "reply_to": properties.get("reply_to"),
        "message_id": properties.get("message_id"),
        "mandatory": bool(properties.get("mandatory")),
        "expiration": properties.get("expiration"),
    }


# Publisher options that are about how to publish, not about the message.
_NOT_MESSAGE_FIELDS = frozenset(
    {
        "declare",
        "retry",
        "retry_policy",
        "timeout",
        "confirm_timeout",
        "exchange",
        "routing_key",
        "mandatory",
    }
)


class MessageTemplate:
    """A publisher's options as AMQP message fields, worked out once, for messages published
    on a channel directly (RPC requests and replies, see ``Consumer.publish``).

    The fields follow kombu's ``Producer.publish``: ``delivery_mode`` (a number or
    ``"persistent"``/``"transient"``), ``priority``, ``expiration`` in seconds, ``headers``,
    ``compression``, and any other AMQP property by name.
    """

    def __init__(self, publisher: AmqpPublisher):
        self.serializer = publisher.serializer
        self.compression, self.headers, self.properties = message_fields(publisher.publish_kwargs)

    def encode(self, payload: Any, serializer: str | None = None) -> tuple[Any, dict, dict]:
        """``(body, properties, headers)`` of a message; the dicts are the caller's to change.

        Raises kombu's EncodeError when ``payload`` cannot be serialized.
        """
        content_type, content_encoding, body = serialization.dumps(
            payload, serializer or self.serializer
        )
        properties = {
            **self.properties,
            "content_type": content_type,
            "content_encoding": content_encoding,
        }
        headers = dict(self.headers)
        if self.compression:
            body, headers["compression"] = kombu.compression.compress(body, self.compression)
        return body, properties, headers


def message_fields(options: Mapping[str, Any]) -> tuple[str | None, dict, dict]:
    """``(compression, headers, properties)``: publish options as :class:`MessageTemplate`
    reads them; the dicts are the caller's to change."""
    options = {k: v for k, v in options.items() if k not in _NOT_MESSAGE_FIELDS}
    compression = options.pop("compression", None)
    headers = dict(options.pop("headers", None) or {})
    expiration = options.pop("expiration", None)
    if expiration is not None:
        options["expiration"] = str(int(expiration * 1000))
    options["delivery_mode"] = maybe_delivery_mode(options.get("delivery_mode"))
    return compression, headers, {k: v for k, v in options.items() if v is not None}


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
