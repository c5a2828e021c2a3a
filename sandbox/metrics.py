"""Prometheus metrics of a ``sandbox run`` process, from the recorder hook.

A :class:`PrometheusObserver` counts what :mod:`sandbox.recorder` tells it: per service and
entrypoint, the calls, the errors and a latency histogram; the workers busy per service; the
broker reconnects. :func:`exposition` is the text page ``GET /metrics`` answers.

``prometheus_client`` is optional (``pip install 'service-sandbox[metrics]'``); without it the
page says what to install. With ``PROMETHEUS_MULTIPROC_DIR`` set (``sandbox run --workers``
sets it for its workers) every process writes its values under that directory and the page sums
them over all processes, those that died included, as prometheus_client's multiprocess mode
does; the workers-busy gauge counts live processes only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, NamedTuple

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
METRICS_EXTRA = "pip install 'service-sandbox[metrics]'"
MISSING_MESSAGE = f"metrics need prometheus_client: {METRICS_EXTRA}\n"

# Entrypoint latencies, from a cache hit to a slow remote call.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def available() -> bool:
    """Whether prometheus_client is installed."""
    return importlib.util.find_spec("prometheus_client") is not None


class SandboxMetrics(NamedTuple):
    calls: Any
    errors: Any
    latency: Any
    busy: Any
    reconnects: Any


@functools.cache
def sandbox_metrics() -> SandboxMetrics:
    """The metrics, made once per process on prometheus_client's default registry (next to
    any the services define themselves)."""
    from prometheus_client import Counter, Gauge, Histogram

    labels = ("service", "entrypoint")
    return SandboxMetrics(
        calls=Counter("sandbox_entrypoint_calls", "Entrypoint runs (workers)", labels),
        errors=Counter("sandbox_entrypoint_errors", "Entrypoint runs that raised", labels),
        latency=Histogram(
            "sandbox_entrypoint_duration_seconds",
            "Time from a worker's start to its end",
            labels,
            buckets=LATENCY_BUCKETS,
        ),
        busy=Gauge(
            "sandbox_workers_busy",
            "Workers running now",
            ("service",),
            multiprocess_mode="livesum",
        ),
        reconnects=Counter(
            "sandbox_broker_reconnects", "Broker connections made again after a loss"
        ),
    )


class PrometheusObserver:
    """A recorder observer that keeps the metrics; ``excluded`` services are not counted (the
    probes' own service, so that scraping does not count itself)."""

    def __init__(self, excluded: frozenset[str] = frozenset()):
        self.metrics = sandbox_metrics()
        self.excluded = excluded

    def worker_started(self, worker_ctx: Any) -> None:
        if worker_ctx.service_name not in self.excluded:
            self.metrics.busy.labels(worker_ctx.service_name).inc()

    def worker_finished(self, worker_ctx: Any, result: Any, exc_info: tuple | None) -> None:
        service = worker_ctx.service_name
        if service in self.excluded:
            return
        entrypoint = worker_ctx.entrypoint.method_name
        self.metrics.busy.labels(service).dec()
        self.metrics.calls.labels(service, entrypoint).inc()
        if exc_info is not None:
            self.metrics.errors.labels(service, entrypoint).inc()
        if worker_ctx.started_at is not None and worker_ctx.finished_at is not None:
            duration = max(0.0, worker_ctx.finished_at - worker_ctx.started_at)
            self.metrics.latency.labels(service, entrypoint).observe(duration)

    def broker_reconnected(self, amqp_uri: str) -> None:
        self.metrics.reconnects.inc()


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type: this process's metrics, or every process's
    under ``PROMETHEUS_MULTIPROC_DIR``."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    registry = REGISTRY
    if os.environ.get(MULTIPROCESS_VARIABLE):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def forget_process(pid: int, directory: str) -> None:
    """Drop the live gauges of a process that ended, from the multiprocess ``directory``."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)
