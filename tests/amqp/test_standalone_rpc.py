import threading
from concurrent.futures import ThreadPoolExecutor

import kombu
import pytest

import sandbox.amqp.consume
import sandbox.amqp.pool
from sandbox.exceptions import RpcTimeout
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import (
    ClusterRpcClient,
    ClusterRpcProxy,
    ServiceRpcClient,
    ServiceRpcProxy,
)


class Math:
    name = "math"

    @rpc
    def add(self, a, b):
        return a + b

    @rpc
    def thread_name(self):
        return threading.current_thread().name


@pytest.fixture
def math_service(rabbit_config, container_factory):
    container_factory(Math, rabbit_config).start()


def test_a_plain_thread_calls_through_the_hub(rabbit_config, math_service):
    results = []

    def call():
        with ClusterRpcProxy() as cluster:
            results.append((cluster.math.add(1, 2), cluster.math.thread_name()))

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(30)
    assert results == [(3, get_runtime().thread.name)]


def test_many_threads_share_one_proxy(rabbit_config, math_service):
    with ServiceRpcProxy("math") as math, ThreadPoolExecutor(max_workers=16) as threads:
        sums = list(threads.map(lambda n: math.add(n, n), range(200)))
        replies = [math.add.call_async(n, 1) for n in range(10)]
        asynchronous = list(threads.map(lambda reply: reply.result(), replies))
    assert sums == [2 * n for n in range(200)]
    assert asynchronous == [n + 1 for n in range(10)]


def test_call_async_from_a_plain_thread_does_not_wait_for_the_hub(rabbit_config, math_service):
    hub_busy, hub_free = threading.Event(), threading.Event()

    def hold_the_hub():
        hub_busy.set()
        hub_free.wait(30)  # the hub's own loop, blocked for real: no green thread runs

    with ServiceRpcProxy("math") as math:
        assert math.add(1, 1) == 2  # the service's queue is known to exist from now on
        get_runtime().post(hold_the_hub)
        assert hub_busy.wait(30)
        sent = []
        thread = threading.Thread(target=lambda: sent.append(math.add.call_async(2, 3)))
        thread.start()
        thread.join(30)
        hub_free.set()
        assert sent, "call_async waited for the busy hub"
        assert sent[0].result(timeout=30) == 5


def test_one_reply_queue_and_no_connection_per_call(rabbit_config, math_service, monkeypatch):
    opened = []
    real_connect = sandbox.amqp.pool.connect

    def connect(*args, **kwargs):
        opened.append(args[0])
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sandbox.amqp.pool, "connect", connect)
    monkeypatch.setattr(sandbox.amqp.consume, "connect", connect)
    proxy = ServiceRpcProxy("math")
    with proxy as math:
        reply_to = proxy._caller.reply_to
        consumer_connections = len(opened)
        assert [math.add(n, 1) for n in range(50)] == list(range(1, 51))
        assert proxy._caller.reply_to == reply_to
    assert consumer_connections == 1
    # Requests go out on pooled connections: a few at most, never one per call.
    assert len(opened) - consumer_connections <= 5


def test_timeout(rabbit_config, math_service, amqp_broker):
    # A service that is known (its queue exists) but does not answer.
    exchange = kombu.Exchange("nameko-rpc", type="topic", durable=True)
    amqp_broker.run(lambda channel: kombu.Queue("rpc-idle", exchange, "idle.*")(channel).declare())
    with ClusterRpcProxy(timeout=0.2) as cluster:
        with pytest.raises(RpcTimeout, match=r"idle.method timed out after 0.2s"):
            cluster.idle.method()
        with pytest.raises(RpcTimeout):
            cluster.idle.method.call_async().result(timeout=0.1)


def test_unusable_after_stop(rabbit_config, math_service):
    proxy = ClusterRpcProxy()
    cluster = proxy.start()
    assert cluster.math.add(2, 2) == 4
    proxy.stop()
    with pytest.raises(RuntimeError, match="ClusterRpcProxy is not running"):
        cluster.math.add(2, 2)


def test_usable_from_the_hub_itself(rabbit_config, math_service):
    with ServiceRpcProxy("math") as math:
        assert get_runtime().call(lambda: math.add(20, 22)) == 42


def test_nameko_3_names(rabbit_config, math_service):
    assert ClusterRpcClient is ClusterRpcProxy and ServiceRpcClient is ServiceRpcProxy
    with ServiceRpcClient("math", rabbit_config, timeout=5) as math:
        assert math.add(1, 1) == 2
