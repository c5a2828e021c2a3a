"""Dead-lettering: the message a queue hands to its ``x-dead-letter-exchange``.

The ``x-death`` header is shaped as RabbitMQ 3.x shapes it: a list of tables, most recent
first, one per (queue, reason) with a ``count``; the first death also gets the top-level
``x-first-death-reason``/``-queue``/``-exchange`` headers.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from .queues import Message

__all__ = ["dead_lettered", "is_cycle"]

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"


def _first_death_headers(death: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "x-first-death-exchange": death["exchange"],
        "x-first-death-queue": death["queue"],
        "x-first-death-reason": death["reason"],
    }


def _deaths(headers: Mapping[str, Any]) -> list[dict[str, Any]]:
    deaths = headers.get("x-death")
    return [d for d in deaths if isinstance(d, dict)] if isinstance(deaths, list) else []


def _recorded(deaths: list[dict[str, Any]], death: dict[str, Any]) -> list[dict[str, Any]]:
    """``x-death`` with this death added: a new table in front, or the count of the table of
    the same queue and reason raised and that table moved in front (its time stays)."""
    key = (death["queue"], death["reason"])
    same = [d for d in deaths if (d.get("queue"), d.get("reason")) == key]
    others = [d for d in deaths if (d.get("queue"), d.get("reason")) != key]
    if same:
        death = {**same[0], "count": sum(int(d.get("count", 0)) for d in same) + 1}
    return [death, *others]


def dead_lettered(
    message: Message,
    reason: str,
    queue: str,
    timestamp: int,
    exchange: str,
    routing_key: str | None,
) -> Message:
    """``message`` as dead-lettered by ``queue`` to ``exchange`` for ``reason``.

    ``routing_key`` is the queue's ``x-dead-letter-routing-key`` (None keeps the message's
    own key). The ``expiration`` property goes into ``x-death`` as ``original-expiration``,
    so the message does not expire again where it lands.
    """
    properties = dict(message.properties)
    headers = dict(message.headers)
    cc = headers.get("CC")
    death: dict[str, Any] = {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "time": datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).replace(tzinfo=None),
        "exchange": message.exchange,
        "routing-keys": [message.routing_key, *(cc if isinstance(cc, list) else [])],
    }
    expiration = properties.pop("expiration", None)
    if expiration is not None:
        death["original-expiration"] = expiration
    if "x-death" not in headers:
        headers.update(_first_death_headers(death))
    headers["x-death"] = _recorded(_deaths(headers), death)
    if routing_key is not None:
        headers.pop("CC", None)  # the new key replaces every key the message had
    properties["application_headers"] = headers
    return Message(
        message.body,
        properties,
        exchange=exchange,
        routing_key=message.routing_key if routing_key is None else routing_key,
    )


def is_cycle(queue: str, deaths: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a message with this ``x-death`` would go round to ``queue`` again with no
    rejection on the way: RabbitMQ drops it rather than loop forever."""
    for index, death in enumerate(deaths):
        if death.get("queue") == queue:
            return all(d.get("reason") != REJECTED for d in deaths[: index + 1])
    return False
