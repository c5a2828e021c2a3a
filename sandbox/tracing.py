"""OpenTelemetry spans for every entrypoint run and every RPC request, event and HTTP call sent.

With ``opentelemetry-api`` installed (the ``tracing`` extra) and a tracer provider set (an SDK's,
set up before the services start, as ``opentelemetry-instrument`` or the process's own start-up
code does), the first container started after it installs one recorder observer; spans go to
that global provider and whatever exporter it has. Without a provider OpenTelemetry would make
non-recording spans, and the observer would still cost every call (and make every record the
recorder makes only for observers): then, and without OpenTelemetry, :func:`install` is a
check and nothing more.

- An entrypoint run is a span named ``service.entrypoint``: kind SERVER for RPC and HTTP,
  CONSUMER for events and other messages, INTERNAL for timers; started and ended in the worker's
  green thread, current there (spans the service's own code makes are its children), with the
  worker's ``call_id`` and, on failure, the exception.
- Its parent is the W3C trace context the call came with: an HTTP request's ``traceparent``
  header, or the ``traceparent`` of a message's context data. The span's own context goes into
  the worker's context data, so every RPC request and event the worker sends carries it, as the
  ``nameko.traceparent`` header, the way ``call_id_stack`` travels (a plain ``traceparent``
  header is read too, from publishers that are not sandbox).
- Each RPC request and event published is a PRODUCER span (``send service.method``,
  ``publish source.event``), child of the context its headers carry: siblings of the spans of
  the workers that handle them, both under the sender's span.
- ``sb.http`` makes a CLIENT span per request and sends its ``traceparent``.

So an HTTP request that makes an RPC that dispatches an event is one trace across processes,
whose entrypoint spans form the tree the inspector's call chains (``call_id_stack``) describe.
"""

from __future__ import annotations

import contextlib
import importlib.util
import weakref
from collections.abc import Iterator
from typing import Any

from sandbox import recorder

TRACE_FIELDS = ("traceparent", "tracestate")
_available: bool | None = None
_spans: Any = None  # the SpanObserver, once installed


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed (checked once)."""
    global _available
    if _available is None:
        _available = importlib.util.find_spec("opentelemetry") is not None
    return _available


def install() -> None:
    """Make spans from now on, when OpenTelemetry is installed and a tracer provider is set;
    any thread, any number of times."""
    global _spans
    if _spans is None and available() and _provider_set():
        _spans = SpanObserver()
        recorder.add_observer(_spans)


def _provider_set() -> bool:
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class SpanObserver:
    """A recorder observer that turns workers and publishes into spans."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from sandbox import __version__

        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self._tracer = trace.get_tracer("sandbox", __version__)
        self._open: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def worker_started(self, worker_ctx: Any) -> None:
        request = _http_request(worker_ctx)
        carrier = request.headers if request is not None else worker_ctx.data
        parent = self._propagator.extract(_trace_fields(carrier))
        entrypoint = worker_ctx.entrypoint
        attributes = {
            "sandbox.service": worker_ctx.service_name,
            "sandbox.entrypoint": entrypoint.method_name,
            "sandbox.call_id": worker_ctx.call_id,
        }
        if request is not None:
            attributes.update({"http.request.method": request.method, "url.path": request.path})
        span = self._tracer.start_span(
            f"{worker_ctx.service_name}.{entrypoint.method_name}",
            context=parent,
            kind=self._kind(entrypoint, request),
            attributes=attributes,
            start_time=_nanoseconds(worker_ctx.started_at),
        )
        context = self._trace.set_span_in_context(span)
        # Current in the worker's green thread, which has a context of its own: spans the
        # service's code makes are children of its entrypoint's.
        self._open[worker_ctx] = span, self._context.attach(context)
        propagated: dict[str, str] = {}
        self._propagator.inject(propagated, context=context)
        worker_ctx.data.update(propagated)

    def worker_finished(self, worker_ctx: Any, result: Any, exc_info: tuple | None) -> None:
        span, token = self._open.pop(worker_ctx, (None, None))
        if span is None:
            return
        self._context.detach(token)
        status = getattr(result, "status_code", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
        if exc_info is not None and exc_info[1] is not None:
            span.record_exception(exc_info[1])
            span.set_status(self._trace.StatusCode.ERROR, f"{exc_info[0].__name__}")
        span.end(end_time=_nanoseconds(worker_ctx.finished_at))

    def message_published(self, info: dict[str, Any]) -> None:
        kind, exchange, routing_key = (
            info.get("kind"),
            info.get("exchange"),
            info.get("routing_key"),
        )
        if kind == "rpc-request":
            name = f"send {routing_key}"
        elif kind == "event":
            source = str(exchange or "").removesuffix(".events")
            name = f"publish {source}.{routing_key}"
        else:
            return
        headers = info.get("headers") or {}
        carrier = {**_trace_fields(headers), **_trace_fields(headers, prefix="nameko.")}
        at = _nanoseconds(info.get("time"))
        span = self._tracer.start_span(
            name,
            context=self._propagator.extract(carrier),
            kind=self._trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": str(exchange or ""),
                "messaging.rabbitmq.destination.routing_key": str(routing_key or ""),
                "messaging.message.id": str(info.get("message_id") or ""),
            },
            start_time=at,
        )
        span.end(end_time=at)

    @contextlib.contextmanager
    def client_call(self, method: str, url: str) -> Iterator[OutgoingHttp]:
        with self._tracer.start_as_current_span(
            method,
            kind=self._trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.full": url},
        ) as span:
            call = OutgoingHttp(span)
            self._propagator.inject(call.headers)
            yield call

    def _kind(self, entrypoint: Any, request: Any) -> Any:
        from sandbox.messaging import HeaderDecoder

        kinds = self._trace.SpanKind
        if request is not None or any(c.__name__ == "Rpc" for c in type(entrypoint).__mro__):
            return kinds.SERVER
        return kinds.CONSUMER if isinstance(entrypoint, HeaderDecoder) else kinds.INTERNAL


class OutgoingHttp:
    """One traced HTTP call: the ``headers`` to send, and ``answered(status)`` to record."""

    def __init__(self, span: Any = None) -> None:
        self.headers: dict[str, str] = {}
        self._span = span

    def answered(self, status: int) -> None:
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", status)


@contextlib.contextmanager
def http_call(method: str, url: str) -> Iterator[OutgoingHttp]:
    """A CLIENT span around an HTTP call made by sandbox, and the headers that carry it."""
    install()
    if _spans is None:
        yield OutgoingHttp()
        return
    with _spans.client_call(method, url) as call:
        yield call


def _http_request(worker_ctx: Any) -> Any:
    from werkzeug.wrappers import Request

    first = worker_ctx.args[0] if worker_ctx.args else None
    return first if isinstance(first, Request) else None


def _trace_fields(carrier: Any, prefix: str = "") -> dict[str, str]:
    fields = {}
    for name in TRACE_FIELDS:
        value = carrier.get(prefix + name)
        if isinstance(value, str):
            fields[name] = value
    return fields


def _nanoseconds(seconds: float | None) -> int | None:
    return int(seconds * 1e9) if seconds is not None else None
