"""Length limits (``x-max-length``, ``x-max-length-bytes``) and ``x-overflow``, on both
brokers: the publisher hears of a refused message only in confirm mode."""

import kombu
import pytest
from amqp.exceptions import MessageNacked

from sandbox.amqp.publish import AmqpPublisher
from sandbox.runtime import get_runtime


def limited(name, overflow=None, **arguments):
    if overflow is not None:
        arguments["x-overflow"] = overflow
    return kombu.Queue(name, queue_arguments={"x-max-length": 1, **arguments})


def test_drop_head_keeps_the_newest(client):
    client.declare(limited("q"))
    for n in (1, 2, 3):
        client.publish(n, routing_key="q")
    assert client.payloads("q") == [3]


def test_max_length_bytes_counts_bodies(client):
    client.declare(kombu.Queue("q", queue_arguments={"x-max-length-bytes": 5}))
    for body in ("ab", "cd", "ef"):
        client.publish(body.encode(), routing_key="q", content_type="application/data")
    assert client.payloads("q") == [b"cd", b"ef"]
    client.publish(b"toolong", routing_key="q", content_type="application/data")
    assert client.count("q") == 0  # bigger than the limit on its own: dropped at once


def test_reject_publish_nacks_a_confirmed_publish(client):
    client.declare(limited("full", "reject-publish"), kombu.Queue("other"))
    for queue in ("full", "other"):
        client.run(lambda channel, queue=queue: channel.queue_bind(queue, "amq.fanout"))
    client.publish("kept", exchange="amq.fanout", confirms=True)
    with pytest.raises(MessageNacked):
        client.publish("refused", exchange="amq.fanout", confirms=True)
    client.publish("dropped silently", exchange="amq.fanout")  # no confirms: no word
    assert client.payloads("full") == ["kept"]
    assert client.payloads("other") == ["kept", "refused", "dropped silently"]


def test_sandbox_publisher_raises_the_nack(client):
    client.declare(limited("full", "reject-publish"))
    publisher = AmqpPublisher(client.amqp_uri, retry=False)
    get_runtime().call(publisher.publish, "kept", routing_key="full")
    with pytest.raises(MessageNacked):
        get_runtime().call(publisher.publish, "refused", routing_key="full")
    assert client.payloads("full") == ["kept"]


def test_reject_publish_dlx_dead_letters_the_refused_message(client):
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
    client.declare(limited("full", "reject-publish-dlx", **arguments), kombu.Queue("dead"))
    client.publish("kept", routing_key="full", confirms=True)
    with pytest.raises(MessageNacked):
        client.publish("refused", routing_key="full", confirms=True)
    message = client.wait_for("dead")
    assert message.payload == "refused"
    assert [d["reason"] for d in message.headers["x-death"]] == ["maxlen"]


@pytest.mark.parametrize("overflow, left", [("drop-head", ["new"]), ("reject-publish", None)])
def test_a_requeue_over_the_limit(client, overflow, left):
    """drop-head drops the requeued head; the reject-publish modes only refuse publishes."""
    client.declare(limited("q", overflow))

    def requeue_after_a_publish(channel):
        taken = kombu.Queue("q").bind(channel).get()
        kombu.Producer(channel).publish("new", routing_key="q")
        taken.requeue()

    client.publish("old", routing_key="q")
    client.run(requeue_after_a_publish)
    assert client.payloads("q") == (left or ["old", "new"])
