"""eventlet.wsgi's HTTP/1.x protocol with a lean request head parser and strict framing.

The standard library parses request headers with the ``email`` package, which costs about a
fifth of a trivial request on eventlet.wsgi. Reading them line by line is ten times cheaper,
and is a chance to refuse what RFC 9112 lets a server refuse. A request whose framing two
HTTP implementations could read differently is how requests get smuggled past a proxy, so
the server refuses, with a short plain-text 400 (or 501) and ``Connection: close``:

- a request line other than ``METHOD SP target SP HTTP/1.x CRLF`` (505 for another major
  version); any line not ended by CRLF (a bare LF or CR);
- a header name that is not a token, whitespace before the colon, obsolete line folding, a
  control character (NUL, CR, LF, DEL...) in a value; more than :data:`MAX_HEADERS` headers
  (431);
- a ``Content-Length`` that is not digits only (``+4``, ``0x4``, ``-1``), longer than
  :data:`MAX_CONTENT_LENGTH_DIGITS` digits, or listed with differing values (identical
  values, in one line or several, fold into one);
- a ``Transfer-Encoding`` that is malformed or does not end with ``chunked`` exactly once
  (400), or that lists a coding before it (501: only ``chunked`` is implemented); any
  ``Transfer-Encoding`` in an HTTP/1.0 request; ``Content-Length`` and
  ``Transfer-Encoding`` together;
- a missing ``Host`` in HTTP/1.1, several ``Host`` or ``Content-Type`` headers;
- a chunked body that strays from RFC 9112 section 7.1 (size line, CRLF after the data,
  trailer fields): :class:`ChunkedInput` raises :class:`BadChunkedBody`, which the server
  answers with a 400 and the connection closes.

No further request is read from a connection after a framing error. Refusals are logged at
DEBUG on this module's logger. Header line and head size limits are eventlet's (8 KiB a
line, 64 KiB a head: a 400); see also ``WEB_SOCKET_TIMEOUT`` and ``MAX_CONTENT_LENGTH``.
"""

from __future__ import annotations

import http
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import eventlet.wsgi

from sandbox.web.connections import CONNECTION_ENVIRON_KEY, HttpConnection
from sandbox.web.response_writer import ResponseWriter

log = logging.getLogger(__name__)

MAX_HEADERS = 100
# Longer is no body a server could take, and Python would be slow to parse it as an int.
MAX_CONTENT_LENGTH_DIGITS = 20
# A chunk size line or trailer line longer than eventlet's limit for a header line is refused.
MAX_CHUNK_LINE = eventlet.wsgi.MAX_HEADER_LINE
# Calls a function that has the server close the connection after the current response.
CLOSE_CONNECTION_ENVIRON_KEY = "sandbox.close_connection"

# RFC 9110 token characters: what methods, header names and coding names are made of.
_TOKEN_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARS)
_REQUEST_LINE = re.compile(rf"({_TOKEN_CHARS}) ([\x21-\x7e]+) (HTTP/([0-9])\.[0-9])\r\n")
# A field line, its value up to the line end: visible characters, obs-text, spaces and tabs
# (no control character). One character class up to CRLF: linear, whatever the input.
_FIELD_LINE = re.compile(rf"({_TOKEN_CHARS}):([\t\x20-\x7e\x80-\xff]*)\r\n")
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_CONTENT_LENGTH_DIGITS}}}")
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_EXT = rf"(?:[ \t]*;[ \t]*{_TOKEN_CHARS}(?:[ \t]*=[ \t]*(?:{_TOKEN_CHARS}|{_QUOTED}))?)*"
_CHUNK_SIZE_LINE = re.compile(rf"([0-9A-Fa-f]{{1,20}}){_CHUNK_EXT}\r\n".encode("latin-1"))
_CODING_PARAMS = re.compile(
    rf"(?:[ \t]*;[ \t]*{_TOKEN_CHARS}[ \t]*=[ \t]*(?:{_TOKEN_CHARS}|{_QUOTED}))*"
)
# The headers whose every occurrence framing needs (lower case).
_FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding", "host", "content-type"})


class RefusedRequest(Exception):
    """A request the server answers with ``status`` before any application sees it."""

    def __init__(self, status: int, reason: str, detail: object = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        if self.detail is None:
            return self.reason
        return f"{self.reason}: {str(self.detail)[:120]}"


class BadRequestBody(ValueError):
    """A request body that ends before its stated length or breaks its coding: a 400."""


class BadChunkedBody(BadRequestBody, eventlet.wsgi.ChunkReadError):
    """A chunked request body that strays from RFC 9112 section 7.1."""


class HttpOnlyProtocol(eventlet.wsgi.HttpProtocol):
    """Plain HTTP (no TLS sniffing), strict framing, errors logged at DEBUG, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.address_string(), *args)

    def parse_request(self) -> bool:
        """Parse the request line and headers; on error answer it and return False.

        eventlet has read the request line and wraps ``rfile`` to bound the header size.
        """
        self.command = None
        # Not the stdlib's HTTP/0.9 default: a refusal goes out with a status line.
        self.request_version = self.protocol_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        try:
            self.command, self.path, self.request_version = parse_request_line(self.raw_requestline)
            self.headers, fields = read_fields(self.rfile)
            check_framing(self.headers, fields, self.request_version)
        except RefusedRequest as refusal:
            self.refuse(refusal)
            return False
        connection = self.headers.get("Connection", "").lower()
        http11 = self.request_version != "HTTP/1.0" and self.protocol_version >= "HTTP/1.1"
        self.close_connection = connection == "close" or (not http11 and connection != "keep-alive")
        if http11 and self.headers.get("Expect", "").lower() == "100-continue":
            return self.handle_expect_100()
        return True

    def refuse(self, refusal: RefusedRequest) -> None:
        """Answer ``refusal`` in plain text and close the connection."""
        log.debug("refused a request from %s: %s", self.address_string(), refusal)
        body = f"{refusal.reason}\n".encode()
        phrase = http.HTTPStatus(refusal.status).phrase
        self.wfile.write(
            f"HTTP/1.1 {refusal.status} {phrase}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        self.close_connection = True

    # --- the connection's deadlines (sandbox.web.connections) ----------------------------

    def handle_one_request(self) -> None:
        if isinstance(self.conn_state, HttpConnection):
            self.conn_state.await_request(self.rfile)
        super().handle_one_request()

    def handle_one_response(self) -> None:
        if self.server.log_output:
            super().handle_one_response()  # eventlet's writes the access log
        else:
            ResponseWriter(self).respond()

    # --- the WSGI environ -------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection_environ = self.server.get_environ()
        self.connection_environ.update(self.connection_keys())

    def connection_keys(self) -> dict[str, Any]:
        """The environ keys every request of this connection shares."""
        server_host, server_port = eventlet.wsgi.addr_to_host_port(self.request.getsockname())
        client_host, client_port = eventlet.wsgi.addr_to_host_port(self.client_address)
        keys = {
            "SCRIPT_NAME": "",
            "SERVER_PROTOCOL": "HTTP/1.0",  # eventlet's, whatever the request's version
            "SERVER_NAME": server_host,
            "SERVER_PORT": str(server_port),
            "REMOTE_ADDR": client_host,
            "REMOTE_PORT": str(client_port),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "eventlet.set_idle": self.set_idle,
            CLOSE_CONNECTION_ENVIRON_KEY: self.close_after_response,
        }
        if isinstance(self.conn_state, HttpConnection):
            keys[CONNECTION_ENVIRON_KEY] = self.conn_state
        return keys

    def get_environ(self) -> dict:
        """eventlet's environ, built from the fields :func:`read_fields` kept.

        What is the same for every request of the connection (the addresses, found with a
        system call each) is worked out once.
        """
        if isinstance(self.conn_state, HttpConnection):  # the head is in
            self.conn_state.serving()
        environ = self.connection_environ.copy()
        path, question, query = self.path.partition("?")
        environ["REQUEST_METHOD"] = self.command
        environ["RAW_PATH_INFO"] = path
        environ["PATH_INFO"] = urllib.parse.unquote(path, encoding="latin1")
        if question:
            environ["QUERY_STRING"] = query
        # Before the other headers, as eventlet puts them: werkzeug lists headers in this order.
        environ["CONTENT_TYPE"] = self.headers.get("Content-Type", "text/plain")
        length = self.headers.get("Content-Length")
        if length:
            environ["CONTENT_LENGTH"] = length
        environ["headers_raw"] = fields = tuple(self.headers.fields)
        for name, value in fields:
            if "_" in name:
                continue  # X-Foo_Bar would pass for X-Foo-Bar: eventlet drops them too
            key = name.replace("-", "_").upper()
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
                environ[key] = environ[key] + "," + value if key in environ else value
        environ["eventlet.posthooks"] = []
        environ["wsgi.input"] = environ["eventlet.input"] = self.request_body(environ, length)
        return environ

    def request_body(self, environ: dict, length: str | None) -> eventlet.wsgi.Input:
        """The request's ``wsgi.input``; a chunked one is decoded by :class:`ChunkedInput`."""
        wfile = wfile_line = None
        if environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            wfile, wfile_line = self.wfile, b"HTTP/1.1 100 Continue\r\n"
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            return ChunkedInput(
                self.rfile, self.connection, self.close_after_response, wfile, wfile_line
            )
        # RFC 9112 6.3: a request with neither length nor chunked coding has no body.
        return eventlet.wsgi.Input(self.rfile, length or "0", self.connection, wfile, wfile_line)

    def set_idle(self) -> None:
        """For a websocket, which never ends its request: its connection counts as idle."""
        self.conn_state[2] = eventlet.wsgi.STATE_IDLE

    def close_after_response(self) -> None:
        """Read no further request from this connection; the response says so if not sent."""
        self.close_connection = True


def close_after_response(environ: dict) -> None:
    """Have the server close the connection of ``environ``'s request after its response.

    For a request whose body is left unread or unreadable: reading on would take the rest of
    the body as the next request. Does nothing under a protocol other than
    :class:`HttpOnlyProtocol`.
    """
    close = environ.get(CLOSE_CONNECTION_ENVIRON_KEY)
    if close is not None:
        close()


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """``(method, target, version)`` of a request line (with its CRLF), or RefusedRequest."""
    match = _REQUEST_LINE.fullmatch(str(line, "iso-8859-1"))
    if match is None:
        raise RefusedRequest(400, "Bad request line", line)
    method, target, version, major = match.groups()
    if major != "1":
        raise RefusedRequest(505, "HTTP version not supported", version)
    if target.startswith("//"):
        # "//host/x" would read as a scheme-relative URL in a redirect.
        target = "/" + target.lstrip("/")
    return method, target, version


class RequestHeaders:
    """A request's header fields in their order; ``get`` finds a name's first value in any case.

    What eventlet.wsgi reads of ``headers`` and no more, cheaper to fill and to search than
    the stdlib's ``email`` message it stands in for.
    """

    __slots__ = ("fields", "_first")

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []
        self._first: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self.fields.append((name, value))
        self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def replace(self, name: str, value: str) -> None:
        """Every ``name`` field becomes one, of ``value``."""
        lowered = name.lower()
        self.fields = [field for field in self.fields if field[0].lower() != lowered]
        self.fields.append((name, value))
        self._first[lowered] = value


def read_fields(rfile: Any) -> tuple[RequestHeaders, dict[str, list[str]]]:
    """Read header lines up to the blank line: the headers, and every value of each framing
    header (lower-case name to values) for :func:`check_framing`."""
    headers = RequestHeaders()
    fields: dict[str, list[str]] = {}
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline()
        if line == b"\r\n":
            return headers, fields
        name, value = parse_field_line(line)
        headers.add(name, value)
        lowered = name.lower()
        if lowered in _FRAMING_FIELDS:
            fields.setdefault(lowered, []).append(value)
    raise RefusedRequest(431, "Too many headers")


def parse_field_line(line: bytes) -> tuple[str, str]:
    """``(name, value)`` of a header or trailer line (with its CRLF), or RefusedRequest."""
    match = _FIELD_LINE.fullmatch(str(line, "iso-8859-1"))
    if match is None:
        reason = "Incomplete request head" if not line.endswith(b"\n") else "Bad header line"
        raise RefusedRequest(400, reason, line)
    return match.group(1), match.group(2).strip(" \t")


def check_framing(headers: RequestHeaders, fields: dict, version: str) -> None:
    """Refuse a request whose body length, or host, could be read more than one way.

    ``headers`` are left with one ``Content-Length`` (folded) or ``Transfer-Encoding:
    chunked``, in the form eventlet.wsgi reads them.
    """
    hosts = fields.get("host", ())
    if len(hosts) > 1 or (not hosts and version != "HTTP/1.0"):
        raise RefusedRequest(400, "HTTP/1.1 needs exactly one Host header")
    if len(fields.get("content-type", ())) > 1:
        raise RefusedRequest(400, "Several Content-Type headers")
    lengths, codings = fields.get("content-length"), fields.get("transfer-encoding")
    if lengths and codings:
        raise RefusedRequest(400, "Content-Length and Transfer-Encoding together")
    if codings:
        check_transfer_coding(codings, version)
        normalize(headers, "Transfer-Encoding", codings, "chunked")
    elif lengths:
        normalize(headers, "Content-Length", lengths, content_length(lengths))


def normalize(headers: RequestHeaders, name: str, values: list, value: str) -> None:
    if values != [value]:
        headers.replace(name, value)


def content_length(values: list[str]) -> str:
    """The one length that the ``Content-Length`` values state, or RefusedRequest."""
    lengths = {length.strip(" \t") for value in values for length in value.split(",")}
    for length in lengths:
        if not _DIGITS.fullmatch(length):
            raise RefusedRequest(400, "Bad Content-Length", length)
    if len(lengths) > 1:
        raise RefusedRequest(400, "Conflicting Content-Length values", sorted(lengths))
    return lengths.pop()


def check_transfer_coding(values: list[str], version: str) -> None:
    """Refuse any ``Transfer-Encoding`` but ``chunked`` (RFC 9112 section 6)."""
    if version == "HTTP/1.0":
        raise RefusedRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
    names = []
    for coding in (item for value in values for item in value.split(",")):
        name, semicolon, params = coding.strip(" \t").partition(";")
        name = name.rstrip(" \t").lower()
        if not _TOKEN.fullmatch(name) or not _CODING_PARAMS.fullmatch(semicolon + params):
            raise RefusedRequest(400, "Bad Transfer-Encoding", coding)
        if name == "chunked" and semicolon:
            raise RefusedRequest(400, "chunked takes no parameters")
        names.append(name)
    if names[-1] != "chunked" or names.count("chunked") > 1:
        # RFC 9112 6.3: the body length cannot be told, which a server must refuse.
        raise RefusedRequest(400, "Transfer-Encoding must end with chunked, once")
    if len(names) > 1:
        raise RefusedRequest(501, "Only the chunked transfer coding is implemented")


class ChunkedInput(eventlet.wsgi.Input):
    """A chunked request body (``wsgi.input``), decoded strictly as RFC 9112 section 7.1 says.

    A size line with anything but hex digits and well-formed extensions, data not followed by
    CRLF, a bad trailer line or an early end of the stream raise :class:`BadChunkedBody`.
    Trailer fields are read and dropped.
    """

    def __init__(
        self,
        rfile: Any,
        sock: Any,
        on_error: Callable[[], None],
        wfile: Any = None,
        wfile_line: bytes | None = None,
    ):
        # wfile and wfile_line: where and what to answer "Expect: 100-continue" with.
        super().__init__(rfile, None, sock, wfile, wfile_line, chunked_input=True)
        self._on_error = on_error
        self._left = 0  # bytes of the current chunk not read yet
        self._done = False

    def read(self, length: int | None = None) -> bytes:
        return self._decode(self.rfile.read, length)

    def readline(self, size: int | None = None) -> bytes:
        return self._decode(self.rfile.readline, size, line=True)

    def discard(self, buffer_size: int = 16 << 10) -> None:
        """Read the rest of the body; a bad one closes the connection instead of raising."""
        try:
            super().discard(buffer_size)
        except BadChunkedBody as exc:
            log.debug("closing the connection: %s", exc)
            self._on_error()

    def _decode(self, reader: Callable[[int], bytes], length: int | None, line=False) -> bytes:
        if self.should_send_hundred_continue:
            self.send_hundred_continue_response()
            self.is_hundred_continue_response_sent = True
        wanted = None if length is None or length < 0 else length
        parts: list[bytes] = []
        while not self._done and wanted != 0:
            if not self._left:
                self._left = self._next_chunk_size()
                continue
            data = reader(self._left if wanted is None else min(self._left, wanted))
            if not data:
                raise BadChunkedBody("the body ends in the middle of a chunk")
            parts.append(data)
            self._left -= len(data)
            wanted = None if wanted is None else wanted - len(data)
            if not self._left:
                self._expect_line_end()
            if line and data.endswith(b"\n"):
                break
        return b"".join(parts)

    def _next_chunk_size(self) -> int:
        line = self.rfile.readline(MAX_CHUNK_LINE)
        match = _CHUNK_SIZE_LINE.fullmatch(line)
        if match is None:
            raise BadChunkedBody(f"bad chunk size line {line[:40]!r}")
        size = int(match.group(1), 16)
        if not size:
            self._read_trailers()
        return size

    def _expect_line_end(self) -> None:
        if self.rfile.read(2) != b"\r\n":
            raise BadChunkedBody("chunk data not followed by CRLF")

    def _read_trailers(self) -> None:
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_CHUNK_LINE)
            if line == b"\r\n":
                self._done = True
                return
            try:
                parse_field_line(line)
            except RefusedRequest as exc:
                raise BadChunkedBody(f"bad trailer line {line[:40]!r}") from exc
        raise BadChunkedBody("too many trailer fields")
