import re
import time

import eventlet.event
import kombu
import pytest

from sandbox.contextdata import Language
from sandbox.exceptions import (
    IncorrectSignature,
    MethodNotFound,
    RemoteError,
    RpcTimeout,
    UnknownService,
)
from sandbox.extensions import DependencyProvider
from sandbox.rpc import ClusterRpc, RpcProxy, ServiceRpc, rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ClusterRpcProxy, ServiceRpcProxy
from sandbox.testing.services import entrypoint_hook
from sandbox.testing.utils import get_container


class WorkerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


class Z:
    name = "z"
    ctx = WorkerContext()
    language = Language()

    @rpc
    def stack(self):
        return self.ctx.call_id_stack

    @rpc
    def context(self):
        return {"language": self.language, "auth": self.ctx.data.get("auth")}

    @rpc
    def echo(self, value, suffix=""):
        return f"{value}{suffix}"

    @rpc
    def fail(self, message):
        raise ValueError(message)

    @rpc
    def unserializable(self):
        return object()


class Y:
    name = "y"
    z = RpcProxy("z")

    @rpc
    def stack(self):
        return self.z.stack()

    @rpc
    def context(self):
        return self.z.context()


class X:
    name = "x"
    y = ServiceRpc("y")

    @rpc
    def stack(self):
        return self.y.stack()


def test_call_id_stack_grows_along_a_chain_of_calls(rabbit_config, runner_factory):
    runner = runner_factory(rabbit_config, X, Y, Z)
    runner.start()
    with entrypoint_hook(get_container(runner, X), "stack") as stack:
        x_call, y_call, z_call = stack()
    assert re.fullmatch(r"x\.stack\.[0-9a-f-]{36}", x_call)
    assert re.fullmatch(r"y\.stack\.[0-9a-f-]{36}", y_call)
    assert re.fullmatch(r"z\.stack\.[0-9a-f-]{36}", z_call)

    with ClusterRpcProxy() as cluster:
        standalone_call, *services = cluster.x.stack()
    assert standalone_call.startswith("standalone_rpc_proxy.call.")
    assert [call.split(".")[0] for call in services] == ["x", "y", "z"]


def test_context_data_travels_with_every_call(rabbit_config, runner_factory):
    runner_factory(rabbit_config, Y, Z).start()
    context_data = {"language": "fr-fr", "auth": {"user": "ada"}}
    with ClusterRpcProxy(context_data=context_data) as cluster:
        assert cluster.y.context() == context_data


def test_arguments_and_results(rabbit_config, container_factory):
    container_factory(Z, rabbit_config).start()
    with ServiceRpcProxy("z", rabbit_config) as z:
        assert z.echo("hi") == "hi"
        assert z.echo("hi", suffix="!") == "hi!"
        assert z["echo"](value="a", suffix="b") == "ab"


def test_async_calls_run_concurrently(rabbit_config, container_factory):
    container_factory(Z, rabbit_config).start()
    with ClusterRpcProxy(rabbit_config) as cluster:
        replies = [cluster.z.echo.call_async(n) for n in range(20)]
        assert [reply.result() for reply in reversed(replies)] == [
            str(n) for n in reversed(range(20))
        ]


def test_remote_error_carries_type_message_and_traceback(rabbit_config, container_factory):
    container_factory(Z, rabbit_config).start()
    with ServiceRpcProxy("z", rabbit_config) as z:
        with pytest.raises(RemoteError) as caught:
            z.fail("boom")
        assert z.echo("still serving") == "still serving"
    error = caught.value
    assert (error.exc_type, error.value) == ("ValueError", "boom")
    assert str(error) == "ValueError boom"
    assert "raise ValueError(message)" in error.traceback


def test_bad_requests_come_back_as_instances(rabbit_config, container_factory):
    container_factory(Z, rabbit_config).start()
    with ServiceRpcProxy("z", rabbit_config) as z:
        with pytest.raises(MethodNotFound, match="nosuchmethod"):
            z.nosuchmethod()
        with pytest.raises(IncorrectSignature, match="missing a required argument"):
            z.echo()
        with pytest.raises(RemoteError) as caught:
            z.unserializable()
    assert caught.value.exc_type == "UnserializableValueError"


def test_unknown_service_fails_fast_despite_a_catch_all_binding(
    rabbit_config, container_factory, amqp_broker
):
    container_factory(Z, rabbit_config).start()  # the rpc exchange exists
    amqp_broker.bind_catch_all()
    with ClusterRpcProxy(rabbit_config, timeout=20) as cluster:
        started = time.monotonic()
        with pytest.raises(UnknownService, match="Unknown service `nobody`"):
            cluster.nobody.method()
        assert time.monotonic() - started < 10  # far from the timeout
        with pytest.raises(UnknownService):
            cluster.nobody.method.call_async()
    # The calls were refused before sending: nothing reached the catch-all queue.
    assert amqp_broker.message_count("catch-all") == 0


release = eventlet.event.Event()


class Slow:
    name = "slow"

    @rpc
    def wait(self):
        release.wait()
        return "done"


class Impatient:
    name = "impatient"
    slow = RpcProxy("slow", timeout=0.2)

    @rpc
    def ask(self):
        return self.slow.wait()


@pytest.fixture
def slow_release():
    global release
    release = eventlet.event.Event()
    yield
    get_runtime().call(release.send, None)


def test_timeouts(rabbit_config, runner_factory, slow_release):
    runner_factory(rabbit_config, Slow, Impatient).start()
    with ClusterRpcProxy(rabbit_config, timeout=0.2) as cluster:
        with pytest.raises(RpcTimeout):
            cluster.slow.wait()
        reply = cluster.slow.wait.call_async()
        with pytest.raises(RpcTimeout):
            reply.result(timeout=0.1)
        # The in-service proxy of Impatient has its own timeout.
        with pytest.raises(RemoteError) as caught:
            cluster.impatient.ask.call_async().result(timeout=30)
    assert caught.value.exc_type == "RpcTimeout"


class Cluster:
    name = "cluster"
    services = ClusterRpc(timeout=30)

    @rpc
    def call(self, service, method, *args):
        return self.services[service][method](*args)


def test_cluster_rpc_reaches_any_service(rabbit_config, runner_factory):
    runner_factory(rabbit_config, Cluster, Z).start()
    with ServiceRpcProxy("cluster", rabbit_config) as cluster:
        assert cluster.call("z", "echo", "via cluster") == "via cluster"
        with pytest.raises(RemoteError) as caught:
            cluster.call("nobody", "method")
    assert caught.value.exc_type == "UnknownService"


class Lonely:
    """One worker only: it must still get the reply of the call it is making."""

    name = "lonely"
    z = RpcProxy("z", timeout=30)

    @rpc
    def relay(self, value):
        return self.z.echo(value)


def test_busy_workers_do_not_block_the_consumer(rabbit_config, container_factory):
    container_factory(Z, rabbit_config).start()
    container_factory(Lonely, {**rabbit_config, "max_workers": 1}).start()
    with ServiceRpcProxy("lonely", rabbit_config, timeout=30) as lonely:
        replies = [lonely.relay.call_async(n) for n in range(5)]
        assert [reply.result() for reply in replies] == ["0", "1", "2", "3", "4"]


def test_client_publisher_options_shape_the_requests(rabbit_config, amqp_broker):
    exchange = kombu.Exchange("nameko-rpc", type="topic", durable=True)
    probe = kombu.Queue("rpc-probe", exchange, "probe.*")
    amqp_broker.run(lambda channel: probe(channel).declare())
    options = {
        "priority": 3,
        "expiration": 30,
        "delivery_mode": "transient",
        "headers": {"tenant": "a"},
        "compression": "zlib",
        "routing_key": "ignored",  # a client sets its own
    }
    with ClusterRpcProxy(rabbit_config, context_data={"language": "fr"}, **options) as cluster:
        reply = cluster.probe.ping.call_async(1)
    request = amqp_broker.run(lambda channel: probe(channel).get(no_ack=True))
    assert request.decode() == {"args": [1], "kwargs": {}}
    assert request.delivery_info["routing_key"] == "probe.ping"
    properties = request.properties
    assert (properties["priority"], properties["expiration"]) == (3, "30000")
    assert properties["delivery_mode"] == 1
    assert properties["correlation_id"] == reply.correlation_id
    assert request.headers["tenant"] == "a"
    assert request.headers["nameko.language"] == "fr"
    assert request.headers["compression"] == "application/x-gzip"


def test_replies_to_requests_read_together_leave_together(
    rabbit_config, container_factory, monkeypatch
):
    if rabbit_config["AMQP_URI"].startswith("memory"):
        pytest.skip("the embedded broker writes no frames")
    from sandbox.amqp.frame_writer import FrameWriter

    ended_soon = []
    batch = FrameWriter.batch

    def recording(writer, soon=False):
        ended_soon.append(soon)
        return batch(writer, soon)

    monkeypatch.setattr(FrameWriter, "batch", recording)
    container_factory(Z, rabbit_config).start()
    with ClusterRpcProxy(rabbit_config, timeout=30) as cluster:
        assert cluster.z.echo("alone") == "alone"
        # A request that came by itself is answered at once, in a write of its own.
        assert ended_soon == [False]
        burst = get_runtime().call(lambda: [cluster.z.echo.call_async(n) for n in range(20)])
        assert [reply.result() for reply in burst] == [str(n) for n in range(20)]
    # Sent back to back, some came in one read: their replies waited for the turn's end.
    assert len(ended_soon) == 21 and any(ended_soon)
