"""The embedded broker against RabbitMQ, side by side: random sequences of AMQP operations run
on both, and everything a client can observe must match.

A hypothesis state machine declares, binds, unbinds and deletes exchanges and queues, publishes
(mandatory or not), gets, consumes, cancels, acks, rejects, nacks, recovers, purges and closes
channels. After each step it compares the step's outcome (result or AMQP error code), every
delivery each consumer got (body and redelivered flag, in order), the messages returned as
unroutable, and each queue's ready and consumer counts.

The embedded broker runs on a clock of its own that moves only when told; RabbitMQ, over
py-amqp with publisher confirms, is asked synchronously, and its deliveries are waited for with
a deadline. Each consumer has a channel of its own, so that delivery tags and orders are
deterministic on both. ``SANDBOX_DIFFERENTIAL_EXAMPLES`` runs more examples (the suite runs a
few).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import urllib.parse
import uuid
from typing import Any

import amqp
import pytest
from amqp.exceptions import AMQPError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sandbox.broker import Broker, Cancelled, Delivery, Message, Returned
from sandbox.broker.clock import ManualClock

EXAMPLES = int(os.environ.get("SANDBOX_DIFFERENTIAL_EXAMPLES", "15"))
DELIVERY_DEADLINE = 10.0  # seconds RabbitMQ may take to deliver what the embedded broker did
SETTLE = 0.02  # then how long to listen for deliveries the embedded broker did not make

QUEUES = ["q1", "q2", "q3"]
EXCHANGES = ["x1", "x2"]
ROUTING_KEYS = ["q1", "q2", "q3", "a", "b", "a.b", "#", "*.b"]
SHORT_TTL = 3.0  # seconds: a message that must expire at the next wait, and not before
WAIT = SHORT_TTL + 1.0
QUEUE_ARGUMENTS = [
    {},
    {"x-max-length": 2},
    {"x-max-length": 0},
    {"x-message-ttl": 600_000},
    {"x-max-priority": 3},
    {"x-dead-letter-exchange": "x2"},
    {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q3"},
    {"x-max-length": 1, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q3"},
]
TIMED_QUEUE_ARGUMENTS = [
    {"x-message-ttl": int(SHORT_TTL * 1000)},
    {"x-message-ttl": int(SHORT_TTL * 1000), "x-dead-letter-exchange": "x2"},
]
PRIORITIES = [None, 1, 5]


def seen(headers: Any) -> dict:
    """Headers as compared: an ``x-death`` entry's ``time`` is each broker's own clock."""
    headers = dict(headers or {})
    if "x-death" in headers:
        headers["x-death"] = [
            {k: v for k, v in death.items() if k != "time"} for death in headers["x-death"]
        ]
    return headers


def outcome(call: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", AMQP reply code): what a client can tell apart."""
    try:
        result = call()
    except AMQPError as exc:
        return "error", exc.code
    return "ok", None if result == () else result  # py-amqp's empty -ok frame


class Side:
    """One broker, as the test drives it: a main channel, and a channel per consumer."""

    def __init__(self, connection: Any, main: Any) -> None:
        self.connection, self.main = connection, main
        self.consumer_channels: dict[str, Any] = {}
        self.deliveries: dict[str, list[tuple[bytes, bool]]] = {}
        self.returned: list[bytes] = []
        self.cancelled: set[str] = set()
        self.probing: Any = None

    def channel(self, key: str) -> Any:
        return self.main if key == "main" else self.consumer_channels[key]

    def probe(self, queue: str) -> tuple[str, int, int]:
        """A passive declare on a channel of its own: a missing queue closes that one only."""
        if self.probing is None or not self.probing.is_open:
            self.probing = self.connection.channel()
        try:
            return tuple(self.probing.queue_declare(queue, passive=True))
        except AMQPError:
            if self.probing.is_open:
                self.probing.close()
            self.probing = None
            raise


class Embedded(Side):
    """The embedded broker, driven through its channel API."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.broker = Broker("differential", clock=self.clock)
        connection = self.broker.connect()
        super().__init__(connection, connection.channel())

    def reopen(self, key: str) -> None:
        """After a channel error, as RabbitMQ closes the channel."""
        self.channel(key).close()
        if key == "main":
            self.main = self.connection.channel()
        else:
            del self.consumer_channels[key]

    def publish(
        self, exchange: str, routing_key: str, body: bytes, mandatory: bool, **props
    ) -> None:
        message = Message(body, {"delivery_mode": 1, **props})
        published = self.main.basic_publish(message, exchange, routing_key, mandatory)
        if published.returned is not None:
            self.returned.append(published.returned.message.body)

    def consume(self, key: str, queue: str, no_ack: bool) -> None:
        channel = self.connection.channel()
        try:
            channel.basic_consume(queue, key, no_ack=no_ack)
        except AMQPError:
            channel.close()
            raise
        self.consumer_channels[key] = channel
        self.deliveries[key] = []

    def recover(self) -> None:
        self.main.basic_recover()

    def get(self, queue: str, no_ack: bool) -> Any:
        got = self.main.basic_get(queue, no_ack=no_ack)
        if got is None:
            return None
        message = got.message
        headers = seen(message.headers)
        return message.body, got.redelivered, got.message_count, got.delivery_tag, headers

    def collect(self) -> None:
        while self.connection.inbox:
            event = self.connection.inbox.popleft()
            if isinstance(event, Delivery):
                self.deliveries[event.consumer_tag].append(
                    (event.message.body, event.redelivered, seen(event.message.headers))
                )
            elif isinstance(event, Returned):
                self.returned.append(event.message.body)
            elif isinstance(event, Cancelled):
                self.cancelled.add(event.consumer_tag)


class Rabbit(Side):
    """A fresh vhost of the real RabbitMQ, driven through py-amqp with publisher confirms."""

    def __init__(self, manager: Any, vhost: str) -> None:
        parts = urllib.parse.urlsplit(manager.uri_for(vhost))
        self.connection = amqp.Connection(
            f"{parts.hostname}:{parts.port or 5672}",
            userid=urllib.parse.unquote(parts.username or "guest"),
            password=urllib.parse.unquote(parts.password or "guest"),
            virtual_host=vhost,
            confirm_publish=True,
        )
        self.connection.connect()
        super().__init__(self.connection, self._channel())

    def _channel(self) -> Any:
        channel = self.connection.channel()
        channel.events["basic_return"].add(self._on_return)
        return channel

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append(bytes(message.body))

    def reopen(self, key: str) -> None:
        channel = self.channel(key)
        if channel.is_open:  # a connection-level refusal leaves it open: close it as we do
            channel.close()
        if key == "main":
            self.main = self._channel()
        else:
            del self.consumer_channels[key]

    def publish(
        self, exchange: str, routing_key: str, body: bytes, mandatory: bool, **props
    ) -> None:
        message = amqp.Message(body, delivery_mode=1, **props)
        self.main.basic_publish(message, exchange, routing_key, mandatory=mandatory)

    def consume(self, key: str, queue: str, no_ack: bool) -> None:
        channel = self._channel()
        received = self.deliveries[key] = []

        def on_message(message: Any) -> None:
            redelivered = message.delivery_info["redelivered"]
            received.append((bytes(message.body), redelivered, seen(message.headers)))

        try:
            channel.basic_consume(
                queue,
                key,
                no_ack=no_ack,
                callback=on_message,
                on_cancel=lambda tag: self.cancelled.add(tag),
            )
        except AMQPError:
            del self.deliveries[key]
            raise
        self.consumer_channels[key] = channel

    def recover(self) -> None:
        self.main.basic_recover(requeue=True)  # RabbitMQ refuses requeue=False

    def get(self, queue: str, no_ack: bool) -> Any:
        got = self.main.basic_get(queue, no_ack=no_ack)
        if got is None:
            return None
        info = got.delivery_info
        headers = seen(got.headers)
        return (
            bytes(got.body),
            info["redelivered"],
            info["message_count"],
            info["delivery_tag"],
            headers,
        )

    def collect(self, expected: dict[str, int]) -> None:
        """Wait for as many deliveries as the embedded broker made, then a moment for more."""
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while any(len(self.deliveries.get(k, ())) < n for k, n in expected.items()):
            if time.monotonic() > deadline:
                return
            self._drain(0.1)
        self._drain(SETTLE)

    def _drain(self, timeout: float) -> None:
        try:
            while True:
                self.connection.drain_events(timeout=timeout)
        except TimeoutError:
            pass

    def close(self) -> None:
        # A connection a failed step left broken: the vhost goes anyway.
        with contextlib.suppress(Exception):
            self.connection.close()


@pytest.fixture
def fresh_vhost(rabbit_manager):
    """A factory of throwaway RabbitMQ vhosts, all deleted after the test."""
    made = []

    def make() -> str:
        vhost = f"sandbox-diff-{uuid.uuid4().hex[:10]}"
        rabbit_manager.create_vhost_for_amqp_user(vhost)
        made.append(vhost)
        return vhost

    yield make
    for vhost in made:
        rabbit_manager.delete_vhost(vhost)


@pytest.mark.timeout(180 + 10 * EXAMPLES)
@pytest.mark.parametrize("timed", [False, True], ids=["untimed", "with-ttl"])
def test_the_embedded_broker_answers_as_rabbitmq_does(rabbit_manager, fresh_vhost, timed):
    """``with-ttl`` adds short TTLs and one wait per example: fewer examples, seconds each."""
    bodies = itertools.count()
    queue_arguments = QUEUE_ARGUMENTS + (TIMED_QUEUE_ARGUMENTS if timed else [])
    expirations = [None, str(int(SHORT_TTL * 1000))] if timed else [None]

    class SideBySide(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.embedded = Embedded()
            self.rabbit = Rabbit(rabbit_manager, fresh_vhost())
            # What each side still has to acknowledge: (channel key, delivery tag) in order.
            self.unacked: dict[str, list[tuple[str, int]]] = {"embedded": [], "rabbit": []}
            self.consumers: dict[str, str] = {}  # consumer key -> queue
            self.no_ack: dict[str, bool] = {}
            self.consumer_keys = itertools.count(1)
            self.waited = False
            # Deliveries already put in ``unacked``, by (side, consumer key).
            self.counted: dict[tuple[str, str], int] = {}

        def teardown(self) -> None:
            self.rabbit.close()
            self.embedded.connection.close()

        # --- doing the same on both ---------------------------------------------------

        def both(self, key: str, action: Any) -> Any:
            """Run ``action(side)`` on both; the outcomes must match; a channel error closes
            the channel on both, with what it had unacknowledged."""
            results = {}
            for name, side in (("embedded", self.embedded), ("rabbit", self.rabbit)):
                results[name] = outcome(lambda side=side: action(side))
            assert results["embedded"] == results["rabbit"], results
            if results["embedded"][0] == "error":
                self.embedded.reopen(key)
                self.rabbit.reopen(key)
                self._channel_closed(key)
            self.sync()
            return results["embedded"]

        def _channel_closed(self, key: str) -> None:
            for name in self.unacked:
                self.unacked[name] = [u for u in self.unacked[name] if u[0] != key]
            if key != "main":
                self.consumers.pop(key, None)

        def sync(self) -> None:
            self.embedded.collect()
            expected = {k: len(v) for k, v in self.embedded.deliveries.items()}
            self.rabbit.collect(expected)
            for name, side in (("embedded", self.embedded), ("rabbit", self.rabbit)):
                for key, received in side.deliveries.items():
                    if not self.no_ack.get(key, True):
                        known = self.counted.setdefault((name, key), 0)
                        self.unacked[name] += [
                            (key, t) for t in range(known + 1, len(received) + 1)
                        ]
                        self.counted[(name, key)] = len(received)
            for key in self.embedded.cancelled | self.rabbit.cancelled:
                self.consumers.pop(key, None)

        # --- rules ------------------------------------------------------------------------

        @rule(
            name=st.sampled_from(EXCHANGES),
            type=st.sampled_from(["direct", "topic", "fanout"]),
            durable=st.booleans(),
        )
        def declare_exchange(self, name, type, durable):
            self.both(
                "main",
                lambda side: side.main.exchange_declare(
                    name, type, durable=durable, auto_delete=False
                ),
            )

        @rule(name=st.sampled_from(EXCHANGES), if_unused=st.booleans())
        def delete_exchange(self, name, if_unused):
            self.both("main", lambda side: side.main.exchange_delete(name, if_unused=if_unused))

        @rule(
            name=st.sampled_from(QUEUES),
            durable=st.booleans(),
            auto_delete=st.booleans(),
            arguments=st.sampled_from(queue_arguments),
        )
        def declare_queue(self, name, durable, auto_delete, arguments):
            self.both(
                "main",
                lambda side: tuple(
                    side.main.queue_declare(
                        name, durable=durable, auto_delete=auto_delete, arguments=dict(arguments)
                    )
                ),
            )

        @rule(
            queue=st.sampled_from(QUEUES),
            exchange=st.sampled_from([*EXCHANGES, "amq.topic", "amq.fanout"]),
            key=st.sampled_from(ROUTING_KEYS),
        )
        def bind(self, queue, exchange, key):
            self.both("main", lambda side: side.main.queue_bind(queue, exchange, key))

        @rule(
            queue=st.sampled_from(QUEUES),
            exchange=st.sampled_from([*EXCHANGES, "amq.topic"]),
            key=st.sampled_from(ROUTING_KEYS),
        )
        def unbind(self, queue, exchange, key):
            self.both("main", lambda side: side.main.queue_unbind(queue, exchange, key))

        @rule(
            exchange=st.sampled_from(["", *EXCHANGES, "amq.topic", "amq.fanout"]),
            key=st.sampled_from(ROUTING_KEYS),
            mandatory=st.booleans(),
            priority=st.sampled_from(PRIORITIES),
            expiration=st.sampled_from(expirations),
        )
        def publish(self, exchange, key, mandatory, priority, expiration):
            body = str(next(bodies)).encode()
            props = {"priority": priority, "expiration": expiration}
            props = {name: value for name, value in props.items() if value is not None}
            self.both("main", lambda side: side.publish(exchange, key, body, mandatory, **props))
            assert self.embedded.returned == self.rabbit.returned

        @precondition(lambda self: timed and not self.waited)
        @rule()
        def wait(self):
            """Past every short TTL: RabbitMQ in real time, the embedded broker on its clock."""
            self.waited = True
            time.sleep(WAIT)
            self.embedded.clock.advance(WAIT)
            self.sync()

        @rule(queue=st.sampled_from(QUEUES), no_ack=st.booleans())
        def get(self, queue, no_ack):
            kind, got = self.both("main", lambda side: side.get(queue, no_ack))
            if kind == "ok" and got is not None and not no_ack:
                for name in self.unacked:
                    self.unacked[name].append(("main", got[3]))

        @precondition(lambda self: len(self.consumers) < 3)
        @rule(queue=st.sampled_from(QUEUES), no_ack=st.booleans())
        def consume(self, queue, no_ack):
            key = f"c{next(self.consumer_keys)}"
            self.no_ack[key] = no_ack
            results = {
                name: outcome(lambda side=side: side.consume(key, queue, no_ack))
                for name, side in (("embedded", self.embedded), ("rabbit", self.rabbit))
            }
            assert results["embedded"] == results["rabbit"], results
            if results["embedded"][0] == "ok":
                self.consumers[key] = queue
            self.sync()

        @precondition(lambda self: self.consumers)
        @rule(data=st.data())
        def cancel(self, data):
            key = data.draw(st.sampled_from(sorted(self.consumers)))
            # py-amqp returns the tag cancel-ok carries; the broker's channel API returns None.
            self.both(key, lambda side: side.channel(key).basic_cancel(key) and None)
            self.consumers.pop(key, None)

        @precondition(lambda self: self.consumers)
        @rule(data=st.data())
        def close_consumer_channel(self, data):
            key = data.draw(st.sampled_from(sorted(self.consumers)))
            for side in (self.embedded, self.rabbit):
                side.reopen(key)
            self._channel_closed(key)
            self.sync()

        @precondition(lambda self: self.unacked["embedded"])
        @rule(
            data=st.data(),
            how=st.sampled_from(["ack", "ack-multiple", "reject", "nack-multiple"]),
            requeue=st.booleans(),
        )
        def settle(self, data, how, requeue):
            index = data.draw(st.integers(0, len(self.unacked["embedded"]) - 1))
            key, _ = self.unacked["embedded"][index]
            assert [u[0] for u in self.unacked["embedded"]] == [
                u[0] for u in self.unacked["rabbit"]
            ]
            multiple = how.endswith("multiple")
            tags = {name: self.unacked[name][index][1] for name in self.unacked}

            def act(side: Any, name: str) -> None:
                channel, tag = side.channel(key), tags[name]
                if how.startswith("ack"):
                    channel.basic_ack(tag, multiple=multiple)
                elif how == "reject":
                    channel.basic_reject(tag, requeue=requeue)
                else:
                    channel.basic_nack(tag, multiple=multiple, requeue=requeue)

            results = {
                name: outcome(lambda side=side, name=name: act(side, name))
                for name, side in (("embedded", self.embedded), ("rabbit", self.rabbit))
            }
            assert results["embedded"] == results["rabbit"], results
            for name in self.unacked:
                tag = tags[name]
                self.unacked[name] = [
                    u
                    for u in self.unacked[name]
                    if u[0] != key or (u[1] != tag and not (multiple and u[1] < tag))
                ]
            self.sync()

        @rule()
        def recover(self):
            self.both("main", lambda side: side.recover())
            for name in self.unacked:
                self.unacked[name] = [u for u in self.unacked[name] if u[0] != "main"]

        @rule(queue=st.sampled_from(QUEUES))
        def purge(self, queue):
            self.both("main", lambda side: side.main.queue_purge(queue))

        @rule(queue=st.sampled_from(QUEUES), if_unused=st.booleans(), if_empty=st.booleans())
        def delete_queue(self, queue, if_unused, if_empty):
            self.both(
                "main",
                lambda side: side.main.queue_delete(queue, if_unused=if_unused, if_empty=if_empty),
            )

        # --- what must match after every step --------------------------------------------

        @invariant()
        def deliveries_match(self):
            assert self.embedded.deliveries == self.rabbit.deliveries
            assert self.embedded.returned == self.rabbit.returned
            assert self.embedded.cancelled == self.rabbit.cancelled

        @invariant()
        def queues_match(self):
            for queue in QUEUES:
                counts = {
                    name: outcome(lambda side=side, queue=queue: side.probe(queue))
                    for name, side in (("embedded", self.embedded), ("rabbit", self.rabbit))
                }
                assert counts["embedded"] == counts["rabbit"], (queue, counts)

    SideBySide.TestCase.settings = settings(
        max_examples=max(3, EXAMPLES // 4) if timed else EXAMPLES,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    SideBySide.TestCase().runTest()
