"""Documentation generated from service classes: OpenAPI 3.1 for ``@http`` routes, AsyncAPI
3.0 for RPC, events and messages, and an offline HTML rendering of both.

Sequence diagrams of recorded call chains are in :mod:`sandbox.docs.diagram`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.docs.asyncapi import asyncapi_document
from sandbox.docs.openapi import openapi_document
from sandbox.docs.render import ApiDocs, render_html

__all__ = [
    "ApiDocs",
    "asyncapi_document",
    "openapi_document",
    "render_html",
    "service_docs",
]


def service_docs(
    service_classes: Iterable[type],
    config: Mapping[str, Any] | None = None,
    server_url: str | None = None,
) -> ApiDocs:
    """Both documents of ``service_classes``, ready to show or save."""
    service_classes = list(service_classes)
    return ApiDocs(
        openapi_document(service_classes, server_url=server_url),
        asyncapi_document(service_classes, config=config),
    )
