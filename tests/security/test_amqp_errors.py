"""Callers while the broker is down get BrokerUnavailable: one line, naming the broker without
its password, from RPC calls, event dispatch and publishing, in services and standalone."""

import uuid

import pytest

from sandbox.events import EventDispatcher
from sandbox.exceptions import BrokerUnavailable
from sandbox.rpc import ServiceRpc, rpc
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.testing.utils import find_free_port

PASSWORD = "s3cr3t-pw"
# Nobody listens there: RabbitMQ is down, as far as these clients can tell.
DOWN = f"amqp://guest:{PASSWORD}@127.0.0.1:{find_free_port()}/"
FAST = {"max_retries": 1, "interval_start": 0, "interval_step": 0}


def assert_names_the_broker(exc: BaseException, uri: str = DOWN) -> None:
    message = str(exc)
    assert uri.rpartition("@")[2].rstrip("/") in message
    assert PASSWORD not in message and "\n" not in message
    assert isinstance(exc, ConnectionError)


def test_a_standalone_proxy_raises_broker_unavailable():
    with pytest.raises(BrokerUnavailable) as raised:
        ClusterRpcProxy({"AMQP_URI": DOWN, "TRANSPORT_OPTIONS": FAST}).start()
    assert_names_the_broker(raised.value)


def test_a_standalone_dispatch_raises_broker_unavailable():
    dispatch = event_dispatcher({"AMQP_URI": DOWN}, retry_policy=FAST)
    with pytest.raises(BrokerUnavailable) as raised:
        dispatch("source", "happened", {"n": 1})
    assert_names_the_broker(raised.value)


class Caller:
    name = "caller"

    remote = ServiceRpc("target", uri=DOWN)

    @rpc
    def call(self):
        try:
            self.remote.echo(1)
        except Exception as exc:
            return [type(exc).__name__, str(exc)]


class Dispatcher:
    name = "dispatcher"

    dispatch = EventDispatcher(uri=DOWN, retry_policy=FAST)

    @rpc
    def ping(self):
        return "pong"


def test_a_call_from_a_service_raises_broker_unavailable(rabbit_config, container_factory):
    container_factory(Caller, rabbit_config).start()
    with ClusterRpcProxy(rabbit_config, timeout=30) as cluster:
        name, message = cluster.caller.call()
    assert name == "BrokerUnavailable"
    assert_names_the_broker(BrokerUnavailable(message))


def test_a_service_that_dispatches_to_a_broker_down_fails_to_start(
    rabbit_config, container_factory
):
    container = container_factory(Dispatcher, rabbit_config)
    with pytest.raises(BrokerUnavailable) as raised:
        container.start()
    assert_names_the_broker(raised.value)


def test_a_broker_lost_after_start_raises_broker_unavailable(rabbit_manager):
    vhost = f"sandbox-security-{uuid.uuid4().hex[:12]}"
    rabbit_manager.create_vhost(vhost)
    rabbit_manager.set_vhost_permissions(vhost, "guest", ".*", ".*", ".*")
    uri = rabbit_manager.uri_for(vhost)
    config = {"AMQP_URI": uri, "TRANSPORT_OPTIONS": FAST}
    with ClusterRpcProxy(config, timeout=30) as cluster:
        rabbit_manager.delete_vhost(vhost)  # its connections go, and none come back
        with pytest.raises(BrokerUnavailable) as raised:
            cluster.target.echo(1)
        dispatch = event_dispatcher(config, retry_policy=FAST)
        with pytest.raises(BrokerUnavailable):
            dispatch("source", "happened", 1)
    assert_names_the_broker(raised.value, uri)
