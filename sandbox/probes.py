"""Health, readiness and metrics over HTTP, for an orchestrator: ``sandbox run`` serves them.

``GET /healthz`` answers 200 while the process serves at all (its hub turns); ``GET /readyz``
200 once every container has started and its broker connection is up, else 503 with the
reasons, one a line (from the start of a stop on, while the services drain); ``GET /metrics``
the Prometheus page of :mod:`sandbox.metrics`. They are the routes of an ordinary ``@http``
service on the shared web server (``WEB_SERVER_ADDRESS``), added even when no service of the
module has routes of its own, so they answer from the same port and the same hub as the
services; ``sandbox run`` runs it in a runner of its own, started before the services and
stopped after them. Under ``--workers`` the worker that accepts the connection answers for
itself; the metrics it answers are every worker's.

Config ``HEALTHZ_PATH``, ``READYZ_PATH`` and ``METRICS_PATH`` move them; ``null``, ``false``
or an empty string turns one off. A path that one of the services' own routes answers is left
to that route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Response

from sandbox import metrics
from sandbox.docs.service import free_paths
from sandbox.exceptions import ConfigurationError
from sandbox.messaging import QueueConsumer
from sandbox.runners import ServiceRunner
from sandbox.web.handlers import http

HEALTHZ_PATH_CONFIG_KEY = "HEALTHZ_PATH"
READYZ_PATH_CONFIG_KEY = "READYZ_PATH"
METRICS_PATH_CONFIG_KEY = "METRICS_PATH"
DEFAULT_PATHS = {
    HEALTHZ_PATH_CONFIG_KEY: "/healthz",
    READYZ_PATH_CONFIG_KEY: "/readyz",
    METRICS_PATH_CONFIG_KEY: "/metrics",
}
PROBES_SERVICE_NAME = "sandbox-probes"


def probe_paths(config: Mapping[str, Any]) -> dict[str, str]:
    """Config key -> path, for each probe turned on; a path that is not one is an error."""
    paths = {}
    for key, default in DEFAULT_PATHS.items():
        path = config.get(key, default)
        if path is None or path is False or path == "":
            continue
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"{key} must be a path starting with '/', not {path!r}")
        paths[key] = path
    return paths


def probes_service(
    runner: ServiceRunner, service_classes: Iterable[type], config: Mapping[str, Any]
) -> type | None:
    """A service class serving the probes of ``runner``'s containers; None when every probe is
    off or taken by the services' own routes."""
    paths = probe_paths(config)
    free = set(free_paths(service_classes, paths.values()))
    answers = {
        HEALTHZ_PATH_CONFIG_KEY: lambda: Response("ok\n", mimetype="text/plain"),
        READYZ_PATH_CONFIG_KEY: lambda: readiness_response(runner),
        METRICS_PATH_CONFIG_KEY: metrics_response,
    }
    handlers = {
        key.lower(): http("GET", path)(_handler(key.lower(), answers[key]))
        for key, path in paths.items()
        if path in free
    }
    if not handlers:
        return None
    return type("ProbesService", (), {"name": PROBES_SERVICE_NAME, **handlers})


def _handler(name: str, answer: Callable[[], Response]) -> Callable[[Any, Any], Response]:
    def serve(self: Any, request: Any) -> Response:
        return answer()

    serve.__name__ = name
    return serve


def not_ready_reasons(runner: ServiceRunner) -> list[str]:
    """Why ``runner`` is not ready to take work; empty when it is."""
    reasons = []
    for container in runner.containers:
        name = container.service_name
        if not getattr(container, "started", True):
            reasons.append(f"service {name} is not started")
            continue
        if getattr(container, "stopping", False):
            reasons.append(f"service {name} is stopping")
            continue
        extensions = getattr(container, "extensions", ())
        if any(isinstance(ext, QueueConsumer) and not ext.connected for ext in extensions):
            reasons.append(f"service {name} has no broker connection")
    return reasons


def readiness_response(runner: ServiceRunner) -> Response:
    reasons = not_ready_reasons(runner)
    if reasons:
        return Response("".join(f"{reason}\n" for reason in reasons), 503, mimetype="text/plain")
    return Response("ready\n", mimetype="text/plain")


def metrics_response() -> Response:
    if not metrics.available():
        return Response(metrics.MISSING_MESSAGE, 501, mimetype="text/plain")
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
