"""``sb.rpc``: RPC calls from cells, which never wait for ever.

A call waits at most ``NOTEBOOK_CALL_TIMEOUT`` seconds (config, read at each call; None waits
on). A call to a service of the session that crashed fails at once with the crash's reason,
whether it was made after the crash or was waiting when it came. An interrupted call is
abandoned, in one line.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sandbox.config import DEFAULTS, config
from sandbox.notebook.errors import ServiceCrashed, abandoned_on_interrupt
from sandbox.notebook.session import CRASHED, ServiceHandle, Session
from sandbox.rpc_calling import RpcClient, Send
from sandbox.rpc_replies import RpcReply
from sandbox.standalone.rpc import ClusterRpcProxy

CALL_TIMEOUT_KEY = "NOTEBOOK_CALL_TIMEOUT"


def call_timeout() -> float | None:
    """How long a call from a cell waits for its answer, in seconds; None: for ever."""
    return config.get(CALL_TIMEOUT_KEY, DEFAULTS[CALL_TIMEOUT_KEY])


class NotebookRpc(RpcClient):
    """``sb.rpc.<service>.<method>(...)``: a client whose interrupted calls say which."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with abandoned_on_interrupt(f"{self.service_name}.{self.method_name}"):
            return super().__call__(*args, **kwargs)


class NotebookRpcProxy(ClusterRpcProxy):
    """The proxy behind ``sb.rpc``: the inspector shows its calls as the notebook's."""

    caller = "notebook"


class PendingCalls:
    """The calls to each service of the session, failed at once when the service crashes."""

    def __init__(self, session: Session, send: Send):
        self._session = session
        self._send = send
        self._lock = threading.Lock()  # the cell's thread adds, the hub thread fails
        self._calls: dict[str, weakref.WeakSet[RpcReply]] = {}
        session.crash_listeners.append(self._crashed)

    def send(
        self, service: str, method: str, args: tuple, kwargs: dict, wait_sent: bool = False
    ) -> RpcReply:
        """Send a request with the configured timeout, unless its service has crashed."""
        target = f"{service}.{method}"
        error = self._crash_of(service, target)
        if error is not None:
            raise error
        reply = self._send(service, method, args, kwargs, wait_sent=wait_sent)
        reply.timeout = call_timeout()
        with self._lock:
            self._calls.setdefault(service, weakref.WeakSet()).add(reply)
        # A crash since the check above may have come before the reply was known.
        error = self._crash_of(service, target)
        if error is not None:
            reply.pending.settle(error=error)
        return reply

    def close(self) -> None:
        self._session.crash_listeners.remove(self._crashed)

    def _crash_of(self, service: str, target: str) -> ServiceCrashed | None:
        handle = self._session.services.get(service)
        if handle is None or handle.state != CRASHED:
            return None
        return ServiceCrashed(target, handle.error)

    def _crashed(self, handle: ServiceHandle) -> None:
        with self._lock:
            replies = list(self._calls.pop(handle.name, ()))
        for reply in replies:
            reply.pending.settle(error=ServiceCrashed(reply.target, handle.error))
