"""Blocking and busy service code in a real kernel: the other services keep answering, and the
watchdog speaks under the running cell. Each test has its own service names (one kernel)."""

import json
import re
import textwrap

SERVICES = """
import sqlite3, threading, time
import requests
from sandbox.rpc import rpc
from sandbox.web.handlers import http

inside = threading.Event()

class Napper:
    name = "napper"

    @rpc
    def nap(self, seconds):
        inside.set()
        time.sleep(seconds)
        return "rested"

    @rpc
    def write(self, path):
        connection = sqlite3.connect(path, timeout=30)
        inside.set()
        with connection:
            connection.execute("insert into t values (1)")
        return "written"

    @http("GET", "/relay")
    def relay(self, request):
        return requests.get(f"{request.host_url}pong", timeout=10).text

class Pinger:
    name = "pinger"

    @rpc
    def ping(self):
        return "pong"

    @http("GET", "/pong")
    def pong(self, request):
        return "pong"

def best_latency_while(call):
    \"\"\"Start ``call`` in a thread; once its worker blocks, time 5 pings: the best one.\"\"\"
    inside.clear()
    results = []
    caller = threading.Thread(target=lambda: results.append(call()))
    caller.start()
    assert inside.wait(30)
    latencies = []
    for _ in range(5):
        started = time.perf_counter()
        assert sb.rpc.pinger.ping() == "pong"
        latencies.append(time.perf_counter() - started)
    pending = caller.is_alive()
    return min(latencies), pending, caller, results
"""


def run_json(kernel, source):
    result = kernel.run(textwrap.dedent(source))
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_sleeping_worker_leaves_the_others_answering(module_sandbox_kernel):
    module_sandbox_kernel.run(SERVICES)
    measured = run_json(
        module_sandbox_kernel,
        """
        latency, pending, caller, results = best_latency_while(lambda: sb.rpc.napper.nap(2))
        caller.join(30)
        print(json.dumps([latency, pending, results]))
        """.replace("print(", "import json; print(", 1),
    )
    latency, pending, results = measured
    assert pending, "the nap ended before the other service was called"
    assert latency < 0.1
    assert results == ["rested"]


def test_a_locked_sqlite3_database_leaves_the_others_answering(module_sandbox_kernel, tmp_path):
    module_sandbox_kernel.run(SERVICES)
    path = tmp_path / "locked.db"
    measured = run_json(
        module_sandbox_kernel,
        f"""
        import json
        holder = sqlite3.connect({str(path)!r}, isolation_level=None)
        holder.execute("create table t (x)")
        holder.execute("begin exclusive")
        latency, pending, caller, results = best_latency_while(
            lambda: sb.rpc.napper.write({str(path)!r})
        )
        holder.execute("commit")
        caller.join(30)
        print(json.dumps([latency, pending, results]))
        """,
    )
    latency, pending, results = measured
    assert pending, "the write ended before the database was unlocked"
    assert latency < 0.1
    assert results == ["written"]


def test_a_worker_calls_a_route_of_its_own_kernel_with_requests(module_sandbox_kernel):
    module_sandbox_kernel.run(SERVICES)
    measured = run_json(
        module_sandbox_kernel,
        """
        import json
        started = time.perf_counter()
        text = sb.http.get("/relay").text
        print(json.dumps([text, time.perf_counter() - started]))
        """,
    )
    text, took = measured
    assert text == "pong"
    assert took < 1


SPINNER = """import time
from sandbox.rpc import rpc

class Spinner:
    name = "spinner"

    @rpc
    def spin(self, seconds):
        print("spinning", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return "spun"
"""


def test_a_busy_loop_is_named_under_the_running_cell_within_a_second(module_sandbox_kernel):
    defined = module_sandbox_kernel.run(SPINNER)
    assert "● spinner running" in defined.stdout
    # How IPython names the cell that defined Spinner, as in its own tracebacks.
    named = module_sandbox_kernel.run(
        "print(*get_ipython().compile.format_code_name(Spinner.spin.__code__.co_filename))"
    )
    spin_cell = named.stdout.strip()
    loop_line = SPINNER.splitlines().index("        while time.monotonic() < end:") + 1
    arrivals = module_sandbox_kernel.run(
        # The cell waits for the watchdog to see the hub turn again, so that the line it
        # prints then lands in this cell too.
        "sb.rpc.spinner.spin(3)\n"
        "from sandbox.runtime import get_runtime\n"
        "deadline = time.monotonic() + 30\n"
        "while get_runtime().held_by and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n",
    ).streams
    texts = [text for _, _, text in arrivals]
    spinning = next(at for at, _, text in arrivals if "spinning" in text)
    warned = [(at, text) for at, name, text in arrivals if "held the services' thread" in text]
    assert len(warned) == 1, texts
    at, warning = warned[0]
    assert at - spinning < 1, f"the warning came {at - spinning:.2f} s after the loop began"
    assert warning.startswith("sandbox: spinner.spin has held the services' thread for 0.5 s")
    # The loop's line in the cell that defined it, named as IPython names cells.
    where = re.search(r"at (Cell In\[\d+\]), line (\d+) \(in spin\)", warning)
    assert where, warning
    assert where[1] == spin_cell
    assert int(where[2]) in (loop_line, loop_line + 1)
    assert "sandbox.offload" in warning
    assert any("spinner.spin let go after" in text for text in texts), texts
    assert module_sandbox_kernel.run("sb.rpc.pinger.ping()").text.strip() == "'pong'"
