"""``@timer(interval, eager=False)``: run a method every ``interval`` seconds.

A worker that outlasts the interval delays the next tick until it finishes: ticks never
overlap. ``interval=0`` runs the method back to back, as Nameko does, each tick after the
previous worker finished and after a turn of the hub (so that everything else runs too).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from typing import Any

import eventlet
import eventlet.event

from sandbox.exceptions import ContainerBeingKilled
from sandbox.extensions import Entrypoint
from sandbox.records import TIMER

log = logging.getLogger(__name__)


class Timer(Entrypoint):
    record_kind = TIMER

    def __init__(self, interval: float, eager: bool = False, **kwargs: Any):
        if not isinstance(interval, numbers.Real) or interval < 0:
            raise ValueError(f"timer interval must be a number of seconds >= 0, not {interval!r}")
        self.interval = interval
        self.eager = eager
        self._stopping = eventlet.event.Event()
        self._thread = None
        super().__init__(**kwargs)

    def start(self) -> None:
        self._thread = self.container.spawn_managed_thread(
            self._run, identifier=f"{self.container.service_name}.{self.method_name}.timer"
        )

    def stop(self) -> None:
        if not self._stopping.ready():
            self._stopping.send(True)
        if self._thread is not None:
            self._thread.wait()

    def kill(self) -> None:
        if self._thread is not None:
            self._thread.kill()

    def _run(self) -> None:
        # Ticks fall on start + n * interval, so time spent in workers never accumulates as
        # drift; a tick that overran its slot skips the ticks it covered instead of bunching.
        start = time.monotonic()
        tick = 0 if self.eager else 1
        while True:
            delay = max(0.0, start + tick * self.interval - time.monotonic())
            with eventlet.Timeout(delay, False):
                self._stopping.wait()
            if self._stopping.ready():
                return
            try:
                self._fire()
            except ContainerBeingKilled:
                return
            tick = self._next_tick(tick, time.monotonic() - start)

    def _next_tick(self, tick: int, elapsed: float) -> int:
        if not self.interval:
            return tick + 1
        return max(tick + 1, math.floor(elapsed / self.interval) + 1)

    def _fire(self) -> None:
        done = eventlet.event.Event()

        def handle_result(worker_ctx, result, exc_info):
            done.send(None)
            return result, exc_info

        self.container.spawn_worker(self, (), {}, handle_result=handle_result)
        done.wait()


timer = Timer.decorator
