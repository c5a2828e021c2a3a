"""Run several service containers together (Nameko's ServiceRunner and run_services)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import eventlet

from sandbox.containers import ServiceContainer, get_container_cls, get_service_name
from sandbox.runtime import get_runtime

log = logging.getLogger(__name__)


class ServiceRunner:
    """Starts, stops and waits on one container per service class; any thread may drive it."""

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = config
        self.service_map: dict[str, ServiceContainer] = {}

    @property
    def service_names(self) -> list[str]:
        return list(self.service_map)

    @property
    def containers(self) -> list[ServiceContainer]:
        return list(self.service_map.values())

    def add_service(self, service_cls: type) -> None:
        service_name = get_service_name(service_cls)
        container_cls = get_container_cls(self.config)
        self.service_map[service_name] = container_cls(service_cls, self.config)

    # Through the containers' public methods only (run inline in the hub thread), so that
    # config SERVICE_CONTAINER_CLS may name any class with Nameko's container interface.

    def start(self) -> None:
        log.debug("starting services: %s", ", ".join(self.service_names))
        get_runtime().call(_each, self.containers, "start")

    def stop(self, timeout: float | None = None) -> None:
        """Stop every container; ``timeout``: see :meth:`ServiceContainer.stop`."""
        get_runtime().call(_each, self.containers, "stop", *([] if timeout is None else [timeout]))

    def kill(self) -> None:
        get_runtime().call(_each, self.containers, "kill")

    def wait(self) -> None:
        """Wait for every container; when one dies of an error, stop the rest and re-raise."""
        try:
            get_runtime().call(_each, self.containers, "wait")
        except Exception:
            self.stop()
            raise


def _each(containers: list[ServiceContainer], method: str, *args: Any) -> None:
    """Call a container method on all of them concurrently, failing as soon as one fails."""
    pool = eventlet.GreenPool()
    threads = [pool.spawn(getattr(c, method), *args) for c in containers]
    try:
        for thread in threads:
            thread.wait()
    except Exception:
        for thread in threads:
            thread.kill()
        raise


@contextmanager
def run_services(
    *services: Any, kill_on_exit: bool = False, **kwargs: Any
) -> Iterator[ServiceRunner]:
    """Run ``services`` for the duration of a ``with`` block.

    Nameko 2's ``run_services(config, *services)`` works too: a leading mapping is the config.
    """
    config = kwargs.pop("config", None)
    if services and isinstance(services[0], Mapping):
        config, services = services[0], services[1:]
    runner = ServiceRunner(config)
    for service_cls in services:
        runner.add_service(service_cls)
    runner.start()
    try:
        yield runner
    finally:
        if kill_on_exit:
            runner.kill()
        else:
            runner.stop()
