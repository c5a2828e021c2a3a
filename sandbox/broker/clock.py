"""The embedded broker's time: the real clock, or a manual one that tests move by hand.

Every timed rule of the broker (message TTL, per-message ``expiration``, queue ``x-expires``)
reads :meth:`Clock.now` and waits with :meth:`Clock.call_later`. A broker takes the clock
installed when it is created (on the first connection to its virtual host), so a test that
wants deterministic timers installs a :class:`ManualClock` first::

    from sandbox.broker import clock

    with clock.manual() as time:       # brokers created from now on run on `time`
        ...                            # connect to a fresh memory:///vhost, publish...
        time.advance(1.5)              # fires every TTL and expiry due within 1.5 s

Advance it in the thread that uses the broker (``get_runtime().call(time.advance, 1.5)``
when services or sandbox's connections use it): the timers it fires deliver messages.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from eventlet.hubs import get_hub

__all__ = ["Clock", "ManualClock", "RealClock", "TimerHandle", "current", "install", "manual"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the broker needs from time."""

    def now(self) -> float:
        """Seconds on a clock that never goes back, for TTL deadlines."""
        ...

    def timestamp(self) -> int:
        """Seconds since the epoch, for the ``time`` of an ``x-death`` header."""
        ...

    def call_later(self, seconds: float, fn: Callable[[], None]) -> TimerHandle:
        """Run ``fn`` once ``seconds`` have passed."""
        ...


class RealClock:
    """Wall time; timers run on the eventlet hub of the thread that sets them."""

    def now(self) -> float:
        return time.monotonic()

    def timestamp(self) -> int:
        return int(time.time())

    def call_later(self, seconds: float, fn: Callable[[], None]) -> TimerHandle:
        return get_hub().schedule_call_global(seconds, fn)


class _ManualTimer:
    __slots__ = ("due", "fn", "cancelled")

    def __init__(self, due: float, fn: Callable[[], None]) -> None:
        self.due = due
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that stands still until :meth:`advance` moves it.

    ``now()`` starts at 0; ``timestamp()`` counts from ``epoch`` (the real time at creation
    unless given), so ``x-death`` times stay plausible.
    """

    def __init__(self, epoch: float | None = None) -> None:
        self._now = 0.0
        self._epoch = time.time() if epoch is None else epoch
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()  # timers due at the same time fire in the order set

    def now(self) -> float:
        return self._now

    def timestamp(self) -> int:
        return int(self._epoch + self._now)

    def call_later(self, seconds: float, fn: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(self._now + max(seconds, 0.0), fn)
        heapq.heappush(self._timers, (timer.due, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each timer due by then at its own due time, in order
        (timers that fired timers set within the step fire too)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            due, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, due)
                timer.fn()
        self._now = target

    def pending(self) -> list[float]:
        """The due times of the timers still waiting, soonest first."""
        return sorted(due for due, _, timer in self._timers if not timer.cancelled)


_current: Clock = RealClock()


def current() -> Clock:
    """The clock new brokers take."""
    return _current


def install(clock: Clock | None) -> Clock:
    """Make ``clock`` (the real one for None) the clock of brokers created from now on;
    return the clock it replaces."""
    global _current
    previous, _current = _current, clock or RealClock()
    return previous


@contextlib.contextmanager
def manual(epoch: float | None = None) -> Iterator[ManualClock]:
    """Brokers created inside run on a new :class:`ManualClock`, which this yields."""
    clock = ManualClock(epoch)
    previous = install(clock)
    try:
        yield clock
    finally:
        install(previous)
