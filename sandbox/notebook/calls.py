"""Calls made on the user's behalf: what the call form offers, firing it, replaying a record."""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass
from typing import Any

from sandbox.records import (
    CALL,
    EVENT,
    HTTP,
    MESSAGE,
    RPC,
    TIMER,
    Record,
    entrypoint_kind,
    jsonable,
)

# Request headers that describe one connection, not the request: a replay makes its own.
_HOP_HEADERS = {"host", "content-length", "connection", "accept-encoding", "keep-alive"}


@dataclass(frozen=True)
class Target:
    """Something the call form can fire: an RPC method, an HTTP route, an event handler..."""

    kind: str
    service: str
    method: str
    http_method: str | None = None
    route: str | None = None
    source: str | None = None
    event_type: str | None = None
    sensitive: bool = False  # recorded arguments are redacted, so they cannot be replayed

    @property
    def label(self) -> str:
        if self.kind == HTTP:
            return f"HTTP {self.http_method} {self.route}  ({self.service}.{self.method})"
        if self.kind == EVENT:
            return f"EVENT {self.source}.{self.event_type} -> {self.service}.{self.method}"
        return f"{self.kind} {self.service}.{self.method}"

    @property
    def takes_body(self) -> bool:
        """True when the JSON is one payload (HTTP body, event data), not call arguments."""
        return self.kind in (HTTP, EVENT)


def target_of(entrypoint: Any) -> Target | None:
    kind = entrypoint_kind(entrypoint)
    if kind == MESSAGE:  # a consumer reads a queue of its own: nothing to aim at by name
        return None
    common = {
        "kind": kind,
        "service": entrypoint.container.service_name,
        "method": entrypoint.method_name,
        "sensitive": bool(entrypoint.sensitive_arguments),
    }
    if kind == HTTP:
        http_method = entrypoint.method.split(",")[0].strip().upper()
        return Target(**common, http_method=http_method, route=entrypoint.url)
    if kind == EVENT:
        return Target(**common, source=entrypoint.source_service, event_type=entrypoint.event_type)
    return Target(**common)


def call_targets(session: Any) -> list[Target]:
    """Every target the running services offer, RPC first, then HTTP, events, the rest."""
    order = {RPC: 0, HTTP: 1, EVENT: 2, CALL: 3, TIMER: 4}
    targets = [
        target
        for handle in session.running()
        for target in map(target_of, handle.container.entrypoints)
        if target is not None
    ]
    return sorted(targets, key=lambda t: (order.get(t.kind, 9), t.label))


# A blank of each JSON type, for a parameter whose hint names it and which has no default.
_BLANKS: dict[Any, Any] = {str: "", int: 0, float: 0.0, bool: False, list: [], dict: {}}


def argument_template(session: Any, target: Target) -> str:
    """JSON arguments to edit for ``target``: its method's parameters by name, each with its
    default or a blank of its hinted type; "" for HTTP routes and events (a body, not these)."""
    handle = session.services.get(target.service)
    method = getattr(handle.cls, target.method, None) if handle is not None else None
    if target.takes_body or method is None:
        return ""
    try:
        parameters = list(inspect.signature(method).parameters.values())[1:]  # self
    except (TypeError, ValueError):
        return ""
    template = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is not parameter.empty:
            template[parameter.name] = jsonable(parameter.default)
        else:
            hint = typing.get_origin(parameter.annotation) or parameter.annotation
            if isinstance(hint, str):  # postponed annotations: the type's name
                hint = next((t for t in _BLANKS if t.__name__ == hint), None)
            template[parameter.name] = _BLANKS.get(hint)
    return json.dumps(template) if template else ""


def parse_json(text: str) -> Any:
    """The JSON in ``text``, None when blank; ValueError with a one-line reason otherwise."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None


def split_arguments(value: Any) -> tuple[list[Any], dict[str, Any]]:
    """A JSON list is positional arguments, an object keyword arguments, a scalar one argument."""
    if value is None:
        return [], {}
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    return [value], {}


def fire(
    client: Any,
    target: Target,
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    path: str | None = None,
) -> Any:
    """Call ``target`` through ``sb`` as a user would; HTTP and events take ``args[0]`` as body."""
    kwargs = kwargs or {}
    if target.kind == RPC:
        return getattr(client.rpc[target.service], target.method)(*args, **kwargs)
    if target.kind == HTTP:
        body = {"json": args[0]} if args and args[0] is not None else {}
        return client.http.request(target.http_method, path or target.route, **body)
    if target.kind == EVENT:
        return client.dispatch(target.source, target.event_type, args[0] if args else None)
    return call_entrypoint(client, target.service, target.method, args, kwargs)


def call_entrypoint(client: Any, service: str, method: str, args: Any, kwargs: dict) -> Any:
    """Run a worker of ``service.method`` directly, as a timer tick or a test hook would."""
    return client.services[service].container.run_entrypoint(method, args, kwargs)


def replay(client: Any, record: Record) -> Any:
    """Send the request ``record`` holds again, the way it first came (RPC, HTTP, event...)."""
    if record.http is not None:
        request = record.http["request"]
        headers = {k: v for k, v in request["headers"].items() if k.lower() not in _HOP_HEADERS}
        return client.http.request(
            request["method"], request["url"], headers=headers, data=request["body"]
        )
    if record.event is not None:
        if record.kind != EVENT:
            raise ValueError("replaying a published message is not supported")
        return client.dispatch(record.service, record.event["routing_key"], record.event["payload"])
    target = _running_target(client, record)
    if target.sensitive:
        raise ValueError("its arguments were redacted (sensitive_arguments): cannot replay")
    if target.takes_body:
        return fire(client, target, record.args[:1])
    return fire(client, target, record.args, record.kwargs)


def _running_target(client: Any, record: Record) -> Target:
    handle = client.services[record.service]
    if handle.container is None or handle.state != "running":
        raise ValueError(f"service {record.service!r} is not running")
    for entrypoint in handle.container.entrypoints:
        target = target_of(entrypoint)
        if target and target.method == record.entrypoint and target.kind == record.kind:
            return target
    raise ValueError(f"{record.target} is no longer an entrypoint of {record.service!r}")
