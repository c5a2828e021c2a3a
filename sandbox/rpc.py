"""RPC over AMQP, under Nameko's names: ``from sandbox.rpc import rpc, RpcProxy``.

The code lives in one module per concept: :mod:`sandbox.rpc_routes` (exchange and queue
names), :mod:`sandbox.rpc_serving` (``@rpc`` and the request consumer),
:mod:`sandbox.rpc_replies` (calls waiting for replies) and :mod:`sandbox.rpc_calling` (the
caller, the client, and the dependency providers that inject it). This module gathers the
names Nameko code imports from ``nameko.rpc``.
"""

from sandbox.rpc_calling import (
    Client,
    ClusterRpc,
    MethodProxy,
    Proxy,
    ReplyListener,
    RpcCaller,
    RpcClient,
    RpcProxy,
    ServiceProxy,
    ServiceRpc,
)
from sandbox.rpc_replies import ReplyConnectionLost, RpcReply
from sandbox.rpc_routes import (
    RPC_QUEUE_TEMPLATE,
    RPC_REPLY_QUEUE_TEMPLATE,
    RPC_REPLY_QUEUE_TTL,
    get_rpc_exchange,
)
from sandbox.rpc_serving import Rpc, RpcConsumer, rpc

__all__ = [
    "RPC_QUEUE_TEMPLATE",
    "RPC_REPLY_QUEUE_TEMPLATE",
    "RPC_REPLY_QUEUE_TTL",
    "Client",
    "ClusterRpc",
    "MethodProxy",
    "Proxy",
    "ReplyConnectionLost",
    "ReplyListener",
    "Rpc",
    "RpcCaller",
    "RpcClient",
    "RpcConsumer",
    "RpcProxy",
    "RpcReply",
    "ServiceProxy",
    "ServiceRpc",
    "get_rpc_exchange",
    "rpc",
]
