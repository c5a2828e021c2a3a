"""The consumer loop's frame reader: whole frames and deliveries, however the bytes arrive."""

from __future__ import annotations

import socket
import threading

import amqp
import eventlet
import eventlet.greenio
from amqp import spec
from amqp.serialization import dumps
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wire import py_amqp_frames

from sandbox.amqp import wire
from sandbox.amqp.frame_reader import FrameReader, GreenTCPTransport
from sandbox.runtime import get_runtime


def broker_frames(channel: int, body: bytes) -> bytes:
    """A Basic.Deliver and its content as RabbitMQ sends it, framed by py-amqp."""
    written, write = py_amqp_frames(frame_max=4096)
    args = dumps("sLbss", ("ctag-1", 42, True, "nameko-rpc", "svc.method"))
    message = amqp.Message(
        body, content_type="application/json", application_headers={"k": [1, "v"]}
    )
    write(1, channel, spec.Basic.Deliver, args, message)
    return b"".join(written)


class Reader(FrameReader):
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._read_buffer = b""


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=10_000),
    cuts=st.lists(st.integers(min_value=1, max_value=20_000), max_size=6),
)
def test_deliveries_are_assembled_however_the_bytes_arrive(body, cuts):
    heartbeat = wire.frame(8, 0, b"")
    other = wire.frame(wire.METHOD_FRAME, 1, b"\x00\x14\x00\x29")  # any other method frame
    stream = broker_frames(1, body) + heartbeat + other + broker_frames(1, b"second")
    delivered, frames = [], []
    ours, theirs = socket.socketpair()
    with ours, theirs:
        reader = Reader(ours)
        points = sorted({cut for cut in cuts if cut < len(stream)}) + [len(stream)]
        start = 0
        for point in points:
            theirs.sendall(stream[start:point])
            start = point
            while True:
                try:
                    reader.drain(
                        frames.append, 0.001, lambda delivery, alone: delivered.append(delivery)
                    )
                except TimeoutError:
                    break
    assert [delivery.body for delivery in delivered] == [body, b"second"]
    first = delivered[0]
    assert (first.consumer_tag, first.delivery_tag, first.redelivered) == ("ctag-1", 42, True)
    assert (first.exchange, first.routing_key) == ("nameko-rpc", "svc.method")
    assert first.properties["application_headers"] == {"k": [1, "v"]}
    assert frames == [(8, 0, b""), (1, 1, b"\x00\x14\x00\x29")]


def test_a_delivery_is_alone_when_it_came_by_itself_after_a_wait():
    # Alone, its handler may run before the loop reads on: that must overtake no delivery
    # that came with it, or before it in the same read.
    ours, theirs = socket.socketpair()
    runtime = get_runtime()

    def drained(data: bytes) -> list[bool]:
        """Once the reader waits, send ``data``: what each delivery it read was told."""
        alone = []
        waiting.clear()
        draining = runtime.call(
            eventlet.spawn, reader.drain, None, 5, lambda delivery, flag: alone.append(flag)
        )
        # Sent before the reader waits, the data would be read without a wait: not alone.
        assert waiting.wait(30)
        theirs.sendall(data)
        runtime.call(draining.wait)
        return alone

    with ours, theirs:
        reader = GreenTCPTransport.__new__(GreenTCPTransport)
        reader.sock = runtime.call(eventlet.greenio.GreenSocket, ours)
        reader._read_buffer = b""
        waiting = threading.Event()
        wait_readable = reader._wait_readable

        def wait_readable_seen(timeout: float | None) -> None:
            waiting.set()
            wait_readable(timeout)

        reader._wait_readable = wait_readable_seen
        first, second = broker_frames(1, b"first"), broker_frames(1, b"second")
        assert drained(first) == [True]
        assert drained(first + second) == [False, False]
        assert drained(first + second[:5]) == [False]  # the next one is on its way
        assert drained(second[5:]) == [True]
        runtime.call(reader.stop_draining)
        runtime.call(reader.sock.close)
