"""kombu glue: connections, the publisher pool, publishing, the consumer loop, the embedded broker.

A reader changing entrypoints needs the first four:

- ``connection``: connect (green py-amqp for ``amqp://``, the embedded broker for
  ``memory://``), the errors that mean "try again", the back-off between tries;
- ``pool``: a few pooled connections per broker and hub thread, lent to one publish at a time;
- ``publish``: confirmed, retried publishing through the pool;
- ``consume``: several queues read over one connection by one green thread, reconnecting;
  RPC requests and replies go out on that connection too.

The fast path under them, which those modules call and nothing else does:

- ``fast_path``: what a connection offers beyond py-amqp, asked for by the consumer;
- ``green``: kombu's py-amqp transport on green sockets;
- ``frame_writer``: a connection's writes, from green threads or a plain one;
- ``frame_reader``: whole frames read at once, deliveries assembled without py-amqp;
- ``wire``: the hot frames (publish, ack, delivery) encoded and decoded by hand;
- ``thread_reader``: plain threads waiting for RPC replies read the socket, in turn.

Besides: ``limits`` (what a delivery is held to before its callback sees it) and ``memory``
(the kombu transport of the embedded broker, :mod:`sandbox.broker`).
"""

from sandbox.amqp.publish import UndeliverableMessage

__all__ = ["UndeliverableMessage"]
