"""Which serializer messages are written with, and which content types are accepted.

Config keys (Nameko's): ``serializer`` (default ``json``), ``ACCEPT`` (default: only the
serializer) and ``SERIALIZERS``, extra kombu serializers as
``{name: {encoder, decoder, content_type, content_encoding}}`` with dotted import paths.
Pickle is never accepted unless the config names it. A serializer or accepted name that kombu
does not know is refused by :func:`setup` (so at container creation) with ConfigurationError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import kombu
import kombu.exceptions
import kombu.serialization
import kombu.utils.json

from sandbox.config import config as global_config
from sandbox.exceptions import ConfigurationError
from sandbox.utils import import_from_path


class SerializationConfig(NamedTuple):
    serializer: str
    accept: list[str]


def setup(config: Mapping[str, Any] | None = None) -> SerializationConfig:
    """Register the config's extra serializers with kombu and return what to use.

    Raises ConfigurationError when the serializer, or a name in ``ACCEPT``, is not registered:
    messages would otherwise fail one by one, long after the mistake.
    """
    config = global_config if config is None else config
    for name, spec in (config.get("SERIALIZERS") or {}).items():
        kombu.serialization.register(
            name,
            import_from_path(spec["encoder"]),
            import_from_path(spec["decoder"]),
            content_type=spec["content_type"],
            content_encoding=spec.get("content_encoding", "utf-8"),
        )
    serializer = config.get("serializer") or "json"
    accept = list(config.get("ACCEPT") or [serializer])
    names = kombu.serialization.registry.name_to_type
    # ACCEPT may name content types too, as kombu's own ``accept`` does.
    content_types = kombu.serialization.registry.type_to_name
    unknown = [name for name in accept if name not in names and name not in content_types]
    if serializer not in names:
        unknown.insert(0, serializer)
    if unknown:
        raise ConfigurationError(f'Please register a serializer for "{unknown[0]}" format')
    return SerializationConfig(serializer, accept)


def reply_serializer(content_type: str | None, serialization: SerializationConfig) -> str:
    """What to answer a message of ``content_type`` in: its own serializer when accepted
    (a reply reads like its request), else ours."""
    name = kombu.serialization.registry.type_to_name.get(content_type)
    if name is not None and (name in serialization.accept or content_type in serialization.accept):
        return name
    return serialization.serializer


JSON = "application/json"


class _ModelEncoder(kombu.utils.json.JSONEncoder):
    """kombu's encoder, which also sends a pydantic model as its JSON dict: what a method that
    validates its arguments (config VALIDATE) turns back into the model."""

    def default(self, o: Any) -> Any:
        if hasattr(type(o), "__pydantic_serializer__"):
            return o.model_dump(mode="json")
        return super().default(o)


# kombu's JSON serializer makes an encoder per message; its encoder keeps no state.
_json_encoder = _ModelEncoder()


def dumps(payload: Any, serializer: str) -> tuple[str, str, Any]:
    """``kombu.serialization.dumps``: ``(content_type, content_encoding, body)``.

    Raises kombu's EncodeError when the payload cannot be serialized.
    """
    codec = kombu.serialization.registry._encoders.get(serializer)
    if serializer != "json" or codec is None or codec.encoder is not kombu.utils.json.dumps:
        return kombu.serialization.dumps(payload, serializer)
    try:
        body = _json_encoder.encode(payload)
    except Exception as exc:
        raise kombu.exceptions.EncodeError(exc) from exc
    return codec.content_type, codec.content_encoding, body


def decode(message: kombu.Message) -> Any:
    """``message.decode()``, without kombu's JSON object hook when the body cannot need it.

    kombu decodes JSON with a Python hook called for every object, to revive the values its
    encoder wrapped as ``{"__type__": ..., "__value__": ...}``; a body without that key
    decodes the same without it, several times faster.

    Raises the message's refusal (MessageRefused, see :mod:`sandbox.amqp.limits`) first.
    """
    if message.errors:
        raise message.errors[0][1]
    body = message.body
    if (
        message.content_type == JSON
        and message.content_encoding in (None, "utf-8")
        and isinstance(body, bytes)
        and b'"__type__"' not in body
        and JSON in (message.accept or ())
        and kombu.serialization.registry._decoders.get(JSON) is kombu.utils.json.loads
    ):
        try:
            return json.loads(body)
        except ValueError:
            pass  # kombu's own decode raises its DecodeError for it
    return message.decode()
