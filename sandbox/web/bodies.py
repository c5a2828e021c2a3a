"""Request bodies, read whole before the worker starts, within the listener's limits."""

from __future__ import annotations

import io
import logging

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from sandbox.web.connections import CONNECTION_ENVIRON_KEY
from sandbox.web.protocol import BadRequestBody, close_after_response
from sandbox.web.responses import http_exception_response

# Under the server's name, as before the split: log filters and handlers name it.
log = logging.getLogger("sandbox.web.server")


def buffer_body(environ: dict, limit: int | None) -> Response | None:
    """Read the request body before the worker starts; a response refusing it, if it must be.

    A client sending its body slowly then holds its own connection only, never one of the
    service's max_workers. A body over ``limit`` is a 413, a body that ends early or breaks
    the chunked coding a 400; either way the connection closes after the answer, as what
    is left of the body cannot be told from a next request.
    """
    length = environ.get("CONTENT_LENGTH")  # sandbox.web.protocol has checked its digits
    chunked = length is None and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
    try:
        if chunked:
            length = buffer_chunked_body(environ, limit)
        if limit is not None and length and int(length) > limit:
            close_after_response(environ)
            return http_exception_response(RequestEntityTooLarge())
        if length and not chunked:
            buffer_sized_body(environ, int(length))
    except BadRequestBody as exc:
        close_after_response(environ)
        log.debug(
            "refused the body of %s %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"], exc
        )
        return Response(f"{exc}\n", 400, mimetype="text/plain")
    return None


def buffer_sized_body(environ: dict, length: int) -> None:
    body = read_body(environ, length)
    if len(body) < length:
        raise BadRequestBody(f"the body ends after {len(body)} of {length} bytes")
    environ["wsgi.input"] = io.BytesIO(body)


# Bodies are read in blocks of this size, the body deadline moving on after each.
BODY_BLOCK = 64 * 1024


def read_body(environ: dict, most: int | None) -> bytes:
    """The request body, ``most`` bytes of it at most, read within the body deadline.

    A block at a time: a client must keep up ``WEB_BODY_MIN_RATE`` over the body as a whole
    (see :mod:`sandbox.web.connections`), at the cost of one clock reading per block.
    """
    source, connection = environ["wsgi.input"], environ.get(CONNECTION_ENVIRON_KEY)
    blocks, received = [], 0
    while most is None or received < most:
        if connection is not None:
            connection.receiving(received)
        block = source.read(BODY_BLOCK if most is None else min(BODY_BLOCK, most - received))
        if not block:
            break
        blocks.append(block)
        received += len(block)
    if connection is not None:
        connection.serving()
    return b"".join(blocks)


def buffer_chunked_body(environ: dict, limit: int | None) -> int:
    """Read a chunked body, one byte past ``limit`` at most; it then has a Content-Length.

    werkzeug either ignores a body without a Content-Length or, given a limit, silently
    truncates it there: a handler could not tell an overflowing body from one that fits.
    Raises :class:`~sandbox.web.protocol.BadRequestBody` for a body that breaks the coding.
    """
    body = read_body(environ, None if limit is None else limit + 1)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input_terminated"] = True  # werkzeug: a chunked body is safe to read now
    return len(body)
