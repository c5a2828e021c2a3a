"""The embedded in-process AMQP broker behind ``memory://``.

One :class:`Broker` per virtual host, shared by the whole process. The broker is plain
synchronous Python; only its timers (message TTL, ``x-expires``) touch eventlet, through
the hub of the thread that uses the broker (the sandbox runtime thread, or a test's own
thread), unless a test installs a manual clock (:mod:`sandbox.broker.clock`).

It implements what RabbitMQ 3.x classic queues do with: dead-lettering
(``x-dead-letter-exchange``, ``x-dead-letter-routing-key``, the ``x-death`` header),
``x-message-ttl`` and per-message ``expiration``, ``x-expires``, ``x-max-length``,
``x-max-length-bytes`` and ``x-overflow``, ``x-max-priority``, ``x-single-active-consumer``
and the ``alternate-exchange`` of exchanges. Any other queue, exchange or consumer argument
is refused with a channel error naming it.
"""

from __future__ import annotations

import threading

from . import clock
from .channels import (
    BrokerConsumer,
    Cancelled,
    Channel,
    Connection,
    Delivery,
    Event,
    Published,
    Returned,
)
from .clock import Clock, ManualClock
from .core import Broker
from .exchanges import EXCHANGE_TYPES, Exchange, topic_matches
from .queues import Message, Queue

__all__ = [
    "Broker",
    "Cancelled",
    "Channel",
    "Clock",
    "Connection",
    "BrokerConsumer",
    "Delivery",
    "EXCHANGE_TYPES",
    "Event",
    "Exchange",
    "ManualClock",
    "Message",
    "Published",
    "Queue",
    "Returned",
    "clock",
    "get_broker",
    "reset",
    "topic_matches",
]

_brokers: dict[str, Broker] = {}
_lock = threading.Lock()


def get_broker(vhost: str = "/") -> Broker:
    """The process-wide broker of a virtual host, created on first use (on the clock
    installed then, see :mod:`sandbox.broker.clock`)."""
    with _lock:
        broker = _brokers.get(vhost)
        if broker is None:
            broker = _brokers[vhost] = Broker(vhost)
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
