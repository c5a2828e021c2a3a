"""Fault injection: slow, failing, lost, doubled and killed deliveries, keyed by entrypoint.

While a :class:`Faults` is active (a ``with`` block, or a function it decorates), every
delivery to a matching entrypoint of a service running in this process draws its faults. Keys
are ``"service.method"``, shell patterns allowed (``"orders.*"``, ``"*"``). What each means:

- ``latency={key: seconds}``: the worker waits that long (greenly) before the method runs.
- ``error={key: exception}``: the worker raises it (a class, an instance, or a built-in
  exception's name) instead of running the method; callers see the method's error.
- ``drop={key: rate}``: the delivery is settled and no worker runs: the AMQP message is acked,
  so an RPC caller waits until its timeout and an event is lost; an HTTP client sees its
  connection closed with no response.
- ``duplicate={key: rate}``: the delivery is handled twice: a second worker runs the method
  with the same arguments and context. The delivery is settled, and answered, once (the
  copy's outcome is dropped, as a caller drops a second reply), so only side effects double.
  For RPC this is a copy reaching another instance: the copy check an instance makes of the
  requests it ran lately is not involved.
- ``kill_worker={key: rate}``: the method runs, then its worker is killed before its result
  is handled: an AMQP delivery is requeued and comes back, at least once, as RabbitMQ
  redelivers a dead consumer's unacked messages; an HTTP client gets 503.

Rates are probabilities, drawn from one ``random.Random(seed)`` per activation, so a seeded
block makes the same choices for the same deliveries in the same order. The faults act
where a message reaches a service of this process, so they work on every broker; services of
other processes are not touched. Leaving the block, by any exception or KeyboardInterrupt too,
removes them.

The core calls :func:`worker_faults` as each worker starts (every entrypoint) and
:func:`dropped` as a delivery arrives at ``@rpc``, ``@event_handler``, ``@consume`` and
``@http`` entrypoints (a websocket frame is never dropped); both return at once when no block
is active. An entrypoint of your own gets latency, error, duplicate and kill_worker from the
container; to support ``drop``, call ``dropped(self, args, kwargs)`` where a delivery arrives
and settle it without a worker when it says so.
"""

from __future__ import annotations

import builtins
import contextlib
import fnmatch
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import eventlet

from sandbox import recorder
from sandbox.exceptions import ContainerBeingKilled

LATENCY, ERROR, DROP, DUPLICATE, KILL = "latency", "error", "drop", "duplicate", "kill_worker"
DUPLICATE_COPY = "duplicate copy"


class InjectedFault(Exception):
    """An ``error`` fault given by an unknown name: the name becomes the class's."""


class WorkerKilled(ContainerBeingKilled):
    """A ``kill_worker`` fault: entrypoints requeue the delivery as for a dying container."""


class FaultRuleError(ValueError):
    """A fault rule that cannot work: a bad key, a rate outside 0..1, an unknown exception."""


@dataclass(frozen=True)
class Plan:
    """The rules of one activation that apply to one entrypoint."""

    latency: float = 0.0
    error: BaseException | type | None = None
    drop: float = 0.0
    duplicate: float = 0.0
    kill: float = 0.0


@dataclass
class WorkerStrike:
    """The faults one worker drew: what the container does before and after the method."""

    latency: float = 0.0
    error: BaseException | None = None
    kill: bool = False

    def run(self, method: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Run the worker's method, meeting the faults drawn (in the worker's green thread)."""
        if self.latency:
            eventlet.sleep(self.latency)
        if self.error is not None:
            raise self.error
        result = method(*args, **kwargs)
        if self.kill:
            raise WorkerKilled("worker killed by a kill_worker fault")
        return result


class Faults(contextlib.ContextDecorator):
    """``with Faults(latency={"svc.method": 0.5}, drop={"svc.*": 0.1}, seed=1): ...``"""

    def __init__(
        self,
        latency: Mapping[str, float] | None = None,
        drop: Mapping[str, float] | None = None,
        duplicate: Mapping[str, float] | None = None,
        error: Mapping[str, Any] | None = None,
        kill_worker: Mapping[str, float] | None = None,
        seed: int | None = None,
    ):
        self.latency = _checked(LATENCY, latency, _seconds)
        self.drop = _checked(DROP, drop, _rate)
        self.duplicate = _checked(DUPLICATE, duplicate, _rate)
        self.error = _checked(ERROR, error, _exception)
        self.kill_worker = _checked(KILL, kill_worker, _kill_rate)
        self.seed = seed
        self.counts: dict[str, int] = {}  # fault kind -> how many were injected
        self._plans: dict[str, Plan | None] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    # --- activation: any thread -------------------------------------------------------------

    def __enter__(self) -> Faults:
        # Each activation starts the same sequence: a decorated function is repeatable too.
        self._random = random.Random(self.seed)
        self.counts = {}
        _activate(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _deactivate(self)

    @property
    def active(self) -> bool:
        return self in _active

    # --- drawing: hub thread ----------------------------------------------------------------

    def plan(self, key: str) -> Plan | None:
        """The rules that apply to entrypoint ``key``; worked out once per key."""
        try:
            return self._plans[key]
        except KeyError:
            pass
        plan = Plan(
            latency=_lookup(self.latency, key, 0.0),
            error=_lookup(self.error, key, None),
            drop=_lookup(self.drop, key, 0.0),
            duplicate=_lookup(self.duplicate, key, 0.0),
            kill=_lookup(self.kill_worker, key, 0.0),
        )
        found = None if plan == Plan() else plan
        self._plans[key] = found
        return found

    def draws(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def __repr__(self) -> str:
        rules = {
            kind: rules
            for kind, rules in [
                (LATENCY, self.latency),
                (ERROR, self.error),
                (DROP, self.drop),
                (DUPLICATE, self.duplicate),
                (KILL, self.kill_worker),
            ]
            if rules
        }
        state = "active" if self.active else "inactive"
        return f"<Faults {state} {rules} seed={self.seed} injected={self.counts}>"


# The active blocks, innermost last. Replaced, never changed in place: the hub reads it
# without a lock while a cell's thread enters or leaves a block.
_active: tuple[Faults, ...] = ()
_activation_lock = threading.Lock()


def _activate(faults: Faults) -> None:
    global _active
    with _activation_lock:
        _active = (*_active, faults)


def _deactivate(faults: Faults) -> None:
    global _active
    with _activation_lock:
        _active = tuple(f for f in _active if f is not faults)


def active_faults() -> tuple[Faults, ...]:
    return _active


# --- hooks the core calls -------------------------------------------------------------------


def worker_faults(worker_ctx: Any) -> WorkerStrike | None:
    """Draw the faults of a starting worker (hub thread); None when it draws none.

    Sets ``worker_ctx.fault`` (what the records show) and starts the copy of a duplicated
    delivery. A copy draws nothing itself: one duplicate must not breed more.
    """
    if not _active or worker_ctx.fault is not None:
        return None
    key = f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}"
    strike, marks = WorkerStrike(), []
    for faults in _active:
        plan = faults.plan(key)
        if plan is None:
            continue
        if plan.duplicate and faults.draws(plan.duplicate):
            faults.count(DUPLICATE)
            marks.append(DUPLICATE)
            eventlet.spawn(_run_copy, worker_ctx)
            # The copy takes its worker slot now: a caller answered by this worker finds it
            # busy (ServiceHandle.busy_workers), not yet to come.
            eventlet.sleep(0)
        if plan.latency:
            faults.count(LATENCY)
            strike.latency += plan.latency
            marks.append(f"{LATENCY} {plan.latency:g}s")
        if plan.error is not None and strike.error is None:
            faults.count(ERROR)
            strike.error = _instance(plan.error)
            marks.append(f"{ERROR} {type(strike.error).__name__}")
        if plan.kill and faults.draws(plan.kill):
            faults.count(KILL)
            strike.kill = True
            marks.append(KILL)
    if not marks:
        return None
    worker_ctx.fault = ", ".join(marks)
    return strike


def dropped(entrypoint: Any, args: tuple = (), kwargs: Mapping | None = None) -> bool:
    """Whether a ``drop`` fault takes this delivery; the caller settles it and runs nothing.

    A drop leaves no worker behind, so it is recorded here (``delivery_dropped``).
    """
    if not _active:
        return False
    service = entrypoint.container.service_name
    key = f"{service}.{entrypoint.method_name}"
    for faults in _active:
        plan = faults.plan(key)
        if plan is not None and plan.drop and faults.draws(plan.drop):
            faults.count(DROP)
            recorder.notify(
                "delivery_dropped",
                {"entrypoint": entrypoint, "service": service, "args": args, "kwargs": kwargs},
            )
            return True
    return False


def _run_copy(worker_ctx: Any) -> None:
    container = worker_ctx.container
    try:
        copy = container.spawn_worker(
            worker_ctx.entrypoint, worker_ctx.args, worker_ctx.kwargs, worker_ctx.data
        )
    except ContainerBeingKilled:
        return
    # Set before the copy's green thread first runs: spawn_worker does not yield after
    # spawning it.
    copy.fault = DUPLICATE_COPY


# --- rules ----------------------------------------------------------------------------------


def _checked(kind: str, rules: Mapping[str, Any] | None, check) -> dict[str, Any]:
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise FaultRuleError(f"{kind}: expected a dict of 'service.method' -> value, not {rules!r}")
    checked = {}
    for key, value in rules.items():
        if not isinstance(key, str) or "." not in key and key != "*":
            raise FaultRuleError(f"{kind}: key {key!r} is not 'service.method' (or a pattern)")
        checked[key] = check(kind, key, value)
    return checked


def _seconds(kind: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultRuleError(f"{kind}[{key!r}]: expected seconds >= 0, not {value!r}")
    return float(value)


def _rate(kind: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise FaultRuleError(f"{kind}[{key!r}]: expected a probability in 0..1, not {value!r}")
    return float(value)


def _kill_rate(kind: str, key: str, value: Any) -> float:
    rate = _rate(kind, key, value)
    if rate >= 1:
        raise FaultRuleError(
            f"{kind}[{key!r}]: a rate of 1 kills every redelivery too, forever; use less than 1"
        )
    return rate


def _exception(kind: str, key: str, value: Any) -> BaseException | type:
    if isinstance(value, Exception):
        return value
    if isinstance(value, type) and issubclass(value, Exception):
        return value
    if isinstance(value, str) and value.isidentifier():
        found = getattr(builtins, value, None)
        if isinstance(found, type) and issubclass(found, Exception):
            return found
        return type(value, (InjectedFault,), {})
    raise FaultRuleError(
        f"{kind}[{key!r}]: expected an exception, its class or name, not {value!r}"
    )


def _instance(error: BaseException | type) -> BaseException:
    if isinstance(error, BaseException):
        return error
    return error("injected by an error fault")


def _lookup(rules: dict[str, Any], key: str, default: Any) -> Any:
    """The value of the most specific rule for ``key``: its own, else the last pattern."""
    if key in rules:
        return rules[key]
    found = default
    for pattern, value in rules.items():
        if fnmatch.fnmatchcase(key, pattern):
            found = value
    return found
