"""RPC clients for code outside services; any thread may use them.

``with ClusterRpcProxy() as cluster: cluster.greeter.hello("Ada")``. A proxy keeps one
connection and one reply queue from ``start()`` to ``stop()``; requests go out on that
connection, and the sandbox runtime's hub thread reads the replies, so the calling thread needs
no eventlet of its own. A plain calling thread writes its request onto the socket itself when
the hub is not writing. While plain threads call, the hub steps aside and they read the
replies off the socket themselves, one thread at a time for all (``sandbox.amqp.thread_reader``);
while a green thread waits too, the hub reads and hands each plain thread its reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import eventlet.semaphore

from sandbox.amqp.connection import broker_errors
from sandbox.amqp.consume import AmqpConsumer
from sandbox.amqp.thread_reader import ThreadReader
from sandbox.config import config as global_config
from sandbox.messaging import consumer_for, publisher_for
from sandbox.rpc_calling import ReplyQueue, RpcCaller, RpcClient
from sandbox.rpc_replies import RpcReply
from sandbox.rpc_routes import client_options
from sandbox.runtime import get_runtime
from sandbox.utils import unique_id

REPLY_QUEUE_OWNER = "standalone_rpc_proxy"


class ClusterRpcProxy:
    """A client of every service: ``proxy.service.method(...)``, ``proxy["svc-name"]``.

    ``config`` defaults to the global ``sandbox.config``; ``context_data`` is sent with every
    call; ``timeout`` (seconds) bounds each call with RpcTimeout.
    """

    caller = f"{REPLY_QUEUE_OWNER}.call"  # what its calls' ids, and so the inspector, call it

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        context_data: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **publisher_options: Any,
    ):
        self.config = global_config if config is None else config
        self.context_data = dict(context_data or {})
        self.timeout = timeout
        self.publisher_options = client_options(publisher_options)
        self._caller: RpcCaller | None = None
        self._consumer: AmqpConsumer | None = None
        self._thread: Any = None
        # Guards start and stop, which run in the hub, against each other.
        self._lifecycle = eventlet.semaphore.Semaphore()

    def start(self) -> RpcClient:
        get_runtime().call(self._start)
        return RpcClient(self.send)

    def stop(self) -> None:
        get_runtime().call(self._stop)

    def __enter__(self) -> RpcClient:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _start(self) -> None:
        with self._lifecycle:
            if self._caller is not None:
                return
            config = self.config
            replies = ReplyQueue(REPLY_QUEUE_OWNER, config)
            replies.pending.reader = ThreadReader(replies.pending.idle)
            uri = self.publisher_options.get("uri")
            consumer = consumer_for(config, uri, thread_reader=replies.pending.reader)
            replies.consume_with(consumer.add_queue)
            thread = get_runtime().spawn(consumer.run)
            try:
                with broker_errors(consumer.amqp_uri):
                    consumer.wait_until_ready()
            except BaseException:
                thread.kill()
                consumer.close()
                raise
            self._consumer, self._thread = consumer, thread
            publisher = publisher_for(config, **self.publisher_options)
            self._caller = RpcCaller(consumer, publisher, replies, self.timeout)

    def _stop(self) -> None:
        with self._lifecycle:
            caller, self._caller = self._caller, None
            if caller is None:
                return
            self._thread.kill()
            self._consumer.close()
            caller.replies.fail_all(
                lambda: RuntimeError(f"{type(self).__name__} stopped before the reply came")
            )
            caller.replies.reader.close()

    def send(
        self,
        service_name: str,
        method_name: str,
        args: tuple,
        kwargs: dict,
        wait_sent: bool = False,
    ) -> RpcReply:
        """Send one request; what the clients ``start()`` returns call (see RpcCaller.send)."""
        if self._caller is None:
            raise RuntimeError(
                f"{type(self).__name__} is not running: use it in a `with` block, "
                "or call start() first (and not after stop())"
            )
        call_id = f"{self.caller}.{unique_id()}"
        context_data = {**self.context_data, "call_id_stack": [call_id]}
        return self._caller.send(service_name, method_name, args, kwargs, context_data, wait_sent)


class ServiceRpcProxy(ClusterRpcProxy):
    """A client of one service: ``with ServiceRpcProxy("greeter") as greeter: greeter.hello()``."""

    def __init__(self, service_name: str, *args: Any, **kwargs: Any):
        self.service_name = service_name
        super().__init__(*args, **kwargs)

    def start(self) -> RpcClient:
        return super().start()[self.service_name]


# Nameko 3's names.
ClusterRpcClient = ClusterRpcProxy
ServiceRpcClient = ServiceRpcProxy
