"""Events: ``EventDispatcher`` publishes, ``@event_handler`` subscribes.

A service's events go to its topic exchange ``{service}.events`` with the event type as
routing key. Nobody listening means nobody gets them: events are not mandatory. How handlers
share events depends on their queue (Nameko's names and flags):

* ``SERVICE_POOL``: ``evt-{source}-{type}--{service}.{method}``, shared by all instances of
  the service, so exactly one of them handles each event;
* ``SINGLETON``: ``evt-{source}-{type}``, shared by every handler of that event in the
  cluster, so exactly one handler anywhere handles it;
* ``BROADCAST``: ``evt-{source}-{type}--{service}.{method}-{broadcast_identifier}``, one per
  instance, so every instance handles each event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import kombu

from sandbox import recorder
from sandbox.config import config as global_config
from sandbox.exceptions import ConfigurationError
from sandbox.messaging import Consumer, Publisher
from sandbox.records import EVENT

if TYPE_CHECKING:
    from sandbox.containers import ServiceContainer, WorkerContext

SERVICE_POOL = "service_pool"
SINGLETON = "singleton"
BROADCAST = "broadcast"


class EventHandlerConfigurationError(ConfigurationError):
    """An event handler whose options contradict each other."""


def get_event_exchange(
    service_name: str, config: Mapping[str, Any] | None = None
) -> kombu.Exchange:
    """The exchange ``service_name`` dispatches its events to.

    Config ``DECLARE_EVENT_EXCHANGES: false`` (exactly False, as in Nameko) leaves declaring it
    to someone else.
    """
    config = global_config if config is None else config
    return kombu.Exchange(
        f"{service_name}.events",
        type="topic",
        durable=True,
        delivery_mode=2,
        auto_delete=bool(config.get("AUTO_DELETE_EVENT_EXCHANGES", False)),
        no_declare=config.get("DECLARE_EVENT_EXCHANGES") is False,
    )


class EventDispatcher(Publisher):
    """Injects ``dispatch(event_type, event_data)``, sent with the worker's context data."""

    def setup(self) -> None:
        self.exchange = get_event_exchange(self.container.service_name, self.container.config)
        self.declare.append(self.exchange)
        super().setup()

    def get_dependency(self, worker_ctx: WorkerContext) -> Callable[[str, Any], None]:
        publish = super().get_dependency(worker_ctx)

        def dispatch(event_type: str, event_data: Any) -> None:
            publish(event_data, routing_key=event_type, kind=recorder.PUBLISHED_EVENT)

        return dispatch


class EventHandler(Consumer):
    """``@event_handler(source_service, event_type, ...)``: the method gets each payload."""

    record_kind = EVENT

    def __init__(
        self,
        source_service: str,
        event_type: str,
        handler_type: str = SERVICE_POOL,
        reliable_delivery: bool = True,
        requeue_on_error: bool = False,
        **kwargs: Any,
    ):
        if handler_type not in (SERVICE_POOL, SINGLETON, BROADCAST):
            raise EventHandlerConfigurationError(f"unknown handler_type {handler_type!r}")
        self.source_service = source_service
        self.event_type = event_type
        self.handler_type = handler_type
        self.reliable_delivery = reliable_delivery
        self._default_identifier = uuid.uuid4().hex
        super().__init__(queue=None, requeue_on_error=requeue_on_error, **kwargs)

    @property
    def broadcast_identifier(self) -> str:
        """Tells apart the BROADCAST queues of the instances of one service.

        The default is new for every container, so a restarted instance would leave its queue
        (and the events in it) behind: with ``reliable_delivery`` override it with something
        stable per instance, such as the host name.
        """
        return self._default_identifier

    def bind(self, container: ServiceContainer, method_name: str) -> EventHandler:
        instance = super().bind(container, method_name)
        default = type(instance).broadcast_identifier is EventHandler.broadcast_identifier
        if instance.handler_type == BROADCAST and instance.reliable_delivery and default:
            raise EventHandlerConfigurationError(
                "You are using the default broadcast identifier which is not compatible "
                "with reliable delivery. See sandbox.events.EventHandler.broadcast_identifier "
                "for details."
            )
        return instance

    def setup(self) -> None:
        exchange = get_event_exchange(self.source_service, self.container.config)
        self.queue = kombu.Queue(
            self.queue_name,
            exchange=exchange,
            routing_key=self.event_type,
            durable=True,
            auto_delete=not self.reliable_delivery,
            exclusive=self.handler_type == BROADCAST and not self.reliable_delivery,
        )
        super().setup()

    @property
    def queue_name(self) -> str:
        base = f"evt-{self.source_service}-{self.event_type}"
        if self.handler_type == SINGLETON:
            return base
        handler = f"{base}--{self.container.service_name}.{self.method_name}"
        if self.handler_type == BROADCAST:
            return f"{handler}-{self.broadcast_identifier}"
        return handler


event_handler = EventHandler.decorator
