"""The pytest plugin (entry point ``pytest11``): Nameko's fixtures under sandbox's name."""

from __future__ import annotations

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
