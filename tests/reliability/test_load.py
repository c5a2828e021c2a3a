"""Load: every call answered exactly once, memory flat afterwards (issue 9).

The clients are green threads, so that the figures measure sandbox, not the client: RPC
callers in the runtime's hub (as services calling services are), HTTP clients in a hub of
their own OS thread (as another process would be). Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import eventlet
import eventlet.event
import pytest
from eventlet.green.http.client import HTTPConnection
from reliability_tools import green_callers, memory_footprint

from sandbox.events import SERVICE_POOL, event_handler
from sandbox.extensions import DependencyProvider
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.web.handlers import http
from sandbox.web.server import WEB_SERVER_CONFIG_KEY, parse_address

CALLERS, CALLS_EACH = 50, 200  # 10,000 RPC calls a round
HTTP_CLIENTS, REQUESTS_EACH = 50, 100  # 5,000 HTTP requests
EVENTS = 1000
MAX_WORKERS = 10

# Growth allowed between two identical rounds: well under one object, and under a
# kilobyte, per call; a leak of anything per call shows above it.
MAX_NEW_OBJECTS = 5_000
MAX_RSS_GROWTH = 8 * 1024 * 1024


def broker_name(config) -> str:
    return "embedded" if config["AMQP_URI"].startswith("memory") else "RabbitMQ"


class Load:
    name = "load"
    executed: Counter = Counter()
    busy = peak = 0

    @rpc
    def work(self, caller, n):
        Load.executed[caller, n] += 1
        Load.busy += 1
        Load.peak = max(Load.peak, Load.busy)
        eventlet.sleep(0)  # let the other workers in, so that they do run side by side
        Load.busy -= 1
        return [caller, n]


def rpc_round(client) -> float:
    """10,000 calls from 50 callers; the seconds they took. Every reply is checked."""
    Load.executed = Counter()

    def caller(i: int) -> None:
        for n in range(CALLS_EACH):
            assert client.load.work(i, n) == [i, n]

    started = time.perf_counter()
    green_callers(CALLERS, caller)
    elapsed = time.perf_counter() - started
    assert len(Load.executed) == CALLERS * CALLS_EACH
    assert set(Load.executed.values()) == {1}  # each call ran exactly once
    return elapsed


@pytest.mark.heavy
def test_10_000_rpc_calls_from_50_callers_twice_with_memory_flat(rabbit_config, container_factory):
    container_factory(Load, {**rabbit_config, "max_workers": MAX_WORKERS}).start()
    Load.peak = 0
    with ClusterRpcProxy(rabbit_config, timeout=60) as client:
        first = rpc_round(client)
        rss_before, objects_before = memory_footprint()
        second = rpc_round(client)
        rss_after, objects_after = memory_footprint()
    assert Load.peak == MAX_WORKERS
    print(
        f"\nRPC {broker_name(rabbit_config)}: 2 x {CALLERS * CALLS_EACH} calls in "
        f"{first:.1f}s + {second:.1f}s ({CALLERS * CALLS_EACH / second:.0f}/s); second round: "
        f"RSS {(rss_after - rss_before) / 1024:+.0f} KiB, {objects_after - objects_before:+d} "
        "objects"
    )
    assert rss_after - rss_before < MAX_RSS_GROWTH
    assert objects_after - objects_before < MAX_NEW_OBJECTS


class Items:
    name = "items"
    executed: Counter = Counter()

    @http("GET", "/items/<int:item>")
    def item(self, request, item):
        Items.executed[item] += 1
        return {"item": item}


def http_clients(address) -> list[tuple[int, dict]]:
    """5,000 requests from 50 keep-alive connections, green, in an OS thread of their own."""
    answers: list[tuple[int, dict]] = []

    def client(first: int) -> None:
        connection = HTTPConnection(*address, timeout=30)
        for item in range(first, first + REQUESTS_EACH):
            connection.request("GET", f"/items/{item}")
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
        connection.close()

    def run() -> None:
        pool = eventlet.GreenPool(HTTP_CLIENTS)
        for n in range(HTTP_CLIENTS):
            pool.spawn(client, n * REQUESTS_EACH)
        pool.waitall()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return answers


@pytest.mark.heavy
def test_5_000_http_requests_at_concurrency_50(container_factory, web_config):
    Items.executed = Counter()
    container_factory(Items, web_config).start()
    address = tuple(parse_address(web_config[WEB_SERVER_CONFIG_KEY]))
    started = time.perf_counter()
    answers = http_clients(address)
    elapsed = time.perf_counter() - started
    total = HTTP_CLIENTS * REQUESTS_EACH
    print(f"\nHTTP: {total} requests in {elapsed:.1f}s ({total / elapsed:.0f}/s)")
    assert sorted(answers, key=lambda a: a[1]["item"]) == [
        (200, {"item": item}) for item in range(total)
    ]
    assert Items.executed == Counter(range(total))


class Container(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx.container


class Pool:
    name = "pool"
    container = Container()
    handled: list = []
    all_handled = eventlet.event.Event()

    @event_handler("source", "happened", handler_type=SERVICE_POOL)
    def on_event(self, n):
        Pool.handled.append((id(self.container), n))
        if len(Pool.handled) == EVENTS:
            Pool.all_handled.send()


@pytest.mark.heavy
def test_1_000_events_to_a_service_pool_of_two_each_handled_once(
    rabbit_config, container_factory, raw_amqp
):
    Pool.handled, Pool.all_handled = [], eventlet.event.Event()
    containers = [container_factory(Pool, rabbit_config) for _ in range(2)]
    for container in containers:
        container.start()
    dispatch = event_dispatcher(rabbit_config)
    started = time.perf_counter()
    green_callers(20, lambda i: [dispatch("source", "happened", n) for n in range(i, EVENTS, 20)])
    get_runtime().call(Pool.all_handled.wait, timeout=30)
    elapsed = time.perf_counter() - started
    for container in containers:
        container.stop()  # lets any worker still running finish: a duplicate would show

    print(f"\nevents {broker_name(rabbit_config)}: {EVENTS} in {elapsed:.1f}s")
    assert sorted(n for _, n in Pool.handled) == list(range(EVENTS))
    assert {instance for instance, _ in Pool.handled} == {id(c) for c in containers}
    assert raw_amqp.message_count("evt-source-happened--pool.on_event") == 0
