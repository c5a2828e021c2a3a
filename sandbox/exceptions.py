"""Exceptions, and their wire form: ``{"exc_type", "exc_path", "exc_args", "value"}``.

The four keys and their values are Nameko's, so errors cross between sandbox and Nameko
services. An RPC reply carries the remote traceback in its ``sandbox.traceback`` header, which
Nameko ignores (see :func:`format_remote_traceback`).
"""

from __future__ import annotations

import traceback as traceback_module
from collections.abc import Iterable
from typing import Any

registry: dict[str, type[BaseException]] = {}

# Our built-in errors travel under Nameko's module path, so that a Nameko client turns them into
# its own instances, and a sandbox client does the same with a Nameko service's errors.
_NAMEKO_MODULE = "nameko.exceptions"


def get_module_path(exc_type: type) -> str:
    return f"{exc_type.__module__}.{exc_type.__name__}"


def deserialize_to_instance(exc_type: type[BaseException]) -> type[BaseException]:
    """Class decorator: remote errors of this type come back as instances of it."""
    registry[get_module_path(exc_type)] = exc_type
    if exc_type.__module__ == __name__:
        registry[f"{_NAMEKO_MODULE}.{exc_type.__name__}"] = exc_type
    return exc_type


def _wire_path(exc_type: type) -> str:
    if exc_type.__module__ == __name__ and get_module_path(exc_type) in registry:
        return f"{_NAMEKO_MODULE}.{exc_type.__name__}"
    return get_module_path(exc_type)


def safe_for_serialization(value: Any) -> Any:
    """``value`` as strings that every serializer accepts, as Nameko makes it: strings stay,
    mappings and iterables keep their shape with their items made safe, anything else
    (numbers and None too) becomes its ``str``, or ``'[__unicode__ failed]'`` when that raises.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {safe_for_serialization(k): safe_for_serialization(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [safe_for_serialization(item) for item in value]
    try:
        return str(value)
    except Exception:
        return "[__unicode__ failed]"


def serialize(exc: BaseException) -> dict[str, Any]:
    """The wire form of ``exc``: Nameko's four keys, and nothing else.

    An error class with a ``travels_as`` class attribute crosses the wire as that type: a
    refinement of a Nameko error reaches Nameko clients as the error they know."""
    exc_type = getattr(type(exc), "travels_as", type(exc))
    return {
        "exc_type": exc_type.__name__,
        "exc_path": _wire_path(exc_type),
        "exc_args": [safe_for_serialization(arg) for arg in exc.args],
        "value": safe_for_serialization(exc),
    }


REMOTE_TRACEBACK_HEADER = "sandbox.traceback"

# Characters: a header must fit in one AMQP frame (128 KiB unless the broker says otherwise).
_TRACEBACK_LIMIT = 16_000


def format_remote_traceback(exc: BaseException) -> str:
    """The traceback text an RPC reply carries for RemoteError; its middle is cut when long."""
    text = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) <= _TRACEBACK_LIMIT:
        return text
    half = _TRACEBACK_LIMIT // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def deserialize(data: dict[str, Any], traceback: str | None = None) -> BaseException:
    """The exception ``data`` describes: an instance of a registered type, else RemoteError
    (with ``traceback``, the remote one, when the reply carried it)."""
    exc_type = registry.get(data.get("exc_path", ""))
    if exc_type is not None:
        try:
            return exc_type(*data.get("exc_args", ()))
        except Exception:  # a registered type whose signature changed: degrade, never fail
            pass
    return RemoteError(data.get("exc_type"), data.get("value", ""), traceback)


class RemoteError(Exception):
    """An error raised by a remote service; ``exc_type``, ``value`` and ``traceback`` say which."""

    def __init__(self, exc_type: str | None = None, value: Any = "", traceback: str | None = None):
        self.exc_type = exc_type
        self.value = value
        self.traceback = traceback
        super().__init__(f"{exc_type} {value}")


class BadRequest(Exception):
    pass


@deserialize_to_instance
class MalformedRequest(BadRequest):
    pass


@deserialize_to_instance
class MethodNotFound(BadRequest):
    pass


@deserialize_to_instance
class IncorrectSignature(BadRequest):
    pass


class UnknownService(Exception):
    def __init__(self, service_name: str):
        self._service_name = service_name
        super().__init__(service_name)

    def __str__(self) -> str:
        return f"Unknown service `{self._service_name}`"


class RpcTimeout(Exception):
    pass


class UnserializableValueError(Exception):
    def __init__(self, value: Any):
        try:
            self.repr_value = repr(value)
        except Exception:
            self.repr_value = "[__repr__ failed]"
        super().__init__()

    def __str__(self) -> str:
        return f"Unserializable value: `{self.repr_value}`"


class ContainerBeingKilled(Exception):
    """The container is being killed; AMQP entrypoints requeue the message that raised this."""


class ConfigurationError(Exception):
    """A service, extension or config file is set up wrongly."""


class CommandError(Exception):
    """A command line was used wrongly; the CLI prints it as one line."""


class ExtensionNotFound(AttributeError):
    pass


class WorkerTimeout(Exception):
    """A worker run by :meth:`ServiceContainer.run_entrypoint` did not finish in time."""


class ReplyQueueExpiredWithPendingReplies(Exception):
    pass


class MessageRefused(Exception):
    """A message refused before decoding: its body is over ``MAX_MESSAGE_SIZE``, or compressed
    in a way ``ACCEPT_COMPRESSION`` does not allow (see :mod:`sandbox.amqp.limits`)."""


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached, or not in time: the request, event or message was not
    sent (or, for a confirmed publish, not confirmed). The message names the broker, never
    its password."""


class ConnectionNotFound(BadRequest):
    pass
