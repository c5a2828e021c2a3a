"""What config VALIDATE costs: RPC throughput and the check itself, on vs off, in one run.

RPC: 10 green callers inside the hub call ``place(basket, quantity)`` (a pydantic model and an
int) through the embedded broker, on two containers of one service class, one validating and
one not; ``BENCH_ROUNDS`` x 4 slices of 500 calls per setting, interleaved.

Check: the entrypoint's own ``check_call`` (signature check and, when on, the validator) on the
same arguments, in a loop: microseconds per call.
"""

from __future__ import annotations

import os
import time
from typing import Any

import eventlet
from pydantic import BaseModel

from bench import Row
from sandbox.rpc import rpc

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SLICES = 4  # per round, interleaved: the machine's drift hits both settings alike
SLICE_CALLS = 500
CALLERS = 10
CHECKS = 20_000

BASKET = {"customer": "ada", "lines": [{"sku": "tea", "count": 2, "price": 3.5}]}
SCENARIO = f"rpc calls/s, a model argument, {CALLERS} callers, embedded broker"
CHECK_SCENARIO = "argument check per rpc call (model + int)"


def run() -> list[Row]:
    from sandbox.config import config

    with config.patch({"AMQP_URI": "memory://"}):
        return _measure()


class Line(BaseModel):
    sku: str
    count: int
    price: float


class Basket(BaseModel):
    customer: str
    lines: list[Line]


class Shop:
    name = "shop"

    @rpc
    def place(self, basket: Basket, quantity: int) -> int:
        return quantity


class ValidatingShop(Shop):
    name = "shop_validating"


def _measure() -> list[Row]:
    from sandbox.containers import ServiceContainer
    from sandbox.standalone.rpc import ClusterRpcProxy
    from sandbox.validation import VALIDATE_CONFIG_KEY

    classes = {False: Shop, True: ValidatingShop}
    containers = {
        on: ServiceContainer(cls, {"AMQP_URI": "memory://", VALIDATE_CONFIG_KEY: on})
        for on, cls in classes.items()
    }
    for container in containers.values():
        container.start()
    proxy = ClusterRpcProxy()
    client = proxy.start()
    calls, spent = dict.fromkeys(containers, 0), dict.fromkeys(containers, 0.0)
    try:
        for cls in classes.values():
            _throughput(client[cls.name], SLICE_CALLS // 2)  # warm up connections and code paths
        for _ in range(ROUNDS * SLICES):
            for on, cls in classes.items():
                done, took = _throughput(client[cls.name], SLICE_CALLS)
                calls[on] += done
                spent[on] += took
    finally:
        proxy.stop()
        for container in containers.values():
            container.stop()
    rate = {on: calls[on] / spent[on] for on in containers}
    check = {on: _check_cost(container) for on, container in containers.items()}
    print(f"VALIDATE on: {1 - rate[True] / rate[False]:.1%} fewer RPC calls/s;")
    print(f"the check itself: {check[False]:.2f} us off, {check[True]:.2f} us on, per call")
    return [
        Row(SCENARIO, "sandbox", rate[False], "calls/s"),
        Row(SCENARIO, "sandbox, VALIDATE on", rate[True], "calls/s"),
        Row(CHECK_SCENARIO, "sandbox", check[False], "us"),
        Row(CHECK_SCENARIO, "sandbox, VALIDATE on", check[True], "us"),
    ]


def _check_cost(container: Any) -> float:
    entrypoint = next(iter(container.entrypoints))
    started = time.perf_counter()
    for _ in range(CHECKS):
        entrypoint.check_call([BASKET, 3], {})
    return (time.perf_counter() - started) / CHECKS * 1e6


def _throughput(service: Any, calls: int) -> tuple[int, float]:
    """``calls`` calls by CALLERS green callers in the hub, and the time they took."""
    from sandbox.runtime import get_runtime

    def run() -> float:
        pool = eventlet.GreenPool(CALLERS)
        started = time.perf_counter()
        for _ in pool.imap(lambda index: service.place(BASKET, index), range(calls)):
            pass
        return time.perf_counter() - started

    return calls, get_runtime().call(run)
