"""Nameko's names for objects sandbox already had: sandbox.amqp.UndeliverableMessage and
sandbox.rpc.MethodProxy, used as Nameko code uses them, on both brokers."""

import kombu
import pytest

import sandbox.amqp
from sandbox.amqp.publish import Publisher
from sandbox.rpc import MethodProxy, RpcProxy, ServiceProxy, rpc
from sandbox.runtime import get_runtime
from sandbox.testing.services import entrypoint_hook


def test_undeliverable_message_is_raised_and_caught_under_nameko_s_path(rabbit_config):
    assert sandbox.amqp.UndeliverableMessage is sandbox.amqp.publish.UndeliverableMessage
    publisher = Publisher(rabbit_config["AMQP_URI"], mandatory=True)
    exchange = kombu.Exchange("amq.direct", type="direct", passive=True)
    with pytest.raises(sandbox.amqp.UndeliverableMessage):
        get_runtime().call(publisher.publish, "lost", exchange=exchange, routing_key="nobody")


class Adder:
    name = "adder"

    @rpc
    def add(self, a, b):
        return a + b


class Caller:
    name = "caller"
    adder = RpcProxy("adder")

    @rpc
    def kinds(self):
        return isinstance(self.adder, ServiceProxy), isinstance(self.adder.add, MethodProxy)

    @rpc
    def add_async(self, a, b):
        reply = self.adder.add.call_async(a, b)
        return reply.result()


def test_proxy_method_is_a_method_proxy_with_call_async(rabbit_config, container_factory):
    container_factory(Adder, rabbit_config).start()
    caller = container_factory(Caller, rabbit_config)
    caller.start()
    with entrypoint_hook(caller, "kinds") as kinds:
        assert kinds() == (True, True)
    with entrypoint_hook(caller, "add_async") as add_async:
        assert add_async(2, 3) == 5


def test_nameko_rpc_s_module_names_are_in_sandbox_rpc():
    # nameko.rpc's module-level names, which Nameko code and tests import.
    import sandbox.rpc

    names = ["RPC_QUEUE_TEMPLATE", "RPC_REPLY_QUEUE_TEMPLATE", "RPC_REPLY_QUEUE_TTL"]
    names += ["get_rpc_exchange", "Rpc", "rpc", "RpcConsumer", "ReplyListener", "ClusterRpc"]
    names += ["ServiceRpc", "RpcProxy", "Client", "Proxy", "ServiceProxy", "MethodProxy"]
    assert [name for name in names if not hasattr(sandbox.rpc, name)] == []
    assert sandbox.rpc.RPC_QUEUE_TEMPLATE.format("greeter") == "rpc-greeter"
    assert sandbox.rpc.get_rpc_exchange({}).name == "nameko-rpc"
