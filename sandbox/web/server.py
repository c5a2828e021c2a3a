"""The HTTP server: every container in the process is served from one socket per address.

Nameko runs one eventlet.wsgi server per container, so two services configured with the same
``WEB_SERVER_ADDRESS`` both bind the port and the kernel splits connections between them. Here a
process-wide registry holds one :class:`Listener` per bind address; each container's
:class:`WebServer` mounts its routes on it at start and takes them off at stop, and the socket
closes when the last container leaves. Everything here runs in the runtime's hub thread, except
the read-only :func:`get_listener_address` and :func:`get_base_url`.

A listener holds its connections within the limits of :mod:`sandbox.web.connections`, read
from its first container's config: ``WEB_MAX_CONNECTIONS``, ``WEB_KEEPALIVE_TIMEOUT``,
``WEB_HEAD_TIMEOUT``, ``WEB_BODY_TIMEOUT`` and ``WEB_BODY_MIN_RATE``; ``WEB_SOCKET_TIMEOUT``
still ends a connection silent that long at any point (a client not reading its answer).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import eventlet.wsgi
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response

from sandbox import recorder
from sandbox.config import config
from sandbox.constants import WEB_SERVER_CONFIG_KEY
from sandbox.exceptions import ConfigurationError
from sandbox.extensions import ProviderCollector, SharedExtension
from sandbox.utils import REDACTED
from sandbox.web.bodies import buffer_body
from sandbox.web.connections import ConnectionLimits, ConnectionTable
from sandbox.web.protocol import HttpOnlyProtocol
from sandbox.web.responses import http_exception_response, negotiated, send

log = logging.getLogger(__name__)

DEFAULT_WEB_SERVER_ADDRESS = "127.0.0.1:8000"
MAX_CONTENT_LENGTH_CONFIG_KEY = "MAX_CONTENT_LENGTH"
DEFAULT_MAX_CONTENT_LENGTH = 10 * 1024 * 1024
WEB_DEBUG_CONFIG_KEY = "WEB_DEBUG"
SOCKET_TIMEOUT_CONFIG_KEY = "WEB_SOCKET_TIMEOUT"
# A client silent for this long loses its connection, whatever it is doing: the last resort
# behind the deadlines of sandbox.web.connections (a client that stops reading an answer).
DEFAULT_SOCKET_TIMEOUT = 60.0

# The root app hands the matched route to the container's app through the environ, so that
# middleware from ``get_wsgi_app`` sits between them and routing runs once per request.
ROUTE_ENVIRON_KEY = "sandbox.route"
CALL_ID_ENVIRON_KEY = "sandbox.call_id"

# How long a closing listener lets requests already being answered finish.
CLOSE_GRACE_SECONDS = 1.0


class BindAddress(NamedTuple):
    address: str
    port: int


def parse_address(address: str | int) -> BindAddress:
    """``[host:]port`` to a BindAddress, the host 127.0.0.1 by default; ``[::1]:80`` for IPv6."""
    text = str(address).strip()
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        return BindAddress(host, int(port))
    except ValueError:
        raise ConfigurationError(
            f"{WEB_SERVER_CONFIG_KEY} must be '[host:]port', not {address!r}"
        ) from None


def base_url(address: BindAddress) -> str:
    host = "127.0.0.1" if address.address in ("", "0.0.0.0") else address.address
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{address.port}"


class _RequestJson:
    """The json module ``Request.get_json`` parses with.

    JSON nested deeper than the recursion limit is a client's error, so it fails like any
    invalid JSON (werkzeug answers 400) instead of with a RecursionError (a 500).
    """

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(data: str | bytes, **kwargs: Any) -> Any:
        try:
            return json.loads(data, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class Request(WerkzeugRequest):
    """werkzeug's Request, plus the route's ``path_values`` and the body as text (Nameko)."""

    json_module = _RequestJson
    path_values: dict[str, Any]

    @property
    def body(self) -> str:
        return self.get_data(as_text=True)


class WsgiApp:
    """One container's WSGI app: runs the handler the listener matched for this request."""

    def __init__(self, server: WebServer):
        self.server = server

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        handler, path_values = environ[ROUTE_ENVIRON_KEY]
        request = Request(environ)
        request.max_content_length = self.server.max_content_length
        request.path_values = path_values
        response = self.respond(handler, request)
        if not isinstance(response, Response):
            # A WSGI app that takes the connection over (a websocket): no HTTP answer to log.
            return response(environ, start_response)
        response = negotiated(response, request)
        record_request(request, response, started, handler)
        return send(response, environ, start_response)

    def respond(self, handler: Any, request: Request) -> Response | Callable:
        refusal = buffer_body(request.environ, request.max_content_length)
        if refusal is not None:
            return refusal
        return handler.handle_request(request)


def record_request(
    request: Request, response: Response, started: float, handler: Any = None
) -> None:
    """The access log: a ``http_request`` record for the recorder, a line at DEBUG."""
    if not recorder.observed() and not log.isEnabledFor(logging.DEBUG):
        return  # a line and a record nobody reads need not be made
    duration = time.perf_counter() - started
    service = handler.container.service_name if handler is not None else None
    entrypoint = getattr(handler, "method_name", None)
    path, url = request.path, None  # None: the request's own URL
    secrets = sensitive_path_values(request, handler)
    if secrets:
        path, url = masked(path, secrets), masked(request.url, secrets)
    log.debug(
        "%s %s %s %.2fms (%s.%s)",
        request.method,
        path,
        response.status_code,
        duration * 1000,
        service,
        entrypoint,
    )
    recorder.notify(
        "http_request",
        {
            "method": request.method,
            "path": path,
            "url": url,
            "status": response.status_code,
            "duration": duration,
            "service": service,
            "entrypoint": entrypoint,
            "call_id": request.environ.get(CALL_ID_ENVIRON_KEY),
            "request": request,
            "response": response,
        },
    )


def sensitive_path_values(request: Request, handler: Any) -> list[str]:
    """The route values that are ``sensitive_arguments`` of the handler, as the URL has them."""
    names = getattr(handler, "sensitive_arguments", None)
    if not names:
        return []
    values = getattr(request, "path_values", {})
    shown = [str(values[name]) for name in names if name in values]
    return [*shown, *(urllib.parse.quote(value) for value in shown)]


def masked(text: str, secrets: list[str]) -> str:
    # Every occurrence: masking a harmless copy of a value beats showing a secret one.
    for secret in filter(None, secrets):
        text = text.replace(secret, REDACTED)
    return text


class Listener:
    """A listening socket and its eventlet.wsgi server, shared by every container bound to it.

    The eventlet.wsgi server that the first container's ``get_wsgi_server`` returned serves
    the socket (its protocol, timeouts and debug setting apply to every connection), with
    this listener as its app: it routes each request, then hands it to the app of the
    container whose route matched, as that container's ``get_wsgi_server`` left it. Its
    :class:`~sandbox.web.connections.ConnectionTable` accepts and holds the connections,
    within ``limits``.
    """

    def __init__(self, requested: BindAddress, limits: ConnectionLimits | None = None):
        self.requested = requested
        self.sock = listen(requested)
        self.address = BindAddress(*self.sock.getsockname()[:2])
        self.url_map = Map()
        self._routes = self.url_map.bind(ROUTING_HOST)
        self.wsgi_server: eventlet.wsgi.Server | None = None
        self._servers: list[WebServer] = []
        self.connections = ConnectionTable(
            self.sock, limits or ConnectionLimits(), base_url(self.address)
        )
        log.debug("listening on %s", base_url(self.address))

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            (server, handler), path_values = self.match(environ)
        except HTTPException as exc:
            request = Request(environ)
            response = negotiated(http_exception_response(exc, environ), request)
            record_request(request, response, started)
            return response(environ, start_response)
        environ[ROUTE_ENVIRON_KEY] = (handler, path_values)
        return server.wsgi_app(environ, start_response)

    def match(self, environ: dict) -> tuple[Any, dict[str, Any]]:
        """The endpoint and path values of the route ``environ`` asks for, or HTTPException.

        One adapter serves every request: binding the map to each request's environ (its
        host, scheme and path parsed again) cost as much as the match. Only a redirect names
        the request's host, so one is matched again, bound to that request.
        """
        path = environ["PATH_INFO"].encode("latin-1").decode(errors="replace")
        try:
            return self._routes.match(path, environ["REQUEST_METHOD"], websocket=upgrading(environ))
        except RequestRedirect:
            return self.url_map.bind_to_environ(environ).match()

    def serve(self, wsgi_server: eventlet.wsgi.Server) -> None:
        """Start accepting connections, served by ``wsgi_server`` with this listener as app."""
        wsgi_server.app = self
        self.wsgi_server = wsgi_server
        self.connections.start(wsgi_server)

    # --- routes ---------------------------------------------------------------------------

    def attach(self, server: WebServer) -> None:
        """Mount ``server``'s routes; a route another service already serves is an error."""
        for other in self._servers:
            if other.service_name != server.service_name:
                _check_conflicts(server, other, self.address)
        self._servers.append(server)
        self.refresh()

    def detach(self, server: WebServer) -> bool:
        """Take ``server``'s routes off; True when no container is left on this listener."""
        if server in self._servers:
            self._servers.remove(server)
            self.refresh()
        return not self._servers

    def refresh(self) -> None:
        """Rebuild the routing map from every attached container's current routes.

        During a reload the same service is attached twice: the newer container's routes
        shadow the older one's, so new requests reach new code while old requests finish.
        """
        rules, seen = [], set()
        for server in reversed(self._servers):
            for rule in server.url_map.iter_rules():
                key = _rule_key(rule)
                if key not in seen:
                    seen.add(key)
                    rules.append(_routed_copy(rule, server))
        self.url_map = Map(rules)
        self._routes = self.url_map.bind(ROUTING_HOST)

    def close(self, grace: float) -> None:
        """Stop accepting, free the port, and end the open connections.

        Idle keep-alive connections close at once; requests being answered get ``grace``
        seconds to finish.
        """
        self.connections.close(grace)
        log.debug("closed %s", base_url(self.address))


# The host the shared routing adapter is bound to: no route matches on the host (werkzeug
# finds no subdomain in a request's own host), and a redirect is matched again with the real one.
ROUTING_HOST = "localhost"


def upgrading(environ: dict) -> bool:
    """Whether the request asks for a websocket, as werkzeug's routing tells one."""
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return False
    tokens = environ.get("HTTP_CONNECTION", "").lower().split(",")
    return any(token.strip(" \t") == "upgrade" for token in tokens)


# Clients the kernel holds for accept(): eventlet's 50 drops new clients' SYNs in a burst of
# connections, and they then wait a second or more before trying again.
LISTEN_BACKLOG = 1024


# Listening sockets bound by a parent process (``sandbox run --workers``), by the address
# asked for: its workers share one accept queue, so no client is refused while one restarts.
_adopted: dict[BindAddress, Any] = {}


def adopt_listening_socket(address: BindAddress, sock: Any) -> None:
    """Serve ``address`` from ``sock`` (green, bound and listening) instead of binding it."""
    _adopted[address] = sock


def listen(address: BindAddress) -> Any:
    if address in _adopted:
        return _adopted.pop(address)
    family = socket.AF_INET6 if ":" in address.address else socket.AF_INET
    try:
        # No SO_REUSEPORT: another process asking for this port must fail, not share it.
        return eventlet.listen(address, family, backlog=LISTEN_BACKLOG, reuse_port=False)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {base_url(address)}: {exc.strerror}") from None


def _routed_copy(rule: Rule, server: WebServer) -> Rule:
    """An unbound copy of ``rule`` whose endpoint names the container's server too."""
    copy = rule.empty()
    copy.websocket = rule.websocket  # empty() forgets it, and werkzeug routes on it
    copy.endpoint = (server, rule.endpoint)
    return copy


def _rule_key(rule: Rule) -> tuple[str, frozenset[str]]:
    return rule.rule, frozenset(rule.methods or ())


def _check_conflicts(server: WebServer, other: WebServer, address: BindAddress) -> None:
    for rule in server.url_map.iter_rules():
        for taken in other.url_map.iter_rules():
            if rule.rule != taken.rule:
                continue
            methods, taken_methods = rule.methods, taken.methods
            if methods is None or taken_methods is None or methods & taken_methods:
                shared = sorted((methods or set()) & (taken_methods or set())) or ["*"]
                raise ConfigurationError(
                    f"service '{server.service_name}' cannot serve {','.join(shared)} "
                    f"{rule.rule}: service '{other.service_name}' already serves it on "
                    f"{base_url(address)}"
                )


_listeners: dict[BindAddress, Listener] = {}


def _find_listener(address: BindAddress) -> Listener | None:
    listener = _listeners.get(address)
    if listener is None and address.port:
        # "host:0" picked a port; asking for that port by number means the same listener.
        listener = next((x for x in list(_listeners.values()) if x.address == address), None)
    return listener


def _acquire_listener(server: WebServer, address: BindAddress) -> Listener:
    listener = _find_listener(address)
    if listener is None:
        limits = ConnectionLimits.from_config(server.container.config)
        listener = _listeners[address] = Listener(address, limits)
    try:
        wsgi_server = server.get_wsgi_server(listener.sock, server.get_wsgi_app())
        server.wsgi_app = wsgi_server.app  # with whatever middleware get_wsgi_server added
        listener.attach(server)
        if listener.wsgi_server is None:
            listener.serve(wsgi_server)
    except Exception:
        _release_listener(listener, server, grace=0)
        raise
    return listener


def _release_listener(listener: Listener, server: WebServer, grace: float) -> None:
    if listener.detach(server):
        _listeners.pop(listener.requested, None)
        listener.close(grace)


def get_listener_address(address: str | int | None = None) -> BindAddress | None:
    """The address actually bound for a ``WEB_SERVER_ADDRESS``, or None when none listens.

    ``address`` defaults to the global config's; with port 0 this tells the port chosen.
    Any thread may ask.
    """
    if address is None:
        address = config.get(WEB_SERVER_CONFIG_KEY, DEFAULT_WEB_SERVER_ADDRESS)
    listener = _find_listener(parse_address(address))
    return listener.address if listener is not None else None


def get_base_url(address: str | int | None = None) -> str | None:
    """``http://host:port`` where the services of ``address`` are served, None if nowhere."""
    bound = get_listener_address(address)
    return base_url(bound) if bound is not None else None


class WebServer(ProviderCollector, SharedExtension):
    """One container's view of the shared HTTP server: its routes, app and hooks.

    Nameko's hooks are kept: override ``get_wsgi_app`` to add middleware, or wrap the
    ``wsgi_app`` that ``get_wsgi_server`` receives (either way it wraps this container's routes
    only); ``context_data_from_headers`` to read context from requests; ``get_wsgi_server`` to
    tune eventlet's server (the settings of the first container on an address serve all its
    connections); ``make_url_map`` to change the routes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.url_map = Map()
        self.wsgi_app: Callable | None = None
        self.max_content_length: int | None = DEFAULT_MAX_CONTENT_LENGTH
        self.debug = False
        self._listener: Listener | None = None

    @property
    def service_name(self) -> str:
        return self.container.service_name

    @property
    def configured_addr(self) -> BindAddress:
        return parse_address(
            self.container.config.get(WEB_SERVER_CONFIG_KEY, DEFAULT_WEB_SERVER_ADDRESS)
        )

    @property
    def bind_addr(self) -> BindAddress:
        """The address served on: the bound one once started (port 0 resolved)."""
        if self._listener is not None:
            return self._listener.address
        return self.configured_addr

    @property
    def base_url(self) -> str:
        return base_url(self.bind_addr)

    def setup(self) -> None:
        settings = self.container.config
        self.max_content_length = settings.get(
            MAX_CONTENT_LENGTH_CONFIG_KEY, DEFAULT_MAX_CONTENT_LENGTH
        )
        self.debug = bool(settings.get(WEB_DEBUG_CONFIG_KEY, False))

    def start(self) -> None:
        self.url_map = self.make_url_map()
        self._listener = _acquire_listener(self, self.configured_addr)

    def unregister_provider(self, provider: Any) -> None:
        super().unregister_provider(provider)
        if self._listener is not None:
            # A stopped entrypoint takes no new requests: its route goes at once.
            self.url_map = self.make_url_map()
            self._listener.refresh()

    def stop(self) -> None:
        super().stop()
        self._release(CLOSE_GRACE_SECONDS)

    def kill(self) -> None:
        self._release(0)

    def _release(self, grace: float) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _release_listener(listener, self, grace)

    # --- Nameko's hooks -------------------------------------------------------------------

    def make_url_map(self) -> Map:
        rules = []
        for provider in self._providers:
            rule = provider.get_url_rule()
            rule.endpoint = provider
            rules.append(rule)
        return Map(rules)

    def get_wsgi_app(self) -> Callable:
        return WsgiApp(self)

    def get_wsgi_server(
        self,
        sock: Any,
        wsgi_app: Callable,
        protocol: type = HttpOnlyProtocol,
        debug: bool = False,
    ) -> eventlet.wsgi.Server:
        timeout = self.container.config.get(SOCKET_TIMEOUT_CONFIG_KEY, DEFAULT_SOCKET_TIMEOUT)
        return eventlet.wsgi.Server(
            sock,
            sock.getsockname(),
            wsgi_app,
            protocol=protocol,
            debug=debug,
            log_output=False,
            socket_timeout=timeout,
        )

    def context_data_from_headers(self, request: Request) -> dict[str, Any]:
        """Context data for the worker, read from the request; none by default (Nameko)."""
        return {}
