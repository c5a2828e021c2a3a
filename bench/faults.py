"""What an idle ``sb.faults`` block costs: one whose rules match none of the called entrypoints.

RPC: 10 green callers inside the hub call a trivial ``@rpc`` method through the embedded
broker, ``BENCH_ROUNDS x BENCH_SECONDS`` per setting in half-second slices interleaving no
block / an idle block, so the machine's drift hits both alike. Budget: <= 2% of throughput.

Hooks: the two calls the core makes per delivery (``dropped`` and ``worker_faults``) on real
worker contexts, with no block and with an idle one: microseconds per worker.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import Any

from bench import Row
from bench.recorder import _throughput, echo_client

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
SLICE = 0.5
BUDGET = 0.02

SCENARIO = "rpc calls/s, 10 callers, embedded broker (faults)"
HOOKS = "fault hooks per worker"
IDLE = "sandbox, idle sb.faults block"


def idle_faults() -> Any:
    from sandbox.faults import Faults

    # Rules of every kind, none for the called service: each delivery looks them up.
    other = {"other.method": 0.5}
    return Faults(
        latency={"other.*": 1},
        drop=other,
        duplicate=other,
        error={"other.method": "ValueError"},
        kill_worker=other,
        seed=1,
    )


def run() -> list[Row]:
    from sandbox.config import config

    with config.patch({"AMQP_URI": "memory://"}), echo_client() as (client, container):
        return rpc_cost(client) + hook_cost(container)


def rpc_cost(client: Any) -> list[Row]:
    calls, spent = {"none": 0, "idle": 0}, {"none": 0.0, "idle": 0.0}
    for _ in range(int(ROUNDS * SECONDS / SLICE)):
        for setting in calls:
            with idle_faults() if setting == "idle" else nullcontext():
                done, took = _throughput(client, SLICE)
            calls[setting] += done
            spent[setting] += took
    rate = {setting: calls[setting] / spent[setting] for setting in calls}
    cost = 1 - rate["idle"] / rate["none"]
    print(f"an idle sb.faults block costs {cost:.1%} of RPC throughput;")
    print(f"budget {BUDGET:.0%}: {'met' if cost <= BUDGET else 'MISSED'}")
    return [
        Row(SCENARIO, "sandbox", rate["none"], "calls/s"),
        Row(SCENARIO, IDLE, rate["idle"], "calls/s"),
    ]


def hook_cost(container: Any, count: int = 50_000) -> list[Row]:
    """The two hooks alone, on real worker contexts of the benchmarked service."""
    from sandbox import faults
    from sandbox.containers import WorkerContext

    entrypoint = next(iter(container.entrypoints))

    def per_worker() -> float:
        contexts = [WorkerContext(container, None, entrypoint, (i,), {}) for i in range(count)]
        started = time.perf_counter()
        for worker_ctx in contexts:
            faults.dropped(entrypoint)
            faults.worker_faults(worker_ctx)
        return (time.perf_counter() - started) / count * 1e6

    none = min(per_worker() for _ in range(3))
    with idle_faults():
        idle = min(per_worker() for _ in range(3))
    print(f"fault hooks: {none:.2f} us per worker with no block, {idle:.2f} us in an idle one")
    return [Row(HOOKS, "sandbox", none, "us"), Row(HOOKS, IDLE, idle, "us")]
