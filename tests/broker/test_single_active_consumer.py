"""``x-single-active-consumer``: the oldest consumer gets everything; the next one takes over
when it cancels or its channel closes, on both brokers.

Without prefetch limits: RabbitMQ 3.10.8 crashes the queue when the active consumer of a
single-active-consumer classic queue with a prefetch limit cancels (seen while writing these).
"""

import contextlib
import time

import kombu
from broker_tools import send

SAC = {"x-single-active-consumer": True}
sac = kombu.Queue("sac", queue_arguments=SAC)


def scenario(channel):
    """Three consumers on three channels; who got what after each step."""
    connection = channel.connection.client
    channels = [connection.channel() for _ in range(3)]
    received = []
    consumers = [
        kombu.Consumer(
            ch,
            [sac],
            callbacks=[lambda body, message, n=n: received.append((n, body))],
            no_ack=True,
        )
        for n, ch in enumerate(channels)
    ]
    for consumer in consumers:
        consumer.consume()
    producer = kombu.Producer(channel)
    steps = []

    def publish_and_drain(*bodies):
        for body in bodies:
            producer.publish(body, routing_key="sac")
        deadline = time.monotonic() + 10
        while len(received) < len(bodies) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.1)
        steps.append(list(received))
        received.clear()

    publish_and_drain("a", "b")
    consumers[0].cancel()
    publish_and_drain("c")
    channels[1].close()
    publish_and_drain("d")
    count = channel.queue_declare("sac", passive=True).consumer_count
    for ch in channels:
        ch.close()
    return steps, count


def test_one_consumer_at_a_time_in_the_order_they_came(client):
    client.declare(sac)
    steps, consumer_count = client.run(scenario)
    assert steps == [[(0, "a"), (0, "b")], [(1, "c")], [(2, "d")]]
    assert consumer_count == 1


def test_the_successor_gets_the_backlog_when_the_active_one_cancels(core):
    core.queue_declare("sac", arguments=SAC)
    core.basic_qos(1)
    core.basic_consume("sac", "active")
    core.basic_consume("sac", "waiting", no_ack=True)
    send(core, "sac", "x", "y")  # 'y' waits: the active consumer is full, the other inactive
    core.basic_cancel("active")
    inbox = core.connection.inbox
    assert [(e.consumer_tag, e.message.body) for e in inbox] == [
        ("active", b"x"),
        ("waiting", b"y"),
    ]
