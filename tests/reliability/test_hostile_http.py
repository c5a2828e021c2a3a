"""Hostile HTTP input: random bodies, headers, paths and bytes get a 4xx (or their answer),
never a 500, a hang or a dead service, and other clients are served all along."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.parse
from http.client import HTTPConnection, HTTPResponse, RemoteDisconnected

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_tools import HOSTILE

from sandbox.web.handlers import http
from sandbox.web.server import WEB_SERVER_CONFIG_KEY, parse_address

LIMIT = 64 * 1024  # MAX_CONTENT_LENGTH of the service under attack
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/problem+json"]
OTHER_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "application/x-python-serialize",
]


class Target:
    name = "hostile_http"

    @http("POST", "/json")
    def parse(self, request):
        return {"type": type(request.get_json()).__name__}

    @http("POST,PUT", "/echo")
    def echo(self, request):
        return f"{len(request.get_data())} bytes"

    @http("GET", "/items/<int:item>")
    def item(self, request, item):
        return {"item": item}


@pytest.fixture
def target(container_factory, web_config, caplog):
    caplog.set_level(logging.ERROR, logger="sandbox")
    web_config["MAX_CONTENT_LENGTH"] = LIMIT
    container = container_factory(Target, web_config)
    container.start()
    yield container, tuple(parse_address(web_config[WEB_SERVER_CONFIG_KEY]))
    # No request may crash the connection handling, which logs at ERROR.
    assert not [r for r in caplog.records if r.name.startswith("sandbox.web")]


@pytest.fixture
def bystander(target):
    """A well-behaved client on a keep-alive connection, calling all through the test."""
    _, address = target
    stop, answers = threading.Event(), []

    def call() -> None:
        connection = HTTPConnection(*address, timeout=5)
        while not stop.is_set():
            connection.request("GET", f"/items/{len(answers)}")
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
        connection.close()

    thread = threading.Thread(target=call)
    thread.start()
    yield
    stop.set()
    thread.join(10)
    assert answers
    assert answers == [(200, {"item": n}) for n in range(len(answers))]


def send(address, raw: bytes, method: str = "GET"):
    """Send ``raw`` on a new connection; ``(status, headers, body)``, or None when the server
    closed it without answering. Five seconds without an answer fails the test: a hang."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(raw)
        response = HTTPResponse(sock, method=method)
        try:
            response.begin()
        except (RemoteDisconnected, ConnectionResetError):
            return None
        return response.status, dict(response.getheaders()), response.read()


def request(address, method: str, path: str, headers: dict, body: bytes = b""):
    head = [f"{method} {path} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    raw = "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body
    return send(address, raw, method)


def assert_canary(address) -> None:
    assert request(address, "GET", "/items/7", {})[::2] == (200, b'{"item": 7}')


ASKS_JSON = {"Accept": "application/json"}  # errors are Nameko's text otherwise


def error_of(response) -> dict:
    status, headers, body = response
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)
    assert set(error) == {"error", "message"}
    return error


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    # Nesting well within the recursion limit, and far past it (hypothesis raises the limit
    # while it runs a test, so nothing in between: which side of it that falls is luck).
    st.integers(1, 200).map(nested),
    st.integers(10_000, 30_000).map(nested),
    st.sampled_from([b'{"k": "\xff\xfe"}', b"\xef\xbb\xbf{}", b'"\\ud800"', b"", b"null"]),
    st.integers(LIMIT - 1, LIMIT + 1).map(lambda size: b"[" + b" " * (size - 2) + b"]"),
)


def expected_json_status(body: bytes, content_type: str | None) -> int:
    """What POST /json must answer: the handler calls ``request.get_json()``."""
    if len(body) > LIMIT:
        return 413
    if content_type not in JSON_TYPES:
        return 415
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return 400
    return 200


def test_deeply_nested_json_is_a_400(target):
    _, address = target
    headers = {"Content-Type": "application/json", **ASKS_JSON}
    response = request(address, "POST", "/json", headers, nested(30_000))
    assert response[0] == 400
    assert error_of(response)["error"] == "BadRequest"
    assert_canary(address)


@HOSTILE
@given(body=bodies, content_type=st.sampled_from([None, *JSON_TYPES, *OTHER_TYPES]))
def test_any_body_to_a_json_route_gets_the_right_status(target, body, content_type):
    container, address = target
    headers = ASKS_JSON if content_type is None else {"Content-Type": content_type, **ASKS_JSON}
    response = request(address, "POST", "/json", headers, body)
    status = expected_json_status(body, content_type)
    assert response[0] == status
    if status != 200:
        error_of(response)
    assert container.started
    assert_canary(address)


token = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    min_size=1,
    max_size=12,
)
header_value = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | token
paths = st.one_of(
    st.sampled_from(["/json", "/echo", "/items/1", "/items/-1", "/items/x", "/", "//items/1"]),
    st.text(max_size=60).map(lambda text: "/" + urllib.parse.quote(text)),
    st.integers(7000, 9000).map(lambda size: "/" + "a" * size),
)
# Framing headers are the raw test's business: here every request is well framed.
headers = st.dictionaries(
    token.filter(lambda name: name.lower() not in ("content-length", "transfer-encoding")),
    header_value,
    max_size=8,
)


@HOSTILE
@given(method=methods, path=paths, headers=headers, body=st.binary(max_size=200))
@pytest.mark.usefixtures("bystander")
def test_any_request_gets_an_answer_and_never_a_500(target, method, path, headers, body):
    container, address = target
    response = request(address, method, path, headers, body)
    assert response is not None
    assert response[0] < 500
    assert container.started
    assert_canary(address)


@HOSTILE
@given(raw=st.binary(max_size=300))
@pytest.mark.usefixtures("bystander")
def test_any_bytes_get_a_4xx_or_a_closed_connection(target, raw):
    container, address = target
    response = send(address, raw + b"\r\n\r\n")
    assert response is None or 400 <= response[0] < 500 or response[0] == 505
    assert container.started
    assert_canary(address)


def test_clients_that_stall_half_way_hold_up_nobody_else(target):
    container, address = target
    stalled = [
        b"GET /items/1 HTTP/1.1\r\nHost: x",  # in the middle of the head
        b"POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\npart of it",  # of the body
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    ]
    sockets = []
    try:
        # 20 of each: more bodies never finished than the service has workers (10).
        for n in range(60):
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(stalled[n % len(stalled)])
            sockets.append(sock)
        for _ in range(20):
            assert_canary(address)
    finally:
        for sock in sockets:
            sock.close()
    assert container.started
    assert_canary(address)
