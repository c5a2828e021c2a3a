"""A read-only tap on a RabbitMQ cluster: the RPC calls and events of services elsewhere.

Services outside this process (a ``sandbox run`` process, a Nameko cluster) leave no worker
records here. :class:`ClusterTap` sees their traffic anyway: one exclusive, auto-delete queue
of its own, bound with ``#`` to the RPC exchange and to every ``<service>.events`` exchange,
gets a copy of each message, while the services' own queues keep theirs (the tap never
consumes from them, never publishes, never acks anything but its copies). Event exchanges are
found in the management API's list (config ``RABBIT_MANAGEMENT_URI``) when it answers, and
from the services seen calling or being called.

It runs as one green thread of the hub with a connection of its own; each message becomes a
``message_tapped`` notice to the recorder (:mod:`sandbox.records` makes the records, marked
as seen from outside). Requests to services of this process, and events this process
published (its message ids say so), are left out: their records exist already.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import eventlet
import kombu

from sandbox import recorder, serialization
from sandbox.amqp.connection import connect
from sandbox.amqp.publish import publish_record, published_here
from sandbox.runtime import get_runtime

log = logging.getLogger(__name__)

EVENTS_SUFFIX = ".events"
QUEUE_PREFIX = "sandbox-tap-"  # the topology and sb.why leave these queues out
REFRESH = 2.0  # seconds between looks for new event exchanges
_TAP_EXPIRES_MS = 60_000  # a tap whose kernel died goes with its connection; this is a spare


class ClusterTap:
    """Copies of a cluster's RPC and event traffic, as recorder notices (see module doc)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        is_local: Callable[[str], bool],
        management: Any = None,
    ):
        from sandbox.management import vhost_of
        from sandbox.rpc_routes import get_rpc_exchange

        self.uri = str(config["AMQP_URI"])
        self.config = config
        self.is_local = is_local
        self.management, self.vhost = management, vhost_of(self.uri)
        self.rpc_exchange = get_rpc_exchange(config).name
        self.queue = f"{QUEUE_PREFIX}{uuid.uuid4().hex[:12]}"
        self.tapped: set[str] = set()  # exchanges bound to the tap's queue
        self._thread: Any = None
        self._connection: Any = None
        self._channel: Any = None
        self.ready = eventlet.event.Event()

    # --- from any thread ----------------------------------------------------------------------

    def start(self) -> ClusterTap:
        self._thread = get_runtime().spawn(self._run)
        return self

    def stop(self) -> None:
        get_runtime().call(self._stop)

    def wait_until_ready(self, timeout: float = 10) -> None:
        get_runtime().call(self.ready.wait, timeout=timeout)

    # --- the hub ------------------------------------------------------------------------------

    def _stop(self) -> None:
        if self._thread is not None:
            self._thread.kill()
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.release()
            self._connection = self._channel = None

    def _run(self) -> None:
        while True:
            try:
                self._open()
                self._listen()
            except Exception as exc:  # the broker went away: look again in a second
                log.debug("cluster tap on %s: %r; retrying", self.vhost, exc)
            self._close()
            self.tapped.clear()
            eventlet.sleep(1)

    def _open(self) -> None:
        self._connection = connect(self.uri)
        self._channel = self._connection.channel()
        self._channel.queue_declare(
            self.queue,
            exclusive=True,
            auto_delete=True,
            arguments={"x-expires": _TAP_EXPIRES_MS},
        )
        self._bind(self.rpc_exchange)
        queue = kombu.Queue(self.queue, no_declare=True)
        kombu.Consumer(self._channel, [queue], callbacks=[self._on_message], no_ack=True).consume()
        self._find_event_exchanges()

    def _listen(self) -> None:
        if not self.ready.ready():
            self.ready.send(None)
        looked = time.monotonic()
        while True:
            with contextlib.suppress(socket.timeout):
                self._connection.drain_events(timeout=REFRESH)
            if time.monotonic() - looked >= REFRESH:
                self._find_event_exchanges()
                looked = time.monotonic()

    def _bind(self, exchange: str) -> None:
        self._channel.queue_bind(self.queue, exchange, "#")
        self.tapped.add(exchange)

    def _find_event_exchanges(self) -> None:
        if self.management is None:
            return
        try:
            listed = self.management.get_exchanges(self.vhost)
        except Exception:  # no management API: the services seen on the wire will do
            self.management = None
            return
        for exchange in listed:
            if exchange["name"].endswith(EVENTS_SUFFIX) and exchange["name"] not in self.tapped:
                self._bind(exchange["name"])

    def _tap_events_of(self, service: str) -> None:
        """Bind to ``service``'s events exchange, if it has one (a passive declare tells)."""
        exchange = f"{service}{EVENTS_SUFFIX}"
        if exchange in self.tapped:
            return
        probe = self._connection.channel()  # a missing exchange closes the channel it is asked on
        try:
            probe.exchange_declare(exchange, "topic", passive=True)
        except Exception:
            return
        finally:
            with contextlib.suppress(Exception):
                probe.close()
        self._bind(exchange)

    def _on_message(self, body: Any, message: kombu.Message) -> None:
        exchange = message.delivery_info.get("exchange") or ""
        routing_key = message.delivery_info.get("routing_key") or ""
        properties = message.properties
        if exchange == self.rpc_exchange and properties.get("reply_to"):
            service = routing_key.partition(".")[0]
            self._tap_events_of(service)
            if self.is_local(service):
                return  # its worker's record is made here already
            kind = "rpc-request"
        elif exchange == self.rpc_exchange:
            kind = "rpc-reply"
        elif published_here(properties.get("message_id")):
            return  # its publish record exists already
        else:
            kind = "event"
        try:
            payload = serialization.decode(message)
        except Exception as exc:
            payload = f"<undecodable: {exc}>"
        headers = dict(message.headers or {})
        recorder.notify(
            "message_tapped",
            publish_record(kind, payload, exchange, routing_key, headers, properties),
        )
