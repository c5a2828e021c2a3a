"""``sb.faults(...)`` and ``%sandbox faults``: fault injection from a cell (sandbox.faults).

``sb.faults`` is a block or a decorator; ``%sandbox faults drop=shop.buy:0.5`` turns rules on
for the kernel until ``%sandbox faults off``. Both say at once when a rule names no entrypoint
of a running service: a typo would otherwise inject nothing, silently.
"""

from __future__ import annotations

import fnmatch
import shlex
from collections.abc import Iterable
from typing import Any

from sandbox.extensions import get_entrypoints
from sandbox.faults import ERROR, KILL, FaultRuleError, Faults
from sandbox.notebook.errors import show_error
from sandbox.notebook.session import Session

KINDS = ("latency", "drop", "duplicate", ERROR, KILL)
USAGE = (
    "usage: %sandbox faults [KIND=service.method:VALUE ...] [seed=N] | off "
    f"(KIND: {', '.join(KINDS)})"
)


def running_entrypoints(session: Session) -> list[str]:
    return [
        f"{handle.name}.{method}"
        for handle in session.running()
        for method, _ in get_entrypoints(handle.cls)
    ]


def checked_faults(session: Session, **rules: Any) -> Faults:
    """A :class:`Faults` for ``rules``; a warning line for each key that matches nothing."""
    faults = Faults(**rules)
    known = running_entrypoints(session)
    for key in unmatched(faults, known):
        show_error(f"warning: fault rule {key!r} matches no entrypoint of a running service")
    return faults


def unmatched(faults: Faults, entrypoints: Iterable[str]) -> list[str]:
    entrypoints = list(entrypoints)
    every = (faults.latency, faults.drop, faults.duplicate, faults.error, faults.kill_worker)
    keys = {key for rules in every for key in rules}
    return sorted(k for k in keys if not any(fnmatch.fnmatchcase(e, k) for e in entrypoints))


def parse_fault_words(text: str) -> dict[str, Any]:
    """``drop=shop.buy:0.5 error=shop.*:ValueError seed=3`` as ``Faults`` keyword arguments."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FaultRuleError(f"{USAGE} ({exc})") from None
    rules: dict[str, Any] = {}
    for word in words:
        kind, _, value = word.partition("=")
        if kind == "seed" and value.lstrip("-").isdigit():
            rules["seed"] = int(value)
            continue
        key, _, amount = value.rpartition(":")
        if kind not in KINDS or not key or not amount:
            raise FaultRuleError(USAGE)
        rules.setdefault(kind, {})[key] = amount if kind == ERROR else _number(amount)
    return rules


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FaultRuleError(f"{text!r} is not a number; {USAGE}") from None


class KernelFaults:
    """The rules ``%sandbox faults`` turned on: one set at a time, on until turned off."""

    def __init__(self, session: Session):
        self.session = session
        self.current: Faults | None = None

    def command(self, text: str) -> None:
        if text == "off":
            self.off()
            print("faults off")
        elif text:
            faults = checked_faults(self.session, **parse_fault_words(text))
            self.off()
            faults.__enter__()
            self.current = faults
            print(f"faults on until %sandbox faults off: {faults!r}")
        else:
            print(repr(self.current) if self.current is not None else "no faults on")

    def off(self) -> None:
        if self.current is not None:
            self.current.__exit__(None, None, None)
            self.current = None
