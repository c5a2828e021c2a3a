"""``sb.why``'s core (sandbox.why): each fate of a message, on both brokers.

The embedded broker knows each message's steps; on RabbitMQ the answer is worked out from
the management API, whose statistics lag: the tests wait for the answer with a deadline.
"""

import kombu
import pytest

from sandbox.amqp.publish import Publisher, UndeliverableMessage
from sandbox.events import event_handler
from sandbox.records import Recorder
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import entrypoint_waiter
from sandbox.topology import snapshot
from sandbox.why import explain
from tests.polling import wait_until

SHOP = kombu.Exchange("shop", type="topic", durable=False)


class Listener:
    name = "listener"

    @event_handler("source", "ping")
    def handle(self, payload):
        return payload

    @rpc
    def echo(self, value):
        return value


@pytest.fixture
def recorder():
    recorder = Recorder(size=1000).start()
    yield recorder
    recorder.stop()


@pytest.fixture
def publish(rabbit_config):
    publisher = Publisher(rabbit_config["AMQP_URI"])

    def publish(payload, routing_key, exchange=SHOP, **options):
        get_runtime().call(
            publisher.publish, payload, exchange=exchange, routing_key=routing_key, **options
        )

    return publish


def queue(name, key, **arguments):
    return kombu.Queue(name, SHOP, routing_key=key, durable=False, queue_arguments=arguments)


def why(recorder, rabbit_config, index=-1):
    records = [r for r in recorder.records() if r.event is not None]  # publishes
    record = records[index]
    return explain(record, rabbit_config["AMQP_URI"], later=records[records.index(record) + 1 :])


def eventually(recorder, rabbit_config, *words, index=-1):
    """The explanation once it holds every word (RabbitMQ's statistics lag)."""
    found = []

    def holds():
        found[:] = [why(recorder, rabbit_config, index)]
        return all(word in found[0] for word in words)

    wait_until(holds, timeout=20, interval=0.2)
    return found[0]


def test_delivered_to_a_consumer(rabbit_config, container_factory, recorder):
    container = container_factory(Listener, rabbit_config)
    container.start()
    with entrypoint_waiter(container, "handle"):
        event_dispatcher(rabbit_config)("source", "ping", {"n": 1})
    text = eventually(
        recorder, rabbit_config, "'evt-source-ping--listener.handle'", "delivered", "listener"
    )
    assert text.startswith("Event #")


def test_no_queue_bound_lists_the_bindings(rabbit_config, recorder, publish):
    publish("declare", "order.created", declare=[queue("orders", "order.created")])
    publish("lost", "order.cancelled")
    text = why(recorder, rabbit_config)
    assert "No queue is bound" in text
    assert "'orders' for 'order.created'" in text


def test_unroutable_mandatory_is_returned(rabbit_config, recorder, publish):
    publish("declare", "order.created", declare=[queue("orders", "order.created")])
    with pytest.raises(UndeliverableMessage):
        publish("lost", "order.cancelled", mandatory=True)
    record = recorder.records()[-1]
    assert record.status == "error"
    text = why(recorder, rabbit_config)
    assert "returned to its publisher" in text
    assert "'orders' for 'order.created'" in text


def test_expired_and_dead_lettered(rabbit_config, recorder, publish):
    dead = kombu.Queue("dead", kombu.Exchange("dlx", "fanout", durable=False), durable=False)
    short = queue("short", "short", **{"x-message-ttl": 50, "x-dead-letter-exchange": "dlx"})
    publish("declare", "nothing", declare=[dead, short])
    publish("brief", "short")
    text = eventually(recorder, rabbit_config, "expired")
    assert "dead-lettered to exchange 'dlx'" in text
    assert "'dead'" in text


def test_dropped_by_max_length(rabbit_config, recorder, publish):
    publish("declare", "nothing", declare=[queue("small", "small", **{"x-max-length": 1})])
    publish("first", "small")
    publish("second", "small")
    text = eventually(recorder, rabbit_config, "x-max-length", index=-2)
    assert "it was dropped" in text
    assert "waits" in why(recorder, rabbit_config, index=-1)


def test_waiting_in_a_queue_without_consumer(rabbit_config, recorder, publish):
    publish("declare", "nothing", declare=[queue("idle", "idle")])
    publish("patient", "idle")
    text = eventually(recorder, rabbit_config, "'idle'", "no consumer")
    assert "waits" in text


def test_a_worker_record_names_its_service(rabbit_config, container_factory, recorder):
    container = container_factory(Listener, rabbit_config)
    container.start()
    with ServiceRpcProxy("listener", rabbit_config) as proxy:
        assert proxy.echo(3) == 3
    record = next(r for r in recorder.records() if r.kind == "RPC")
    text = explain(record, rabbit_config["AMQP_URI"])
    assert "worker of listener.echo" in text
    assert "finished" in text


def test_snapshot_shows_services_queues_and_bindings(rabbit_config, container_factory):
    container = container_factory(Listener, rabbit_config)
    container.start()

    def complete():
        state = snapshot(rabbit_config["AMQP_URI"], [container])
        names = {q["name"] for q in state["queues"]}
        return state if {"rpc-listener", "evt-source-ping--listener.handle"} <= names else None

    wait_until(complete, timeout=20, interval=0.2)
    state = complete()
    assert state["notice"] is None
    (service,) = state["services"]
    assert service["local"] is True
    assert {e["name"]: e["queue"] for e in service["entrypoints"]} == {
        "echo": "rpc-listener",
        "handle": "evt-source-ping--listener.handle",
    }
    assert {"exchange": "source.events", "queue": "evt-source-ping--listener.handle"} in [
        {"exchange": b["exchange"], "queue": b["queue"]} for b in state["bindings"]
    ]


def test_snapshot_says_when_the_management_api_is_unreachable():
    state = snapshot("amqp://guest:guest@127.0.0.1:5672/", management="http://127.0.0.1:9")
    assert state["broker"] == "rabbitmq"
    assert "does not answer" in state["notice"]
    assert state["queues"] == []
