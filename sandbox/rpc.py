"""RPC over AMQP: the ``@rpc`` entrypoint and the clients that call it.

Wire format (Nameko's): requests go to the topic exchange ``nameko-rpc`` with routing key
``{service}.{method}`` and body ``{"args": [...], "kwargs": {...}}``; each service consumes
queue ``rpc-{service}``. A request names its reply routing key in ``reply_to`` and a uuid4
``correlation_id``; the reply ``{"result": ..., "error": ...}`` goes back through the same
exchange to the caller's queue ``rpc.reply-{owner}-{uuid}``.

Clients (``ClusterRpc``, ``ServiceRpc``/``RpcProxy`` in services, and the standalone ones)
take a ``timeout``. A call to a service nobody serves raises ``UnknownService`` at once, even
when a catch-all binding on the exchange would swallow the request: the client first checks
(once) that the service's queue exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import eventlet
import eventlet.event
import kombu
import kombu.exceptions

from sandbox import faults, recorder, serialization
from sandbox.amqp.consume import Consumer as AmqpConsumer
from sandbox.amqp.consume import ack, requeue
from sandbox.amqp.publish import MessageTemplate, UndeliverableMessage, publish_record
from sandbox.amqp.publish import Publisher as AmqpPublisher
from sandbox.amqp.thread_reader import ThreadReader
from sandbox.amqp.transport import CONNECTION_ERRORS, broker_errors
from sandbox.config import config as global_config
from sandbox.exceptions import (
    REMOTE_TRACEBACK_HEADER,
    ContainerBeingKilled,
    IncorrectSignature,
    MalformedRequest,
    MethodNotFound,
    ReplyQueueExpiredWithPendingReplies,
    RpcTimeout,
    UnknownService,
    UnserializableValueError,
    deserialize,
    format_remote_traceback,
    serialize,
)
from sandbox.extensions import DependencyProvider, Entrypoint, ProviderCollector, SharedExtension
from sandbox.messaging import (
    HeaderDecoder,
    QueueConsumer,
    describe,
    encode_to_headers,
    publisher_for,
    reject_malformed,
)
from sandbox.records import RPC
from sandbox.runtime import ThreadWakeup, get_runtime, runs_eventlet
from sandbox.utils import unique_id

if TYPE_CHECKING:
    from sandbox.containers import WorkerContext

log = logging.getLogger(__name__)

RPC_QUEUE_TEMPLATE = "rpc-{}"
RPC_REPLY_QUEUE_TEMPLATE = "rpc.reply-{}-{}"
RPC_REPLY_QUEUE_TTL = 300000  # ms

# Publisher options a client sets itself for every request.
_RESTRICTED_OPTIONS = frozenset(
    {"exchange", "routing_key", "mandatory", "reply_to", "correlation_id"}
)


def client_options(publisher_options: Mapping[str, Any]) -> dict[str, Any]:
    """A client's publisher options, less those it sets itself on every request."""
    return {k: v for k, v in publisher_options.items() if k not in _RESTRICTED_OPTIONS}


def get_rpc_exchange(config: Mapping[str, Any] | None = None) -> kombu.Exchange:
    config = global_config if config is None else config
    return kombu.Exchange(config.get("rpc_exchange") or "nameko-rpc", type="topic", durable=True)


def reply_queue(owner: str, routing_key: str, exchange: kombu.Exchange) -> kombu.Queue:
    """The reply queue of a client owner (a service, a standalone proxy)."""
    return kombu.Queue(
        RPC_REPLY_QUEUE_TEMPLATE.format(owner, routing_key),
        exchange=exchange,
        routing_key=routing_key,
        queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL},
    )


# --- serving ------------------------------------------------------------------------------


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
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise MalformedRequest("Message missing `args` or `kwargs`")
    return list(args), kwargs


class RpcConsumer(SharedExtension, ProviderCollector):
    """Consumes the container's ``rpc-{service}`` queue and routes requests to its ``@rpc``s."""

    queue_consumer = QueueConsumer()

    def __init__(self) -> None:
        super().__init__()
        self._entrypoints: dict[str, Rpc] = {}
        self._stopping = False
        self.requests = Requests()

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
        self.queue_consumer.consume(self, queue, self.on_message)
        self.queue_consumer.consumer.on_return(_reply_returned)

    def register_provider(self, provider: Rpc) -> None:
        self._entrypoints[provider.method_name] = provider
        super().register_provider(provider)

    def unregister_provider(self, provider: Rpc) -> None:
        self._stopping = True
        self._entrypoints.pop(provider.method_name, None)
        super().unregister_provider(provider)
        if not self._entrypoints:
            self.queue_consumer.unregister_provider(self)

    def on_message(self, message: kombu.Message) -> None:
        self.queue_consumer.handle(
            partial(self.handle_message, message),
            identifier=f"{self.container.service_name}.rpc_request",
        )

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
        consumer = self.queue_consumer.consumer
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
                _record(
                    "rpc-reply", reply, self.exchange.name, routing_key, headers, reply_properties
                )
            for delivery in self.requests.finish(message, reply):
                settle(delivery)

    def _answer_copy(self, message: kombu.Message) -> bool:
        """Whether ``message`` is a request this consumer runs or ran; if so, it is seen to."""
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


def _record(kind: str, payload: Any, *where: Any) -> None:
    """Tell the recorder of a request or reply published on a consumer's connection."""
    if recorder.observed():  # a record nobody reads need not be made
        recorder.notify("message_published", publish_record(kind, payload, *where))


def _reply(result: Any, error: BaseException | None) -> dict:
    return {"result": result, "error": serialize(error) if error is not None else None}


class Requests:
    """The requests a consumer runs and ran lately, so that no request runs twice.

    Copies of a request come back after a connection failed: the broker redelivers what the
    consumer's connection left unacked (requests still running, and answered ones whose ack
    went down with it), and a client whose publish was not confirmed publishes again. A copy
    of a running request joins it, to be settled when the run ends; a copy of one that ran
    gets the same reply again. A copy is the same request to the byte (see
    :func:`request_digest`), in this process only: a copy that reaches another instance of
    the service runs again. A request that merely shares its caller's reply_to and
    correlation id (a client that reuses ids) is another request, and runs.
    """

    def __init__(self, remembered: int = 1000):
        self._running: dict[bytes, list[kombu.Message]] = {}
        self._answered: OrderedDict[bytes, dict] = OrderedDict()
        self._remembered = remembered

    def start(self, message: kombu.Message) -> None:
        key = _copy_key(message)
        if key is not None:
            self._running[key] = [message]

    def forget(self, message: kombu.Message) -> None:
        self._running.pop(_copy_key(message), None)

    def join(self, message: kombu.Message) -> bool:
        """Whether ``message`` is a copy of a running request; it is settled with it if so."""
        copies = self._running.get(_copy_key(message))
        if copies is None:
            return False
        copies.append(message)
        return True

    def reply_for(self, message: kombu.Message) -> dict | None:
        return self._answered.get(_copy_key(message))

    def finish(self, message: kombu.Message, reply: dict) -> list[kombu.Message]:
        """Remember the reply of a request that ran; return the deliveries to settle: every
        copy of the request. (One refused before running, a MalformedRequest say, is refused
        again should it come back: nothing to remember.)"""
        copies = self._running.pop(_copy_key(message), None)
        if copies is None:
            return [message]
        self._answered[_copy_key(message)] = reply
        if len(self._answered) > self._remembered:
            self._answered.popitem(last=False)
        return copies


# Headers a broker adds to a message it delivers again (a quorum queue counts deliveries).
_REDELIVERY_HEADERS = frozenset({"x-delivery-count"})


def request_digest(message: kombu.Message) -> bytes:
    """A digest of everything a request is: its body, headers, properties and destination.

    A true copy (redelivered by the broker, or published again by its client) has all of
    them the same; a request that merely reuses another's reply_to and correlation id has
    not, and is never taken for it.
    """
    body = message.body
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    headers = {
        key: value
        for key, value in (message.headers or {}).items()
        if key not in _REDELIVERY_HEADERS
    }
    properties = {k: v for k, v in message.properties.items() if k != "application_headers"}
    info = message.delivery_info
    digest = hashlib.blake2b(body, digest_size=16)
    digest.update(
        repr((info.get("exchange"), info.get("routing_key"), properties, headers)).encode()
    )
    return digest.digest()


def _copy_key(message: kombu.Message) -> bytes | None:
    """The key copies of a request share (its digest, worked out once per delivery); None
    for a request without a correlation id, whose reply nobody could tell from another."""
    if message.properties.get("correlation_id") is None:
        return None
    key = message.__dict__.get(_DIGEST_ATTRIBUTE)
    if key is None:
        key = message.__dict__[_DIGEST_ATTRIBUTE] = request_digest(message)
    return key


# Where a delivery keeps its digest: asked for several times between its arrival and its reply.
_DIGEST_ATTRIBUTE = "sandbox_request_digest"


class Rpc(Entrypoint, HeaderDecoder):
    """``@rpc``: the method answers RPC requests for ``{service}.{method}``."""

    record_kind = RPC

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
        requests = self.rpc_consumer.requests
        requests.start(message)
        try:
            # In this green thread, which has nothing else to do: one less per request.
            self.container.run_worker(
                self,
                args,
                kwargs,
                context_data=self.unpack_message_headers(message),
                handle_result=partial(self.handle_result, message),
            )
        except ContainerBeingKilled:
            requests.forget(message)
            requeue(message)

    def handle_result(
        self, message: kombu.Message, worker_ctx: WorkerContext, result: Any, exc_info: Any
    ) -> tuple[Any, Any]:
        if exc_info is not None and isinstance(exc_info[1], ContainerBeingKilled):
            # Killed half way: unanswered, the request goes to the next instance.
            self.rpc_consumer.requests.forget(message)
            requeue(message)
            return result, exc_info
        return self.rpc_consumer.respond(message, result, exc_info)


rpc = Rpc.decorator


# --- calling ------------------------------------------------------------------------------


class ReplyConnectionLost(ConnectionError):
    """The connection a call's reply was to come on failed; the call may or may not have run."""


class Pending:
    """Where one call's outcome lands: waited for greenly in the hub, or by any other thread.

    A plain thread (a notebook cell, a script) blocks on a lock the consumer's loop releases:
    no green thread of its own in the hub, and no trip back through the hub to be woken.
    """

    __slots__ = ("outcome", "interrupt", "_done", "_event", "_settling")

    def __init__(self) -> None:
        self.outcome: tuple[dict | None, BaseException | None] | None = None
        self._done = threading.Lock()
        self._done.acquire()
        self._event: eventlet.event.Event | None = None
        # The hub thread and a caller's thread reading replies (ThreadReader) may both settle.
        self._settling = threading.Lock()
        self.interrupt: Callable[[], None] | None = None  # set by the thread reading for it

    def settle(self, body: dict | None = None, error: BaseException | None = None) -> None:
        """The reply's body, or the error to raise instead (once; any thread)."""
        with self._settling:
            if self.outcome is not None:
                return
            self.outcome = (body, error)
            interrupt = self.interrupt
        if interrupt is not None:
            interrupt()
        runtime = get_runtime()
        runtime.wake_thread(self._done.release)
        if self._event is not None:
            if runtime.in_hub():
                self._event.send(None)
            else:
                runtime.post(self._event.send, None)

    def wait(self, timeout: float | None, reader: ThreadReader | None = None) -> bool:
        """Whether it settled within ``timeout`` seconds; ``reader``: the connection's."""
        if self.outcome is not None:
            return True
        if get_runtime().in_hub():
            if self._event is None:
                self._event = eventlet.event.Event()
            waiting = reader.waiting() if reader is not None else contextlib.nullcontext()
            # Settled meanwhile from another thread, which saw no event to send.
            with waiting, eventlet.Timeout(timeout, False):
                if self.outcome is None:
                    self._event.wait()
        elif runs_eventlet():
            with reader.waiting() if reader is not None else contextlib.nullcontext():
                self._wait_green(timeout)
        elif reader is not None:
            reader.wait(self, timeout)
        else:
            self.wait_released(timeout)
        return self.outcome is not None

    def _wait_green(self, timeout: float | None) -> None:
        """In a plain thread that runs eventlet: wait greenly, its hub going on meanwhile."""
        with ThreadWakeup() as wakeup:
            with self._settling:
                if self.outcome is not None:
                    return
                self.interrupt = wakeup.set
            try:
                wakeup.wait(timeout)
            finally:
                self.interrupt = None

    def wait_released(self, timeout: float | None) -> None:
        """In a plain thread: wait up to ``timeout`` seconds for :meth:`settle`."""
        if self._done.acquire(timeout=-1 if timeout is None else timeout):
            self._done.release()


class PendingReplies:
    """Calls waiting for their replies, by correlation id; a reply queue's consumer feeds it.

    The hub thread's, but for a plain thread's ``expect`` and ``forget`` around a request it
    publishes itself (single dict operations, atomic in CPython).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, Pending] = {}
        self.reader: ThreadReader | None = None  # when callers' threads read the replies

    def idle(self) -> bool:
        """Whether no reply is awaited."""
        return not self._waiting

    def expect(self, correlation_id: str, pending: Pending) -> None:
        self._waiting[correlation_id] = pending

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    def waiting(self, correlation_id: str) -> bool:
        return correlation_id in self._waiting

    def deliver(self, message: kombu.Message) -> None:
        """Hand a reply to its caller (called in the consumer loop)."""
        pending = self._waiting.pop(message.properties.get("correlation_id"), None)
        if pending is None:
            log.debug("dropped a reply nobody waits for (timed out?): %s", describe(message))
            return
        try:
            body = serialization.decode(message)
        except Exception as exc:
            pending.settle(error=exc)
            return
        if isinstance(body, dict) and body.get("error"):
            traceback = (message.headers or {}).get(REMOTE_TRACEBACK_HEADER)
            pending.settle(error=deserialize(body["error"], traceback))
        else:
            pending.settle(body)

    def queue_lost(self) -> None:
        """The reply queue vanished while the connection was down, and the replies with it."""
        self.fail_all(
            lambda: ReplyQueueExpiredWithPendingReplies(
                "the reply queue expired while the broker was unreachable; "
                "the replies of the calls in flight are lost"
            )
        )

    def connection_lost(self) -> None:
        """The reply queue's connection failed: whatever was on its way to us may be lost.

        Waiting on would hang for as long as the broker stays away; an error now lets the
        caller decide (retry, or not when the call must not run twice).
        """
        self.fail_all(
            lambda: ReplyConnectionLost(
                "the connection to the broker was lost while waiting for the reply; "
                "the call may or may not have run"
            )
        )

    def fail(self, correlation_id: str, exc: BaseException) -> None:
        """Raise ``exc`` in the call's caller, unless its reply came already."""
        pending = self._waiting.pop(correlation_id, None)
        if pending is not None:
            pending.settle(error=exc)

    def fail_all(self, make_error: Callable[[], BaseException]) -> None:
        waiting, self._waiting = self._waiting, {}
        # A copy: a caller's thread reading replies may be taking one out meanwhile.
        for pending in list(waiting.values()):
            pending.settle(error=make_error())


class RpcReply:
    """The pending result of ``call_async``: ``result()`` waits for it (any thread)."""

    def __init__(
        self,
        replies: PendingReplies,
        correlation_id: str,
        target: str,
        timeout: float | None,
    ):
        self.correlation_id = correlation_id
        self.target = target
        self.timeout = timeout
        self.pending = Pending()
        self._replies = replies

    def result(self, timeout: float | None = None) -> Any:
        """The call's result, or its error raised; ``timeout`` defaults to the client's."""
        timeout = self.timeout if timeout is None else timeout
        try:
            settled = self.pending.wait(timeout, self._replies.reader)
        except BaseException:  # a kernel interrupt while a cell waits
            self._forget()
            raise
        if not settled:
            self._forget()
            raise RpcTimeout(f"{self.target} timed out after {timeout}s")
        body, error = self.pending.outcome
        if error is not None:
            raise error
        return body.get("result")

    def _forget(self) -> None:
        runtime = get_runtime()
        if runtime.in_hub():
            self._replies.forget(self.correlation_id)
        else:
            runtime.call_later(0, self._replies.forget, self.correlation_id)

    def __repr__(self) -> str:
        return f"<RpcReply {self.target} {self.correlation_id}>"


@dataclass
class Request:
    """An encoded request, and the reply object its caller holds."""

    service_name: str
    routing_key: str
    payload: dict
    body: Any
    properties: dict
    headers: dict
    reply: RpcReply

    @property
    def queue(self) -> str:
        """The queue of the service it is for."""
        return RPC_QUEUE_TEMPLATE.format(self.service_name)


class RpcCaller:
    """Publishes requests and returns :class:`RpcReply` objects.

    Requests go out on the connection their replies come back on: the consumer's, unconfirmed
    (the reply is the confirmation; one nobody takes comes back as UnknownService). A request
    is never published twice: if the connection fails, the caller gets ReplyConnectionLost.

    Shared by the clients in services and the standalone ones; they differ in their reply
    queue and in the context data they send.
    """

    def __init__(
        self,
        consumer: AmqpConsumer,
        publisher: AmqpPublisher,
        exchange: kombu.Exchange,
        replies: PendingReplies,
        reply_to: str,
        timeout: float | None = None,
    ):
        self.consumer = consumer
        self.pool = publisher.pool  # for the queue checks
        self.template = MessageTemplate(publisher)
        self.template.properties["reply_to"] = reply_to
        self.exchange = exchange
        self.replies = replies
        self.reply_to = reply_to
        self.timeout = timeout
        consumer.on_return(self._returned)

    def send(
        self, service_name: str, method_name: str, args: tuple, kwargs: dict, context_data: dict
    ) -> RpcReply:
        """Send a request; any thread. From the hub the errors of sending raise here, from
        other threads (which do not wait for the hub to send) they raise from ``result()``."""
        request = self._request(service_name, method_name, args, kwargs, context_data)
        runtime = get_runtime()
        if runtime.in_hub():
            self._publish(request)
        elif not self._publish_from_thread(request):
            runtime.post(self._publish_soon, request)
        return request.reply

    def _request(
        self, service_name: str, method_name: str, args: tuple, kwargs: dict, context_data: dict
    ) -> Request:
        correlation_id = unique_id()
        payload = {"args": list(args), "kwargs": dict(kwargs)}
        body, properties, headers = self.template.encode(payload)
        properties["correlation_id"] = correlation_id
        headers.update(encode_to_headers(context_data))
        routing_key = f"{service_name}.{method_name}"
        reply = RpcReply(self.replies, correlation_id, routing_key, self.timeout)
        return Request(service_name, routing_key, payload, body, properties, headers, reply)

    def _publish(self, request: Request) -> None:
        """Publish from the hub; BrokerUnavailable, naming the broker that failed, when it
        cannot be reached in time."""
        # Mandatory publishing alone misses an unknown service when a catch-all binding on the
        # exchange takes the request; a queue that does not exist cannot be missed.
        with broker_errors(self.pool.uri):
            exists = self.pool.queue_exists(request.queue)
        if not exists:
            raise UnknownService(request.service_name)
        with broker_errors(self.consumer.amqp_uri):
            self._publish_on_consumer(request)
        self._record(request)

    def _publish_on_consumer(self, request: Request) -> None:
        connected = self.consumer.connected
        try:
            self._put(request, self.consumer.publish)
        except CONNECTION_ERRORS:
            if not connected:
                raise  # no connection came in time
            # The connection died before the consumer's loop noticed, and none of the request
            # went out (the broker drops a half-written frame with its connection). Once more,
            # on the next connection: waited for before the reply is expected again, so that
            # the loss of the old one cannot fail a call whose request is yet to go.
            self.consumer.wait_connected()
            self._put(request, self.consumer.publish)

    def _publish_from_thread(self, request: Request) -> bool:
        """Publish from the calling plain thread, when that need not wait; whether it did."""
        if not self.pool.knows_queue(request.queue):
            return False
        published = self._put(request, self.consumer.publish_from_thread)
        if published and recorder.observed():
            get_runtime().post(self._record, request)
        return published

    def _put(self, request: Request, publish: Callable[..., Any]) -> Any:
        """Publish with ``publish`` (the consumer's), the reply expected from just before;
        what it returns, and False (or an error) means the request did not go out."""
        correlation_id = request.reply.correlation_id
        self.replies.expect(correlation_id, request.reply.pending)
        try:
            published = publish(
                request.body,
                exchange=self.exchange.name,
                routing_key=request.routing_key,
                properties=request.properties,
                headers=request.headers,
                mandatory=True,
            )
        except BaseException:
            self.replies.forget(correlation_id)
            raise
        if published is False:
            self.replies.forget(correlation_id)
        return published

    def _record(self, request: Request) -> None:
        _record(
            "rpc-request",
            request.payload,
            self.exchange.name,
            request.routing_key,
            request.headers,
            request.properties,
        )

    def _publish_soon(self, request: Request) -> None:
        # In the hub's loop: out at once, unless that could wait (for the connection, or for
        # the broker to say whether the service's queue exists); then in a green thread.
        if self.consumer.connected and self.pool.knows_queue(request.queue):
            self._publish_or_fail(request)
        else:
            get_runtime().spawn(self._publish_or_fail, request)

    def _publish_or_fail(self, request: Request) -> None:
        try:
            self._publish(request)
        except Exception as exc:
            request.reply.pending.settle(error=exc)

    def _returned(self, error: UndeliverableMessage, routing_key: str, message: Any) -> None:
        # Its queue went away since we checked (the service stopped for good).
        correlation_id = message.properties.get("correlation_id")
        if message.properties.get("reply_to") is None or not self.replies.waiting(correlation_id):
            return  # a reply (see _reply_returned), or another caller's request
        service_name = routing_key.partition(".")[0]
        self.pool.forget_queue(RPC_QUEUE_TEMPLATE.format(service_name))
        self.replies.fail(correlation_id, UnknownService(service_name))


Send = Callable[[str, str, tuple, dict], RpcReply]


class Client:
    """What an RPC client injects: ``client.service.method(...)``, ``client["svc-name"]``,
    ``client.service.method.call_async(...)``. Usable from any thread."""

    def __init__(self, send: Send, service_name: str | None = None, method_name: str | None = None):
        self._send = send
        self.service_name = service_name
        self.method_name = method_name

    def __getattr__(self, name: str) -> Client:
        # Private names are Python's and tools' probes (copy, IPython), never services.
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Client:
        if self.method_name is not None:
            raise TypeError(f"{self!r} is a method; it has no {name!r}")
        if self.service_name is None:
            return type(self)(self._send, name)
        return type(self)(self._send, self.service_name, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # From a plain thread the request is handed to the hub without waiting for it to go
        # out; were it refused (UnknownService), result() raises that at once.
        return self._send_request(args, kwargs).result()

    def call_async(self, *args: Any, **kwargs: Any) -> RpcReply:
        """Send the request and return its reply; a refused request raises here."""
        return get_runtime().call(self._send_request, args, kwargs)

    def _send_request(self, args: tuple, kwargs: dict) -> RpcReply:
        if self.method_name is None:
            raise TypeError(f"{self!r} is not a method: call client.service.method(...)")
        return self._send(self.service_name, self.method_name, args, kwargs)

    def __repr__(self) -> str:
        target = ".".join(name for name in (self.service_name, self.method_name) if name)
        return f"<{type(self).__name__} {target or 'cluster'}>"


# Nameko's names for the same object: ``proxy.service`` is a ServiceProxy, ``proxy.method``
# (callable, with ``call_async``) a MethodProxy.
Proxy = ServiceProxy = MethodProxy = Client


class ReplyListener(SharedExtension):
    """The container's reply queue, shared by all its RPC clients."""

    queue_consumer = QueueConsumer()

    def setup(self) -> None:
        self.routing_key = str(uuid.uuid4())
        self.replies = PendingReplies()
        queue = reply_queue(
            self.container.service_name, self.routing_key, get_rpc_exchange(self.container.config)
        )
        self.queue_consumer.consume(
            self,
            queue,
            self.replies.deliver,
            no_ack=True,
            on_lost=self.replies.queue_lost,
            on_disconnect=self.replies.connection_lost,
        )

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)


class ClusterRpc(DependencyProvider):
    """Injects a client of every service: ``self.cluster.greeter.hello("Ada")``.

    ``timeout`` (seconds) bounds each call; ``publisher_options`` go to the publisher
    (``uri``, ``ssl``, ``login_method``, ``serializer``...).
    """

    reply_listener = ReplyListener()

    def __init__(self, timeout: float | None = None, **publisher_options: Any):
        self.timeout = timeout
        self.publisher_options = client_options(publisher_options)

    def setup(self) -> None:
        self.publisher = publisher_for(self.container.config, **self.publisher_options)

    def start(self) -> None:
        # The reply listener's setup, which runs alongside ours, has made its queue by now.
        listener = self.reply_listener
        self.caller = RpcCaller(
            listener.queue_consumer.consumer,
            self.publisher,
            get_rpc_exchange(self.container.config),
            listener.replies,
            listener.routing_key,
            self.timeout,
        )

    def get_dependency(self, worker_ctx: WorkerContext) -> Client:
        context_data = worker_ctx.context_data
        return Client(partial(self._send, context_data))

    def _send(self, context_data: dict, *request: Any) -> RpcReply:
        return self.caller.send(*request, context_data)


class ServiceRpc(ClusterRpc):
    """Injects a client of one service: ``self.greeter.hello("Ada")``."""

    def __init__(self, target_service: str, timeout: float | None = None, **publisher_options):
        self.target_service = target_service
        super().__init__(timeout, **publisher_options)

    def get_dependency(self, worker_ctx: WorkerContext) -> Client:
        return super().get_dependency(worker_ctx)[self.target_service]


RpcProxy = ServiceRpc
