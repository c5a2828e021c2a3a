"""Load from a cell: one target driven at a fixed rate, measured without coordinated omission.

Everything runs in the runtime's hub. A scheduler green thread sends request ``i`` at
``start + i / rate``, times fixed before the run, whatever the earlier requests are doing (an
open loop). Each latency runs from that scheduled time, not from when the request went out: a
service that stalls shows as long latencies, not as fewer and kinder samples. ``concurrency``
bounds the requests in flight; one due while every slot is taken waits for a slot, and that
wait is part of its latency.

Targets (:meth:`LoadTarget.parse`):

- ``"service.method"``: an RPC call; its latency ends with the reply;
- ``"GET /path"``: an HTTP request to the services' own server; a status of 400 or more is an
  error; ``args[0]``, when given, is the JSON body;
- ``"event:source.event_type"``: an event as ``source`` dispatches it, ``args[0]`` its data;
  its latency ends when the broker has it (any number of handlers may take it, or none).

A sampler green thread records, every ``interval`` seconds, a :class:`LoadWindow`: the last
second's throughput and percentiles, errors so far, requests in flight, the target service's
busy workers and its queue's depth. Views read :attr:`LoadRun.timeline`; nothing is pushed.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import eventlet
import eventlet.greenpool

from sandbox.runtime import get_runtime

RPC, HTTP, EVENT = "rpc", "http", "event"
_NAME = r"[\w\-]+"  # service names and event types may hold dashes
_RPC_TARGET = re.compile(rf"^({_NAME})\.(\w+)$")
_HTTP_TARGET = re.compile(r"^([A-Za-z]+)\s+(/\S*)$")
_EVENT_TARGET = re.compile(rf"^event:({_NAME})\.({_NAME}(?:\.{_NAME})*)$")
# A connection the server closed while it sat idle fails its next request before any answer.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class LoadTarget:
    """What a load run drives: ``kind`` with ``name`` (service, route path or event source)
    and ``member`` (method, HTTP method or event type)."""

    kind: str
    name: str
    member: str

    @classmethod
    def parse(cls, text: str) -> LoadTarget:
        """``"service.method"``, ``"GET /path"`` or ``"event:source.event_type"``."""
        text = text.strip() if isinstance(text, str) else ""
        if match := _EVENT_TARGET.match(text):
            return cls(EVENT, *match.groups())
        if match := _HTTP_TARGET.match(text):
            return cls(HTTP, match[2], match[1].upper())
        if match := _RPC_TARGET.match(text):
            return cls(RPC, *match.groups())
        raise ValueError(
            f"{text!r} is not a target: give 'service.method' (RPC), 'GET /path' (HTTP) "
            "or 'event:source.event_type'"
        )

    def __str__(self) -> str:
        if self.kind == HTTP:
            return f"{self.member} {self.name}"
        prefix = "event:" if self.kind == EVENT else ""
        return f"{prefix}{self.name}.{self.member}"


class HttpStatusError(Exception):
    """An HTTP answer with a status of 400 or more."""


class RpcLoadDriver:
    """Calls ``service.method`` through a cluster proxy of its own."""

    def __init__(self, target: LoadTarget, config: Mapping[str, Any], timeout: float):
        from sandbox.standalone.rpc import ClusterRpcProxy

        self._proxy = ClusterRpcProxy(config, timeout=timeout)
        self._method = self._proxy.start()[target.name][target.member]

    def send(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self._method(*args, **kwargs)

    def close(self) -> None:
        self._proxy.stop()


class HttpLoadDriver:
    """Requests the route from the services' HTTP server, on kept-alive connections."""

    def __init__(self, target: LoadTarget, base_url: str, timeout: float):
        parts = urlsplit(base_url)
        self._address = (parts.hostname, parts.port)
        self._method, self._path, self._timeout = target.member, target.name, timeout
        self._idle: list[http.client.HTTPConnection] = []

    def send(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        body = json.dumps(args[0]).encode() if args else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else self._connect()
        try:
            response = self._request(connection, body, headers)
        except _STALE_CONNECTION:
            connection.close()
            if not reused:
                raise
            connection = self._connect()
            response = self._request(connection, body, headers)
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        if response.status >= 400:
            raise HttpStatusError(f"{response.status} {response.reason}")

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self._address, timeout=self._timeout)

    def _request(self, connection, body, headers) -> http.client.HTTPResponse:
        connection.request(self._method, self._path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class EventLoadDriver:
    """Publishes the event to its source's exchange, as that service's dispatcher would."""

    def __init__(self, target: LoadTarget, config: Mapping[str, Any]):
        from sandbox.events import get_event_exchange
        from sandbox.messaging import publisher_for

        self._publisher = publisher_for(config)
        self._exchange = get_event_exchange(target.name, config)
        self._event_type = target.member

    def send(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        data = args[0] if args else None
        self._publisher.publish(
            data, exchange=self._exchange, routing_key=self._event_type, kind="event"
        )

    def close(self) -> None:
        pass


class QueueDepth:
    """Messages ready in one queue, asked of the broker (RabbitMQ or embedded) by a passive
    declare; None while the queue does not exist."""

    def __init__(self, uri: str, queue: str):
        from sandbox.amqp.connection import connect

        self._connection = connect(uri)
        self._queue = queue

    def __call__(self) -> int | None:
        from sandbox.amqp.connection import declared_queue

        declared = declared_queue(self._connection, self._queue)
        return None if declared is None else declared.message_count

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.release()


@dataclass(frozen=True)
class LoadWindow:
    """One point of the live plot: the second before ``elapsed`` seconds into the run."""

    elapsed: float
    sent: int
    completed: int
    throughput: float  # completions in the last second
    p50: float | None  # seconds, of the last second's completions
    p99: float | None
    errors: int  # so far
    in_flight: int
    busy_workers: int | None
    queue_depth: int | None


@dataclass(frozen=True)
class LoadResult:
    """What a run measured; latencies in seconds, from each request's scheduled time."""

    target: str
    rate: float
    duration: float
    sent: int
    completed: int
    errors: int
    throughput: float  # completions per second over the run (at least ``duration`` long)
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    error_kinds: Mapping[str, int]
    timeline: tuple[LoadWindow, ...]

    def table(self) -> str:
        """The figures as a small text table."""
        rows = [
            ("target", self.target),
            ("asked", f"{self.rate:g}/s for {self.duration:g} s"),
            ("sent / completed", f"{self.sent} / {self.completed}"),
            ("throughput", f"{self.throughput:.1f}/s"),
            ("p50 / p90 / p99", " / ".join(map(milliseconds, (self.p50, self.p90, self.p99)))),
            ("max", milliseconds(self.max)),
            ("errors", str(self.errors)),
            *((f"  {kind}", str(count)) for kind, count in self.error_kinds.items()),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def __repr__(self) -> str:
        return self.table()


def milliseconds(seconds: float | None) -> str:
    """``seconds`` shown in ms, for tables; "-" for none."""
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values; None when there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class LoadRun:
    """One load run: ``start()`` returns at once, ``wait()`` returns the :class:`LoadResult`.

    ``config`` says which broker (the global config by default), ``base_url`` which HTTP
    server (this process's by default). ``busy_workers`` (called in the hub at each sample)
    and ``queue`` (a queue whose depth is sampled; an RPC target's own queue by default) feed
    the timeline.
    """

    def __init__(
        self,
        target: str | LoadTarget,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        rate: float = 10,
        duration: float = 5,
        concurrency: int = 100,
        timeout: float = 10,
        config: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        busy_workers: Callable[[], int] | None = None,
        queue: str | None = None,
        interval: float = 0.25,
    ):
        from sandbox.config import config as global_config

        self.target = target if isinstance(target, LoadTarget) else LoadTarget.parse(target)
        _check_positive(rate=rate, duration=duration, concurrency=concurrency, timeout=timeout)
        if not isinstance(args, list | tuple):
            raise TypeError(f"args must be a list or tuple, not {type(args).__name__}")
        self.args, self.kwargs = tuple(args), dict(kwargs or {})
        self.rate, self.duration = float(rate), float(duration)
        self.concurrency, self.timeout = int(concurrency), float(timeout)
        self.config = global_config if config is None else config
        self.base_url = base_url
        self.busy_workers = busy_workers
        if queue is None and self.target.kind == RPC:
            queue = f"rpc-{self.target.name}"
        self.queue, self.interval = queue, interval
        self.timeline: list[LoadWindow] = []
        self.sent = self.errors = 0
        # (due, or sent when that was early; done; error): the latency runs from the first
        self._samples: list[tuple[float, float, str | None]] = []
        self._started: float | None = None
        self._stopping = False
        self._finished = threading.Event()
        self._result: LoadResult | None = None
        self._driver: Any = None
        self._depth: QueueDepth | None = None

    @property
    def total(self) -> int:
        """How many requests the schedule holds."""
        return max(1, round(self.rate * self.duration))

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def start(self) -> LoadRun:
        """Open the driver (a failure raises here) and start sending in the hub."""
        get_runtime().call(self._open)
        get_runtime().spawn(self._run)
        return self

    def stop(self) -> None:
        """Send nothing more; the requests in flight still count."""
        self._stopping = True

    def wait(self, timeout: float | None = None) -> LoadResult:
        """The result, once the schedule ran and every request finished."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"the load on {self.target} is still running")
        assert self._result is not None
        return self._result

    def _open(self) -> None:
        from sandbox.amqp.connection import amqp_uri

        if self.target.kind == RPC:
            self._driver = RpcLoadDriver(self.target, self.config, self.timeout)
        elif self.target.kind == EVENT:
            self._driver = EventLoadDriver(self.target, self.config)
        else:
            from sandbox.web.server import get_base_url

            base_url = self.base_url or get_base_url()
            if base_url is None:
                raise RuntimeError("no HTTP server is running (no service has an @http route)")
            self._driver = HttpLoadDriver(self.target, base_url, self.timeout)
        if self.queue is not None:
            try:
                self._depth = QueueDepth(amqp_uri(self.config), self.queue)
            except BaseException:
                self._close()
                raise

    def _run(self) -> None:
        pool = eventlet.greenpool.GreenPool(self.concurrency)
        sampler = eventlet.spawn(self._sample_every_interval)
        self._started = time.perf_counter()
        try:
            for index in range(self.total):
                due = self._started + index / self.rate
                sleep_until(due)
                if self._stopping:
                    break
                pool.spawn(self._send, due)  # waits while `concurrency` are in flight
                self.sent += 1
            pool.waitall()
        finally:
            sampler.kill()
            self._sample()
            self._close()
            self._result = self._summary()
            self._finished.set()

    def _send(self, due: float) -> None:
        since, error = max(due, time.perf_counter()), None
        try:
            with eventlet.Timeout(self.timeout):
                self._driver.send(self.args, self.kwargs)
        except (Exception, eventlet.Timeout) as exc:
            error = type(exc).__name__
            self.errors += 1
        self._samples.append((since, time.perf_counter(), error))

    def _close(self) -> None:
        for part in (self._driver, self._depth):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()

    def _sample_every_interval(self) -> None:
        while True:
            eventlet.sleep(self.interval)
            self._sample()

    def _sample(self) -> None:
        now = time.perf_counter()
        recent = []  # the last second's latencies; samples are in the order they finished
        for due, finished_at, _ in reversed(self._samples):
            if finished_at < now - 1:
                break
            recent.append(finished_at - due)
        recent.sort()
        self.timeline.append(
            LoadWindow(
                elapsed=now - self._started,
                sent=self.sent,
                completed=len(self._samples),
                throughput=len(recent) / min(1.0, max(now - self._started, 1e-9)),
                p50=percentile(recent, 0.5),
                p99=percentile(recent, 0.99),
                errors=self.errors,
                in_flight=self.sent - len(self._samples),
                busy_workers=self._probe(self.busy_workers),
                queue_depth=self._probe(self._depth),
            )
        )

    @staticmethod
    def _probe(probe: Callable[[], int | None] | None) -> int | None:
        if probe is None:
            return None
        try:
            return probe()
        except Exception:  # a probe that fails leaves a gap in the plot, not a dead run
            return None

    def _summary(self) -> LoadResult:
        latencies = sorted(done - due for due, done, _ in self._samples)
        errors = collections.Counter(error for *_, error in self._samples if error is not None)
        last = max((done for _, done, _ in self._samples), default=self._started)
        span = max(self.duration, last - self._started) if self._started is not None else 0
        return LoadResult(
            target=str(self.target),
            rate=self.rate,
            duration=self.duration,
            sent=self.sent,
            completed=len(self._samples),
            errors=sum(errors.values()),
            throughput=len(self._samples) / span if span else 0.0,
            p50=percentile(latencies, 0.5),
            p90=percentile(latencies, 0.9),
            p99=percentile(latencies, 0.99),
            max=latencies[-1] if latencies else None,
            error_kinds=dict(errors.most_common()),
            timeline=tuple(self.timeline),
        )


def sleep_until(due: float) -> None:
    """Sleep greenly until less than a millisecond before ``due``.

    The hub's epoll rounds its timeout up to a whole millisecond, so sleeping until ``due``
    would wake up to 1 ms late, and that lateness would count in every latency; yielding turn
    by turn until ``due`` would take CPU from the services measured. Whole milliseconds wake
    a little early instead, and a request sent early counts its latency from when it went.
    """
    remaining = due - time.perf_counter()
    if remaining >= 0.001:
        eventlet.sleep(math.floor(remaining * 1000) / 1000)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
