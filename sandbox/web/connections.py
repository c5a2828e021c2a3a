"""HTTP connections no client can hold for ever: deadlines, a cap, eviction, a clear 503.

eventlet.wsgi alone only times silence (``WEB_SOCKET_TIMEOUT``): a client sending one header
line every few seconds keeps its connection for ever, and a full server stops accepting. Here
each connection of a listener is in one phase at a time, each with a deadline of its own:

- *idle*, waiting for the first byte of a request (a new connection, or one kept alive after
  an answer): ``WEB_KEEPALIVE_TIMEOUT``, default 5 s, then it is closed;
- *head*, from that first byte until the headers are complete: ``WEB_HEAD_TIMEOUT``, default
  10 s, for the whole head however steadily it trickles in; then ``408`` and close;
- *body*, reading a request body: ``WEB_BODY_TIMEOUT`` (default 10 s) plus the time the bytes
  read so far take at ``WEB_BODY_MIN_RATE`` (default 16 KiB/s), then ``408`` and close. A
  minimum rate rather than one total: a 10 MiB upload on a slow link is not cut off, and a
  client cannot buy time by announcing a large body it then does not send;
- *serving*, while the handler runs and its answer is written: no deadline here (a client
  that stops reading the answer is still cut off by ``WEB_SOCKET_TIMEOUT``).

A request only notes the time when its phase changes; one green thread per listener sweeps
the connections a few times per deadline and ends those past theirs, so the fast path adds
no timer. Deadlines apply to connections served by
:class:`~sandbox.web.protocol.HttpOnlyProtocol` (the default); a ``get_wsgi_server`` that
picks another protocol keeps eventlet's behaviour.

At most ``WEB_MAX_CONNECTIONS`` (default 4096) connections are open at once. When a new client
comes and none is free, the connection idle the longest is closed to make room; if none is
idle the client is answered ``503`` with ``Retry-After`` and ``Connection: close``. At start
the soft ``RLIMIT_NOFILE`` is raised towards the hard one so that the cap fits; when it cannot
be, the cap is lowered to what fits, with a warning.

Each limit that bites (a head or body deadline, an eviction, a 503, a failing ``accept``) is
logged on the ``sandbox.web`` logger, one line per kind every 10 s at most, counting the others.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import resource
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import eventlet
import eventlet.greenio
import eventlet.wsgi

from sandbox.exceptions import ConfigurationError
from sandbox.runtime import get_runtime

log = logging.getLogger("sandbox.web")

MAX_CONNECTIONS_CONFIG_KEY = "WEB_MAX_CONNECTIONS"
DEFAULT_MAX_CONNECTIONS = 4096
KEEPALIVE_TIMEOUT_CONFIG_KEY = "WEB_KEEPALIVE_TIMEOUT"
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
HEAD_TIMEOUT_CONFIG_KEY = "WEB_HEAD_TIMEOUT"
DEFAULT_HEAD_TIMEOUT = 10.0
BODY_TIMEOUT_CONFIG_KEY = "WEB_BODY_TIMEOUT"
DEFAULT_BODY_TIMEOUT = 10.0
BODY_MIN_RATE_CONFIG_KEY = "WEB_BODY_MIN_RATE"
DEFAULT_BODY_MIN_RATE = 16 * 1024

# The WSGI environ key of the request's Connection, for the body reader.
CONNECTION_ENVIRON_KEY = "sandbox.connection"

# File descriptors the process keeps for everything but HTTP clients: broker connections,
# log files, modules being imported, the clients being answered 503.
RESERVED_DESCRIPTORS = 256
# Clients being answered 503 at once; past that a refused client is closed without an answer.
MAX_REFUSING = 64
# How long a 503 answer waits for the client to close first, so that closing with its request
# unread does not reset the connection before the client has read the answer.
REFUSAL_LINGER_SECONDS = 1.0
# How long accepting pauses when the process is out of file descriptors and no idle
# connection can be closed to free one.
ACCEPT_BACKOFF_SECONDS = 0.1
REPORT_INTERVAL_SECONDS = 10.0
# accept() failing so means the process or system is out of resources, not the client.
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

IDLE, HEAD, BODY, SERVING = "idle", "head", "body", "serving"

RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
    b"Connection: close\r\n\r\nRequest Timeout\n"
)
RESPONSE_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n"
    b"Retry-After: %d\r\nConnection: close\r\n\r\nServer busy: too many open connections.\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection limits of a listener, read from the config of its first container."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    head_timeout: float = DEFAULT_HEAD_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    body_min_rate: float = DEFAULT_BODY_MIN_RATE

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> ConnectionLimits:
        """The limits a config sets; a value that is not a positive number is an error."""
        return cls(
            _positive(settings, MAX_CONNECTIONS_CONFIG_KEY, DEFAULT_MAX_CONNECTIONS, int),
            _positive(settings, KEEPALIVE_TIMEOUT_CONFIG_KEY, DEFAULT_KEEPALIVE_TIMEOUT),
            _positive(settings, HEAD_TIMEOUT_CONFIG_KEY, DEFAULT_HEAD_TIMEOUT),
            _positive(settings, BODY_TIMEOUT_CONFIG_KEY, DEFAULT_BODY_TIMEOUT),
            _positive(settings, BODY_MIN_RATE_CONFIG_KEY, DEFAULT_BODY_MIN_RATE),
        )

    @property
    def sweep_interval(self) -> float:
        """How often deadlines are checked: a deadline fires up to this much late."""
        shortest = min(self.keepalive_timeout, self.head_timeout, self.body_timeout)
        return min(max(shortest / 4, 0.05), 1.0)


def _positive(settings: Mapping[str, Any], key: str, default: float, kind: type = float) -> Any:
    value = settings.get(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number <= 0:
        raise ConfigurationError(f"{key} must be a positive number, not {value!r}")
    return number


class ConnectionClosed(BaseException):
    """Thrown into a connection's green thread to end it: a deadline passed, or room was needed.

    A BaseException, as ``eventlet.Timeout`` is: eventlet.wsgi would answer an Exception
    raised while reading a body with a 500.
    """


class HttpConnection(list):
    """One client connection: eventlet.wsgi's ``[address, socket, state]``, plus its phase.

    The protocol and the body reader move it from phase to phase; the listener's sweeper ends
    it once ``deadline`` (monotonic time) has passed. ``since`` is when the phase began.
    """

    __slots__ = ("limits", "thread", "phase", "since", "deadline")

    def __init__(self, address: Any, sock: Any, limits: ConnectionLimits):
        super().__init__((address, sock, eventlet.wsgi.STATE_IDLE))
        self.limits = limits
        self.thread: Any = None
        # Until the protocol says otherwise: a protocol without these hooks gets no deadline.
        self.phase, self.since, self.deadline = SERVING, time.monotonic(), math.inf

    def await_request(self, rfile: IO[bytes]) -> None:
        """Idle until the next request's first byte is in, then start the head deadline."""
        self._enter(IDLE, self.limits.keepalive_timeout)
        # Buffered, the byte waits for the read of the request line; that read meets a
        # reset connection again, and handles it.
        with contextlib.suppress(ConnectionError):
            rfile.peek(1)
        self._enter(HEAD, self.limits.head_timeout)

    def receiving(self, received: int) -> None:
        """Reading the body, of which ``received`` bytes are in: its deadline moves on."""
        if self.phase != BODY:
            self._enter(BODY, 0)
        limits = self.limits
        self.deadline = self.since + limits.body_timeout + received / limits.body_min_rate

    def serving(self) -> None:
        """The request is in: no deadline while it is answered."""
        self.phase, self.deadline = SERVING, math.inf

    def _enter(self, phase: str, timeout: float) -> None:
        self.phase, self.since = phase, time.monotonic()
        self.deadline = self.since + timeout


class LimitLog:
    """Logs each kind of limit biting at most once per interval, counting what it held back."""

    def __init__(self, interval: float = REPORT_INTERVAL_SECONDS):
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def report(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._last.get(kind, -math.inf) + self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            message += f" (and {held} more since the last such line)"
        log.warning(message, *args)


def descriptor_capacity(connections: int) -> int:
    """How many of ``connections`` fit the file descriptor limit, raising it first if needed.

    The soft RLIMIT_NOFILE goes up towards the hard one, by as much as the connections and
    :data:`RESERVED_DESCRIPTORS` need.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + RESERVED_DESCRIPTORS
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return connections
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (ValueError, OSError):
        pass  # macOS caps it lower than the hard limit says: keep the soft one
    if soft >= needed:
        return connections
    fitting = max(soft - RESERVED_DESCRIPTORS, soft // 2)
    log.warning(
        "%s=%d needs %d file descriptors but the process may open %d (RLIMIT_NOFILE): "
        "serving at most %d connections at once",
        MAX_CONNECTIONS_CONFIG_KEY,
        connections,
        needed,
        soft,
        fitting,
    )
    return fitting


def refuse(sock: Any, retry_after: int) -> None:
    """Answer ``503`` without reading the request, then close once the client has read it."""
    try:
        sock.fd.send(RESPONSE_503 % retry_after)  # a new socket's buffer takes it at once
        sock.shutdown(socket.SHUT_WR)
        with eventlet.Timeout(REFUSAL_LINGER_SECONDS, False):
            while sock.recv(4096):
                pass
    except OSError:
        pass  # the client is gone: nothing to answer
    finally:
        sock.close()


class ConnectionTable:
    """Accepts a listening socket's clients and serves each in a green thread, within limits.

    ``start(wsgi_server)`` begins accepting; each connection is served by
    ``wsgi_server.process_request``. ``close(grace)`` ends it all and closes the socket.
    """

    def __init__(self, sock: Any, limits: ConnectionLimits, name: str):
        self.sock = sock
        self.limits = limits
        self.name = name
        self.capacity = descriptor_capacity(limits.max_connections)
        self.wsgi_server: eventlet.wsgi.Server | None = None
        self._pool = eventlet.GreenPool(self.capacity)
        self._refusals = eventlet.GreenPool(MAX_REFUSING)
        self._open: dict[int, HttpConnection] = {}
        self._threads: list[Any] = []
        self._limit_log = LimitLog()

    def __len__(self) -> int:
        return len(self._open)

    def start(self, wsgi_server: eventlet.wsgi.Server) -> None:
        self.wsgi_server = wsgi_server
        runtime = get_runtime()
        self._threads = [runtime.spawn(self._accept), runtime.spawn(self._sweep)]

    def close(self, grace: float) -> None:
        """Stop accepting, free the port, and end the open connections.

        Idle keep-alive connections close at once; requests being answered get ``grace``
        seconds to finish.
        """
        for thread in self._threads:
            thread.kill()
        self.sock.close()
        for connection in list(self._open.values()):
            previous, connection[2] = connection[2], eventlet.wsgi.STATE_CLOSE
            if previous == eventlet.wsgi.STATE_IDLE:
                eventlet.greenio.shutdown_safe(connection[1])
        with eventlet.Timeout(grace, False):
            self._pool.waitall()
        for pool in (self._pool, self._refusals):
            for thread in list(pool.coroutines_running):
                thread.kill()

    # --- accepting ------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.sock.accept()
            except OSError as exc:
                self._accept_failed(exc)
                continue
            if self._pool.free() or self._evict():
                self._admit(sock, address)
            else:
                self._refuse(sock, address)

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno == errno.ECONNABORTED:
            return  # the client left before it was accepted
        self._limit_log.report(
            "accept",
            "accepting a connection on %s failed (%d open): %s",
            self.name,
            len(self._open),
            exc,
        )
        if exc.errno not in OUT_OF_RESOURCES or not self._evict():
            eventlet.sleep(ACCEPT_BACKOFF_SECONDS)  # let connections close before retrying

    def _admit(self, sock: Any, address: Any) -> None:
        sock.settimeout(self.wsgi_server.socket_timeout)
        connection = HttpConnection(address, sock, self.limits)
        connection.thread = self._pool.spawn(self._serve, connection)

    def _evict(self) -> bool:
        """Close the connection idle the longest; True once that has freed a place."""
        idle = (c for c in self._open.values() if c.phase == IDLE)
        oldest = min(idle, key=lambda connection: connection.since, default=None)
        if oldest is None:
            return False
        self._limit_log.report(
            "evict",
            "closed the connection from %s, idle for %.1f s, to make room on %s (%s=%d)",
            _peer(oldest[0]),
            time.monotonic() - oldest.since,
            self.name,
            MAX_CONNECTIONS_CONFIG_KEY,
            self.capacity,
        )
        self._end(oldest)
        return self._pool.free() > 0

    def _refuse(self, sock: Any, address: Any) -> None:
        self._limit_log.report(
            "refuse",
            "answered 503 to %s: %d connections open on %s (%s=%d), none idle",
            _peer(address),
            len(self._open),
            self.name,
            MAX_CONNECTIONS_CONFIG_KEY,
            self.capacity,
        )
        if self._refusals.free():
            self._refusals.spawn(refuse, sock, math.ceil(self.limits.head_timeout))
        else:
            sock.close()

    # --- serving --------------------------------------------------------------------------

    def _serve(self, connection: HttpConnection) -> None:
        key = id(connection)
        self._open[key] = connection
        try:
            self.wsgi_server.process_request(connection)
        except ConnectionClosed:
            pass  # whoever closed it has said why
        except Exception:
            log.exception("error serving %s", _peer(connection[0]))
        finally:
            del self._open[key]
            connection[2] = eventlet.wsgi.STATE_CLOSE
            eventlet.greenio.shutdown_safe(connection[1])
            connection[1].close()

    def _sweep(self) -> None:
        while True:
            eventlet.sleep(self.limits.sweep_interval)
            now = time.monotonic()
            for connection in [c for c in self._open.values() if c.deadline <= now]:
                # Ending one lets others run: each is checked again just before its turn.
                if connection.deadline <= now and id(connection) in self._open:
                    self._expire(connection)

    def _expire(self, connection: HttpConnection) -> None:
        limits = connection.limits
        if connection.phase == HEAD:
            self._limit_log.report(
                HEAD,
                "closed the connection from %s: request head not complete within %s=%g s",
                _peer(connection[0]),
                HEAD_TIMEOUT_CONFIG_KEY,
                limits.head_timeout,
            )
        elif connection.phase == BODY:
            self._limit_log.report(
                BODY,
                "closed the connection from %s: request body slower than %s=%g s plus "
                "%s=%g bytes/s",
                _peer(connection[0]),
                BODY_TIMEOUT_CONFIG_KEY,
                limits.body_timeout,
                BODY_MIN_RATE_CONFIG_KEY,
                limits.body_min_rate,
            )
        if connection.phase != IDLE:
            with contextlib.suppress(OSError):
                connection[1].fd.send(RESPONSE_408)  # at once or never: no waiting on it
        self._end(connection)

    def _end(self, connection: HttpConnection) -> None:
        error = ConnectionClosed(connection.phase)
        connection.thread.kill(ConnectionClosed, error, None)


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
