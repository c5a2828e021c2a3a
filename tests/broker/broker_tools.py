"""Tools of the broker feature tests: kombu on the broker of ``rabbit_config``, and helpers
for a core channel of the embedded broker.

Every :class:`KombuClient` call runs in the sandbox runtime's hub thread, where services use
the broker too (the embedded broker is single-threaded), on a connection of its own, so that
a channel error never leaks into the next call.
"""

import datetime
import time

import kombu

from sandbox.amqp.connection import connect
from sandbox.broker import Message
from sandbox.runtime import get_runtime


def recent(value) -> bool:
    """Whether an ``x-death`` time is a naive UTC datetime of the last minute."""
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return isinstance(value, datetime.datetime) and abs(now - value).total_seconds() < 60


class KombuClient:
    def __init__(self, amqp_uri: str, vhost: str):
        self.amqp_uri = amqp_uri
        self.vhost = vhost

    def run(self, fn, confirms=False):
        def call():
            options = {"confirm_publish": confirms}
            with connect(self.amqp_uri, transport_options=options) as connection:
                return fn(connection.default_channel)

        return get_runtime().call(call)

    def declare(self, *entities):
        self.run(lambda channel: [entity.bind(channel).declare() for entity in entities])

    def publish(self, body, confirms=False, **options):
        self.run(lambda channel: kombu.Producer(channel).publish(body, **options), confirms)

    def get(self, queue: str, ack=True):
        return self.run(lambda channel: kombu.Queue(queue).bind(channel).get(no_ack=ack))

    def reject(self, queue: str, requeue=False):
        """Take the next message of ``queue`` and reject it; its payload."""

        def take(channel):
            message = kombu.Queue(queue).bind(channel).get()
            assert message is not None, f"nothing in {queue!r} to reject"
            message.reject(requeue=requeue)
            return message.payload

        return self.run(take)

    def payloads(self, queue: str) -> list:
        """Take every ready message of ``queue``."""
        taken = []
        while (message := self.get(queue)) is not None:
            taken.append(message.payload)
        return taken

    def count(self, queue: str) -> int:
        return self.run(lambda channel: channel.queue_declare(queue, passive=True).message_count)

    def wait_for(self, queue: str, timeout: float = 10):
        """The next message of ``queue``, waited for (timers move it there) up to ``timeout``."""
        taken = []
        eventually(lambda: taken.append(self.get(queue)) or taken[-1] is not None, timeout)
        return taken[-1]


def eventually(condition, timeout: float = 10) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {condition}"
        time.sleep(0.02)


def send(channel, routing_key: str, *texts: str, exchange: str = "", **properties):
    """Publish each text on a core channel; the last publish's ``Published``."""
    published = None
    for text in texts:
        published = channel.basic_publish(Message(text.encode(), properties), exchange, routing_key)
    return published


def got(channel, queue: str) -> list[str]:
    """Take (no ack) every ready message of ``queue`` on a core channel: their texts."""
    texts = []
    while (delivery := channel.basic_get(queue, no_ack=True)) is not None:
        texts.append(delivery.message.body.decode())
    return texts
