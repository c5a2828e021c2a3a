"""Error responses in Nameko's form, with a JSON form for clients that ask for one; sending a
response through WSGI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response

from sandbox.web.response_writer import no_body


def error_response(
    status: int,
    error: str,
    message: str,
    headers: Iterable[tuple[str, str]] | None = None,
    traceback_text: str | None = None,
) -> Response:
    """An error for clients that ask for JSON: ``{"error": TYPE, "message": ...}``."""
    body: dict[str, Any] = {"error": error, "message": message}
    if traceback_text is not None:
        body["traceback"] = traceback_text
    return Response(json.dumps(body), status, headers, mimetype="application/json")


class ErrorResponse(Response):
    """An error in Nameko's form (text, or werkzeug's page), carrying its JSON form as well.

    The server answers with ``json_form`` instead when the request's ``Accept`` header prefers
    ``application/json`` to ``text/plain``; a response built any other way is sent as it is.
    """

    def __init__(self, body: str | bytes, json_form: Response, **kwargs: Any):
        super().__init__(body, **kwargs)
        self.json_form = json_form


def prefers_json(request: WerkzeugRequest) -> bool:
    accept = request.accept_mimetypes
    return accept.quality("application/json") > accept.quality("text/plain")


def negotiated(response: Response, request: WerkzeugRequest) -> Response:
    """``response``, or its JSON form when it is an :class:`ErrorResponse` and JSON is wanted."""
    if isinstance(response, ErrorResponse) and prefers_json(request):
        return response.json_form
    return response


def http_exception_response(exc: HTTPException, environ: Mapping | None = None) -> Response:
    """werkzeug's own answer to ``exc`` (Nameko's), or its JSON form for clients that ask."""
    page = exc.get_response(environ)
    if exc.response is not None or page.status_code < 400:  # the whole answer, or a redirect
        return page
    kept = [(k, v) for k, v in page.headers if k.lower() not in ("content-type", "content-length")]
    json_form = error_response(page.status_code, type(exc).__name__, exc.description or "", kept)
    return ErrorResponse(page.get_data(), json_form, status=page.status, headers=page.headers)


def send(response: Response, environ: Mapping, start_response: Callable) -> Iterable[bytes]:
    """``response(environ, start_response)``, the short way when werkzeug would send it as is.

    werkzeug copies the headers and wraps the body for every response, to adjust the few
    that need it; that cost a tenth of a trivial request.
    """
    fields = response.headers.to_wsgi_list()
    if not sent_as_is(response, fields, environ):
        return response(environ, start_response)
    start_response(response.status, fields)
    return SentBody(response)


# Classes that leave werkzeug's WSGI methods as they are: a subclass may change them.
_PLAIN_RESPONSES = (Response, ErrorResponse)
# Headers werkzeug rewrites (a location made a URL) or works out (a missing length).
_ADJUSTED_FIELDS = frozenset({"location", "content-location"})


def sent_as_is(response: Response, fields: list[tuple[str, str]], environ: Mapping) -> bool:
    """Whether werkzeug would send ``response`` with ``fields`` and its body unchanged: a body
    in memory with its length, one that has a body (:func:`no_body`: not HEAD, 1xx, 204 or
    304), no location to make a URL of."""
    if type(response) not in _PLAIN_RESPONSES or not response.is_sequence:
        return False
    if no_body(response.status_code, environ["REQUEST_METHOD"]):
        return False
    names = {name.lower() for name, _ in fields}
    return "content-length" in names and not names & _ADJUSTED_FIELDS


class SentBody(list):
    """A response's body in memory; the server closes it once sent, and so the response
    (its ``call_on_close`` functions run), as werkzeug's own body would."""

    def __init__(self, response: Response):
        super().__init__([response.get_data()])
        self.close = response.close
