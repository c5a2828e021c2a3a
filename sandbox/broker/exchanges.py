"""Exchanges and the AMQP 0-9-1 routing rules of each exchange type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

EXCHANGE_TYPES = frozenset({"direct", "topic", "fanout", "headers"})


def _words(key: str) -> list[str]:
    # RabbitMQ reads an empty key as zero words, so "#" matches it and "*" does not.
    return key.split(".") if key else []


@lru_cache(maxsize=8192)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic match: ``*`` is exactly one word, ``#`` is zero or more words."""
    key = _words(routing_key)
    # reach[j]: the pattern words seen so far can consume exactly key[:j]
    reach = [True] + [False] * len(key)
    for word in _words(pattern):
        if word == "#":
            seen = False
            reach = [seen := seen or r for r in reach]
        else:
            reach = [False] + [
                reach[j] and (word == "*" or word == key[j]) for j in range(len(key))
            ]
    return reach[-1]


def headers_match(arguments: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
    """Headers exchange match; ``x-match`` is ``all`` (default) or ``any``."""
    wanted = [(k, v) for k, v in arguments.items() if not k.startswith("x-")]
    if arguments.get("x-match", "all") == "any":
        return any(k in headers and (v is None or headers[k] == v) for k, v in wanted)
    return all(k in headers and (v is None or headers[k] == v) for k, v in wanted)


def _binding_id(queue: str, routing_key: str, arguments: Mapping[str, Any]) -> tuple:
    # Argument values may be unhashable (lists, tables), so identity uses their repr.
    return queue, routing_key, repr(sorted(arguments.items()))


class Binding:
    __slots__ = ("queue", "routing_key", "arguments")

    def __init__(self, queue: str, routing_key: str, arguments: Mapping[str, Any]) -> None:
        self.queue = queue
        self.routing_key = routing_key
        self.arguments = dict(arguments)


_Matcher = Callable[[Binding, str, Mapping[str, Any]], bool]

_MATCHERS: dict[str, _Matcher] = {
    "direct": lambda b, key, headers: b.routing_key == key,
    "topic": lambda b, key, headers: topic_matches(b.routing_key, key),
    "fanout": lambda b, key, headers: True,
    "headers": lambda b, key, headers: headers_match(b.arguments, headers),
}


class Exchange:
    """A named exchange holding queue bindings.

    ``alternate_exchange`` (the ``alternate-exchange`` argument) names the exchange that
    gets the messages this one routes to no queue.
    """

    def __init__(
        self,
        name: str,
        type: str = "direct",
        *,
        durable: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.durable = durable
        self.auto_delete = auto_delete
        self.arguments = dict(arguments or {})
        alternate = self.arguments.get("alternate-exchange")
        self.alternate_exchange: str | None = (
            alternate.decode() if isinstance(alternate, bytes) else alternate
        )
        self.bindings: dict[tuple, Binding] = {}
        self.published = 0  # messages published to it: a count for watchers
        self._matches = _MATCHERS[type]

    def bind(self, queue: str, routing_key: str = "", arguments: Mapping | None = None) -> None:
        arguments = arguments or {}
        self.bindings[_binding_id(queue, routing_key, arguments)] = Binding(
            queue, routing_key, arguments
        )

    def unbind(self, queue: str, routing_key: str = "", arguments: Mapping | None = None) -> None:
        self.bindings.pop(_binding_id(queue, routing_key, arguments or {}), None)

    def unbind_queue(self, queue: str) -> None:
        for binding_id in [bid for bid, b in self.bindings.items() if b.queue == queue]:
            del self.bindings[binding_id]

    def route(self, routing_key: str, headers: Mapping[str, Any] | None = None) -> list[str]:
        """Names of the queues a message with this key and headers goes to, each once."""
        headers = headers or {}
        return list(
            dict.fromkeys(
                b.queue for b in self.bindings.values() if self._matches(b, routing_key, headers)
            )
        )

    def __repr__(self) -> str:
        return f"<Exchange {self.name!r} {self.type}>"
