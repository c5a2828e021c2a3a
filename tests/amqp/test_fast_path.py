"""A connection offers its fast path when it has one; a consumer on one that has none reads,
acks and publishes through kombu and py-amqp as they are."""

import eventlet
import kombu
import kombu.transport.pyamqp
import pytest
from test_amqp_consume import Echo

from sandbox.amqp import consume
from sandbox.amqp.connection import connect
from sandbox.amqp.fast_path import fast_path
from sandbox.amqp.limits import unopened_message
from sandbox.exceptions import UnknownService
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ClusterRpcProxy

_green_amqp_transport = eventlet.import_patched("amqp.transport")


class PyAmqpChannel(kombu.transport.pyamqp.Channel):
    """kombu's py-amqp channel, with what a consumer asks of any channel: a delivery as it
    came, for the consumer to open within its limits."""

    def message_to_python(self, raw_message, decompress=True):
        assert not decompress
        raw = raw_message
        return unopened_message(raw.body, raw.properties, raw.delivery_info, self)


class PyAmqpOnGreenSockets(kombu.transport.pyamqp.Connection):
    """py-amqp's own connection and frame handling, on green sockets."""

    Channel = PyAmqpChannel

    def Transport(  # noqa: N802 (py-amqp's name)
        self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None, **kwargs
    ):
        return _green_amqp_transport.TCPTransport(
            host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            **kwargs,
        )


class WithoutFastPath(kombu.transport.pyamqp.Transport):
    Connection = PyAmqpOnGreenSockets


def connect_without_fast_path(uri, *, heartbeat=None, **options):
    connection = kombu.Connection(uri, transport=WithoutFastPath, heartbeat=heartbeat or 0)
    return connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)


def test_a_green_connection_offers_its_frame_reader_and_writer(rabbit_only):
    def offered():
        with connect(rabbit_only["AMQP_URI"]) as kombu_connection:
            connection = kombu_connection.connection
            fast = fast_path(connection)
            return fast.frames is connection.transport, fast.writer is connection.frame_writer

    assert get_runtime().call(offered) == (True, True)


def test_the_embedded_broker_and_py_amqp_offer_none(rabbit_only):
    def offered(connect, uri):
        with connect(uri) as kombu_connection:
            return fast_path(kombu_connection.connection)

    runtime = get_runtime()
    assert runtime.call(offered, connect, "memory://") is None
    assert runtime.call(offered, connect_without_fast_path, rabbit_only["AMQP_URI"]) is None


def test_services_and_callers_without_a_fast_path_still_serve_and_call(
    rabbit_only, container_factory, amqp_broker, monkeypatch
):
    monkeypatch.setattr(consume, "connect", connect_without_fast_path)
    echo = container_factory(Echo, rabbit_only)
    echo.start()
    proxy = ClusterRpcProxy(rabbit_only, timeout=30)
    with proxy as cluster:
        assert [cluster.echo.echo(n) for n in range(50)] == list(range(50))
        # Nobody reads the connection but its loop: there is no frame reader to hand over.
        assert not proxy._caller.replies.reader.parked
        # A request nobody takes comes back to the caller's loop through py-amqp's channel.
        echo.stop()
        amqp_broker.run(lambda channel: channel.queue_delete("rpc-echo"))
        with pytest.raises(UnknownService):
            cluster.echo.echo("returned")
