"""Where RPC messages go: the exchange, each service's queue, each caller's reply queue.

Nameko's wire format: requests go to the topic exchange ``nameko-rpc`` (config
``rpc_exchange``) with routing key ``{service}.{method}``; each service consumes queue
``rpc-{service}``; a caller's replies come to its queue ``rpc.reply-{owner}-{uuid}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kombu

from sandbox import recorder
from sandbox.amqp.publish import publish_record
from sandbox.config import DEFAULTS
from sandbox.config import config as global_config

RPC_QUEUE_TEMPLATE = "rpc-{}"
RPC_REPLY_QUEUE_TEMPLATE = "rpc.reply-{}-{}"
RPC_REPLY_QUEUE_TTL = 300000  # ms

# Publisher options a client sets itself for every request.
_RESTRICTED_OPTIONS = frozenset(
    {"exchange", "routing_key", "mandatory", "reply_to", "correlation_id"}
)


def client_options(publisher_options: Mapping[str, Any]) -> dict[str, Any]:
    """A client's publisher options, less those it sets itself on every request."""
    return {k: v for k, v in publisher_options.items() if k not in _RESTRICTED_OPTIONS}


def get_rpc_exchange(config: Mapping[str, Any] | None = None) -> kombu.Exchange:
    config = global_config if config is None else config
    return kombu.Exchange(
        config.get("rpc_exchange") or DEFAULTS["rpc_exchange"], type="topic", durable=True
    )


def reply_queue(owner: str, routing_key: str, exchange: kombu.Exchange) -> kombu.Queue:
    """The reply queue of a client owner (a service, a standalone proxy)."""
    return kombu.Queue(
        RPC_REPLY_QUEUE_TEMPLATE.format(owner, routing_key),
        exchange=exchange,
        routing_key=routing_key,
        queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL},
    )


def record_published(kind: str, payload: Any, *where: Any) -> None:
    """Tell the recorder of a request or reply published on a consumer's connection."""
    if recorder.observed():  # a record nobody reads need not be made
        recorder.notify("message_published", publish_record(kind, payload, *where))
