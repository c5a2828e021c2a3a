"""Queues, consumers and acknowledgements of the embedded broker, on a manual clock."""

import pytest
from amqp.exceptions import (
    AccessRefused,
    NotFound,
    PreconditionFailed,
    RecoverableConnectionError,
    ResourceLocked,
)

from sandbox.broker import Broker, Cancelled, Delivery, ManualClock, Message


@pytest.fixture
def time():
    return ManualClock()


@pytest.fixture
def broker(time):
    return Broker("/", clock=time)


@pytest.fixture
def channel(broker):
    return broker.connect().channel()


def msg(body, **properties):
    return Message(body.encode(), properties)


def take(channel):
    """The deliveries waiting for this channel's connection, removed from its inbox."""
    inbox = channel.connection.inbox
    events = list(inbox)
    inbox.clear()
    return events


def bodies(events):
    return [e.message.body.decode() for e in events]


def publish(channel, queue, *texts, **properties):
    for text in texts:
        channel.basic_publish(msg(text, **properties), "", queue)


def test_server_named_queue_and_counts(channel):
    name, messages, consumers = channel.queue_declare("")
    assert name.startswith("amq.gen-")
    publish(channel, name, "a", "b")
    assert channel.queue_declare(name, passive=True) == (name, 2, 0)
    channel.basic_consume(name, no_ack=True)
    assert channel.queue_declare(name, passive=True) == (name, 0, 1)


def test_passive_declare_of_missing_queue(channel):
    with pytest.raises(NotFound):
        channel.queue_declare("missing", passive=True)


def test_redeclare_with_other_flags_fails(channel):
    channel.queue_declare("q", durable=True, arguments={"x-message-ttl": 10})
    channel.queue_declare("q", durable=True, arguments={"x-message-ttl": 10})
    with pytest.raises(PreconditionFailed):
        channel.queue_declare("q", durable=False, arguments={"x-message-ttl": 10})
    with pytest.raises(PreconditionFailed):
        channel.queue_declare("q", durable=True, arguments={"x-message-ttl": 20})
    with pytest.raises(PreconditionFailed):
        channel.queue_declare("bad", arguments={"x-expires": 0})


def test_exclusive_queue_belongs_to_its_connection(broker):
    owner = broker.connect().channel()
    other = broker.connect().channel()
    owner.queue_declare("mine", exclusive=True)
    for attempt in (
        lambda: other.queue_declare("mine", exclusive=True),
        lambda: other.queue_declare("mine", passive=True),
        lambda: other.basic_consume("mine"),
        lambda: other.basic_get("mine"),
        lambda: other.queue_purge("mine"),
    ):
        with pytest.raises(ResourceLocked) as locked:
            attempt()
        assert locked.value.reply_code == 405
    owner.connection.close()
    assert "mine" not in broker.queues
    other.queue_declare("mine", exclusive=True)  # free again


def test_auto_delete_queue_goes_when_last_consumer_cancels(broker, channel):
    channel.queue_declare("q", auto_delete=True)
    first = channel.basic_consume("q")
    second = channel.basic_consume("q")
    channel.basic_cancel(first)
    assert "q" in broker.queues
    channel.basic_cancel(second)
    assert "q" not in broker.queues


def test_auto_delete_queue_survives_until_it_had_a_consumer(broker, channel):
    channel.queue_declare("q", auto_delete=True)
    publish(channel, "q", "kept")
    assert channel.queue_declare("q", passive=True)[1] == 1


def test_x_expires_deletes_an_unused_queue(broker, channel, time):
    channel.queue_declare("q", arguments={"x-expires": 100})
    time.advance(0.09)
    channel.queue_declare("q", arguments={"x-expires": 100})  # redeclare restarts the clock
    time.advance(0.09)
    assert "q" in broker.queues
    tag = channel.basic_consume("q")
    time.advance(1)
    assert "q" in broker.queues  # never expires while consumed
    channel.basic_cancel(tag)
    time.advance(0.09)
    channel.basic_get("q")  # a get counts as use
    time.advance(0.09)
    assert "q" in broker.queues
    time.advance(0.02)
    assert "q" not in broker.queues


def test_message_ttl_and_per_message_expiration(channel, time):
    channel.queue_declare("q", arguments={"x-message-ttl": 100})
    publish(channel, "q", "queue-ttl")
    publish(channel, "q", "short", expiration="50")
    time.advance(0.06)
    publish(channel, "q", "fresh")
    channel.basic_consume("q", no_ack=True)
    # 'short' expired but sits behind a live head; RabbitMQ drops expired heads only
    assert bodies(take(channel)) == ["queue-ttl", "fresh"]


def test_ttl_zero_reaches_a_ready_consumer_only(channel, time):
    channel.queue_declare("q", arguments={"x-message-ttl": 0})
    publish(channel, "q", "dropped")
    time.advance(0.001)
    channel.basic_consume("q", no_ack=True)
    publish(channel, "q", "delivered")
    assert bodies(take(channel)) == ["delivered"]


def test_invalid_expiration_is_refused(channel):
    channel.queue_declare("q")
    with pytest.raises(PreconditionFailed):
        publish(channel, "q", "x", expiration="soon")


def test_max_length_drops_the_head(channel):
    channel.queue_declare("q", arguments={"x-max-length": 2})
    publish(channel, "q", "1", "2", "3")
    channel.basic_consume("q", no_ack=True)
    assert bodies(take(channel)) == ["2", "3"]


def test_round_robin_between_consumers(channel):
    channel.queue_declare("q")
    channel.basic_consume("q", "c1", no_ack=True)
    channel.basic_consume("q", "c2", no_ack=True)
    publish(channel, "q", *"abcd")
    assert [(e.consumer_tag, e.message.body) for e in take(channel)] == [
        ("c1", b"a"),
        ("c2", b"b"),
        ("c1", b"c"),
        ("c2", b"d"),
    ]


def test_prefetch_per_consumer_limits_unacked_deliveries(channel):
    channel.queue_declare("q")
    channel.basic_qos(2)
    channel.basic_consume("q")
    publish(channel, "q", *"abcde")
    first = take(channel)
    assert bodies(first) == ["a", "b"]
    channel.basic_ack(first[0].delivery_tag)
    assert bodies(take(channel)) == ["c"]
    channel.basic_ack(first[1].delivery_tag)
    assert bodies(take(channel)) == ["d"]


def test_global_prefetch_limits_the_channel(channel):
    channel.queue_declare("q1")
    channel.queue_declare("q2")
    channel.basic_qos(3, global_=True)
    channel.basic_consume("q1")
    channel.basic_consume("q2")
    publish(channel, "q1", "a", "b")
    publish(channel, "q2", "c", "d")
    delivered = take(channel)
    assert len(delivered) == 3
    channel.basic_ack(0, multiple=True)
    assert len(take(channel)) == 1


def test_no_ack_consumers_ignore_prefetch(channel):
    channel.queue_declare("q")
    channel.basic_qos(1)
    channel.basic_consume("q", no_ack=True)
    publish(channel, "q", *"abc")
    assert bodies(take(channel)) == ["a", "b", "c"]
    assert channel.unacked == {}


def test_ack_multiple(channel):
    channel.queue_declare("q")
    channel.basic_consume("q")
    publish(channel, "q", *"abc")
    tags = [e.delivery_tag for e in take(channel)]
    assert tags == [1, 2, 3]
    channel.basic_ack(2, multiple=True)
    assert list(channel.unacked) == [3]
    with pytest.raises(PreconditionFailed):
        channel.basic_ack(2)  # already settled


def test_reject_requeues_at_the_head_marked_redelivered(channel):
    channel.queue_declare("q")
    channel.basic_qos(1)
    channel.basic_consume("q")
    publish(channel, "q", "a", "b")
    [first] = take(channel)
    assert not first.redelivered
    channel.basic_reject(first.delivery_tag, requeue=True)
    [again] = take(channel)
    assert (again.message.body, again.redelivered) == (b"a", True)
    channel.basic_reject(again.delivery_tag, requeue=False)  # dropped
    [nxt] = take(channel)
    assert (nxt.message.body, nxt.redelivered) == (b"b", False)


def test_nack_multiple_requeues_in_order(channel):
    channel.queue_declare("q")
    tag = channel.basic_consume("q")
    publish(channel, "q", *"abc")
    take(channel)
    channel.basic_cancel(tag)
    channel.basic_nack(0, multiple=True, requeue=True)
    channel.basic_consume("q", no_ack=True)
    assert [(e.message.body, e.redelivered) for e in take(channel)] == [
        (b"a", True),
        (b"b", True),
        (b"c", True),
    ]


def test_closing_a_channel_requeues_its_unacked_messages(broker):
    connection = broker.connect()
    worker, other = connection.channel(), connection.channel()
    worker.queue_declare("q")
    worker.basic_consume("q")
    publish(worker, "q", "a", "b")
    assert len(take(worker)) == 2
    worker.close()
    with pytest.raises(RecoverableConnectionError):
        worker.basic_ack(1)
    other.basic_consume("q", no_ack=True)
    assert [(e.message.body, e.redelivered) for e in take(other)] == [(b"a", True), (b"b", True)]


def test_closing_a_connection_requeues_to_other_connections(broker):
    crashing = broker.connect().channel()
    survivor = broker.connect().channel()
    crashing.queue_declare("q")
    crashing.basic_consume("q")
    survivor.basic_consume("q")
    publish(crashing, "q", "a", "b")
    assert bodies(take(crashing)) == ["a"]
    assert bodies(take(survivor)) == ["b"]
    crashing.connection.close()
    [again] = take(survivor)
    assert (again.message.body, again.redelivered) == (b"a", True)


def test_basic_get_and_message_count(channel):
    channel.queue_declare("q")
    assert channel.basic_get("q") is None
    publish(channel, "q", "a", "b")
    got = channel.basic_get("q")
    assert isinstance(got, Delivery)
    assert (got.message.body, got.consumer_tag, got.message_count) == (b"a", None, 1)
    channel.basic_reject(got.delivery_tag, requeue=True)
    again = channel.basic_get("q", no_ack=True)
    assert (again.message.body, again.redelivered) == (b"a", True)
    assert list(channel.unacked) == []


def test_cancel_stops_deliveries(channel):
    channel.queue_declare("q")
    tag = channel.basic_consume("q", no_ack=True)
    channel.basic_cancel(tag)
    publish(channel, "q", "a")
    assert take(channel) == []
    assert channel.queue_declare("q", passive=True) == ("q", 1, 0)
    assert channel.basic_get("q", no_ack=True).message.body == b"a"


def test_exclusive_consumer(channel):
    channel.queue_declare("q")
    channel.basic_consume("q", exclusive=True)
    with pytest.raises(AccessRefused):
        channel.basic_consume("q")


def test_deleting_a_queue_cancels_its_consumers(broker, channel):
    channel.queue_declare("q")
    tag = channel.basic_consume("q")
    other = broker.connect().channel()
    with pytest.raises(PreconditionFailed):
        other.queue_delete("q", if_unused=True)
    publish(other, "q", "a")
    take(channel)
    assert other.queue_delete("q") == 0
    assert take(channel) == [Cancelled(channel, tag)]
    assert other.queue_delete("q") == 0  # already gone: fine


def test_purge(channel):
    channel.queue_declare("q")
    publish(channel, "q", "a", "b")
    assert channel.queue_purge("q") == 2
    assert channel.basic_get("q") is None


def test_broker_close_closes_connections(broker, time):
    connection = broker.connect()
    channel = connection.channel()
    channel.queue_declare("q", arguments={"x-expires": 10})
    woken = []
    connection.on_event = lambda: woken.append(True)
    broker.close()
    assert connection.closed and woken
    assert time.pending() == []
