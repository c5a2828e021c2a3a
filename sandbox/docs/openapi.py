"""An OpenAPI 3.1 document for the ``@http`` routes of service classes.

Read from the classes alone: the werkzeug rule gives the path and its typed parameters, the
entrypoint its methods and expected exceptions (400), the docstring the summary. Type hints
add schemas: the return hint describes the response (``-> Item``, ``-> str``, ``-> None``
for an empty body, ``-> tuple[Literal[201], Item]`` for another status), and the request body is
declared on the ``request`` argument, ``request: Annotated[Request, NewItem]``.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.routing import parse_converter_args
from werkzeug.wrappers import Request, Response

from sandbox.docs.schema import Schemas
from sandbox.docs.source import (
    MISSING,
    document_title,
    entrypoints_in_order,
    expected_exceptions,
    handler_parameters,
    service_tag,
    summary_and_description,
    type_hints,
)
from sandbox.web.handlers import HttpRequestHandler

OPENAPI_VERSION = "3.1.0"
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")

# <converter(arguments):name>, the converter and its arguments being optional (werkzeug).
_RULE_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>.*?)\))?:)?(?P<name>\w+)>")

_ERROR_SCHEMA = {
    "type": "object",
    "description": "An error's JSON form, for clients whose Accept prefers application/json.",
    "properties": {
        "error": {"type": "string", "description": "the exception's class name"},
        "message": {"type": "string"},
        "traceback": {"type": "string", "description": "only when WEB_DEBUG is set"},
    },
    "required": ["error", "message"],
}
_TEXT_ERROR_SCHEMA = {"type": "string", "description": "Nameko's form: 'Error: TYPE: VALUE'"}


def openapi_document(
    service_classes: Iterable[type],
    title: str | None = None,
    version: str = "1.0.0",
    server_url: str | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every ``@http`` entrypoint of ``service_classes``."""
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    tags = []
    for service_cls in service_classes:
        routes = list(http_routes(service_cls))
        if routes:
            tags.append(service_tag(service_cls))
        for method_name, entrypoint in routes:
            path, parameters = openapi_path(entrypoint.url)
            operations = _operations(service_cls, method_name, entrypoint, parameters, schemas)
            paths.setdefault(path, {}).update(operations)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title or document_title(tags), "version": version},
    }
    if len(tags) == 1 and "description" in tags[0]:
        document["info"]["description"] = tags[0]["description"]
    if server_url:
        document["servers"] = [{"url": server_url}]
    document.update(tags=tags, paths=paths)
    if schemas.components:
        document["components"] = {"schemas": schemas.components}
    return document


def http_routes(service_cls: type) -> Iterator[tuple[str, HttpRequestHandler]]:
    """``(method name, entrypoint)`` for each ``@http`` entrypoint of a service class."""
    for method_name, entrypoint in entrypoints_in_order(service_cls):
        if isinstance(entrypoint, HttpRequestHandler):
            yield method_name, entrypoint


# --- paths ------------------------------------------------------------------------------------


def openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """A werkzeug rule as an OpenAPI path template, and its path parameters.

    ``/items/<int(min=1):item_id>`` gives ``/items/{item_id}`` and an integer parameter
    ``item_id`` with ``minimum: 1``.
    """
    parameters = []
    for match in _RULE_VARIABLE.finditer(rule):
        converter = match["converter"] or "default"
        args, kwargs = parse_converter_args(match["args"]) if match["args"] else ((), {})
        schema, note = converter_schema(converter, args, kwargs)
        parameter = {"name": match["name"], "in": "path", "required": True, "schema": schema}
        if note:
            parameter["description"] = note
        parameters.append(parameter)
    return _RULE_VARIABLE.sub(lambda m: "{" + m["name"] + "}", rule), parameters


def converter_schema(
    converter: str, args: tuple, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The schema of the values a werkzeug converter accepts, and a note for what it cannot
    say."""
    if converter in ("int", "float"):
        schema: dict[str, Any] = {"type": "integer" if converter == "int" else "number"}
        minimum = kwargs.get("min", None if kwargs.get("signed") else 0)
        if minimum is not None:
            schema["minimum"] = minimum
        if kwargs.get("max") is not None:
            schema["maximum"] = kwargs["max"]
        return schema, None
    if converter == "uuid":
        return {"type": "string", "format": "uuid"}, None
    if converter == "any":
        return {"type": "string", "enum": list(args)}, None
    if converter == "path":
        return {"type": "string"}, "may contain slashes"
    schema = {"type": "string"}
    if converter in ("default", "string"):
        schema["pattern"] = "^[^/]+$"
        length = kwargs.get("length")
        minimum, maximum = (length, length) if length else (kwargs.get("minlength", 1), None)
        maximum = maximum or kwargs.get("maxlength")
        schema["minLength"] = minimum
        if maximum:
            schema["maxLength"] = maximum
        return schema, None
    return schema, f"matched by the custom converter {converter!r}"


# --- operations ---------------------------------------------------------------------------------


def _operations(
    service_cls: type,
    method_name: str,
    entrypoint: HttpRequestHandler,
    parameters: list[dict[str, Any]],
    schemas: Schemas,
) -> dict[str, dict[str, Any]]:
    method = getattr(service_cls, method_name)
    summary, description = summary_and_description(method)
    verbs = [verb for verb in entrypoint.methods if verb in HTTP_METHODS]
    operations = {}
    for verb in verbs:
        operation_id = f"{service_cls.name}.{method_name}"
        operation: dict[str, Any] = {
            "tags": [service_cls.name],
            "operationId": operation_id if len(verbs) == 1 else f"{operation_id}.{verb.lower()}",
        }
        if summary:
            operation["summary"] = summary
        if description:
            operation["description"] = description
        if parameters:
            operation["parameters"] = parameters
        body = request_body(method, schemas)
        if body is not None:
            operation["requestBody"] = body
        operation["responses"] = responses(method, entrypoint, schemas)
        operations[verb.lower()] = operation
    return operations


def request_body(method: Callable, schemas: Schemas) -> dict[str, Any] | None:
    """The request body declared on the ``request`` argument, None when it declares none.

    ``Annotated[Request, Body]`` is the honest form; a plain non-Request hint is taken as
    the body type too.
    """
    parameters = handler_parameters(method)
    if not parameters:
        return None
    hint = type_hints(method).get(parameters[0].name, MISSING)
    if typing.get_origin(hint) is typing.Annotated:
        hint = next((m for m in typing.get_args(hint)[1:] if not isinstance(m, str)), MISSING)
    elif isinstance(hint, type) and issubclass(hint, Request):
        hint = MISSING
    if hint is MISSING:
        return None
    return {"required": True, "content": _content(hint, schemas)}


def responses(method: Callable, entrypoint: HttpRequestHandler, schemas: Schemas) -> dict[str, Any]:
    """The success response from the return hint; 400 for expected exceptions; 500."""
    status, success = success_response(type_hints(method).get("return", MISSING), schemas)
    result = {status: success}
    error = {
        "text/plain": {"schema": _TEXT_ERROR_SCHEMA},
        "application/json": {"schema": schemas.component("Error", _ERROR_SCHEMA)},
    }
    expected = expected_exceptions(entrypoint)
    if expected:
        names = ", ".join(exc.__name__ for exc in expected)
        result["400"] = {"description": f"Bad request, or an expected error: {names}"}
        result["400"]["content"] = error
    result["500"] = {"description": "The handler failed", "content": error}
    return result


def success_response(hint: Any, schemas: Schemas) -> tuple[str, dict[str, Any]]:
    """The status code and Response Object for a handler returning ``hint``."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    status = "200"
    if typing.get_origin(hint) is tuple:
        # (status, body) or (status, headers, body), Nameko's forms.
        parts = typing.get_args(hint)
        if len(parts) in (2, 3) and typing.get_origin(parts[0]) is typing.Literal:
            status = str(typing.get_args(parts[0])[0])
        hint = parts[-1] if len(parts) in (2, 3) else MISSING
    if hint is None or hint is type(None):
        return status, {"description": "Empty body"}
    if hint is MISSING or (isinstance(hint, type) and issubclass(hint, Response)):
        return status, {"description": "Success"}
    return status, {"description": "Success", "content": _content(hint, schemas)}


def _content(hint: Any, schemas: Schemas) -> dict[str, Any]:
    if hint is str:
        media_type = "text/plain"
    elif hint is bytes:
        media_type = "application/octet-stream"
    else:
        media_type = "application/json"
    return {media_type: {"schema": schemas.of(hint)}}
