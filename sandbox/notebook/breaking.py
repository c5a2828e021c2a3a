"""The notice under a cell that redefines a running service so that recorded calls break.

When a cell reloads a service, the calls ``sb.trace`` recorded for it are tried against the new
class, without running anything: is the method still an entrypoint of the same kind, do the
arguments still bind to its signature, do they fit its type hints (checked with pydantic, as
config ``VALIDATE`` would, when pydantic is installed)? One notice lists those that would fail;
a type misfit says so when ``VALIDATE`` is off, since the call would then still run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from typing import Any

from sandbox import serialization
from sandbox.exceptions import ConfigurationError
from sandbox.extensions import get_entrypoints
from sandbox.records import EVENT, HTTP, RPC, Record, entrypoint_kind
from sandbox.utils import REDACTED
from sandbox.validation import ArgumentsRejected, CallValidator, RequestBody
from sandbox.web.server import Request

# Records of these kinds are calls a client made and may make again.
_CALL_KINDS = (RPC, HTTP, EVENT)

SHOWN = 10  # broken calls listed one by one; the rest are counted


def broken_calls(
    service_cls: type, records: Iterable[Record], validating: bool = True
) -> list[tuple[Record, str]]:
    """``(record, why)`` for each recorded call to ``service_cls``'s service that it would
    now refuse (for a type misfit: would refuse with ``VALIDATE`` on, ``validating``)."""
    name = service_cls.name
    checkers: dict[tuple[str, str], _CallChecker] = {}
    broken = []
    for record in records:
        if record.service != name or record.kind not in _CALL_KINDS or record.event is not None:
            continue
        key = (record.kind, record.entrypoint)
        if key not in checkers:
            checkers[key] = _CallChecker(service_cls, *key, validating)
        why = checkers[key].why_not(record)
        if why is not None:
            broken.append((record, why))
    return broken


def breaking_notice(
    service_cls: type, records: Iterable[Record], validating: bool = True
) -> str | None:
    """The notice for a reload of ``service_cls``; None when every recorded call still fits."""
    records = list(records)
    broken = broken_calls(service_cls, records, validating)
    if not broken:
        return None
    calls = [r for r in records if r.service == service_cls.name and r.kind in _CALL_KINDS]
    lines = [
        f'the new "{service_cls.name}" would refuse {len(broken)} of the {len(calls)} '
        f"recorded calls to it:"
    ]
    lines += [f"  #{record.id} {_call(record)}: {why}" for record, why in broken[:SHOWN]]
    if len(broken) > SHOWN:
        lines.append(f"  ... and {len(broken) - SHOWN} more (sb.trace has them all)")
    return "\n".join(lines)


class _CallChecker:
    """Whether recorded calls of one entrypoint fit the new class."""

    def __init__(self, service_cls: type, kind: str, method_name: str, validating: bool):
        self.method = None
        self.validating = validating
        kinds = {entrypoint_kind(e) for n, e in get_entrypoints(service_cls) if n == method_name}
        if kind not in kinds:
            return
        self.method = getattr(service_cls, method_name)
        self.signature = inspect.signature(self.method)
        label = f"{service_cls.name}.{method_name}"
        body = RequestBody(Request, _body) if kind == HTTP else None
        try:
            self.validator: CallValidator | None = CallValidator(self.method, label, body)
        except ConfigurationError:  # no pydantic, or hints that do not resolve: no type check
            self.validator = None

    def why_not(self, record: Record) -> str | None:
        if self.method is None:
            return f"no {record.kind} entrypoint {record.entrypoint} any more"
        if REDACTED in record.kwargs.values():
            return None  # sensitive arguments were never kept: nothing to try
        args, kwargs = _wire(record.args), {k: _wire_value(v) for k, v in record.kwargs.items()}
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            return f"{record.entrypoint}() {exc}"
        if self.validator is None:
            return None
        try:
            self.validator(args, kwargs)
        except ArgumentsRejected as exc:
            misfits = str(exc).partition("(): ")[2]
            return misfits if self.validating else f"{misfits} (with config VALIDATE on)"
        except Exception as exc:  # the recorded request's body, unreadable now
            return f"{type(exc).__name__}: {exc}"
        return None


def _wire(args: tuple) -> tuple:
    return tuple(_wire_value(arg) for arg in args)


def _wire_value(value: Any) -> Any:
    """What the call carried: the JSON form of a value the old version received as a model."""
    if isinstance(value, Request):
        return value
    try:
        return json.loads(serialization.dumps(value, "json")[2])
    except Exception:
        return value


def _body(request: Any) -> Any:
    return request.get_json() if isinstance(request, Request) else request


def _call(record: Record) -> str:
    if record.kind == HTTP and record.http is not None:
        request = record.http["request"]
        return f"{request['method']} {request['url']}"
    shown = [repr(arg) for arg in record.args]
    shown += [f"{key}={value!r}" for key, value in record.kwargs.items()]
    text = ", ".join(shown)
    return f"{record.target}({text if len(text) <= 60 else text[:57] + '...'})"
