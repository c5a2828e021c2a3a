"""Held HTTP connections cannot starve a served process: deadlines, a cap, eviction, a 503.

The attacks run against ``sandbox run`` as a process of its own (the ``serve`` fixture).
"""

import http.client
import os
import resource
import select
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from sandbox.exceptions import ConfigurationError
from sandbox.web.connections import ConnectionLimits, descriptor_capacity
from tests.security.conftest import TARGET

SLOW_CLIENTS = 1_100
# What a request head trickled in one line at a time starts with.
SLOW_HEAD = b"GET /ping HTTP/1.1\r\nHost: target\r\n"

BUSY = """
import logging

import eventlet

from sandbox.web.handlers import http


class Target:
    name = "target"

    @http("GET", "/busy")
    def busy(self, request):
        logging.getLogger("target").warning("busy request started")
        eventlet.sleep(60)  # a handler that takes its time: its connection is not idle
        return "done"

    @http("GET", "/ping")
    def ping(self, request):
        return "pong"
"""

HOG = """
import contextlib
import os
import resource

from sandbox.web.handlers import http

# A descriptor limit that /hog reaches at once, whatever this machine allows.
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
held = []


class Target:
    name = "target"

    @http("GET", "/hog")
    def hog(self, request):
        with contextlib.suppress(OSError):
            while True:
                held.append(open(os.devnull))
        return str(len(held))

    @http("GET", "/ping")
    def ping(self, request):
        return "pong"
"""

# The served target, in a process that may open 200 files at most.
FEW_FILES = "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))\n" + TARGET


@pytest.fixture
def more_files():
    """This process may hold the slow clients' sockets, and the files pytest has open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CLIENTS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE's hard limit {hard} is below the {wanted} needed")
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def logged(served, text, timeout=30):
    """The server's log line holding ``text``, waited for if it has not come yet."""
    seen = [line for line in served.process.lines if text in line]
    return seen[0] if seen else served.process.wait_for_line(text, timeout)


def read_to_end(sock):
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass  # the server closed with our data unread: what it said before is kept
    return b"".join(chunks)


def trickle_until_closed(sock, piece, every=0.2, within=30.0):
    """Send ``piece`` every ``every`` s until the server answers or closes; return that."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([sock], [], [], every)[0]:
            break
    else:
        pytest.fail(f"the server kept the connection open for {within} s")
    return read_to_end(sock)


def keep_alive_get(served, path="/ping"):
    """A keep-alive connection that has had one answer, left open."""
    connection = http.client.HTTPConnection(*served.address, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"pong")
    return connection


def closed_by_server(sock, timeout=10.0):
    sock.settimeout(timeout)
    return read_to_end(sock) == b""


def timed_get(served):
    started = time.monotonic()
    response = requests.get(f"{served.url}/ping", timeout=10)
    assert (response.status_code, response.text) == (200, "pong")
    return time.monotonic() - started


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class SlowLoris:
    """``count`` connections from one thread, each sending its request head a line at a time.

    A connection the server closes is opened again at the next line, so ``count`` stay held.
    """

    def __init__(self, address, count, every=2.0):
        self.address, self.count, self.every = address, count, every
        self.reopened = 0
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._socks = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self.opened.wait(60):
            pytest.fail(f"could not open {self.count} connections within 60 s")
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(30)
        for sock in self._socks:
            sock.close()

    def _open(self):
        sock = socket.create_connection(self.address, timeout=10)
        sock.sendall(SLOW_HEAD)
        return sock

    def _run(self):
        self._socks = [self._open() for _ in range(self.count)]
        self.opened.set()
        while not self._stop.wait(self.every):
            for index, sock in enumerate(self._socks):
                if not self._trickle(sock):
                    sock.close()
                    self._socks[index] = self._open()
                    self.reopened += 1

    @staticmethod
    def _trickle(sock):
        """One more header line; False when the server has answered or closed instead."""
        try:
            sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
            return False
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            sock.send(b"X-Slow: 1\r\n")
        except OSError:
            return False
        return True


def test_normal_requests_are_answered_within_a_second_while_1100_slow_clients_hold_on(
    serve, more_files
):
    served = serve()  # the default limits
    with SlowLoris(served.address, SLOW_CLIENTS) as attack:
        deadline = time.monotonic() + 30
        while open_files(served.process.proc.pid) < SLOW_CLIENTS:
            assert time.monotonic() < deadline, "the server never held the slow connections"
            time.sleep(0.1)
        # Longer than WEB_HEAD_TIMEOUT: the slow clients are cut off and come back meanwhile.
        latencies, end = [], time.monotonic() + 15
        while time.monotonic() < end:
            latencies.append(timed_get(served))
            time.sleep(0.1)
    slow = [f"{latency:.2f} s" for latency in latencies if latency >= 1.0]
    assert not slow, f"{len(slow)} of {len(latencies)} requests took a second or more: {slow}"
    assert attack.reopened >= SLOW_CLIENTS  # every slow client was cut off at the deadline
    logged(served, "request head not complete within WEB_HEAD_TIMEOUT=10 s")


def test_a_head_trickling_in_is_cut_off_with_408_at_the_head_deadline(serve):
    served = serve(WEB_HEAD_TIMEOUT=1)
    with socket.create_connection(served.address, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(SLOW_HEAD)
        answer = trickle_until_closed(sock, b"X-Slow: 1\r\n")  # never silent for long
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert elapsed >= 1
    line = logged(served, "request head not complete within WEB_HEAD_TIMEOUT=1 s")
    assert "sandbox.web" in line or "WARNING" in line


def test_a_body_slower_than_the_minimum_rate_is_cut_off_with_408(serve):
    served = serve(WEB_BODY_TIMEOUT=1, WEB_BODY_MIN_RATE=100_000)
    with socket.create_connection(served.address, timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: target\r\nContent-Length: 1000000\r\n\r\n")
        answer = trickle_until_closed(sock, b"x" * 100)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    logged(
        served,
        "request body slower than WEB_BODY_TIMEOUT=1 s plus WEB_BODY_MIN_RATE=100000 bytes/s",
    )


def test_a_body_that_keeps_up_the_minimum_rate_is_read_whole_past_the_body_timeout(serve):
    served = serve(WEB_BODY_TIMEOUT=2, WEB_BODY_MIN_RATE=100_000)
    size, piece = 1_000_000, b"x" * 25_000
    with socket.create_connection(served.address, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: target\r\nConnection: close\r\n")
        sock.sendall(b"Content-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(piece)):  # 250 KB/s: 4 s in all, twice WEB_BODY_TIMEOUT
            sock.sendall(piece)
            time.sleep(0.1)
        answer = read_to_end(sock)
    assert time.monotonic() - started > 2
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n" + b"x" * size)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_limit(serve):
    served = serve(WEB_KEEPALIVE_TIMEOUT=1, WEB_HEAD_TIMEOUT=30)
    connection = keep_alive_get(served)
    for _ in range(4):  # a request every 0.5 s keeps it open past the idle limit
        time.sleep(0.5)
        connection.request("GET", "/ping")
        assert connection.getresponse().read() == b"pong"
    idle_since = time.monotonic()
    assert closed_by_server(connection.sock)
    assert time.monotonic() - idle_since >= 0.9
    with socket.create_connection(served.address, timeout=10) as silent:
        assert closed_by_server(silent)  # a new connection that never sends is idle too


def test_a_full_server_closes_its_oldest_idle_connection_for_a_new_client(serve):
    served = serve(WEB_MAX_CONNECTIONS=3, WEB_KEEPALIVE_TIMEOUT=60)
    oldest, *others = [keep_alive_get(served) for _ in range(3)]
    assert timed_get(served) < 10
    assert closed_by_server(oldest.sock)
    for connection in others:  # the younger idle connections are still served
        connection.request("GET", "/ping")
        assert connection.getresponse().read() == b"pong"
    logged(served, "to make room on")


def test_a_full_server_with_no_idle_connection_answers_503(serve):
    served = serve(module=BUSY, WEB_MAX_CONNECTIONS=2)
    busy = [socket.create_connection(served.address, timeout=10) for _ in range(2)]
    for sock in busy:
        sock.sendall(b"GET /busy HTTP/1.1\r\nHost: target\r\n\r\n")
        served.process.wait_for_line("busy request started")
    response = requests.get(f"{served.url}/ping", timeout=10)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"  # WEB_HEAD_TIMEOUT
    assert response.headers["Connection"] == "close"
    logged(served, "connections open on")
    for sock in busy:
        sock.close()


def test_out_of_file_descriptors_accepting_logs_and_closes_an_idle_connection(serve):
    served = serve(module=HOG, WEB_MAX_CONNECTIONS=100)
    limits = Path(f"/proc/{served.process.proc.pid}/limits").read_text()
    assert "Max open files            356" in limits  # raised from 256 to fit 100 connections
    hog = http.client.HTTPConnection(*served.address, timeout=10)
    hog.request("GET", "/hog")
    assert int(hog.getresponse().read()) > 0  # the process is out of descriptors now
    assert timed_get(served) < 10  # the idle /hog connection made room
    logged(served, "Too many open files")
    logged(served, "to make room on")
    assert closed_by_server(hog.sock)


def test_a_cap_larger_than_the_descriptor_limit_allows_is_lowered_with_a_warning(serve):
    served = serve(module=FEW_FILES)
    logged(served, "WEB_MAX_CONNECTIONS=4096 needs 4352 file descriptors")
    assert "serving at most 100 connections" in logged(served, "RLIMIT_NOFILE")
    assert timed_get(served) < 10


def test_the_soft_descriptor_limit_is_raised_to_fit_the_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1256:
        pytest.skip(f"RLIMIT_NOFILE's hard limit {hard} is below 1256")
    resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
    try:
        assert descriptor_capacity(1000) == 1000
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1256
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    "key, value",
    [("WEB_HEAD_TIMEOUT", "soon"), ("WEB_MAX_CONNECTIONS", 0), ("WEB_BODY_MIN_RATE", True)],
)
def test_a_limit_that_is_not_a_positive_number_is_a_configuration_error(key, value):
    with pytest.raises(ConfigurationError, match=f"^{key} must be a positive number, not "):
        ConnectionLimits.from_config({key: value})
