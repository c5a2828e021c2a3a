"""Helpers for tests: look inside containers and runners, wait for calls, manage resources.

The waits poll with eventlet sleeps and raise ``eventlet.Timeout`` when their time is up, as
Nameko's do; green threads the test spawned run meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from unittest import mock

import eventlet

from sandbox.containers import ServiceContainer
from sandbox.extensions import Entrypoint
from sandbox.runners import ServiceRunner
from sandbox.testing.rabbit import HTTPError, RabbitManager
from sandbox.testing.waiting import wait_until


def get_extension(container: ServiceContainer, extension_cls: type, **match_attrs: Any):
    """The first extension of ``container`` that is an ``extension_cls`` with ``match_attrs``."""
    for extension in container.extensions:
        if isinstance(extension, extension_cls) and all(
            getattr(extension, key, object()) == value for key, value in match_attrs.items()
        ):
            return extension
    return None


def get_container(runner: ServiceRunner, service_cls: type) -> ServiceContainer | None:
    """The container of ``runner`` that hosts ``service_cls``."""
    for container in runner.containers:
        if container.service_cls is service_cls:
            return container
    return None


@contextlib.contextmanager
def wait_for_call(timeout: float, mock_method: mock.Mock) -> Iterator[mock.Mock]:
    """Wait up to ``timeout`` seconds for ``mock_method`` to have been called; yield it.

    Raises ``eventlet.Timeout`` if it was not called in time.
    """
    with eventlet.Timeout(timeout):
        wait_until(lambda: mock_method.called)
    yield mock_method


def wait_for_worker_idle(container: ServiceContainer, timeout: float = 10) -> None:
    """Wait up to ``timeout`` seconds for ``container`` to run no worker (``eventlet.Timeout``).

    Deprecated, as in Nameko: wait for the entrypoint you mean with ``entrypoint_waiter``.
    """
    warnings.warn(
        "wait_for_worker_idle is deprecated: wait for a specific entrypoint with "
        "entrypoint_waiter instead",
        DeprecationWarning,
        stacklevel=2,
    )
    with eventlet.Timeout(timeout):
        wait_until(lambda: container.busy_workers == 0)


def assert_stops_raising(
    fn: Callable[[], Any],
    exception_type: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    timeout: float = 10,
    interval: float = 0.1,
) -> None:
    """Call ``fn`` every ``interval`` seconds until it returns without raising.

    An exception that is not an ``exception_type`` propagates at once; still raising after
    ``timeout`` seconds raises ``eventlet.Timeout``.
    """
    with eventlet.Timeout(timeout):
        while True:
            try:
                fn()
            except exception_type:
                eventlet.sleep(interval)
            else:
                return


class MockCallArgs(NamedTuple):
    positional: tuple
    keyword: dict


def unpack_mock_call(call: Any) -> MockCallArgs:
    """The arguments of a recorded mock call: ``positional, keyword = unpack_mock_call(c)``."""
    return MockCallArgs(tuple(call.args), dict(call.kwargs))


class AnyInstanceOf:
    """Equal to any instance of ``cls``: ``mock.assert_called_with(AnyInstanceOf(Request))``."""

    def __init__(self, cls: type):
        self.cls = cls

    def __eq__(self, other: object) -> bool:
        return isinstance(self.cls, type) and isinstance(other, self.cls)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # equal to many things: not usable as a key

    def __repr__(self) -> str:
        return f"<AnyInstanceOf-{getattr(self.cls, '__name__', self.cls)}>"


ANY_PARTIAL = AnyInstanceOf(functools.partial)


class DummyProvider(Entrypoint):
    """An entrypoint that triggers nothing, for tests that spawn workers by hand."""

    def __init__(self, method_name: str | None = None):
        super().__init__()
        self.method_name = method_name


def get_rabbit_connections(vhost: str, rabbit_manager: RabbitManager) -> list[dict]:
    """RabbitMQ's connections to ``vhost``, as its management API lists them.

    The API lists a new connection only with its next statistics, seconds later: poll
    with :func:`assert_stops_raising`.
    """
    connections = rabbit_manager.get_connections() or []
    return [connection for connection in connections if connection["vhost"] == vhost]


def reset_rabbit_connections(vhost: str, rabbit_manager: RabbitManager) -> None:
    """Make RabbitMQ close every connection to ``vhost``."""
    for connection in get_rabbit_connections(vhost, rabbit_manager):
        try:
            rabbit_manager.delete_connection(connection["name"])
        except HTTPError as exc:
            if exc.response.status_code != 404:  # 404: it closed meanwhile
                raise


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ResourcePipeline:
    """Makes resources ahead of use in a background thread and destroys used ones in another.

    ``with pipeline.run():`` keeps up to ``size`` resources from ``create()`` ready; each
    ``with pipeline.get() as resource:`` takes one and hands it to ``destroy(resource)``
    afterwards. Leaving ``run`` destroys the unused ones too and waits for all to go. An
    error in ``create`` is raised by ``get``.
    """

    STOP = object()

    def __init__(self, create: Callable[[], Any], destroy: Callable[[Any], Any], size: int = 3):
        if size < 1:
            raise RuntimeError(f"ResourcePipeline size must be at least 1, not {size!r}")
        self.create = create
        self.destroy = destroy
        self.size = size
        self.ready: queue.Queue = queue.Queue(maxsize=size)
        self.trash: queue.Queue = queue.Queue()
        self._running = threading.Event()

    @contextlib.contextmanager
    def run(self) -> Iterator[ResourcePipeline]:
        self._running.set()
        creator = threading.Thread(target=self._create, name="pipeline-create", daemon=True)
        destroyer = threading.Thread(target=self._destroy, name="pipeline-destroy", daemon=True)
        creator.start()
        destroyer.start()
        try:
            yield self
        finally:
            self._running.clear()
            creator.join()
            while not self.ready.empty():
                self._discard(self.ready.get())
            self.trash.put(self.STOP)
            destroyer.join()

    @contextlib.contextmanager
    def get(self) -> Iterator[Any]:
        item = self.ready.get()
        if isinstance(item, _CreateFailed):
            self.ready.put(item)  # every later get fails the same way
            raise item.error
        try:
            yield item
        finally:
            self.trash.put(item)

    def _create(self) -> None:
        while self._running.is_set():
            try:
                item = self.create()
            except Exception as exc:
                item = _CreateFailed(exc)
            if not self._offer(item) or isinstance(item, _CreateFailed):
                return

    def _offer(self, item: Any) -> bool:
        """Queue ``item`` as ready unless the pipeline stops first (then it goes to the trash)."""
        while self._running.is_set():
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        self._discard(item)
        return False

    def _discard(self, item: Any) -> None:
        if not isinstance(item, _CreateFailed):
            self.trash.put(item)

    def _destroy(self) -> None:
        while (item := self.trash.get()) is not self.STOP:
            self.destroy(item)


class _CreateFailed(NamedTuple):
    error: Exception
