"""Tools for testing services: Nameko's ``nameko.testing.services`` under sandbox's name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any
from unittest.mock import MagicMock

from sandbox.containers import ServiceContainer, WorkerWatch, vars_with_bases
from sandbox.exceptions import ExtensionNotFound, WorkerTimeout
from sandbox.extensions import DependencyProvider, Entrypoint, iter_extensions
from sandbox.runtime import wait_for


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


def _has_entrypoint(container: ServiceContainer, method_name: str) -> bool:
    return any(entrypoint.method_name == method_name for entrypoint in container.entrypoints)


class EntrypointWaiterTimeout(Exception):
    """No awaited worker finished in time (``entrypoint_waiter.Timeout``)."""


def _timeout(container: ServiceContainer, method_name: str, timeout: float | None):
    return EntrypointWaiterTimeout(
        f"Timeout on {container.service_name}.{method_name} after {timeout} seconds"
    )


@contextmanager
def entrypoint_hook(
    container: ServiceContainer,
    method_name: str,
    context_data: dict | None = None,
    timeout: float | None = 30,
) -> Iterator[Callable[..., Any]]:
    """Yield a function that runs ``method_name`` in a worker of ``container`` and returns its
    result (or raises its error) once the worker is torn down.

    Should the container die meanwhile, the function raises the error that killed it; after
    ``timeout`` seconds it raises :class:`entrypoint_waiter.Timeout <EntrypointWaiterTimeout>`.
    """
    container.entrypoint_named(method_name)

    def hook(*args: Any, **kwargs: Any) -> Any:
        try:
            return container.run_entrypoint(method_name, args, kwargs, context_data, timeout)
        except WorkerTimeout:
            raise _timeout(container, method_name, timeout) from None

    yield hook


class WorkerOutcome:
    """What the awaited worker returned: ``.result``, ``.exc_info``; ``.get()`` re-raises."""

    def __init__(self) -> None:
        self.result: Any = None
        self.exc_info: tuple | None = None
        self._done: Future[None] = Future()  # settled in the hub, waited for by the test

    def send(self, result: Any, exc_info: tuple | None) -> None:
        if not self._done.done():
            self.result, self.exc_info = result, exc_info
            self._done.set_result(None)

    def get(self) -> Any:
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])
        return self.result


@contextmanager
def entrypoint_waiter(
    container: ServiceContainer,
    method_name: str,
    timeout: float | None = 30,
    callback: Callable[[Any, Any, Any], bool] | None = None,
) -> Iterator[WorkerOutcome]:
    """Wait, on leaving the block, for a worker of ``method_name`` to finish and be torn down;
    after ``timeout`` seconds raise :class:`entrypoint_waiter.Timeout <EntrypointWaiterTimeout>`.

    With ``callback(worker_ctx, result, exc_info)``, wait for the first worker it accepts.
    """
    if not _has_entrypoint(container, method_name):
        raise RuntimeError(f"{container.service_name} has no entrypoint `{method_name}`")
    wait_result = WorkerOutcome()

    def accept(worker_ctx: Any, result: Any, exc_info: tuple | None) -> bool:
        return (
            worker_ctx.container is container
            and worker_ctx.entrypoint.method_name == method_name
            and (callback is None or bool(callback(worker_ctx, result, exc_info)))
        )

    with WorkerWatch(accept, wait_result.send):
        yield wait_result
        try:
            wait_for(wait_result._done, timeout)
        except TimeoutError:
            raise _timeout(container, method_name, timeout) from None


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
    missing = [name for name in method_names if not _has_entrypoint(container, name)]
    if missing:
        raise ExtensionNotFound(f"Entrypoint(s) {missing} not found on {container}.")
    for entrypoint in list(container.entrypoints):
        if entrypoint.method_name not in method_names:
            container.retained_subextensions.update(iter_extensions(entrypoint))
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
