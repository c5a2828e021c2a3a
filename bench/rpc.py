"""RPC round trip (p50, p99), 10-caller throughput, and 10 calls in flight from one thread.

On one RabbitMQ, in one run: sandbox vs Nameko 2.14.1 vs a raw py-amqp request/reply loop
(the floor: the same messages on the wire, none of a framework's work). Each service runs in
a subprocess of its own, each client in another, one vhost for all. Rounds go round-robin,
all round trips before any throughput run, and each implementation keeps its best round, so a
noisy neighbour skews no one in particular; the median round trips are printed as well.
Then the embedded broker: a sandbox service and its caller in one process (a notebook's case).

Ten callers are ten plain threads for sandbox (sharing one proxy) and for the raw client
(sharing its one connection), ten green threads for Nameko (a proxy each). "In flight" is one
thread keeping ten requests outstanding, a new one as each reply comes: the raw loop, and
``call_async`` for the other two. Each shape is compared with itself; the report also prints
sandbox's ten threads against the raw one-thread loop, which is what ten threads cost CPython.

Targets: over RabbitMQ sandbox p50 <= 0.4 x Nameko and <= 1.2 x raw, 10-caller throughput
>= 2 x Nameko and >= 0.9 x raw (10 in flight too); embedded p50 <= 1 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from bench import Row
from bench.http import nameko_python

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CALLS = int(os.environ.get("BENCH_RPC_CALLS", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
AMQP_URI = os.environ.get("BENCH_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
CALLERS = 10

# How a client measures: shared by the sandbox and Nameko clients, which differ only in how
# they open a caller. Each prints one JSON line.
MEASURE = """
import collections, json, sys, threading, time

def sequential(call, calls):
    for _ in range(max(calls // 10, 50)):
        call("x")
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        call("x")
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)]}

def concurrent(open_caller, callers, seconds):
    counts = [0] * callers
    lined_up = threading.Barrier(callers + 1)
    running = [True]

    def caller(index):
        with open_caller() as call:
            call("x")
            lined_up.wait()
            while running[0]:
                call("x")
                counts[index] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    lined_up.wait()
    before, started = sum(counts), time.perf_counter()
    time.sleep(seconds)
    calls, elapsed = sum(counts) - before, time.perf_counter() - started
    running[0] = False
    for thread in threads:
        thread.join()
    return {"throughput": calls / elapsed}

def pipelined(open_caller, calls, seconds):
    with open_caller() as call:
        call("x")
        flight = collections.deque(call.call_async("x") for _ in range(calls))
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            flight.popleft().result()
            done += 1
            flight.append(call.call_async("x"))
        elapsed = time.perf_counter() - started
        for reply in flight:
            reply.result()
    return {"in_flight": done / elapsed}

def measure(open_caller):
    mode, amount = sys.argv[2], float(sys.argv[3])
    if mode == "sequential":
        with open_caller() as call:
            result = sequential(call, int(amount))
    elif mode == "in_flight":
        result = pipelined(open_caller, int(sys.argv[4]), amount)
    else:
        result = concurrent(open_caller, int(sys.argv[4]), amount)
    print(json.dumps(result), flush=True)
"""

# Runs the service class ``Bench`` defined before it, until killed.
SANDBOX_RUN = """
import sys, threading
from sandbox.runners import ServiceRunner

runner = ServiceRunner({"AMQP_URI": sys.argv[1]})
runner.add_service(Bench)
runner.start()
print("ready", flush=True)
threading.Event().wait()
"""

SANDBOX_SERVICE = (
    """
from sandbox.rpc import rpc

class Bench:
    name = "bench_sandbox"

    @rpc
    def echo(self, value):
        return value
"""
    + SANDBOX_RUN
)

# The service's clients share one proxy, as threads of a notebook or a web app would.
SANDBOX_CLIENT = (
    MEASURE
    + """
import contextlib
from sandbox.standalone.rpc import ClusterRpcProxy

with ClusterRpcProxy({"AMQP_URI": sys.argv[1]}) as cluster:
    measure(lambda: contextlib.nullcontext(cluster.bench_sandbox.echo))
"""
)

# A Nameko standalone proxy serves one (green) thread: each caller opens its own.
NAMEKO_CLIENT = (
    "import eventlet; eventlet.monkey_patch()\n"
    + MEASURE
    + """
import contextlib
from nameko.standalone.rpc import ClusterRpcProxy

@contextlib.contextmanager
def open_caller():
    with ClusterRpcProxy({"AMQP_URI": sys.argv[1]}) as cluster:
        yield cluster.bench_nameko.echo

measure(open_caller)
"""
)

NAMEKO_SERVICE = """
from nameko.rpc import rpc

class Bench:
    name = "bench_nameko"

    @rpc
    def echo(self, value):
        return value
"""

NAMEKO_LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {"nameko.runners": {"level": "DEBUG"}},  # "services started" means ready
}

# The floor: Nameko's wire format (topic exchange, durable queue, persistent messages,
# reply_to and correlation_id) with plain py-amqp, no confirms, no JSON, no threads.
RAW_COMMON = """
import sys, uuid
from urllib.parse import unquote, urlsplit
import amqp

def connect(uri):
    parts = urlsplit(uri)
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port or 5672}",
        userid=unquote(parts.username), password=unquote(parts.password),
        virtual_host=unquote(parts.path[1:]) or "/",
    )
    connection.connect()
    channel = connection.channel()
    channel.exchange_declare("nameko-rpc", "topic", durable=True, auto_delete=False)
    return connection, channel

def serve(connection, channel, queue, callback):
    channel.basic_qos(0, 10, False)
    channel.basic_consume(queue, callback=callback)
    print("ready", flush=True)
    while True:
        connection.drain_events()
"""

RAW_SERVICE = (
    RAW_COMMON
    + """
connection, channel = connect(sys.argv[1])
channel.queue_declare("rpc-bench_raw", durable=True, auto_delete=False)
channel.queue_bind("rpc-bench_raw", "nameko-rpc", "bench_raw.*")

def on_request(message):
    reply = amqp.Message(
        b'{"result": "x", "error": null}', content_type="application/json", delivery_mode=2,
        correlation_id=message.properties["correlation_id"],
    )
    channel.basic_publish(reply, exchange="nameko-rpc", routing_key=message.properties["reply_to"])
    channel.basic_ack(message.delivery_tag)

serve(connection, channel, "rpc-bench_raw", on_request)
"""
)

# N in flight: one thread keeps N requests in flight on its one connection, a new one per
# reply. N callers: N threads share the connection, as sandbox's share a proxy. py-amqp is not
# thread-safe, so a waiting thread that finds nobody reading reads for all (releasing each
# reply's caller) and passes the reading on once its own reply is in. Of the threaded shapes
# tried this was the fastest: a reader thread of its own made ~2% fewer calls, a connection
# per thread ~15% fewer.
RAW_CLIENT = (
    RAW_COMMON
    + MEASURE
    + """
import contextlib, itertools

connection, channel = connect(sys.argv[1])
reply_to = str(uuid.uuid4())
queue = channel.queue_declare("", exclusive=True).queue
channel.queue_bind(queue, "nameko-rpc", reply_to)
replies = set()  # the loop's
waiting = {}  # correlation id -> the lock its caller thread sleeps on

def on_reply(message):
    correlation_id = message.properties["correlation_id"]
    caller = waiting.pop(correlation_id, None)
    if caller is None:
        replies.add(correlation_id)
    else:
        wake(caller)

def wake(lock):
    with contextlib.suppress(RuntimeError):  # woken already: once is enough
        lock.release()

channel.basic_consume(queue, no_ack=True, callback=on_reply)
ids = map(str, itertools.count())

def request(correlation_id):
    return amqp.Message(
        b'{"args": ["x"], "kwargs": {}}', content_type="application/json", delivery_mode=2,
        reply_to=reply_to, correlation_id=correlation_id,
    )

def send():
    correlation_id = next(ids)
    channel.basic_publish(request(correlation_id), "nameko-rpc", "bench_raw.echo")
    return correlation_id

def call(value):
    correlation_id = send()
    while correlation_id not in replies:
        connection.drain_events()
    replies.remove(correlation_id)

def in_flight(callers, seconds):
    for _ in range(callers):
        send()
    done, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        connection.drain_events()
        for _ in range(len(replies)):
            replies.pop()
            done += 1
            send()
    return done / (time.perf_counter() - started)

reading, writing = threading.Lock(), threading.Lock()
PUBLISH = (0, "nameko-rpc", "bench_raw.echo", False, False)

def threaded_call(value):
    correlation_id, asleep = next(ids), threading.Lock()
    asleep.acquire()
    waiting[correlation_id] = asleep
    with writing:  # not basic_publish, which may read the socket too
        channel.send_method(amqp.spec.Basic.Publish, "Bssbb", PUBLISH, request(correlation_id))
    while correlation_id in waiting:
        if not reading.acquire(blocking=False):
            asleep.acquire()  # until the reply, or the reading, is ours
            continue
        try:
            while correlation_id in waiting:
                connection.drain_events()
        finally:
            reading.release()
        following = next(iter(list(waiting.values())), None)
        if following is not None:
            wake(following)

mode = sys.argv[2]
if mode == "sequential":
    print(json.dumps(sequential(call, int(sys.argv[3]))), flush=True)
elif mode == "concurrent":
    measure(lambda: contextlib.nullcontext(threaded_call))
else:
    print(json.dumps({"in_flight": in_flight(int(sys.argv[4]), float(sys.argv[3]))}), flush=True)
"""
)

# Service and caller in one process on the embedded broker; calls come from plain threads,
# as from a notebook cell.
EMBEDDED = (
    MEASURE
    + """
import contextlib
from sandbox.rpc import rpc
from sandbox.runners import ServiceRunner
from sandbox.standalone.rpc import ClusterRpcProxy

class Bench:
    name = "bench_sandbox"

    @rpc
    def echo(self, value):
        return value

config = {"AMQP_URI": "memory://"}
runner = ServiceRunner(config)
runner.add_service(Bench)
runner.start()
with ClusterRpcProxy(config) as cluster:
    measure(lambda: contextlib.nullcontext(cluster.bench_sandbox.echo))
runner.stop()
"""
)


@contextmanager
def vhost() -> Iterator[str]:
    """A throwaway vhost on the bench's RabbitMQ."""
    from sandbox.testing.rabbit import RabbitManager

    parts = urlsplit(AMQP_URI)
    api = f"http://{parts.username}:{parts.password}@{parts.hostname}:15672"
    manager = RabbitManager(api, AMQP_URI)
    name = f"sandbox-bench-{uuid.uuid4().hex[:8]}"
    manager.create_vhost(name)
    try:
        yield manager.uri_for(name)
    finally:
        manager.delete_vhost(name)


@contextmanager
def service(
    command: list[str],
    ready: str,
    cwd: Path = ROOT,
    on_line: Callable[[str], object] = str,
) -> Iterator[None]:
    """A service subprocess, once it printed ``ready`` (stdout or stderr); each later line
    goes to ``on_line``."""
    proc = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output = []
        for line in proc.stdout:
            output.append(line)
            if ready in line:
                break
        else:
            raise RuntimeError(f"{command} ended before it was ready:\n{''.join(output)}")
        # Keep reading, or a chatty service would block on a full pipe.
        threading.Thread(target=_read_lines, args=(proc.stdout, on_line), daemon=True).start()
        yield
    finally:
        proc.kill()
        proc.wait()


def _read_lines(stream: IO[str], on_line: Callable[[str], object]) -> None:
    for line in stream:
        on_line(line)


def client(command: list[str], *args: object) -> dict[str, float]:
    done = subprocess.run(
        [*command, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:2]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_services(stack: ExitStack, uri: str, workdir: Path) -> dict[str, list[str]]:
    """Start each implementation's service; return the command of each one's client."""
    python = sys.executable
    stack.enter_context(service([python, "-c", SANDBOX_SERVICE, uri], "ready"))
    stack.enter_context(service([python, "-c", RAW_SERVICE, uri], "ready"))
    clients = {
        "sandbox": [python, "-c", SANDBOX_CLIENT, uri],
        "raw-amqp": [python, "-c", RAW_CLIENT, uri],
    }
    nameko = start_nameko(stack, uri, workdir, NAMEKO_SERVICE)
    if nameko is not None:
        clients["nameko"] = [nameko, "-c", NAMEKO_CLIENT, uri]
    return clients


def start_nameko(
    stack: ExitStack,
    uri: str,
    workdir: Path,
    source: str,
    on_line: Callable[[str], object] = str,
) -> str | None:
    """``nameko run`` the service in ``source``; the Nameko venv's python, None without it."""
    nameko = nameko_python()
    if nameko is None:
        print("nameko: scripts/nameko-venv.sh failed, Nameko is left out")
        return None
    (workdir / "nameko_bench.py").write_text(source)
    (workdir / "config.yaml").write_text(json.dumps({"AMQP_URI": uri, "LOGGING": NAMEKO_LOGGING}))
    run = [str(Path(nameko).parent / "nameko"), "run", "--config", "config.yaml", "nameko_bench"]
    stack.enter_context(service(run, "services started", workdir, on_line))
    return nameko


def best_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for measured in rounds:
        for key, value in measured.items():
            better = max if key in RATES else min
            best[key] = better(best.get(key, value), value)
    return best


PHASES = {
    "sequential": (CALLS,),
    "concurrent": (SECONDS, CALLERS),
    "in_flight": (SECONDS, CALLERS),
}
RATES = ("throughput", "in_flight")  # higher is better; for the rest, lower


def measure_rounds(clients: dict[str, list[str]]) -> dict[str, list[dict[str, float]]]:
    """Each phase's rounds, round-robin over the implementations: every round trip is timed
    away from anyone's 10-caller burst, whose wake (the broker writing persistent messages
    away) would fall on whoever came next."""
    rounds: dict[str, list[dict[str, float]]] = {
        impl: [{} for _ in range(ROUNDS)] for impl in clients
    }
    for phase, args in PHASES.items():
        for number in range(ROUNDS):
            for impl, command in clients.items():
                measured = client(command, phase, *args)
                rounds[impl][number].update(measured)
                print(f"{phase} round {number + 1} {impl}: {measured}", flush=True)
    return rounds


def rows_for(where: str, impl: str, best: dict[str, float]) -> list[Row]:
    return [
        Row(f"rpc {where} p50", impl, best["p50"] * 1e6, "us"),
        Row(f"rpc {where} p99", impl, best["p99"] * 1e6, "us"),
        Row(f"rpc {where} {CALLERS} callers", impl, best["throughput"], "calls/s"),
        Row(f"rpc {where} {CALLERS} in flight", impl, best["in_flight"], "calls/s"),
    ]


def run() -> list[Row]:
    print(
        f"{CALLS} sequential calls, {SECONDS:g} s of {CALLERS} callers and of {CALLERS} in "
        f"flight, best of {ROUNDS}"
    )
    print("raw-amqp: py-amqp, Nameko's wire format, no confirms")
    print("embedded: sandbox only (Nameko 2.14.1 fails on kombu's memory:// transport)")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        uri = stack.enter_context(vhost())
        rounds = measure_rounds(start_services(stack, uri, Path(tmp)))
    best = {impl: best_of(measured) for impl, measured in rounds.items()}
    rows = [row for impl, figures in best.items() for row in rows_for("rabbitmq", impl, figures)]
    embedded = best_of(
        measure_rounds({"embedded": [sys.executable, "-c", EMBEDDED, ""]})["embedded"]
    )
    rows += rows_for("embedded", "sandbox", embedded)
    report_targets(best, embedded)
    report_medians(rounds)
    return rows


def report_targets(best: dict[str, dict[str, float]], embedded: dict[str, float]) -> None:
    ours = best["sandbox"]
    checks = [("embedded p50 (ms)", embedded["p50"] * 1e3, "<=", 1.0)]
    if "nameko" in best:
        checks.append(("p50 sandbox/nameko", ours["p50"] / best["nameko"]["p50"], "<=", 0.4))
        checks.append(
            (
                "throughput sandbox/nameko",
                ours["throughput"] / best["nameko"]["throughput"],
                ">=",
                2.0,
            )
        )
    raw = best["raw-amqp"]
    checks.append(("p50 sandbox/raw-amqp", ours["p50"] / raw["p50"], "<=", 1.2))
    checks.append(
        ("throughput sandbox/raw-amqp", ours["throughput"] / raw["throughput"], ">=", 0.9)
    )
    checks.append(("in flight sandbox/raw-amqp", ours["in_flight"] / raw["in_flight"], ">=", 0.9))
    for name, value, op, target in checks:
        met = value <= target if op == "<=" else value >= target
        print(f"{name} = {value:.2f} (target {op} {target}): {'met' if met else 'MISSED'}")
    for impl in ("sandbox", "raw-amqp"):
        ratio = best[impl]["throughput"] / raw["in_flight"]
        print(f"10 threads of {impl} / the raw one-thread loop = {ratio:.2f} (not a target)")


def report_medians(rounds: dict[str, list[dict[str, float]]]) -> None:
    """The best rounds make the table; the medians say how far luck carried them."""
    medians = {
        impl: statistics.median(r["p50"] for r in measured) for impl, measured in rounds.items()
    }
    for peer in ("nameko", "raw-amqp"):
        if peer in medians:
            ratio = medians["sandbox"] / medians[peer]
            print(f"median p50 sandbox/{peer} = {ratio:.2f}")
