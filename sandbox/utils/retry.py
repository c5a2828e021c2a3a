"""``retry``: call a function again when it raises, waiting longer each time (Nameko's)."""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def retry(
    wrapped: F | None = None,
    for_exceptions: ExceptionTypes = Exception,
    max_attempts: float | None = 3,
    delay: float = 1,
    backoff: float = 1,
    max_delay: float | None = None,
) -> Any:
    """Decorate a function so that it is called again when it raises ``for_exceptions``.

    Use it bare (``@retry``) or with options (``@retry(for_exceptions=IOError, delay=0.5)``).
    After the first call come at most ``max_attempts`` more (None: until it succeeds); any
    other exception, or the last one, propagates. Before each new attempt it sleeps
    ``delay * backoff``, then ``delay * backoff ** 2``..., never more than ``max_delay``.
    In a service this sleep only holds the worker that waits, not the others.
    """
    options = {
        "for_exceptions": for_exceptions,
        "max_attempts": max_attempts,
        "delay": delay,
        "backoff": backoff,
        "max_delay": max_delay,
    }
    if wrapped is None:
        return functools.partial(retry, **options)

    forever = max_attempts is None or max_attempts == math.inf
    retries = None if forever else int(max_attempts)

    @functools.wraps(wrapped)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        delays = _delays(delay, backoff, max_delay)
        for _ in itertools.count() if retries is None else range(retries):
            try:
                return wrapped(*args, **kwargs)
            except for_exceptions:
                sleep(next(delays))
        return wrapped(*args, **kwargs)

    return wrapper


def sleep(seconds: float) -> None:
    """The wait between attempts (green in a service). Tests may patch it, as in Nameko."""
    # time.sleep is looked up now: sandbox.blocking may have made it green since import.
    time.sleep(seconds)


def _delays(delay: float, backoff: float, max_delay: float | None) -> Iterator[float]:
    """The waits between attempts; each call of a decorated function starts afresh."""
    while True:
        if backoff:
            delay *= backoff
        yield min(delay, max_delay) if max_delay else delay
