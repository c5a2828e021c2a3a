"""One request answered: the WSGI application called and its response written, as
eventlet.wsgi's ``handle_one_response`` does, for an eighth of a trivial request less.

eventlet's builds three closures and six lists per request, capitalizes every header name
afresh, formats the date each time and sends through ``writelines``. This writer keeps its
behaviour:

- the status line, header names capitalized per dash-separated word (``content-TYPE`` goes
  out as ``Content-Type``), a ``Date`` unless the application gave one, ``Connection:
  close`` or (to a client that sent it) ``keep-alive`` by eventlet's rules;
- a body whose length the server can tell (a list) goes with its ``Content-Length``, the head
  and body in one send when it is short; otherwise chunked (HTTP/1.1), or up to the close
  of the connection (HTTP/1.0); no added length or coding for HEAD, 1xx, 204 or 304;
- an exception before the head went out is answered ``500`` (with the traceback under
  ``debug``), after it the connection closes;
- an application that took the socket over (a websocket: ``WSGI_LOCAL.already_handled``)
  ends the connection; the unread rest of a body is read before the next request (or the
  connection closes); ``eventlet.posthooks`` run last.

A server with ``log_output`` keeps eventlet's own method, which writes the access log.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import eventlet
import eventlet.wsgi

log = logging.getLogger(__name__)

# Header names the application may invent (one per request, say): the cache stops growing.
MAX_CACHED_NAMES = 512
_capitalized: dict[str, str] = {}


def capitalized(name: str) -> str:
    """``name`` as eventlet.wsgi sends it: each dash-separated word capitalized."""
    known = _capitalized.get(name)
    if known is None:
        words = name.encode("latin-1").split(b"-")
        known = b"-".join(word.capitalize() for word in words).decode("latin-1")
        if len(_capitalized) < MAX_CACHED_NAMES:
            _capitalized[name] = known
    return known


# The last Date sent, as (second, text): formatted once a second, not once a response.
_last_date = (0, "")


def http_date(now: float) -> str:
    """``now`` as a ``Date`` header gives it (to the second)."""
    global _last_date
    second = int(now)
    if second != _last_date[0]:
        _last_date = (second, eventlet.wsgi.format_date_time(second))
    return _last_date[1]


def no_body(status: int, method: str | None) -> bool:
    """Whether a response of ``status`` to ``method`` has no body (RFC 9110 6.4.1)."""
    return (
        status in (204, 304)
        or 100 <= status < 200
        or method == "HEAD"
        or (method == "CONNECT" and 200 <= status < 300)
    )


class ResponseWriter:
    """The ``start_response`` and ``write`` of one request of ``protocol``'s connection."""

    def __init__(self, protocol: eventlet.wsgi.HttpProtocol):
        self.protocol = protocol
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        # A list, as eventlet's Input reads it: not empty once the head has gone out (too late
        # for a "100 Continue").
        self.sent: list[int] = []
        self.bodyless = False
        self.chunked = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.bodyless = no_body(int(status.split(" ", 1)[0]), self.protocol.command)
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        head = b""
        if not self.sent:
            head = self.head()  # first: a header that cannot be sent is still answered 500
            self.sent.append(1)
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        wfile = self.protocol.wfile
        wfile.write(head + data)
        wfile.flush()

    def head(self) -> bytes:
        """The status line and headers; decides chunking and whether the connection stays."""
        protocol = self.protocol
        lines = [f"{protocol.protocol_version} {self.status}\r\n"]
        names = set()
        capitalize = protocol.capitalize_response_headers
        for name, value in self.headers:
            name = capitalized(name) if capitalize else name
            names.add(name.lower())
            lines.append(f"{name}: {value}\r\n")
        if "date" not in names:
            lines.append(f"Date: {http_date(time.time())}\r\n")
        client = (protocol.headers.get("Connection") or "").lower()
        keepalive = protocol.server.keepalive
        http11 = protocol.request_version == "HTTP/1.1"
        stays = keepalive and (client == "keep-alive" or (http11 and client != "close"))
        protocol.close_connection = int(bool(protocol.close_connection or not stays))
        if "content-length" not in names and not self.bodyless:
            if http11:
                self.chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
            else:
                protocol.close_connection = 1  # the client reads the body up to the close
        if protocol.close_connection:
            lines.append("Connection: close\r\n")
        elif client == "keep-alive":  # HTTP/1.1 keeps connections without saying so
            lines.append("Connection: keep-alive\r\n")
            if not isinstance(keepalive, bool) and int(keepalive):
                lines.append(f"Keep-Alive: timeout={int(keepalive)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    # --- the request ----------------------------------------------------------------------

    def respond(self) -> None:
        """Call the application for ``protocol.environ`` and send what it answers."""
        protocol = self.protocol
        environ = protocol.environ
        body = environ["eventlet.input"]
        body.headers_sent = self.sent
        result = None
        try:
            try:
                eventlet.wsgi.WSGI_LOCAL.already_handled = False
                result = protocol.application(environ, self.start_response)
                self.send(result, body, environ)
            except (Exception, eventlet.Timeout):
                self.fail()
        finally:
            if hasattr(result, "close"):
                result.close()
            self.finish_body(body)
            for hook, args, kwargs in environ["eventlet.posthooks"]:
                hook(environ, *args, **kwargs)

    def send(self, result: Iterable[bytes], body: Any, environ: dict) -> None:
        if self.status is not None and not self.sent and hasattr(result, "__len__"):
            sized = any(name.lower() == "content-length" for name, _ in self.headers)
            if not self.bodyless and not sized:
                self.headers = [*self.headers, ("Content-Length", str(sum(map(len, result))))]
            if body.should_send_hundred_continue:
                # The whole answer without reading the body: the client may or may not send it.
                self.protocol.close_connection = 1
        minimum = int(
            environ.get("eventlet.minimum_write_chunk_size", self.protocol.minimum_chunk_size)
        )
        pending: list[bytes] = []
        pending_size = last_size = 0
        for data in result:
            if not data:
                continue
            pending.append(data.encode("ascii") if isinstance(data, str) else data)
            pending_size += len(data)
            if pending_size >= minimum:
                self.write(b"".join(pending))
                pending, last_size, pending_size = [], pending_size, 0
        if eventlet.wsgi.WSGI_LOCAL.already_handled:
            self.protocol.close_connection = 1
            return
        if pending:
            last_size = pending_size
            self.write(b"".join(pending))
        if not self.sent or (self.chunked and last_size):
            self.write(b"")  # the head of an empty body, or the last chunk

    def fail(self) -> None:
        protocol = self.protocol
        protocol.close_connection = 1
        trace = traceback.format_exc()
        protocol.server.log.info(trace)
        if not self.sent:
            text = trace.encode() if protocol.server.debug else b""
            headers = [("Content-type", "text/plain"), ("Content-length", str(len(text)))]
            self.start_response("500 Internal Server Error", headers)
            self.write(text)

    def finish_body(self, body: Any) -> None:
        """Read what the application left of the request body, if the connection stays."""
        protocol = self.protocol
        if body.should_send_hundred_continue:
            protocol.close_connection = 1  # the client may still send the body, or not
        unread = body.chunked_input or body.position < (body.content_length or 0)
        if unread and not protocol.close_connection:
            try:
                body.discard()
            except (eventlet.wsgi.ChunkReadError, OSError) as exc:
                protocol.close_connection = 1
                log.debug("closing the connection: the rest of the body failed: %s", exc)
