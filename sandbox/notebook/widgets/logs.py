"""Per-service log panels: logging records routed to the service they came from.

A record logged inside a worker belongs to that worker's service (workers are green threads:
the recorder hook tells which greenlet runs which service). Outside workers, a record whose
arguments include a container or a worker context (``log.error("error in %r", worker_ctx)``)
belongs to that one's service. Panels are updated from the hub thread by trait assignment,
batched like the inspector, and keep the last lines only.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from typing import Any

import greenlet

from sandbox import recorder
from sandbox.notebook.widgets.base import stream_output
from sandbox.runtime import get_runtime

LINES = 200


class ServiceLogs(logging.Handler):
    def __init__(self, lines: int = LINES, interval: float = 0.2):
        super().__init__(logging.INFO)
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        self.interval = interval
        self.lines: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=lines))
        self._workers: dict[Any, str] = {}  # worker greenlet -> its service's name
        self._panels: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._scheduled = False
        self._lock = threading.Lock()

    def install(self) -> ServiceLogs:
        recorder.add_observer(self)
        logging.getLogger().addHandler(self)
        return self

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        recorder.remove_observer(self)

    # --- recorder hook: runs in the worker's own greenlet -----------------------------------

    def worker_started(self, worker_ctx: Any) -> None:
        self._workers[greenlet.getcurrent()] = worker_ctx.service_name

    def worker_finished(self, worker_ctx: Any, result: Any, exc_info: Any) -> None:
        self._workers.pop(greenlet.getcurrent(), None)

    # --- logging ----------------------------------------------------------------------------

    def service_of(self, record: logging.LogRecord) -> str | None:
        service = self._workers.get(greenlet.getcurrent())
        if service is not None:
            return service
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            name = getattr(arg, "service_name", None)
            if isinstance(name, str):
                return name
        return None

    def emit(self, record: logging.LogRecord) -> None:
        service = self.service_of(record)
        if service is None:
            return
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            self.lines[service].append(line)
            if service not in self._panels:
                return
            self._dirty.add(service)
            if self._scheduled:
                return
            self._scheduled = True
        get_runtime().call_later(self.interval, self.flush)

    def panel(self, service: str) -> Any:
        """The Output widget showing ``service``'s log (one per service, made on first ask)."""
        with self._lock:
            panel = self._panels.get(service)
            if panel is None:
                import ipywidgets as w

                panel = w.Output(layout=w.Layout(max_height="16em", overflow="auto"))
                self._panels[service] = panel
                self._dirty.add(service)
        self.flush()
        return panel

    def flush(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            self._scheduled = False
            texts = {s: "\n".join(self.lines[s]) + "\n" for s in dirty if self.lines[s]}
        for service, text in texts.items():
            # One stream output holding the last lines: Output.append_stdout would add one
            # output per batch forever; assigning the trait once keeps the panel bounded.
            self._panels[service].outputs = (stream_output(text),)

    def close(self) -> None:
        self.uninstall()
        with self._lock:
            panels, self._panels = list(self._panels.values()), {}
        for panel in panels:
            panel.close()
        super().close()
