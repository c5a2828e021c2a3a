"""The running system as data: services, exchanges, queues, bindings and their counts.

:func:`snapshot` reads the embedded broker's state (in the runtime's hub, which owns it) or
RabbitMQ's management API, and describes it as JSON-safe dicts: what ``sb.topology()`` draws
and ``sb.why`` reasons about. Counts that only grow (``published`` of an exchange, ``received``
and ``delivered`` of a queue) let a watcher show flow as the difference of two snapshots,
however many messages passed in between.

Services come from two places: the containers handed in (their entrypoints and queues) and
the queue names Nameko's wire format gives every service (``rpc-{service}``,
``evt-{source}-{type}--{service}.{method}``), which is how services running outside this
process show up.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.management import HTTPError, ManagementApi, management_uri, vhost_of
from sandbox.tap import QUEUE_PREFIX as TAP_QUEUE_PREFIX

MEMORY, RABBITMQ = "memory", "rabbitmq"

_RPC_QUEUE = re.compile(r"rpc-(?P<service>[^.]+)")
_EVENT_QUEUE = re.compile(r"evt-(?P<source>.+?)-(?P<type>.+?)--(?P<service>[^.]+)\.(?P<method>.+)")


def queue_owner(name: str) -> tuple[str, str | None] | None:
    """``(service, method)`` a queue belongs to by Nameko's names (method None for the RPC
    queue, which serves every ``@rpc``); None for other queues."""
    if match := _RPC_QUEUE.fullmatch(name):
        return match["service"], None
    if match := _EVENT_QUEUE.fullmatch(name):
        method = match["method"].split("-", 1)[0]  # a BROADCAST queue adds -{identifier}
        return match["service"], method
    return None


def entrypoint_queue(service: str, entrypoint: Any) -> str | None:
    """The queue an entrypoint consumes, if any: its own ``queue``, or the service's RPC
    queue for ``@rpc`` (whose queue belongs to a shared consumer)."""
    if getattr(entrypoint, "record_kind", None) == "RPC":
        return f"rpc-{service}"
    return getattr(getattr(entrypoint, "queue", None), "name", None)


def _entrypoint(service: str, entrypoint: Any) -> dict[str, Any]:
    route = getattr(entrypoint, "url", None)
    return {
        "name": entrypoint.method_name,
        "kind": getattr(entrypoint, "record_kind", "CALL"),
        "queue": entrypoint_queue(service, entrypoint),
        "route": f"{getattr(entrypoint, 'method', '')} {route}".strip() if route else None,
    }


def _services(containers: Iterable[Any], queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    for container in containers:
        name = container.service_name
        entrypoints = [_entrypoint(name, e) for e in container.entrypoints]
        services[name] = {
            "name": name,
            "local": True,
            "busy_workers": getattr(container, "busy_workers", 0),
            "entrypoints": sorted(entrypoints, key=lambda e: e["name"]),
        }
    for queue in queues:
        owner = queue_owner(queue["name"])
        if owner is None:
            continue
        service, method = owner
        entry = services.setdefault(
            service, {"name": service, "local": False, "busy_workers": None, "entrypoints": []}
        )
        known = {e["queue"] for e in entry["entrypoints"]}
        if not entry["local"] and queue["name"] not in known:
            kind = "RPC" if method is None else "EVENT"
            entry["entrypoints"].append(
                {"name": method or "*", "kind": kind, "queue": queue["name"], "route": None}
            )
    for service in services.values():
        service["queues"] = sorted({e["queue"] for e in service["entrypoints"] if e["queue"]})
    return sorted(services.values(), key=lambda s: s["name"])


def _publishes(services: list[dict[str, Any]], exchanges: list[dict[str, Any]]) -> None:
    """Each service's event exchange, ``{service}.events``, where it exists."""
    names = {e["name"] for e in exchanges}
    for service in services:
        events = f"{service['name']}.events"
        service["publishes"] = [events] if events in names else []


# --- the embedded broker -------------------------------------------------------------------


def memory_state(broker: Any) -> dict[str, Any]:
    """The embedded broker's exchanges, queues and bindings: call it in the hub."""
    unacked: Counter[str] = Counter()
    for connection in broker.connections:
        for channel in connection.channels:
            unacked.update(u.queue.name for u in channel.unacked.values())
    exchanges = [
        {"name": e.name, "type": e.type, "published": e.published, "arguments": e.arguments}
        for e in broker.exchanges.values()
        if not e.name.startswith("amq.") or e.bindings
    ]
    queues = [
        {
            "name": q.name,
            "ready": broker.ready_count(q),
            "unacked": unacked[q.name],
            "consumers": len(q.consumers),
            "consumer_tags": [c.tag for c in q.consumers],
            "received": q.received,
            "delivered": q.delivered,
            "arguments": _plain(q.arguments),
        }
        for q in broker.queues.values()
    ]
    bindings = [
        {
            "exchange": e.name,
            "queue": b.queue,
            "routing_key": b.routing_key,
            "arguments": _plain(b.arguments),
        }
        for e in broker.exchanges.values()
        for b in e.bindings.values()
    ]
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def _plain(arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in arguments.items()}


# --- RabbitMQ --------------------------------------------------------------------------------


def rabbitmq_state(api: ManagementApi, vhost: str) -> dict[str, Any]:
    """RabbitMQ's exchanges, queues and bindings of ``vhost`` from its management API.

    Its counts are as fresh as its statistics (every 5 s by default).
    """
    exchanges = [
        {
            "name": e["name"],
            "type": e["type"],
            "published": (e.get("message_stats") or {}).get("publish_in", 0),
            "arguments": e.get("arguments") or {},
        }
        for e in api.get_exchanges(vhost)
        if e["name"] and not e["name"].startswith("amq.")
    ]
    tags: dict[str, list[str]] = {}
    for consumer in api.get_consumers(vhost):
        tags.setdefault(consumer["queue"]["name"], []).append(consumer["consumer_tag"])
    queues = []
    for q in api.get_queues(vhost):
        if q["name"].startswith(TAP_QUEUE_PREFIX):
            continue  # a kernel's copy of the traffic (sandbox.tap), not part of the system
        stats = q.get("message_stats") or {}
        queues.append(
            {
                "name": q["name"],
                "ready": q.get("messages_ready", 0),
                "unacked": q.get("messages_unacknowledged", 0),
                "consumers": q.get("consumers", 0),
                "consumer_tags": tags.get(q["name"], []),
                "received": stats.get("publish", 0),
                "delivered": stats.get("deliver_get", 0),
                "arguments": q.get("arguments") or {},
            }
        )
    bindings = [
        {
            "exchange": b["source"],
            "queue": b["destination"],
            "routing_key": b["routing_key"],
            "arguments": b.get("arguments") or {},
        }
        for b in api.get_bindings(vhost)
        if b["source"]
        and b["destination_type"] == "queue"
        and not b["destination"].startswith(TAP_QUEUE_PREFIX)
    ]
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


# --- both ------------------------------------------------------------------------------------


def broker_state(amqp_uri: str, management: str | None = None) -> dict[str, Any]:
    """The state of the broker at ``amqp_uri``, with ``broker``, ``source`` and ``notice`` (set
    when the state could not be read, the rest then empty)."""
    if amqp_uri.startswith("memory://"):
        from sandbox.broker import get_broker
        from sandbox.runtime import get_runtime

        vhost = vhost_of(amqp_uri)
        state = get_runtime().call(memory_state, get_broker(vhost))
        return {"broker": MEMORY, "source": f"embedded broker, vhost {vhost}", **state}
    api = ManagementApi(management_uri(amqp_uri, management), timeout=3)
    vhost = vhost_of(amqp_uri)
    where = f"RabbitMQ management API at {api.api_url}"
    try:
        state = rabbitmq_state(api, vhost)
    except (ConnectionError, HTTPError) as exc:
        empty = {"exchanges": [], "queues": [], "bindings": []}
        return {"broker": RABBITMQ, "source": where, "notice": f"not shown: {exc}", **empty}
    return {"broker": RABBITMQ, "source": f"{where}, vhost {vhost}", "notice": None, **state}


def snapshot(
    amqp_uri: str, containers: Iterable[Any] = (), management: str | None = None
) -> dict[str, Any]:
    """The system at ``amqp_uri`` as JSON-safe data: ``services``, ``exchanges``, ``queues``,
    ``bindings``, plus ``broker`` (memory or rabbitmq), ``source`` and ``notice``."""
    state = broker_state(amqp_uri, management)
    state.setdefault("notice", None)
    state["services"] = _services(containers, state["queues"])
    _publishes(state["services"], state["exchanges"])
    return state
