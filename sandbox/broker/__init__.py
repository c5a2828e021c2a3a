"""The embedded in-process AMQP broker behind ``memory://``.

One :class:`Broker` per virtual host, shared by the whole process. The broker is plain
synchronous Python; only its ``x-expires`` timers touch eventlet, through the hub of the
thread that uses the broker (the sandbox runtime thread, or a test's own thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from eventlet.hubs import get_hub

from .channels import Cancelled, Channel, Connection, Consumer, Delivery, Event, Returned
from .core import Broker, CallLater, TimerHandle
from .exchanges import EXCHANGE_TYPES, Exchange, topic_matches
from .queues import Message, Queue

__all__ = [
    "Broker",
    "CallLater",
    "Cancelled",
    "Channel",
    "Connection",
    "Consumer",
    "Delivery",
    "EXCHANGE_TYPES",
    "Event",
    "Exchange",
    "Message",
    "Queue",
    "Returned",
    "TimerHandle",
    "get_broker",
    "reset",
    "topic_matches",
]

_brokers: dict[str, Broker] = {}
_lock = threading.Lock()


def hub_call_later(seconds: float, fn: Callable[[], None]) -> TimerHandle:
    """Run ``fn`` on the calling thread's eventlet hub after ``seconds``."""
    return get_hub().schedule_call_global(seconds, fn)


def get_broker(vhost: str = "/") -> Broker:
    """The process-wide broker of a virtual host, created on first use."""
    with _lock:
        broker = _brokers.get(vhost)
        if broker is None:
            broker = _brokers[vhost] = Broker(vhost, call_later=hub_call_later)
        return broker


def reset(vhost: str | None = None) -> None:
    """Throw away one virtual host's broker (or all of them) for a clean start.

    Open connections are closed, so a client still blocked on the old broker fails
    with a connection error instead of waiting forever.
    """
    with _lock:
        dropped = [_brokers.pop(vhost, None)] if vhost is not None else list(_brokers.values())
        if vhost is None:
            _brokers.clear()
    for broker in dropped:
        if broker is not None:
            broker.close()
