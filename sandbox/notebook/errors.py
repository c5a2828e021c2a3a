"""Errors in a notebook: one clear line, never a traceback through sandbox's internals."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from sandbox import exceptions


class ServiceCrashed(Exception):
    """A call to a service of the kernel whose container died of an error."""

    def __init__(self, target: str, reason: str | None):
        super().__init__(f"{target} failed: its service crashed ({reason or 'no reason given'})")


class HttpTimeout(TimeoutError):
    """An ``sb.http`` call that got no answer in time."""


class CallInterrupted(KeyboardInterrupt):
    """A call given up by a kernel interrupt: still an interrupt, so that the cell stops."""


# Raised by sb calls on behalf of the services: the user's cell is what matters, not our frames.
SERVICE_ERRORS = (
    exceptions.ConfigurationError,
    exceptions.IncorrectSignature,
    exceptions.MalformedRequest,
    exceptions.MethodNotFound,
    exceptions.RemoteError,
    exceptions.RpcTimeout,
    exceptions.UnknownService,
    ServiceCrashed,
    HttpTimeout,
    CallInterrupted,
)


@contextlib.contextmanager
def abandoned_on_interrupt(target: str) -> Iterator[None]:
    """An interrupt while ``target`` (a call) runs inside becomes a :class:`CallInterrupted`."""
    try:
        yield
    except CallInterrupted:
        raise
    except KeyboardInterrupt:
        # from None: where the interrupt hit (a lock, a socket) says nothing to the user.
        raise CallInterrupted(f"interrupted, {target} abandoned") from None


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, exceptions.ConfigurationError):
        return str(exc)  # a mistake in a definition: its message says it all
    return f"{type(exc).__name__}: {exc}"


def show_error(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr)


def show_service_error(shell, etype, value, tb, tb_offset=None) -> list[str]:
    """IPython custom exception handler for SERVICE_ERRORS: the error, and a remote traceback."""
    if isinstance(value, CallInterrupted):
        lines = [f"sandbox: {value}"]
    else:
        lines = []
        remote_traceback = getattr(value, "traceback", None)
        if remote_traceback:
            lines.append("Traceback in the service (most recent call last):")
            lines.extend(remote_traceback.rstrip().splitlines()[1:])
        lines.append(describe_error(value))
    shell._showtraceback(etype, value, lines)
    return lines


def install(ip) -> None:
    ip.set_custom_exc(SERVICE_ERRORS, show_service_error)


def uninstall(ip) -> None:
    ip.set_custom_exc((), None)
