"""Waiting on a condition with a deadline, never on a wall-clock guess."""

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10,
    interval: float = 0.005,
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """Poll ``condition()`` until it holds; fail the test when ``timeout`` seconds pass first.

    ``sleep=eventlet.sleep`` where what is awaited runs in the calling thread's own hub."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s: {condition}"
        sleep(interval)
