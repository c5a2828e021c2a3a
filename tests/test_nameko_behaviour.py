"""Core behaviour that matches Nameko 2.14.1's, one test per former difference."""

import threading

import eventlet
import kombu
import pytest
from amqp.exceptions import NotFound

from sandbox.amqp.connection import connect
from sandbox.amqp.publish import AmqpPublisher, UndeliverableMessage
from sandbox.containers import ServiceContainer, WorkerContext
from sandbox.contextdata import ContextDataProvider
from sandbox.events import EventDispatcher
from sandbox.exceptions import ConfigurationError, format_remote_traceback, serialize
from sandbox.messaging import HeaderEncoder, Publisher, consume
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.testing.services import dummy, entrypoint_hook, entrypoint_waiter
from sandbox.timer import timer


class Plain:
    name = "plain"

    @dummy
    def method(self):
        return "done"


# --- serializer config ----------------------------------------------------------------------


@pytest.mark.parametrize("config", [{"serializer": "nope"}, {"ACCEPT": ["json", "nope"]}])
def test_an_unknown_serializer_is_refused_at_container_creation(config):
    with pytest.raises(ConfigurationError, match='Please register a serializer for "nope" format'):
        ServiceContainer(Plain, config)


# --- serialized exceptions ------------------------------------------------------------------


class CannotStr:
    def __str__(self):
        raise RuntimeError("no text")


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


def test_serialize_gives_nameko_keys_and_values():
    # The values Nameko 2.14.1 gives for the same exceptions.
    assert serialize(ValueError(1, None, {2: b"ab"}, (3,))) == {
        "exc_type": "ValueError",
        "exc_path": "builtins.ValueError",
        "exc_args": ["1", "None", {"2": ["97", "98"]}, ["3"]],
        "value": "(1, None, {2: b'ab'}, (3,))",
    }
    assert serialize(Exception(CannotStr())) == {
        "exc_type": "Exception",
        "exc_path": "builtins.Exception",
        "exc_args": ["[__unicode__ failed]"],
        "value": "[__unicode__ failed]",
    }
    assert serialize(Unprintable("x"))["value"] == "[__unicode__ failed]"


def test_a_long_remote_traceback_keeps_its_start_and_end():
    text = format_remote_traceback(ValueError("start" + "x" * 100_000 + "end"))
    assert len(text) < 17_000  # fits in a reply header
    assert text.startswith("ValueError: start") and text.rstrip().endswith("end")
    assert "characters cut" in text


# --- worker context -------------------------------------------------------------------------


def test_origin_and_immediate_parent_call_ids(container_factory):
    container = container_factory(Plain, {"parent_calls_tracked": 0})
    (entrypoint,) = container.entrypoints
    root = WorkerContext(container, None, entrypoint)
    assert (root.origin_call_id, root.immediate_parent_call_id) == (None, None)
    child = WorkerContext(container, None, entrypoint, data={"call_id_stack": ["a.1", "b.2"]})
    # Tracking no parent calls shortens the stack sent on, not the chain received.
    assert child.call_id_stack == [child.call_id]
    assert (child.origin_call_id, child.immediate_parent_call_id) == ("a.1", "b.2")


# --- exchanges ------------------------------------------------------------------------------

orders = kombu.Exchange("orders", type="topic", durable=True)
audit = kombu.Queue("audit", exchange=kombu.Exchange("audit", type="fanout"), durable=True)


class Publishing:
    name = "publishing"
    dispatch = EventDispatcher(mandatory=True)
    publish = Publisher(exchange=orders, declare=[audit])

    @dummy
    def publish_to(self, exchange_name):
        self.publish("x", exchange=kombu.Exchange(exchange_name), routing_key="k", mandatory=True)

    @dummy
    def dispatch_event(self):
        self.dispatch("happened", {})


def exchange_exists(amqp_uri, name):
    def check():
        with connect(amqp_uri) as connection:
            try:
                connection.channel().exchange_declare(name, "topic", passive=True)
                return True
            except NotFound:
                return False

    return get_runtime().call(check)


@pytest.mark.parametrize("declare", [None, True])
def test_exchanges_are_declared_when_the_container_starts(
    rabbit_config, container_factory, declare
):
    config = {**rabbit_config, "DECLARE_EVENT_EXCHANGES": declare}
    container_factory(Publishing, config).start()
    uri = rabbit_config["AMQP_URI"]
    assert [exchange_exists(uri, name) for name in ("publishing.events", "orders", "audit")] == [
        True,
        True,
        True,
    ]


def test_event_exchange_not_declared_when_config_says_false(rabbit_config, container_factory):
    container = container_factory(Publishing, {**rabbit_config, "DECLARE_EVENT_EXCHANGES": False})
    container.start()
    assert not exchange_exists(rabbit_config["AMQP_URI"], "publishing.events")
    with pytest.raises(NotFound), entrypoint_hook(container, "dispatch_event") as dispatch:
        dispatch()


def test_mandatory_publish_to_a_missing_exchange_is_the_brokers_not_found(
    rabbit_config, container_factory
):
    with pytest.raises(NotFound) as missing:
        event_dispatcher(rabbit_config, mandatory=True)("nobody", "happened", {})
    assert missing.value.code == 404
    container = container_factory(Publishing, rabbit_config)
    container.start()
    with pytest.raises(NotFound), entrypoint_hook(container, "publish_to") as publish_to:
        publish_to("missing")
    # An exchange that exists with no queue for the message: unroutable, as before.
    with pytest.raises(UndeliverableMessage), entrypoint_hook(container, "dispatch_event") as hook:
        hook()


# --- container class ------------------------------------------------------------------------


class DelegatingContainer:
    """Nameko's container interface, by delegation rather than by subclassing."""

    calls = []

    def __init__(self, service_cls, config):
        self.inner = ServiceContainer(service_cls, config)
        self.service_name = self.inner.service_name

    def start(self):
        self.calls.append("start")
        self.inner.start()

    def stop(self):
        self.calls.append("stop")
        self.inner.stop()

    def kill(self):
        self.calls.append("kill")
        self.inner.kill()

    def wait(self):
        self.inner.wait()


def test_service_container_cls_needs_only_the_container_interface(runner_factory):
    DelegatingContainer.calls = []
    config = {"SERVICE_CONTAINER_CLS": f"{__name__}:DelegatingContainer"}
    runner = runner_factory(config, Plain)
    runner.start()
    (container,) = runner.containers
    with entrypoint_hook(container.inner, "method") as method:
        assert method() == "done"
    runner.stop()
    assert DelegatingContainer.calls == ["start", "stop"]


# --- timer ----------------------------------------------------------------------------------


def test_timer_with_interval_zero_runs_back_to_back(container_factory):
    ticks = []
    running = []
    enough = threading.Event()

    class BackToBack:
        name = "back_to_back"

        @timer(interval=0)
        def tick(self):
            running.append(1)
            ticks.append(len(running))  # how many ticks run at once
            eventlet.sleep(0)  # a turn of the hub: another tick would start now if one could
            running.pop()
            if len(ticks) >= 20:
                enough.set()

        @dummy
        def other(self):
            return len(ticks)

    container = container_factory(BackToBack)
    container.start()
    assert enough.wait(10)
    with entrypoint_hook(container, "other") as other:
        assert other() >= 20  # the hub still serves other entrypoints
    container.stop()
    assert set(ticks) == {1}


# --- entrypoint arguments -------------------------------------------------------------------


def test_sensitive_variables_is_the_old_name_of_sensitive_arguments(container_factory):
    with pytest.warns(DeprecationWarning, match="renamed to `sensitive_arguments`"):

        class Login:
            name = "login"

            @rpc(sensitive_variables=("password",))
            def login(self, user, password):
                pass

    (entrypoint,) = container_factory(Login).entrypoints
    assert entrypoint.sensitive_arguments == ("password",)


# --- context data in headers ----------------------------------------------------------------

jobs = kombu.Exchange("jobs", type="direct", durable=True)
jobs_queue = kombu.Queue("jobs", exchange=jobs, routing_key="job", durable=True)


class Reader:
    name = "reader"
    custom = ContextDataProvider("x-custom")
    language = ContextDataProvider("language")

    @consume(jobs_queue)
    def work(self, body):
        return self.custom, self.language


def test_headers_without_the_prefix_reach_the_context_data(rabbit_config, container_factory):
    container = container_factory(Reader, rabbit_config)
    container.start()
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"])
    headers = {"x-custom": "kept", "nameko.language": "fr"}
    with entrypoint_waiter(container, "work") as result:
        get_runtime().call(
            publisher.publish, "job", exchange=jobs, routing_key="job", headers=headers
        )
    assert result.get() == ("kept", "fr")


def test_unserialisable_context_data_is_dropped_with_a_warning():
    class Context:
        context_data = {"language": "en", "user_id": None}

    with pytest.warns(UserWarning, match="unserialisable header value"):
        headers = HeaderEncoder().get_message_headers(Context())
    assert headers == {"nameko.language": "en"}
