"""Tools for testing services: Nameko's ``nameko.testing.services`` under sandbox's name."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import MagicMock

import eventlet
import eventlet.event

from sandbox import recorder
from sandbox.containers import ServiceContainer, vars_with_bases
from sandbox.exceptions import ExtensionNotFound
from sandbox.extensions import DependencyProvider, Entrypoint
from sandbox.runtime import get_runtime


def worker_factory(service_cls: type, **dependencies: Any) -> Any:
    """An instance of ``service_cls`` whose dependencies are MagicMocks, or the ones given."""
    service = service_cls()
    for name, _ in vars_with_bases(service_cls):
        setattr(service, name, dependencies.pop(name) if name in dependencies else MagicMock())
    if dependencies:
        raise ExtensionNotFound(
            f"DependencyProvider(s) {sorted(dependencies)} not found on {service_cls.__name__}"
        )
    return service


def _find_entrypoint(container: ServiceContainer, method_name: str) -> Entrypoint:
    for entrypoint in container.entrypoints:
        if entrypoint.method_name == method_name:
            return entrypoint
    raise ExtensionNotFound(f"No entrypoint for '{method_name}' found on container {container}")


@contextmanager
def entrypoint_hook(
    container: ServiceContainer,
    method_name: str,
    context_data: dict | None = None,
    timeout: float | None = 30,
) -> Iterator[Callable[..., Any]]:
    """Yield a function that runs ``method_name`` in a worker of ``container`` and returns."""
    entrypoint = _find_entrypoint(container, method_name)

    def run(args: tuple, kwargs: dict) -> Any:
        outcome = eventlet.event.Event()

        def handle_result(worker_ctx, result, exc_info):
            outcome.send((result, exc_info))
            return result, exc_info

        container.spawn_worker(entrypoint, args, kwargs, context_data, handle_result)
        result, exc_info = outcome.wait()
        if exc_info is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        return result

    def hook(*args: Any, **kwargs: Any) -> Any:
        return get_runtime().call(run, args, kwargs, timeout=timeout)

    yield hook


class EntrypointWaiterTimeout(Exception):
    pass


class WaitResult:
    """What the awaited worker returned: ``.result``, ``.exc_info``; ``.get()`` re-raises."""

    def __init__(self) -> None:
        self.result: Any = None
        self.exc_info: tuple | None = None
        self._done = threading.Event()

    def send(self, result: Any, exc_info: tuple | None) -> None:
        self.result, self.exc_info = result, exc_info
        self._done.set()

    def get(self) -> Any:
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])
        return self.result


class _Waiter:
    def __init__(self, container, method_name, callback, wait_result):
        self.container, self.method_name = container, method_name
        self.callback, self.wait_result = callback, wait_result

    def worker_finished(self, worker_ctx, result, exc_info) -> None:
        if worker_ctx.container is not self.container or self.wait_result._done.is_set():
            return
        if worker_ctx.entrypoint.method_name != self.method_name:
            return
        if self.callback is None or self.callback(worker_ctx, result, exc_info):
            self.wait_result.send(result, exc_info)


@contextmanager
def entrypoint_waiter(
    container: ServiceContainer,
    method_name: str,
    timeout: float | None = 30,
    callback: Callable[[Any, Any, Any], bool] | None = None,
) -> Iterator[WaitResult]:
    """Wait, on leaving the block, for a worker of ``method_name`` to finish.

    With ``callback(worker_ctx, result, exc_info)``, wait for the first worker it accepts.
    """
    _find_entrypoint(container, method_name)
    wait_result = WaitResult()
    waiter = _Waiter(container, method_name, callback, wait_result)
    recorder.add_observer(waiter)
    try:
        yield wait_result
        if not wait_result._done.wait(timeout):
            raise EntrypointWaiterTimeout(
                f"Timeout on waiting for `{method_name}` after {timeout} seconds"
            )
    finally:
        recorder.remove_observer(waiter)


entrypoint_waiter.Timeout = EntrypointWaiterTimeout


class MockDependencyProvider(DependencyProvider):
    def __init__(self, attr_name: str, dependency: Any = None):
        self.attr_name = attr_name
        self.dependency = MagicMock() if dependency is None else dependency

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.dependency


def replace_dependencies(container: ServiceContainer, *dependencies: str, **replacements: Any):
    """Swap named dependency providers for mocks (or the given objects) before ``start``.

    Returns the one MagicMock when one name is given, else a tuple of them in argument order.
    """
    if container.started:
        raise RuntimeError("You must replace dependencies before the container is started.")
    names = set(dependencies) | set(replacements)
    if len(names) != len(dependencies) + len(replacements):
        raise RuntimeError("A dependency cannot be both mocked and replaced")
    found = {d.attr_name: d for d in container.dependencies if d.attr_name in names}
    missing = names - set(found)
    if missing:
        raise ExtensionNotFound(f"Dependencies '{sorted(missing)}' not found in {container}")

    mocks = []
    for name in (*dependencies, *replacements):
        replacement = MockDependencyProvider(name, replacements.get(name))
        container.dependencies.discard(found[name])
        container.dependencies.add(replacement)
        if name in dependencies:
            mocks.append(replacement.dependency)
    return mocks[0] if len(mocks) == 1 else tuple(mocks)


def restrict_entrypoints(container: ServiceContainer, *method_names: str) -> None:
    """Keep only the entrypoints decorating ``method_names``; call before ``start``."""
    if container.started:
        raise RuntimeError("You must restrict entrypoints before the container is started.")
    for name in method_names:
        _find_entrypoint(container, name)
    for entrypoint in list(container.entrypoints):
        if entrypoint.method_name not in method_names:
            container.entrypoints.remove(entrypoint)


class Once(Entrypoint):
    """Runs its method once when the container starts, with the given arguments."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs
        super().__init__()

    def start(self) -> None:
        self.container.spawn_worker(self, self.args, self.kwargs)


once = Once.decorator
dummy = Entrypoint.decorator
