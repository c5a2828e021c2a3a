"""Records fed to a subscriber (a widget, the topology view) in batches, from the hub thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbox.runtime import get_runtime

if TYPE_CHECKING:
    from sandbox.records import Record, Recorder

# Under the records' name, as before the split: log filters and handlers name it.
log = logging.getLogger("sandbox.records")


class RecordSubscription:
    """Delivers new and updated records to ``callback`` in batches, at most every ``interval``.

    The callback runs in the hub thread, so a burst of messages costs one call per interval.
    """

    def __init__(self, recorder: Recorder, callback: Callable[[list[Record]], None], interval):
        self.recorder, self.callback, self.interval = recorder, callback, interval
        self.batches = 0
        self.delivered = 0
        self._pending: list[Record] = []
        self._scheduled = False
        self._lock = threading.Lock()

    def push(self, record: Record | None) -> None:
        """Queue ``record`` (None: just refresh); schedules the next flush if none is due."""
        with self._lock:
            if record is not None:
                self._pending.append(record)
            if self._scheduled:
                return
            self._scheduled = True
        get_runtime().call_later(self.interval, self.flush)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
        batch = list({id(r): r for r in pending}.values())  # a record may start and finish
        self.batches += 1
        self.delivered += len(batch)
        try:
            self.callback(batch)
        except Exception:
            log.exception("record subscriber %r failed", self.callback)

    def cancel(self) -> None:
        self.recorder.unsubscribe(self)
