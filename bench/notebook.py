"""The notebook experience, measured in a real kernel, against the budgets below.

- cell executed -> new service answers (hot start, then the first RPC): <= 50 ms
- cell executed -> reloaded service answers with the new code: <= 100 ms plus in-flight work
- ``sb.rpc`` round trip from a cell on the embedded broker: p50 <= 1 ms
- CPU of a kernel idling with five running services: < 1%

Also measured, without a budget: ``%load_ext sandbox`` in a fresh kernel until the first
service defined after it answers (cold imports included; three cells' messaging with this
process too, a few ms), and the kernel's memory (RSS) per running service, from
twenty small RPC services started at once.

The start and reload figures are taken inside the kernel: a ``post_run_cell`` callback added
after sandbox's own calls the service and reads the clock the cell started at the end of its
code, so the kernel's messaging with this process is not counted.
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
import time

from bench import Row

IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "10"))
CALLS = 2000
MANY = 20

# Small RPC services for the memory figure, all defined by one cell.
MANY_SERVICES = "".join(
    f"class Many{n}:\n    name = 'many{n}'\n\n    @rpc\n    def ping(self):\n        return {n}\n\n"
    for n in range(MANY)
)
ANSWERED = (
    f"assert [getattr(sb.rpc, f'many{{n}}').ping() for n in range({MANY})] == list(range({MANY}))"
)

PROBE = """
import json
import time
from sandbox.rpc import rpc

_probe = {"t0": None, "elapsed": [], "answered": []}

def _answer_after_cell(result):
    if _probe["t0"] is not None:
        assert sb.rpc.probe.ping() == PROBE_VERSION
        _probe["answered"].append(time.perf_counter())
        _probe["elapsed"].append(_probe["answered"][-1] - _probe["t0"])
        _probe["t0"] = None

get_ipython().events.register("post_run_cell", _answer_after_cell)
"""

SERVICE = """
PROBE_VERSION = {version}

class Probe:
    name = "probe"

    @rpc
    def ping(self):
        return {version}

_probe["t0"] = time.perf_counter()
"""

FIVE_SERVICES = """
from sandbox.events import EventDispatcher, event_handler
from sandbox.messaging import consume
from sandbox.timer import timer
from sandbox.web.handlers import http
from kombu import Exchange, Queue

class Api:
    name = "api"
    dispatch = EventDispatcher()

    @http("GET", "/ping")
    def ping(self, request):
        return "pong"

class Worker:
    name = "worker"

    @rpc
    def work(self):
        return 1

class Listener:
    name = "listener"

    @event_handler("api", "pinged")
    def on_ping(self, payload):
        pass

class Clock:
    name = "clock"

    @timer(interval=60)
    def tick(self):
        pass

class Sink:
    name = "sink"

    @consume(Queue("bench-sink", exchange=Exchange("bench-sink"), routing_key="sink"))
    def take(self, body):
        pass
"""


def run() -> list[Row]:
    from jupyter_client.manager import start_new_kernel

    with tempfile.TemporaryDirectory() as cwd:
        manager, client = start_new_kernel(kernel_name="python3", cwd=cwd)
        try:
            return _measure(manager, client)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def _measure(manager, client) -> list[Row]:
    def run_cell(code: str) -> str:
        lines.clear()
        reply = client.execute_interactive(textwrap.dedent(code), timeout=120, output_hook=out)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply['content'].get('evalue')}")
        return "".join(lines)

    lines: list[str] = []

    def out(msg):
        if msg["msg_type"] == "stream":
            lines.append(msg["content"]["text"])

    run_cell("import time; _loading = time.perf_counter()")
    run_cell("from sandbox.config import config; config['WEB_SERVER_ADDRESS'] = '127.0.0.1:0'")
    run_cell("%load_ext sandbox")
    run_cell(PROBE)
    for version in range(1, 6):
        run_cell(SERVICE.format(version=version))
    elapsed = json.loads(run_cell("print(json.dumps(_probe['elapsed']))") or "[]")
    loaded = float(run_cell("print(_probe['answered'][0] - _loading)"))
    rows = [
        Row("%load_ext sandbox -> first service answers", "sandbox", loaded * 1000, "ms"),
        Row("cell executed -> new service answers", "sandbox", elapsed[0] * 1000, "ms"),
        Row(
            "cell executed -> reloaded service answers",
            "sandbox",
            _median(elapsed[1:]) * 1000,
            "ms",
        ),
    ]
    timings = json.loads(
        run_cell(
            f"""
            import json, time
            samples = []
            for _ in range({CALLS}):
                t = time.perf_counter()
                sb.rpc.probe.ping()
                samples.append(time.perf_counter() - t)
            samples.sort()
            print(json.dumps([samples[len(samples) // 2], samples[int(len(samples) * 0.99)]]))
            """
        )
        .strip()
        .splitlines()[-1]
    )
    rows.append(Row("sb.rpc round trip p50, embedded broker", "sandbox", timings[0] * 1000, "ms"))
    rows.append(Row("sb.rpc round trip p99, embedded broker", "sandbox", timings[1] * 1000, "ms"))
    started = run_cell(FIVE_SERVICES)
    if started.count(" running") != 5:
        raise RuntimeError(f"the five services did not all start:\n{started}")
    rows.append(Row("idle kernel CPU, 5 services running", "sandbox", _idle_cpu(manager), "%"))
    rows.append(
        Row(
            "kernel memory per running service",
            "sandbox",
            _memory_per_service(run_cell, manager),
            "KiB",
        )
    )
    for row in rows:
        print(f"  {row.scenario}: {row.value:.2f} {row.unit}")
    return rows


def _idle_cpu(manager) -> float:
    pid = manager.provisioner.process.pid
    before, started = _cpu_seconds(pid), time.monotonic()
    time.sleep(IDLE_SECONDS)
    return 100 * (_cpu_seconds(pid) - before) / (time.monotonic() - started)


def _memory_per_service(run_cell, manager) -> float:
    pid = manager.provisioner.process.pid
    run_cell("import gc; gc.collect()")
    before = _rss_kib(pid)
    run_cell(MANY_SERVICES)
    run_cell(ANSWERED)
    run_cell("gc.collect()")
    return (_rss_kib(pid) - before) / MANY


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
