"""RPC throughput of ``sandbox run --workers N`` for N = 1, 2 and 4, on one RabbitMQ.

One service module, two methods: ``echo`` (almost no work: the broker and the framework's
own cost) and ``crunch`` (about 1 ms of Python per call: work that needs a core). Each N
runs as a real ``sandbox run`` (a supervisor and N spawned workers) in one vhost; one client
process, its callers sharing one ``ClusterRpcProxy``, keeps them busy for ``BENCH_SECONDS``.
Rounds go round-robin over N and each keeps its best. Printed with the table: what limits it
on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import Row
from bench.rpc import MEASURE, ROOT, SECONDS, best_of, client, vhost

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WORKERS = (1, 2, 4)
CALLERS = 20

SERVICE = """
import hashlib

from sandbox.rpc import rpc


class Bench:
    name = "bench_workers"

    @rpc
    def echo(self, value):
        return value

    @rpc
    def crunch(self, value):
        digest = value.encode()
        for _ in range(1500):
            digest = hashlib.sha256(digest).digest()
        return value
"""

# MEASURE's arguments, then the method to call.
CLIENT = (
    MEASURE
    + """
import contextlib
from sandbox.standalone.rpc import ClusterRpcProxy

with ClusterRpcProxy({"AMQP_URI": sys.argv[1]}) as cluster:
    method = getattr(cluster.bench_workers, sys.argv[5])
    measure(lambda: contextlib.nullcontext(method))
"""
)


@contextmanager
def workers(count: int, uri: str, workdir: Path) -> Iterator[None]:
    """``sandbox run`` with ``count`` workers, once every one of them has started."""
    command = [sys.executable, "-m", "sandbox.cli.main", "run", "bench_workers"]
    command += ["--workers", str(count), "-d", f"WEB_SERVER_ADDRESS=127.0.0.1:{18700 + count}"]
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env={**os.environ, "SANDBOX_AMQP_URI": uri, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, wanted, output = 0, "started service" if count == 1 else ") ready", []
        for line in proc.stderr:
            output.append(line)
            ready += wanted in line
            if ready == count:
                break
        else:
            raise RuntimeError(f"{command} ended before it was ready:\n{''.join(output)}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run() -> list[Row]:
    print(f"{SECONDS:g} s of {CALLERS} callers per method, best of {ROUNDS}; {os.cpu_count()} CPUs")
    best: dict[tuple[int, str], dict[str, float]] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        uri = stack.enter_context(vhost())
        (Path(tmp) / "bench_workers.py").write_text(SERVICE)
        rounds: dict[tuple[int, str], list[dict[str, float]]] = {}
        for number in range(ROUNDS):
            for count in WORKERS:
                with workers(count, uri, Path(tmp)):
                    for method in ("echo", "crunch"):
                        args = ("concurrent", SECONDS, CALLERS, method)
                        measured = client([sys.executable, "-c", CLIENT, uri], *args)
                        rounds.setdefault((count, method), []).append(measured)
                        print(f"round {number + 1} workers={count} {method}: {measured}")
        best = {key: best_of(measured) for key, measured in rounds.items()}
    print(LIMITS)
    return [
        Row(
            f"rpc {method} {CALLERS} callers, {count} worker(s)",
            "sandbox",
            figures["throughput"],
            "calls/s",
        )
        for (count, method), figures in sorted(best.items(), key=lambda item: item[0][::-1])
    ]


LIMITS = """\
What limits it on 2 cores: RabbitMQ (an Erlang VM), the client process and the workers share
the two cores. echo does almost nothing per call: one worker waits on the broker and on its
own hub thread's turn (one GIL per process), a second takes the other core's idle time, and
more only compete for the same two cores. crunch spends about 1 ms of Python per call, so one
worker is CPU-bound on one core and a second uses the other. On a machine shared with other
work, more processes also win a larger share of the cores from it, which is all that a
third and fourth worker add; on a quiet 2-core machine they add nothing."""
