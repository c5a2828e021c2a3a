"""The AMQP 0-9-1 frames of an RPC round trip, encoded and decoded here rather than by py-amqp.

py-amqp treats every frame alike: a publish goes through its generic argument and property
serializers (a BytesIO and a struct call per field), a delivery through three frame callbacks,
a method dispatch and two message objects. On the hot path (requests, replies, acks) that was
most of a round trip's CPU. This module does the same work for those few frames, with the
types py-amqp gives and takes, so that a message reads the same whichever side decoded it;
every other frame still goes through py-amqp.
"""

from __future__ import annotations

import functools
import struct
from calendar import timegm
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from amqp.exceptions import FrameSyntaxError

METHOD_FRAME, HEADER_FRAME, BODY_FRAME, HEARTBEAT_FRAME = 1, 2, 3, 8
FRAME_END = 0xCE
BASIC_CLASS = 60
BASIC_DELIVER = 60
BASIC_PUBLISH = 40
BASIC_ACK = 80

_FRAME_HEADER = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_ACK_FRAME = struct.Struct(">BHIHHQBB")
_CONTENT_HEADER = struct.Struct(">HHQH")  # class, weight, body size, property flags
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# The Basic class's properties in flag order (bit 15 first), with their AMQP types.
PROPERTIES = (
    ("content_type", "shortstr"),
    ("content_encoding", "shortstr"),
    ("application_headers", "table"),
    ("delivery_mode", "octet"),
    ("priority", "octet"),
    ("correlation_id", "shortstr"),
    ("reply_to", "shortstr"),
    ("expiration", "shortstr"),
    ("message_id", "shortstr"),
    ("timestamp", "timestamp"),
    ("type", "shortstr"),
    ("user_id", "shortstr"),
    ("app_id", "shortstr"),
    ("cluster_id", "shortstr"),
)
_FLAGS = tuple((name, kind, 1 << (15 - index)) for index, (name, kind) in enumerate(PROPERTIES))


# --- encoding ------------------------------------------------------------------------------


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return b"".join((_FRAME_HEADER.pack(frame_type, channel, len(payload)), payload, b"\xce"))


def ack_frame(channel: int, delivery_tag: int, multiple: bool = False) -> bytes:
    """A Basic.Ack frame."""
    return _ACK_FRAME.pack(
        METHOD_FRAME, channel, 13, BASIC_CLASS, BASIC_ACK, delivery_tag, multiple, FRAME_END
    )


def publish_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Mapping[str, Any],
    frame_max: int,
    mandatory: bool = False,
) -> bytes:
    """Basic.Publish with its content: the method, header and body frames, ready to write."""
    flags, fields = encode_properties(properties)
    header = b"".join((_CONTENT_HEADER.pack(BASIC_CLASS, 0, len(body), flags), fields))
    frames = [
        _publish_method(channel, exchange, routing_key, mandatory),
        frame(HEADER_FRAME, channel, header),
    ]
    chunk = frame_max - 8
    for start in range(0, len(body), chunk):  # a loop, not a generator: one body frame, mostly
        frames.append(frame(BODY_FRAME, channel, body[start : start + chunk]))
    return b"".join(frames)


# A caller publishes to a few destinations, over and over: their method frames are kept.
@functools.lru_cache(maxsize=1024)
def _publish_method(channel: int, exchange: str, routing_key: str, mandatory: bool) -> bytes:
    method = b"".join(
        (
            _METHOD_ID.pack(BASIC_CLASS, BASIC_PUBLISH),
            b"\x00\x00",  # reserved
            shortstr(exchange),
            shortstr(routing_key),
            b"\x01" if mandatory else b"\x00",  # immediate is never set: RabbitMQ refuses it
        )
    )
    return frame(METHOD_FRAME, channel, method)


def shortstr(value: str | bytes) -> bytes:
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    if len(data) > 255:
        raise FrameSyntaxError(f"shortstr over 255 bytes: {data[:40]!r}...")
    return b"".join((_U8.pack(len(data)), data))


def encode_properties(properties: Mapping[str, Any]) -> tuple[int, bytes]:
    """The property flags and the property list of a content header; None means absent."""
    flags, parts = 0, []
    for name, encode, bit in _fields_named(tuple(properties)):
        value = properties[name]
        if value is not None:
            flags |= bit
            parts.append(encode(value))
    return flags, b"".join(parts)


# A publisher's messages have the same few properties, in the same order, one after another:
# each message looks at those, not at all fourteen a content header may have, and encodes
# each with the encoder of its type found once.
@functools.lru_cache(maxsize=256)
def _fields_named(names: tuple[str, ...]) -> tuple[tuple[str, Callable[[Any], bytes], int], ...]:
    """The properties among ``names``, in flag order, with their encoders."""
    return tuple((name, _encoder(name, kind), bit) for name, kind, bit in _FLAGS if name in names)


def _encoder(name: str, kind: str) -> Callable[[Any], bytes]:
    if kind == "shortstr":
        return shortstr if name in _ONE_OFF else _repeated
    if kind == "octet":
        return _U8.pack
    if kind == "table":
        return encode_table
    return _timestamp


# Most property values and header names repeat from message to message (content types,
# reply_to, "nameko.call_id_stack"): encoded once. Ids are new with every message.
_ONE_OFF = frozenset(("correlation_id", "message_id"))
_repeated = functools.lru_cache(maxsize=4096)(shortstr)


def _timestamp(value: datetime | int) -> bytes:
    return _U64.pack(_seconds(value))


def _seconds(value: datetime | int) -> int:
    return timegm(value.utctimetuple()) if isinstance(value, datetime) else int(value)


def encode_table(table: Mapping[Any, Any]) -> bytes:
    """A field table, with the field types py-amqp writes."""
    parts = []
    for key, value in table.items():
        parts.append(_repeated(key))
        parts.append(_encode_value(value))
    data = b"".join(parts)
    return b"".join((_U32.pack(len(data)), data))


def _encode_value(value: Any) -> bytes:
    if isinstance(value, str | bytes):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return b"".join((b"S", _U32.pack(len(data)), data))
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, float):
        return struct.pack(">cd", b"d", value)
    if isinstance(value, int):
        # py-amqp's bounds, so that both write the same bytes for the same header.
        if -2147483647 <= value <= 2147483647:
            return struct.pack(">ci", b"I", value)
        return struct.pack(">cq", b"L", value)
    if isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        number = int("".join(map(str, digits)) or "0")
        return struct.pack(">cBi", b"D", -exponent, -number if sign else number)
    if isinstance(value, datetime):
        return b"".join((b"T", _U64.pack(_seconds(value))))
    if isinstance(value, dict):
        return b"".join((b"F", encode_table(value)))
    if isinstance(value, list | tuple):
        data = b"".join(map(_encode_value, value))
        return b"".join((b"A", _U32.pack(len(data)), data))
    if value is None:
        return b"V"
    raise FrameSyntaxError(f"a header value of type {type(value).__name__} cannot be sent")


# --- decoding ------------------------------------------------------------------------------


def decode_properties(buffer: bytes, offset: int, flags: int) -> dict[str, Any]:
    """The properties of a content header whose property list starts at ``offset``."""
    properties: dict[str, Any] = {}
    for name, kind in _fields_flagged(flags):
        if kind == "shortstr":
            size = buffer[offset]
            properties[name] = _text(buffer[offset + 1 : offset + 1 + size])
            offset += 1 + size
        elif kind == "octet":
            properties[name] = buffer[offset]
            offset += 1
        elif kind == "table":
            properties[name], offset = decode_table(buffer, offset)
        else:
            properties[name] = _U64.unpack_from(buffer, offset)[0]
            offset += 8
    return properties


# As for encoding: a consumer's deliveries come with the same few properties.
@functools.lru_cache(maxsize=256)
def _fields_flagged(flags: int) -> tuple[tuple[str, str], ...]:
    """The properties whose bits ``flags`` sets, in flag order."""
    return tuple((name, kind) for name, kind, bit in _FLAGS if flags & bit)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _text_or_bytes(data: bytes) -> str | bytes:
    try:
        return _text(data)
    except UnicodeDecodeError:
        return data


def decode_table(buffer: bytes, offset: int) -> tuple[dict[Any, Any], int]:
    """A field table at ``offset`` and the offset after it, with py-amqp's value types."""
    (size,) = _U32.unpack_from(buffer, offset)
    offset += 4
    end = offset + size
    table: dict[Any, Any] = {}
    while offset < end:
        length = buffer[offset]
        key = _text_or_bytes(buffer[offset + 1 : offset + 1 + length])
        offset += 1 + length
        table[key], offset = _decode_value(buffer, offset)
    return table, offset


# Fixed-size field types: (struct, size). 's' is RabbitMQ's 16-bit signed int, not a string.
_FIXED = {
    ord(kind): (struct.Struct(fmt), struct.calcsize(fmt))
    for kind, fmt in {
        "b": ">b",
        "B": ">B",
        "U": ">h",
        "u": ">H",
        "s": ">h",
        "I": ">i",
        "i": ">I",
        "L": ">q",
        "l": ">q",
        "f": ">f",
        "d": ">d",
    }.items()
}


def _decode_value(buffer: bytes, offset: int) -> tuple[Any, int]:
    kind = buffer[offset]
    offset += 1
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return fixed[0].unpack_from(buffer, offset)[0], offset + fixed[1]
    if kind in (0x53, 0x78):  # 'S' long string, 'x' byte array
        (size,) = _U32.unpack_from(buffer, offset)
        data = buffer[offset + 4 : offset + 4 + size]
        return (_text_or_bytes(data) if kind == 0x53 else data), offset + 4 + size
    if kind == 0x46:  # 'F'
        return decode_table(buffer, offset)
    if kind == 0x41:  # 'A'
        (size,) = _U32.unpack_from(buffer, offset)
        offset += 4
        end, values = offset + size, []
        while offset < end:
            value, offset = _decode_value(buffer, offset)
            values.append(value)
        return values, offset
    if kind == 0x74:  # 't'
        return bool(buffer[offset]), offset + 1
    if kind == 0x44:  # 'D'
        places, number = struct.unpack_from(">Bi", buffer, offset)
        return Decimal(number) / Decimal(10**places), offset + 5
    if kind == 0x54:  # 'T'
        seconds = _U64.unpack_from(buffer, offset)[0]
        return datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None), offset + 8
    if kind == 0x56:  # 'V'
        return None, offset
    raise FrameSyntaxError(f"unknown field type {chr(kind)!r} in a table")


class WireDelivery:
    """A Basic.Deliver with its content, assembled from its frames."""

    __slots__ = (
        "channel",
        "consumer_tag",
        "delivery_tag",
        "redelivered",
        "exchange",
        "routing_key",
        "properties",
        "body_size",
        "chunks",
        "received",
    )

    def __init__(self, channel: int, payload: bytes):
        self.channel = channel
        offset = 4
        size = payload[offset]
        self.consumer_tag = _text(payload[offset + 1 : offset + 1 + size])
        offset += 1 + size
        (self.delivery_tag,) = _U64.unpack_from(payload, offset)
        self.redelivered = bool(payload[offset + 8] & 1)
        offset += 9
        size = payload[offset]
        self.exchange = _text(payload[offset + 1 : offset + 1 + size])
        offset += 1 + size
        size = payload[offset]
        self.routing_key = _text(payload[offset + 1 : offset + 1 + size])
        self.properties: dict[str, Any] = {}
        self.body_size = -1  # until the header comes
        # The body's frames; none are kept of a body too large to be accepted.
        self.chunks: list[bytes] = []
        self.received = 0  # bytes of the body that came

    def on_header(self, payload: bytes) -> None:
        _, _, self.body_size, flags = _CONTENT_HEADER.unpack_from(payload)
        self.properties = decode_properties(payload, _CONTENT_HEADER.size, flags)

    @property
    def complete(self) -> bool:
        return self.body_size >= 0 and self.received >= self.body_size

    @property
    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    @property
    def delivery_info(self) -> dict[str, Any]:
        """What py-amqp calls a message's ``delivery_info``."""
        return {
            "consumer_tag": self.consumer_tag,
            "delivery_tag": self.delivery_tag,
            "redelivered": self.redelivered,
            "exchange": self.exchange,
            "routing_key": self.routing_key,
        }


def is_delivery(payload: bytes) -> bool:
    """Whether a method frame's payload is a Basic.Deliver."""
    return payload[:4] == b"\x00\x3c\x00\x3c"
