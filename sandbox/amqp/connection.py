"""Connecting to a broker: green py-amqp for RabbitMQ, the embedded broker for ``memory://``;
which errors mean "try again", and how long to wait before each retry.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import amqp
import eventlet
import kombu
from amqp.exceptions import MessageNacked

from sandbox.amqp import memory
from sandbox.amqp.green import GreenTransport
from sandbox.config import DEFAULTS
from sandbox.constants import DEFAULT_TRANSPORT_OPTIONS
from sandbox.exceptions import BrokerUnavailable
from sandbox.utils import sanitize_url

GREEN_SCHEMES = frozenset({"amqp", "pyamqp", "amqps"})


# Both transports raise py-amqp's errors; these mean "try again on a fresh connection". Not a
# nack, which py-amqp counts among them: it is the broker's answer (a queue's x-overflow
# reject-publish), and the connection is fine.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = tuple(
    error
    for error in (
        *amqp.Connection.connection_errors,
        *amqp.Connection.recoverable_connection_errors,
    )
    if error is not MessageNacked
)


def connect(
    uri: str,
    *,
    ssl: Any = None,
    login_method: str | None = None,
    heartbeat: float | None = None,
    transport_options: Mapping[str, Any] | None = None,
) -> kombu.Connection:
    """An open kombu connection to ``uri``; RabbitMQ schemes get green sockets, ``memory://``
    the embedded broker.

    It raises at once when the broker does not answer: kombu's own retries sleep without
    yielding, which would freeze the whole hub. Retrying is the caller's business.
    """
    scheme = uri.partition("://")[0].lower()
    options: dict[str, Any] = {
        "ssl": ssl or scheme == "amqps",
        "login_method": login_method,
        "heartbeat": heartbeat or 0,
        "transport_options": dict(transport_options or {}),
    }
    if scheme in GREEN_SCHEMES:
        options["transport"] = GreenTransport
    elif scheme in memory.SCHEMES:
        options["transport"] = memory.Transport  # kombu's own memory:// is another broker
    connection = kombu.Connection(uri, **options)
    return connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)


@contextlib.contextmanager
def broker_errors(uri: str) -> Iterator[None]:
    """Raise the connection errors of py-amqp, kombu and sockets inside as BrokerUnavailable,
    with a one-line message that names the broker, without its password."""
    try:
        yield
    except BrokerUnavailable:
        raise
    except CONNECTION_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BrokerUnavailable(
            f"the broker at {sanitize_url(uri)} is unavailable: {reason}"
        ) from exc


def amqp_uri(config: Mapping[str, Any]) -> str:
    """The broker a config names; the embedded one when it names none."""
    return config.get("AMQP_URI") or DEFAULTS["AMQP_URI"]


def connection_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`connect` options a config names (``AMQP_SSL``, ``LOGIN_METHOD``)."""
    return {"ssl": config.get("AMQP_SSL"), "login_method": config.get("LOGIN_METHOD")}


def retry_delays(policy: Mapping[str, Any] | None = None) -> Iterator[float]:
    """Back-off delays in seconds: ``interval_start``, then ``interval_step`` more each time,
    at most ``interval_max``; ``max_retries`` of them, or endless when it is None (or
    missing, as kombu has it). Intervals ``policy`` leaves out are the consumers' defaults."""
    policy = {**DEFAULT_TRANSPORT_OPTIONS, "max_retries": None, **(policy or {})}
    start, step = float(policy["interval_start"]), float(policy["interval_step"])
    maximum = float(policy["interval_max"])
    delays = (min(start + step * n, maximum) for n in itertools.count())
    max_retries = policy["max_retries"]
    return delays if max_retries is None else itertools.islice(delays, max_retries)


def declared_queue(connection: Any, name: str) -> Any:
    """What a passive declare of queue ``name`` answers (``.message_count``...), or None when
    the broker refuses it (no such queue, or exclusive to another connection).

    ``connection`` is a kombu or py-amqp connection. A refused passive declare closes its
    channel, so it is made on a throwaway one.
    """
    channel = connection.channel()
    try:
        return channel.queue_declare(name, passive=True)
    except amqp.ChannelError:
        return None
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def close_quietly(connection: kombu.Connection) -> None:
    """Close politely if the broker answers within a second, else just drop the socket.

    The connection may be in any state: dead, or cut half way through reading a frame.
    """
    with eventlet.Timeout(1, False), contextlib.suppress(Exception):
        connection.release()
        return
    with contextlib.suppress(Exception):
        connection.collect()
