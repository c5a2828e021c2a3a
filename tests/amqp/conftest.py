"""What the AMQP tests do to the broker behind ``rabbit_config``, on either transport."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import kombu
import pytest

from sandbox import broker
from sandbox.amqp.connection import connect
from sandbox.runtime import get_runtime

LOCAL_HOSTS = ("127.0.0.1", "localhost")


class AmqpBroker:
    def __init__(self, amqp_uri: str, manager: Any = None):
        self.amqp_uri = amqp_uri
        self.manager = manager

    def run(self, fn):
        """``fn(channel)`` on a connection of its own, in the hub thread."""

        def run():
            with connect(self.amqp_uri) as connection:
                return fn(connection.channel())

        return get_runtime().call(run)

    def publish(self, body, *, exchange="nameko-rpc", routing_key, **properties):
        """A message exactly as given: the body is sent as raw bytes."""

        def publish(channel):
            producer = kombu.Producer(channel)
            content_type = properties.pop("content_type", "application/json")
            producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                content_type=content_type,
                content_encoding="binary",
                **properties,
            )

        self.run(publish)

    def request(self, body, *, routing_key, timeout=10, **properties):
        """Publish a raw request with a reply queue of our own; return the decoded reply."""
        exchange = kombu.Exchange("nameko-rpc", type="topic", durable=True)
        replies = kombu.Queue("raw-replies", exchange, "raw-replies", auto_delete=True)

        def request(channel):
            received = []
            consumer = kombu.Consumer(
                channel, [replies], callbacks=[lambda b, m: received.append(b)]
            )
            with consumer:
                self.publish(body, routing_key=routing_key, reply_to="raw-replies", **properties)
                channel.connection.client.drain_events(timeout=timeout)
            return received[0]

        return self.run(request)

    def message_count(self, queue_name: str) -> int:
        return self.run(lambda channel: channel.queue_declare(queue_name, passive=True)[1])

    def bind_catch_all(self, exchange_name: str = "nameko-rpc") -> None:
        """A queue that takes every message of the exchange (the bane of UnknownService)."""
        exchange = kombu.Exchange(exchange_name, type="topic", durable=True)
        self.run(lambda channel: kombu.Queue("catch-all", exchange, "#")(channel).declare())

    def drop_connections(self) -> None:
        """Close every client connection, as a broker restart would."""
        connection = kombu.Connection(self.amqp_uri)
        vhost = connection.virtual_host
        if self.manager is None:
            get_runtime().call(lambda: broker.get_broker(vhost).close())
            return
        # The management API lists connections only with its next statistics (seconds).
        if shutil.which("rabbitmqctl") is None or connection.hostname not in LOCAL_HOSTS:
            pytest.skip("dropping connections needs the local rabbitmqctl")
        closing = subprocess.run(
            ["rabbitmqctl", "close_all_connections", "-p", vhost, "test"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "Closed 0 connections" not in closing.stdout


@pytest.fixture
def rabbit_only(rabbit_config):
    """The RabbitMQ config alone: the embedded broker's connection has no socket, so neither a
    fast path nor a caller's thread writing or reading one."""
    if rabbit_config["AMQP_URI"].startswith("memory"):
        pytest.skip("the embedded broker's connection has no socket")
    return rabbit_config


@pytest.fixture
def amqp_broker(rabbit_config, request) -> AmqpBroker:
    uri = rabbit_config["AMQP_URI"]
    manager = None if uri.startswith("memory") else request.getfixturevalue("rabbit_manager")
    return AmqpBroker(uri, manager)
