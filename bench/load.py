"""sb.load's engine against bench/rpc's own measurement, on the same target, in one run.

The target is bench/rpc's echo service, on RabbitMQ (a service subprocess) and on the embedded
broker (service and caller in one process). One client process takes, round after round, both
measurements: bench/rpc's sequential round trips from a plain thread (closed loop, one call in
flight, back to back), the same loop paced at the load's rate (idle gaps between calls cost
wake-ups of every process involved, which a back-to-back loop never pays), that paced loop run
in a green thread of the hub, where the load engine's callers run (on the embedded broker a
plain thread's every call wakes the hub thread and waits to be woken back, which a caller in
the hub never pays), and a ``LoadRun`` at a rate low enough that calls rarely overlap (open
loop, green threads in the hub, latency from each call's due time). Each keeps its best round.

Target: the load engine's p50 and p99 within 20% of bench/rpc's paced loop in the hub, the
measurement of the same target from the same place.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

from bench import Row
from bench.rpc import MEASURE, SANDBOX_RUN, SANDBOX_SERVICE, best_of, client, service, vhost

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CALLS = int(os.environ.get("BENCH_RPC_CALLS", "2000"))
RATE = float(os.environ.get("BENCH_LOAD_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "5"))

# argv: AMQP URI ("" for the embedded broker, with the service in this process), then the
# measurement: "sequential CALLS", "paced RATE SECONDS" (the same loop, one call every 1/RATE
# s: what idle gaps between calls cost on this machine) or "load RATE SECONDS". One JSON line.
CLIENT = (
    MEASURE
    + SANDBOX_SERVICE.removesuffix(SANDBOX_RUN)  # bench/rpc's service class, without its runner
    + """
from sandbox.load import LoadRun
from sandbox.runners import ServiceRunner
from sandbox.standalone.rpc import ClusterRpcProxy

config = {"AMQP_URI": sys.argv[1] or "memory://"}
if not sys.argv[1]:
    runner = ServiceRunner(config)
    runner.add_service(Bench)
    runner.start()
def paced(call, rate, seconds, sleep=time.sleep):
    latencies, started = [], time.perf_counter()
    for index in range(int(rate * seconds)):
        sleep(max(0, started + index / rate - time.perf_counter()))
        begin = time.perf_counter()
        call("x")
        latencies.append(time.perf_counter() - begin)
    latencies.sort()
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)]}

if sys.argv[2] == "sequential":
    with ClusterRpcProxy(config) as cluster:
        print(json.dumps(sequential(cluster.bench_sandbox.echo, int(sys.argv[3]))), flush=True)
elif sys.argv[2] == "paced":
    with ClusterRpcProxy(config) as cluster:
        cluster.bench_sandbox.echo("x")
        result = paced(cluster.bench_sandbox.echo, float(sys.argv[3]), float(sys.argv[4]))
        print(json.dumps(result), flush=True)
elif sys.argv[2] == "hub-paced":
    import eventlet
    from sandbox.runtime import get_runtime

    def paced_in_hub(rate, seconds):
        with ClusterRpcProxy(config) as cluster:
            cluster.bench_sandbox.echo("x")
            return paced(cluster.bench_sandbox.echo, rate, seconds, sleep=eventlet.sleep)

    result = get_runtime().call(paced_in_hub, float(sys.argv[3]), float(sys.argv[4]))
    print(json.dumps(result), flush=True)
else:
    rate, seconds = float(sys.argv[3]), float(sys.argv[4])
    LoadRun("bench_sandbox.echo", ["x"], rate=rate, duration=1, config=config).start().wait()
    result = LoadRun(
        "bench_sandbox.echo", ["x"], rate=rate, duration=seconds, config=config
    ).start().wait()
    assert result.errors == 0, result.table()
    print(json.dumps({"p50": result.p50, "p99": result.p99, "throughput": result.throughput}))
"""
)


def measure(uri: str) -> dict[str, dict[str, float]]:
    """Each method's best round against the service at ``uri`` (embedded when empty)."""
    command = [sys.executable, "-c", CLIENT, uri]
    methods = {
        "bench/rpc": ("sequential", CALLS),
        "bench/rpc paced": ("paced", RATE, SECONDS),
        "bench/rpc paced in hub": ("hub-paced", RATE, SECONDS),
        "sb.load": ("load", RATE, SECONDS),
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for number in range(ROUNDS):
        for name, args in methods.items():
            measured = client(command, *args)
            rounds[name].append(measured)
            print(f"round {number + 1} {uri and 'rabbitmq' or 'embedded'} {name}: {measured}")
    return {name: best_of(measured) for name, measured in rounds.items()}


def run() -> list[Row]:
    print(f"bench/rpc: {CALLS} sequential calls; sb.load: {RATE:g}/s for {SECONDS:g} s")
    figures = {}
    with ExitStack() as stack:
        uri = stack.enter_context(vhost())
        stack.enter_context(service([sys.executable, "-c", SANDBOX_SERVICE, uri], "ready"))
        figures["rabbitmq"] = measure(uri)
    figures["embedded"] = measure("")
    rows = []
    for where, best in figures.items():
        for name, values in best.items():
            impl = "sandbox" if name == "sb.load" else name
            rows.append(Row(f"load vs rpc {where} p50", impl, values["p50"] * 1e6, "us"))
            rows.append(Row(f"load vs rpc {where} p99", impl, values["p99"] * 1e6, "us"))
        for key in ("p50", "p99"):
            for peer in ("bench/rpc", "bench/rpc paced", "bench/rpc paced in hub"):
                ratio = best["sb.load"][key] / best[peer][key]
                target = " (target 0.8-1.2): " + ("met" if 0.8 <= ratio <= 1.2 else "MISSED")
                same_place = peer == "bench/rpc paced in hub"
                print(f"{where} {key} sb.load/{peer} = {ratio:.2f}{target if same_place else ''}")
    return rows
