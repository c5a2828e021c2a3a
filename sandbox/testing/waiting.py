"""Wait in a test for a method to be called, wherever it runs (Nameko's ``testing.waiting``).

Services run in the runtime's hub thread while the test waits in its own, so the waiting here
polls with eventlet sleeps: an ``eventlet.Timeout`` around the wait fires, and green threads
that the test spawned keep running meanwhile.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import eventlet

POLL_INTERVAL = 0.01  # seconds between looks; short against any test's timeout

Callback = Callable[[tuple, dict, Any, Any], bool]


def wait_until(condition: Callable[[], object], interval: float = POLL_INTERVAL) -> None:
    """Return once ``condition()`` is true; bound it with ``eventlet.Timeout``."""
    while not condition():
        eventlet.sleep(interval)


class WaitResult:
    """The outcome of the awaited call: :meth:`get` returns its result or raises its error."""

    sentinel = object()

    res: Any = sentinel
    exc_info: tuple | None = None

    class NotReady(Exception):
        """``get()`` before the awaited call happened."""

    @property
    def has_result(self) -> bool:
        return self.res is not self.sentinel or self.exc_info is not None

    def send(self, res: Any, exc_info: tuple | None) -> None:
        """Keep the first outcome only."""
        if not self.has_result:
            self.res = res
            self.exc_info = exc_info

    def get(self) -> Any:
        if not self.has_result:
            raise WaitResult.NotReady()
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])
        return self.res


@contextlib.contextmanager
def wait_for_call(obj: Any, target: str, callback: Callback | None = None) -> Iterator[WaitResult]:
    """Patch ``obj.target`` for the ``with`` block; leave the block once it has been called.

    Every call goes through to the original. ``callback(args, kwargs, result, exc_info)``,
    when given, says whether a call is the awaited one (the first one otherwise). The
    :class:`WaitResult` yielded holds that call's outcome. Wrap the block in
    ``eventlet.Timeout(seconds)`` to bound the wait.
    """
    result = WaitResult()
    original = getattr(obj, target)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        res, exc_info = None, None
        try:
            res = original(*args, **kwargs)
        except Exception:
            exc_info = sys.exc_info()
        if callback is None or callback(args, kwargs, res, exc_info):
            result.send(res, exc_info)
        if exc_info is not None:
            raise exc_info[1]
        return res

    with mock.patch.object(obj, target, new=wrapper):
        yield result
        wait_until(lambda: result.has_result)
