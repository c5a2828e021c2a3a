"""Routing and exchange rules of the embedded broker, driven synchronously."""

import pytest
from amqp.exceptions import AccessRefused, NotFound, PreconditionFailed

from sandbox.broker import (
    Broker,
    Exchange,
    ManualClock,
    Message,
    get_broker,
    reset,
    topic_matches,
)


def make_broker():
    return Broker("/", clock=ManualClock())


@pytest.fixture
def channel():
    return make_broker().connect().channel()


@pytest.mark.parametrize(
    "pattern, key, expected",
    [
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.*", "a.", True),  # the second word is empty, still a word
        ("a.#", "a", True),  # '#' matches zero words
        ("a.#", "a.b.c", True),
        ("a.#", "b.a", False),
        ("#", "", True),
        ("#", "a.b.c", True),
        ("#", ".", True),
        ("*", "", False),  # an empty key has no words
        ("*", "a", True),
        ("*", "a.b", False),
        ("*.*", ".", True),
        ("*.b.#", "a.b", True),
        ("*.b.#", "a.b.c.d", True),
        ("*.b.#", "b", False),
        ("*.b.#", "a.c.b", False),
        ("#.c", "c", True),
        ("#.c", "a.b.c", True),
        ("#.c", "a.c.d", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x", False),
        ("#.a.#", "a", True),
        ("#.a.#", "x.a.y", True),
        ("#.a.#", "x.y", False),
        ("#.#", "", True),
        ("a.*.b", "a..b", True),
        ("a..b", "a..b", True),
        ("a..b", "a.x.b", False),
        ("", "", True),
        ("", "a", False),
        ("a", "", False),
        ("a.b", "a.B", False),
        ("rpc.*", "rpc.hello", True),
    ],
)
def test_topic_patterns(pattern, key, expected):
    assert topic_matches(pattern, key) is expected


def test_exchange_types_route_to_each_matching_queue_once():
    direct = Exchange("d", "direct")
    direct.bind("q1", "k")
    direct.bind("q2", "k")
    direct.bind("q3", "other")
    assert direct.route("k") == ["q1", "q2"]

    topic = Exchange("t", "topic")
    topic.bind("q1", "a.*")
    topic.bind("q1", "#")  # two bindings of one queue still give one copy
    topic.bind("q2", "b.#")
    assert topic.route("a.x") == ["q1"]
    assert topic.route("b") == ["q1", "q2"]

    fanout = Exchange("f", "fanout")
    fanout.bind("q1", "ignored")
    fanout.bind("q2")
    assert fanout.route("anything") == ["q1", "q2"]


def test_headers_exchange_all_and_any():
    exchange = Exchange("h", "headers")
    exchange.bind("all", arguments={"x-match": "all", "a": 1, "b": 2})
    exchange.bind("any", arguments={"x-match": "any", "a": 1, "b": 2})
    assert exchange.route("", {"a": 1, "b": 2}) == ["all", "any"]
    assert exchange.route("", {"a": 1}) == ["any"]
    assert exchange.route("", {"a": 2}) == []


def test_unbind_and_unbind_queue():
    exchange = Exchange("t", "topic")
    exchange.bind("q1", "a")
    exchange.bind("q1", "b")
    exchange.unbind("q1", "a")
    assert exchange.route("a") == []
    exchange.unbind_queue("q1")
    assert exchange.bindings == {}


def deliveries(channel):
    inbox = channel.connection.inbox
    bodies = [event.message.body for event in inbox]
    inbox.clear()
    return bodies


def test_publish_through_declared_exchanges(channel):
    channel.exchange_declare("events", "topic")
    for name, key in [("all", "#"), ("orders", "orders.*"), ("paid", "*.paid")]:
        channel.queue_declare(name)
        channel.queue_bind(name, "events", key)
        channel.basic_consume(name, name, no_ack=True)
    channel.basic_publish(Message(b"1", {}), "events", "orders.paid")
    channel.basic_publish(Message(b"2", {}), "events", "users.created")
    by_queue = [(e.consumer_tag, e.message.body) for e in channel.connection.inbox]
    assert by_queue == [("all", b"1"), ("orders", b"1"), ("paid", b"1"), ("all", b"2")]


def test_default_exchange_routes_by_queue_name(channel):
    channel.queue_declare("q")
    channel.basic_consume("q", no_ack=True)
    channel.basic_publish(Message(b"hi", {}), "", "q")
    channel.basic_publish(Message(b"lost", {}), "", "nope")
    assert deliveries(channel) == [b"hi"]


def test_default_exchange_cannot_be_bound_or_declared(channel):
    channel.queue_declare("q")
    with pytest.raises(AccessRefused):
        channel.queue_bind("q", "", "q")
    with pytest.raises(AccessRefused):
        channel.exchange_declare("", "direct")
    channel.exchange_declare("", "direct", passive=True)


def test_mandatory_publish_without_route_is_returned(channel):
    channel.exchange_declare("x", "direct")
    assert channel.basic_publish(Message(b"m", {}), "x", "k").returned is None
    returned = channel.basic_publish(Message(b"m", {}), "x", "k", mandatory=True).returned
    assert (returned.reply_code, returned.reply_text) == (312, "NO_ROUTE")
    assert (returned.message.exchange, returned.message.routing_key) == ("x", "k")


def test_publish_to_missing_exchange_is_not_found(channel):
    with pytest.raises(NotFound):
        channel.basic_publish(Message(b"m", {}), "missing", "k")


def test_exchange_declare_rules(channel):
    channel.exchange_declare("x", "topic", durable=True)
    channel.exchange_declare("x", "topic", durable=True)  # same arguments: fine
    with pytest.raises(PreconditionFailed) as failed:
        channel.exchange_declare("x", "direct", durable=True)
    assert failed.value.reply_code == 406
    assert "inequivalent arg 'type'" in str(failed.value)
    with pytest.raises(PreconditionFailed):
        channel.exchange_declare("x", "topic", durable=False)
    with pytest.raises(NotFound) as missing:
        channel.exchange_declare("y", "topic", passive=True)
    assert missing.value.reply_code == 404
    with pytest.raises(AccessRefused):
        channel.exchange_declare("amq.mine", "topic")
    channel.exchange_declare("amq.topic", "topic", passive=True)  # predeclared


def test_exchange_delete(channel):
    channel.exchange_declare("x", "fanout")
    channel.queue_declare("q")
    channel.queue_bind("q", "x")
    with pytest.raises(PreconditionFailed):
        channel.exchange_delete("x", if_unused=True)
    channel.exchange_delete("x")
    channel.exchange_delete("x")  # deleting a missing exchange is fine
    assert "x" not in channel.broker.exchanges


def test_auto_delete_exchange_goes_with_its_last_binding(channel):
    channel.exchange_declare("x", "direct", auto_delete=True)
    channel.queue_declare("q1")
    channel.queue_declare("q2")
    channel.queue_bind("q1", "x", "k")
    channel.queue_bind("q2", "x", "k")
    channel.queue_unbind("q1", "x", "k")
    assert "x" in channel.broker.exchanges
    channel.queue_delete("q2")  # deleting the queue removes the last binding
    assert "x" not in channel.broker.exchanges


def test_registry_keeps_one_broker_per_virtual_host():
    a = get_broker("test-registry-a")
    assert get_broker("test-registry-a") is a
    b = get_broker("test-registry-b")
    a.connect().channel().queue_declare("q")
    assert "q" in a.queues and "q" not in b.queues
    reset("test-registry-a")
    assert get_broker("test-registry-a") is not a
    assert get_broker("test-registry-b") is b
    reset("test-registry-a")
    reset("test-registry-b")
