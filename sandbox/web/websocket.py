"""WebSocket RPC: ``@rpc`` methods called over a websocket, and a hub that pushes events.

A client opens ``ws://host:port/ws`` on the service's web server. Its first frame is the event
``connected``, whose data holds the connection's ``socket_id``. Then each text frame
``{"method": NAME, "data": {...}, "correlation_id": ID}`` runs the service's ``@rpc`` method
``NAME(socket_id, **data)``, and is answered with
``{"type": "result", "success": true, "data": RESULT, "correlation_id": ID}``, or with
``"success": false`` and ``"error"``, the exception serialized as RPC errors are. Frames of one
connection are answered in turn. Through the :class:`WebSocketHub` that
:class:`WebSocketHubProvider` injects, a service subscribes sockets to channels and pushes
``{"type": "event", "event": NAME, "data": DATA}`` to one socket (``unicast``) or to every
socket of a channel (``broadcast``). The frames are Nameko's.

A message bigger than ``MAX_CONTENT_LENGTH`` closes the connection with code 1009; a client
that does not read its events for ``WEB_SOCKET_TIMEOUT`` seconds is disconnected. An idle
connection stays open.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
import uuid
from typing import Any, NamedTuple

import eventlet
import eventlet.greenio
from eventlet.websocket import FailedConnectionError, RFC6455WebSocket, WebSocketWSGI
from werkzeug.routing import Rule

from sandbox.containers import WorkerContext
from sandbox.exceptions import ConnectionNotFound, MalformedRequest, MethodNotFound, serialize
from sandbox.extensions import DependencyProvider, ProviderCollector, SharedExtension
from sandbox.web.handlers import ServerEntrypoint, run_inline
from sandbox.web.server import DEFAULT_SOCKET_TIMEOUT, SOCKET_TIMEOUT_CONFIG_KEY, Request, WebServer

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/ws"
GOING_AWAY = 1001  # the close code of a server that stops


class SocketInfo(NamedTuple):
    """An open websocket and the context data its workers get."""

    socket: RFC6455WebSocket
    data: dict[str, Any]


class _CheckedMessage(RFC6455WebSocket.Message):
    """A message whose fragments add up to the frame limit at most, and whose text is UTF-8.

    eventlet bounds each frame, not a message sent in many fragments, which would otherwise
    grow without limit; and it answers invalid UTF-8 with an internal error (1011) instead of
    the protocol's 1007.
    """

    size = 0

    def push(self, data: bytes, final: bool = False) -> None:
        self.size += len(data)
        if self.size > self.max_frame_length:
            raise FailedConnectionError(1009, f"message over {self.max_frame_length} bytes")
        super().push(data, final)

    def getvalue(self) -> str | bytes:
        try:
            return super().getvalue()
        except UnicodeDecodeError:
            raise FailedConnectionError(1007, "text is not valid UTF-8") from None


def decode_frame(raw: str | bytes) -> Any:
    """A client's frame as JSON; None when it is not JSON (deep nesting included)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def parse_call(frame: Any) -> tuple[str, dict[str, Any]]:
    """``(method, data)`` of a decoded frame; MalformedRequest when it is not a call."""
    if not isinstance(frame, dict):
        raise MalformedRequest("Invalid JSON data")
    method, data = frame.get("method"), frame.get("data") or {}
    if not isinstance(method, str) or not isinstance(data, dict):
        raise MalformedRequest("a call is {'method': NAME, 'data': {...}, 'correlation_id': ID}")
    return method, data


def event_frame(event: str, data: Any) -> str:
    return json.dumps({"type": "event", "event": event, "data": data})


def result_frame(correlation_id: Any, result: Any = None, exc: BaseException | None = None) -> str:
    """The answer to a call: its result, or its error serialized as RPC errors are."""
    if exc is not None:
        answer = {"success": False, "error": serialize(exc)}
    else:
        answer = {"success": True, "data": result}
    return json.dumps({"type": "result", **answer, "correlation_id": correlation_id})


class WebSocketServer(ProviderCollector, SharedExtension):
    """The ``/ws`` route of a container's web server, and its open websockets by socket id."""

    wsgi_server = WebServer()

    def __init__(self) -> None:
        super().__init__()
        self.sockets: dict[str, SocketInfo] = {}
        self.send_timeout = DEFAULT_SOCKET_TIMEOUT

    def setup(self) -> None:
        self.send_timeout = self.container.config.get(
            SOCKET_TIMEOUT_CONFIG_KEY, DEFAULT_SOCKET_TIMEOUT
        )
        self.wsgi_server.register_provider(self)

    def stop(self) -> None:
        self.wsgi_server.unregister_provider(self)
        self.close_all()
        super().stop()

    def kill(self) -> None:
        self.wsgi_server.unregister_provider(self)
        self.close_all()

    def get_url_rule(self) -> Rule:
        return Rule(WEBSOCKET_PATH, methods=["GET"], websocket=True)

    def handle_request(self, request: Request) -> WebSocketWSGI:
        """The WSGI app that upgrades this request and serves the websocket until it closes."""
        context_data = self.wsgi_server.context_data_from_headers(request)
        limit = self.wsgi_server.max_content_length or sys.maxsize
        app = WebSocketWSGI(lambda ws: self.serve(ws, context_data), max_frame_length=limit)
        app.support_legacy_versions = False  # hixie-76 frames have no length to bound
        return app

    def serve(self, ws: RFC6455WebSocket, context_data: dict[str, Any]) -> None:
        ws.Message = _CheckedMessage
        # Idle is the normal state of a websocket: only sends keep a deadline (see send).
        ws.socket.settimeout(None)
        socket_id, context_data = self.add_websocket(ws, context_data)
        try:
            if not self.send_frame(ws, event_frame("connected", {"socket_id": socket_id})):
                return
            while (raw := ws.wait()) is not None:
                if not self.send_frame(ws, self.answer(socket_id, context_data, raw)):
                    return
        finally:
            self.remove_socket(socket_id)

    def answer(self, socket_id: str, context_data: dict[str, Any], raw: str | bytes) -> str:
        frame = decode_frame(raw)
        correlation_id = frame.get("correlation_id") if isinstance(frame, dict) else None
        try:
            method, data = parse_call(frame)
            result = self.get_provider_for_method(method).handle_message(
                socket_id, data, context_data
            )
            return result_frame(correlation_id, result)
        except Exception as exc:
            return result_frame(correlation_id, exc=exc)

    def get_provider_for_method(self, method: str) -> WebSocketRpc:
        for provider in self._providers:
            if isinstance(provider, WebSocketRpc) and provider.method_name == method:
                return provider
        raise MethodNotFound(method)

    def add_websocket(
        self, ws: RFC6455WebSocket, initial_context_data: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        socket_id = str(uuid.uuid4())
        context_data = dict(initial_context_data or ())
        self.sockets[socket_id] = SocketInfo(ws, context_data)
        return socket_id, context_data

    def remove_socket(self, socket_id: str) -> None:
        self.sockets.pop(socket_id, None)
        for provider in list(self._providers):
            if isinstance(provider, WebSocketHubProvider):
                provider.cleanup_websocket(socket_id)

    def send(self, socket_id: str, payload: str) -> bool:
        """Send a frame to an open socket; False if there is none, or it could not go."""
        info = self.sockets.get(socket_id)
        return info is not None and self.send_frame(info.socket, payload)

    def send_frame(self, ws: RFC6455WebSocket, payload: str) -> bool:
        """Send a frame; False, and the connection ends, if it cannot go in ``send_timeout``."""
        try:
            with eventlet.Timeout(self.send_timeout, TimeoutError("send timed out")):
                ws.send(payload)
        except OSError as exc:
            log.debug("websocket send failed (%s); disconnecting it", exc)
            # The connection's own green thread then reads the end of the stream and returns.
            eventlet.greenio.shutdown_safe(ws.socket)
            return False
        return True

    def close_all(self) -> None:
        """Close every websocket with 1001 (going away); their green threads end on their own."""
        for socket_id, info in list(self.sockets.items()):
            self.remove_socket(socket_id)
            close = struct.pack("!H", GOING_AWAY) + b"service stopping"
            try:
                with eventlet.Timeout(self.send_timeout, TimeoutError("close timed out")):
                    info.socket.send(close, control_code=8)
            except OSError:
                pass  # a client gone or stuck: it gets no goodbye
            eventlet.greenio.shutdown_safe(info.socket.socket)


class HubConnection:
    """The channels one socket is subscribed to."""

    def __init__(self, socket_id: str, context_data: dict[str, Any]):
        self.socket_id = socket_id
        self.context_data = context_data
        self.subscriptions: set[str] = set()


class WebSocketHub:
    """What a service injects with :class:`WebSocketHubProvider`: channels and pushes."""

    def __init__(self, server: WebSocketServer):
        self._server = server
        self.connections: dict[str, HubConnection] = {}
        self.subscriptions: dict[str, set[str]] = {}

    def get_subscriptions(self, socket_id: str) -> list[str]:
        """The channels ``socket_id`` is subscribed to, sorted."""
        connection = self.connections.get(socket_id)
        return sorted(connection.subscriptions) if connection is not None else []

    def subscribe(self, socket_id: str, channel: str) -> None:
        """Subscribe a socket to a channel; ConnectionNotFound if no such socket is open."""
        connection = self.connections.get(socket_id)
        if connection is None:
            info = self._server.sockets.get(socket_id)
            if info is None:
                raise ConnectionNotFound(socket_id)
            connection = self.connections[socket_id] = HubConnection(socket_id, info.data)
        connection.subscriptions.add(channel)
        self.subscriptions.setdefault(channel, set()).add(socket_id)

    def unsubscribe(self, socket_id: str, channel: str) -> None:
        """Unsubscribe a socket from a channel; nothing happens if it was not subscribed."""
        connection = self.connections.get(socket_id)
        if connection is not None:
            connection.subscriptions.discard(channel)
        self.subscriptions.get(channel, set()).discard(socket_id)

    def broadcast(self, channel: str, event: str, data: Any) -> None:
        """Send the event to every socket subscribed to ``channel``."""
        payload = event_frame(event, data)
        for socket_id in list(self.subscriptions.get(channel, ())):
            self._server.send(socket_id, payload)

    def unicast(self, socket_id: str, event: str, data: Any) -> bool:
        """Send the event to one socket: True if it went, False if no such socket is open."""
        return self._server.send(socket_id, event_frame(event, data))

    def forget(self, socket_id: str) -> None:
        connection = self.connections.pop(socket_id, None)
        if connection is not None:
            for channel in connection.subscriptions:
                self.subscriptions.get(channel, set()).discard(socket_id)


class WebSocketHubProvider(DependencyProvider):
    """Injects the container's :class:`WebSocketHub`."""

    server = WebSocketServer()

    def __init__(self) -> None:
        super().__init__()
        self.hub: WebSocketHub | None = None

    def setup(self) -> None:
        self.hub = WebSocketHub(self.server)
        self.server.register_provider(self)

    def stop(self) -> None:
        self.server.unregister_provider(self)

    def kill(self) -> None:
        self.server.unregister_provider(self)

    def get_dependency(self, worker_ctx: WorkerContext) -> WebSocketHub | None:
        return self.hub

    def cleanup_websocket(self, socket_id: str) -> None:
        """Forget a closed socket's subscriptions."""
        if self.hub is not None:
            self.hub.forget(socket_id)


class WebSocketRpc(ServerEntrypoint):
    """``@rpc``: a method clients call over the websocket, as ``method(socket_id, **data)``."""

    server = WebSocketServer()

    def handle_message(self, socket_id: str, data: dict[str, Any], context_data: dict) -> Any:
        """Run the method in this green thread; its result, or raise its error."""
        _, result, exc_info = run_inline(self, (socket_id,), data, context_data)
        if exc_info is not None:
            raise exc_info[1]
        return result


rpc = WebSocketRpc.decorator
