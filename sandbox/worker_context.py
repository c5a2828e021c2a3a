"""What one worker knows about its call: its ids, its arguments, the context data it carries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sandbox.utils import unique_id

if TYPE_CHECKING:
    from sandbox.containers import ServiceContainer
    from sandbox.extensions import Entrypoint


def _parent_calls(stack: Any) -> list[str]:
    """The call id stack a caller sent.

    It comes off the wire: anything but a list of strings (a forged or broken header) starts
    a new chain rather than failing the request, or killing the container that received it.
    """
    if not isinstance(stack, (list, tuple)):  # not ``list | tuple``: a union made per worker
        return []
    for call_id in stack:  # a loop, not all() over a generator: it runs for every worker
        if not isinstance(call_id, str):
            return []
    return list(stack)


def new_call_id() -> str:
    """The unique part of a worker's call id (the ``predictable_call_ids`` fixture patches it)."""
    return unique_id()


class WorkerContext:
    """What one worker knows about its call: ids, arguments and the context data it carries."""

    def __init__(
        self,
        container: ServiceContainer,
        service: Any,
        entrypoint: Entrypoint,
        args: Iterable | None = None,
        kwargs: Mapping | None = None,
        data: Mapping | None = None,
    ):
        self.container = container
        self.config = container.config
        self.service = service
        self.entrypoint = entrypoint
        self.service_name = container.service_name
        self.args = tuple(args) if args is not None else ()
        self.kwargs = dict(kwargs) if kwargs is not None else {}
        self.data = dict(data) if data is not None else {}
        self.call_id = f"{self.service_name}.{entrypoint.method_name}.{new_call_id()}"
        self._parent_call_id_stack = _parent_calls(self.data.get("call_id_stack"))
        tracked = container.parent_calls_tracked
        parents = self._parent_call_id_stack[-tracked:] if tracked > 0 else []
        self.call_id_stack = [*parents, self.call_id]
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.fault: str | None = None  # what sandbox.faults injected, for the records

    @property
    def context_data(self) -> dict[str, Any]:
        data = dict(self.data)
        data["call_id_stack"] = self.call_id_stack
        return data

    @property
    def origin_call_id(self) -> str | None:
        """The first call of the chain the caller sent (whatever ``parent_calls_tracked``
        keeps of it); None for a call with no parent."""
        return self._parent_call_id_stack[0] if self._parent_call_id_stack else None

    @property
    def immediate_parent_call_id(self) -> str | None:
        """The call that made this one; None for a call with no parent."""
        return self._parent_call_id_stack[-1] if self._parent_call_id_stack else None

    def __repr__(self) -> str:
        return f"<WorkerContext [{self.service_name}.{self.entrypoint.method_name}]>"
