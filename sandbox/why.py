"""``sb.why``: one paragraph on what became of a recorded message.

On the embedded broker the answer is exact: the broker notes each step of every message by
its ``message_id`` (:mod:`sandbox.broker.fates`). RabbitMQ does not tell what became of one
message, so there the answer is worked out from what its management API shows now: the
bindings (routed with the broker's own routing rules), each queue's consumers, depth and
arguments, and the message's age against its TTL. Such answers say they are inferred.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.broker.deadletter import EXPIRED, MAXLEN, REJECTED
from sandbox.broker.exchanges import Exchange
from sandbox.broker.fates import ACKED, DELIVERED, QUEUED, REFUSED, REQUEUED, ROUTED, Step
from sandbox.records import EVENT, MESSAGE, Record
from sandbox.topology import MEMORY, broker_state, queue_owner

_DEATHS = {
    EXPIRED: "it expired (its TTL ran out before any consumer took it)",
    MAXLEN: "the queue dropped it to stay within its x-max-length",
    REJECTED: "a consumer rejected it without requeueing",
}


class Explanation(str):
    """The paragraph, shown as it is (no quotes) when a cell returns it."""

    def __repr__(self) -> str:
        return str(self)


def explain(record: Record, amqp_uri: str, later: Iterable[Record] = (), **options: Any) -> str:
    """What became of ``record``'s message; ``later`` are the records after it (they tell
    what pushed it out of a full queue on RabbitMQ). ``options`` go to ``broker_state``."""
    if record.kind not in (EVENT, MESSAGE) or record.event is None:
        return _worker(record)
    info = record.event
    name = f"{'Event' if record.kind == EVENT else 'Message'} #{record.id}"
    where = f"exchange {_quoted(info.get('exchange') or '')} with routing key {_quoted(_key(info))}"
    state = broker_state(amqp_uri, options.get("management"))
    if info.get("returned"):
        return (
            f"{name} was returned to its publisher, unroutable: it was published to {where} "
            f"as mandatory, and no queue takes that key. {_bindings(state, info)}"
        )
    if state.get("notice"):
        return f"{name} went to {where}; the broker cannot say more: {state['notice']}."
    if state["broker"] == MEMORY:
        steps = _steps(amqp_uri, info.get("message_id"))
        if steps is not None:
            return f"{name} went to {where}. {_from_steps(steps, state, info)}"
    return f"{name} went to {where}. {_inferred(record, state, list(later))}"


def _key(info: Mapping[str, Any]) -> str:
    return info.get("routing_key") or ""


def _quoted(text: str) -> str:
    return f"'{text}'" if text else "'' (the default exchange)"


def _worker(record: Record) -> str:
    outcome = {"ok": "finished", "error": "failed", "running": "is still running"}
    took = f" in {record.duration * 1000:.1f} ms" if record.duration is not None else ""
    error = f" ({record.error['type']}: {record.error['message']})" if record.error else ""
    via = f" from {record.source}" if record.source else ""
    return (
        f"#{record.id} is a {record.kind} worker of {record.target}: its message{via} was "
        f"delivered to service {record.service}, whose worker "
        f"{outcome.get(record.status, record.status)}{took}{error}."
    )


def _steps(amqp_uri: str, message_id: str | None) -> list[Step] | None:
    if message_id is None:
        return None
    from sandbox.broker import get_broker
    from sandbox.management import vhost_of
    from sandbox.runtime import get_runtime

    broker = get_broker(vhost_of(amqp_uri))
    return get_runtime().call(broker.fates.steps, message_id)


# --- exact: the embedded broker's steps ------------------------------------------------------


def _from_steps(steps: list[Step], state: dict[str, Any], info: Mapping[str, Any]) -> str:
    routed = next((s.detail for s in steps if s.what == ROUTED), [])
    if not routed and not any(s.what != ROUTED for s in steps):
        return f"No queue is bound for that key, so the broker dropped it. {_bindings(state, info)}"
    last: dict[str, Step] = {}
    for step in steps:
        if step.queue is not None:
            last[step.queue] = step
    queues = _queues(state)
    parts = [f"It was routed to {_names(routed)}."] if routed else []
    parts += [
        _queue_fate(name, step, queues, step.queue not in routed) for name, step in last.items()
    ]
    return " ".join(parts)


def _queue_fate(name: str, step: Step, queues: dict[str, dict], dead_lettered: bool) -> str:
    queue = queues.get(name, {})
    lead = f"Dead-lettered, it reached '{name}'" if dead_lettered else f"In '{name}'"
    if step.what == ACKED:
        return f"{lead} it was delivered to {_consumer(name, None)}, which acknowledged it."
    if step.what == DELIVERED:
        return f"{lead} it was delivered to {_consumer(name, step.detail)}, not yet acknowledged."
    if step.what in (QUEUED, REQUEUED):
        again = " again, requeued," if step.what == REQUEUED else ""
        return f"{lead} it waits{again} {_waiting(queue)}."
    if step.what == REFUSED:
        return (
            f"{lead} it was refused: the queue was full at x-max-length "
            f"{queue.get('arguments', {}).get('x-max-length')} with x-overflow "
            f"{queue.get('arguments', {}).get('x-overflow')}."
        )
    reason, exchange = step.detail
    return f"{lead} {_DEATHS.get(reason, reason)}; {_dead_letter_target(exchange)}."


def _dead_letter_target(exchange: str | None) -> str:
    if exchange is None:
        return "the queue has no dead-letter exchange, so it was dropped"
    return f"it was dead-lettered to exchange {_quoted(exchange)}"


def _consumer(queue: str, tag: str | None) -> str:
    owner = queue_owner(queue)
    who = f"service {owner[0]}" + (f" ({owner[1]})" if owner[1] else "") if owner else "a consumer"
    return f"{who}, consumer {tag}" if tag else who


def _waiting(queue: Mapping[str, Any]) -> str:
    ready = queue.get("ready", 0)
    if not queue.get("consumers"):
        return (
            f"with {ready} message(s) ready and no consumer: nothing will take it until one starts"
        )
    return f"with {ready} message(s) ready for its {queue['consumers']} consumer(s)"


# --- inferred: RabbitMQ's current state ------------------------------------------------------


def _inferred(record: Record, state: dict[str, Any], later: list[Record]) -> str:
    info = record.event or {}
    routed = _routed(state, info)
    if not routed:
        return f"No queue is bound for that key, so the broker dropped it. {_bindings(state, info)}"
    queues = _queues(state)
    parts = [f"It was routed to {_names(routed)} (inferred from the bindings RabbitMQ has now)."]
    for name in routed:
        parts.append(_inferred_fate(record, queues.get(name, {"name": name}), later, state))
    return " ".join(parts)


def _inferred_fate(
    record: Record, queue: dict[str, Any], later: list[Record], state: dict[str, Any]
) -> str:
    name, arguments = queue["name"], queue.get("arguments") or {}
    info = record.event or {}
    if queue.get("consumers"):
        busy = queue.get("ready", 0) + queue.get("unacked", 0)
        now = "it is empty now, so it was delivered" if not busy else f"{busy} message(s) in it now"
        return f"'{name}' has {queue['consumers']} consumer(s) ({_consumer(name, None)}): {now}."
    ttls = [float(t) for t in [arguments.get("x-message-ttl")] if t is not None]
    if info.get("expiration") is not None:
        ttls.append(float(info["expiration"]) * 1000)  # the publisher's option is in seconds
    age = (time.time() - record.time) * 1000
    dead = _dlx_routes(arguments, info, state)
    if ttls and age >= min(ttls):
        return f"In '{name}', which has no consumer, {_DEATHS[EXPIRED]}; {dead}."
    limit = arguments.get("x-max-length")
    pushed = sum(1 for r in later if name in _routed(state, r.event))
    if limit is not None and pushed >= int(limit):
        overflow = arguments.get("x-overflow", "drop-head")
        if overflow == "drop-head":
            return (
                f"In '{name}', which has no consumer, {pushed} later message(s) pushed it out: "
                f"{_DEATHS[MAXLEN]} of {limit} (drop-head); {dead}."
            )
    return f"In '{name}' it waits {_waiting(queue)}."


def _dlx_routes(arguments: Mapping[str, Any], info: Mapping[str, Any], state: dict) -> str:
    exchange = arguments.get("x-dead-letter-exchange")
    text = _dead_letter_target(exchange)
    if exchange is not None:
        key = arguments.get("x-dead-letter-routing-key") or _key(info)
        targets = route(state, exchange, key, info.get("headers") or {})
        text += f", which routes it to {_names(targets)}" if targets else ", which drops it"
    return text


def _routed(state: Mapping[str, Any], info: Mapping[str, Any] | None) -> list[str]:
    if info is None:
        return []
    return route(state, info.get("exchange") or "", _key(info), info.get("headers") or {})


def route(state: Mapping[str, Any], exchange: str, key: str, headers: Mapping) -> list[str]:
    """The queues the exchanges and bindings of ``state`` route a message to, following
    alternate exchanges, with the embedded broker's rules (those of RabbitMQ)."""
    if not exchange:
        return [key] if key in _queues(state) else []
    exchanges = {e["name"]: e for e in state["exchanges"]}
    seen: set[str] = set()
    name: str | None = exchange
    while name in exchanges and name not in seen:
        seen.add(name)
        described = exchanges[name]
        model = Exchange(name, described["type"], arguments=described.get("arguments"))
        for binding in state["bindings"]:
            if binding["exchange"] == name:
                model.bind(binding["queue"], binding["routing_key"], binding.get("arguments"))
        if routed := model.route(key, headers):
            return routed
        name = model.alternate_exchange
    return []


# --- shared ----------------------------------------------------------------------------------


def _queues(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in state["queues"]}


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names) or "no queue"


def _bindings(state: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    exchange = info.get("exchange") or ""
    if not exchange:
        return f"The default exchange routes to the queue named '{_key(info)}', and none exists."
    bound = [b for b in state["bindings"] if b["exchange"] == exchange]
    if not bound:
        return f"Exchange '{exchange}' has no bindings at all."
    listed = "; ".join(f"'{b['queue']}' for '{b['routing_key']}'" for b in bound)
    return f"The bindings of '{exchange}' are: {listed}."
