"""An AsyncAPI 3.0 document for the AMQP side of service classes.

What each service receives and sends, on Nameko's wire format:

* ``@rpc`` methods receive requests on exchange ``nameko-rpc`` with routing key
  ``{service}.{method}`` and reply to the caller's queue;
* ``@event_handler`` methods receive events from ``{source}.events``, routed by event type;
* an ``EventDispatcher`` sends to ``{service}.events``: the event types are read from the
  class source (``self.dispatch("type", payload)``), and a type only known at run time gives
  a channel whose address is the parameter ``{routing_key}``;
* ``@consume`` methods receive from their queue; a ``Publisher`` sends to its exchange;
* an ``RpcProxy``/``ServiceRpc``/``ClusterRpc`` sends requests for the methods the source
  calls through it (``self.greeter.hello(...)``, ``self.cluster.greeter.hello(...)``).

Payload schemas come from type hints (the first argument of a handler, the arguments and
return value of an RPC method) or, for what a service sends, from the literal in the call.
Timers send nothing over AMQP: they are listed under the ``x-timers`` extension.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import kombu

from sandbox.amqp.connection import amqp_uri
from sandbox.docs.schema import Schemas, set_default
from sandbox.docs.source import (
    MISSING,
    SelfCall,
    document_title,
    entrypoints_in_order,
    expected_exceptions,
    first_argument_hint,
    handler_parameters,
    literal_string,
    self_calls,
    service_tag,
    summary_and_description,
    type_hints,
)
from sandbox.events import (
    BROADCAST,
    SERVICE_POOL,
    SINGLETON,
    EventDispatcher,
    EventHandler,
    get_event_exchange,
)
from sandbox.extensions import Entrypoint, is_dependency
from sandbox.messaging import Consumer, Publisher
from sandbox.rpc_calling import ClusterRpc
from sandbox.rpc_routes import get_rpc_exchange
from sandbox.rpc_serving import Rpc
from sandbox.timer import Timer

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
RPC_REPLY_CHANNEL = "rpc-reply"

_CONTEXT_HEADERS = {
    "type": "object",
    "description": "Context data, sent as headers prefixed 'nameko.'.",
    "properties": {
        "nameko.call_id_stack": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the ids of the calls that led to this message, oldest first",
        },
    },
}
_RPC_REQUEST_HEADERS = {
    "allOf": [
        {"$ref": "#/components/schemas/ContextHeaders"},
        {
            "type": "object",
            "description": "reply_to and correlation_id are AMQP message properties.",
            "properties": {
                "reply_to": {"type": "string", "description": "the reply's routing key"},
                "correlation_id": {"type": "string", "format": "uuid"},
            },
            "required": ["reply_to", "correlation_id"],
        },
    ]
}
_REMOTE_ERROR = {
    "type": "object",
    "description": "A serialized exception; clients raise it as RemoteError.",
    "properties": {
        "exc_type": {"type": "string"},
        "exc_path": {"type": "string"},
        "exc_args": {"type": "array"},
        "value": {"type": "string"},
    },
    "required": ["exc_type", "value"],
}
_HANDLER_TYPES = {
    SERVICE_POOL: "One instance of the service handles each event.",
    SINGLETON: "One handler in the whole cluster handles each event.",
    BROADCAST: "Every instance of the service handles each event.",
}


def asyncapi_document(
    service_classes: Iterable[type],
    title: str | None = None,
    version: str = "1.0.0",
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the AMQP entrypoints and publishers of the classes.

    ``config`` (default: the global config) names the broker and the RPC exchange.
    """
    if config is None:
        from sandbox.config import config
    document = _Document(config)
    for service_cls in service_classes:
        document.add_service(service_cls)
    return document.build(title, version)


class _Document:
    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        self.broker_url = amqp_uri(config)
        self.vhost = _vhost(self.broker_url)
        self.schemas = Schemas(draft07=True)
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.tags: list[dict[str, Any]] = []
        self.timers: list[dict[str, Any]] = []

    def build(self, title: str | None, version: str) -> dict[str, Any]:
        info: dict[str, Any] = {"title": title or document_title(self.tags), "version": version}
        if self.tags:
            info["tags"] = self.tags
        document: dict[str, Any] = {
            "asyncapi": ASYNCAPI_VERSION,
            "info": info,
            "defaultContentType": "application/json",
        }
        server = _server(self.broker_url)
        if server is not None:
            document["servers"] = {"broker": server}
        document["channels"] = self.channels
        document["operations"] = self.operations
        if self.schemas.components:
            document["components"] = {"schemas": self.schemas.components}
        if self.timers:
            document["x-timers"] = self.timers
        return document

    def add_service(self, service_cls: type) -> None:
        found = False
        for method_name, entrypoint in entrypoints_in_order(service_cls):
            found = self._entrypoint(service_cls, method_name, entrypoint) or found
        for attr, provider in inspect.getmembers(service_cls, is_dependency):
            if isinstance(provider, EventDispatcher):
                self._dispatcher(service_cls, attr)
                found = True
            elif isinstance(provider, Publisher):
                self._publisher(service_cls, attr, provider)
                found = True
            elif isinstance(provider, ClusterRpc):
                found = self._rpc_client(service_cls, attr, provider) or found
        if found:
            self.tags.append(service_tag(service_cls))

    def _entrypoint(self, service_cls: type, method_name: str, entrypoint: Entrypoint) -> bool:
        method = getattr(service_cls, method_name)
        if isinstance(entrypoint, Rpc):
            self._rpc(service_cls, method_name, method, entrypoint)
        elif isinstance(entrypoint, EventHandler):
            self._event_handler(service_cls, method_name, method, entrypoint)
        elif isinstance(entrypoint, Consumer):
            self._consumer(service_cls, method_name, method, entrypoint)
        elif isinstance(entrypoint, Timer):
            self.timers.append(
                {
                    "service": service_cls.name,
                    "method": method_name,
                    "interval": entrypoint.interval,
                    "eager": entrypoint.eager,
                }
            )
        else:
            return False
        return True

    # --- what services receive ----------------------------------------------------------------

    def _rpc(self, service_cls: type, method_name: str, method: Callable, entrypoint: Rpc) -> None:
        address = f"{service_cls.name}.{method_name}"
        result = self.schemas.of(type_hints(method).get("return", MISSING))
        reply = self._reply(result, expected_exceptions(entrypoint))
        operation = self._rpc_operation("receive", address, self._arguments(method), reply)
        self._operation(address, service_cls, method, operation)

    def _rpc_operation(
        self, action: str, address: str, arguments: dict[str, Any], reply: dict[str, Any]
    ) -> dict[str, Any]:
        """The operation of serving (receive) or calling (send) the RPC method ``address``.

        The server's signature describes the method better than any call does: its messages
        replace those a caller documented.
        """
        channel = self._exchange_channel(get_rpc_exchange(self.config), address)
        self._context_headers()
        serving = action == "receive"
        request = self._message(
            channel,
            "request",
            {
                "name": f"{address}.request",
                "summary": "Arguments by position in args or by name in kwargs.",
                "headers": self.schemas.component("RpcRequestHeaders", _RPC_REQUEST_HEADERS),
                "payload": arguments,
                "correlationId": {"location": "$message.header#/correlation_id"},
            },
            replace=serving,
        )
        reply_message = self._message(
            self._reply_channel(),
            address,
            {
                "name": f"{address}.reply",
                "payload": reply,
                "correlationId": {"location": "$message.header#/correlation_id"},
            },
            replace=serving,
        )
        return {
            "action": action,
            "channel": _ref("channels", channel),
            "messages": [request],
            "reply": {
                "address": {
                    "location": "$message.header#/reply_to",
                    "description": "the request's reply_to, a routing key on the same exchange",
                },
                "channel": _ref("channels", RPC_REPLY_CHANNEL),
                "messages": [reply_message],
            },
        }

    def _arguments(self, method: Callable) -> dict[str, Any]:
        hints = type_hints(method)
        parameters = handler_parameters(method)
        by_kind = {p.kind: p for p in parameters}
        args = self.schemas.positional(
            [self._argument(p, hints) for p in parameters if p.kind in _POSITIONAL],
            more=self._rest(by_kind.get(inspect.Parameter.VAR_POSITIONAL), hints),
        )
        kwargs = {
            "type": "object",
            "properties": {
                p.name: self._argument(p, hints) for p in parameters if p.kind in _NAMED
            },
        }
        more = self._rest(by_kind.get(inspect.Parameter.VAR_KEYWORD), hints)
        if more is not True:
            kwargs["additionalProperties"] = more
        return {
            "type": "object",
            "properties": {"args": args, "kwargs": kwargs},
            "required": ["args", "kwargs"],
        }

    def _rest(
        self, parameter: inspect.Parameter | None, hints: dict[str, Any]
    ) -> bool | dict[str, Any]:
        """What ``*args`` or ``**kwargs`` take: nothing (False), anything (True), or a schema."""
        if parameter is None:
            return False
        return self.schemas.of(hints.get(parameter.name, MISSING)) or True

    def _argument(self, parameter: inspect.Parameter, hints: dict[str, Any]) -> dict[str, Any]:
        schema = {**self.schemas.of(hints.get(parameter.name, MISSING)), "title": parameter.name}
        if parameter.default is not inspect.Parameter.empty:
            set_default(schema, parameter.default)
        return schema

    def _reply(
        self, result: dict[str, Any], expected: tuple[type[BaseException], ...]
    ) -> dict[str, Any]:
        """A result and no error, or an error and no result."""
        error = self.schemas.component("RemoteError", _REMOTE_ERROR)
        if expected:
            error = {**error, "description": "expected: " + ", ".join(e.__name__ for e in expected)}
        null = {"type": "null"}
        return {"anyOf": [_reply_schema(result, null), _reply_schema(null, error)]}

    def _event_handler(
        self, service_cls: type, method_name: str, method: Callable, entrypoint: EventHandler
    ) -> None:
        exchange = get_event_exchange(entrypoint.source_service, self.config)
        channel = self._exchange_channel(exchange, entrypoint.event_type)
        message = self._payload_message(channel, "event", first_argument_hint(method))
        operation = {
            "action": "receive",
            "channel": _ref("channels", channel),
            "messages": [message],
            "x-handler-type": entrypoint.handler_type,
        }
        note = _HANDLER_TYPES[entrypoint.handler_type]
        self._operation(f"{service_cls.name}.{method_name}", service_cls, method, operation, note)

    def _consumer(
        self, service_cls: type, method_name: str, method: Callable, entrypoint: Consumer
    ) -> None:
        channel = self._queue_channel(entrypoint.queue)
        message = self._payload_message(channel, "message", first_argument_hint(method))
        operation = {"action": "receive", "channel": _ref("channels", channel)}
        operation["messages"] = [message]
        self._operation(f"{service_cls.name}.{method_name}", service_cls, method, operation)

    # --- what services send -------------------------------------------------------------------

    def _dispatcher(self, service_cls: type, attr: str) -> None:
        def event_type(call: SelfCall) -> str | None:
            return literal_string(call.argument(0, "event_type"))

        exchange = get_event_exchange(service_cls.name, self.config)
        for key, payload in _sent(service_cls, attr, event_type, (1, "event_data")).items():
            self._send(service_cls, attr, exchange, key, payload, "event")

    def _publisher(self, service_cls: type, attr: str, provider: Publisher) -> None:
        def routing_key(call: SelfCall) -> str | None:
            node = call.argument(None, "routing_key")
            return provider.options.get("routing_key") if node is None else literal_string(node)

        exchange = provider.exchange or kombu.Exchange("")
        for key, payload in _sent(service_cls, attr, routing_key, (0, "msg")).items():
            self._send(service_cls, attr, exchange, key, payload, "message")

    def _send(
        self,
        service_cls: type,
        attr: str,
        exchange: kombu.Exchange,
        routing_key: str | None,
        payload: Any,
        key: str,
    ) -> None:
        channel = self._exchange_channel(exchange, routing_key)
        message = self._payload_message(channel, key, payload)
        operation = {"action": "send", "channel": _ref("channels", channel), "messages": [message]}
        suffix = f".{routing_key}" if routing_key else ""
        self._operation(f"{service_cls.name}.{attr}{suffix}", service_cls, None, operation)

    def _rpc_client(self, service_cls: type, attr: str, provider: ClusterRpc) -> bool:
        """Send operations for the RPC methods called through ``self.<attr>``."""
        target = getattr(provider, "target_service", None)  # a ServiceRpc's
        called = False
        for call in self_calls(service_cls, attr) or []:
            path = call.path if target is None else [target, *call.path]
            if len(path) == 2:
                address = ".".join(path)
                reply = self._reply({}, ())
                operation = self._rpc_operation("send", address, self._call_arguments(call), reply)
                self._operation(
                    f"{service_cls.name}.{attr}.{address}", service_cls, None, operation
                )
                called = True
        return called

    def _call_arguments(self, call: SelfCall) -> dict[str, Any]:
        """The request body a call site sends, from what its arguments show."""
        args, keywords = call.node.args, call.node.keywords
        unpacked = any(isinstance(arg, ast.Starred) for arg in args)
        items = [self.schemas.of(call.hint(arg)) for arg in args if not unpacked]
        named = {k.arg: call.hint(k.value) for k in keywords if k.arg is not None}
        more = unpacked or any(k.arg is None for k in keywords)  # *args, **kwargs
        return {
            "type": "object",
            "properties": {
                "args": self.schemas.positional(items, more=unpacked),
                "kwargs": self.schemas.object(named, more=more),
            },
            "required": ["args", "kwargs"],
        }

    # --- channels, messages, operations ---------------------------------------------------------

    def _exchange_channel(self, exchange: kombu.Exchange, routing_key: str | None) -> str:
        """The channel of messages sent to ``exchange`` with ``routing_key``.

        None is a routing key only known at run time: the address is then a parameter.
        """
        name = exchange.name or "(default exchange)"
        channel_id = f"{name}.{routing_key}" if routing_key else name
        if channel_id not in self.channels:
            channel: dict[str, Any] = {"address": routing_key or "{routing_key}", "messages": {}}
            if not routing_key:
                channel["parameters"] = {"routing_key": {"description": "chosen at run time"}}
            binding = {
                "name": exchange.name,
                "type": exchange.type if exchange.name else "default",
                "durable": bool(exchange.durable),
                "autoDelete": bool(exchange.auto_delete),
                "vhost": self.vhost,
            }
            channel["bindings"] = _amqp_binding({"is": "routingKey", "exchange": binding})
            self.channels[channel_id] = channel
        return channel_id

    def _queue_channel(self, queue: kombu.Queue) -> str:
        channel_id = f"queue.{queue.name}"
        if channel_id not in self.channels:
            binding = {
                "name": queue.name,
                "durable": bool(queue.durable),
                "exclusive": bool(queue.exclusive),
                "autoDelete": bool(queue.auto_delete),
                "vhost": self.vhost,
            }
            channel = {"address": queue.name, "messages": {}}
            if queue.exchange is not None and queue.exchange.name:
                channel["description"] = (
                    f"Bound to exchange {queue.exchange.name!r} "
                    f"with routing key {queue.routing_key!r}."
                )
            channel["bindings"] = _amqp_binding({"is": "queue", "queue": binding})
            self.channels[channel_id] = channel
        return channel_id

    def _reply_channel(self) -> str:
        self.channels.setdefault(
            RPC_REPLY_CHANNEL,
            {
                "address": None,
                "description": "The caller's reply queue, rpc.reply-{caller}-{uuid}.",
                "messages": {},
            },
        )
        return RPC_REPLY_CHANNEL

    def _payload_message(self, channel: str, key: str, payload: Any) -> dict[str, str]:
        self._context_headers()
        message = {
            "headers": {"$ref": "#/components/schemas/ContextHeaders"},
            "payload": self.schemas.of(payload),
        }
        return self._message(channel, key, message)

    def _context_headers(self) -> None:
        self.schemas.component("ContextHeaders", _CONTEXT_HEADERS)

    def _message(
        self, channel: str, key: str, message: dict[str, Any], replace: bool = False
    ) -> dict[str, str]:
        """Add ``message`` to the channel; a reference to it.

        A sender and a receiver of one channel both describe its message: unless told to
        ``replace`` it, the first one that knows the payload's schema stays.
        """
        messages = self.channels[channel]["messages"]
        if replace or not messages.get(key, {}).get("payload"):
            messages[key] = message
        return _ref("channels", channel, "messages", key)

    def _operation(
        self,
        operation_id: str,
        service_cls: type,
        method: Callable | None,
        operation: dict[str, Any],
        note: str | None = None,
    ) -> None:
        summary, description = summary_and_description(method) if method else (None, None)
        if summary:
            operation["summary"] = summary
        text = "\n\n".join(filter(None, [description, note]))
        if text:
            operation["description"] = text
        operation["tags"] = [{"name": service_cls.name}]
        self.operations[operation_id] = operation


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _sent(
    service_cls: type,
    attr: str,
    key_of: Callable[[SelfCall], str | None],
    payload_argument: tuple[int, str],
) -> dict[str | None, Any]:
    """Routing key -> payload hint for each ``self.<attr>(...)`` call in the class source.

    A key that is not a literal, or calls that cannot be read, give the run-time key None.
    """
    calls = [call for call in self_calls(service_cls, attr) or [] if not call.path]
    if not calls:
        return {None: MISSING}
    sent: dict[str | None, Any] = {}
    for call in calls:
        payload = call.hint(call.argument(*payload_argument))
        key = key_of(call)
        if sent.get(key, MISSING) is MISSING:
            sent[key] = payload
    return sent


def _reply_schema(result: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"result": result, "error": error},
        "required": ["result", "error"],
    }


def _amqp_binding(binding: dict[str, Any]) -> dict[str, Any]:
    return {"amqp": {**binding, "bindingVersion": AMQP_BINDING_VERSION}}


def _ref(*path: str) -> dict[str, str]:
    # JSON pointer escaping: channel ids may hold '/' (a queue name) or '~'.
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in path)
    return {"$ref": "#/" + "/".join(escaped)}


def _vhost(broker_url: str) -> str:
    path = urlsplit(broker_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _server(broker_url: str) -> dict[str, Any] | None:
    """The broker of an ``amqp://`` URI, credentials left out; None for ``memory://``."""
    parts = urlsplit(broker_url)
    if parts.scheme not in ("amqp", "amqps", "pyamqp"):
        return None
    secure = parts.scheme == "amqps"
    vhost = _vhost(broker_url)
    return {
        "host": f"{parts.hostname or 'localhost'}:{parts.port or (5671 if secure else 5672)}",
        "protocol": "amqps" if secure else "amqp",
        "protocolVersion": "0-9-1",
        "pathname": vhost if vhost.startswith("/") else f"/{vhost}",
    }
