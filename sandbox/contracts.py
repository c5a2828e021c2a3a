"""Contract tests from recorded traffic: what ``sb.trace.to_pytest`` writes.

Each call that came from outside the recorded services (a notebook cell, an HTTP client, an
event no recorded service published) becomes one test that sends it again to the classes of
the exported module (:mod:`sandbox.testing.replay`) and asserts the recorded result or error.
The calls those made in turn are not replayed on their own: the services make them again.
Tests run in the recorded order against one set of services, so state carries over as it did.

Timers are not replayed: they fire by themselves. Left out, with a comment saying why: calls
a fault touched, calls still running, calls with redacted arguments or arguments that cannot
be written back as Python literals. Values that change from run to run (timestamps, UUIDs,
numbers within a day of the recording's time) are asserted as ``ANY``.
"""

from __future__ import annotations

import ast
import keyword
import pprint
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sandbox.records import ERROR, EVENT, HTTP, OK, RPC, Record, describe_call_id, jsonable
from sandbox.utils import REDACTED

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_VOLATILE_REPRS = ("datetime.", "UUID(")
NEAR_RECORDING = 86_400.0  # seconds: a number this close to the record's time is a timestamp


class _AnyValue:
    """Renders as ``ANY`` (``unittest.mock.ANY`` in the written file)."""

    def __repr__(self) -> str:
        return "ANY"


ANY_VALUE = _AnyValue()


class Raised(NamedTuple):
    """What a call raised: the exception's class name and message."""

    type: str
    message: str


@dataclass
class ContractFile:
    """The written file's text, the services it replays, and what it left out and why."""

    text: str
    services: list[str]
    tests: int
    left_out: list[str] = field(default_factory=list)


def contract_tests(records: Iterable[Record], module: str = "services") -> ContractFile:
    """The text of a pytest module replaying ``records`` against ``module``'s services."""
    records = list(records)
    if not module.isidentifier() or keyword.iskeyword(module):
        raise ValueError(f"module {module!r} is not an importable module name")
    services = sorted({r.service for r in records if r.service and r.event is None})
    tests, left_out = [], []
    for record in records:
        if not _replayable_kind(record) or not _from_outside(record, services):
            continue
        reason = _left_out_because(record)
        if reason is None:
            call, expected = _call_and_expected(record)
            reason = None if call is not None else "arguments that are not Python literals"
        if reason is not None:
            left_out.append(f"#{record.id} {record.target}: {reason}")
            continue
        followers = _followers(record, records)
        tests.append(_test(len(tests) + 1, record, call, expected, followers))
    text = _module_text(module, services, tests, left_out)
    return ContractFile(text, services, len(tests), left_out)


def write_contract_tests(
    path: str | Path, records: Iterable[Record], module: str = "services"
) -> ContractFile:
    written = contract_tests(records, module)
    if not written.tests:
        raise ValueError("no recorded call to replay: call the services first")
    Path(path).write_text(written.text)
    return written


# --- choosing -------------------------------------------------------------------------------


def _replayable_kind(record: Record) -> bool:
    return record.kind in (RPC, HTTP) or (record.kind == EVENT and record.event is None)


def _from_outside(record: Record, services: list[str]) -> bool:
    parent = describe_call_id(record.parent_call_id)
    return parent is None or parent.split(".", 1)[0] not in services


def _left_out_because(record: Record) -> str | None:
    if record.fault:
        return f"a fault touched it ({record.fault})"
    if record.status not in (OK, ERROR) or (record.kind == HTTP and record.http is None):
        return f"no outcome recorded ({record.shown_status})"
    if record.kind != HTTP and REDACTED in record.kwargs.values():
        return "its arguments are redacted"
    return None


# --- writing ----------------------------------------------------------------------------------


def _call_and_expected(record: Record) -> tuple[str | None, Any]:
    if record.kind == HTTP:
        request, response = record.request, record.response
        parts = urlsplit(request["url"])
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        words = [repr(request["method"]), repr(path)]
        if request["body"] not in ("", None):
            words.append(repr(request["body"]))
            content_type = _header(record.http["request"]["headers"], "content-type")
            if content_type:
                words.append(f"headers={{'Content-Type': {content_type!r}}}")
        expected = (response["status"], _stable(response["body"], record.time))
        return f"replay.http({', '.join(words)})", expected
    arguments = [*record.args, *record.kwargs.values()]
    if not all(_is_literal(value) for value in arguments):
        return None, None
    words = [repr(record.service), repr(record.entrypoint), *_arguments(record)]
    verb = "rpc" if record.kind == RPC else "event"
    if record.error is not None:
        expected: Any = Raised(record.error["type"], record.error["message"])
    else:
        expected = _stable(jsonable(record.result), record.time)
    return f"replay.{verb}({', '.join(words)})", expected


def _followers(record: Record, records: list[Record]) -> list[str]:
    """The calls ``record`` led to, each time it made one (faulted runs aside)."""
    return [
        r.target or ""
        for r in records
        if r is not record
        and r.event is None
        and record.call_id in r.call_id_stack
        and not r.fault
        and r.kind in (RPC, HTTP, EVENT)
    ]


def _test(number: int, record: Record, call: str, expected: Any, followers: list[str]) -> str:
    name = re.sub(r"\W", "_", f"{record.service}_{record.entrypoint}")
    if record.kind == HTTP:
        shown = f"{record.request['method']} {urlsplit(record.request['url']).path}"
    else:
        shown = f"{record.target}({', '.join(_arguments(record))})"
    check = "is None" if expected is None else f"== {_literal(expected)}"
    head = (
        f"def test_{number:03d}_{name}(replay):\n"
        f'    """#{record.id} {record.kind}: {_docstring_safe(shown)}"""\n'
    )
    if not followers:
        return f"{head}    assert {call} {check}\n"
    waited = ", ".join(repr(f) for f in followers)
    return f"{head}    with replay.then({waited}):\n        assert {call} {check}\n"


def _module_text(module: str, services: list[str], tests: list[str], left_out: list[str]) -> str:
    names = ", ".join(repr(s) for s in services)
    skipped = "".join(f"#   {line}\n" for line in left_out)
    skipped = f"\n# Not replayed:\n{skipped}" if left_out else ""
    head = (
        f'"""Contract tests of {", ".join(services)}, written by sb.trace.to_pytest from\n'
        f"recorded traffic: each test sends one recorded call again to the classes of\n"
        f"{module}.py and asserts the recorded result. Run with pytest.\n"
        '"""\n\n'
        "from unittest.mock import ANY  # noqa: F401  (values that change from run to run)\n\n"
        "import pytest\n\n"
        f"import {module}\n"
        "from sandbox.testing.replay import Raised, replaying, service_classes  # noqa: F401\n"
        f"{skipped}\n\n"
        '@pytest.fixture(scope="module")\n'
        "def replay():\n"
        f"    with replaying(*service_classes({module}, {names})) as replay:\n"
        "        yield replay\n"
    )
    return head + "".join(f"\n\n{test}" for test in tests)


def _arguments(record: Record) -> list[str]:
    words = [repr(arg) for arg in record.args]
    return words + [f"{name}={value!r}" for name, value in record.kwargs.items()]


def _literal(value: Any) -> str:
    text = pprint.pformat(value, width=80, sort_dicts=False)
    return text.replace("\n", "\n            ")


def _stable(value: Any, when: float) -> Any:
    """``value`` with the parts that change from run to run replaced by ANY."""
    if isinstance(value, dict):
        return {k: _stable(v, when) for k, v in value.items()}
    if isinstance(value, list):
        return [_stable(v, when) for v in value]
    if isinstance(value, str) and (
        _UUID.match(value) or _TIMESTAMP.match(value) or value.startswith(_VOLATILE_REPRS)
    ):
        return ANY_VALUE
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and abs(value - when) < NEAR_RECORDING:
        return ANY_VALUE
    return value


def _is_literal(value: Any) -> bool:
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')[:120]
