"""HTTP entrypoints (``sandbox.web.handlers.http``) and the process-wide server behind them."""

from sandbox.web.handlers import HttpRequestHandler, http
from sandbox.web.server import Request, WebServer, get_base_url, get_listener_address

__all__ = [
    "HttpRequestHandler",
    "Request",
    "WebServer",
    "get_base_url",
    "get_listener_address",
    "http",
]
