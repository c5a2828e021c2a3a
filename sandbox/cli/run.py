"""``sandbox run``: run service classes as a deployable process.

SIGTERM or Ctrl-C stops the services gracefully; a second signal kills them; a signal once the
stop is done ends the process at once with the stop's exit code. Exit codes: 0 after a graceful
stop, 130 after a kill, 1 when a service crashed, 2 for a usage or config error.

At start it raises its soft limit of open files to the hard limit, as systemd advises for a
program that does not use ``select()`` (each HTTP connection and broker connection holds a
file descriptor, and the usual soft limit is 1,024), and logs the limit in force.
With config ``DOCS: true`` the web server also serves the services' documents at
``/openapi.json``, ``/asyncapi.json`` and ``/docs`` (unless a route of theirs is there).
It always serves the probes and metrics of :mod:`sandbox.probes`; ``--workers N`` runs N
processes under a supervisor (:mod:`sandbox.cli.workers`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import logging.config
import os
import queue
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from sandbox import alias, metrics, recorder
from sandbox.cli import add_config_arguments, config_from_args, count_of
from sandbox.cli.backdoor import backdoor_address, serve_backdoor
from sandbox.cli.signals import next_event
from sandbox.cli.workers import Supervisor, WorkerLink, bind, check_broker
from sandbox.config import config
from sandbox.constants import WEB_SERVER_CONFIG_KEY
from sandbox.docs.openapi import http_routes
from sandbox.docs.service import DOCS_CONFIG_KEY, docs_service
from sandbox.exceptions import CommandError
from sandbox.extensions import count_entrypoints, is_service_class
from sandbox.probes import METRICS_PATH_CONFIG_KEY, PROBES_SERVICE_NAME, probe_paths, probes_service
from sandbox.runners import ServiceRunner
from sandbox.utils import sanitize_url
from sandbox.web.server import DEFAULT_WEB_SERVER_ADDRESS, base_url, parse_address

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_KILLED = 128 + signal.SIGINT
_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


HELP = "run services"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="+", metavar="MODULE[:CLASS]")
    add_config_arguments(parser)
    parser.add_argument(
        "--workers",
        metavar="N",
        type=count_of("processes"),
        default=1,
        help="run N worker processes sharing the broker's queues and the HTTP port "
        "(default 1: this process)",
    )
    parser.add_argument(
        "--backdoor-port",
        metavar="[HOST:]PORT",
        type=backdoor_address,
        help="serve a Python console with `runner` on PORT of HOST (default localhost), "
        "for `sandbox backdoor`",
    )


def handle(args: argparse.Namespace) -> int:
    """Run the service classes of MODULE (or only CLASS) until SIGTERM or Ctrl-C."""
    settings = config_from_args(args)
    config.setup(settings)
    worker = WorkerLink.from_environment()
    configure_logging(config, worker)
    alias.activate()
    service_classes = load_services(args.services)
    if alias.is_aliased() and worker is None:
        log.info(alias.ALIAS_NOTICE)
    probe_paths(config)  # a bad path fails here, once, rather than in every worker
    if config.get(DOCS_CONFIG_KEY):
        docs = docs_service(service_classes, config)
        if docs is not None:
            service_classes.append(docs)
    # The probes alone need no port of their own when none was asked for: several processes
    # of route-less services may run side by side, as they always could.
    probes_optional = WEB_SERVER_CONFIG_KEY not in settings and not serves_http(service_classes)
    if worker is None and args.workers > 1:
        return supervise(args, service_classes, probes_optional)
    runner = ServiceRunner(config)
    for service_cls in service_classes:
        runner.add_service(service_cls)
    address = config.get(WEB_SERVER_CONFIG_KEY, DEFAULT_WEB_SERVER_ADDRESS)
    if worker is not None:
        worker.adopt_listening_socket(address)
    if probes_optional:
        can_listen = worker.listen_fd is not None if worker is not None else port_free(address)
    probes = probes_runner(runner, service_classes, not probes_optional or can_listen)
    if args.backdoor_port is not None:
        host, port = serve_backdoor(runner, args.backdoor_port)
        log.info("backdoor on %s:%d, for `sandbox backdoor %s:%d`", host, port, host, port)
    try:
        return serve(runner, service_classes, worker)
    finally:
        if probes is not None:
            probes.stop()


def serves_http(service_classes: list[type]) -> bool:
    return any(any(True for _ in http_routes(cls)) for cls in service_classes)


def port_free(address: str | int) -> bool:
    try:
        bind(parse_address(address)).close()
    except OSError:
        return False
    return True


def supervise(args: argparse.Namespace, service_classes: list[type], probes_optional: bool) -> int:
    if args.backdoor_port is not None:
        raise CommandError("--backdoor-port serves one process: it cannot go with --workers")
    check_broker(config)
    address = config.get(WEB_SERVER_CONFIG_KEY, DEFAULT_WEB_SERVER_ADDRESS)
    http = serves_http(service_classes) or bool(probe_paths(config))
    if http and probes_optional and not port_free(address):
        _probes_not_served(address)
        http = False
    try:
        return Supervisor(args.command_line, args.workers, config, http).run()
    except OSError as exc:  # binding the shared port
        raise CommandError(f"cannot start services: {exc}{_address_hint(exc)}") from None


def probes_runner(
    runner: ServiceRunner, service_classes: list[type], can_listen: bool
) -> ServiceRunner | None:
    """Start the probes of ``runner``'s services in a runner of their own, which starts
    before them and stops after them; count the services' work for /metrics."""
    probes = probes_service(runner, service_classes, config)
    if probes is None:
        return None
    address = config.get(WEB_SERVER_CONFIG_KEY, DEFAULT_WEB_SERVER_ADDRESS)
    if not can_listen:
        _probes_not_served(address)
        return None
    if METRICS_PATH_CONFIG_KEY in probe_paths(config) and metrics.available():
        recorder.add_observer(metrics.PrometheusObserver(frozenset({PROBES_SERVICE_NAME})))
    probes_runner = ServiceRunner(config)
    probes_runner.add_service(probes)
    start_or_fail(probes_runner)
    return probes_runner


def _probes_not_served(address: str | int) -> None:
    log.warning(
        "%s is in use: no /healthz, /readyz or /metrics (set WEB_SERVER_ADDRESS to serve them)",
        base_url(parse_address(address)),
    )


def configure_logging(settings: Mapping[str, Any], worker: WorkerLink | None = None) -> None:
    if "LOGGING" not in settings:
        where = "" if worker is None else f"[worker {worker.index}] "
        logging.basicConfig(
            level=logging.INFO, format=LOG_FORMAT.replace("%(name)s", where + "%(name)s")
        )
        return
    try:
        # dictConfig silences the loggers that already exist unless told otherwise, and the
        # framework's do by now: keep them unless the config says so.
        logging.config.dictConfig({"disable_existing_loggers": False, **settings["LOGGING"]})
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise CommandError(f"invalid LOGGING config: {exc}") from None


# --- discovery -----------------------------------------------------------------------------


def load_services(specs: Iterable[str]) -> list[type]:
    """:func:`find_services`, with the working directory importable."""
    # Like `python -m`, so that `sandbox run services` finds services.py in the working dir.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return find_services(specs)


def find_services(specs: Iterable[str]) -> list[type]:
    """The service classes named by ``MODULE[:CLASS]`` specs, each class once, in order."""
    found = [service_cls for spec in specs for service_cls in _services_of(spec)]
    return list(dict.fromkeys(found))


def _services_of(spec: str) -> list[type]:
    module_name, _, class_name = spec.partition(":")
    module = _import(module_name, spec)
    if class_name:
        return [_named_service(module, class_name, spec)]
    services = [
        obj
        for obj in vars(module).values()
        if is_service_class(obj) and obj.__module__ == module.__name__
    ]
    if not services:
        raise CommandError(
            f"no service classes in module {module_name!r} "
            "(a service class has a str 'name' and at least one entrypoint)"
        )
    return services


def _import(module_name: str, spec: str) -> ModuleType:
    if not _MODULE_PATH.fullmatch(module_name):
        raise CommandError(f"{spec!r} is not a service path: expected MODULE[:CLASS]")
    try:
        return importlib.import_module(module_name)
    except (ImportError, SyntaxError) as exc:
        hint = f" (did you mean {module_name[:-3]!r}?)" if module_name.endswith(".py") else ""
        raise CommandError(f"cannot import module {module_name!r}: {exc}{hint}") from None


def _named_service(module: ModuleType, class_name: str, spec: str) -> type:
    service_cls = getattr(module, class_name, None)
    if service_cls is None:
        raise CommandError(f"module {module.__name__!r} has no class {class_name!r}")
    if not isinstance(service_cls, type) or not isinstance(getattr(service_cls, "name", None), str):
        raise CommandError(f"{spec} is not a service class: it needs a str 'name' attribute")
    return service_cls


# --- running -------------------------------------------------------------------------------


def serve(
    runner: ServiceRunner, service_classes: list[type], worker: WorkerLink | None = None
) -> int:
    """Start ``runner`` and block until it stops; return the process exit code.

    A worker of ``--workers`` tells its supervisor once started, and stops when it is gone.

    From then on a stop signal (a process manager's second SIGTERM, a late Ctrl-C) ends the
    process at once with that code: the stop is done, so neither 143 nor a hang at exit.
    """
    # Signal handlers only queue the signal: the main thread acts on it. SimpleQueue.put is
    # reentrant, so it is safe to call from a handler that interrupted a get().
    events: queue.SimpleQueue = queue.SimpleQueue()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _queue_signal(events))
    _start(runner, service_classes)
    if worker is not None:
        worker.started(lambda: events.put(signal.SIGTERM))
    threading.Thread(target=_wait, args=(runner, events), name="sandbox-wait", daemon=True).start()
    code = _handle_events(runner, events)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _exit_with(code))
    return code


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _queue_signal(events: queue.SimpleQueue) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        events.put(signal.Signals(signum))

    return handler


def _exit_with(code: int) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        log.info("%s: already stopped, exiting", signal.Signals(signum).name)
        logging.shutdown()  # flushes the log handlers, which os._exit would not
        os._exit(code)

    return handler


def _start(runner: ServiceRunner, service_classes: list[type]) -> None:
    log.info("broker %s", sanitize_url(str(config["AMQP_URI"])))
    start_or_fail(runner)
    for service_cls in service_classes:
        count = count_entrypoints(service_cls)
        log.info("started service %s (%d entrypoint%s)", service_cls.name, count, "s"[: count != 1])


def start_or_fail(runner: ServiceRunner) -> None:
    """Start ``runner``; a failure kills it and is the command's one-line error."""
    try:
        runner.start()
    except Exception as exc:
        log.debug("starting the services failed", exc_info=True)
        runner.kill()
        raise CommandError(f"cannot start services: {exc}{_address_hint(exc)}") from None


def _address_hint(exc: Exception) -> str:
    if not (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE):
        return ""
    return (
        "; another process serves there: pass --define WEB_SERVER_ADDRESS=HOST:PORT "
        "(or set $WEB_SERVER_ADDRESS for an exported config.yaml)"
    )


def _wait(runner: ServiceRunner, events: queue.SimpleQueue) -> None:
    try:
        runner.wait()
    except BaseException as exc:
        events.put(exc)
    else:
        events.put(None)


def _handle_events(runner: ServiceRunner, events: queue.SimpleQueue) -> int:
    """React to signals until the runner has stopped; the first stops, the second kills."""
    stopping = killed = False
    while True:
        event = next_event(events)
        if event is None:
            log.info("stopped")
            return EXIT_KILLED if killed else 0
        if isinstance(event, BaseException):
            log.error("a service crashed, stopped all", exc_info=event)
            return 1
        if not stopping:
            log.info("%s: stopping gracefully (Ctrl-C again to kill)", event.name)
            _in_thread(runner.stop)
            stopping = True
        elif not killed:
            log.warning("%s: killing the services", event.name)
            _in_thread(runner.kill)
            killed = True


def _in_thread(action: Callable[[], None]) -> None:
    # stop() blocks until in-flight work is done; the main thread must stay free for signals.
    def target() -> None:
        try:
            action()
        except Exception:
            log.exception("%s failed", action.__name__)

    threading.Thread(target=target, name=f"sandbox-{action.__name__}", daemon=True).start()
