"""Hostile AMQP input: whatever lands on a service's RPC or event queue, the service answers
what it can, rejects the rest, and keeps serving everybody else."""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import threading
import uuid

import eventlet.event
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polling import wait_until
from reliability_tools import HOSTILE, RawAmqp

from sandbox.events import event_handler
from sandbox.extensions import DependencyProvider
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy, ServiceRpcProxy

# What a service may answer a request it cannot run with.
REQUEST_ERRORS = {"MalformedRequest", "MethodNotFound", "IncorrectSignature"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def request_body(args: list, kwargs: dict) -> bytes:
    return json.dumps({"args": args, "kwargs": kwargs}).encode()


bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(
        request_body,
        st.lists(json_values, max_size=3),
        st.dictionaries(st.sampled_from(["value", "other", ""]), json_values, max_size=2),
    ),
    # Nesting past the recursion limit, inside a request and on its own.
    st.integers(1, 5000).map(lambda d: b'{"args": [' + nested(d) + b'], "kwargs": {}}'),
    st.integers(1000, 100_000).map(nested),
    st.just(b'{"args": ["\xff\xfe invalid utf-8"], "kwargs": {}}'),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/x-python-serialize",
        "application/x-yaml",
        "application/x-msgpack",
        "application/data",
        "text/plain",
        "",
    ]
)
content_encodings = st.sampled_from(["utf-8", "binary", "latin-1", "utf-16", "no-such-codec"])
# Header values an AMQP table can carry, under the names sandbox reads context data from.
header_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**62), 2**62)
    | st.text(max_size=20)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
headers = st.dictionaries(
    st.sampled_from(
        [
            "nameko.call_id_stack",
            "nameko.language",
            "nameko.user_id",
            "nameko.x",
            "nameko.traceparent",  # read by sandbox.tracing
            "traceparent",
            "other",
        ]
    ),
    header_values,
    max_size=3,
)


def on_a_shallow_stack(check, *args) -> bool:
    """``check(*args)`` in a thread of its own. The service reads a body in a shallow green
    thread; under this test's deep stack a nesting the service could read would be too deep
    here, and a valid call would look invalid."""
    verdict = []
    thread = threading.Thread(target=lambda: verdict.append(check(*args)))
    thread.start()
    thread.join()
    return verdict == [True]


def body_of_a_valid_call(body: bytes, encoding: str, result) -> bool:
    """Whether ``body``, read as text in ``encoding`` (or raw, when that fails), is a call of
    ``echo(value)`` that returns ``result``."""
    return on_a_shallow_stack(_is_a_call_returning, body, encoding, result)


def _is_a_call_returning(body: bytes, encoding: str, result) -> bool:
    readings = [body]
    with contextlib.suppress(LookupError, UnicodeDecodeError):
        readings.insert(0, body.decode(encoding))
    for reading in readings:
        try:
            call = json.loads(reading)
        except (ValueError, RecursionError):
            continue
        if not isinstance(call, dict):
            continue
        args, kwargs = call.get("args"), call.get("kwargs")
        if args == [result] and kwargs == {} or args == [] and kwargs == {"value": result}:
            return True
    return False


class Echo:
    name = "hostile_echo"

    @rpc
    def echo(self, value):
        return value


@pytest.fixture
def echo(rabbit_config, container_factory):
    container = container_factory(Echo, rabbit_config)
    container.start()
    with ServiceRpcProxy("hostile_echo", rabbit_config, timeout=10) as proxy:
        yield container, proxy


def test_forged_call_id_stacks_start_a_new_chain(echo, raw_amqp):
    container, proxy = echo
    for stack in (5, "abc", {"x": 1}, [1, None, {"a": 1}], ["ok", 2]):
        reply = raw_amqp.request(
            request_body(["hi"], {}),
            routing_key="hostile_echo.echo",
            correlation_id=str(uuid.uuid4()),
            headers={"nameko.call_id_stack": stack},
        )
        assert reply == {"result": "hi", "error": None}
    assert container.started
    assert proxy.echo("canary") == "canary"


@HOSTILE
@given(body=bodies, content_type=content_types, encoding=content_encodings, headers=headers)
def test_any_request_gets_one_reply_and_the_service_keeps_serving(
    echo, raw_amqp, body, content_type, encoding, headers
):
    container, proxy = echo
    reply = raw_amqp.request(
        body,
        routing_key="hostile_echo.echo",
        correlation_id=str(uuid.uuid4()),
        content_type=content_type,
        content_encoding=encoding,
        headers=headers,
    )
    assert set(reply) == {"result", "error"}
    if reply["error"] is not None:
        assert reply["error"]["exc_type"] in REQUEST_ERRORS
    else:
        assert content_type == "application/json"  # nothing else is ever deserialized
        assert body_of_a_valid_call(body, encoding, reply["result"])
    assert container.started
    assert proxy.echo("canary") == "canary"


def test_a_correlation_id_another_client_used_gets_its_own_answer(echo, raw_amqp):
    # Correlation ids need only be unique per client (some count 1, 2, 3...): a request
    # reusing another client's id, by chance or forged, runs, and never gets that client's
    # result.
    other = RawAmqp(raw_amqp.uri, reply_to="other-client-replies")
    try:
        for n in range(3):
            mine = raw_amqp.request(
                request_body([f"mine {n}"], {}),
                routing_key="hostile_echo.echo",
                correlation_id=str(n),
            )
            theirs = other.request(
                request_body([f"theirs {n}"], {}),
                routing_key="hostile_echo.echo",
                correlation_id=str(n),
            )
            assert (mine["result"], theirs["result"]) == (f"mine {n}", f"theirs {n}")
    finally:
        other.close()


def test_requests_nobody_can_answer_are_dropped_not_requeued(echo, raw_amqp, caplog):
    container, proxy = echo
    caplog.set_level(logging.WARNING, logger="sandbox")
    raw_amqp.publish(request_body(["no reply_to"], {}), routing_key="hostile_echo.echo")
    # A reply_to naming the service's own binding routes the reply back in as a request:
    # that one has no reply_to, so it is dropped there instead of going round for ever.
    # Two rejections then: the request without reply_to, and that reply.
    raw_amqp.publish(
        request_body(["loop"], {}),
        routing_key="hostile_echo.echo",
        reply_to="hostile_echo.echo",
        correlation_id="loop",
    )
    wait_until(lambda: len(rejections(caplog)) >= 2)
    assert proxy.echo("canary") == "canary"
    assert raw_amqp.message_count("rpc-hostile_echo") == 0
    assert len(rejections(caplog)) == 2
    assert container.started


def rejections(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]


class Gated:
    name = "hostile_gated"
    gate = eventlet.event.Event()

    @rpc
    def wait(self, value):
        Gated.gate.wait()
        return value


@pytest.fixture
def gated(rabbit_config, container_factory):
    Gated.gate = eventlet.event.Event()
    container_factory(Gated, rabbit_config).start()
    yield
    if not Gated.gate.ready():
        get_runtime().call(Gated.gate.send, None)


def test_forged_replies_never_reach_another_callers_pending_call(
    rabbit_config, echo, gated, raw_amqp, published, caplog
):
    caplog.set_level(logging.DEBUG, logger="sandbox.rpc")
    with ClusterRpcProxy(rabbit_config, timeout=10) as victim:
        assert victim.hostile_echo.echo("answered") == "answered"
        pending = victim.hostile_gated.wait.call_async("legit")
        requests = [m for m in published if m["kind"] == "rpc-request"]
        reply_to, answered = requests[-1]["reply_to"], requests[0]["correlation_id"]

        # An unknown id, a replayed one, none: sent through a service, and straight to the
        # victim's reply queue, pickled too.
        forged_ids = [str(uuid.uuid4()), answered, ""]
        for correlation_id in forged_ids:
            raw_amqp.publish(
                request_body(["forged"], {}),
                routing_key="hostile_echo.echo",
                reply_to=reply_to,
                correlation_id=correlation_id,
            )
            raw_amqp.publish(
                b'{"result": "forged", "error": null}',
                routing_key=reply_to,
                correlation_id=correlation_id,
            )
        raw_amqp.publish(
            pickle.dumps({"result": "forged", "error": None}),
            routing_key=reply_to,
            correlation_id=str(uuid.uuid4()),
            content_type="application/x-python-serialize",
            content_encoding="binary",
        )
        wait_until(lambda: len(dropped_replies(caplog)) >= 2 * len(forged_ids) + 1)

        get_runtime().call(Gated.gate.send, None)
        assert pending.result() == "legit"
        assert victim.hostile_echo.echo("after") == "after"


def dropped_replies(caplog) -> list[str]:
    return [r for r in caplog.records if r.getMessage().startswith("dropped a reply")]


class Context(DependencyProvider):
    """The worker's context data: what the message's ``nameko.`` headers carried."""

    def get_dependency(self, worker_ctx):
        return worker_ctx.data


class Listener:
    name = "hostile_listener"
    context = Context()
    handled: list = []

    @event_handler("hostile_source", "happened")
    def on_event(self, payload):
        Listener.handled.append(self.context.get("probe"))


EVENT_QUEUE = "evt-hostile_source-happened--hostile_listener.on_event"
# JSON is the only serializer accepted; kombu hands over "application/data" bodies as they
# are, undecoded, and so does an empty content type.
DELIVERED = ("application/json", "application/data", "")


@pytest.fixture
def listener(rabbit_config, container_factory):
    Listener.handled = []
    container = container_factory(Listener, rabbit_config)
    container.start()
    return container


def plain_json(body: bytes) -> bool:
    return on_a_shallow_stack(_reads_as_json, body)


def _reads_as_json(body: bytes) -> bool:
    try:
        json.loads(body.decode())
    except (ValueError, RecursionError):
        return False
    return True


@HOSTILE
@given(body=bodies, content_type=content_types, encoding=content_encodings, headers=headers)
def test_any_event_is_handled_once_or_dropped_and_the_handler_keeps_serving(
    rabbit_config, listener, raw_amqp, body, content_type, encoding, headers
):
    probe = str(uuid.uuid4())
    raw_amqp.publish(
        body,
        exchange="hostile_source.events",
        routing_key="happened",
        content_type=content_type,
        content_encoding=encoding,
        headers={**headers, "nameko.probe": probe},
    )
    if content_type == "application/json" and encoding == "utf-8" and plain_json(body):
        wait_until(lambda: probe in Listener.handled)
    canary = dispatch_canary(rabbit_config)
    if content_type not in DELIVERED:
        assert probe not in Listener.handled
    assert Listener.handled.count(probe) <= 1
    assert Listener.handled.count(canary) == 1
    assert listener.started
    assert raw_amqp.message_count(EVENT_QUEUE) == 0


def dispatch_canary(rabbit_config) -> str:
    """An event any handler must handle; returns once it is."""
    canary = str(uuid.uuid4())
    event_dispatcher(rabbit_config, headers={"nameko.probe": canary})(
        "hostile_source", "happened", {"canary": True}
    )
    wait_until(lambda: canary in Listener.handled)
    return canary
