import itertools
import threading
import time

import eventlet
import pytest

from sandbox.testing.services import entrypoint_waiter
from sandbox.timer import Timer, timer


def test_timer_ticks_drift_free(container_factory):
    ticks = []
    on_time = threading.Event()

    class Svc:
        name = "ticker"

        @timer(interval=0.01)
        def tick(self):
            ticks.append(time.monotonic())
            eventlet.sleep(0.008)  # work inside each tick must not push later ticks back
            if sum(after - before < 0.018 for before, after in itertools.pairwise(ticks)) >= 10:
                on_time.set()

    container = container_factory(Svc, {})
    started = time.monotonic()
    container.start()
    # A timer that waited an interval after each worker would space its ticks by the 8 ms of
    # work plus the 10 ms interval at least, never less; one that keeps to start + n * interval
    # ticks again 10 ms after the last tick began. A busy machine only delays ticks (or skips
    # those a late worker covered), so the tenth such short gap proves no drift without any
    # bound on how late a tick may be.
    assert on_time.wait(30), f"no 10 gaps under 18 ms among {len(ticks)} ticks"
    container.stop()
    assert ticks[0] - started >= 0.009, "a non-eager timer waits one interval first"


def test_eager_timer_fires_at_once(container_factory):
    class Svc:
        name = "eager"

        @timer(interval=60, eager=True)
        def tick(self):
            return "tock"

    container = container_factory(Svc, {})
    with entrypoint_waiter(container, "tick", timeout=5) as result:
        container.start()
    assert result.get() == "tock"


def test_next_tick_waits_for_the_previous_worker(container_factory):
    active = {"now": 0, "peak": 0, "count": 0}
    done = threading.Event()

    class Svc:
        name = "overrun"

        @timer(interval=0.005)
        def tick(self):
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
            eventlet.sleep(0.02)  # four intervals long
            active["now"] -= 1
            active["count"] += 1
            if active["count"] == 5:
                done.set()

    container = container_factory(Svc, {})
    container.start()
    assert done.wait(10)
    container.stop()
    assert active["peak"] == 1


def test_stop_ends_the_timer_promptly(container_factory):
    class Svc:
        name = "slowtimer"

        @timer(interval=3600)
        def tick(self):
            pass

    container = container_factory(Svc, {})
    container.start()
    began = time.monotonic()
    container.stop()
    assert time.monotonic() - began < 10  # not the hour the timer waits for


@pytest.mark.parametrize("interval", [-1, "5", None])
def test_interval_must_be_a_number_of_seconds(interval):
    with pytest.raises(ValueError, match="timer interval must be a number of seconds"):
        Timer(interval)
