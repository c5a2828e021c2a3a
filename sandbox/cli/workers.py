"""``sandbox run --workers N``: N worker processes under one supervisor.

Each worker is a ``sandbox run`` of the same command line. They share the work through the
broker (the RPC and event queues are the same queues, consumed by each worker) and one HTTP
port: the supervisor binds ``WEB_SERVER_ADDRESS`` once and hands the listening socket down, so
the workers take connections from one accept queue and a worker that restarts loses none.

Workers are spawned (a new interpreter each), not forked. A ``fork()`` would copy a process
that may already hold threads (the runtime's hub thread, a broker connection, logging locks)
into a child where only the forking thread lives on; whatever another thread held stays held,
and the copied broker socket would be shared by two processes. A spawned worker builds its
runtime, connections and services from nothing, exactly as a lone ``sandbox run`` does; the
supervisor only imports the module to check it.

The supervisor restarts a worker that dies (at once if it had started, with a growing delay
if it died while starting; a usage or config error before any worker started ends the
command with it). SIGTERM or Ctrl-C is passed to every worker, which stops gracefully as a
lone ``sandbox run`` does (the requests not yet started go back to the queue); a second
signal kills them. Each worker watches its link to the supervisor and stops gracefully when
the supervisor is gone, so that no worker outlives it.

Under ``--workers`` the metrics of every worker, those that died included, are summed by
``/metrics`` (prometheus_client's multiprocess mode, in a directory the supervisor makes).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import eventlet.greenio

from sandbox import metrics
from sandbox.cli.argv import HIDDEN_ARGS_VARIABLE, hidden_arguments
from sandbox.cli.signals import next_event
from sandbox.constants import AMQP_URI_CONFIG_KEY, WEB_SERVER_CONFIG_KEY
from sandbox.exceptions import CommandError
from sandbox.utils import sanitize_url
from sandbox.web.server import (
    DEFAULT_WEB_SERVER_ADDRESS,
    LISTEN_BACKLOG,
    BindAddress,
    adopt_listening_socket,
    base_url,
    parse_address,
)

log = logging.getLogger(__name__)

# In a worker's environment: "INDEX:LINK_FD[:LISTEN_FD]", read and removed at its start.
WORKER_VARIABLE = "SANDBOX_WORKER"
READY = b"ready\n"
EXIT_USAGE = 2
# A worker that dies while starting is started again after this many seconds, doubled for
# each failure in a row up to the maximum: a broken broker is not hammered.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0


# --- the worker's side ---------------------------------------------------------------------


@dataclass
class WorkerLink:
    """A worker's end of the link to its supervisor, from its environment."""

    index: int
    link: socket.socket
    listen_fd: int | None

    @classmethod
    def from_environment(cls) -> WorkerLink | None:
        """The link, when this process is a worker; the variable is removed either way."""
        value = os.environ.pop(WORKER_VARIABLE, None)
        if value is None:
            return None
        index, link_fd, *listen = (int(part) for part in value.split(":"))
        link = socket.socket(fileno=link_fd)
        link.set_inheritable(False)
        return cls(index, link, listen[0] if listen else None)

    def adopt_listening_socket(self, address: str | int) -> None:
        """Serve ``address`` (``WEB_SERVER_ADDRESS``) from the supervisor's socket."""
        if self.listen_fd is None:
            return
        sock = socket.socket(fileno=self.listen_fd)
        sock.set_inheritable(False)
        adopt_listening_socket(parse_address(address), eventlet.greenio.GreenSocket(sock))

    def started(self, stop: Callable[[], None]) -> None:
        """Tell the supervisor the services run; call ``stop`` once it is gone."""
        self.link.sendall(READY)
        threading.Thread(target=self._watch, args=(stop,), name="sandbox-link", daemon=True).start()

    def _watch(self, stop: Callable[[], None]) -> None:
        try:
            while self.link.recv(64):
                pass
        except OSError:
            pass
        log.warning("the supervisor is gone: stopping")
        stop()


# --- the supervisor ------------------------------------------------------------------------


@dataclass(eq=False)
class WorkerProcess:
    index: int
    proc: subprocess.Popen
    link: socket.socket
    ready: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


def check_broker(config: Mapping[str, Any]) -> None:
    uri = str(config.get(AMQP_URI_CONFIG_KEY, "memory://"))
    if uri.startswith("memory:"):
        raise CommandError(
            "--workers needs a broker the workers share: memory:// lives inside each "
            "process; pass --broker amqp://... (or set AMQP_URI)"
        )


class Supervisor:
    """Starts ``count`` workers of ``command_line`` and keeps them running until a signal."""

    def __init__(self, command_line: list[str], count: int, config: Mapping[str, Any], http: bool):
        self.command_line = command_line
        self.count = count
        self.config = config
        self.http = http
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.workers: dict[int, WorkerProcess] = {}
        self.listener: socket.socket | None = None
        self.metrics_dir: str | None = None
        self._own_metrics_dir = False
        self._restarts: dict[int, float] = {}  # index -> when to start it again
        self._failures: dict[int, int] = {}
        self._any_ready = False
        self._signals = 0
        self._codes: list[int] = []

    def run(self) -> int:
        """Supervise until every worker has stopped; return the command's exit code."""
        self._prepare()
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, frame: self.events.put(signal.Signals(signum)))
            for index in range(self.count):
                self._spawn(index)
            return self._loop()
        finally:
            self._clean_up()

    def _prepare(self) -> None:
        if self.http:
            address = parse_address(
                self.config.get(WEB_SERVER_CONFIG_KEY, DEFAULT_WEB_SERVER_ADDRESS)
            )
            self.listener = bind(address)
            log.info("listening on %s", base_url(BindAddress(*self.listener.getsockname()[:2])))
        if metrics.available():
            self.metrics_dir = os.environ.get(metrics.MULTIPROCESS_VARIABLE)
            if not self.metrics_dir:
                self.metrics_dir = tempfile.mkdtemp(prefix="sandbox-metrics-")
                self._own_metrics_dir = True

    def _clean_up(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self._own_metrics_dir and self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    # --- workers ---------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        fds = [theirs.fileno()]
        value = f"{index}:{theirs.fileno()}"
        if self.listener is not None:
            fds.append(self.listener.fileno())
            value += f":{self.listener.fileno()}"
        environment = {**os.environ, WORKER_VARIABLE: value}
        hidden = hidden_arguments(self.command_line)
        if hidden:
            environment[HIDDEN_ARGS_VARIABLE] = json.dumps(hidden)
        if self.metrics_dir:
            environment[metrics.MULTIPROCESS_VARIABLE] = self.metrics_dir
        masked = [sanitize_url(arg) for arg in self.command_line]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sandbox.cli.main", *masked],
                env=environment,
                pass_fds=fds,
                # Its own session: a Ctrl-C in the terminal reaches the supervisor only, which
                # passes it on once (two would kill the workers).
                start_new_session=True,
            )
        finally:
            theirs.close()
        worker = self.workers[index] = WorkerProcess(index, proc, ours)
        log.info("started worker %d (pid %d)", index, proc.pid)
        threading.Thread(
            target=self._follow, args=(worker,), name=f"sandbox-worker-{index}", daemon=True
        ).start()

    def _follow(self, worker: WorkerProcess) -> None:
        """Report the worker's start and its exit, which closes its end of the link."""
        try:
            if worker.link.recv(len(READY)) == READY:
                self.events.put(("ready", worker))
            while worker.link.recv(64):
                pass
        except OSError:
            pass
        worker.proc.wait()
        self.events.put(("exit", worker))

    # --- the loop --------------------------------------------------------------------------

    def _loop(self) -> int:
        while self.workers or self._restarts:
            try:
                event = next_event(self.events, self._next_restart())
            except queue.Empty:
                continue  # a restart is due
            if isinstance(event, signal.Signals):
                self._on_signal(event)
            elif event[0] == "ready":
                self._on_ready(event[1])
            else:
                code = self._on_exit(event[1])
                if code is not None:
                    self._stop_all(signal.SIGTERM)
                    self._wait_all()
                    return code
        return self._exit_code()

    def _next_restart(self) -> float | None:
        now = time.monotonic()
        for index, when in list(self._restarts.items()):
            if when <= now:
                del self._restarts[index]
                self._spawn(index)
        if not self._restarts:
            return None
        return max(0.0, min(self._restarts.values()) - now)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        self._restarts.clear()
        if self._signals == 1:
            log.info(
                "%s: stopping %d workers gracefully (again to kill)", sig.name, len(self.workers)
            )
        else:
            log.warning("%s: killing the workers", sig.name)
        self._stop_all(signal.SIGTERM)

    def _on_ready(self, worker: WorkerProcess) -> None:
        worker.ready = self._any_ready = True
        self._failures.pop(worker.index, None)
        log.info("worker %d (pid %d) ready", worker.index, worker.pid)

    def _on_exit(self, worker: WorkerProcess) -> int | None:
        """Forget a worker that ended and start another; an exit code when it must all end."""
        if self.workers.get(worker.index) is not worker:
            return None
        del self.workers[worker.index]
        worker.link.close()
        if self.metrics_dir:
            metrics.forget_process(worker.pid, self.metrics_dir)
        code = worker.proc.returncode
        if self._signals:
            self._codes.append(code)
            log.info("worker %d (pid %d) stopped (%s)", worker.index, worker.pid, describe(code))
            return None
        if code == EXIT_USAGE and not self._any_ready:
            log.error("worker %d could not start (exit code 2): stopping", worker.index)
            return EXIT_USAGE
        self._schedule_restart(worker)
        return None

    def _schedule_restart(self, worker: WorkerProcess) -> None:
        code = describe(worker.proc.returncode)
        if worker.ready:
            log.warning(
                "worker %d (pid %d) died (%s): starting another", worker.index, worker.pid, code
            )
            self._spawn(worker.index)
            return
        failures = self._failures[worker.index] = self._failures.get(worker.index, 0) + 1
        delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** (failures - 1))
        log.warning(
            "worker %d (pid %d) died while starting (%s): starting another in %.1fs",
            worker.index,
            worker.pid,
            code,
            delay,
        )
        self._restarts[worker.index] = time.monotonic() + delay

    def _stop_all(self, sig: signal.Signals) -> None:
        for worker in self.workers.values():
            if worker.proc.poll() is None:
                worker.proc.send_signal(sig)

    def _wait_all(self) -> None:
        while self.workers:
            event = next_event(self.events)
            if isinstance(event, tuple) and event[0] == "exit":
                self._on_exit(event[1])
            elif isinstance(event, signal.Signals):
                self._stop_all(signal.SIGTERM)

    def _exit_code(self) -> int:
        """0 when every worker stopped gracefully, 130 when one was killed, else 1."""
        # A worker that the stop's SIGTERM ended before it had set up its handlers had not
        # started serving: nothing of it was lost.
        if all(code in (0, -signal.SIGTERM) for code in self._codes):
            return 0
        if any(code == 128 + signal.SIGINT for code in self._codes):
            return 128 + signal.SIGINT
        return 1


def describe(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def bind(address: BindAddress) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.address else socket.AF_INET
    try:
        sock = socket.create_server(
            (address.address, address.port), family=family, backlog=LISTEN_BACKLOG
        )
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else exc
        raise OSError(exc.errno, f"cannot listen on {base_url(address)}: {reason}") from None
    return sock
