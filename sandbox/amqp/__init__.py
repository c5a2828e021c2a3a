"""kombu glue: green connections, the publisher pool, the consumer loop, the embedded broker.

``transport`` makes connections (py-amqp on green sockets for ``amqp://``, the embedded
broker for ``memory://``) and pools them for publishing; ``publish`` sends confirmed,
retried messages; ``consume`` reads queues over one connection, reconnects, and publishes
RPC requests and replies on it; ``memory`` is the kombu transport of the embedded broker
(:mod:`sandbox.broker`).
"""

from sandbox.amqp.publish import UndeliverableMessage

__all__ = ["UndeliverableMessage"]
