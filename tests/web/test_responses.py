import pytest
from werkzeug.test import create_environ
from werkzeug.wrappers import Response

from sandbox.web.responses import ErrorResponse, send, sent_as_is


class OwnHeaders(Response):
    def get_wsgi_headers(self, environ):
        headers = super().get_wsgi_headers(environ)
        headers["X-Own"] = "yes"
        return headers


def sent(respond, response, method):
    """``(status, headers, body)`` as ``respond`` hands ``response`` to a WSGI server."""
    started = []
    body = respond(response, create_environ("/x", method=method), lambda *a: started.append(a))
    chunks = list(body)
    getattr(body, "close", lambda: None)()
    [(status, headers)] = started
    return status, headers, b"".join(chunks)


def werkzeug(response, environ, start_response):
    return response(environ, start_response)


RESPONSES = {
    "text": lambda: Response("hello"),
    "bytes with a status and headers": lambda: Response(b"\x00ok", 201, {"X-A": "1"}),
    "no content": lambda: Response(status=204),
    "not modified": lambda: Response("old", 304),
    "relative location": lambda: Response("moved", 302, {"Location": "/next?q=é"}),
    "content location": lambda: Response("here", headers={"Content-Location": "/é"}),
    "streamed": lambda: Response(iter([b"a", b"b"])),
    "error": lambda: ErrorResponse("Error: x\n", Response("{}"), status=500),
    "subclass": lambda: OwnHeaders("own"),
}


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("name", RESPONSES)
def test_a_response_goes_out_as_werkzeug_sends_it(name, method):
    expected = sent(werkzeug, RESPONSES[name](), method)
    assert sent(send, RESPONSES[name](), method) == expected


def test_a_plain_response_takes_the_short_way():
    response = Response("hello")
    fields = response.headers.to_wsgi_list()
    assert sent_as_is(response, fields, create_environ("/x"))
    assert not sent_as_is(response, fields, create_environ("/x", method="HEAD"))
    assert not sent_as_is(OwnHeaders("own"), fields, create_environ("/x"))


def test_the_response_closes_once_its_body_is_sent():
    closed = []
    response = Response("hello")
    response.call_on_close(lambda: closed.append(True))
    body = send(response, create_environ("/x"), lambda *a: None)
    assert list(body) == [b"hello"] and closed == []
    body.close()
    assert closed == [True]
