"""Queue and exchange arguments: the ones the embedded broker implements, checked as
RabbitMQ checks them, with RabbitMQ's reply texts.

RabbitMQ accepts and ignores arguments it does not know (``x-foo``) and a few it knows but
sandbox does not implement (quorum and stream settings). Here both are refused, naming the
argument, so that a program never silently relies on something the embedded broker ignores.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from amqp import spec
from amqp.exceptions import PreconditionFailed

__all__ = [
    "EXCHANGE_ARGUMENTS",
    "QUEUE_ARGUMENTS",
    "amqp_type",
    "check_equivalent",
    "check_exchange_arguments",
    "check_queue_arguments",
]

MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")


def amqp_type(value: Any) -> str:
    """RabbitMQ's name for the field type py-amqp encodes ``value`` as."""
    if isinstance(value, str | bytes):
        return "longstr"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) < value < 2**31 else "long"
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (float, "double"),
        (decimal.Decimal, "decimal"),
        (datetime.datetime, "timestamp"),
        (dict, "table"),
        ((list, tuple), "array"),
        (type(None), "void"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: Any) -> str | None:
    return None if _is_int(value) else f'"expected integer, got {amqp_type(value)}"'


def _non_negative(value: Any, _: Mapping[str, Any]) -> str | None:
    problem = _integer(value)
    if problem is None and value < 0:
        problem = f"{{value_negative,{value}}}"
    return problem


def _expires(value: Any, arguments: Mapping[str, Any]) -> str | None:
    if _is_int(value) and value == 0:
        return "{value_zero,0}"
    return _non_negative(value, arguments)


def _max_priority(value: Any, arguments: Mapping[str, Any]) -> str | None:
    problem = _non_negative(value, arguments)
    if problem is None and value > MAX_PRIORITY:
        problem = f"{{max_value_exceeded,{value}}}"
    return problem


def _typed(kind: str, check: Callable[[Any, Mapping[str, Any]], str | None] | None = None):
    def validate(value: Any, arguments: Mapping[str, Any]) -> str | None:
        if amqp_type(value) != kind:
            return f"{{unacceptable_type,{amqp_type(value)}}}"
        return check(_text(value), arguments) if check is not None else None

    return validate


def _dead_letter_routing_key(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return None if "x-dead-letter-exchange" in arguments else "routing_key_but_no_dlx_defined"


def _overflow(value: str, _: Mapping[str, Any]) -> str | None:
    return None if value in OVERFLOW_MODES else "invalid_overflow"


def _queue_mode(value: str, _: Mapping[str, Any]) -> str | None:
    return None if value in ("default", "lazy") else f"\"unsupported queue mode '{value}'\""


def _queue_type(value: str, _: Mapping[str, Any]) -> str | None:
    if value == "classic":
        return None
    if value in ("quorum", "stream"):
        return f"{value} queues are not implemented by sandbox's embedded broker"
    return f"\"unsupported queue type '{value}'\""


_Check = Callable[[Any, Mapping[str, Any]], str | None]

# RabbitMQ's order: it reports the first bad argument in this order.
_QUEUE_CHECKS: dict[str, _Check | None] = {
    "x-expires": _expires,
    "x-message-ttl": _non_negative,
    "x-dead-letter-exchange": None,  # a type check of its own, with its own reply text
    "x-dead-letter-routing-key": _typed("longstr", _dead_letter_routing_key),
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-priority": _max_priority,
    "x-overflow": _typed("longstr", _overflow),
    "x-queue-mode": _typed("longstr", _queue_mode),
    "x-single-active-consumer": _typed("bool"),
    "x-queue-type": _typed("longstr", _queue_type),
}

# Compared when a queue is declared again, in RabbitMQ's order.
QUEUE_ARGUMENTS = tuple(_QUEUE_CHECKS)
EXCHANGE_ARGUMENTS = ("alternate-exchange",)

# Names that must be text, checked before anything else (RabbitMQ checks them apart).
_NAME_ARGUMENTS = {"x-dead-letter-exchange": "queue", "alternate-exchange": "exchange"}


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _refuse(message: str, method: tuple) -> PreconditionFailed:
    return PreconditionFailed(f"PRECONDITION_FAILED - {message}", method)


def _check_names(what: str, arguments: Mapping[str, Any], method: tuple) -> None:
    for key in _NAME_ARGUMENTS:
        if key in arguments and amqp_type(arguments[key]) != "longstr":
            kind = amqp_type(arguments[key])
            raise _refuse(f"invalid type '{kind}' for arg '{key}' in {what}", method)


def _check_unknown(what: str, arguments: Mapping[str, Any], known: Iterable[str], method) -> None:
    for key in arguments:
        if key not in known:
            raise _refuse(
                f"invalid arg '{key}' for {what}: not implemented by sandbox's embedded broker",
                method,
            )


def check_queue_arguments(what: str, arguments: Mapping[str, Any]) -> None:
    """Refuse bad or unimplemented queue arguments; ``what`` is "queue 'q' in vhost 'v'"."""
    method = spec.Queue.Declare
    _check_names(what, arguments, method)
    for key, check in _QUEUE_CHECKS.items():
        if key in arguments and check is not None:
            problem = check(arguments[key], arguments)
            if problem is not None:
                raise _refuse(f"invalid arg '{key}' for {what}: {problem}", method)
    _check_unknown(what, arguments, _QUEUE_CHECKS, method)


def check_exchange_arguments(what: str, arguments: Mapping[str, Any]) -> None:
    """Refuse bad or unimplemented exchange arguments (only ``alternate-exchange`` is one)."""
    method = spec.Exchange.Declare
    _check_names(what, arguments, method)
    _check_unknown(what, arguments, EXCHANGE_ARGUMENTS, method)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(_text(value))


def _described(value: Any) -> str:
    return f"the value '{_shown(value)}' of type '{amqp_type(value)}'"


def _same(current: Any, received: Any) -> bool:
    # True and 1 are equal in Python, not on the wire
    return (amqp_type(current), _text(current)) == (amqp_type(received), _text(received)) or (
        _is_int(current) and _is_int(received) and current == received
    )


def check_equivalent(what: str, pairs: Iterable[tuple[str, Any, Any]], method: tuple) -> None:
    """Refuse a declare that differs from the existing entity, as RabbitMQ words it;
    ``pairs`` are ``(name, current, received)``, None for an argument not given."""
    for name, current, received in pairs:
        if current is None and received is None or _same(current, received):
            continue
        if received is None:
            difference = f"received none but current is {_described(current)}"
        elif current is None:
            difference = f"received {_described(received)} but current is none"
        else:
            difference = f"received '{_shown(received)}' but current is '{_shown(current)}'"
        raise _refuse(f"inequivalent arg '{name}' for {what}: {difference}", method)
