"""The websocket RPC hub against the real shared HTTP server, with real websocket clients."""

import json
import socket
import struct
import time

import pytest
import websocket as websocket_client
from polling import wait_until

from sandbox.exceptions import IncorrectSignature, MalformedRequest, MethodNotFound, RemoteError
from sandbox.testing.services import dummy, entrypoint_hook
from sandbox.testing.utils import get_extension
from sandbox.testing.websocket import WebSocketClosed, make_virtual_socket, run_in_thread
from sandbox.web.handlers import http
from sandbox.web.websocket import WebSocketHubProvider, WebSocketServer, rpc


class Refused(Exception):
    pass


class ExampleService:
    name = "exampleservice"

    websocket_hub = WebSocketHubProvider()

    @rpc
    def subscribe(self, socket_id):
        self.websocket_hub.subscribe(socket_id, "test_channel")
        return "subscribed!"

    @rpc
    def unsubscribe(self, socket_id):
        self.websocket_hub.unsubscribe(socket_id, "test_channel")
        return "unsubscribed!"

    @rpc
    def list_subscriptions(self, socket_id):
        return self.websocket_hub.get_subscriptions(socket_id)

    @rpc(expected_exceptions=Refused)
    def add(self, socket_id, a, b):
        if a < 0:
            raise Refused("no negatives")
        return a + b

    @rpc
    def fail(self, socket_id):
        raise ValueError("oops")

    @rpc
    def unserializable(self, socket_id):
        return object()

    @dummy
    def broadcast(self, value):
        self.websocket_hub.broadcast("test_channel", "test_message", {"value": value})

    @dummy
    def unicast(self, target_socket_id, value):
        return self.websocket_hub.unicast(target_socket_id, "test_message", {"value": value})

    @http("GET", "/plain")
    def plain(self, request):
        return "plain"


@pytest.fixture
def container(container_factory, web_config):
    container = container_factory(ExampleService, web_config)
    container.start()
    return container


def get_message(ws):
    event_type, event_data = ws.wait_for_event("test_message")
    assert event_type == "test_message"
    assert list(event_data) == ["value"]
    return event_data["value"]


def broadcast(container, value):
    with entrypoint_hook(container, "broadcast") as hook:
        hook(value=value)


def socket_id_of(ws):
    _, data = ws.wait_for_event("connected")
    return data["socket_id"]


def assert_no_message_before_marker(container, ws):
    """Frames of a connection arrive in order: a unicast marker after a broadcast that was
    not delivered proves it never will be."""
    with entrypoint_hook(container, "unicast") as unicast:
        assert unicast(target_socket_id=socket_id_of(ws), value="marker")
    assert get_message(ws) == "marker"
    assert ws.get_event_queue("test_message").empty()


# --- Nameko's behaviour ------------------------------------------------------------------------


def test_pub_sub(container, websocket):
    ws = websocket()
    assert ws.rpc("subscribe") == "subscribed!"
    broadcast(container, 42)
    assert get_message(ws) == 42


def test_resubscribe_and_several_messages(container, websocket):
    ws = websocket()
    ws.rpc("subscribe")
    ws.rpc("subscribe")
    for value in range(3):
        broadcast(container, value)
    assert [get_message(ws) for _ in range(3)] == [0, 1, 2]
    ws.wait_for_event("connected")
    assert ws.get_event_queue("test_message").empty()


def test_unsubscribe(container, websocket):
    ws = websocket()
    ws.rpc("subscribe")
    broadcast(container, 42)
    assert get_message(ws) == 42
    assert ws.rpc("unsubscribe") == "unsubscribed!"
    broadcast(container, 43)
    assert_no_message_before_marker(container, ws)


def test_unsubscribe_without_subscribing(container, websocket):
    ws = websocket()
    assert ws.rpc("unsubscribe") == "unsubscribed!"
    broadcast(container, 42)
    assert_no_message_before_marker(container, ws)


def test_multiple_subscribers(container, websocket):
    first, second, bystander = websocket(), websocket(), websocket()
    first.rpc("subscribe")
    second.rpc("subscribe")
    broadcast(container, 42)
    assert (get_message(first), get_message(second)) == (42, 42)
    assert_no_message_before_marker(container, bystander)


def test_list_subscriptions(container, websocket):
    ws = websocket()
    assert ws.rpc("list_subscriptions") == []
    ws.rpc("subscribe")
    assert ws.rpc("list_subscriptions") == ["test_channel"]


def test_unicast(container, websocket):
    ws = websocket()
    with entrypoint_hook(container, "unicast") as unicast:
        assert unicast(target_socket_id=socket_id_of(ws), value=42) is True
        assert unicast(target_socket_id="no-such-socket", value=42) is False
    assert get_message(ws) == 42


def test_arguments_and_errors(container, websocket):
    ws = websocket()
    assert ws.rpc("add", a=1, b=2) == 3
    with pytest.raises(MethodNotFound):
        ws.rpc("unknown")
    with pytest.raises(IncorrectSignature):
        ws.rpc("add", a=1)
    with pytest.raises(RemoteError) as refused:
        ws.rpc("add", a=-1, b=2)
    assert (refused.value.exc_type, refused.value.value) == ("Refused", "no negatives")
    with pytest.raises(RemoteError) as failed:
        ws.rpc("fail")
    assert (failed.value.exc_type, failed.value.value) == ("ValueError", "oops")
    with pytest.raises(RemoteError) as unserializable:
        ws.rpc("unserializable")
    assert unserializable.value.exc_type == "TypeError"
    assert ws.rpc("add", a=2, b=2) == 4  # the connection survived all of that


def test_connection_not_found(container, websocket):
    server = get_extension(container, WebSocketHubProvider).server
    ws = websocket()
    server.sockets.clear()
    assert ws.rpc("unsubscribe") == "unsubscribed!"  # needs no known socket
    with pytest.raises(RemoteError) as exc:
        ws.rpc("subscribe")
    assert exc.value.exc_type == "ConnectionNotFound"


def test_the_frames_are_nameko_s(container, web_config_port):
    conn = websocket_client.create_connection(f"ws://127.0.0.1:{web_config_port}/ws", timeout=10)
    try:
        connected = json.loads(conn.recv())
        socket_id = connected["data"]["socket_id"]
        assert connected == {
            "type": "event",
            "event": "connected",
            "data": {"socket_id": socket_id},
        }

        conn.send(json.dumps({"method": "add", "data": {"a": 1, "b": 2}, "correlation_id": "c1"}))
        assert json.loads(conn.recv()) == {
            "type": "result",
            "success": True,
            "data": 3,
            "correlation_id": "c1",
        }

        conn.send(json.dumps({"method": "fail", "correlation_id": 7}))
        failed = json.loads(conn.recv())
        assert (failed["type"], failed["success"], failed["correlation_id"]) == ("result", False, 7)
        assert "data" not in failed
        error = failed["error"]
        assert (error["exc_type"], error["exc_args"], error["value"]) == (
            "ValueError",
            ["oops"],
            "oops",
        )
        assert error["exc_path"] == "builtins.ValueError"

        conn.send(json.dumps({"method": "subscribe", "data": None}))  # no data, no correlation
        assert json.loads(conn.recv())["correlation_id"] is None
        broadcast(container, 5)
        assert json.loads(conn.recv()) == {
            "type": "event",
            "event": "test_message",
            "data": {"value": 5},
        }
    finally:
        conn.close()


@pytest.mark.parametrize(
    "frame, correlation_id",
    [
        ("foo: bar", None),
        ("[1, 2]", None),
        ('{"data": {}, "correlation_id": "x"}', "x"),
        ('{"method": "add", "data": [1], "correlation_id": "y"}', "y"),
        ("[" * 100_000 + "]" * 100_000, None),
    ],
)
def test_malformed_frames_get_malformed_request(container, web_config_port, frame, correlation_id):
    conn = websocket_client.create_connection(f"ws://127.0.0.1:{web_config_port}/ws", timeout=10)
    try:
        conn.recv()  # connected
        conn.send(frame)
        reply = json.loads(conn.recv())
        assert (reply["success"], reply["correlation_id"]) == (False, correlation_id)
        assert reply["error"]["exc_type"] == "MalformedRequest"
        conn.send(json.dumps({"method": "add", "data": {"a": 1, "b": 1}}))
        assert json.loads(conn.recv())["data"] == 2
    finally:
        conn.close()


def test_the_test_client_raises_malformed_request(container, web_config_port):
    ws_app, connect = make_virtual_socket("127.0.0.1", web_config_port)
    thread = run_in_thread(ws_app)
    try:
        ws = connect()
        with pytest.raises(MalformedRequest):
            ws.rpc(["not", "a", "name"])
    finally:
        ws_app.close()
        thread.join(10)


def test_connecting_to_nothing_fails_at_once(websocket):
    with pytest.raises(ConnectionRefusedError):
        websocket()


def test_closing_the_connection_unsubscribes(container, websocket):
    hub = get_extension(container, WebSocketHubProvider).hub
    server = get_extension(container, WebSocketServer)
    ws = websocket()
    socket_id = socket_id_of(ws)
    ws.rpc("subscribe")
    assert hub.subscriptions["test_channel"] == {socket_id}
    ws.app.close()
    wait_until(lambda: socket_id not in server.sockets)
    assert hub.subscriptions["test_channel"] == set()
    assert socket_id not in hub.connections
    with pytest.raises(WebSocketClosed):
        ws.rpc("list_subscriptions")
    broadcast(container, 1)  # to nobody, without error


def test_websocket_and_http_share_the_server(container, websocket, web_session):
    ws = websocket()
    assert web_session.get("/plain").text == "plain"
    assert ws.rpc("add", a=1, b=1) == 2
    # A plain GET of the websocket route is refused, as werkzeug refuses it to Nameko.
    assert web_session.get("/ws").status_code == 400


# --- hostile clients ------------------------------------------------------------------------------


def raw_connection(port):
    conn = websocket_client.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
    conn.recv()  # connected
    return conn


def close_code(conn):
    """The code of the close frame the server sends next (frames before it are skipped)."""
    frame = conn.recv_frame()
    while frame.opcode != websocket_client.ABNF.OPCODE_CLOSE:
        frame = conn.recv_frame()
    return struct.unpack("!H", frame.data[:2])[0]


def close_code_after(conn, send):
    send(conn)
    return close_code(conn)


@pytest.fixture
def small_limit(container_factory, web_config):
    web_config["MAX_CONTENT_LENGTH"] = 1000
    container_factory(ExampleService, web_config).start()
    return web_config


def test_a_message_over_the_limit_closes_with_1009(small_limit, web_config_port):
    fits = raw_connection(web_config_port)
    fits.send(json.dumps({"method": "add", "data": {"a": 1, "b": 1, "pad": "x" * 900}}))
    assert json.loads(fits.recv())["error"]["exc_type"] == "IncorrectSignature"
    fits.close()

    def oversized(conn):
        # Only the frame's head: refused before any payload is read, so nothing is left
        # unread that would turn the server's close into a reset.
        conn.sock.sendall(struct.pack("!BBH", 0x81, 0x80 | 126, 1001))

    assert close_code_after(raw_connection(web_config_port), oversized) == 1009

    def in_fragments(conn):
        # Each fragment fits; the third takes the message over the limit.
        first = websocket_client.ABNF.create_frame("x" * 400, websocket_client.ABNF.OPCODE_TEXT, 0)
        conn.send_frame(first)
        for _ in range(2):
            conn.send_frame(websocket_client.ABNF.create_frame("x" * 400, 0, 0))

    assert close_code_after(raw_connection(web_config_port), in_fragments) == 1009


def test_invalid_utf8_closes_with_1007(container, web_config_port):
    def invalid(conn):
        conn.send(b"\xff\xfe", opcode=websocket_client.ABNF.OPCODE_TEXT)

    assert close_code_after(raw_connection(web_config_port), invalid) == 1007


def test_handshakes_it_does_not_speak_are_refused(container, web_config_port):
    legacy = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
        b"\r\n^n:ds[4U"
    )
    wrong_version = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n"
    )
    for request, status in [(legacy, b"400"), (wrong_version, b"426")]:
        with socket.create_connection(("127.0.0.1", web_config_port), timeout=10) as sock:
            sock.sendall(request)
            assert sock.recv(1024).split(b" ")[1] == status


def test_an_idle_connection_outlives_the_socket_timeout(container_factory, web_config, websocket):
    web_config["WEB_SOCKET_TIMEOUT"] = 0.2
    container_factory(ExampleService, web_config).start()
    ws = websocket()
    time.sleep(0.5)  # idle for longer than the timeout
    assert ws.rpc("add", a=1, b=1) == 2


def test_a_client_that_does_not_read_is_disconnected(container_factory, web_config, websocket):
    web_config["WEB_SOCKET_TIMEOUT"] = 0.5
    container = container_factory(ExampleService, web_config)
    container.start()
    server = get_extension(container, WebSocketServer)
    reader = websocket()
    reader.rpc("subscribe")
    stuck = raw_connection(int(web_config["WEB_SERVER_ADDRESS"].rsplit(":", 1)[1]))
    stuck.send(json.dumps({"method": "subscribe"}))
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = "x" * (1 << 20)
    for _ in range(64):  # the stuck client's buffers fill within a few megabytes
        broadcast(container, big)
        if len(server.sockets) == 1:
            break
    assert len(server.sockets) == 1, "the client that reads nothing was disconnected"
    assert get_message(reader) == big
    stuck.close()


def test_stopping_the_service_closes_websockets_with_1001(container, websocket, web_config_port):
    conn = raw_connection(web_config_port)
    ws = websocket()
    container.stop()
    assert close_code(conn) == 1001
    with pytest.raises(WebSocketClosed):
        ws.wait_for_event("test_message")
