"""A small client of RabbitMQ's management HTTP API: what the topology and ``sb.why`` read.

RabbitMQ says nothing over AMQP about bindings, consumers or queue depths of queues one does
not declare; its management plugin does. Reads only here; ``sandbox.testing.rabbit`` adds the
writes tests need.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiResponse", "HTTPError", "ManagementApi", "management_uri", "quote_name"]

MANAGEMENT_PORT = 15672


@dataclass
class ApiResponse:
    """What the management API answered to a refused request."""

    status_code: int
    reason: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class HTTPError(Exception):
    """The management API refused a request; ``response.status_code`` says how (404...)."""

    def __init__(self, message: str, response: ApiResponse):
        super().__init__(message)
        self.response = response


def quote_name(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def management_uri(amqp_uri: str, configured: str | None = None) -> str:
    """The management API of the RabbitMQ at ``amqp_uri``: ``configured`` when given, else
    port 15672 of the broker's host with the AMQP credentials."""
    if configured:
        return configured
    parts = urllib.parse.urlsplit(amqp_uri)
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
    return f"http://{credentials}@{parts.hostname or 'localhost'}:{MANAGEMENT_PORT}"


def vhost_of(amqp_uri: str) -> str:
    """The virtual host an AMQP URI names (``/`` when none)."""
    path = urllib.parse.urlsplit(amqp_uri).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


class ManagementApi:
    """The management API at ``uri`` (``http://user:password@host:15672``)."""

    def __init__(self, uri: str, timeout: float = 10):
        parts = urllib.parse.urlsplit(uri)
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        port = parts.port or MANAGEMENT_PORT
        self.api_url = f"{parts.scheme or 'http'}://{parts.hostname}:{port}/api"
        self.default_amqp_uri = (
            f"amqp://{quote_name(user)}:{quote_name(password)}@{parts.hostname}:5672/"
        )
        self.timeout = timeout
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._authorization = f"Basic {credentials}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send ``body`` as JSON to ``path`` (under ``/api``, names quoted); the decoded answer.

        Raises :class:`HTTPError` when the API refuses, ConnectionError when it is not there.
        """
        url = f"{self.api_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        http_request = urllib.request.Request(url, data=data, method=method)
        http_request.add_header("Authorization", self._authorization)
        http_request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            answer = ApiResponse(exc.code, str(exc.reason), exc.read().decode(errors="replace"))
            raise HTTPError(f"{exc.code} {exc.reason} for {method} {url}", answer) from None
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(
                f"the RabbitMQ management HTTP API at {url} does not answer ({reason}); "
                "is the management plugin enabled?"
            ) from None
        return json.loads(text) if text else None

    def _call(self, method: str, *names: str, body: Any = None) -> Any:
        return self.request(method, "".join(f"/{quote_name(name)}" for name in names), body)

    # --- reads --------------------------------------------------------------------------------

    def get_exchanges(self, vhost: str) -> list[dict]:
        return self._call("GET", "exchanges", vhost)

    def get_queues(self, vhost: str) -> list[dict]:
        return self._call("GET", "queues", vhost)

    def get_queue(self, vhost: str, name: str) -> dict:
        return self._call("GET", "queues", vhost, name)

    def get_bindings(self, vhost: str) -> list[dict]:
        return self._call("GET", "bindings", vhost)

    def get_consumers(self, vhost: str) -> list[dict]:
        return self._call("GET", "consumers", vhost)
