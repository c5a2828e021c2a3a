import json
import socket

from sandbox.web.handlers import http
from sandbox.web.protocol import RequestHeaders


def headers_of(*fields: tuple[str, str]) -> RequestHeaders:
    headers = RequestHeaders()
    for name, value in fields:
        headers.add(name, value)
    return headers


def test_a_name_finds_its_first_value_in_any_case():
    headers = headers_of(("X-Tag", "a"), ("x-tag", "b"), ("Host", "h"))
    assert headers.get("x-TAG") == "a"
    assert headers.get("HOST") == "h"
    assert headers.get("Missing") is None
    assert headers.get("Missing", "default") == "default"
    assert headers.fields == [("X-Tag", "a"), ("x-tag", "b"), ("Host", "h")]


def test_replace_leaves_one_field_of_the_name():
    headers = headers_of(("Content-Length", "4"), ("Host", "h"), ("content-length", "4"))
    headers.replace("Content-Length", "4")
    assert headers.fields == [("Host", "h"), ("Content-Length", "4")]
    headers.replace("Content-Length", "5")
    assert headers.get("content-length") == "5"


class HeaderNames:
    name = "header_names"

    @http("POST", "/names")
    def names(self, request):
        return json.dumps(list(request.headers.keys()))


def test_werkzeug_lists_headers_in_eventlets_order(container_factory, web_config, web_config_port):
    container_factory(HeaderNames, web_config).start()
    with socket.create_connection(("127.0.0.1", web_config_port), timeout=10) as sock:
        sock.sendall(
            b"POST /names HTTP/1.1\r\nX-B: 1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"X-A: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    names = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert names == ["Content-Type", "Content-Length", "X-B", "Host", "X-A", "Connection"]
