"""Confirmed publishes in flight at once, on both brokers: each publish that returns was
confirmed, and a return, a nack or a lost connection reaches exactly the publishes it
belongs to."""

import concurrent.futures
import threading
from functools import partial

import eventlet
import kombu
import pytest
from amqp.exceptions import MessageNacked
from polling import wait_until

from sandbox.amqp import confirms
from sandbox.amqp.publish import AmqpPublisher, UndeliverableMessage
from sandbox.exceptions import BrokerUnavailable
from sandbox.runtime import get_runtime

OPEN = kombu.Queue("open")
FULL = kombu.Queue("full", queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"})


def outcome_of(publish, payload, routing_key):
    """What ``publish`` raised, or None."""
    try:
        publish(payload, routing_key=routing_key)
    except Exception as exc:
        return exc
    return None


def publish_greenly(publisher, messages):
    """Publish ``(payload, routing_key)`` pairs from one green thread each, all at once;
    what each publish raised, or None."""

    def run():
        pool = eventlet.GreenPool(len(messages))
        return list(pool.starmap(partial(outcome_of, publisher.publish), messages))

    return get_runtime().call(run)


def publish_from_threads(publisher, messages):
    """The same from plain threads, twenty at once, as a script's or a notebook's would."""
    publish = partial(outcome_of, publisher.publish_from_any_thread)
    with concurrent.futures.ThreadPoolExecutor(20) as threads:
        return list(threads.map(lambda message: publish(*message), messages))


@pytest.fixture(params=[publish_greenly, publish_from_threads], ids=["green", "plain threads"])
def publish_all(request):
    return request.param


def queued(amqp_broker, queue):
    def take(channel):
        payloads = []
        while (message := queue.bind(channel).get(no_ack=True)) is not None:
            payloads.append(message.payload)
        return payloads

    return amqp_broker.run(take)


@pytest.fixture
def in_flight(monkeypatch):
    """The most publishes a confirm pipeline had waiting at once."""
    most = [0]
    publish = confirms.ConfirmPipeline.publish

    def counting(self, frames, returnable):
        pending = publish(self, frames, returnable)
        most[0] = max(most[0], len(self._waiting))
        return pending

    monkeypatch.setattr(confirms.ConfirmPipeline, "publish", counting)
    return most


def test_concurrent_publishes_all_arrive(rabbit_config, amqp_broker, in_flight, publish_all):
    amqp_broker.run(lambda channel: OPEN(channel).declare())
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"])
    outcomes = publish_all(publisher, [(n, "open") for n in range(200)])
    assert outcomes == [None] * 200
    assert sorted(queued(amqp_broker, OPEN)) == list(range(200))
    if not rabbit_config["AMQP_URI"].startswith("memory"):
        # RabbitMQ confirms asynchronously: many waited on one channel at once.
        assert in_flight[0] > 1


def test_a_return_reaches_its_own_publish(rabbit_config, amqp_broker, publish_all):
    amqp_broker.run(lambda channel: OPEN(channel).declare())
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"], mandatory=True)
    messages = [(n, "nobody" if n % 3 == 0 else "open") for n in range(60)]
    outcomes = publish_all(publisher, messages)
    for (n, _), outcome in zip(messages, outcomes, strict=True):
        if n % 3 == 0:
            assert isinstance(outcome, UndeliverableMessage), n
            assert "NO_ROUTE" in str(outcome)
        else:
            assert outcome is None, n
    assert sorted(queued(amqp_broker, OPEN)) == [n for n in range(60) if n % 3]


def test_a_nack_reaches_its_own_publish(rabbit_config, amqp_broker, publish_all):
    amqp_broker.run(lambda channel: (OPEN(channel).declare(), FULL(channel).declare()))
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"], retry=False)
    get_runtime().call(publisher.publish, "first", routing_key="full")  # now it is full
    messages = [(n, "full" if n % 2 else "open") for n in range(40)]
    outcomes = publish_all(publisher, messages)
    for (n, _), outcome in zip(messages, outcomes, strict=True):
        if n % 2:
            assert isinstance(outcome, MessageNacked), n
        else:
            assert outcome is None, n
    assert sorted(queued(amqp_broker, OPEN)) == list(range(0, 40, 2))
    assert queued(amqp_broker, FULL) == ["first"]


def test_a_plain_thread_hands_the_hub_only_its_frames(rabbit_only, amqp_broker, monkeypatch):
    """Once the pipeline is open and knows the exchange, a plain thread's publish joins it
    from the hub's loop: the hub runs no publish of its own (no green thread per message)."""
    amqp_broker.run(lambda channel: OPEN(channel).declare())
    publisher = AmqpPublisher(rabbit_only["AMQP_URI"])
    sends = []
    send = AmqpPublisher.send

    def counting(self, *args, **kwargs):
        sends.append(args)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(AmqpPublisher, "send", counting)
    for n in range(30):
        publisher.publish_from_any_thread(n, routing_key="open")
    assert len(sends) == 1  # the first, which opened the pipeline
    assert sorted(queued(amqp_broker, OPEN)) == list(range(30))


@pytest.mark.parametrize("threads", ["green", "plain"])
def test_a_lost_connection_fails_the_publishes_in_flight(rabbit_config, amqp_broker, threads):
    """Publishers keep going while the broker drops every connection: publishes in flight
    then fail, later ones go out on new connections, and every publish that returned is in
    the queue."""
    amqp_broker.run(lambda channel: OPEN(channel).declare())
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"], retry=False)
    publish = publisher.publish if threads == "green" else publisher.publish_from_any_thread
    confirmed: list[int] = []
    failures: list[Exception] = []
    stop = threading.Event()
    ended = []

    def keep_publishing(first):
        for n in range(first, first + 1_000_000, 20):
            if stop.is_set():
                break
            try:
                publish(n, routing_key="open")
                confirmed.append(n)
            except Exception as exc:
                failures.append(exc)
            if threads == "green":
                eventlet.sleep(0)  # the embedded broker never makes a publish wait
        ended.append(first)

    runtime = get_runtime()
    for first in range(20):
        if threads == "green":
            runtime.post(eventlet.spawn_n, keep_publishing, first)
        else:
            threading.Thread(target=keep_publishing, args=(first,), daemon=True).start()
    try:
        wait_until(lambda: len(confirmed) >= 100, timeout=60)
        amqp_broker.drop_connections()
        before = len(confirmed)
        wait_until(lambda: failures and len(confirmed) >= before + 100, timeout=60)
    finally:
        stop.set()
        wait_until(lambda: len(ended) == 20, timeout=60)
    assert all(isinstance(exc, BrokerUnavailable) for exc in failures), failures
    assert set(confirmed) <= set(queued(amqp_broker, OPEN))
