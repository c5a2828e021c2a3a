import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox import recorder
from sandbox.exceptions import IncorrectSignature, MethodNotFound
from sandbox.extensions import Entrypoint
from sandbox.records import (
    CALL,
    ERROR,
    EVENT,
    HTTP,
    MESSAGE,
    OK,
    RPC,
    TIMER,
    Recorder,
    entrypoint_kind,
    jsonable,
)
from sandbox.rpc import rpc
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.testing.services import dummy, entrypoint_hook, entrypoint_waiter
from sandbox.timer import timer
from sandbox.utils import REDACTED


class Service:
    name = "svc"

    @dummy
    def echo(self, value, times=1):
        return [value] * times

    @dummy
    def fail(self):
        raise ValueError("boom")

    @dummy(sensitive_arguments=("password", "profile.token"))
    def login(self, user, password, profile=None):
        return user

    @dummy
    def chain(self):
        return "parent"

    @timer(interval=3600, eager=True)
    def tick(self):
        return "tock"


@pytest.fixture
def rec():
    r = Recorder(size=5).start()
    yield r
    r.stop()


@pytest.fixture
def container(container_factory):
    c = container_factory(Service, {})
    c.start()
    return c


def call(container, method, *args, context_data=None, **kwargs):
    with entrypoint_hook(container, method, context_data=context_data) as hook:
        return hook(*args, **kwargs)


def test_a_worker_makes_one_record_with_request_response_and_timing(rec, container):
    call(container, "echo", "hi", times=2, context_data={"language": "fr"})
    record = next(r for r in rec.records() if r.entrypoint == "echo")
    assert (record.kind, record.target, record.status) == (CALL, "svc.echo", OK)
    assert record.request == {"args": ["hi"], "kwargs": {"times": 2}}
    assert record.response == ["hi", "hi"]
    assert record.headers["language"] == "fr"
    assert record.call_id.startswith("svc.echo.") and record.call_id_stack == [record.call_id]
    assert record.duration >= 0 and record.time > 0
    assert "svc.echo" in record.summary() and "ok" in record.summary()


def test_an_error_keeps_type_message_and_traceback(rec, container):
    with pytest.raises(ValueError):
        call(container, "fail")
    record = next(r for r in rec.records() if r.entrypoint == "fail")
    assert record.status == ERROR
    assert record.error["type"] == "ValueError" and record.error["message"] == "boom"
    assert 'raise ValueError("boom")' in record.error["traceback"]
    assert record.response == {"error": record.error}


def test_sensitive_arguments_are_redacted(rec, container):
    call(container, "login", "ada", "s3cret", profile={"token": "t0k", "age": 36})
    record = next(r for r in rec.records() if r.entrypoint == "login")
    assert record.request["kwargs"] == {
        "user": "ada",
        "password": REDACTED,
        "profile": {"token": REDACTED, "age": 36},
    }
    assert "s3cret" not in record.text() and "t0k" not in record.text()


def test_parent_call_is_the_source_and_the_stack_groups_the_chain(rec, container):
    call(container, "chain")
    parent = next(r for r in rec.records() if r.entrypoint == "chain")
    call(container, "echo", 1, context_data={"call_id_stack": [parent.call_id]})
    child = rec.records()[-1]
    assert child.source == "svc.chain"
    assert child.origin_call_id == parent.call_id


def test_timer_ticks_are_timer_records(container_factory, rec):
    c = container_factory(Service, {})
    with entrypoint_waiter(c, "tick"):
        c.start()
    assert any(r.kind == TIMER and r.target == "svc.tick" for r in rec.records())


def test_kind_is_what_the_entrypoint_declares_never_its_class_name():
    from sandbox.rpc import Rpc

    assert entrypoint_kind(type("MyRpc", (Rpc,), {})("method")) == RPC
    # A class of one's own is a CALL whatever its name, unless it says otherwise.
    assert entrypoint_kind(type("Timer", (Entrypoint,), {})()) == CALL
    assert entrypoint_kind(type("EventHandler", (Entrypoint,), {})()) == CALL
    assert entrypoint_kind(type("Mine", (Entrypoint,), {"record_kind": EVENT})()) == EVENT
    assert entrypoint_kind(Entrypoint()) == CALL


def test_the_buffer_keeps_the_last_size_records(rec, container):
    for i in range(8):
        call(container, "echo", i)
    values = [r.request["args"][0] for r in rec.records()]
    assert values == [3, 4, 5, 6, 7]
    rec.clear()
    assert len(rec) == 0


def test_filters(rec, container):
    call(container, "echo", "needle")
    with pytest.raises(ValueError):
        call(container, "fail")
    records = rec.records()
    assert [r.entrypoint for r in records if r.matches(status=ERROR)] == ["fail"]
    assert [r.entrypoint for r in records if r.matches(text="NEEDLE")] == ["echo"]
    assert [r.entrypoint for r in records if r.matches(service="svc", kind=CALL)] == [
        "echo",
        "fail",
    ]
    assert not any(r.matches(service="other") for r in records)


def test_subscribers_get_each_record_once_per_batch(rec, container):
    batches = []
    # Flushed by hand below: the batch is then whatever the calls pushed, on any machine.
    subscription = rec.subscribe(batches.append, interval=3600)
    for i in range(20):
        call(container, "echo", i)
    subscription.flush()
    subscription.cancel()
    (batch,) = batches
    # Each record is in the batch once although it started and finished in it.
    assert len({id(record) for record in batch}) == len(batch) == subscription.delivered
    echoed = [record.result for record in batch if record.entrypoint == "echo"]
    assert echoed == [[i] for i in range(20)]


def test_http_request_completes_the_http_workers_record(rec):
    request = Request(EnvironBuilder(method="POST", path="/items", json={"a": 1}).get_environ())
    response = Response('{"id": 7}', 201, mimetype="application/json")
    recorder.notify(
        "http_request",
        {
            "method": "POST",
            "path": "/items",
            "status": 201,
            "duration": 0.002,
            "call_id": None,
            "request": request,
            "response": response,
        },
    )
    record = rec.records()[-1]
    assert (record.kind, record.code, record.status) == (HTTP, 201, OK)
    assert record.request == {"method": "POST", "url": "http://localhost/items", "body": {"a": 1}}
    assert record.response["body"] == {"id": 7}
    assert record.curl() == (
        "curl -X POST http://localhost/items -H 'Content-Type: application/json' "
        "--data-raw '{\"a\": 1}'"
    )


def test_published_events_and_messages_are_recorded_but_not_rpc_traffic(rec):
    headers = {"nameko.call_id_stack": ["orders.place.1"]}
    recorder.notify(
        "message_published",
        {
            "exchange": "orders.events",
            "routing_key": "placed",
            "headers": headers,
            "payload": 1,
            "kind": "event",
        },
    )
    recorder.notify("message_published", {"exchange": "jobs", "routing_key": "x", "payload": 2})
    recorder.notify(
        "message_published",
        {"exchange": "nameko-rpc", "routing_key": "a.b", "kind": "rpc-request", "reply_to": "q"},
    )
    # A message of one's own that carries reply_to and a correlation id is still a message.
    recorder.notify(
        "message_published",
        {"exchange": "jobs", "routing_key": "y", "reply_to": "me", "correlation_id": "1"},
    )
    event, message, own = rec.records()
    assert own.kind == MESSAGE
    assert (event.kind, event.source, event.target, event.request) == (
        EVENT,
        "orders.place",
        "orders.events:placed",
        1,
    )
    assert event.origin_call_id == "orders.place.1"
    assert (message.kind, message.request) == (MESSAGE, 2)


def test_jsonable_renders_anything():
    assert jsonable({"b": b"bytes", "t": (1, {2}), "o": object}) == {
        "b": "bytes",
        "t": [1, [2]],
        "o": repr(object),
    }


class Vault:
    name = "vault"

    @rpc
    def open(self, user, password):
        return user

    @rpc(sensitive_arguments=("password",))
    def unlock(self, password):
        return True


def test_rpc_calls_refused_before_a_worker_runs_are_recorded(rec, rabbit_config, container_factory):
    container_factory(Vault, rabbit_config).start()
    with ClusterRpcProxy(rabbit_config) as cluster:
        with pytest.raises(MethodNotFound):
            cluster.vault.missing(1, key="x")
        with pytest.raises(IncorrectSignature):
            cluster.vault.open("ada")
        with pytest.raises(IncorrectSignature):
            cluster.vault.unlock("secret", "extra")
    missing, wrong, hidden = [r for r in rec.records() if r.kind == RPC]
    assert (missing.target, missing.status, missing.error["type"]) == (
        "vault.missing",
        ERROR,
        "MethodNotFound",
    )
    assert (missing.args, missing.kwargs) == ((1,), {"key": "x"})
    assert missing.source == "standalone_rpc_proxy.call" and missing.call_id_stack
    assert (wrong.target, wrong.error["type"], wrong.args) == (
        "vault.open",
        "IncorrectSignature",
        ("ada",),
    )
    assert "password" in wrong.error["message"]
    assert hidden.args == () and "secret" not in str(hidden.kwargs)
