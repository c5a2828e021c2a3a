"""Calls waiting for their replies: where each outcome lands, and how its caller waits.

A reply queue's consumer hands each reply to :class:`PendingReplies`, which settles the
call's :class:`Pending`; the caller holds an :class:`RpcReply` and waits on it from the hub,
from a green thread, or from a plain thread (which may read the socket itself through a
``ThreadReader``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kombu

from sandbox import serialization
from sandbox.amqp.thread_reader import ThreadReader
from sandbox.exceptions import (
    REMOTE_TRACEBACK_HEADER,
    ReplyQueueExpiredWithPendingReplies,
    RpcTimeout,
    deserialize,
)
from sandbox.messaging import describe
from sandbox.pending import Pending
from sandbox.runtime import get_runtime

# Under the facade's name, as before the split: log filters and handlers name it.
log = logging.getLogger("sandbox.rpc")


class ReplyConnectionLost(ConnectionError):
    """The connection a call's reply was to come on failed; the call may or may not have run."""


class PendingReplies:
    """Calls waiting for their replies, by correlation id; a reply queue's consumer feeds it.

    The hub thread's, but for a plain thread's ``expect`` and ``forget`` around a request it
    publishes itself (single dict operations, atomic in CPython).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, Pending] = {}
        self.reader: ThreadReader | None = None  # when callers' threads read the replies

    def idle(self) -> bool:
        """Whether no reply is awaited."""
        return not self._waiting

    def expect(self, correlation_id: str, pending: Pending) -> None:
        self._waiting[correlation_id] = pending

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    def waiting(self, correlation_id: str) -> bool:
        return correlation_id in self._waiting

    def deliver(self, message: kombu.Message) -> None:
        """Hand a reply to its caller (called in the consumer loop)."""
        pending = self._waiting.pop(message.properties.get("correlation_id"), None)
        if pending is None:
            log.debug("dropped a reply nobody waits for (timed out?): %s", describe(message))
            return
        try:
            body = serialization.decode(message)
        except Exception as exc:
            pending.settle(error=exc)
            return
        if isinstance(body, dict) and body.get("error"):
            traceback = (message.headers or {}).get(REMOTE_TRACEBACK_HEADER)
            pending.settle(error=deserialize(body["error"], traceback))
        else:
            pending.settle(body)

    def queue_lost(self) -> None:
        """The reply queue vanished while the connection was down, and the replies with it."""
        self.fail_all(
            lambda: ReplyQueueExpiredWithPendingReplies(
                "the reply queue expired while the broker was unreachable; "
                "the replies of the calls in flight are lost"
            )
        )

    def connection_lost(self) -> None:
        """The reply queue's connection failed: whatever was on its way to us may be lost.

        Waiting on would hang for as long as the broker stays away; an error now lets the
        caller decide (retry, or not when the call must not run twice).
        """
        self.fail_all(
            lambda: ReplyConnectionLost(
                "the connection to the broker was lost while waiting for the reply; "
                "the call may or may not have run"
            )
        )

    def fail(self, correlation_id: str, exc: BaseException) -> None:
        """Raise ``exc`` in the call's caller, unless its reply came already."""
        pending = self._waiting.pop(correlation_id, None)
        if pending is not None:
            pending.settle(error=exc)

    def fail_all(self, make_error: Callable[[], BaseException]) -> None:
        waiting, self._waiting = self._waiting, {}
        # A copy: a caller's thread reading replies may be taking one out meanwhile.
        for pending in list(waiting.values()):
            pending.settle(error=make_error())


class RpcReply:
    """The pending result of ``call_async``: ``result()`` waits for it (any thread)."""

    def __init__(
        self,
        replies: PendingReplies,
        correlation_id: str,
        target: str,
        timeout: float | None,
    ):
        self.correlation_id = correlation_id
        self.target = target
        self.timeout = timeout
        self.pending = Pending()
        self._replies = replies

    def result(self, timeout: float | None = None) -> Any:
        """The call's result, or its error raised; ``timeout`` defaults to the client's."""
        timeout = self.timeout if timeout is None else timeout
        try:
            settled = self.pending.wait(timeout, self._replies.reader)
        except BaseException:  # a kernel interrupt while a cell waits
            self._forget()
            raise
        if not settled:
            self._forget()
            raise RpcTimeout(f"{self.target} timed out after {timeout}s")
        body, error = self.pending.outcome
        if error is not None:
            raise error
        return body.get("result")

    def _forget(self) -> None:
        runtime = get_runtime()
        if runtime.in_hub():
            self._replies.forget(self.correlation_id)
        else:
            runtime.call_later(0, self._replies.forget, self.correlation_id)

    def __repr__(self) -> str:
        return f"<RpcReply {self.target} {self.correlation_id}>"
