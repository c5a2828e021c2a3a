"""A caller's plain thread reads its replies while the proxy's loop is parked (RabbitMQ)."""

import logging
import threading
import time

import pytest
from polling import wait_until
from test_amqp_consume import Echo, Sleepy

from sandbox.exceptions import RpcTimeout, UnknownService
from sandbox.pending import Pending
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ClusterRpcProxy


def echoing_threads(cluster, count, calls):
    """``count`` plain threads started, each echoing ``calls`` values through ``cluster``;
    the threads, and the dict each fills with its replies under its number."""
    results = {}

    def caller(name):
        results[name] = [cluster.echo.echo(f"{name}.{n}") for n in range(calls)]

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def test_a_lone_caller_reads_its_replies_and_the_loop_listens_again_after(
    rabbit_only, container_factory
):
    container_factory(Echo, rabbit_only).start()
    proxy = ClusterRpcProxy(rabbit_only, timeout=30)
    with proxy as cluster:
        reader = proxy._caller.replies.reader
        assert cluster.echo.echo(0) == 0  # read by the loop, which parks once it is in
        assert [cluster.echo.echo(n) for n in range(1, 200)] == list(range(1, 200))
        assert reader.parked
        # Nobody calls: the connection is watched by the loop again.
        wait_until(lambda: not reader.parked)
        assert cluster.echo.echo("after") == "after"


def test_callers_in_several_threads_and_green_ones_all_get_their_replies(
    rabbit_only, container_factory
):
    container_factory(Echo, rabbit_only).start()
    with ClusterRpcProxy(rabbit_only, timeout=30) as cluster:
        for n in range(5):
            assert cluster.echo.echo(n) == n  # parked from here on
        threads, results = echoing_threads(cluster, 4, 100)
        # A green thread's reply comes on the same connection, read by whoever reads.
        green = get_runtime().call(lambda: [cluster.echo.echo(f"g.{n}") for n in range(100)])
        for thread in threads:
            thread.join(30)
        assert results == {i: [f"{i}.{n}" for n in range(100)] for i in range(4)}
        assert green == [f"g.{n}" for n in range(100)]
        assert cluster.echo.echo("alone again") == "alone again"


def test_callers_in_several_threads_read_for_each_other(
    rabbit_only, container_factory, monkeypatch
):
    container_factory(Echo, rabbit_only).start()
    settled_in_hub = []
    settle = Pending.settle

    def recording(pending, *args, **kwargs):
        settled_in_hub.append(get_runtime().in_hub())
        settle(pending, *args, **kwargs)

    monkeypatch.setattr(Pending, "settle", recording)
    with ClusterRpcProxy(rabbit_only, timeout=30) as cluster:
        threads, results = echoing_threads(cluster, 4, 200)
        for thread in threads:
            thread.join(60)
    assert results == {i: [f"{i}.{n}" for n in range(200)] for i in range(4)}
    # Were the loop to read while more than one thread waits, it would settle nearly all.
    assert len(settled_in_hub) == 800
    assert sum(settled_in_hub) < 400, f"{sum(settled_in_hub)} of 800 replies read by the hub"


def test_a_caller_times_out_while_others_read(rabbit_only, container_factory):
    container_factory(Echo, rabbit_only).start()
    container_factory(Sleepy, rabbit_only).start()
    with ClusterRpcProxy(rabbit_only, timeout=30) as cluster:
        results = {}
        running = threading.Event()
        running.set()

        def caller(name):
            count = 0
            while running.is_set():
                assert cluster.echo.echo(name) == name
                count += 1
            results[name] = count

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        nap = cluster.sleepy.nap.call_async(3)
        with pytest.raises(RpcTimeout):
            nap.result(timeout=0.5)
        running.clear()
        for thread in threads:
            thread.join(30)
        assert len(results) == 3 and all(results.values())
        assert cluster.echo.echo("after") == "after"


def test_what_is_not_a_reply_goes_to_the_loop(rabbit_only, container_factory, amqp_broker):
    echo = container_factory(Echo, rabbit_only)
    echo.start()
    container_factory(Sleepy, rabbit_only).start()
    proxy = ClusterRpcProxy(rabbit_only, timeout=30)
    with proxy as cluster:
        assert cluster.echo.echo(0) == 0  # its queue is known from now on
        # Stopped first, the service cannot declare its queue again.
        echo.stop()
        amqp_broker.run(lambda channel: channel.queue_delete("rpc-echo"))
        for _ in range(5):
            assert cluster.sleepy.nap(0) == 0
        assert proxy._caller.replies.reader.parked
        # The broker returns the request (Basic.Return): the caller's thread hands the
        # frames to the loop, which fails the call.
        started = time.monotonic()
        with pytest.raises(UnknownService):
            cluster.echo.echo("returned")
        assert time.monotonic() - started < 5  # not the 30 s timeout


def test_an_error_from_the_hub_reaches_a_caller_that_reads(rabbit_only, container_factory):
    container_factory(Echo, rabbit_only).start()
    with ClusterRpcProxy(rabbit_only, timeout=30) as cluster:
        for n in range(5):
            assert cluster.echo.echo(n) == n  # parked from here on
        # The hub finds no queue and settles the call; nothing comes on the socket.
        started = time.monotonic()
        with pytest.raises(UnknownService):
            cluster.nobody.hello()
        assert time.monotonic() - started < 5  # not the 30 s timeout
        assert cluster.echo.echo("still") == "still"


def test_heartbeats_go_out_while_a_caller_reads_through_a_long_call(
    rabbit_only, container_factory, caplog
):
    caplog.set_level(logging.WARNING, logger="sandbox")
    config = {**rabbit_only, "HEARTBEAT": 1}
    container_factory(Sleepy, config).start()
    proxy = ClusterRpcProxy(config, timeout=30)
    with proxy as cluster:
        for _ in range(5):
            assert cluster.sleepy.nap(0) == 0
        assert proxy._caller.replies.reader.parked
        # RabbitMQ drops a connection that misses two heartbeats: the caller's thread reads
        # through three of them, and the parked loop still sends ours.
        assert cluster.sleepy.nap(3) == 3
        assert cluster.sleepy.nap(0) == 0
    assert "Error connecting to broker" not in caplog.text
