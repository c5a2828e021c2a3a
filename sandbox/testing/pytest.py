"""The pytest plugin (entry point ``pytest11``): Nameko's fixtures under sandbox's name."""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from sandbox.containers import get_container_cls
from sandbox.runners import ServiceRunner


@pytest.fixture
def empty_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def container_factory():
    """``container_factory(ServiceCls, config=None)``: containers killed after the test."""
    containers = []

    def make(service_cls: type, config: Mapping[str, Any] | None = None):
        container = get_container_cls(config)(service_cls, config)
        containers.append(container)
        return container

    yield make
    for container in containers:
        container.kill()


@pytest.fixture
def runner_factory():
    """``runner_factory([config,] *ServiceClasses)``: runners killed after the test."""
    runners = []

    def make(*args: Any) -> ServiceRunner:
        config = None
        if args and isinstance(args[0], Mapping):
            config, args = args[0], args[1:]
        runner = ServiceRunner(config)
        for service_cls in args:
            runner.add_service(service_cls)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.kill()


@pytest.fixture
def web_config(empty_config: dict[str, Any]):
    """``WEB_SERVER_ADDRESS`` on a free port, in the config and patched into the global one."""
    from sandbox.config import config
    from sandbox.testing.utils import find_free_port
    from sandbox.web.server import WEB_SERVER_CONFIG_KEY

    empty_config[WEB_SERVER_CONFIG_KEY] = f"127.0.0.1:{find_free_port()}"
    with config.patch(empty_config):
        yield empty_config


@pytest.fixture
def web_config_port(web_config: dict[str, Any]) -> int:
    from sandbox.web.server import WEB_SERVER_CONFIG_KEY, parse_address

    return parse_address(web_config[WEB_SERVER_CONFIG_KEY]).port


@pytest.fixture
def web_session(web_config_port: int):
    """A ``requests.Session`` whose relative URLs go to the web server: ``.get("/path")``."""
    from urllib.parse import urljoin

    import requests  # a test dependency, not one of sandbox's

    base_url = f"http://127.0.0.1:{web_config_port}/"

    class WebSession(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any):
            return super().request(method, urljoin(base_url, url), *args, **kwargs)

    with WebSession() as session:
        yield session


# --- AMQP: ``rabbit_config`` runs a test on the embedded broker and on RabbitMQ -----------------

DEFAULT_TEST_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandbox")
    group.addoption(
        "--amqp-uri",
        default=None,
        help="RabbitMQ for the rabbitmq variant of rabbit_config (else $SANDBOX_TEST_AMQP_URI, "
        f"else {DEFAULT_TEST_AMQP_URI} when it answers)",
    )
    group.addoption(
        "--rabbit-api-uri",
        default=None,
        help="its management API, which makes a vhost per test "
        "(default: http://user:password@<amqp host>:15672)",
    )


class RabbitManager:
    """Just enough of RabbitMQ's management HTTP API for a throwaway vhost per test."""

    def __init__(self, amqp_uri: str, api_uri: str):
        amqp = urllib.parse.urlsplit(amqp_uri)
        self.amqp_uri = amqp_uri
        self.user = urllib.parse.unquote(amqp.username or "guest")
        api = urllib.parse.urlsplit(api_uri)
        self.api_url = f"{api.scheme}://{api.hostname}:{api.port or 15672}/api"
        credentials = f"{api.username or 'guest'}:{api.password or 'guest'}"
        self._authorization = "Basic " + base64.b64encode(credentials.encode()).decode()

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        http_request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        http_request.add_header("Authorization", self._authorization)
        http_request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else None

    def uri_for(self, vhost: str) -> str:
        """The AMQP URI of ``vhost``."""
        parts = urllib.parse.urlsplit(self.amqp_uri)
        return urllib.parse.urlunsplit(parts._replace(path="/" + _quote(vhost)))

    def create_vhost(self, vhost: str) -> None:
        self.request("PUT", f"/vhosts/{_quote(vhost)}")
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        self.request("PUT", f"/permissions/{_quote(vhost)}/{_quote(self.user)}", permissions)

    def delete_vhost(self, vhost: str) -> None:
        """Delete ``vhost`` with everything in it; the broker closes its connections."""
        self.request("DELETE", f"/vhosts/{_quote(vhost)}")


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _unreachable(manager: RabbitManager) -> str | None:
    """Why RabbitMQ cannot serve the tests, or None when it can."""
    amqp = urllib.parse.urlsplit(manager.amqp_uri)
    address = (amqp.hostname or "127.0.0.1", amqp.port or 5672)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        return f"no RabbitMQ answers at {address[0]}:{address[1]} ({exc})"
    try:
        manager.request("GET", "/overview", timeout=3)
    except (OSError, ValueError) as exc:
        return (
            f"RabbitMQ's management API at {manager.api_url} does not answer ({exc}); "
            "scripts/ensure-rabbitmq.sh enables it"
        )
    return None


@pytest.fixture(scope="session")
def rabbit_manager(pytestconfig: pytest.Config) -> RabbitManager:
    """The RabbitMQ the tests use (skips when none answers)."""
    amqp_uri = (
        pytestconfig.getoption("--amqp-uri")
        or os.environ.get("SANDBOX_TEST_AMQP_URI")
        or DEFAULT_TEST_AMQP_URI
    )
    amqp = urllib.parse.urlsplit(amqp_uri)
    api_uri = pytestconfig.getoption("--rabbit-api-uri") or (
        f"http://{amqp.username or 'guest'}:{amqp.password or 'guest'}@"
        f"{amqp.hostname or '127.0.0.1'}:15672"
    )
    manager = RabbitManager(amqp_uri, api_uri)
    reason = _unreachable(manager)
    if reason is not None:
        pytest.skip(reason)
    return manager


@pytest.fixture(params=["memory", "rabbitmq"])
def rabbit_config(request: pytest.FixtureRequest):
    """``{"AMQP_URI": ...}`` of a fresh, empty vhost, also patched into the global config.

    The test runs twice: on the embedded broker (``memory://``) and on RabbitMQ (see
    ``--amqp-uri``), skipped with the reason when no RabbitMQ answers. Ask for it before
    ``container_factory``/``runner_factory``, so that containers stop before the vhost goes.
    """
    from sandbox import broker
    from sandbox.amqp.transport import close_pools
    from sandbox.config import config
    from sandbox.runtime import get_runtime

    vhost = f"sandbox-test-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        amqp_uri = f"memory:///{vhost}"

        def drop_vhost() -> None:
            get_runtime().call(broker.reset, vhost)  # its expiry timers live in the hub
    else:
        manager: RabbitManager = request.getfixturevalue("rabbit_manager")
        manager.create_vhost(vhost)
        amqp_uri = manager.uri_for(vhost)

        def drop_vhost() -> None:
            manager.delete_vhost(vhost)

    test_config = {"AMQP_URI": amqp_uri}
    try:
        with config.patch(test_config):
            yield test_config
    finally:
        get_runtime().call(close_pools, amqp_uri)
        drop_vhost()


# --- websockets ----------------------------------------------------------------------------------


@pytest.fixture
def websocket(web_config_port: int):
    """``websocket()``: a connected :class:`~sandbox.testing.websocket.VirtualSocket` to ``/ws``.

    Each runs in its own thread; all are closed after the test.
    """
    from sandbox.testing.websocket import make_virtual_socket, run_in_thread

    opened = []

    def socket_creator():
        ws_app, connect = make_virtual_socket("127.0.0.1", web_config_port)
        opened.append((ws_app, run_in_thread(ws_app)))
        sock = connect()
        sock.app = ws_app
        return sock

    yield socket_creator
    for ws_app, thread in opened:
        ws_app.close()
        thread.join(10)
