"""The service container: one service class, its extensions, and the workers they start.

It knows nothing of HTTP or AMQP: entrypoints call :meth:`ServiceContainer.spawn_worker`.
Everything in here runs in the runtime's hub thread; the public lifecycle methods hand
themselves over to it, so they can be called from any thread.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import eventlet
import eventlet.event
import eventlet.greenthread
import eventlet.semaphore
import greenlet

from sandbox import faults, recorder, reused_threads, serialization, tracing
from sandbox.exceptions import (
    ConfigurationError,
    ContainerBeingKilled,
    ExtensionNotFound,
    WorkerTimeout,
)
from sandbox.extensions import (
    DependencyProvider,
    Entrypoint,
    Extension,
    get_entrypoints,
    is_dependency,
    iter_extensions,
)
from sandbox.runtime import HubThread, get_runtime
from sandbox.worker_context import WorkerContext

log = logging.getLogger(__name__)

ResultHandler = Callable[["WorkerContext", Any, Any], tuple[Any, Any]]


def get_service_name(service_cls: type) -> str:
    name = getattr(service_cls, "name", None)
    if name is None:
        raise ConfigurationError(f"Service class {service_cls.__name__} must define a `name`")
    if not isinstance(name, str):
        raise ConfigurationError(
            f"Service name of {service_cls.__name__} must be a str, not {type(name).__name__}"
        )
    return name


def _global_config() -> Mapping[str, Any]:
    from sandbox.config import config

    return config


def get_container_cls(config: Mapping[str, Any] | None = None) -> type:
    """The container class config ``SERVICE_CONTAINER_CLS`` names, else ServiceContainer.

    Any class with Nameko's container interface will do: ``cls(service_cls, config)``,
    ``service_name``, ``start()``, ``stop()``, ``kill()``, ``wait()``.
    """
    config = _global_config() if config is None else config
    path = config.get("SERVICE_CONTAINER_CLS")
    if not path:
        return ServiceContainer
    from sandbox.utils import import_from_path

    return import_from_path(path)


class ServiceContainer:
    """Hosts one service class: binds its extensions, runs them, and runs its workers."""

    def __init__(self, service_cls: type, config: Mapping[str, Any] | None = None):
        self.service_cls = service_cls
        self.service_name = get_service_name(service_cls)
        self.config = _global_config() if config is None else config
        self.max_workers = int(self.config.get("max_workers", 10))
        self.parent_calls_tracked = int(self.config.get("parent_calls_tracked", 10))
        self.serializer, self.accept = serialization.setup(self.config)
        tracing.install()  # spans for its workers, when OpenTelemetry is installed

        self.shared_extensions: dict[Any, Extension] = {}
        self.dependencies: set[DependencyProvider] = set()
        self.entrypoints: set[Entrypoint] = set()
        for attr_name, prototype in vars_with_bases(service_cls):
            self.dependencies.add(prototype.bind(self, attr_name))
        for method_name, prototype in get_entrypoints(service_cls):
            _check_not_async(service_cls, method_name)
            self.entrypoints.add(prototype.bind(self, method_name))

        self.started = False
        self._entrypoints_stopped = False
        self._killer: Any = None  # the green thread of a kill, once one started
        self._died = eventlet.event.Event()
        self._slots = eventlet.semaphore.Semaphore(self.max_workers)
        self._worker_threads: dict[WorkerContext, Any] = {}
        self._inline_workers: set[WorkerContext] = set()
        # From a worker's slot on, until no worker runs; the event is made only for whoever
        # waits for that (a stop), not for each busy spell (most requests make one).
        self._busy = False
        self._idle: eventlet.event.Event | None = None
        self._managed_threads: dict[Any, str | None] = {}
        # Sub-extensions that outlive the extensions that declared them (restrict_entrypoints
        # keeps the RPC queue consumed, as Nameko does, so other methods answer MethodNotFound).
        self.retained_subextensions: set[Extension] = set()

    @property
    def extensions_declared(self) -> set[Extension]:
        return set(self.dependencies) | set(self.entrypoints)

    @property
    def subextensions(self) -> set[Extension]:
        # Derived, so that replacing a dependency before start drops what only it used (the
        # reply queue of a mocked RpcProxy); ``retained_subextensions`` are kept regardless.
        derived = {sub for ext in self.extensions_declared for sub in iter_extensions(ext)}
        return derived | self.retained_subextensions

    @property
    def extensions(self) -> set[Extension]:
        return self.extensions_declared | self.subextensions

    @property
    def interface(self) -> ServiceContainer:
        """What extensions may use of the container (Nameko compatibility)."""
        return self

    @property
    def busy_workers(self) -> int:
        return len(self._worker_threads)

    @property
    def stopping(self) -> bool:
        """Whether a stop or a kill has begun and the container takes no new work."""
        return self.started and (self._entrypoints_stopped or self._killer is not None)

    def set_max_workers(self, count: int) -> None:
        """Run up to ``count`` workers at once from now on (any thread). Below the busy count,
        the busy workers finish and new work waits until fewer than ``count`` run."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"max_workers must be a positive integer, not {count!r}")
        get_runtime().call(self._resize_slots, count)

    def _resize_slots(self, count: int) -> None:
        grown = count - self.max_workers
        self.max_workers = count
        if grown < 0:
            self._slots.counter += grown  # below zero: releases pay it back first
        for _ in range(grown):
            self._slots.release()  # wakes a waiting worker

    # --- lifecycle: callable from any thread ------------------------------------------------

    def start(self) -> None:
        get_runtime().call(self._start)

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully; kill instead when in-flight workers outlive ``timeout`` seconds."""
        get_runtime().call(self._stop, timeout)

    def kill(self, exc_info: tuple | None = None) -> None:
        get_runtime().call(self._kill, exc_info)

    def wait(self) -> None:
        """Block until the container stops; re-raise the error that killed it, if any."""
        get_runtime().call(self._died.wait)

    # --- lifecycle: hub thread --------------------------------------------------------------

    def _start(self) -> None:
        log.debug("starting %s", self)
        _call_all(self.extensions, "setup")
        _call_all(self.extensions, "start")
        self.started = True
        log.debug("started %s", self)

    def _stop(self, timeout: float | None = None) -> None:
        if self._killer is not None:
            self._killer.wait()
            return
        if self._died.ready():
            return
        log.debug("stopping %s", self)
        self._stop_entrypoints()
        if not self._drain_workers(timeout):
            log.warning("%s: workers still busy after %ss, killing them", self, timeout)
            self._kill()
            return
        _call_all(self.dependencies, "stop")
        _call_all(self.subextensions, "stop")
        self._kill_managed_threads()
        self.started = False
        if not self._died.ready():
            self._died.send(None)

    def _stop_entrypoints(self) -> None:
        """Accept no new work; a reload does this at once and the rest of the stop later."""
        if not self._entrypoints_stopped:
            self._entrypoints_stopped = True
            _call_all(self.entrypoints, "stop")

    def _drain_workers(self, timeout: float | None = None) -> bool:
        """Wait until no worker runs; False when ``timeout`` seconds passed first."""
        with eventlet.Timeout(timeout, False):
            if self._busy:
                if self._idle is None:
                    self._idle = eventlet.event.Event()
                self._idle.wait()
            return True
        return False

    def _kill(self, exc_info: tuple | None = None) -> None:
        """Kill the container and wait until it is dead."""
        self._start_killing(exc_info).wait()

    def _start_killing(self, exc_info: tuple | None = None) -> Any:
        """The green thread that kills the container, started by the first call.

        A thread of its own: whoever asks may be among the threads a kill ends (a worker, a
        managed thread, or the consumer loop in which a message's thread died at once), and
        a kill run there would be cut short by its own work, leaving the container for ever
        half dead and its waiters waiting.
        """
        if self._killer is None:
            self._killer = eventlet.spawn(self._kill_now, exc_info)
        return self._killer

    def _kill_now(self, exc_info: tuple | None) -> None:
        if exc_info is not None:
            log.error("killing %s because of %r", self, exc_info[1], exc_info=exc_info)
        else:
            log.debug("killing %s", self)
        try:
            _call_all(self.entrypoints, "kill", swallow=True)
            for worker_ctx, thread in list(self._worker_threads.items()):
                if worker_ctx in self._inline_workers:
                    # The thread belongs to the entrypoint (an HTTP connection): fail the
                    # worker so that the entrypoint can still answer, rather than end its thread.
                    eventlet.greenthread.kill(thread, ContainerBeingKilled())
                else:
                    thread.kill()
            _call_all(self.dependencies | self.subextensions, "kill", swallow=True)
            self._kill_managed_threads()
            self.started = False
        finally:
            if not self._died.ready():
                if exc_info is not None:
                    self._died.send_exception(*exc_info)
                else:
                    self._died.send(None)

    def _kill_managed_threads(self) -> None:
        current = greenlet.getcurrent()
        for thread in list(self._managed_threads):
            if thread is not current and getattr(thread, "thread", None) is not current:
                thread.kill()

    # --- workers and managed threads: hub thread --------------------------------------------

    def spawn_worker(
        self,
        entrypoint: Entrypoint,
        args: Iterable,
        kwargs: Mapping,
        context_data: Mapping | None = None,
        handle_result: ResultHandler | None = None,
    ) -> WorkerContext:
        """Start a worker for ``entrypoint``; waits greenly while all ``max_workers`` are busy
        (from another thread, such as test code, it is started in the hub)."""
        runtime = get_runtime()
        if not runtime.in_hub():
            return runtime.call(
                self.spawn_worker, entrypoint, args, kwargs, context_data, handle_result
            )
        worker_ctx = self._new_worker(entrypoint, args, kwargs, context_data)
        thread = eventlet.spawn(self._run_worker, worker_ctx, handle_result)
        self._worker_threads[worker_ctx] = thread
        thread.link(self._worker_exited, worker_ctx)
        return worker_ctx

    def run_worker(
        self,
        entrypoint: Entrypoint,
        args: Iterable,
        kwargs: Mapping,
        context_data: Mapping | None = None,
        handle_result: ResultHandler | None = None,
    ) -> WorkerContext:
        """Run a worker in the calling green thread and return when it is done.

        For entrypoints that would only wait for a spawned worker (an HTTP request): it saves
        a green thread and a trip through the hub per call. The same ``max_workers`` bound
        holds; a kill raises ContainerBeingKilled in the worker instead of ending the thread.
        """
        worker_ctx = self._new_worker(entrypoint, args, kwargs, context_data)
        self._worker_threads[worker_ctx] = greenlet.getcurrent()
        self._inline_workers.add(worker_ctx)
        try:
            self._run_worker(worker_ctx, handle_result)
        except ContainerBeingKilled:
            raise
        except Exception:
            self._start_killing(sys.exc_info())
            raise
        finally:
            self._inline_workers.discard(worker_ctx)
            self._worker_done(worker_ctx)
        return worker_ctx

    def _new_worker(self, entrypoint, args, kwargs, context_data) -> WorkerContext:
        if self._killer is not None:
            raise ContainerBeingKilled()
        stopped = self._entrypoints_stopped
        self._slots.acquire()
        # Killed, or stopped, while we waited for a slot: work that can go back (a request to
        # its queue) does, rather than start once the stop found no worker busy.
        refused = self._entrypoints_stopped and not stopped and entrypoint.returns_unstarted_work
        if self._killer is not None or refused:
            self._slots.release()
            raise ContainerBeingKilled()
        self._busy = True
        service = self.service_cls()
        return WorkerContext(self, service, entrypoint, args, kwargs, data=context_data)

    def _worker_done(self, worker_ctx: WorkerContext) -> None:
        if self._worker_threads.pop(worker_ctx, None) is not None:
            self._slots.release()
        if not self._worker_threads and self._busy:
            self._busy = False
            idle, self._idle = self._idle, None
            if idle is not None:
                idle.send(None)

    def _worker_exited(self, thread: Any, worker_ctx: WorkerContext) -> None:
        self._worker_done(worker_ctx)
        try:
            thread.wait()
        except greenlet.GreenletExit:
            pass
        except Exception:
            # The lifecycle itself failed (a dependency hook, a result handler): the container
            # can no longer be trusted to run workers.
            self._start_killing(sys.exc_info())

    def _run_worker(self, worker_ctx: WorkerContext, handle_result: ResultHandler | None) -> None:
        worker_ctx.started_at = time.time()
        strike = faults.worker_faults(worker_ctx)
        recorder.notify("worker_started", worker_ctx)
        result = exc_info = None
        try:
            self._inject_dependencies(worker_ctx)
            method = getattr(worker_ctx.service, worker_ctx.entrypoint.method_name)
            try:
                if strike is None:
                    result = method(*worker_ctx.args, **worker_ctx.kwargs)
                else:
                    result = strike.run(method, worker_ctx.args, worker_ctx.kwargs)
            except Exception as exc:
                exc_info = (type(exc), exc, exc.__traceback__)
                self._log_worker_error(worker_ctx, exc)
            if handle_result is not None:
                result, exc_info = handle_result(worker_ctx, result, exc_info)
            for dependency in self.dependencies:
                dependency.worker_result(worker_ctx, result, exc_info)
        except Exception as exc:
            # The lifecycle itself failed (_worker_exited kills the container): observers
            # waiting for this worker learn why it ended.
            exc_info = (type(exc), exc, exc.__traceback__)
            raise
        finally:
            for dependency in self.dependencies:
                dependency.worker_teardown(worker_ctx)
            worker_ctx.finished_at = time.time()
            recorder.notify("worker_finished", worker_ctx, result, exc_info)

    def _inject_dependencies(self, worker_ctx: WorkerContext) -> None:
        for dependency in self.dependencies:
            setattr(worker_ctx.service, dependency.attr_name, dependency.get_dependency(worker_ctx))
        for dependency in self.dependencies:
            dependency.worker_setup(worker_ctx)

    def _log_worker_error(self, worker_ctx: WorkerContext, exc: Exception) -> None:
        if worker_ctx.entrypoint.is_expected(exc):
            log.warning("%r raised an expected %s: %s", worker_ctx, type(exc).__name__, exc)
        else:
            log.error("error in %r", worker_ctx, exc_info=exc)

    def entrypoint_named(self, method_name: str) -> Entrypoint:
        """The entrypoint decorating ``method_name``; ExtensionNotFound when there is none."""
        for entrypoint in self.entrypoints:
            if entrypoint.method_name == method_name:
                return entrypoint
        raise ExtensionNotFound(f"No entrypoint for '{method_name}' found on container {self}.")

    def run_entrypoint(
        self,
        method_name: str,
        args: Iterable = (),
        kwargs: Mapping | None = None,
        context_data: Mapping | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run a worker of ``method_name``, as its entrypoint would, and return its result (or
        raise its error) once the worker is torn down (a session committed, a connection
        released). From any thread.

        Should the container die meanwhile, raises the error that killed it; after
        ``timeout`` seconds, WorkerTimeout. Test hooks, the call form and timer ticks fired by
        hand use it.
        """
        entrypoint = self.entrypoint_named(method_name)
        args, kwargs = tuple(args), dict(kwargs or {})
        return get_runtime().call(
            self._run_entrypoint, entrypoint, args, kwargs, context_data, timeout
        )

    def _run_entrypoint(self, entrypoint, args, kwargs, context_data, timeout) -> Any:
        outcome = eventlet.event.Event()
        worker: list[WorkerContext] = []

        def send(result: Any, exc_info: tuple | None) -> None:
            if not outcome.ready():
                outcome.send((result, exc_info))

        watcher = eventlet.spawn(self._fail_on_death, outcome)
        name = f"{self.service_name}.{entrypoint.method_name}"
        try:
            with WorkerWatch(lambda ctx, *_: bool(worker) and ctx is worker[0], send):
                worker.append(self.spawn_worker(entrypoint, args, kwargs, context_data))
                with eventlet.Timeout(timeout, WorkerTimeout(f"{name} ran past {timeout}s")):
                    result, exc_info = outcome.wait()
        finally:
            watcher.kill()
        if exc_info is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        return result

    def _fail_on_death(self, outcome: eventlet.event.Event) -> None:
        try:
            self._died.wait()
            died = ContainerBeingKilled(f"{self} stopped before the worker finished")
        except Exception as exc:
            died = exc
        if not outcome.ready():
            outcome.send_exception(died)

    def spawn_managed_thread(self, fn: Callable[[], Any], identifier: str | None = None):
        """Run ``fn`` in a green thread whose failure kills the container.

        From another thread (test code), the green thread starts in the hub and what returns is
        a :class:`~sandbox.runtime.HubThread` whose ``wait()`` and ``kill()`` go through it.
        """
        runtime = get_runtime()
        if not runtime.in_hub():
            return HubThread(runtime, runtime.call(self.spawn_managed_thread, fn, identifier))
        thread = eventlet.spawn(fn)
        self._managed_threads[thread] = identifier
        thread.link(self._managed_thread_exited)
        return thread

    def spawn_managed_job(
        self, fn: Callable[[], Any], identifier: str | None = None, at_once: bool = False
    ) -> None:
        """:meth:`spawn_managed_thread` for short jobs, in the hub: ``fn`` runs in a green
        thread that waited for work (:mod:`sandbox.reused_threads`), and nothing is returned
        to wait for it by."""
        job = reused_threads.spawn(fn, at_once)
        if not job.dead:
            self._managed_threads[job] = identifier
        job.link(self._managed_thread_exited)

    def _managed_thread_exited(self, thread: Any) -> None:
        identifier = self._managed_threads.pop(thread, None)
        try:
            thread.wait()
        except greenlet.GreenletExit:
            pass
        except Exception:
            log.debug("managed thread %s failed", identifier or thread)
            self._start_killing(sys.exc_info())

    def __repr__(self) -> str:
        return f"<ServiceContainer [{self.service_name}] at 0x{id(self):x}>"


def _check_not_async(service_cls: type, method_name: str) -> None:
    """Workers call entrypoint methods in green threads: a coroutine would never be awaited."""
    method = getattr(service_cls, method_name)
    if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
        raise ConfigurationError(
            f"{service_cls.__name__}.{method_name} is async def; "
            "entrypoints run in green threads, define it with def"
        )


def vars_with_bases(service_cls: type) -> list[tuple[str, DependencyProvider]]:
    """Dependency provider prototypes declared on ``service_cls`` or its bases."""
    found: dict[str, DependencyProvider] = {}
    for cls in reversed(service_cls.__mro__):
        for name, value in vars(cls).items():
            if is_dependency(value):
                found[name] = value
    return sorted(found.items())


def _call_all(extensions: Iterable[Extension], method: str, swallow: bool = False) -> None:
    """Call ``method`` on every extension concurrently; raise the first failure unless swallowed."""
    threads = [eventlet.spawn(getattr(ext, method)) for ext in extensions]
    first_error: BaseException | None = None
    for thread in threads:
        try:
            thread.wait()
        except Exception as exc:
            if swallow:
                log.warning("error during %s: %r", method, exc)
            elif first_error is None:
                first_error = exc
    if first_error is not None:
        raise first_error


class WorkerWatch:
    """A recorder observer that hands over the outcome of the first finished worker it
    accepts, once its dependencies' teardown ran too. A context manager: it observes inside
    the block only."""

    def __init__(self, accept: Callable[[Any, Any, Any], bool], send: Callable[..., None]):
        self.accept, self.send = accept, send

    def worker_finished(self, worker_ctx: Any, result: Any, exc_info: tuple | None) -> None:
        if self.accept(worker_ctx, result, exc_info):
            self.send(result, exc_info)

    def __enter__(self) -> WorkerWatch:
        recorder.add_observer(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        recorder.remove_observer(self)
