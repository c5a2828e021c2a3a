"""kombu's py-amqp transport on green sockets, with the hot path's frames encoded by
:mod:`sandbox.amqp.wire`.

A connection made with it waits greenly in the thread whose hub it was created in: the
runtime's hub thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import amqp
import kombu.transport.pyamqp

from sandbox.amqp import wire
from sandbox.amqp.fast_path import FastPath
from sandbox.amqp.frame_reader import GreenSSLTransport, GreenTCPTransport
from sandbox.amqp.frame_writer import FrameWriter
from sandbox.amqp.limits import unopened_message


class GreenChannel(kombu.transport.pyamqp.Channel):
    """kombu's py-amqp channel, with the hot path's frames encoded by :mod:`wire`."""

    def basic_ack(self, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> None:
        connection = self._live_connection()
        connection.frame_writer.send_soon(wire.ack_frame(self.channel_id, delivery_tag, multiple))

    def message_to_python(self, raw_message: amqp.Message, decompress: bool = True) -> Any:
        """kombu's Message of a delivery; with ``decompress=False`` its body as it came, for
        a consumer that opens it within limits (:mod:`sandbox.amqp.limits`)."""
        if decompress:
            return super().message_to_python(raw_message)
        return unopened_message(
            raw_message.body, raw_message.properties, raw_message.delivery_info, self
        )

    def publish_content(
        self,
        body: bytes | str,
        exchange: str,
        routing_key: str,
        properties: Mapping[str, Any],
        headers: Mapping[str, Any] | None = None,
        mandatory: bool = False,
    ) -> None:
        """Basic.Publish, unconfirmed, in one write (:meth:`publish_frames`'s arguments, named
        one by one: every RPC reply comes through here)."""
        send = self._live_connection().frame_writer.send
        send(self.publish_frames(body, exchange, routing_key, properties, headers, mandatory))

    def publish_frames(
        self,
        body: bytes | str,
        exchange: str,
        routing_key: str,
        properties: Mapping[str, Any],
        headers: Mapping[str, Any] | None = None,
        mandatory: bool = False,
    ) -> bytes:
        """A Basic.Publish's frames."""
        fields = {**properties, "application_headers": headers}
        if isinstance(body, str):
            body = body.encode(fields.setdefault("content_encoding", "utf-8"))
        frame_max = self._live_connection().frame_max
        return wire.publish_frames(
            self.channel_id, exchange, routing_key, body, fields, frame_max, mandatory
        )

    def _live_connection(self) -> Any:
        # A closed channel has lost its connection and its id.
        if self.connection is None:
            raise amqp.RecoverableConnectionError("connection already closed")
        return self.connection


class GreenAmqpConnection(kombu.transport.pyamqp.Connection):
    Channel = GreenChannel

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, frame_writer=FrameWriter, **kwargs)

    def fast_path(self) -> FastPath:
        """Its frame reader and writer (see :func:`sandbox.amqp.fast_path.fast_path`)."""
        return FastPath(self.transport, self.frame_writer)

    def Transport(  # noqa: N802 (py-amqp's name)
        self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None, **kwargs
    ):
        transport_cls = GreenSSLTransport if ssl else GreenTCPTransport
        return transport_cls(
            host,
            connect_timeout=connect_timeout,
            ssl=ssl,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            **kwargs,
        )


class GreenTransport(kombu.transport.pyamqp.Transport):
    """kombu's py-amqp transport on green sockets."""

    Connection = GreenAmqpConnection
