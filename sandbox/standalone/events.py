"""Dispatching events from outside services: ``event_dispatcher()(service, type, data)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sandbox import recorder
from sandbox.config import config as global_config
from sandbox.events import get_event_exchange
from sandbox.messaging import publisher_for

__all__ = ["event_dispatcher", "get_event_exchange"]


def event_dispatcher(
    config: Mapping[str, Any] | None = None, **kwargs: Any
) -> Callable[[str, str, Any], None]:
    """A ``dispatch(service_name, event_type, event_data)`` usable from any thread.

    ``config`` defaults to the global ``sandbox.config``; ``kwargs`` are publisher options
    (``uri``, ``ssl``, ``serializer``, ``delivery_mode``...). Like Nameko's, it sends no
    context headers, and declares no exchange: the source's ``{service}.events`` exchange
    must exist (its dispatcher or a handler declares it), else the broker's NotFound raises.
    """
    config = global_config if config is None else config
    publisher = publisher_for(config, **kwargs)

    def dispatch(service_name: str, event_type: str, event_data: Any) -> None:
        exchange = get_event_exchange(service_name, config)
        publisher.publish_from_any_thread(
            event_data, exchange=exchange, routing_key=event_type, kind=recorder.PUBLISHED_EVENT
        )

    return dispatch
