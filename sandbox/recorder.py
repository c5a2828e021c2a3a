"""The recorder hook: observers the core notifies of every worker and every publish.

The inspector widget and the ``sandbox run`` log both read from here. An observer implements
any of ``worker_started(worker_ctx)``, ``worker_finished(worker_ctx, result, exc_info)``,
``message_published(record)`` (its ``kind`` one of the ``PUBLISHED_*`` below) and
``http_request(record)`` (the access log: method, path, status, duration, service, entrypoint,
call_id, and the werkzeug request and response; ``path`` and ``url``, when not None, have the
route's sensitive arguments masked) and ``broker_reconnected(amqp_uri)`` (a consumer's
connection came back after a loss); a failing observer is logged and never breaks the
worker that notified it.
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.utils import Registrations

log = logging.getLogger(__name__)

# What a ``message_published`` record's ``kind`` says the message is: the contract between
# the code that publishes and the observers that record (sandbox.records).
PUBLISHED_MESSAGE = "message"
PUBLISHED_EVENT = "event"
PUBLISHED_RPC_REQUEST = "rpc-request"
PUBLISHED_RPC_REPLY = "rpc-reply"

_observers: Registrations[Any] = Registrations()
add_observer = _observers.add
remove_observer = _observers.remove


def observed() -> bool:
    """Whether anyone listens."""
    return bool(_observers.hooks)


def notify(event: str, *args: Any) -> None:
    for observer in _observers.hooks:
        handler = getattr(observer, event, None)
        if handler is None:
            continue
        try:
            handler(*args)
        except Exception:
            log.exception("recorder observer %r failed on %s", observer, event)
