"""Plain AMQP messaging: ``Publisher`` and ``@consume``, and what every AMQP extension shares.

Each container has one :class:`QueueConsumer`: one connection that consumes the queues of all
its AMQP entrypoints (RPC, events, ``@consume``) and its RPC reply queue. Entrypoints hand
each delivery to a green thread of its own (one that handled an earlier delivery, see
:mod:`sandbox.reused_threads`), which waits for a worker slot; the consumer's loop
never waits, so heartbeats flow even while every worker is busy. (Starting the worker from
the loop when a slot looks free is no saving: slots are handed out in turn, so the loop would
queue behind the deliveries already waiting, and a worker waiting for an RPC reply that only
the loop can deliver would never free its slot.)

Context data (call id stack, language, user id...) travels in ``nameko.``-prefixed headers;
a message's other headers reach the worker's context data as they are.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import kombu

from sandbox import faults, serialization
from sandbox.amqp.connection import amqp_uri, connection_options
from sandbox.amqp.consume import AmqpConsumer, QueueSubscription, ack, reject, requeue
from sandbox.amqp.limits import MessageLimits
from sandbox.amqp.publish import AmqpPublisher
from sandbox.config import DEFAULTS
from sandbox.constants import DEFAULT_PREFETCH_COUNT, HEADER_PREFIX
from sandbox.exceptions import ContainerBeingKilled, IncorrectSignature
from sandbox.extensions import DependencyProvider, Entrypoint, ProviderCollector, SharedExtension
from sandbox.records import MESSAGE

if TYPE_CHECKING:
    from sandbox.containers import WorkerContext

log = logging.getLogger(__name__)


def encode_to_headers(context_data: Mapping[str, Any], prefix: str = HEADER_PREFIX) -> dict:
    """Context data as message headers; None values are left out, with a UserWarning (Nameko's)."""
    if None in context_data.values():
        warnings.warn(
            "Attempted to publish unserialisable header value. Headers with a value of `None` "
            "will be dropped from the payload.",
            UserWarning,
            stacklevel=2,
        )
    return {f"{prefix}.{key}": value for key, value in context_data.items() if value is not None}


def decode_from_headers(headers: Mapping[str, Any] | None, prefix: str = HEADER_PREFIX) -> dict:
    """The context data carried by message headers: all of them, ``prefix.`` removed where
    present (Nameko's: a caller's own headers reach the worker too)."""
    start = f"{prefix}."
    data = {}
    # A loop, not a comprehension (a function made and called): it runs for every worker.
    for key, value in (headers or {}).items():
        data[key.removeprefix(start) if isinstance(key, str) else key] = value
    return data


class HeaderEncoder:
    """Nameko 2's mixin: the headers that carry a worker's context data."""

    header_prefix = HEADER_PREFIX

    def get_message_headers(self, worker_ctx: WorkerContext) -> dict:
        return encode_to_headers(worker_ctx.context_data, prefix=self.header_prefix)


class HeaderDecoder:
    """Nameko 2's mixin: the context data carried by a message's headers."""

    header_prefix = HEADER_PREFIX

    def unpack_message_headers(self, message: kombu.Message) -> dict:
        return decode_from_headers(message.headers, prefix=self.header_prefix)


def run_worker_for(
    entrypoint: Any,
    message: kombu.Message,
    args: tuple | list,
    kwargs: dict,
    killed: Callable[[kombu.Message], None] = requeue,
) -> None:
    """Run ``entrypoint``'s worker for ``message`` in the calling green thread, which has
    nothing else to do (one green thread less per message); its result goes to
    ``entrypoint.handle_result(message, ...)``. ``killed(message)`` settles a message whose
    worker never ran because the container is being killed."""
    try:
        entrypoint.container.run_worker(
            entrypoint,
            args,
            kwargs,
            context_data=entrypoint.unpack_message_headers(message),
            handle_result=partial(entrypoint.handle_result, message),
        )
    except ContainerBeingKilled:
        killed(message)


def publisher_for(config: Mapping[str, Any], **options: Any) -> AmqpPublisher:
    """A publisher set up from ``config``; options (``uri``, ``ssl``, ``serializer``...) win."""
    options = {
        "serializer": serialization.setup(config).serializer,
        **connection_options(config),
        **options,
    }
    return AmqpPublisher(options.pop("uri", None) or amqp_uri(config), **options)


def consumer_for(config: Mapping[str, Any], uri: str | None = None, **options: Any) -> AmqpConsumer:
    """A consumer set up from ``config`` (of broker ``uri`` when given), held to its message
    limits unless ``options`` give ``limits``; ``options`` (``limits``, ``thread_reader``) go
    to :class:`~sandbox.amqp.consume.AmqpConsumer`.

    Raises ConfigurationError for a bad ``MAX_MESSAGE_SIZE`` or ``ACCEPT_COMPRESSION``."""
    if "limits" not in options:
        options["limits"] = MessageLimits.from_config(config)
    return AmqpConsumer(
        uri or amqp_uri(config),
        heartbeat=config.get("HEARTBEAT", DEFAULTS["HEARTBEAT"]),
        prefetch_count=config.get("PREFETCH_COUNT", DEFAULT_PREFETCH_COUNT),
        accept=serialization.setup(config).accept,
        retry_policy=config.get("TRANSPORT_OPTIONS"),
        **connection_options(config),
        **options,
    )


def describe(message: kombu.Message) -> str:
    """A message in a log line: where it came from, never its body."""
    info = message.delivery_info or {}
    return (
        f"message {info.get('routing_key')!r} from exchange {info.get('exchange')!r} "
        f"({message.content_type})"
    )


def reject_malformed(message: kombu.Message, reason: Any) -> None:
    """Drop a message nobody can handle, and say so in the log."""
    log.warning("rejected %s: %s", describe(message), reason)
    reject(message)


class QueueConsumer(SharedExtension, ProviderCollector):
    """The container's one consumer connection, shared by all its AMQP extensions.

    Providers call :meth:`consume` in their ``setup`` and :meth:`unregister_provider` when they
    stop, which cancels their queues. ``stop`` waits for them all, then closes the connection.
    """

    def __init__(self) -> None:
        super().__init__()
        self._subscriptions: dict[Any, list[QueueSubscription]] = {}
        self._consumer: AmqpConsumer | None = None
        self._thread: Any = None

    @property
    def consumer(self) -> AmqpConsumer:
        if self._consumer is None:
            # Held to the config's limits in setup: a property must not raise (inspect reads
            # it when the container is killed), and a bad limit must fail the setup.
            self._consumer = consumer_for(self.container.config, limits=MessageLimits())
        return self._consumer

    @property
    def connected(self) -> bool:
        """Whether the connection is up; True before the consumer is made."""
        return self._consumer is None or self._consumer.connected

    def setup(self) -> None:
        self.consumer.limits = MessageLimits.from_config(self.container.config)

    def consume(
        self,
        provider: Any,
        queue: kombu.Queue,
        on_message: Callable[[kombu.Message], None],
        **options: Any,
    ) -> None:
        """Deliver ``queue``'s messages to ``on_message``, called in the consumer loop: it must
        not wait. ``options``: ``no_ack``, ``prefetch_count``, ``on_lost``, ``on_disconnect``."""
        self.register_provider(provider)
        subscription = self.consumer.add_queue(queue, on_message, **options)
        self._subscriptions.setdefault(provider, []).append(subscription)

    def start(self) -> None:
        self._thread = self.container.spawn_managed_thread(
            self.consumer.run, identifier=f"{self.container.service_name}.queue_consumer"
        )
        self.consumer.wait_until_ready()

    def spawning(
        self, handle_message: Callable[[kombu.Message], None], identifier: str
    ) -> Callable[[kombu.Message], None]:
        """An ``on_message`` for :meth:`consume` that runs ``handle_message`` in a green thread
        of the container: it may wait for a worker slot, the loop must not.

        A message that came alone is handled at once, before the loop reads on: its worker
        answers a hub turn sooner, and overtakes no other. Several that came together start
        in their order, at the hub's next turn.
        """

        consumer = self.consumer  # asked for once, not per message (a property)

        def on_message(message: kombu.Message) -> None:
            handle = partial(handle_message, message)
            self.container.spawn_managed_job(handle, identifier, at_once=consumer.alone)

        return on_message

    def unregister_provider(self, provider: Any) -> None:
        for subscription in self._subscriptions.pop(provider, ()):
            self.consumer.cancel(subscription)
        super().unregister_provider(provider)

    def stop(self) -> None:
        self.wait_for_providers()
        self.kill()

    def kill(self) -> None:
        if self._thread is not None:
            self._thread.kill()
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()


class Publisher(DependencyProvider, HeaderEncoder):
    """Injects ``publish(msg, **kwargs)``: publishes with the worker's context in headers.

    ``exchange`` and the entities in ``declare`` are declared in ``setup``, before the
    container starts (a kombu entity made with ``no_declare=True`` is not);
    ``options`` are defaults for every publish (``routing_key``, ``delivery_mode``...).
    """

    def __init__(
        self,
        exchange: kombu.Exchange | None = None,
        declare: list[Any] | None = None,
        **options: Any,
    ):
        self.exchange = exchange
        self.declare = list(declare or [])
        if exchange is not None:
            self.declare.append(exchange)
        self.options = options

    def setup(self) -> None:
        self.publisher = publisher_for(self.container.config, declare=self.declare, **self.options)
        self.publisher.declare_entities()

    def get_dependency(self, worker_ctx: WorkerContext) -> Callable[..., None]:
        extra_headers = self.get_message_headers(worker_ctx)

        def publish(msg: Any, **kwargs: Any) -> None:
            kwargs.setdefault("exchange", self.exchange)
            self.publisher.publish(msg, extra_headers=extra_headers, **kwargs)

        return publish


class Consumer(Entrypoint, HeaderDecoder):
    """``@consume(queue)``: run the method with each message body from a kombu ``Queue``.

    The message is acked when the worker finishes, or requeued when it failed and
    ``requeue_on_error`` is set. ``prefetch_count`` overrides config ``PREFETCH_COUNT``.
    """

    record_kind = MESSAGE
    returns_unstarted_work = True

    queue_consumer = QueueConsumer()

    def __init__(
        self,
        queue: kombu.Queue,
        requeue_on_error: bool = False,
        prefetch_count: int | None = None,
        **kwargs: Any,
    ):
        self.queue = queue
        self.requeue_on_error = requeue_on_error
        self.prefetch_count = prefetch_count
        super().__init__(**kwargs)

    def setup(self) -> None:
        identifier = f"{self.container.service_name}.{self.method_name}.message"
        on_message = self.queue_consumer.spawning(self.handle_message, identifier)
        self.queue_consumer.consume(
            self, self.queue, on_message, prefetch_count=self.prefetch_count
        )

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)

    def handle_message(self, message: kombu.Message) -> None:
        try:
            body = serialization.decode(message)
        except Exception as exc:
            reject_malformed(message, exc)
            return
        if faults.dropped(self, (body,)):
            ack(message)
            return
        args, kwargs = (body,), {}
        if self.validator is not None:
            try:
                args, kwargs = self.check_call(args, kwargs)
            except IncorrectSignature as exc:
                # As a malformed message: running it again cannot help.
                reject_malformed(message, exc)
                return
        run_worker_for(self, message, args, kwargs)

    def handle_result(
        self, message: kombu.Message, worker_ctx: WorkerContext, result: Any, exc_info: Any
    ) -> tuple[Any, Any]:
        killed = exc_info is not None and isinstance(exc_info[1], ContainerBeingKilled)
        if killed or (exc_info is not None and self.requeue_on_error):
            requeue(message)
        else:
            ack(message)
        return result, exc_info


consume = Consumer.decorator
