"""The kernel's services: hot start, reload and stop.

A reload starts the new container before retiring the old one, so a broken new version leaves
the old one serving, and no request finds nobody: the old container stops taking new work only
once the new one is up, and finishes its in-flight workers in the background.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import eventlet

from sandbox.containers import ServiceContainer, get_container_cls, get_service_name
from sandbox.exceptions import ConfigurationError
from sandbox.extensions import count_entrypoints
from sandbox.notebook.errors import describe_error
from sandbox.runtime import get_runtime

log = logging.getLogger(__name__)

RUNNING, STOPPED, CRASHED = "running", "stopped", "crashed"


@dataclass
class ServiceHandle:
    """One service of the session, whatever its state."""

    name: str
    cls: type
    container: ServiceContainer | None = None
    state: str = STOPPED
    error: str | None = None
    started_at: float | None = None
    retiring: list[ServiceContainer] = field(default_factory=list)

    @property
    def busy_workers(self) -> int:
        return self.container.busy_workers if self.container is not None else 0


class Session:
    """Starts, reloads and stops the services a notebook defines."""

    def __init__(self, config: Mapping[str, Any] | None = None, drain_timeout: float = 30):
        self.config = config
        self.drain_timeout = drain_timeout
        self.services: dict[str, ServiceHandle] = {}
        self.autostart = True
        # Called in the hub thread with the handle of each service that crashes.
        self.crash_listeners: list[Callable[[ServiceHandle], None]] = []
        self._seen: weakref.WeakSet[type] = weakref.WeakSet()

    # --- discovery --------------------------------------------------------------------------

    def new_definitions(self, values: Iterable[object]) -> list[type]:
        """Classes with entrypoints defined in cells (module ``__main__``), not seen before.

        Each class object is taken up once, so two classes that share a ``name`` do not take
        turns at every cell: whichever appeared last was started last. Those without a usable
        ``name`` are among them, for the caller to say so.
        """
        new = []
        for value in list(values):
            if not _defined_in_a_cell(value) or value in self._seen:
                continue
            self._seen.add(value)
            new.append(value)
        return new

    def forget(self, values: Iterable[object]) -> None:
        """Take the classes now among ``values`` as seen: autostart leaves them alone."""
        self.new_definitions(values)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, service_cls: type) -> ServiceHandle:
        """Start ``service_cls``, or reload its service if one of that name is running.

        When it fails to start and no older version is running, its service is crashed.
        """
        name = get_service_name(service_cls)
        self._seen.add(service_cls)
        handle = self.services.get(name)
        try:
            container = get_container_cls(self.config)(service_cls, self.config)
            get_runtime().call(self._start_in_hub, name, service_cls, container, handle)
        except Exception as exc:
            if handle is None or handle.state != RUNNING:
                crashed = ServiceHandle(name, service_cls, state=CRASHED, error=describe_error(exc))
                crashed.retiring = handle.retiring if handle is not None else []
                self.services[name] = crashed
            raise
        return self.services[name]

    def _start_in_hub(self, name, service_cls, container, old: ServiceHandle | None) -> None:
        _check_constructor(service_cls)
        try:
            container._start()
        except BaseException:
            container._kill()
            raise
        handle = ServiceHandle(name, service_cls, container, RUNNING, started_at=time.time())
        if old is not None:
            handle.retiring = [c for c in old.retiring if c.started]
            if old.container is not None and old.state == RUNNING:
                self._retire(old.container, handle)
        self.services[name] = handle
        eventlet.spawn(self._watch, handle, container)

    def _retire(self, container: ServiceContainer, handle: ServiceHandle) -> None:
        container._stop_entrypoints()
        handle.retiring.append(container)

        def finish() -> None:
            try:
                container._stop(self.drain_timeout)
            finally:
                if container in handle.retiring:
                    handle.retiring.remove(container)

        eventlet.spawn(finish)

    def _watch(self, handle: ServiceHandle, container: ServiceContainer) -> None:
        """Keep the handle's state true when the container stops or crashes on its own."""
        try:
            container._died.wait()
        except Exception as exc:
            if handle.container is container:
                handle.state, handle.error = CRASHED, f"{type(exc).__name__}: {exc}"
                self._tell_crash(handle)
            return
        if handle.container is container and handle.state == RUNNING:
            handle.state = STOPPED

    def _tell_crash(self, handle: ServiceHandle) -> None:
        for listener in list(self.crash_listeners):
            try:
                listener(handle)
            except Exception:
                log.exception("a crash listener failed")

    def stop(self, name: str | type, timeout: float | None = None) -> ServiceHandle:
        handle = self._handle(name)
        timeout = self.drain_timeout if timeout is None else timeout
        if handle.container is not None and handle.state == RUNNING:
            handle.state = STOPPED
            handle.container.stop(timeout)
        return handle

    def restart(self, name: str | type) -> ServiceHandle:
        handle = self._handle(name)
        self.stop(handle.name)
        return self.start(handle.cls)

    def stop_all(self, timeout: float | None = None) -> None:
        for name in list(self.services):
            self.stop(name, timeout)
        runtime = get_runtime()
        for handle in self.services.values():
            for container in list(handle.retiring):
                runtime.call(container._kill)

    def _handle(self, name: str | type) -> ServiceHandle:
        key = name if isinstance(name, str) else get_service_name(name)
        try:
            return self.services[key]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise KeyError(f"no service named {key!r} (known: {known})") from None

    def running(self) -> Iterable[ServiceHandle]:
        return [h for h in self.services.values() if h.state == RUNNING]


def _defined_in_a_cell(value: object) -> bool:
    return (
        isinstance(value, type) and value.__module__ == "__main__" and count_entrypoints(value) > 0
    )


def _check_constructor(service_cls: type) -> None:
    """Each worker makes its own instance, with no arguments: a constructor that fails would
    fail every call, and only once called, so the start tries it first."""
    try:
        service_cls()
    except Exception as exc:
        raise ConfigurationError(
            f"{service_cls.__name__}() failed, and each call makes one: {describe_error(exc)}"
        ) from exc
