"""What a connection offers its consumer beyond py-amqp: the fast path, asked for, never guessed.

A connection of :class:`sandbox.amqp.green.GreenTransport` answers :func:`fast_path` with a
:class:`FastPath`; any other (the embedded broker's, a kombu transport from elsewhere) answers
None, and its consumer reads and publishes through kombu and py-amqp as they are. The consumer
and the thread reader use the fast path through the protocols below, whatever class offers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from sandbox.amqp import wire
from sandbox.amqp.frame_writer import FrameWriter

FrameCallback = Callable[[tuple[int, int, bytes]], Any]
DeliveryCallback = Callable[[wire.WireDelivery, bool], Any]


class FrameSource(Protocol):
    """A transport that hands whoever drains it whole frames, and deliveries assembled."""

    # The largest body a delivery keeps; a larger one is counted, not kept.
    max_body_size: int
    # Whether a plain thread may drain it too (see ThreadFrameSource).
    thread_drainable: bool

    def drain(
        self,
        on_frame: FrameCallback,
        timeout: float | None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None: ...

    def stop_draining(self) -> None: ...


class ThreadFrameSource(FrameSource, Protocol):
    """A frame source that a plain thread may drain while the consumer's loop steps aside:
    ``drain_in_thread(on_frame, timeout, on_delivery, interrupt, before_wait)`` is ``drain``
    with a pipe whose data ends the wait too, calling ``before_wait()`` just before it sleeps;
    ``unread(data)`` puts a frame handed back in front."""

    drain_in_thread: Callable[
        [FrameCallback, float | None, DeliveryCallback, int, Callable[[], object]], None
    ]
    unread: Callable[[bytes], None]


class FramePublisher(Protocol):
    """A channel that encodes its own Basic.Publish frames (:mod:`sandbox.amqp.wire`):
    ``publish_frames(body, exchange, routing_key, properties, headers, mandatory)`` returns
    them, ``publish_content`` with the same arguments writes them."""

    publish_frames: Callable[..., bytes]
    publish_content: Callable[..., None]


class FastPath(NamedTuple):
    """A connection's fast path; every channel it opens is a :class:`FramePublisher`."""

    frames: FrameSource
    writer: FrameWriter


def fast_path(connection: Any) -> FastPath | None:
    """The fast path a py-amqp (or any kombu transport's) ``connection`` offers, if any."""
    offer = getattr(connection, "fast_path", None)
    return None if offer is None else offer()
