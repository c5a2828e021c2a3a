"""An exchange's ``alternate-exchange`` takes what it routes nowhere, on both brokers."""

import kombu
import pytest
from amqp.exceptions import PreconditionFailed

from sandbox.amqp.publish import AmqpPublisher, UndeliverableMessage
from sandbox.runtime import get_runtime

leftovers = kombu.Exchange("leftovers", type="fanout", durable=True)
unrouted = kombu.Queue("unrouted", exchange=leftovers, durable=True)


def with_alternate(name, alternate, type="direct"):
    return kombu.Exchange(
        name, type=type, durable=True, arguments={"alternate-exchange": alternate}
    )


def mandatory_publish(client, body, exchange, routing_key):
    publisher = AmqpPublisher(client.amqp_uri, mandatory=True, retry=False)
    get_runtime().call(publisher.publish, body, exchange=exchange, routing_key=routing_key)


def test_unroutable_messages_go_to_the_alternate_exchange(client):
    main = with_alternate("main", "leftovers")
    client.declare(leftovers, unrouted, main, kombu.Queue("routed", exchange=main, routing_key="k"))
    mandatory_publish(client, "routed", "main", "k")
    mandatory_publish(client, "unrouted", "main", "other")  # mandatory is satisfied
    assert client.payloads("routed") == ["routed"]
    message = client.get("unrouted")
    assert message.payload == "unrouted"
    # it keeps the exchange and key it was published with
    assert (message.delivery_info["exchange"], message.delivery_info["routing_key"]) == (
        "main",
        "other",
    )


def test_alternates_chain_and_stop_at_a_cycle_or_a_missing_one(client):
    main = with_alternate("main", "leftovers")
    client.declare(leftovers, unrouted, main, with_alternate("first", "main"))
    client.declare(with_alternate("ping", "pong"), with_alternate("pong", "ping"))
    client.declare(with_alternate("lost", "missing"))
    mandatory_publish(client, "via two", "first", "k")
    assert client.payloads("unrouted") == ["via two"]
    for exchange in ("ping", "lost"):
        with pytest.raises(UndeliverableMessage, match="NO_ROUTE"):
            mandatory_publish(client, "nowhere", exchange, "k")


def test_an_alternate_routes_with_the_original_key(client):
    by_key = kombu.Exchange("by-key", type="direct", durable=True)
    client.declare(by_key, kombu.Queue("keyed", exchange=by_key, routing_key="zz"))
    client.declare(with_alternate("topics", "by-key", type="topic"))
    client.publish("found", exchange="topics", routing_key="zz")
    client.publish("lost", exchange="topics", routing_key="yy")
    assert client.payloads("keyed") == ["found"]


def test_redeclaring_with_another_alternate_is_refused(client):
    client.declare(with_alternate("main", "leftovers"))
    with pytest.raises(PreconditionFailed) as refused:
        client.declare(with_alternate("main", "elsewhere"))
    assert refused.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'main' "
        f"in vhost '{client.vhost}': received 'elsewhere' but current is 'leftovers'"
    )
