from unittest.mock import MagicMock

import eventlet
import pytest

from sandbox.exceptions import ExtensionNotFound
from sandbox.extensions import DependencyProvider
from sandbox.testing.services import (
    dummy,
    entrypoint_hook,
    entrypoint_waiter,
    once,
    replace_dependencies,
    restrict_entrypoints,
    worker_factory,
)


class Real(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return "real"


class Service:
    name = "svc"
    store = Real()
    mailer = Real()

    @dummy
    def save(self, value):
        self.store.put(value)
        return self.mailer

    @dummy
    def other(self):
        return "other"


def test_worker_factory_mocks_and_injects():
    service = worker_factory(Service, mailer="given")
    assert isinstance(service.store, MagicMock) and service.mailer == "given"
    assert service.save(3) == "given"
    service.store.put.assert_called_once_with(3)
    with pytest.raises(ExtensionNotFound):
        worker_factory(Service, nonexistent=1)


def test_replace_dependencies(container_factory):
    container = container_factory(Service, {})
    store = replace_dependencies(container, "store")
    assert isinstance(store, MagicMock)
    container.start()
    with entrypoint_hook(container, "save") as save:
        assert save(1) == "real"
    store.put.assert_called_once_with(1)


def test_replace_dependencies_with_objects_and_several(container_factory):
    container = container_factory(Service, {})
    (store,) = (replace_dependencies(container, "store", mailer="fake"),)
    container.start()
    with entrypoint_hook(container, "save") as save:
        assert save(2) == "fake"
    store.put.assert_called_once_with(2)
    other = container_factory(Service, {})
    store2, mailer2 = replace_dependencies(other, "store", "mailer")
    assert isinstance(store2, MagicMock) and isinstance(mailer2, MagicMock)
    with pytest.raises(ExtensionNotFound):
        replace_dependencies(container_factory(Service, {}), "missing")


def test_restrict_entrypoints(container_factory):
    container = container_factory(Service, {})
    restrict_entrypoints(container, "other")
    assert [e.method_name for e in container.entrypoints] == ["other"]
    with pytest.raises(ExtensionNotFound):
        restrict_entrypoints(container, "missing")


def test_once_runs_at_start(container_factory):
    class Svc:
        name = "once"

        @once("hello", suffix="!")
        def greet(self, word, suffix):
            return word + suffix

    container = container_factory(Svc, {})
    with entrypoint_waiter(container, "greet") as result:
        container.start()
    assert result.get() == "hello!"


class Broken(DependencyProvider):
    def worker_setup(self, worker_ctx):
        raise RuntimeError("broken dependency")


class Torn(DependencyProvider):
    """Records the teardown, which finishes only after a green wait."""

    def __init__(self):
        self.torn = []

    def worker_teardown(self, worker_ctx):
        eventlet.sleep(0.05)
        self.torn.append(worker_ctx.entrypoint.method_name)


class Lifecycle:
    name = "lifecycle"
    torn = Torn()

    @dummy
    def slow(self):
        eventlet.sleep(30)

    @dummy
    def quick(self):
        return "quick"


def test_a_hook_raises_the_error_that_killed_the_container(container_factory):
    class Svc(Lifecycle):
        broken = Broken()

    container = container_factory(Svc, {})
    container.start()
    with entrypoint_hook(container, "quick") as quick, pytest.raises(RuntimeError, match="broken"):
        quick()


def test_a_hook_returns_once_the_worker_is_torn_down(container_factory):
    container = container_factory(Lifecycle, {})
    container.start()
    torn = next(iter(container.dependencies)).torn
    with entrypoint_hook(container, "quick") as quick:
        assert quick() == "quick"
    assert torn == ["quick"]


def test_a_hook_timeout_is_the_waiters_timeout(container_factory):
    container = container_factory(Lifecycle, {})
    container.start()
    with (
        entrypoint_hook(container, "slow", timeout=0.1) as slow,
        pytest.raises(entrypoint_waiter.Timeout) as raised,
    ):
        slow()
    assert str(raised.value) == "Timeout on lifecycle.slow after 0.1 seconds"


def test_a_waiter_timeout_names_service_and_method(container_factory):
    container = container_factory(Lifecycle, {})
    container.start()
    with (
        pytest.raises(entrypoint_waiter.Timeout) as raised,
        entrypoint_waiter(container, "quick", timeout=0.01),
    ):
        pass
    assert str(raised.value) == "Timeout on lifecycle.quick after 0.01 seconds"


def test_a_waiter_for_an_unknown_entrypoint_is_a_runtime_error(container_factory):
    container = container_factory(Lifecycle, {})
    with (
        pytest.raises(RuntimeError, match="lifecycle has no entrypoint `unknown`"),
        entrypoint_waiter(container, "unknown"),
    ):
        pass
