"""``sb.http``: HTTP calls to the kernel's web server; responses display themselves."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import requests

from sandbox import tracing
from sandbox.config import config
from sandbox.notebook.errors import HttpTimeout, abandoned_on_interrupt
from sandbox.web.server import get_base_url

_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def base_url() -> str:
    """Where this kernel serves HTTP; else the configured address (a cluster, from the shell).

    A config that binds every interface (``0.0.0.0:8000``, as exported) is reached on this host.
    """
    served = get_base_url()
    if served:
        return served
    host, _, port = str(config["WEB_SERVER_ADDRESS"]).rpartition(":")
    return f"http://{'127.0.0.1' if host in _WILDCARDS else host}:{port}"


class HttpResponse:
    """A response: ``status``, ``headers``, ``text``, ``json()``; it renders itself in a cell."""

    def __init__(self, response: requests.Response):
        self._response = response
        self.status = response.status_code
        self.reason = response.reason
        self.headers = dict(response.headers)
        self.text = response.text
        self.content = response.content
        self.url = response.url
        self.method = response.request.method

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        return self._response.json()

    def _json_or_none(self) -> Any:
        if "json" not in self.headers.get("Content-Type", ""):
            return None
        try:
            return self.json()
        except ValueError:
            return None

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        body = self._json_or_none()
        shown = json.dumps(body, indent=2) if body is not None else self.text
        colour = "#2e7d32" if self.ok else "#c62828"
        bundle["text/html"] = (
            f"<div><b style='color:{colour}'>{self.status} {html.escape(self.reason or '')}</b>"
            f" <code>{html.escape(self.method)} {html.escape(self.url)}</code>"
            f"<pre style='margin:4px 0'>{html.escape(shown[:20000])}</pre></div>"
        )
        if body is not None:
            bundle["application/json"] = body
        return bundle

    def __repr__(self) -> str:
        body = self.text if len(self.text) <= 2000 else self.text[:2000] + "..."
        return f"{self.status} {self.reason}\n{body}"


class HttpClient:
    """``sb.http.get("/path")``, ``.post``, ``.put``, ``.patch``, ``.delete``, ``.request``.

    A path is sent to ``base_url`` when set (a cluster's address: ``sandbox shell --http``,
    ``sb.connect(..., http=URL)``), else to this kernel's web server.
    """

    base_url: str | None = None

    def __init__(
        self,
        on_call: Callable[[], None] | None = None,
        timeout: Callable[[], float | None] = lambda: None,
    ):
        """``timeout()``: the seconds a call waits for its answer when it names none."""
        self._session = requests.Session()
        # Errors then come in their JSON form, which a cell shows as data; other clients get
        # Nameko's text form.
        self._session.headers["Accept"] = "application/json, */*;q=0.9"
        self._on_call = on_call
        self._timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> HttpResponse:
        if self._on_call is not None:
            self._on_call()
        method = method.upper()
        url = path if path.startswith(("http://", "https://")) else self.url_of(path)
        timeout = kwargs.setdefault("timeout", self._timeout())
        with abandoned_on_interrupt(f"{method} {path}"), tracing.http_call(method, url) as call:
            kwargs["headers"] = {**call.headers, **(kwargs.get("headers") or {})}
            try:
                response = self._session.request(method, url, **kwargs)
            except requests.Timeout:
                raise HttpTimeout(f"{method} {path} timed out after {timeout}s") from None
            call.answered(response.status_code)
            return HttpResponse(response)

    def url_of(self, path: str) -> str:
        return (self.base_url or base_url()).rstrip("/") + _slash(path)

    def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"<sb.http on {self.base_url or base_url()}>"


def _slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path
