"""Tools of the reliability tests: green load generators, a raw AMQP client, process memory."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.event
import kombu
from hypothesis import HealthCheck, settings
from jupyter_client.manager import start_new_kernel

from sandbox.amqp.connection import close_quietly, connect
from sandbox.amqp.consume import AmqpConsumer
from sandbox.runtime import get_runtime

# Hypothesis runs many examples against one running service; the fixtures are shared on
# purpose, and no example database is written into the checkout.
HOSTILE = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def green_callers(count: int, caller: Callable[[int], Any]) -> list[Any]:
    """``caller(i)`` for each i in range(count), all at once in green threads of the hub.

    Callers in the hub are what a service calling another looks like, and cost no OS thread
    switch per call, so the load measures sandbox rather than the client.
    """

    def run() -> list[Any]:
        pool = eventlet.GreenPool(count)
        threads = [pool.spawn(caller, i) for i in range(count)]
        try:
            return [thread.wait() for thread in threads]
        finally:
            for thread in threads:
                thread.kill()

    return get_runtime().call(run)


def memory_footprint() -> tuple[int, int]:
    """``(resident bytes, live objects)`` of this process after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE"), len(gc.get_objects())


class RawAmqp:
    """An AMQP client that sends messages exactly as given (any body, content type, headers,
    reply_to, correlation id) over one connection, and collects the replies to its own queue.
    """

    def __init__(self, uri: str, reply_to: str = "raw-client-replies"):
        self.uri = uri
        self.reply_to = reply_to
        self._waiting: dict[str, eventlet.event.Event] = {}
        get_runtime().call(self._open)

    def _open(self) -> None:
        self.connection = connect(self.uri)
        self.producer = kombu.Producer(self.connection.channel(), auto_declare=False)
        rpc_exchange = kombu.Exchange("nameko-rpc", type="topic", durable=True)
        replies = kombu.Queue(self.reply_to, rpc_exchange, self.reply_to, auto_delete=True)
        self.consumer = AmqpConsumer(self.uri)
        self.consumer.add_queue(replies, self._on_reply, no_ack=True)
        self.thread = eventlet.spawn(self.consumer.run)
        self.consumer.wait_until_ready()

    def _on_reply(self, message: kombu.Message) -> None:
        try:
            body = message.decode()
        except Exception as exc:
            body = exc
        waiting = self._waiting.pop(message.properties.get("correlation_id"), None)
        if waiting is not None:
            waiting.send(body)

    def publish(
        self,
        body: bytes,
        *,
        exchange: str = "nameko-rpc",
        routing_key: str,
        content_type: str = "application/json",
        content_encoding: str = "utf-8",
        **properties: Any,
    ) -> None:
        get_runtime().call(
            self.producer.publish,
            body,
            exchange=exchange,
            routing_key=routing_key,
            content_type=content_type,
            content_encoding=content_encoding,
            retry=False,
            **properties,
        )

    def request(self, body: bytes, *, routing_key: str, correlation_id: str, **properties):
        """Publish with our reply queue as reply_to; return the decoded reply (5 s at most)."""
        waiting = self._waiting[correlation_id] = eventlet.event.Event()
        self.publish(
            body,
            routing_key=routing_key,
            reply_to=self.reply_to,
            correlation_id=correlation_id,
            **properties,
        )
        return get_runtime().call(waiting.wait, timeout=5)

    def message_count(self, queue_name: str) -> int:
        """Messages ready in ``queue_name``: nothing a consumer took and put back waits there."""

        def count() -> int:
            channel = self.connection.channel()
            try:
                return channel.queue_declare(queue_name, passive=True).message_count
            finally:
                channel.close()

        return get_runtime().call(count)

    def close(self) -> None:
        def close() -> None:
            self.thread.kill()
            self.consumer.close()
            close_quietly(self.connection)

        get_runtime().call(close)


def shown_by_kernel(cells: list[str], cwd: str, timeout: float = 60) -> str:
    """Everything a fresh kernel shows while running ``cells``, as JSON text: streams,
    results, displays, errors, and the state of every widget (comm messages)."""
    manager, client = start_new_kernel(kernel_name="python3", cwd=cwd)
    shown = []
    try:
        for cell in cells:
            msg_id = client.execute(cell)
            while True:
                msg = client.get_iopub_msg(timeout=timeout)
                if msg["msg_type"] != "execute_input":  # the cell's code, as typed
                    shown.append(json.dumps(msg["content"], default=str))
                if msg["parent_header"].get("msg_id") == msg_id and is_idle(msg):
                    break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return "\n".join(shown)


def is_idle(msg: dict) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
