"""HTTP requests/s of a trivial ``@http`` endpoint, keep-alive, 1 and 10 connections.

sandbox vs Nameko 2.14.1 (as shipped, and with its per-request INFO log silenced) vs a bare
eventlet.wsgi + werkzeug app; each server in its own subprocess on loopback, all measured in
one run, round-robin, keeping each one's best round so a noisy neighbour skews no one in
particular. Targets: sandbox >= 1.5 x Nameko and >= 1.0 x bare.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import Row

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = (1, 10)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
PATH = "/hello"
TARGETS = {"nameko": 1.5, "bare": 1.0}

SANDBOX_SERVER = """
import sys, threading
from sandbox.runners import ServiceRunner
from sandbox.web.handlers import http

class Bench:
    name = "bench"

    @http("GET", "/hello")
    def hello(self, request):
        return "hello"

runner = ServiceRunner({"WEB_SERVER_ADDRESS": "127.0.0.1:" + sys.argv[1]})
runner.add_service(Bench)
runner.start()
threading.Event().wait()
"""

BARE_SERVER = """
import sys, eventlet, eventlet.wsgi
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

url_map = Map([Rule("/hello", endpoint="hello", methods=["GET"])])

def app(environ, start_response):
    endpoint, values = url_map.bind_to_environ(environ).match()
    request = Request(environ)
    return Response("hello")(environ, start_response)

eventlet.wsgi.server(eventlet.listen(("127.0.0.1", int(sys.argv[1]))), app, log_output=False)
"""

NAMEKO_SERVICE = """
from nameko.web.handlers import http

class Bench:
    name = "bench"

    @http("GET", "/hello")
    def hello(self, request):
        return "hello"
"""

NAMEKO_QUIET_LOGGING = "LOGGING:\n  version: 1\n  root:\n    level: WARNING\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(command: list[str], port: int, cwd: Path | None = None) -> Iterator[int]:
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                read_response(sock, send_request(sock))
                return
        except OSError:
            time.sleep(0.05)  # polling a process we do not control; no event to wait on
    raise RuntimeError(f"server {proc.args} did not answer on port {port}")


def send_request(sock: socket.socket) -> bytes:
    sock.sendall(b"GET " + PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return b""


def read_response(sock: socket.socket, buffer: bytes) -> bytes:
    """Read one response with a Content-Length body; return what follows it."""
    while b"\r\n\r\n" not in buffer:
        buffer += recv(sock)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        rest += recv(sock)
    return rest[length:]


def recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("server closed the connection")
    return data


# --- load generators --------------------------------------------------------------------

Measure = Callable[[int, int, float], float]


def find_wrk() -> str | None:
    """wrk, installed with Debian's package when missing and possible (as root, with apt)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-package.sh"), "wrk", "wrk"])
    return shutil.which("wrk")


def wrk_measure(wrk: str) -> Measure:
    def measure(port: int, connections: int, seconds: float) -> float:
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}{PATH}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"errors while measuring port {port}:\n{out}")
        return float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))

    return measure


def python_measure(port: int, connections: int, seconds: float) -> float:
    """A keep-alive client per thread; slower than wrk, so it may be the bottleneck."""
    deadline = time.monotonic() + seconds
    counts = [0] * connections

    def client(index: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            buffer = b""
            while time.monotonic() < deadline:
                send_request(sock)
                buffer = read_response(sock, buffer)
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def load_generator() -> tuple[str, Measure]:
    wrk = find_wrk()
    if wrk is not None:
        return f"wrk ({wrk}), 1 thread", wrk_measure(wrk)
    return "a threaded Python keep-alive client (wrk unavailable)", python_measure


# --- the servers ------------------------------------------------------------------------


def nameko_python() -> str | None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "nameko-venv.sh")], capture_output=True, text=True
    )
    return result.stdout.strip().splitlines()[-1] if result.returncode == 0 else None


def script_server(stack: ExitStack, script: str) -> int:
    port = free_port()
    return stack.enter_context(server([sys.executable, "-c", script, str(port)], port))


def start_servers(stack: ExitStack, workdir: Path) -> dict[str, int]:
    ports = {
        "sandbox": script_server(stack, SANDBOX_SERVER),
        "bare": script_server(stack, BARE_SERVER),
    }
    nameko = nameko_python()
    if nameko is None:
        print("nameko: scripts/nameko-venv.sh failed, Nameko is left out")
        return ports
    (workdir / "nameko_bench.py").write_text(NAMEKO_SERVICE)
    runner = [str(Path(nameko).parent / "nameko"), "run", "--config"]
    for impl, extra in (("nameko", ""), ("nameko-quiet", NAMEKO_QUIET_LOGGING)):
        port = free_port()
        config = workdir / f"{impl}.yaml"
        config.write_text(f'WEB_SERVER_ADDRESS: "127.0.0.1:{port}"\n{extra}')
        ports[impl] = stack.enter_context(
            server([*runner, str(config), "nameko_bench"], port, workdir)
        )
    return ports


def run() -> list[Row]:
    generator, measure = load_generator()
    print(f"load generator: {generator}; best of {ROUNDS} rounds of {SECONDS:g} s each")
    print("nameko: `nameko run` as shipped (logs each request at INFO, to /dev/null here);")
    print("nameko-quiet: the same with LOGGING at WARNING")
    best: dict[tuple[str, int], float] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        ports = start_servers(stack, Path(tmp))
        for connections in CONNECTIONS:
            for port in ports.values():
                measure(port, connections, 1)  # warm up: connections, caches, JIT-less paths
            for _ in range(ROUNDS):
                for impl, port in ports.items():
                    rps = measure(port, connections, SECONDS)
                    key = (impl, connections)
                    best[key] = max(best.get(key, 0.0), rps)
    rows = [Row(f"http keep-alive {c} conn", impl, rps, "req/s") for (impl, c), rps in best.items()]
    report_targets(best)
    return rows


def report_targets(best: dict[tuple[str, int], float]) -> None:
    for connections in CONNECTIONS:
        ours = best[("sandbox", connections)]
        for impl, target in TARGETS.items():
            theirs = best.get((impl, connections))
            if theirs:
                ratio = ours / theirs
                verdict = "met" if ratio >= target else "MISSED"
                print(
                    f"{connections} conn: sandbox/{impl} = {ratio:.2f} "
                    f"(target >= {target}): {verdict}"
                )
