"""What became of each message: the embedded broker's answer to ``sb.why``.

The broker notes each step of a message that carries a ``message_id`` (routed, queued,
delivered, acked, expired, dropped for length, refused, dead-lettered) under that id. Only
the last ``size`` messages are kept, and a message that keeps moving keeps only its last
``MAX_STEPS`` steps, so memory stays bounded however long the kernel runs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from .queues import Message

DEFAULT_SIZE = 10_000
MAX_STEPS = 32

# What a step says happened.
ROUTED = "routed"  # detail: the queue names, in routing order (() when none matched)
QUEUED = "queued"  # queue: waits there for a consumer
DELIVERED = "delivered"  # queue, detail: the consumer tag
ACKED = "acked"  # queue
REQUEUED = "requeued"  # queue
REFUSED = "refused"  # queue: x-overflow reject-publish turned it away
DIED = "died"  # queue, detail: (reason, dead-letter exchange or None when dropped)


class Step(NamedTuple):
    what: str
    queue: str | None = None
    detail: Any = None


class Fates:
    """Steps of recent messages by ``message_id``; the broker writes, ``sb.why`` reads.

    Steps are kept as plain tuples of strings, which the garbage collector stops tracking:
    ten thousand lists of objects would make every collection of the process slower (a
    third more time per message, measured).
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._steps: OrderedDict[str, tuple] = OrderedDict()

    def note(self, message: Message, what: str, queue: str | None = None, detail: Any = None):
        message_id = message.properties.get("message_id")
        if message_id is None:
            return
        steps = self._steps.get(message_id)
        if steps is None:
            self._steps[message_id] = ((what, queue, detail),)
            if len(self._steps) > self.size:
                self._steps.popitem(last=False)
        else:
            self._steps[message_id] = (*steps[1 - MAX_STEPS :], (what, queue, detail))

    def steps(self, message_id: str) -> list[Step] | None:
        """The steps of a message, oldest first; None when it is unknown or forgotten."""
        steps = self._steps.get(message_id)
        return [Step(*step) for step in steps] if steps is not None else None
