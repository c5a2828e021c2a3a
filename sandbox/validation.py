"""Checking a call's arguments against the method's type hints (config ``VALIDATE``).

Off, nothing here runs: a bound entrypoint's ``validator`` is None and Nameko code behaves as
under Nameko. On, each entrypoint builds one :class:`CallValidator` when it is bound to its
container, with a pydantic ``TypeAdapter`` per annotated parameter, and calls it in the green
thread that received the call, before a worker starts. It converts as pydantic does in its
default (lax) mode: ``"5"`` fits ``int``, a dict fits a model and arrives as the model's instance.

A call that does not fit raises :class:`ArgumentsRejected`, an ``IncorrectSignature`` that lists
each misfit with its field, what was expected and the value given. What becomes of it is the
entrypoint's business: the RPC caller gets the error, HTTP answers 400 with the errors as JSON,
an event handler rejects (drops or dead-letters) the message.

pydantic is an optional dependency: it is imported only when ``VALIDATE`` is on.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.exceptions import ConfigurationError, IncorrectSignature

VALIDATE_CONFIG_KEY = "VALIDATE"

INSTALL_HINT = "pip install service-sandbox[validation]"


class RequestBody(typing.NamedTuple):
    """How an HTTP route's first argument, the request, carries a body to check."""

    request_type: type
    read: Callable[[Any], Any]  # the request's body, decoded (its JSON)


class ArgumentsRejected(IncorrectSignature):
    """Arguments that do not fit the method's type hints; ``errors`` lists each misfit as
    ``{"field", "expected", "value"}``. It travels as Nameko's IncorrectSignature, with its
    message: an RPC caller, sandbox or Nameko, gets an IncorrectSignature."""

    travels_as = IncorrectSignature

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors or []


class _Check(typing.NamedTuple):
    name: str
    index: int | None  # its position, None for a keyword-only parameter
    adapter: Any  # pydantic.TypeAdapter
    replace: bool  # the validated value replaces the argument (False: only checked)
    read: Callable[[Any], Any] | None = None  # what to check, read from the argument


class CallValidator:
    """Checks one method's arguments and returns them converted: ``(args, kwargs)``.

    ``body``: the first parameter is an HTTP request, whose hint may declare the JSON body's
    type: ``Annotated[Request, Model]`` checks the body and passes the request on; a plain
    ``Model`` (any hint that is not a Request) passes the checked body in its place.
    """

    def __init__(self, method: Callable, label: str, body: RequestBody | None = None):
        self.label = label
        self.checks = list(_checks(method, label, body))

    def __call__(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        values = list(args)
        errors: list[dict[str, Any]] = []
        for check in self.checks:
            positional = check.index is not None and check.index < len(values)
            if not positional and check.name not in kwargs:
                continue  # the default applies, or check_signature said it is missing
            given = values[check.index] if positional else kwargs[check.name]
            try:
                value = check.adapter.validate_python(
                    given if check.read is None else check.read(given)
                )
            except _validation_error() as exc:
                errors.extend(_misfits(check.name, exc))
                continue
            if not check.replace:
                continue
            if positional:
                values[check.index] = value
            else:
                kwargs = {**kwargs, check.name: value}
        if errors:
            raise ArgumentsRejected(f"{self.label}(): {_summary(errors)}", errors)
        return tuple(values), kwargs


def validator_for(
    config: Mapping[str, Any], method: Callable, label: str, body: RequestBody | None = None
) -> CallValidator | None:
    """The validator of ``method`` when ``config`` turns validation on and a hint asks for a
    check; None otherwise. Raises ConfigurationError when pydantic is missing."""
    if not config.get(VALIDATE_CONFIG_KEY):
        return None
    validator = CallValidator(method, label, body)
    return validator if validator.checks else None


def _pydantic() -> Any:
    try:
        import pydantic
    except ImportError:
        raise ConfigurationError(
            f"config {VALIDATE_CONFIG_KEY} needs pydantic 2: {INSTALL_HINT}"
        ) from None
    return pydantic


def _validation_error() -> type[Exception]:
    return _pydantic().ValidationError


def _checks(method: Callable, label: str, body: RequestBody | None) -> typing.Iterator[_Check]:
    pydantic = _pydantic()
    try:
        hints = typing.get_type_hints(method, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(f"cannot validate {label}(): its type hints fail: {exc}") from None
    parameters = list(inspect.signature(method).parameters.values())[1:]  # after self
    for index, parameter in enumerate(parameters):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            break  # what follows has no fixed position; *args and **kwargs go unchecked
        position = None if parameter.kind is parameter.KEYWORD_ONLY else index
        hint = hints.get(parameter.name, typing.Any)
        if body is not None and index == 0:
            hint, replace = _body_hint(hint, body.request_type)
            read = body.read
        else:
            replace, read = True, None
        if hint is typing.Any:
            continue
        try:
            adapter = pydantic.TypeAdapter(hint)
        except pydantic.PydanticSchemaGenerationError:
            continue  # a type pydantic cannot check (a class of the author's): left as is
        yield _Check(parameter.name, position, adapter, replace, read)


def _body_hint(hint: Any, request_type: type) -> tuple[Any, bool]:
    """The body's type declared by a request argument's hint, and whether the checked body
    replaces the request; ``Any`` when it declares none."""
    if typing.get_origin(hint) is typing.Annotated:
        declared = [m for m in typing.get_args(hint)[1:] if not isinstance(m, str)]
        return (declared[0] if declared else typing.Any), False
    if hint is typing.Any or (isinstance(hint, type) and issubclass(hint, request_type)):
        return typing.Any, False
    return hint, True


def _misfits(name: str, exc: Exception) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(part) for part in (name, *error["loc"])),
            "expected": error["msg"],
            "value": _plain(error.get("input")),
        }
        for error in exc.errors(include_url=False)
    ]


def _plain(value: Any) -> Any:
    """``value`` when it is JSON data (the errors go into a JSON body), else its repr."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e['field']}: {e['expected']}, got {e['value']!r}" for e in errors)
