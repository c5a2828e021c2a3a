"""Our hot-path AMQP codec against py-amqp's: the same bytes out, the same values in."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace

import amqp
import eventlet
import eventlet.greenio
import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps, loads
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.amqp import wire
from sandbox.amqp.transport import FrameReader, GreenTCPTransport
from sandbox.runtime import get_runtime

keys = st.text(max_size=20).filter(lambda key: len(key.encode("utf-8", "surrogatepass")) < 256)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=3, max_value=10**6, min_value=-(10**6)
    )
    | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).map(
        lambda moment: moment.replace(microsecond=0)
    )
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
tables = st.dictionaries(keys, values, max_size=6)
shortstrs = st.text(max_size=30)
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": shortstrs,
        "content_encoding": shortstrs,
        "application_headers": tables,
        "delivery_mode": st.integers(1, 2),
        "priority": st.integers(0, 9),
        "correlation_id": shortstrs,
        "reply_to": shortstrs,
        "expiration": shortstrs,
        "message_id": shortstrs,
        "timestamp": st.integers(0, 2**63 - 1),  # py-amqp sends it as a number
        "type": shortstrs,
        "user_id": shortstrs,
        "app_id": shortstrs,
    },
)


@settings(max_examples=300, deadline=None)
@given(tables)
def test_tables_encode_as_py_amqp_encodes_them(table):
    assert wire.encode_table(table) == dumps("F", [table])


@settings(max_examples=300, deadline=None)
@given(tables)
def test_tables_decode_as_py_amqp_decodes_them(table):
    encoded = dumps("F", [table])
    (expected,), end = loads("F", encoded, 0)
    assert wire.decode_table(encoded, 0) == (expected, end)


@settings(max_examples=300, deadline=None)
@given(properties)
def test_properties_encode_and_decode_as_py_amqp_does(props):
    expected = amqp.Message(b"", **props)._serialize_properties()
    flags, fields = wire.encode_properties(props)
    assert flags.to_bytes(2, "big") + fields == expected
    decoded = amqp.Message(b"")
    decoded._load_properties(spec.Basic.CLASS_ID, expected, 0)
    assert wire.decode_properties(expected, 2, flags) == decoded.properties


def py_amqp_frames(frame_max: int = 131072) -> tuple[list[bytes], Callable]:
    written: list[bytes] = []
    transport = SimpleNamespace(write=lambda data: written.append(bytes(data)))
    conn = SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    return written, frame_writer(conn, transport)


@pytest.mark.parametrize("body_size", [0, 10, 4096, 300_000])
def test_a_publish_is_framed_as_py_amqp_frames_it(body_size):
    body = bytes(range(256)) * (body_size // 256) + b"x" * (body_size % 256)
    props = {
        "content_type": "application/json",
        "application_headers": {"nameko.call_id_stack": ["a.b.1"]},
        "delivery_mode": 2,
        "correlation_id": "c1",
    }
    written, write = py_amqp_frames()
    args = dumps("Bssbb", (0, "nameko-rpc", "svc.method", True, False))
    write(1, 3, spec.Basic.Publish, args, amqp.Message(body, **props))
    ours = wire.publish_frames(3, "nameko-rpc", "svc.method", body, props, 131072, True)
    assert ours == b"".join(written)


def test_an_ack_is_framed_as_py_amqp_frames_it():
    written, write = py_amqp_frames()
    write(1, 2, spec.Basic.Ack, dumps("Lb", (2**40 + 7, False)), None)
    assert wire.ack_frame(2, 2**40 + 7) == b"".join(written)


def test_a_shortstr_over_255_bytes_is_refused():
    with pytest.raises(amqp.exceptions.FrameSyntaxError):
        wire.shortstr("é" * 128)


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
