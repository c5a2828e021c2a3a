"""ResponseWriter against eventlet.wsgi's own handle_one_response, on the same requests."""

import io
import re
import sys

import eventlet.wsgi
import pytest

from sandbox.web.protocol import RequestHeaders
from sandbox.web.response_writer import ResponseWriter, capitalized, http_date


class FakeServer:
    keepalive = True
    debug = False
    log_output = False
    log = eventlet.wsgi.LoggerNull()
    outstanding_requests = 0


class FakeProtocol:
    """What a response writer reads of eventlet's HttpProtocol, over a BytesIO."""

    protocol_version = "HTTP/1.1"
    minimum_chunk_size = eventlet.wsgi.MINIMUM_CHUNK_SIZE
    capitalize_response_headers = True

    def __init__(self, app, method="GET", version="HTTP/1.1", connection=None, body=b""):
        self.application = app
        self.server = FakeServer()
        self.command, self.request_version = method, version
        self.headers = RequestHeaders()
        if connection:
            self.headers.add("Connection", connection)
        self.close_connection = 0
        self.wfile = io.BytesIO()
        rfile = io.BufferedReader(io.BytesIO(body))
        self.environ = {
            "REQUEST_METHOD": method,
            "eventlet.posthooks": [],
            "eventlet.input": eventlet.wsgi.Input(rfile, str(len(body)), None),
        }


def answer(respond, app, **request):
    protocol = FakeProtocol(app, **request)
    hooks = []
    protocol.environ["eventlet.posthooks"].append((lambda env: hooks.append(1), (), {}))
    try:
        respond(protocol)
    except Exception as exc:  # the same exception from both is the same behaviour
        return type(exc)
    sent = re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", protocol.wfile.getvalue())
    left = protocol.environ["eventlet.input"].position
    return sent, protocol.close_connection, hooks, left


def eventlets(protocol):
    eventlet.wsgi.HttpProtocol.handle_one_response(protocol)


def ours(protocol):
    ResponseWriter(protocol).respond()


def app_of(status, headers, body, write=None):
    def app(environ, start_response):
        writer = start_response(status, headers)
        if write is not None:
            writer(write)
        return body

    return app


def failing(environ, start_response):
    raise ValueError("boom")


def failing_after_head(environ, start_response):
    start_response("200 OK", [])(b"partial")
    raise ValueError("boom")


def restarted(environ, start_response):
    start_response("200 OK", [("x-a", "1")])
    try:
        raise ValueError("boom")
    except ValueError:
        start_response("500 Oops", [("content-length", "4")], sys.exc_info())
    return [b"oops"]


def taken_over(environ, start_response):
    eventlet.wsgi.WSGI_LOCAL.already_handled = True
    return []


def streamed(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    yield b"a" * 5000
    yield ""
    yield "tail"


APPS = {
    "sized list": app_of("200 OK", [("content-length", "5")], [b"hello"]),
    "list, no length": app_of("201 Created", [("x-ONE-two", "v")], [b"ab", "cd"]),
    "empty list": app_of("200 OK", [], []),
    "no content": app_of("204 No Content", [], []),
    "not modified": app_of("304 Not Modified", [("etag", "x")], []),
    "date given": app_of("200 OK", [("Date", "Mon, 01 Jan 2024 00:00:00 GMT")], [b"x"]),
    "write callable": app_of("200 OK", [("content-length", "6")], [b"bc"], write=b"abcd"),
    "write, unsized": app_of("200 OK", [], [], write=b"abcd"),
    "large list": app_of("200 OK", [], [b"x" * 3000, b"y" * 3000, b"z"]),
    "generator": streamed,
    "raises": failing,
    "raises after head": failing_after_head,
    "exc_info": restarted,
    "websocket": taken_over,
}

REQUESTS = {
    "1.1": {},
    "1.1 close": {"connection": "close"},
    "1.1 keep-alive": {"connection": "keep-alive"},
    "1.0": {"version": "HTTP/1.0"},
    "1.0 keep-alive": {"version": "HTTP/1.0", "connection": "keep-alive"},
    "HEAD": {"method": "HEAD"},
    "unread body": {"method": "POST", "body": b"0123456789"},
}


@pytest.mark.parametrize("request_name", REQUESTS)
@pytest.mark.parametrize("app_name", APPS)
def test_the_same_bytes_go_out_as_from_eventlet(app_name, request_name):
    app, request = APPS[app_name], REQUESTS[request_name]
    assert answer(ours, app, **request) == answer(eventlets, app, **request)


def test_a_header_that_cannot_be_sent_is_answered_500():
    # eventlet marks the head sent before it fails to encode it, and so answers nothing.
    sent, closed, _, _ = answer(ours, app_of("200 OK", [("x-name", "caf\u00e9\u20ac")], [b"x"]))
    assert sent.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert closed == 1


def test_a_keepalive_timeout_is_announced_to_a_client_that_asked():
    protocol = FakeProtocol(APPS["sized list"], connection="keep-alive")
    protocol.server.keepalive = 5
    ResponseWriter(protocol).respond()
    assert b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n" in protocol.wfile.getvalue()


def test_names_are_capitalized_word_by_word():
    assert capitalized("content-TYPE") == "Content-Type"
    assert capitalized("x-api-KEY") == "X-Api-Key"
    assert capitalized("etag") == "Etag"


def test_the_date_is_the_seconds_own():
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(86400.5) == "Fri, 02 Jan 1970 00:00:00 GMT"
    assert http_date(86400.9) == "Fri, 02 Jan 1970 00:00:00 GMT"
