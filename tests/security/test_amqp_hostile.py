"""Hostile AMQP messages: compression bombs, oversized bodies, reused correlation ids.

An attacker publishes raw requests to ``nameko-rpc`` (as anyone with the broker's credentials
can): against ``sandbox run`` as a process on RabbitMQ, and in-process on both brokers.
"""

import functools
import logging
import time
import uuid
import zlib

import eventlet
import eventlet.event
import kombu
import pytest

from sandbox.amqp.connection import connect
from sandbox.amqp.limits import MessageLimits
from sandbox.events import event_handler
from sandbox.exceptions import ConfigurationError, MalformedRequest, MessageRefused
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy

MiB = 1024 * 1024
JSON = "application/json"


@functools.cache
def bomb() -> bytes:
    """The issue's bomb: zlib of 512 MiB of JSON whitespace before a valid request (~520 KB)."""
    packer = zlib.compressobj(9)
    spaces = b" " * MiB
    parts = [packer.compress(spaces) for _ in range(512)]
    parts += [packer.compress(b'{"args": ["boom"], "kwargs": {}}'), packer.flush()]
    return b"".join(parts)


def request_body(*args) -> bytes:
    return kombu.utils.json.dumps({"args": list(args), "kwargs": {}}).encode()


class RawClient:
    """An attacker's client: raw requests to ``nameko-rpc``, replies read from its own queue."""

    def __init__(self, uri: str):
        self.uri = uri
        self.reply_to = f"attacker-{uuid.uuid4().hex}"
        self.exchange = kombu.Exchange("nameko-rpc", type="topic", durable=True)
        self.queue = kombu.Queue(self.reply_to, self.exchange, routing_key=self.reply_to)
        self._run(lambda channel: self.queue(channel).declare())

    def _run(self, fn):
        def run():
            with connect(self.uri) as connection:
                return fn(connection.channel())

        return get_runtime().call(run)

    def request(self, method, body, correlation_id="1", headers=None, reply_to=None, **props):
        """Publish a raw request to ``target.{method}``."""

        def publish(channel):
            kombu.Producer(channel).publish(
                body,
                exchange=self.exchange,
                routing_key=f"target.{method}",
                content_type=props.pop("content_type", JSON),
                content_encoding=props.pop("content_encoding", "utf-8"),
                headers=headers or {},
                reply_to=self.reply_to if reply_to is None else reply_to,
                correlation_id=correlation_id,
                **props,
            )

        self._run(publish)

    def replies(self, count, timeout=30):
        """The next ``count`` replies as ``(correlation_id, body)``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        got = []

        def take(channel):
            while len(got) < count and time.monotonic() < deadline:
                message = self.queue(channel).get(no_ack=True)
                if message is None:
                    eventlet.sleep(0.02)
                else:
                    got.append((message.properties.get("correlation_id"), message.decode()))

        self._run(take)
        assert len(got) == count, f"{len(got)} of {count} replies within {timeout}s: {got}"
        return got


def error_type(reply_body):
    return (reply_body.get("error") or {}).get("exc_type")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- against sandbox run, on RabbitMQ ---------------------------------------------------------


def test_a_compression_bomb_neither_grows_nor_stalls_a_served_process(serve, rabbitmq_uri):
    served = serve(rabbitmq_uri)
    attacker = RawClient(rabbitmq_uri)
    pid = served.process.proc.pid
    with ClusterRpcProxy({"AMQP_URI": rabbitmq_uri}, timeout=30) as cluster:
        assert cluster.target.echo("warm") == "warm"
        before = rss_bytes(pid)
        headers = {"compression": "application/x-gzip"}
        for n in range(10):
            attacker.request("echo", bomb(), correlation_id=f"bomb-{n}", headers=headers)
            started = time.monotonic()
            assert cluster.target.echo(n) == n  # answered meanwhile, not after a stall
            assert time.monotonic() - started < 5
        replies = attacker.replies(10)
        grown = rss_bytes(pid) - before
    assert {error_type(body) for _, body in replies} == {"MalformedRequest"}
    assert "ACCEPT_COMPRESSION" in replies[0][1]["error"]["value"]
    assert grown < 100 * MiB, f"grew by {grown // MiB} MiB"  # unlimited: 1 GiB per bomb
    served.process.wait_for_line("rejected message 'target.echo'")


def test_a_served_process_refuses_an_oversized_request(serve, rabbitmq_uri):
    served = serve(rabbitmq_uri, MAX_MESSAGE_SIZE=MiB)
    attacker = RawClient(rabbitmq_uri)
    attacker.request("echo", request_body("x" * (2 * MiB)), correlation_id="big")
    attacker.request("echo", request_body("small"), correlation_id="small")
    replies = dict(attacker.replies(2))
    assert error_type(replies["big"]) == "MalformedRequest"
    assert "MAX_MESSAGE_SIZE" in replies["big"]["error"]["value"]
    assert replies["small"] == {"result": "small", "error": None}
    served.process.wait_for_line("over MAX_MESSAGE_SIZE")


def test_a_served_process_runs_each_call_that_reuses_a_correlation_id(serve, rabbitmq_uri):
    serve(rabbitmq_uri)
    attacker = RawClient(rabbitmq_uri)
    for value in ("first", "second", "third"):
        attacker.request("echo", request_body(value), correlation_id="")
        assert attacker.replies(1) == [("", {"result": value, "error": None})]


def test_a_served_process_logs_a_reply_it_cannot_deliver(serve, rabbitmq_uri):
    served = serve(rabbitmq_uri)
    attacker = RawClient(rabbitmq_uri)
    attacker.request("echo", request_body(1), correlation_id="lost", reply_to="nobody-listens")
    line = served.process.wait_for_line("dropped a reply nobody can receive")
    assert "'nobody-listens'" in line and "'lost'" in line


# --- in-process, on both brokers -------------------------------------------------------------

calls: list = []
gate = eventlet.event.Event()


class Target:
    name = "target"

    @rpc
    def echo(self, value):
        calls.append(value)
        return value

    @rpc
    def sized(self, size):
        return "x" * size

    @rpc
    def held(self, value):
        calls.append(value)
        gate.wait()
        return value

    @event_handler("source", "happened")
    def on_event(self, payload):
        calls.append(payload)


@pytest.fixture
def target(rabbit_config, container_factory):
    """``target(**config)``: the running Target's config, on the test's broker."""
    global gate
    calls.clear()
    gate = eventlet.event.Event()

    def start(**config):
        config = {**rabbit_config, **config}
        container_factory(Target, config).start()
        return config

    yield start
    if not gate.ready():
        get_runtime().call(gate.send, None)


def test_a_compression_bomb_is_refused_in_process(target):
    config = target()
    attacker = RawClient(config["AMQP_URI"])
    headers = {"compression": "application/x-gzip"}
    attacker.request("echo", bomb(), correlation_id="bomb", headers=headers)
    attacker.request("echo", request_body("after"), correlation_id="after")
    replies = dict(attacker.replies(2))
    assert error_type(replies["bomb"]) == "MalformedRequest"
    assert replies["after"]["result"] == "after"
    assert calls == ["after"]


def test_an_allowed_compression_still_stops_at_the_size_limit(target):
    config = target(ACCEPT_COMPRESSION=["zlib"])
    attacker = RawClient(config["AMQP_URI"])
    headers = {"compression": "application/x-gzip"}
    attacker.request("echo", bomb(), correlation_id="bomb", headers=headers)
    small = zlib.compress(request_body("unzipped"))
    attacker.request("echo", small, correlation_id="small", headers=headers)
    replies = dict(attacker.replies(2))
    assert "decompresses to more than MAX_MESSAGE_SIZE" in replies["bomb"]["error"]["value"]
    assert replies["small"]["result"] == "unzipped"


@pytest.mark.parametrize("compression", ["zlib", "bzip2", "xz"])
def test_an_allowed_compression_within_the_limit_works(target, compression):
    config = target(ACCEPT_COMPRESSION=[compression])
    with ClusterRpcProxy(config, timeout=30, compression=compression) as cluster:
        assert cluster.target.echo("x" * 1000) == "x" * 1000


def test_a_compression_the_service_does_not_accept_is_refused(target):
    config = target(ACCEPT_COMPRESSION=["bzip2"])
    with (
        ClusterRpcProxy(config, timeout=30, compression="zlib") as cluster,
        pytest.raises(MalformedRequest, match="ACCEPT_COMPRESSION"),
    ):
        cluster.target.echo("zipped")
    assert calls == []


def test_broken_compressed_bodies_are_refused(target):
    config = target(ACCEPT_COMPRESSION=["zlib"])
    attacker = RawClient(config["AMQP_URI"])
    whole = zlib.compress(request_body("whole"))
    for cid, body in (("garbage", b"not zlib"), ("cut", whole[:-4]), ("trailing", whole + b"!")):
        attacker.request("echo", body, correlation_id=cid, headers={"compression": "zlib"})
    replies = dict(attacker.replies(3))
    assert {error_type(body) for body in replies.values()} == {"MalformedRequest"}
    assert calls == []


def test_an_oversized_request_and_reply_are_refused(target):
    config = target(MAX_MESSAGE_SIZE=MiB)
    attacker = RawClient(config["AMQP_URI"])
    attacker.request("echo", request_body("x" * MiB), correlation_id="big")
    assert error_type(attacker.replies(1)[0][1]) == "MalformedRequest"
    with ClusterRpcProxy(config, timeout=30) as cluster:
        with pytest.raises(MessageRefused, match="over MAX_MESSAGE_SIZE"):
            cluster.target.sized(2 * MiB)
        assert cluster.target.sized(10) == "x" * 10
    assert calls == []


def test_oversized_and_compressed_events_are_rejected(target):
    config = target(MAX_MESSAGE_SIZE=MiB)
    dispatch = event_dispatcher(config)
    dispatch("source", "happened", "x" * (2 * MiB))
    event_dispatcher(config, compression="zlib")("source", "happened", "zipped")
    dispatch("source", "happened", "plain")
    deadline = time.monotonic() + 30
    while "plain" not in calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls == ["plain"]  # the others refused, never handled


def test_calls_that_reuse_a_correlation_id_each_run(target):
    config = target()
    attacker = RawClient(config["AMQP_URI"])
    for n in range(3):
        attacker.request("echo", request_body(n), correlation_id="")
        attacker.request("echo", request_body(n + 100), correlation_id="")
    replies = attacker.replies(6)
    assert sorted(body["result"] for _, body in replies) == [0, 1, 2, 100, 101, 102]
    assert sorted(calls) == [0, 1, 2, 100, 101, 102]


def test_a_request_published_again_runs_once(target):
    config = target()
    attacker = RawClient(config["AMQP_URI"])
    attacker.request("held", request_body("once"), correlation_id="again")
    attacker.request("held", request_body("once"), correlation_id="again")  # joins the run
    attacker.request("held", request_body("other"), correlation_id="again")  # reused id
    deadline = time.monotonic() + 30
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    get_runtime().call(gate.send, None)
    replies = attacker.replies(2)
    assert sorted(body["result"] for _, body in replies) == ["once", "other"]
    attacker.request("held", request_body("once"), correlation_id="again")  # ran lately
    assert attacker.replies(1) == [("again", {"result": "once", "error": None})]
    assert sorted(calls) == ["once", "other"]


def test_a_true_redelivery_is_answered_once(rabbit_config, target, rabbit_manager, caplog):
    if rabbit_config["AMQP_URI"].startswith("memory"):
        pytest.skip("the embedded broker's connections cannot be cut from outside")
    caplog.set_level(logging.INFO, logger="sandbox.amqp.consume")
    config = target()
    attacker = RawClient(config["AMQP_URI"])
    attacker.request("held", request_body("held"), correlation_id="held")
    deadline = time.monotonic() + 30
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    # Cut the service's connections (ours are made per call): the request, unacked, is
    # delivered again, flagged redelivered, once the service is back.
    # The management API lists a connection some time after it opened.
    while "Reconnected to broker at" not in caplog.text and time.monotonic() < deadline:
        for connection in rabbit_manager.get_connections():
            if connection.get("vhost") == rabbit_config["vhost"]:
                rabbit_manager.delete_connection(connection["name"])
        time.sleep(0.1)
    assert "Reconnected to broker at" in caplog.text
    assert "guest:guest" not in caplog.text
    with ClusterRpcProxy(config, timeout=30) as cluster:
        assert cluster.target.echo("back") == "back"  # the redelivered copy came by now
    get_runtime().call(gate.send, None)
    assert [body["result"] for _, body in attacker.replies(1)] == ["held"]
    assert calls == ["held", "back"]


def test_an_unroutable_reply_is_logged(target, caplog):
    config = target()
    caplog.set_level(logging.WARNING, logger="sandbox.rpc")
    attacker = RawClient(config["AMQP_URI"])
    attacker.request("echo", request_body(1), correlation_id="lost", reply_to="nobody-listens")
    attacker.request("echo", request_body(2), correlation_id="found")
    attacker.replies(1)
    deadline = time.monotonic() + 10
    while "dropped a reply" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "dropped a reply nobody can receive: no queue takes reply_to 'nobody-listens'" in (
        caplog.text
    )


# --- config -------------------------------------------------------------------------------


def test_limits_come_from_config_with_safe_defaults():
    assert MessageLimits.from_config({}) == MessageLimits(10 * MiB, frozenset())
    limits = MessageLimits.from_config({"MAX_MESSAGE_SIZE": 5, "ACCEPT_COMPRESSION": ["gzip"]})
    assert limits == MessageLimits(5, frozenset({"application/x-gzip"}))
    for bad in ({"MAX_MESSAGE_SIZE": 0}, {"MAX_MESSAGE_SIZE": "10MB"}):
        with pytest.raises(ConfigurationError, match="MAX_MESSAGE_SIZE must be"):
            MessageLimits.from_config(bad)
    for bad in ({"ACCEPT_COMPRESSION": "zlib"}, {"ACCEPT_COMPRESSION": ["rar"]}):
        with pytest.raises(ConfigurationError, match="ACCEPT_COMPRESSION"):
            MessageLimits.from_config(bad)


def test_a_service_with_bad_limits_does_not_start(rabbit_config, container_factory):
    container = container_factory(Target, {**rabbit_config, "ACCEPT_COMPRESSION": ["rar"]})
    with pytest.raises(ConfigurationError, match="ACCEPT_COMPRESSION"):
        container.start()
