"""The documents served over HTTP: ``sandbox run`` adds this service when config ``DOCS`` is
true.

It is an ordinary ``@http`` service on the shared web server, so the documents are served
wherever the services are, and from the first request. The user's routes come first: a
path that one of them already matches is not served here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.routing import Map
from werkzeug.wrappers import Response

from sandbox.docs import service_docs
from sandbox.docs.openapi import http_routes
from sandbox.web.handlers import http
from sandbox.web.server import Request

DOCS_CONFIG_KEY = "DOCS"
DOCS_SERVICE_NAME = "sandbox-docs"
# path -> what is served there
DOCS_ROUTES = {"/openapi.json": "openapi", "/asyncapi.json": "asyncapi", "/docs": "html"}


def docs_service(service_classes: Iterable[type], config: Mapping[str, Any]) -> type | None:
    """A service class serving the documents of ``service_classes``; None when their routes
    already match every docs path."""
    service_classes = list(service_classes)
    documents = service_docs(service_classes, config)
    handlers = {
        DOCS_ROUTES[path]: http("GET", path)(_handler(documents, DOCS_ROUTES[path]))
        for path in free_paths(service_classes, DOCS_ROUTES)
    }
    if not handlers:
        return None
    return type("DocsService", (), {"name": DOCS_SERVICE_NAME, **handlers})


def free_paths(service_classes: Iterable[type], paths: Iterable[str]) -> list[str]:
    """The ``paths`` that no ``@http`` route of ``service_classes`` answers for GET."""
    rules = [ep.get_url_rule() for cls in service_classes for _, ep in http_routes(cls)]
    taken = Map(rules).bind("localhost")
    return [path for path in paths if not taken.test(path, "GET")]


def _handler(documents: Any, kind: str) -> Callable[[Any, Request], Any]:
    def serve(self: Any, request: Request) -> Any:
        if kind == "html":
            return Response(documents.page(), mimetype="text/html")
        if kind == "asyncapi":
            return documents.asyncapi
        return {**documents.openapi, "servers": [{"url": request.host_url.rstrip("/")}]}

    serve.__name__ = kind
    return serve
