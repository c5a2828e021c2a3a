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
