"""eventlet.wsgi's HTTP/1.x protocol with a lean, strict request head parser.

The standard library parses request headers with the ``email`` package, which costs about a
fifth of a trivial request on eventlet.wsgi. Reading them line by line is ten times cheaper,
and is a chance to refuse what RFC 9112 says a server must or may refuse: whitespace before
the colon, obsolete line folding, more than a hundred headers.
"""

from __future__ import annotations

import http.client
import logging
import re
from typing import Any

import eventlet.wsgi

from sandbox.web.connections import CONNECTION_ENVIRON_KEY, Connection

log = logging.getLogger(__name__)

MAX_HEADERS = 100
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class HttpOnlyProtocol(eventlet.wsgi.HttpProtocol):
    """Plain HTTP (no TLS sniffing), errors logged at DEBUG instead of written to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.address_string(), *args)

    def parse_request(self) -> bool:
        """Parse the request line and headers; on error answer it and return False.

        eventlet has read the request line and wraps ``rfile`` to bound the header size.
        """
        self.command = None
        # Not the stdlib's HTTP/0.9 default: errors about a malformed request line would go
        # out without a status line.
        self.request_version = self.protocol_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3:
            self.send_error(400, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path, version = words
        match = _VERSION.fullmatch(version)
        if match is None:
            self.send_error(400, f"Bad request version ({version!r})")
            return False
        if match.group(1) != "1":
            self.send_error(505, f"Invalid HTTP version ({version})")
            return False
        if path.startswith("//"):
            # "//host/x" would read as a scheme-relative URL in a redirect.
            path = "/" + path.lstrip("/")
        self.command, self.path, self.request_version = command, path, version
        headers = self._read_headers()
        if headers is None:
            return False
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        http11 = version != "HTTP/1.0" and self.protocol_version >= "HTTP/1.1"
        self.close_connection = connection == "close" or (not http11 and connection != "keep-alive")
        if headers.get("Expect", "").lower() == "100-continue" and http11:
            return self.handle_expect_100()
        return True

    def _read_headers(self) -> http.client.HTTPMessage | None:
        headers = http.client.HTTPMessage()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline()
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                self.send_error(400, f"Bad header line ({line[:80]!r})")
                return None
            headers[name] = value.strip(" \t\r\n")
        self.send_error(431, "Too many headers")
        return None

    # --- the connection's deadlines (sandbox.web.connections) ----------------------------

    def handle_one_request(self) -> None:
        if isinstance(self.conn_state, Connection):
            self.conn_state.await_request(self.rfile)
        super().handle_one_request()

    def get_environ(self) -> dict:
        environ = super().get_environ()
        if isinstance(self.conn_state, Connection):  # the head is in
            self.conn_state.serving()
            environ[CONNECTION_ENVIRON_KEY] = self.conn_state
        return environ
