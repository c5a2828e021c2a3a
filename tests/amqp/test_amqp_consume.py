import contextlib
import logging
import pickle
import threading

import eventlet
import eventlet.event
import kombu
import pytest

from sandbox import broker
from sandbox.amqp.connection import amqp_uri
from sandbox.amqp.consume import AmqpConsumer
from sandbox.exceptions import ReplyQueueExpiredWithPendingReplies
from sandbox.rpc import ReplyConnectionLost, rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ClusterRpcProxy, ServiceRpcProxy
from sandbox.utils import unique_id

VALID = b'{"args": ["ok"], "kwargs": {}}'


class Echo:
    name = "echo"

    @rpc
    def echo(self, value):
        return value


class Ping:
    name = "ping"

    @rpc
    def ping(self):
        return "pong"


def test_malformed_requests_are_rejected_and_logged(
    rabbit_config, container_factory, amqp_broker, caplog
):
    caplog.set_level(logging.WARNING, logger="sandbox")
    container_factory(Echo, rabbit_config).start()

    not_json = amqp_broker.request(b"{not json", routing_key="echo.echo", correlation_id="1")
    assert not_json["error"]["exc_type"] == "MalformedRequest"
    wrong_shape = amqp_broker.request(b'{"arguments": []}', routing_key="echo.echo")
    assert wrong_shape["error"]["exc_type"] == "MalformedRequest"
    assert "missing `args` or `kwargs`" in wrong_shape["error"]["value"]
    # JSON only by default: pickle is refused, never unpickled.
    pickled = pickle.dumps({"args": ["ok"], "kwargs": {}})
    refused = amqp_broker.request(
        pickled, routing_key="echo.echo", content_type="application/x-python-serialize"
    )
    assert "application/x-python-serialize" in refused["error"]["value"]
    amqp_broker.publish(VALID, routing_key="echo.echo")  # no reply_to

    # The service still serves, and none of those went back to its queue.
    assert amqp_broker.request(VALID, routing_key="echo.echo") == {"result": "ok", "error": None}
    assert amqp_broker.message_count("rpc-echo") == 0
    rejected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert len(rejected) == 4
    assert any("no reply_to" in line for line in rejected)
    assert any("cannot decode" in line for line in rejected)


def test_consumers_reconnect_after_losing_the_broker(
    rabbit_config, container_factory, amqp_broker, caplog
):
    caplog.set_level(logging.WARNING, logger="sandbox")
    for service in (Echo, Ping):
        container_factory(service, rabbit_config).start()
    with ClusterRpcProxy(rabbit_config, timeout=30) as cluster:
        assert cluster.echo.echo(1) == 1
        amqp_broker.drop_connections()
        # Publishers, services and the proxy's reply consumer all come back by themselves.
        try:
            assert cluster.echo.echo(2) == 2
        except ReplyConnectionLost:
            # RabbitMQ had closed the connection, but the proxy had not seen it yet when it
            # sent the request: whether that ran is unknown, and echo may run twice.
            assert cluster.echo.echo(2) == 2
        assert cluster.ping.ping() == "pong"  # not known yet: its queue is looked up afresh
    assert "Error connecting to broker at" in caplog.text
    assert ":guest@" not in caplog.text  # passwords are masked in the warning


def test_a_request_racing_a_lost_connection_goes_out_on_the_next(container_factory):
    # The embedded broker closes its connections at once: the request below always finds
    # the proxy's connection dead before the proxy's loop has noticed.
    uri = f"memory:///{unique_id()}"
    config = {"AMQP_URI": uri}
    container_factory(Echo, config).start()
    runtime = get_runtime()
    with ClusterRpcProxy(config, timeout=30) as cluster:
        assert cluster.echo.echo(1) == 1

        def drop_and_call():
            broker.get_broker(uri.rpartition("/")[2]).close()
            return cluster.echo.echo.call_async(2)

        reply = runtime.call(drop_and_call)
        assert reply.result() == 2


gate = eventlet.event.Event()


@pytest.fixture
def closed_gate():
    global gate
    gate = eventlet.event.Event()
    yield
    if not gate.ready():
        get_runtime().call(gate.send, None)


class Gated:
    name = "gated"
    started = threading.Event()

    @rpc
    def wait(self, value):
        Gated.started.set()
        gate.wait()
        return value


def test_requests_of_a_killed_container_are_served_by_the_next(
    rabbit_config, container_factory, closed_gate
):
    Gated.started.clear()
    first = container_factory(Gated, {**rabbit_config, "max_workers": 1})
    first.start()
    with ServiceRpcProxy("gated", rabbit_config, timeout=30) as gated:
        replies = [gated.wait.call_async(n) for n in range(3)]
        assert Gated.started.wait(10)
        first.kill()  # one request in a worker, two waiting for it: none acked
        get_runtime().call(gate.send, None)
        container_factory(Gated, rabbit_config).start()
        assert [reply.result() for reply in replies] == [0, 1, 2]


def test_callers_learn_when_their_reply_queue_is_gone(
    rabbit_config, container_factory, amqp_broker, closed_gate
):
    container_factory(Gated, rabbit_config).start()
    proxy = ServiceRpcProxy("gated", rabbit_config, timeout=30)
    with proxy as gated:
        reply = gated.wait.call_async(1)
        reply_queue = f"rpc.reply-standalone_rpc_proxy-{proxy._caller.reply_to}"
        amqp_broker.run(lambda channel: channel.queue_delete(reply_queue))
        with pytest.raises(ReplyQueueExpiredWithPendingReplies):
            reply.result()
        assert gated.wait.call_async(2) is not None  # the proxy itself carries on


def test_start_fails_when_no_broker_answers(container_factory, caplog):
    caplog.set_level(logging.WARNING, logger="sandbox")
    config = {
        "AMQP_URI": "amqp://guest:secret@127.0.0.1:1/",
        "TRANSPORT_OPTIONS": {"max_retries": 1, "interval_start": 0},
    }
    container = container_factory(Echo, config)
    with pytest.raises(ConnectionRefusedError):
        container.start()
    assert "Error connecting to broker at amqp://guest:********@127.0.0.1:1/" in caplog.text
    assert "secret" not in caplog.text


class Counting:
    name = "counting"
    runs = []

    @rpc
    def count(self, value):
        Counting.runs.append(value)
        return len(Counting.runs)


def test_a_copy_of_a_request_is_answered_without_running_again(
    rabbit_config, container_factory, amqp_broker
):
    # A client that republishes after a lost connection, or a broker that redelivers what
    # a lost connection left unacked, sends copies: same reply_to, same correlation id.
    Counting.runs = []
    container_factory(Counting, rabbit_config).start()
    request = b'{"args": ["a"], "kwargs": {}}'
    first = amqp_broker.request(request, routing_key="counting.count", correlation_id="c-1")
    copy = amqp_broker.request(request, routing_key="counting.count", correlation_id="c-1")
    other = amqp_broker.request(request, routing_key="counting.count", correlation_id="c-2")
    assert first == copy == {"result": 1, "error": None}
    assert other == {"result": 2, "error": None}
    assert Counting.runs == ["a", "a"]


def test_a_channel_closed_by_the_broker_is_consumed_again(rabbit_config, amqp_broker, caplog):
    # Rejecting a delivery of a no-ack consumer is a channel error: the broker closes the
    # channel, py-amqp reopens it from inside the consumer's loop (reading the socket the
    # loop reads), and the consumer starts afresh.
    caplog.set_level(logging.WARNING, logger="sandbox")
    received, second = [], threading.Event()

    def callback(message):
        received.append(message.body)
        if message.body == b"first":
            raise ValueError("fails, so the consumer rejects it")
        second.set()

    consumer = AmqpConsumer(amqp_uri(rabbit_config), retry_policy={"interval_start": 0})
    consumer.add_queue(kombu.Queue("channel-errors"), callback, no_ack=True)
    runtime = get_runtime()
    thread = runtime.spawn(consumer.run)
    try:
        runtime.call(consumer.wait_until_ready)
        amqp_broker.publish(b"first", exchange="", routing_key="channel-errors")
        amqp_broker.publish(b"second", exchange="", routing_key="channel-errors")
        assert second.wait(10)
    finally:
        runtime.call(thread.kill)
        runtime.call(consumer.close)
    assert received == [b"first", b"second"]
    assert "its callback failed" in caplog.text


def test_a_reply_waiting_for_the_end_of_the_turn_goes_out_before_the_connection_closes(
    rabbit_config, amqp_broker
):
    if rabbit_config["AMQP_URI"].startswith("memory"):
        pytest.skip("the embedded broker writes no frames")
    amqp_broker.run(lambda channel: kombu.Queue("closing-replies")(channel).declare())
    consumer = AmqpConsumer(amqp_uri(rabbit_config))
    consumer.add_queue(kombu.Queue("closing-requests"), lambda message: None, no_ack=True)
    runtime = get_runtime()
    thread = runtime.spawn(consumer.run)
    runtime.call(consumer.wait_until_ready)
    runtime.call(thread.kill)  # the loop is gone already: closing goes through no hub turn

    def reply_and_close():
        with consumer.batch():  # handling no lone delivery: written at the turn's end
            consumer.publish(b"late", exchange="", routing_key="closing-replies", properties={})
        consumer.close()  # its Connection.Close goes through the writer, after what waits

    runtime.call(reply_and_close)
    assert amqp_broker.message_count("closing-replies") == 1


class Sleepy:
    name = "sleepy"

    @rpc
    def nap(self, seconds):
        eventlet.sleep(seconds)
        return seconds


def test_heartbeats_go_out_while_every_worker_is_busy(rabbit_config, container_factory, caplog):
    if rabbit_config["AMQP_URI"].startswith("memory"):
        pytest.skip("the embedded broker has no heartbeats to miss")
    caplog.set_level(logging.WARNING, logger="sandbox")
    config = {**rabbit_config, "HEARTBEAT": 1, "max_workers": 1}
    container_factory(Sleepy, config).start()
    with ServiceRpcProxy("sleepy", config, timeout=30) as sleepy:
        # RabbitMQ drops a connection that misses two heartbeats: the only worker naps
        # through three of them, and the service's connection must live on.
        assert sleepy.nap(3) == 3
        assert sleepy.nap(0) == 0
    assert "Error connecting to broker" not in caplog.text


class LosingWriter:
    """A frame writer whose batch's write finds the connection gone."""

    @contextlib.contextmanager
    def batch(self, soon=False):
        try:
            yield
        finally:
            raise ConnectionResetError("gone")


def test_a_batch_lost_with_the_connection_is_only_logged_once_its_block_ran(caplog):
    caplog.set_level(logging.DEBUG, logger="sandbox")
    consumer = AmqpConsumer("amqp://localhost")
    with consumer.batch():  # not connected: the writes go out as they are made
        pass
    consumer._writer = LosingWriter()
    ran = []
    with consumer.batch():
        ran.append(True)
    assert ran == [True]
    assert "lost with the connection" in caplog.text
    # A block that failed says why, whatever became of its writes.
    with pytest.raises(ConnectionResetError), consumer.batch():
        raise ValueError("the block's own")
