"""Calling RPC: the caller that publishes requests, the client users call through, and the
dependency providers that inject clients into services.

Clients (``ClusterRpc``, ``ServiceRpc``/``RpcProxy`` in services, and the standalone ones)
take a ``timeout``. A call to a service nobody serves raises ``UnknownService`` at once, even
when a catch-all binding on the exchange would swallow the request: the client first checks
(once) that the service's queue exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sandbox import recorder
from sandbox.amqp.connection import CONNECTION_ERRORS, broker_errors
from sandbox.amqp.consume import AmqpConsumer
from sandbox.amqp.publish import AmqpPublisher, MessageTemplate, UndeliverableMessage
from sandbox.exceptions import UnknownService
from sandbox.extensions import DependencyProvider, SharedExtension
from sandbox.messaging import QueueConsumer, encode_to_headers, publisher_for
from sandbox.rpc_replies import PendingReplies, RpcReply
from sandbox.rpc_routes import (
    RPC_QUEUE_TEMPLATE,
    client_options,
    get_rpc_exchange,
    record_published,
    reply_queue,
)
from sandbox.runtime import get_runtime
from sandbox.utils import unique_id

if TYPE_CHECKING:
    from sandbox.containers import WorkerContext


@dataclass
class OutgoingRequest:
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
        replies: ReplyQueue,
        timeout: float | None = None,
    ):
        self.consumer = consumer
        self.pool = publisher.pool  # for the queue checks
        self.template = MessageTemplate(publisher)
        self.template.properties["reply_to"] = replies.routing_key
        self.exchange = replies.exchange
        self.replies = replies.pending
        self.reply_to = replies.routing_key
        self.timeout = timeout
        consumer.on_return(self._returned)

    def send(
        self,
        service_name: str,
        method_name: str,
        args: tuple,
        kwargs: dict,
        context_data: dict,
        wait_sent: bool = False,
    ) -> RpcReply:
        """Send a request; any thread. From the hub the errors of sending raise here. Another
        thread writes the request itself when that need not wait, or else hands it to the hub
        without waiting for it to go: its errors then raise from ``result()``. With
        ``wait_sent`` it waits for the hub when the request could still be refused (no
        connection yet, or its service's queue not yet known to exist), so that the refusal
        raises here."""
        request = self._request(service_name, method_name, args, kwargs, context_data)
        runtime = get_runtime()
        if runtime.in_hub():
            self._publish(request)
        elif not self._publish_from_thread(request):
            if wait_sent and not self._goes_at_once(request):
                runtime.call(self._publish, request)
            else:
                runtime.post(self._publish_soon, request)
        return request.reply

    def _goes_at_once(self, request: OutgoingRequest) -> bool:
        """Whether the hub would publish ``request`` without waiting (for the connection, or
        for the broker to say whether the service's queue exists)."""
        return self.consumer.connected and self.pool.knows_queue(request.queue)

    def _request(
        self, service_name: str, method_name: str, args: tuple, kwargs: dict, context_data: dict
    ) -> OutgoingRequest:
        correlation_id = unique_id()
        payload = {"args": list(args), "kwargs": dict(kwargs)}
        body, properties, headers = self.template.encode(payload)
        properties["correlation_id"] = correlation_id
        headers.update(encode_to_headers(context_data))
        routing_key = f"{service_name}.{method_name}"
        reply = RpcReply(self.replies, correlation_id, routing_key, self.timeout)
        return OutgoingRequest(service_name, routing_key, payload, body, properties, headers, reply)

    def _publish(self, request: OutgoingRequest) -> None:
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

    def _publish_on_consumer(self, request: OutgoingRequest) -> None:
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

    def _publish_from_thread(self, request: OutgoingRequest) -> bool:
        """Publish from the calling plain thread, when that need not wait; whether it did."""
        if not self.pool.knows_queue(request.queue):
            return False
        published = self._put(request, self.consumer.publish_from_thread)
        if published and recorder.observed():
            get_runtime().post(self._record, request)
        return published

    def _put(self, request: OutgoingRequest, publish: Callable[..., Any]) -> Any:
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

    def _record(self, request: OutgoingRequest) -> None:
        record_published(
            recorder.PUBLISHED_RPC_REQUEST,
            request.payload,
            self.exchange.name,
            request.routing_key,
            request.headers,
            request.properties,
        )

    def _publish_soon(self, request: OutgoingRequest) -> None:
        # In the hub's loop: out at once, unless that could wait; then in a green thread.
        if self._goes_at_once(request):
            self._publish_or_fail(request)
        else:
            get_runtime().spawn(self._publish_or_fail, request)

    def _publish_or_fail(self, request: OutgoingRequest) -> None:
        try:
            self._publish(request)
        except Exception as exc:
            request.reply.pending.settle(error=exc)

    def _returned(self, error: UndeliverableMessage, routing_key: str, message: Any) -> None:
        # Its queue went away since we checked (the service stopped for good).
        correlation_id = message.properties.get("correlation_id")
        if message.properties.get("reply_to") is None or not self.replies.waiting(correlation_id):
            return  # a reply (see rpc_serving._reply_returned), or another caller's request
        service_name = routing_key.partition(".")[0]
        self.pool.forget_queue(RPC_QUEUE_TEMPLATE.format(service_name))
        self.replies.fail(correlation_id, UnknownService(service_name))


# ``send(service_name, method_name, args, kwargs, wait_sent=False)``: see RpcCaller.send.
Send = Callable[..., RpcReply]


class RpcClient:
    """What an RPC client injects: ``client.service.method(...)``, ``client["svc-name"]``,
    ``client.service.method.call_async(...)``. Usable from any thread."""

    def __init__(self, send: Send, service_name: str | None = None, method_name: str | None = None):
        self._send = send
        self.service_name = service_name
        self.method_name = method_name

    def __getattr__(self, name: str) -> RpcClient:
        # Private names are Python's and tools' probes (copy, IPython), never services.
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> RpcClient:
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
        return self._send_request(args, kwargs, wait_sent=True)

    def _send_request(self, args: tuple, kwargs: dict, wait_sent: bool = False) -> RpcReply:
        if self.method_name is None:
            raise TypeError(f"{self!r} is not a method: call client.service.method(...)")
        return self._send(self.service_name, self.method_name, args, kwargs, wait_sent=wait_sent)

    def __repr__(self) -> str:
        target = ".".join(name for name in (self.service_name, self.method_name) if name)
        return f"<{type(self).__name__} {target or 'cluster'}>"


# Nameko's names for the same object: ``proxy.service`` is a ServiceProxy, ``proxy.method``
# (callable, with ``call_async``) a MethodProxy; ``sandbox.rpc.Client`` is Nameko 3's.
Client = Proxy = ServiceProxy = MethodProxy = RpcClient


class ReplyQueue:
    """A caller's reply queue: its routing key, and the calls waiting for a reply on it.

    ``owner`` names the queue (a service, a standalone proxy); consume it with
    :meth:`consume_with` before the first request goes out.
    """

    def __init__(self, owner: str, config: Mapping[str, Any]):
        self.exchange = get_rpc_exchange(config)
        self.routing_key = str(uuid.uuid4())
        self.pending = PendingReplies()
        self.queue = reply_queue(owner, self.routing_key, self.exchange)

    def consume_with(self, add_queue: Callable[..., Any]) -> None:
        """Have ``add_queue`` (a consumer's, with its arguments) deliver the replies."""
        pending = self.pending
        add_queue(
            self.queue,
            pending.deliver,
            no_ack=True,
            on_lost=pending.queue_lost,
            on_disconnect=pending.connection_lost,
        )


class ReplyListener(SharedExtension):
    """The container's reply queue, shared by all its RPC clients."""

    queue_consumer = QueueConsumer()

    def setup(self) -> None:
        self.reply_queue = ReplyQueue(self.container.service_name, self.container.config)
        self.reply_queue.consume_with(partial(self.queue_consumer.consume, self))

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
            listener.queue_consumer.consumer, self.publisher, listener.reply_queue, self.timeout
        )

    def get_dependency(self, worker_ctx: WorkerContext) -> RpcClient:
        context_data = worker_ctx.context_data
        return RpcClient(partial(self._send, context_data))

    def _send(self, context_data: dict, *request: Any, wait_sent: bool = False) -> RpcReply:
        return self.caller.send(*request, context_data, wait_sent)


class ServiceRpc(ClusterRpc):
    """Injects a client of one service: ``self.greeter.hello("Ada")``."""

    def __init__(self, target_service: str, timeout: float | None = None, **publisher_options):
        self.target_service = target_service
        super().__init__(timeout, **publisher_options)

    def get_dependency(self, worker_ctx: WorkerContext) -> RpcClient:
        return super().get_dependency(worker_ctx)[self.target_service]


RpcProxy = ServiceRpc
