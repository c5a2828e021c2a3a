"""Our hot-path AMQP codec against py-amqp's: the same bytes out, the same values in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps, loads
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.amqp import wire

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
