"""The pytest plugin (entry point ``pytest11``): Nameko's fixtures and options under sandbox.

``rabbit_config`` runs a test once, on RabbitMQ when it answers, else on the embedded broker;
pytest's header says which. ``--sandbox-brokers=memory,rabbitmq`` (ini ``sandbox_brokers``)
runs each such test on both instead, or pins one.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import socket
import ssl
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from unittest import mock

import pytest
import yaml

from sandbox.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    SERIALIZER_CONFIG_KEY,
    WEB_SERVER_CONFIG_KEY,
)
from sandbox.containers import ServiceContainer, get_container_cls
from sandbox.runners import ServiceRunner
from sandbox.testing.rabbit import HTTPError, RabbitManager, amqp_username
from sandbox.utils import sanitize_url


@pytest.fixture
def empty_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def mock_container(empty_config: dict[str, Any]) -> mock.Mock:
    """An autospec mock of :class:`ServiceContainer` with ``empty_config`` and the default
    serializer, for testing an extension outside any container."""
    container = mock.create_autospec(ServiceContainer)
    container.config = empty_config
    container.config[SERIALIZER_CONFIG_KEY] = DEFAULT_SERIALIZER
    container.serializer = DEFAULT_SERIALIZER
    container.accept = [DEFAULT_SERIALIZER]
    return container


@pytest.fixture
def predictable_call_ids() -> Iterator[mock.Mock]:
    """Call ids end in "0", "1", "2"... in the order workers start (``service.method.0``)."""
    with mock.patch("sandbox.worker_context.new_call_id", autospec=True) as new_call_id:
        new_call_id.side_effect = (str(number) for number in itertools.count())
        yield new_call_id


def _killed_after(build: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """A factory fixture's body: ``build``'s products, each killed when the test ends."""
    made = []

    def make(*args: Any) -> Any:
        product = build(*args)
        made.append(product)
        return product

    yield make
    for product in made:
        product.kill()


def _container(service_cls: type, config: Mapping[str, Any] | None = None) -> Any:
    return get_container_cls(config)(service_cls, config)


def _runner(*args: Any) -> ServiceRunner:
    config = None
    if args and isinstance(args[0], Mapping):
        config, args = args[0], args[1:]
    runner = ServiceRunner(config)
    for service_cls in args:
        runner.add_service(service_cls)
    return runner


@pytest.fixture
def container_factory():
    """``container_factory(ServiceCls, config=None)``: containers killed after the test."""
    yield from _killed_after(_container)


@pytest.fixture
def runner_factory():
    """``runner_factory([config,] *ServiceClasses)``: runners killed after the test."""
    yield from _killed_after(_runner)


@pytest.fixture
def web_config(empty_config: dict[str, Any]):
    """``WEB_SERVER_ADDRESS`` on a free port, in the config and patched into the global one."""
    from sandbox.config import config
    from sandbox.testing.utils import find_free_port

    empty_config[WEB_SERVER_CONFIG_KEY] = f"127.0.0.1:{find_free_port()}"
    with config.patch(empty_config):
        yield empty_config


@pytest.fixture
def web_config_port(web_config: dict[str, Any]) -> int:
    from sandbox.web.server import parse_address

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


# --- AMQP: options, the broker choice, rabbit_config and friends ------------------------------

DEFAULT_TEST_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
BROKERS = ("memory", "rabbitmq")
# Nameko's defaults, relative to the directory pytest runs in.
DEFAULT_AMQP_SSL_OPTIONS = [
    ("ca_certs", "certs/cacert.pem"),
    ("certfile", "certs/clientcert.pem"),
    ("keyfile", "certs/clientkey.pem"),
    ("cert_reqs", ssl.CERT_REQUIRED),
]


_chosen_brokers = pytest.StashKey[tuple[str, ...] | None]()
_rabbitmq_probe = pytest.StashKey[RabbitManager | str]()


def parse_config_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` to ``(KEY, VALUE read as YAML)``; a bare ``KEY`` to ``(KEY, True)``."""
    key, equals, value = text.strip().partition("=")
    return (key, yaml.safe_load(value)) if equals else (key, True)


def _nameko_installed() -> bool:
    """Whether the real Nameko is installed: its pytest plugin then registers the options both
    plugins share (same names and destinations), and argparse refuses a second registration."""
    try:
        importlib.metadata.distribution("nameko")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandbox")
    _add_sandbox_options(group)
    if not _nameko_installed():
        _add_nameko_options(group)
    parser.addini(
        "sandbox_brokers",
        "the brokers each rabbit_config test runs on, as --sandbox-brokers",
        default="",
    )


def _add_sandbox_options(group: pytest.OptionGroup) -> None:
    """The plugin's own options, in its namespace, so they live beside any other plugin's."""
    group.addoption(
        "--sandbox-brokers",
        dest="sandbox_brokers",
        default=None,
        metavar="memory,rabbitmq",
        help="the brokers each rabbit_config test runs on (default: rabbitmq when it answers, "
        "else memory)",
    )
    group.addoption(
        "--sandbox-amqp-uri",
        dest="sandbox_amqp_uri",
        default=None,
        help="the RabbitMQ that rabbit_config uses, in a vhost of its own per test "
        f"(default: $SANDBOX_TEST_AMQP_URI, else {DEFAULT_TEST_AMQP_URI})",
    )
    group.addoption(
        "--sandbox-rabbit-api-uri",
        dest="sandbox_rabbit_api_uri",
        default=None,
        help="its management API, which makes the vhosts "
        "(default: http://user:password@<AMQP host>:15672)",
    )
    group.addoption(
        "--sandbox-amqp-ssl-port",
        dest="sandbox_amqp_ssl_port",
        type=int,
        default=None,
        help="RabbitMQ's TLS port, for rabbit_ssl_config (default: 5671)",
    )
    group.addoption(
        "--sandbox-amqp-ssl-option",
        dest="sandbox_amqp_ssl_options",
        type=parse_config_option,
        action="append",
        metavar="KEY=VALUE",
        default=None,
        help="an ssl option of rabbit_ssl_config (AMQP_SSL), repeatable; values are read as "
        "YAML: --sandbox-amqp-ssl-option cert_reqs=0",
    )


def _add_nameko_options(group: pytest.OptionGroup) -> None:
    """Nameko's option names, so Nameko projects' command lines and conftests work unchanged.
    They are registered only without the real Nameko, whose own plugin registers them."""
    group.addoption(
        "--amqp-uri",
        "--rabbit-amqp-uri",
        dest="RABBIT_AMQP_URI",
        default=os.environ.get("SANDBOX_TEST_AMQP_URI") or DEFAULT_TEST_AMQP_URI,
        help="Nameko's name of --sandbox-amqp-uri",
    )
    group.addoption(
        "--rabbit-api-uri",
        "--rabbit-ctl-uri",
        dest="RABBIT_API_URI",
        default=None,
        help="Nameko's name of --sandbox-rabbit-api-uri",
    )
    group.addoption(
        "--amqp-ssl-port",
        dest="AMQP_SSL_PORT",
        type=int,
        default=5671,
        help="Nameko's name of --sandbox-amqp-ssl-port",
    )
    group.addoption(
        "--amqp-ssl-option",
        dest="AMQP_SSL_OPTIONS",
        type=parse_config_option,
        action="append",
        metavar="KEY=VALUE",
        default=list(DEFAULT_AMQP_SSL_OPTIONS),
        help="Nameko's name of --sandbox-amqp-ssl-option",
    )
    group.addoption(
        "--blocking-detection",
        dest="blocking_detection",
        action="store_true",
        help="accepted for Nameko's command lines: sandbox's watchdog always logs a green "
        "thread that holds the services' hub",
    )


def _resolve_options(config: pytest.Config) -> None:
    """Each setting from the sandbox option when given, else from Nameko's (ours or the real
    Nameko plugin's), else the default; written back under Nameko's names, which Nameko
    projects' conftests read."""
    option = config.option
    amqp_uri = (
        option.sandbox_amqp_uri
        or getattr(option, "RABBIT_AMQP_URI", None)
        or os.environ.get("SANDBOX_TEST_AMQP_URI")
        or DEFAULT_TEST_AMQP_URI
    )
    api_uri = option.sandbox_rabbit_api_uri or getattr(option, "RABBIT_API_URI", None)
    if api_uri is None:
        amqp = urllib.parse.urlsplit(amqp_uri)
        credentials = amqp.netloc.rpartition("@")[0] or "guest:guest"
        api_uri = f"http://{credentials}@{amqp.hostname or 'localhost'}:15672"
    ssl_port = option.sandbox_amqp_ssl_port or getattr(option, "AMQP_SSL_PORT", None) or 5671
    # Like Nameko's, the given ssl options extend the defaults (a later key wins).
    ssl_options = getattr(option, "AMQP_SSL_OPTIONS", None) or list(DEFAULT_AMQP_SSL_OPTIONS)
    if option.sandbox_amqp_ssl_options is not None:
        ssl_options = list(DEFAULT_AMQP_SSL_OPTIONS) + option.sandbox_amqp_ssl_options
    option.RABBIT_AMQP_URI, option.RABBIT_API_URI = amqp_uri, api_uri
    option.AMQP_SSL_PORT, option.AMQP_SSL_OPTIONS = ssl_port, ssl_options


def pytest_configure(config: pytest.Config) -> None:
    _resolve_options(config)
    config.stash[_chosen_brokers] = _configured_brokers(config)


def _configured_brokers(config: pytest.Config) -> tuple[str, ...] | None:
    """The brokers ``--sandbox-brokers``/``sandbox_brokers`` name; None when they name none."""
    text = config.option.sandbox_brokers or config.getini("sandbox_brokers")
    names = tuple(name.strip() for name in str(text).split(",") if name.strip())
    unknown = [name for name in names if name not in BROKERS]
    if unknown:
        raise pytest.UsageError(
            f"sandbox_brokers: unknown broker {unknown[0]!r} (choose among {', '.join(BROKERS)})"
        )
    return names or None


def _rabbitmq(config: pytest.Config) -> RabbitManager | str:
    """The RabbitMQ the tests use, or why it cannot serve them (asked once per session)."""
    if _rabbitmq_probe not in config.stash:
        config.stash[_rabbitmq_probe] = _probe_rabbitmq(
            config.option.RABBIT_AMQP_URI, config.option.RABBIT_API_URI
        )
    return config.stash[_rabbitmq_probe]


def _probe_rabbitmq(amqp_uri: str, api_uri: str) -> RabbitManager | str:
    amqp = urllib.parse.urlsplit(amqp_uri)
    address = (amqp.hostname or "localhost", amqp.port or 5672)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        return f"no RabbitMQ at {address[0]}:{address[1]}: {exc}"
    try:
        return RabbitManager(api_uri, amqp_uri, timeout=5)
    except (OSError, HTTPError) as exc:  # not there, or refused (credentials: 401)
        return f"RabbitMQ's management API cannot make the test vhosts: {exc}"


def _brokers(config: pytest.Config) -> tuple[str, ...]:
    """The brokers a rabbit_config test runs on."""
    chosen = config.stash[_chosen_brokers]
    if chosen is not None:
        return chosen
    return ("memory",) if isinstance(_rabbitmq(config), str) else ("rabbitmq",)


def pytest_report_header(config: pytest.Config) -> str:
    brokers = ", ".join(_brokers(config))
    if config.stash[_chosen_brokers] is not None:
        return f"sandbox brokers: {brokers} (sandbox_brokers)"
    rabbitmq = _rabbitmq(config)
    if isinstance(rabbitmq, str):
        return f"sandbox brokers: {brokers} ({rabbitmq})"
    return f"sandbox brokers: {brokers} at {sanitize_url(rabbitmq.amqp_uri)}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    brokers = _brokers(metafunc.config) if "rabbit_config" in metafunc.fixturenames else ()
    if len(brokers) > 1:
        metafunc.parametrize("rabbit_config", brokers, indirect=True)


@pytest.fixture(scope="session")
def rabbit_manager(pytestconfig: pytest.Config) -> RabbitManager:
    """A client of RabbitMQ's management API (skips the test when RabbitMQ does not answer)."""
    rabbitmq = _rabbitmq(pytestconfig)
    if isinstance(rabbitmq, str):
        pytest.skip(rabbitmq)
    return rabbitmq


@pytest.fixture
def rabbit_config(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """``{"AMQP_URI": ..., "vhost": ..., "username": ...}`` of a fresh, empty vhost; its
    ``AMQP_URI`` is patched into the global config too.

    The broker is RabbitMQ when it answers, else the embedded one (``memory://``); see
    ``--sandbox-brokers``. Ask for it before ``container_factory``/``runner_factory``, so
    that containers stop before the vhost goes.
    """
    from sandbox.amqp.pool import close_pools
    from sandbox.config import config
    from sandbox.runtime import get_runtime

    broker = getattr(request, "param", None) or _brokers(request.config)[0]
    vhost = f"sandbox-test-{uuid.uuid4().hex[:12]}"
    make_vhost = _memory_vhost if broker == "memory" else _rabbitmq_vhost
    test_config, drop_vhost = make_vhost(request, vhost)
    try:
        with config.patch({AMQP_URI_CONFIG_KEY: test_config[AMQP_URI_CONFIG_KEY]}):
            yield test_config
    finally:
        get_runtime().call(close_pools, test_config[AMQP_URI_CONFIG_KEY])
        drop_vhost()


VhostConfig = tuple[dict[str, Any], Callable[[], None]]  # rabbit_config, and how to undo it


def _memory_vhost(request: pytest.FixtureRequest, vhost: str) -> VhostConfig:
    from sandbox import broker
    from sandbox.runtime import get_runtime

    def drop() -> None:
        get_runtime().call(broker.reset, vhost)  # its expiry timers live in the hub

    return {AMQP_URI_CONFIG_KEY: f"memory:///{vhost}", "vhost": vhost, "username": None}, drop


def _rabbitmq_vhost(request: pytest.FixtureRequest, vhost: str) -> VhostConfig:
    manager: RabbitManager = request.getfixturevalue("rabbit_manager")
    amqp_uri = manager.create_vhost_for_amqp_user(vhost)
    test_config = {
        AMQP_URI_CONFIG_KEY: amqp_uri,
        "vhost": vhost,
        "username": amqp_username(amqp_uri),
    }
    return test_config, lambda: manager.delete_vhost(vhost)


@pytest.fixture
def amqp_uri(rabbit_config: dict[str, Any]) -> str:
    """The ``AMQP_URI`` of ``rabbit_config``."""
    return rabbit_config[AMQP_URI_CONFIG_KEY]


@pytest.fixture
def rabbit_ssl_config(request: pytest.FixtureRequest, rabbit_config: dict[str, Any]):
    """``rabbit_config`` over TLS: the ``--sandbox-amqp-ssl-port`` and ``AMQP_SSL`` from
    ``--sandbox-amqp-ssl-option`` (skips on the embedded broker, which has no TLS)."""
    uri = rabbit_config[AMQP_URI_CONFIG_KEY]
    if uri.startswith("memory"):
        pytest.skip("TLS needs RabbitMQ: the embedded broker has no TLS listener")
    ssl_options = dict(request.config.getoption("AMQP_SSL_OPTIONS")) or True
    return {
        **rabbit_config,
        AMQP_URI_CONFIG_KEY: _with_port(uri, request.config.getoption("AMQP_SSL_PORT")),
        AMQP_SSL_CONFIG_KEY: ssl_options,
    }


def _with_port(uri: str, port: int) -> str:
    parts = urllib.parse.urlsplit(uri)
    userinfo, at, host = parts.netloc.rpartition("@")
    if parts.port is not None:
        host = host.rpartition(":")[0]
    return parts._replace(netloc=f"{userinfo}{at}{host}:{port}").geturl()


@pytest.fixture
def get_message_from_queue(amqp_uri: str):
    """``get(queue_name, ack=True, block=True, timeout=1, accept=None)``: the next message of a
    queue as a kombu Message (``.payload``, ``.properties``...), acknowledged or requeued;
    ``queue.Empty`` when none comes within ``timeout`` seconds."""
    import kombu.serialization

    from sandbox.amqp.connection import connect
    from sandbox.runtime import get_runtime

    def take(queue_name: str, ack: bool, block: bool, timeout: float, accept: Any) -> Any:
        with connect(amqp_uri) as connection:
            queue = connection.SimpleQueue(queue_name)
            if accept is not None:  # SimpleQueue takes no accept of its own
                queue.consumer.accept = kombu.serialization.prepare_accept_content(accept)
            message = queue.get(block=block, timeout=timeout)
            if ack:
                message.ack()
            else:
                message.requeue()
            queue.close()
        return message

    def get(
        queue_name: str,
        ack: bool = True,
        block: bool = True,
        timeout: float = 1,
        accept: list[str] | None = None,
    ) -> Any:
        return get_runtime().call(take, queue_name, ack, block, timeout, accept)

    return get


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
