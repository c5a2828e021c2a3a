"""kombu's high-level API on the embedded broker (``sbmemory://`` for kombu used directly,
``memory://`` through sandbox's connections), beside kombu's own ``memory://``.

Each test gets its own virtual host, so tests never see each other's queues.
"""

import itertools
import logging
import socket
import time

import eventlet
import kombu.transport.memory
import polling
import pytest
from amqp.exceptions import (
    ChannelError,
    ConsumerCancelled,
    NotFound,
    PreconditionFailed,
    RecoverableConnectionError,
    ResourceLocked,
)
from eventlet.hubs import get_hub
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import ContentDisallowed

from sandbox.amqp.connection import connect
from sandbox.amqp.memory import Transport
from sandbox.broker import get_broker, reset

log = logging.getLogger(__name__)
_vhosts = itertools.count()


@pytest.fixture
def vhost():
    name = f"memory-transport-{next(_vhosts)}"
    yield name
    reset(name)


@pytest.fixture
def uri(vhost):
    return f"sbmemory:///{vhost}"


@pytest.fixture
def conn(uri):
    with Connection(uri) as connection:
        yield connection


def drain_pending(connection):
    """Handle every event already waiting, without blocking."""
    while True:
        try:
            connection.drain_events(timeout=0)
        except TimeoutError:
            return


def drain_returning_error(connection, timeout):
    # returned, not raised: eventlet would print a greenthread's exception to stderr
    try:
        connection.drain_events(timeout=timeout)
    except Exception as exc:
        return exc


def wait_until(predicate, timeout=2.0):
    # only for broker-side timers (x-expires, TTL), which run in this thread's own hub
    polling.wait_until(predicate, timeout, interval=0.01, sleep=eventlet.sleep)


def collect(into, ack=True):
    def callback(body, message):
        into.append((body, message))
        if ack:
            message.ack()

    return callback


def test_sbmemory_uri_selects_the_embedded_broker(uri):
    assert isinstance(Connection(uri).transport, Transport)
    connection = Connection(uri)
    connection.ensure_connection(max_retries=1)
    assert connection.connected
    channel = connection.default_channel
    assert channel is connection.default_channel
    connection.release()
    assert not connection.connected


def test_kombus_own_memory_transport_stays_kombus():
    # other kombu or Celery code in the process keeps kombu's in-memory transport
    assert isinstance(Connection("memory://").transport, kombu.transport.memory.Transport)
    with Connection("memory://") as connection:
        queue = connection.SimpleQueue(f"kombu-own-{next(_vhosts)}")
        queue.put({"from": "kombu"})
        assert queue.get(timeout=1).payload == {"from": "kombu"}
        queue.close()


def test_sandbox_connections_to_memory_reach_the_embedded_broker(vhost):
    connection = connect(f"memory:///{vhost}")
    try:
        assert isinstance(connection.transport, Transport)
        Queue("seen-by-the-broker", channel=connection.default_channel).declare()
        assert "seen-by-the-broker" in get_broker(vhost).queues
    finally:
        connection.release()


def test_virtual_hosts_are_isolated(vhost):
    with Connection(f"sbmemory:///{vhost}") as a, Connection(f"sbmemory:///{vhost}-other") as b:
        Queue("only-in-a", channel=a.default_channel, durable=False).declare()
        with pytest.raises(NotFound):
            Queue("only-in-a", channel=b.default_channel).queue_declare(passive=True)
    reset(f"{vhost}-other")


def test_properties_and_body_round_trip(conn):
    queue = Queue("props", Exchange("props-x", "direct"), "k")
    got = []
    with Consumer(conn, [queue], callbacks=[collect(got)], accept=["json"]):
        Producer(conn).publish(
            {"hello": "world"},
            exchange="props-x",
            routing_key="k",
            headers={"nameko.call_id_stack": ["a.b.1"]},
            reply_to="replies",
            correlation_id="corr-1",
            delivery_mode=1,
            priority=3,
            expiration=60,
        )
        conn.drain_events(timeout=1)
    [(body, message)] = got
    assert body == {"hello": "world"}
    assert message.body == '{"hello": "world"}'  # decoded by its content_encoding, as py-amqp does
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.headers == {"nameko.call_id_stack": ["a.b.1"]}
    props = message.properties
    assert (props["reply_to"], props["correlation_id"]) == ("replies", "corr-1")
    assert (props["delivery_mode"], props["priority"], props["expiration"]) == (1, 3, "60000")
    info = message.delivery_info
    assert (info["exchange"], info["routing_key"], info["redelivered"]) == ("props-x", "k", False)


def test_bodies_without_a_text_encoding_stay_bytes(conn):
    queue = Queue("raw", durable=False)
    got = []
    with Consumer(conn, [queue], callbacks=[collect(got)], accept=["json"]):
        Producer(conn).publish(
            b'{"x": 1}',
            routing_key="raw",
            content_type="application/json",
            content_encoding="binary",
        )
        conn.drain_events(timeout=1)
    [(body, message)] = got
    assert (body, message.body) == ({"x": 1}, b'{"x": 1}')


def test_pickle_is_refused_by_a_json_only_consumer(conn):
    queue = Queue("strict", durable=False)
    got, refused = [], []
    with Consumer(
        conn,
        [queue],
        callbacks=[collect(got)],
        accept=["json"],
        on_decode_error=lambda message, exc: refused.append((message, exc)),
    ):
        Producer(conn).publish({"x": 1}, routing_key="strict", serializer="pickle")
        conn.drain_events(timeout=1)
    assert got == []
    [(message, exc)] = refused
    assert isinstance(exc, ContentDisallowed)
    assert message.content_type == "application/x-python-serialize"


def test_entities_declare_bind_purge_delete(conn):
    channel = conn.default_channel
    exchange = Exchange("ents", "topic", channel=channel, durable=False)
    exchange.declare()
    queue = Queue("ents-q", channel=channel, durable=False)
    assert queue.declare() == "ents-q"
    queue.bind_to(exchange, routing_key="a.#")
    producer = Producer(channel, exchange=exchange)
    for key in ("a", "a.b", "b"):
        producer.publish(key, routing_key=key)
    assert queue.queue_declare(passive=True).message_count == 2
    assert queue.get(no_ack=True).payload == "a"
    assert queue.purge() == 1
    queue.unbind_from(exchange, routing_key="a.#")
    producer.publish("a", routing_key="a")
    assert queue.get() is None
    assert queue.delete() == 0
    with pytest.raises(NotFound):
        queue.queue_declare(passive=True)


def test_channel_errors_are_py_amqps_and_the_channel_survives(conn):
    channel = conn.default_channel
    Exchange("typed", "topic", channel=channel).declare()
    with pytest.raises(PreconditionFailed) as failed:
        Exchange("typed", "direct", channel=channel).declare()
    assert isinstance(failed.value, conn.channel_errors)
    with pytest.raises(NotFound):
        Exchange("absent", "topic", channel=channel, passive=True).declare()
    # like py-amqp, the channel is reopened after the broker closed it
    Queue("after-error", channel=channel, durable=False).declare()


def test_exclusive_queue_is_locked_to_its_connection(uri):
    owner, other = Connection(uri), Connection(uri)
    queue = Queue("excl", exclusive=True)
    queue(owner.default_channel).declare()
    with pytest.raises(ResourceLocked):
        queue(other.default_channel).declare()
    with pytest.raises(ResourceLocked):
        Consumer(other, [Queue("excl", exclusive=True, no_declare=True)]).consume()
    owner.release()
    with pytest.raises(NotFound):
        Queue("excl", channel=other.default_channel).queue_declare(passive=True)
    other.release()


def test_auto_delete_queue_goes_with_its_last_consumer(conn, vhost):
    queue = Queue("auto", auto_delete=True, durable=False)
    first = Consumer(conn.channel(), [queue])
    second = Consumer(conn.channel(), [queue])
    first.consume()
    second.consume()
    first.cancel()
    assert "auto" in get_broker(vhost).queues
    second.cancel()
    assert "auto" not in get_broker(vhost).queues


def test_x_expires_deletes_an_idle_queue(conn, vhost):
    queues = get_broker(vhost).queues
    Queue("idle", expires=0.05, durable=False, channel=conn.default_channel).declare()
    consumer = Consumer(conn, [Queue("busy", expires=0.05, durable=False)])
    consumer.consume()
    wait_until(lambda: "idle" not in queues)
    assert "busy" in queues  # consumed queues do not expire
    consumer.cancel()
    wait_until(lambda: "busy" not in queues)


def test_message_ttl_and_expiration(conn):
    channel = conn.default_channel
    queue = Queue("ttl", message_ttl=0.03, durable=False, channel=channel)
    queue.declare()
    plain = Queue("plain", durable=False, channel=channel)
    plain.declare()
    producer = Producer(channel)
    producer.publish("queue ttl", routing_key="ttl")
    producer.publish("own ttl", routing_key="plain", expiration=0.03)
    eventlet.sleep(0.06)
    producer.publish("fresh", routing_key="plain", expiration=10)
    assert queue.get() is None
    assert plain.get(no_ack=True).payload == "fresh"


def test_mandatory_return_reaches_on_return_on_the_next_drain(conn):
    returned = []
    producer = Producer(conn, on_return=lambda *args: returned.append(args))
    producer.publish({"x": 1}, exchange="", routing_key="nobody-home", mandatory=True)
    assert returned == []  # as with py-amqp: the return arrives as an event
    conn.drain_events(timeout=1)
    [(exc, exchange, routing_key, message)] = returned
    assert (exc.reply_code, exc.reply_text) == (312, "NO_ROUTE")
    assert (exchange, routing_key) == ("", "nobody-home")
    assert message.body == '{"x": 1}'  # decoded, as py-amqp decodes returns too
    assert message.properties["content_type"] == "application/json"


def test_mandatory_return_in_confirm_mode_arrives_during_publish(uri):
    returned = []
    with Connection(uri, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn, on_return=lambda *args: returned.append(args))
        producer.publish("x", routing_key="nobody-home", mandatory=True)
        assert len(returned) == 1


def test_unhandled_return_raises_from_drain_events(conn):
    Producer(conn).publish("x", routing_key="nobody-home", mandatory=True)
    with pytest.raises(ChannelError) as unroutable:
        conn.drain_events(timeout=1)
    assert unroutable.value.reply_code == 312


def test_prefetch_limits_messages_in_flight(conn):
    got = []
    queue = Queue("prefetched", durable=False)
    with Consumer(conn, [queue], callbacks=[collect(got, ack=False)], prefetch_count=2):
        producer = Producer(conn)
        for n in range(5):
            producer.publish(n, routing_key="prefetched")
        drain_pending(conn)
        assert [body for body, _ in got] == [0, 1]
        got[0][1].ack()
        drain_pending(conn)
        assert [body for body, _ in got] == [0, 1, 2]


def test_reject_and_requeue_redeliver_marked_redelivered(conn):
    got = []
    queue = Queue("retry", durable=False)
    with Consumer(conn, [queue], callbacks=[collect(got, ack=False)], prefetch_count=1):
        Producer(conn).publish("job", routing_key="retry")
        conn.drain_events(timeout=1)
        got[-1][1].reject(requeue=True)
        conn.drain_events(timeout=1)
        got[-1][1].requeue()
        conn.drain_events(timeout=1)
        got[-1][1].ack()
    assert [(b, m.delivery_info["redelivered"]) for b, m in got] == [
        ("job", False),
        ("job", True),
        ("job", True),
    ]


def test_unacked_messages_return_to_the_queue_on_channel_close(conn):
    got = []
    channel = conn.channel()
    with Consumer(channel, [Queue("work", durable=False)], callbacks=[collect(got, ack=False)]):
        Producer(conn).publish("task", routing_key="work")
        conn.drain_events(timeout=1)
    channel.close()
    message = Queue("work", channel=conn.default_channel).get()
    assert (message.payload, message.delivery_info["redelivered"]) == ("task", True)


def test_unacked_messages_return_to_the_queue_on_connection_release(uri):
    got = []
    crashing = Connection(uri)
    consumer = Consumer(crashing, [Queue("work", durable=False)], callbacks=[collect(got, False)])
    consumer.consume()
    with Connection(uri) as survivor:
        Producer(survivor).publish("task", routing_key="work")
        crashing.drain_events(timeout=1)
        crashing.release()
        message = Queue("work", channel=survivor.default_channel).get()
    assert (message.payload, message.delivery_info["redelivered"]) == ("task", True)


def test_round_robin_across_two_consumers(uri):
    with Connection(uri) as one, Connection(uri) as two:
        got_one, got_two = [], []
        queue = Queue("shared", durable=False)
        with (
            Consumer(one, [queue], callbacks=[collect(got_one)]),
            Consumer(two, [queue], callbacks=[collect(got_two)]),
        ):
            for n in range(4):
                Producer(one).publish(n, routing_key="shared")
            drain_pending(one)
            drain_pending(two)
    assert [b for b, _ in got_one] == [0, 2]
    assert [b for b, _ in got_two] == [1, 3]


def test_cancelled_consumer_gets_nothing_more(conn):
    got = []
    queue = Queue("cancel-me", durable=False)
    consumer = Consumer(conn, [queue], callbacks=[collect(got)])
    consumer.consume()
    consumer.cancel()
    Producer(conn).publish("later", routing_key="cancel-me")
    drain_pending(conn)
    assert got == []
    assert queue(conn.default_channel).get(no_ack=True).payload == "later"


def test_deleting_a_consumed_queue_cancels_the_consumer(conn):
    consumer = Consumer(conn, [Queue("doomed", durable=False)])
    consumer.consume()
    Queue("doomed", channel=conn.channel()).delete()
    with pytest.raises(ConsumerCancelled):
        conn.drain_events(timeout=1)


def test_drain_events_times_out_and_notices_close(conn):
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.02)
    assert time.monotonic() - started >= 0.02
    blocked = eventlet.spawn(drain_returning_error, conn, 10)
    eventlet.sleep(0)
    conn.connection.close()  # the transport's connection, as when the broker drops it
    assert isinstance(blocked.wait(), RecoverableConnectionError)


def test_reset_fails_clients_blocked_on_the_old_broker(conn, vhost):
    blocked = eventlet.spawn(drain_returning_error, conn, 10)
    eventlet.sleep(0)
    reset(vhost)
    assert isinstance(blocked.wait(), conn.connection_errors)


def test_blocked_drain_is_woken_by_the_publish_itself(uri):
    """No polling: the blocked consumer holds no timer and runs on the next hub turn."""
    hub = get_hub()
    with Connection(uri) as consumer_conn, Connection(uri) as producer_conn:
        got = []
        with Consumer(consumer_conn, [Queue("wake", durable=False)], callbacks=[collect(got)]):
            producer = Producer(producer_conn)
            timers_before = hub.get_timers_count()
            waiter = eventlet.spawn(consumer_conn.drain_events)  # no timeout: no timer at all
            eventlet.sleep(0)
            assert not waiter.dead
            # a polling transport would hold a timer for its next poll here
            assert hub.get_timers_count() == timers_before
            producer.publish("ping", routing_key="wake")
            zero_sleeps = 0
            while not got:
                assert zero_sleeps < 3, "publish did not wake the blocked consumer"
                eventlet.sleep(0)
                zero_sleeps += 1
            waiter.wait()
    assert [body for body, _ in got] == ["ping"]
    assert zero_sleeps == 1


def test_request_reply_between_greenthreads(uri):
    rounds = 200
    rpc = Exchange("rpc", "topic", durable=False)
    with Connection(uri) as server_conn, Connection(uri) as client_conn:
        server_producer = Producer(server_conn)

        def on_request(body, message):
            server_producer.publish(
                {"result": body["n"] * 2},
                routing_key=message.properties["reply_to"],
                correlation_id=message.properties["correlation_id"],
            )
            message.ack()

        def serve():
            requests = Queue("rpc-echo", rpc, routing_key="echo.*", durable=False)
            with Consumer(server_conn, [requests], callbacks=[on_request], accept=["json"]):
                while True:
                    server_conn.drain_events(timeout=10)

        server = eventlet.spawn(serve)
        eventlet.sleep(0)  # the server declares and starts consuming

        replies = {}
        reply_consumer = Consumer(
            client_conn,
            [Queue("", exclusive=True, auto_delete=True)],
            callbacks=[lambda body, m: replies.__setitem__(m.properties["correlation_id"], body)],
            no_ack=True,
            accept=["json"],
        )
        reply_consumer.consume()
        reply_to = reply_consumer.queues[0].name
        client = Producer(client_conn, exchange=rpc)

        started = time.perf_counter()
        for n in range(rounds):
            correlation_id = str(n)
            client.publish(
                {"n": n}, routing_key="echo.ping", reply_to=reply_to, correlation_id=correlation_id
            )
            while correlation_id not in replies:
                client_conn.drain_events(timeout=5)
            assert replies.pop(correlation_id) == {"result": n * 2}
        elapsed = time.perf_counter() - started
        server.kill()

    rate = rounds / elapsed
    log.info("memory:// request/reply: %.0f round trips/s (%.1f us each)", rate, 1e6 / rate)
    print(f"memory:// request/reply: {rate:.0f} round trips/s ({1e6 / rate:.1f} us each)")
