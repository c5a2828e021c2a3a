"""``@http(method, url)``: run a service method for each matching HTTP request.

The handler gets the werkzeug :class:`~sandbox.web.server.Request` and the values of the
route's converters as keyword arguments, and may return a ``Response``, a ``str``/``bytes``
body, ``(status, body)``, ``(status, headers, body)``, a ``dict``/``list`` sent as JSON, or
``None`` for an empty body. A failure is answered as in Nameko, with the text
``Error: ValueError: oops`` (JSON instead for a client whose ``Accept`` prefers it).
Subclass :class:`HttpRequestHandler` and use its ``decorator`` to change any of that.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from typing import Any

import eventlet.wsgi
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from sandbox import faults
from sandbox.containers import WorkerContext
from sandbox.exceptions import BadRequest, ContainerBeingKilled, serialize
from sandbox.extensions import Entrypoint
from sandbox.records import HTTP
from sandbox.validation import ArgumentsRejected, RequestBody
from sandbox.web.responses import ErrorResponse, error_response
from sandbox.web.server import CALL_ID_ENVIRON_KEY, Request, WebServer

log = logging.getLogger(__name__)

MAX_CACHED_SHAPES = 16


class ServerEntrypoint(Entrypoint):
    """An entrypoint served by its ``server`` (a ProviderCollector), from setup until it stops."""

    server: Any

    def setup(self) -> None:
        self.server.register_provider(self)

    def stop(self) -> None:
        self.server.unregister_provider(self)

    def kill(self) -> None:
        self.server.unregister_provider(self)


class HttpRequestHandler(ServerEntrypoint):
    record_kind = HTTP
    server = WebServer()
    # The request's hint may declare its JSON body: Annotated[Request, Model], or Model.
    request_body = RequestBody(Request, Request.get_json)

    def __init__(
        self,
        method: str,
        url: str,
        expected_exceptions: type[BaseException] | tuple[type[BaseException], ...] = (),
        **kwargs: Any,
    ):
        self.method = method
        self.url = url
        self._valid_shapes: set[tuple] = set()
        super().__init__(expected_exceptions=expected_exceptions, **kwargs)

    @property
    def methods(self) -> list[str]:
        """The HTTP methods of ``method``: ``"GET, POST"`` gives ``["GET", "POST"]``."""
        return [name.strip().upper() for name in self.method.split(",") if name.strip()]

    def get_url_rule(self) -> Rule:
        return Rule(self.url, methods=self.methods)

    def is_expected(self, exc: BaseException) -> bool:
        # A client's mistake (bad JSON, a wrong content type) is its 4xx, not our error.
        client_error = isinstance(exc, HTTPException) and (exc.code or 500) < 500
        return client_error or super().is_expected(exc)

    def check_signature(self, args: tuple, kwargs: dict) -> None:
        # Binding depends only on how many arguments and which names, and a route passes
        # the same ones on every request: bind each shape once (a few, bounded).
        shape = (len(args), *kwargs)
        if shape not in self._valid_shapes:
            super().check_signature(args, kwargs)
            if len(self._valid_shapes) < MAX_CACHED_SHAPES:
                self._valid_shapes.add(shape)

    # --- one request ----------------------------------------------------------------------

    def handle_request(self, request: Request) -> Response | Callable:
        if faults.dropped(self, (), request.path_values):
            return close_unanswered
        try:
            result = self._run_worker(request)
        except Exception as exc:
            return self.response_from_exception(exc)
        try:
            return self.response_from_result(result)
        except Exception as exc:
            log.error("%r returned what cannot be a response", self, exc_info=exc)
            return self.response_from_exception(exc)

    def _run_worker(self, request: Request) -> Any:
        context_data = self.server.context_data_from_headers(request)
        args, kwargs = self.get_entrypoint_parameters(request)
        worker_ctx, result, exc_info = run_inline(self, args, kwargs, context_data)
        request.environ[CALL_ID_ENVIRON_KEY] = worker_ctx.call_id
        if exc_info is not None:
            raise exc_info[1]
        return result

    # --- overridable ----------------------------------------------------------------------

    def get_entrypoint_parameters(self, request: Request) -> tuple[tuple, dict[str, Any]]:
        """The method's arguments: the request, and the route's values by name."""
        return (request,), request.path_values

    def response_from_result(self, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        status, headers, payload = 200, None, result
        if isinstance(result, tuple):
            if len(result) == 3:
                status, headers, payload = result
            elif len(result) == 2:
                status, payload = result
            else:
                raise TypeError(
                    f"a tuple result must be (status, body) or (status, headers, body), "
                    f"not {len(result)} items"
                )
        if payload is None:
            return Response(status=status, headers=headers)
        if isinstance(payload, (dict, list)):
            return Response(json.dumps(payload), status, headers, mimetype="application/json")
        if not isinstance(payload, (str, bytes)):
            raise TypeError(
                f"payload must be str, bytes, dict or list, not {type(payload).__name__}"
            )
        return Response(payload, status, headers)

    def response_from_exception(self, exc: Exception) -> Response:
        """Nameko's ``Error: TYPE: VALUE`` text body, or JSON for a client that asks for it.

        400 for expected exceptions and bad requests, 500 for the rest. werkzeug's exceptions
        keep their own status and headers, and ``abort(response)`` answers with its response.
        """
        if isinstance(exc, ArgumentsRejected):
            body = {"error": type(exc).__name__, "message": str(exc), "errors": exc.errors}
            return Response(json.dumps(body), 400, mimetype="application/json")
        headers: list[tuple[str, str]] = []
        error = serialize(exc)
        message = error["value"]
        if isinstance(exc, HTTPException):
            if exc.response is not None:
                return exc.response
            status = exc.code or 500
            headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
            message = exc.description or ""
        elif isinstance(exc, ContainerBeingKilled):
            status = 503
        elif isinstance(exc, (BadRequest, self.expected_exceptions)):
            status = 400
        else:
            status = 500
        text = f"Error: {error['exc_type']}: {error['value']}\n"
        trace = "".join(traceback.format_exception(exc)) if self.server.debug else None
        if trace is not None:
            text += "\n" + trace
        json_form = error_response(status, error["exc_type"], message, headers, trace)
        return ErrorResponse(text, json_form, status=status, headers=headers)


def close_unanswered(environ: dict, start_response: Callable) -> list[bytes]:
    """A WSGI app that closes the connection with no response (a ``drop`` fault)."""
    eventlet.wsgi.WSGI_LOCAL.already_handled = True
    return []


def run_inline(
    entrypoint: Entrypoint, args: tuple, kwargs: dict[str, Any], context_data: dict[str, Any]
) -> tuple[WorkerContext, Any, tuple | None]:
    """Run a worker for ``entrypoint`` in the calling green thread: ``(ctx, result, exc_info)``.

    For entrypoints whose green thread would only wait for a spawned worker (an HTTP request,
    a websocket frame). A call whose arguments do not fit the method raises IncorrectSignature.
    """
    args, kwargs = entrypoint.check_call(args, kwargs)
    outcome: list[tuple[Any, tuple | None]] = []

    def keep(worker_ctx: WorkerContext, result: Any, exc_info: tuple | None):
        outcome.append((result, exc_info))
        return result, exc_info

    worker_ctx = entrypoint.container.run_worker(entrypoint, args, kwargs, context_data, keep)
    result, exc_info = outcome[0]
    return worker_ctx, result, exc_info


http = HttpRequestHandler.decorator
