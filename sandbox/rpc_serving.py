"""Serving RPC: the ``@rpc`` entrypoint, the consumer of a service's request queue, and the
ledger of requests that keeps a redelivered copy from running twice.

A request names its reply routing key in ``reply_to`` and a uuid4 ``correlation_id``; the
reply ``{"result": ..., "error": ...}`` goes back through the RPC exchange to that key.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import kombu
import kombu.exceptions

from sandbox import faults, recorder, serialization
from sandbox.amqp.consume import ack, requeue
from sandbox.amqp.publish import MessageTemplate, UndeliverableMessage
from sandbox.exceptions import (
    REMOTE_TRACEBACK_HEADER,
    ContainerBeingKilled,
    IncorrectSignature,
    MalformedRequest,
    MethodNotFound,
    UnserializableValueError,
    format_remote_traceback,
    serialize,
)
from sandbox.extensions import Entrypoint, ProviderCollector, SharedExtension
from sandbox.messaging import (
    HeaderDecoder,
    QueueConsumer,
    describe,
    publisher_for,
    reject_malformed,
    run_worker_for,
)
from sandbox.records import RPC
from sandbox.rpc_routes import RPC_QUEUE_TEMPLATE, get_rpc_exchange, record_published

if TYPE_CHECKING:
    from sandbox.containers import WorkerContext

# Under the facade's name, as before the split: log filters and handlers name it.
log = logging.getLogger("sandbox.rpc")


def _exc_info(exc: BaseException) -> tuple:
    return type(exc), exc, exc.__traceback__


def parse_request(message: kombu.Message) -> tuple[list, dict]:
    """``(args, kwargs)`` of a request; MalformedRequest when the body is not one."""
    try:
        body = serialization.decode(message)
    except Exception as exc:
        raise MalformedRequest(f"cannot decode the body: {exc}") from None
    args = body.get("args") if isinstance(body, dict) else None
    kwargs = body.get("kwargs") if isinstance(body, dict) else None
    # A tuple of types, not ``list | tuple``: that makes a union object for every request.
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise MalformedRequest("Message missing `args` or `kwargs`")
    return list(args), kwargs


class RpcConsumer(SharedExtension, ProviderCollector):
    """Consumes the container's ``rpc-{service}`` queue and routes requests to its ``@rpc``s."""

    queue_consumer = QueueConsumer()

    def __init__(self) -> None:
        super().__init__()
        self._entrypoints: dict[str, Rpc] = {}
        self._stopping = False
        self.requests = RequestLedger()

    def setup(self) -> None:
        config = self.container.config
        service_name = self.container.service_name
        self.exchange = get_rpc_exchange(config)
        self.serialization = serialization.setup(config)
        self.template = MessageTemplate(publisher_for(config))
        queue = kombu.Queue(
            RPC_QUEUE_TEMPLATE.format(service_name),
            exchange=self.exchange,
            routing_key=f"{service_name}.*",
            durable=True,
        )
        identifier = f"{service_name}.rpc_request"
        self.queue_consumer.consume(
            self, queue, self.queue_consumer.spawning(self.handle_message, identifier)
        )
        # Asked for once, not per reply (a property): the consumer every reply is written on.
        self.consumer = self.queue_consumer.consumer
        self.consumer.on_return(_reply_returned)

    def register_provider(self, provider: Rpc) -> None:
        self._entrypoints[provider.method_name] = provider
        super().register_provider(provider)

    def unregister_provider(self, provider: Rpc) -> None:
        self._stopping = True
        self._entrypoints.pop(provider.method_name, None)
        super().unregister_provider(provider)
        if not self._entrypoints:
            self.queue_consumer.unregister_provider(self)

    def handle_message(self, message: kombu.Message) -> None:
        if not message.properties.get("reply_to"):
            reject_malformed(message, "no reply_to, so nowhere to send a reply")
            return
        if self._answer_copy(message):
            return
        try:
            args, kwargs = parse_request(message)
            entrypoint = self._entrypoint_for(message)
            if entrypoint is None:
                return
            args, kwargs = entrypoint.check_call(args, kwargs)
        except MalformedRequest as exc:
            self.respond(
                message, None, _exc_info(exc), settle=partial(reject_malformed, reason=exc)
            )
            return
        except (MethodNotFound, IncorrectSignature) as exc:
            refused = {"service": self.container.service_name, "entrypoints": self._entrypoints}
            recorder.notify("call_refused", {**refused, "message": message, "error": exc})
            self.respond(message, None, _exc_info(exc))
            return
        entrypoint.handle_request(message, args, kwargs)

    def _entrypoint_for(self, message: kombu.Message) -> Rpc | None:
        method_name = message.delivery_info["routing_key"].rpartition(".")[2]
        entrypoint = self._entrypoints.get(method_name)
        if entrypoint is None:
            if self._stopping:
                # The method may well exist: it is stopping. Another instance may take it.
                requeue(message)
                return None
            raise MethodNotFound(method_name)
        return entrypoint

    def respond(
        self,
        message: kombu.Message,
        result: Any,
        exc_info: tuple | None,
        settle: Callable[[kombu.Message], None] = ack,
    ) -> tuple[Any, Any]:
        """Reply, then settle the request (requeue it when no reply could be sent).

        Returns ``(result, exc_info)`` as the caller was told them.
        """
        error = exc_info[1] if exc_info is not None else None
        # The remote traceback rides in a header: the body stays exactly Nameko's.
        traceback = format_remote_traceback(error) if error is not None else None
        try:
            self._reply_and_settle(message, _reply(result, error), settle, traceback)
        except kombu.exceptions.EncodeError:
            error = UnserializableValueError(result)
            result, exc_info = None, _exc_info(error)
            self._reply_and_settle(message, _reply(None, error), settle)
        return result, exc_info

    def _reply_and_settle(
        self,
        message: kombu.Message,
        reply: dict,
        settle: Callable[[kombu.Message], None],
        traceback: str | None = None,
    ) -> None:
        """Publish the reply, then settle the request (requeue it when the reply failed).

        Raises EncodeError, before anything is sent, when ``reply`` cannot be encoded.
        """
        properties = message.properties
        serializer = serialization.reply_serializer(message.content_type, self.serialization)
        body, reply_properties, headers = self.template.encode(reply, serializer)
        if traceback is not None:
            headers[REMOTE_TRACEBACK_HEADER] = traceback
        if properties.get("correlation_id") is not None:
            reply_properties["correlation_id"] = properties["correlation_id"]

        routing_key = properties["reply_to"]
        consumer = self.consumer
        # The ack follows the reply on the same connection, in the same write: should the
        # connection fail before it, the request comes back and is answered from
        # self.requests.
        with consumer.batch():
            try:
                # Mandatory: a reply no queue takes comes back, to be logged (_reply_returned).
                consumer.publish(
                    body,
                    exchange=self.exchange.name,
                    routing_key=routing_key,
                    properties=reply_properties,
                    headers=headers,
                    mandatory=True,
                )
            except Exception as exc:
                # Unacked, the request comes back: to us once the broker is back (and
                # answered from self.requests), or to another instance.
                log.warning("could not reply to %s (%r); requeued", describe(message), exc)
                settle = requeue
            else:
                where = (self.exchange.name, routing_key, headers, reply_properties)
                record_published(recorder.PUBLISHED_RPC_REPLY, reply, *where)
            for delivery in self.requests.finish(message, reply):
                settle(delivery)

    def _answer_copy(self, message: kombu.Message) -> bool:
        """Whether ``message`` is a request this consumer runs or ran; if so, it is seen to."""
        if not self.requests.may_know(message):  # nearly every request
            return False
        if self.requests.join(message):
            return True
        reply = self.requests.reply_for(message)
        if reply is None:
            return False
        self._reply_and_settle(message, reply, ack)
        return True


def _reply_returned(error: UndeliverableMessage, routing_key: str, message: Any) -> None:
    """A reply came back unroutable: its caller's reply queue is gone (it stopped, or its
    queue expired). Requests, which carry a reply_to, are their callers' business."""
    if message.properties.get("reply_to") is not None:
        return
    log.warning(
        "dropped a reply nobody can receive: no queue takes reply_to %r (correlation id %r)",
        routing_key,
        message.properties.get("correlation_id"),
    )


def _reply(result: Any, error: BaseException | None) -> dict:
    return {"result": result, "error": serialize(error) if error is not None else None}


class RequestLedger:
    """The requests a consumer runs and ran lately, so that no request runs twice.

    Copies of a request come back after a connection failed: the broker redelivers what the
    consumer's connection left unacked (requests still running, and answered ones whose ack
    went down with it), and a client whose publish was not confirmed publishes again. A copy
    of a running request joins it, to be settled when the run ends; a copy of one that ran
    gets the same reply again. A copy is the same request to the byte (see
    :func:`request_digest`), in this process only: a copy that reaches another instance of
    the service runs again. A request that merely shares its caller's reply_to and
    correlation id (a client that reuses ids) is another request, and runs.

    Requests are filed by reply_to and correlation id, which every copy shares: the digest,
    which costs as much as the rest of a request's handling before its reply, is worked out
    only for requests that share them, which is rare.
    """

    def __init__(self, remembered: int = 1000):
        self._running: dict[tuple, list[tuple[SeenRequest, list[kombu.Message]]]] = {}
        self._answered: OrderedDict[tuple, list[tuple[SeenRequest, dict]]] = OrderedDict()
        self._remembered = remembered
        self._answered_count = 0

    def start(self, message: kombu.Message) -> None:
        seen = SeenRequest.of(message)
        if seen is not None:
            self._running.setdefault(seen.ids, []).append((seen, [message]))

    def forget(self, message: kombu.Message) -> None:
        self._take_run(SeenRequest.of(message))

    def may_know(self, message: kombu.Message) -> bool:
        """Whether ``message`` shares its ids with a request running or answered: only then
        may it be a copy (:meth:`join`, :meth:`reply_for`)."""
        seen = SeenRequest.of(message)
        return seen is not None and (seen.ids in self._running or seen.ids in self._answered)

    def join(self, message: kombu.Message) -> bool:
        """Whether ``message`` is a copy of a running request; it is settled with it if so."""
        seen = SeenRequest.of(message)
        runs = self._running.get(seen.ids) if seen is not None else None
        index = seen.find(runs) if runs else None
        if index is None:
            return False
        runs[index][1].append(message)
        return True

    def reply_for(self, message: kombu.Message) -> dict | None:
        seen = SeenRequest.of(message)
        replies = self._answered.get(seen.ids) if seen is not None else None
        index = seen.find(replies) if replies else None
        return None if index is None else replies[index][1]

    def finish(self, message: kombu.Message, reply: dict) -> list[kombu.Message]:
        """Remember the reply of a request that ran; return the deliveries to settle: every
        copy of the request. (One refused before running, a MalformedRequest say, is refused
        again should it come back: nothing to remember.)"""
        seen = SeenRequest.of(message)
        copies = self._take_run(seen)
        if copies is None:
            return [message]
        self._answered.setdefault(seen.ids, []).append((seen, reply))
        self._answered_count += 1
        while self._answered_count > self._remembered:
            _, forgotten = self._answered.popitem(last=False)
            self._answered_count -= len(forgotten)
        return copies

    def _take_run(self, seen: SeenRequest | None) -> list[kombu.Message] | None:
        runs = self._running.get(seen.ids) if seen is not None else None
        index = seen.find(runs) if runs else None
        if index is None:
            return None
        _, run = runs.pop(index)
        if not runs:
            del self._running[seen.ids]
        return run


# Headers a broker adds to a message it delivers again (a quorum queue counts deliveries).
_REDELIVERY_HEADERS = frozenset({"x-delivery-count"})


def request_digest(body: Any, headers: dict | None, properties: dict, info: dict) -> bytes:
    """A digest of everything a request is: its body, headers, properties and destination.

    A true copy (redelivered by the broker, or published again by its client) has all of
    them the same; a request that merely reuses another's reply_to and correlation id has
    not, and is never taken for it.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    headers = {
        key: value for key, value in (headers or {}).items() if key not in _REDELIVERY_HEADERS
    }
    properties = {k: v for k, v in properties.items() if k != "application_headers"}
    digest = hashlib.blake2b(body, digest_size=16)
    digest.update(
        repr((info.get("exchange"), info.get("routing_key"), properties, headers)).encode()
    )
    return digest.digest()


class SeenRequest:
    """A request as the ledger knows it: its reply_to and correlation id at once, its digest
    when another request with the same ids comes."""

    # What the digest needs, not the message (the ledger outlives its channel); slots, as
    # the ledger keeps a thousand of them for the garbage collector to go through.
    __slots__ = ("ids", "_body", "_headers", "_properties", "_info", "_digest")

    def __init__(self, message: kombu.Message, ids: tuple):
        self.ids = ids
        self._body = message.body
        self._headers = message.headers
        self._properties = message.properties
        self._info = message.delivery_info
        self._digest: bytes | None = None

    @classmethod
    def of(cls, message: kombu.Message) -> SeenRequest | None:
        """The delivery's, made once; None without a correlation id, when nobody could tell
        its reply from another's."""
        seen = message.__dict__.get(_SEEN_ATTRIBUTE)
        if seen is not None:
            return seen
        properties = message.properties
        correlation_id = properties.get("correlation_id")
        if correlation_id is None:
            return None
        ids = (properties.get("reply_to"), correlation_id)
        seen = message.__dict__[_SEEN_ATTRIBUTE] = cls(message, ids)
        return seen

    def digest(self) -> bytes:
        if self._digest is None:
            self._digest = request_digest(self._body, self._headers, self._properties, self._info)
            self._body = self._headers = self._properties = self._info = None
        return self._digest

    def find(self, entries: list[tuple[SeenRequest, Any]]) -> int | None:
        """Where this request is in ``entries`` (of requests with our ids), or None."""
        for index, (seen, _) in enumerate(entries):
            if seen is self or seen.digest() == self.digest():
                return index
        return None


# Where a delivery keeps its SeenRequest: asked for several times between arrival and reply.
_SEEN_ATTRIBUTE = "sandbox_seen_request"


class Rpc(Entrypoint, HeaderDecoder):
    """``@rpc``: the method answers RPC requests for ``{service}.{method}``."""

    record_kind = RPC
    returns_unstarted_work = True

    rpc_consumer = RpcConsumer()

    def setup(self) -> None:
        self.rpc_consumer.register_provider(self)

    def stop(self) -> None:
        self.rpc_consumer.unregister_provider(self)

    def handle_request(self, message: kombu.Message, args: list, kwargs: dict) -> None:
        if faults.dropped(self, args, kwargs):  # acked unanswered: the caller times out
            ack(message)
            return
        # Known from now on: a redelivered copy that comes while this one waits for a worker
        # slot must not start a second run either.
        self.rpc_consumer.requests.start(message)
        run_worker_for(self, message, args, kwargs, killed=self._pass_on)

    def handle_result(
        self, message: kombu.Message, worker_ctx: WorkerContext, result: Any, exc_info: Any
    ) -> tuple[Any, Any]:
        if exc_info is not None and isinstance(exc_info[1], ContainerBeingKilled):
            self._pass_on(message)  # killed half way
            return result, exc_info
        return self.rpc_consumer.respond(message, result, exc_info)

    def _pass_on(self, message: kombu.Message) -> None:
        """Unanswered, the request goes to the next instance (forgotten first: a copy that
        comes back here meanwhile must run, not wait for this run)."""
        self.rpc_consumer.requests.forget(message)
        requeue(message)


rpc = Rpc.decorator
