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
    rules = [ep.get_url_rule() for cls in service_classes for _, ep in http_routes(cls)]
    taken = Map(rules).bind("localhost")
    handlers = {
        kind: http("GET", path)(_handler(documents, kind))
        for path, kind in DOCS_ROUTES.items()
        if not taken.test(path, "GET")
    }
    if not handlers:
        return None
    return type("DocsService", (), {"name": DOCS_SERVICE_NAME, **handlers})


def _handler(documents: Any, kind: str) -> Callable[[Any, Request], Any]:
    def serve(self: Any, request: Request) -> Any:
        if kind == "html":
            return Response(documents.page(), mimetype="text/html")
        if kind == "asyncapi":
            return documents.asyncapi
        return {**documents.openapi, "servers": [{"url": request.host_url.rstrip("/")}]}

    serve.__name__ = kind
    return serve
