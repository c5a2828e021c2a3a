"""Blocking calls in one service never stall the others: with container_factory, as in a test."""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection

import pytest
import requests
from latency import best_latency

from sandbox import blocking, offload
from sandbox.extensions import DependencyProvider
from sandbox.runtime import get_runtime
from sandbox.web.handlers import http

# Set by the test before each blocking call; the service sets ``inside`` just before it blocks.
inside = threading.Event()
LOCKED_DB: list[str] = []


class Session(DependencyProvider):
    """A requests.Session per worker, as Nameko projects give their services."""

    def get_dependency(self, worker_ctx):
        return requests.Session()


class Blocker:
    name = "blocker"
    session = Session()

    @http("GET", "/sleep")
    def sleep(self, request):
        inside.set()
        time.sleep(2)
        return "slept"

    @http("GET", "/subprocess")
    def subprocess(self, request):
        inside.set()
        done = subprocess.run([sys.executable, "-c", "import time; time.sleep(2)"], check=True)
        return str(done.returncode)

    @http("GET", "/sqlite")
    def sqlite(self, request):
        connection = sqlite3.connect(LOCKED_DB[0], timeout=30)
        inside.set()
        with connection:
            connection.execute("insert into t values (1)")
        connection.close()
        return "written"

    @http("GET", "/requests")
    def requests(self, request):
        # The route that answers is in this same process: without green sockets, a deadlock.
        inside.set()
        return self.session.get(f"{request.host_url}quick?via=requests", timeout=10).text

    @http("GET", "/http-client")
    def http_client(self, request):
        inside.set()
        host, port = request.host.split(":")
        connection = HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/quick?via=http.client")
        return connection.getresponse().read().decode()

    @http("GET", "/offload")
    def offloaded(self, request):
        inside.set()
        return str(offload(_spin, 1.0))


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


class Quick:
    name = "quick"

    @http("GET", "/quick")
    def quick(self, request):
        return f"quick {request.args.get('via', '')}".strip()


@pytest.fixture
def services(web_config, container_factory):
    for cls in (Blocker, Quick):
        container_factory(cls, web_config).start()
    return web_config


def others_answer_while(base, path):
    """Call ``path``; once its worker blocks, the other service must answer at once."""
    inside.clear()
    blocked = ThreadPoolExecutor(1).submit(requests.get, f"{base}{path}", timeout=30)
    assert inside.wait(30)
    latency = best_latency(f"{base}/quick")
    assert not blocked.done(), f"{path} returned before the other service was called"
    return latency, blocked


@pytest.fixture
def base(web_config_port):
    return f"http://127.0.0.1:{web_config_port}"


@pytest.mark.parametrize("path", ["/sleep", "/subprocess"])
def test_a_worker_that_blocks_stalls_no_other_service(services, base, path):
    latency, blocked = others_answer_while(base, path)
    assert latency < 0.1
    assert blocked.result().status_code == 200


def test_a_locked_sqlite3_database_stalls_no_other_service(services, base, tmp_path):
    LOCKED_DB[:] = [str(tmp_path / "locked.db")]
    holder = sqlite3.connect(LOCKED_DB[0], isolation_level=None)
    holder.execute("create table t (x)")
    holder.execute("begin exclusive")
    latency, blocked = others_answer_while(base, "/sqlite")
    assert latency < 0.1
    holder.execute("commit")
    assert blocked.result().text == "written"
    assert holder.execute("select count(*) from t").fetchone() == (1,)


@pytest.mark.parametrize("path", ["/requests", "/http-client"])
def test_a_worker_may_call_a_route_of_its_own_process(services, base, path):
    started = time.monotonic()
    response = requests.get(f"{base}{path}", timeout=30)
    via = path.lstrip("/").replace("-", ".")
    assert response.text == f"quick {via}"
    assert time.monotonic() - started < 10  # the client's own timeout: a deadlock would hit it


def test_offloaded_work_leaves_the_services_running(services, base, caplog):
    latency, blocked = others_answer_while(base, "/offload")
    assert latency < 0.1
    assert blocked.result().text == "spun"
    assert "held the services' thread" not in caplog.text


def test_offload_outside_the_hub_just_calls():
    assert offload(threading.current_thread) is threading.current_thread()


def test_calls_outside_the_hub_keep_the_originals():
    get_runtime()  # installs the hub-aware versions
    sock = socket.socket()
    try:
        assert type(sock).__module__ == "socket"
        assert isinstance(sock, socket.socket)
    finally:
        sock.close()
    connection = sqlite3.connect(":memory:")
    assert type(connection) is sqlite3.Connection
    connection.close()
    with subprocess.Popen([sys.executable, "-c", "pass"]) as process:
        assert type(process).__module__ == "subprocess"


def test_in_the_hub_sockets_are_green_and_still_sockets():
    def make():
        with socket.socket() as sock:
            return type(sock).__name__, isinstance(sock, socket.socket)

    assert get_runtime().call(make) == ("GreenSocket", True)


def test_a_subclass_of_socket_behaves_as_before():
    class Mine(socket.socket):
        pass

    def make():
        with Mine() as sock:
            return type(sock) is Mine, isinstance(sock, socket.socket)

    assert get_runtime().call(make) == (True, True)
    with socket.socket() as plain:
        assert not isinstance(plain, Mine)


def test_a_monkey_patched_process_is_left_alone(tmp_path):
    script = (
        "import eventlet; eventlet.monkey_patch()\n"
        "import time; slept = time.sleep\n"
        "from sandbox.runtime import get_runtime; get_runtime()\n"
        "assert time.sleep is slept, time.sleep\n"
        "print('left alone')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stdout.strip() == "left alone", done.stderr
    assert blocking.hub_offload() is None  # this thread is no hub
