"""How large a message body may be, and which compressed bodies are opened.

kombu decompresses a body that its ``compression`` header names compressed as soon as it
makes a ``Message``, before anything looks at it: half a megabyte of zlib can grow into
gigabytes. sandbox's consumers never let it. Every delivery they get (RPC requests and
replies, events, ``@consume``, the standalone clients' reply queues, on either broker) goes
through :meth:`MessageLimits.admit` first:

* a body over ``MAX_MESSAGE_SIZE`` bytes (default 10 MiB) is refused before it is decoded;
  on RabbitMQ it is not even kept, its announced size is enough;
* a compressed body is refused unless config ``ACCEPT_COMPRESSION`` names its compression
  (default: none). kombu's names are understood: ``zlib`` or ``gzip``, ``bzip2``, ``lzma``
  or ``xz``, or their content types;
* an accepted one is decompressed a piece at a time, and refused as soon as it would grow
  past ``MAX_MESSAGE_SIZE``.

A refused message still reaches its consumer, its body emptied and the refusal in
``message.errors``, which :func:`sandbox.serialization.decode` raises as
:class:`~sandbox.exceptions.MessageRefused`: an RPC request is answered ``MalformedRequest``
and dropped, an event or a message is rejected (not requeued), a reply raises in its caller.

Publishing compressed (the ``compression`` publisher option) stays as it is: the consumers
that should read such messages name the compression in their ``ACCEPT_COMPRESSION``.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import kombu
import kombu.compression

from sandbox.exceptions import ConfigurationError, MessageRefused

DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024

# An xz stream says how much memory its decoder needs, up to gigabytes from a few bytes;
# kombu's own lzma messages need 9 MiB.
_LZMA_MEMORY_LIMIT = 64 * 1024 * 1024


class Decompressor(Protocol):
    """What zlib's, bz2's and lzma's incremental decompressors have in common."""

    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int) -> bytes: ...


# By kombu's content type. zlib's accepts the zlib and the gzip framing both.
DECOMPRESSORS: dict[str, Callable[[], Decompressor]] = {
    "application/x-gzip": lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS | 32),
    "application/x-bz2": bz2.BZ2Decompressor,
    "application/x-lzma": lambda: lzma.LZMADecompressor(memlimit=_LZMA_MEMORY_LIMIT),
}


def content_type_of(compression: Any) -> str | None:
    """kombu's content type for a compression name or content type; None if it has none."""
    if not isinstance(compression, str):
        return None
    try:
        return kombu.compression.get_encoder(compression)[1]
    except KeyError:
        return None


@dataclass(frozen=True)
class MessageLimits:
    """The limits a consumer holds every delivery to (see the module's docstring)."""

    max_size: int = DEFAULT_MAX_MESSAGE_SIZE
    compressions: frozenset[str] = frozenset()  # kombu content types

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MessageLimits:
        """The limits config keys ``MAX_MESSAGE_SIZE`` and ``ACCEPT_COMPRESSION`` set;
        ConfigurationError for a size that is not a positive integer or a compression
        that cannot be opened with a limit."""
        max_size = config.get("MAX_MESSAGE_SIZE")
        if max_size is None:
            max_size = DEFAULT_MAX_MESSAGE_SIZE
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
            raise ConfigurationError(
                f"MAX_MESSAGE_SIZE must be a positive number of bytes, not {max_size!r}"
            )
        names = config.get("ACCEPT_COMPRESSION") or []
        if isinstance(names, str) or not isinstance(names, list | tuple | set | frozenset):
            raise ConfigurationError(
                f"ACCEPT_COMPRESSION must be a list of compression names, not {names!r}"
            )
        compressions = set()
        for name in names:
            content_type = content_type_of(name)
            if content_type not in DECOMPRESSORS:
                raise ConfigurationError(
                    f"ACCEPT_COMPRESSION: {name!r} is not a compression sandbox can open within"
                    " a size limit (zlib, gzip, bzip2, lzma, xz)"
                )
            compressions.add(content_type)
        return cls(max_size, frozenset(compressions))

    def admit(self, message: kombu.Message, size: int | None = None) -> None:
        """Hold ``message`` to the limits, decompressing its body in place when allowed.

        ``size``: the body's size as announced by the broker, when the body was not kept.
        A refusal empties the body and goes into ``message.errors``.
        """
        try:
            message.body = self._opened(message, size)
        except MessageRefused as exc:
            message.body = b""
            message.errors.append((MessageRefused, exc, None))

    def _opened(self, message: kombu.Message, size: int | None) -> Any:
        body = message.body
        if size is None:
            size = len(body)
        if size > self.max_size:
            raise MessageRefused(
                f"the body is {size} bytes, over MAX_MESSAGE_SIZE ({self.max_size} bytes)"
            )
        compression = (message.headers or {}).get("compression")
        if not compression:
            return body
        content_type = content_type_of(compression)
        if content_type not in self.compressions:
            raise MessageRefused(
                f"the body is compressed ({compression!r}): not in ACCEPT_COMPRESSION"
            )
        if isinstance(body, str):  # the embedded broker decodes a body of a named encoding
            body = body.encode(message.content_encoding or "utf-8", "surrogateescape")
        return self._decompressed(DECOMPRESSORS[content_type](), body)

    def _decompressed(self, decompressor: Decompressor, body: bytes) -> bytes:
        try:
            # One byte more than allowed says "too large" without making any more of it.
            opened = decompressor.decompress(body, self.max_size + 1)
        except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
            raise MessageRefused(f"the compressed body is invalid: {exc}") from None
        if len(opened) > self.max_size:
            raise MessageRefused(
                f"the body decompresses to more than MAX_MESSAGE_SIZE ({self.max_size} bytes)"
            )
        if not decompressor.eof or decompressor.unused_data:
            raise MessageRefused("the compressed body is truncated or has data after its end")
        return opened


def unopened_message(
    body: Any, properties: dict[str, Any], delivery_info: dict[str, Any], channel: Any
) -> kombu.Message:
    """A kombu Message of a delivery with its body as it came, for :meth:`MessageLimits.admit`
    (kombu's own constructor would decompress it)."""
    headers = properties.get("application_headers") or {}
    message = kombu.Message(
        body=body,
        delivery_tag=delivery_info.get("delivery_tag"),
        content_type=properties.get("content_type"),
        content_encoding=properties.get("content_encoding"),
        delivery_info=delivery_info,
        properties=properties,
        headers=without_compression(headers),
        channel=channel,
    )
    message.headers = headers
    return message


def without_compression(headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` less ``compression``: what a kombu Message is made with, for it not to
    decompress its body (put the whole headers back on it afterwards)."""
    if "compression" not in headers:
        return headers
    return {key: value for key, value in headers.items() if key != "compression"}
