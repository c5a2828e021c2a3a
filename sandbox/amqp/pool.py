"""Publishing connections: a few per broker address and hub thread, each lent to one green
thread at a time, so a publish never opens a connection of its own. (RPC requests and replies
go out on their consumer's connection instead.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import eventlet.semaphore
import kombu

from sandbox.amqp.confirms import ConfirmPipeline
from sandbox.amqp.connection import (
    CONNECTION_ERRORS,
    GREEN_SCHEMES,
    close_quietly,
    connect,
    declared_queue,
)


class PooledChannel:
    """One pooled connection with its publishing channel.

    Returns (unroutable mandatory messages) are collected in :attr:`returned` while a publish
    waits for its confirm; the publisher reads them afterwards.
    """

    def __init__(self, connection: kombu.Connection):
        self.connection = connection
        self.channel = connection.channel()
        self.producer = kombu.Producer(self.channel, auto_declare=False)
        self.returned: list[tuple[Exception, str, str]] = []
        self.channel.events["basic_return"].add(self._on_return)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append((exc, exchange, routing_key))

    def queue_exists(self, name: str) -> bool:
        # On the raw connection: kombu's would reconnect a dead one, sleeping, by itself.
        return declared_queue(self.channel.connection, name) is not None

    def close(self) -> None:
        close_quietly(self.connection)


class ConnectionPool:
    """Connections to one broker, lent to one green thread at a time.

    It grows on demand up to ``limit`` connections, then borrowers wait greenly. A connection
    that failed while lent is closed instead of coming back. Queues known to exist are cached
    here too, per broker address (see :meth:`queue_exists`).
    """

    def __init__(
        self,
        uri: str,
        *,
        confirms: bool = True,
        limit: int = 10,
        transport_options: Mapping[str, Any] | None = None,
        **options: Any,
    ):
        self.uri = uri
        self.confirms = confirms
        transport_options = {**(transport_options or {}), "confirm_publish": confirms}
        self._options = {**options, "transport_options": transport_options}
        self._idle: list[PooledChannel] = []
        self._slots = eventlet.semaphore.Semaphore(limit)
        self._known_queues: set[str] = set()
        self.pipelines = confirms and uri.partition("://")[0].lower() in GREEN_SCHEMES
        self._pipeline: ConfirmPipeline | None = None
        self._opening = eventlet.semaphore.Semaphore()

    @contextlib.contextmanager
    def acquire(self) -> Iterator[PooledChannel]:
        with self._slots:
            pooled = self._idle.pop() if self._idle else self._open()
            try:
                yield pooled
            except BaseException as exc:
                # Whatever broke (a dead socket, a kill half way through a confirm), the
                # connection's state is unknown: never lend it again.
                pooled.close()
                if isinstance(exc, CONNECTION_ERRORS):
                    self.close()  # the idle ones most likely lost the broker too
                raise
            pooled.returned.clear()
            self._idle.append(pooled)

    def _open(self) -> PooledChannel:
        return PooledChannel(connect(self.uri, **self._options))

    def pipeline(self) -> ConfirmPipeline:
        """The connection that publishes with confirms in flight at once (RabbitMQ only, see
        :attr:`pipelines`); a new one when the last one failed."""
        with self._opening:
            if self._pipeline is None or self._pipeline.broken is not None:
                self._pipeline = ConfirmPipeline(connect(self.uri, **self._options))
            return self._pipeline

    def open_pipeline(self) -> ConfirmPipeline | None:
        """The confirm pipeline if one is open and sound: what :meth:`pipeline` would return
        without waiting."""
        pipeline = self._pipeline
        return pipeline if pipeline is not None and pipeline.broken is None else None

    def queue_exists(self, name: str) -> bool:
        """Whether the broker has queue ``name``; a yes is remembered until :meth:`forget_queue`."""
        if name in self._known_queues:
            return True
        try:
            exists = self._queue_exists(name)
        except CONNECTION_ERRORS:
            exists = self._queue_exists(name)  # on a fresh connection: the idle ones are gone
        if exists:
            self._known_queues.add(name)
        return exists

    def _queue_exists(self, name: str) -> bool:
        with self.acquire() as pooled:
            return pooled.queue_exists(name)

    def knows_queue(self, name: str) -> bool:
        """Whether :meth:`queue_exists` would say yes without asking the broker."""
        return name in self._known_queues

    def forget_queue(self, name: str) -> None:
        self._known_queues.discard(name)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()


# Connections belong to the hub of the thread that made them, so each thread has its own pools.


# Connections belong to the hub of the thread that made them, so each thread has its own pools.
_local = threading.local()


def get_pool(uri: str, *, confirms: bool = True, **options: Any) -> ConnectionPool:
    """This thread's pool for these connection parameters, created on first use; ``options``
    are :func:`connect`'s (``ssl``, ``login_method``, ``transport_options``)."""
    pools: dict[tuple, ConnectionPool] = _local.__dict__.setdefault("pools", {})
    key = (uri, confirms, _options_key(options))
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = ConnectionPool(uri, confirms=confirms, **options)
    return pool


def _options_key(options: Mapping[str, Any]) -> str:
    # An option left out is one given as None; a mapping's order does not matter.
    return repr(
        sorted(
            (name, sorted(value.items()) if isinstance(value, Mapping) else value)
            for name, value in options.items()
            if value is not None
        )
    )


def close_pools(uri: str | None = None) -> None:
    """Close this thread's pooled connections (to ``uri`` only, when given)."""
    pools: dict[tuple, ConnectionPool] = _local.__dict__.get("pools", {})
    for key in [key for key in pools if uri is None or key[0] == uri]:
        pools.pop(key).close()
