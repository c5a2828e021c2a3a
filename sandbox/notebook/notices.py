"""What the runtime has to tell the user while cells run: printed under the running cell.

The watchdog logs from its own thread. Under ``sandbox run`` logging shows that; in a kernel
nobody reads the log, so its records are printed as ``sandbox:`` lines into the cell that is
running (or the last one), and the file:line of a cell is named as IPython names it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from sandbox import watchdog
from sandbox.notebook.output import CellRouter, route_to

_LOGGERS = (watchdog.log,)


class CellNotices(logging.Handler):
    """Prints the records of sandbox's notice loggers under the running cell."""

    def __init__(self, ip: Any, router: CellRouter):
        super().__init__(logging.WARNING)
        self.ip, self.router = ip, router

    def install(self) -> None:
        watchdog.set_location_format(self.location)
        for logger in _LOGGERS:
            logger.addHandler(self)
            logger.propagate = False  # or a root handler (the logs widget) shows it twice

    def uninstall(self) -> None:
        watchdog.set_location_format(None)
        for logger in _LOGGERS:
            logger.removeHandler(self)
            logger.propagate = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            route_to(self.router.running)
            print(f"sandbox: {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)

    def location(self, filename: str, lineno: int) -> str:
        named = self.ip.compile.format_code_name(filename)
        if named is None:
            return f"{filename}:{lineno}"
        label, name = named
        return f"{label} {name}, line {lineno}"
