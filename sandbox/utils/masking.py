"""Masking secrets: URI passwords in any text, secret config keys, log records.

:func:`sanitize_url` is the one function that hides the password of a URI, wherever the URI
is shown: ``show-config``, error messages, log lines, banners. It masks every character from
the ``:`` after the user up to the last ``@`` before the URI's end (a space, or a ``;`` that
starts the next URI of a failover list), so a password holding ``@``, ``:``, ``%``, quotes,
``/``, ``#`` or any letter is masked whole, percent-encoded or not.

A password can only be told apart from the text around it when it holds no space and no
``;`` (kombu splits a broker URI at every ``;``): :func:`uri_problem` says when a URI breaks
this, so that the command line refuses it before kombu reads a piece of the password as a
host or a port and shows it in an error. A raw ``;SCHEME://`` in a password cannot be told
from a failover list by anyone, kombu included: it is read as the start of the next URI.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

REDACTED = "********"

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
# The user runs to the first ":"; the password from there to the last "@" before a space or
# the next URI of a failover list. Longer than any URI parser reads it, never shorter.
_URI_PASSWORD = re.compile(
    rf"(?P<head>\b{_SCHEME}[^:/?#\s;]*):(?P<password>(?:(?!;{_SCHEME})\S)*)@"
)
_SPACE = re.compile(r"\s")

# Words that mark a config key as secret. Keys are split into words, so HEARTBEAT or
# MONKEY_PATCH do not match while DB_PASSWORD, apiKey and SECRET_KEY do.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credentials"}
)
_KEY_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def sanitize_url(url: str, replacement: str = REDACTED) -> str:
    """Return ``url`` (or any text) with the password of every URI in it replaced by
    ``replacement``."""
    return _URI_PASSWORD.sub(lambda match: f"{match['head']}:{replacement}@", url)


def uri_problem(uri: str) -> str | None:
    """Why the password of ``uri`` (a URI, or a kombu failover list of URIs split at ``;``)
    could show in a message, or None when it cannot.

    The answer never quotes ``uri``: the caller names the config key.
    """
    if _SPACE.search(uri):
        return "holds a space or a line break: percent-encode it in the password (%20)"
    for part in uri.split(";"):
        if "://" not in part:
            if "@" in part:
                return (
                    "is not a URI (SCHEME://USER:PASSWORD@HOST...): "
                    "percent-encode a ';' in the password (%3B)"
                )
            continue
        if not _parses(part) or _user_spills(part):
            return (
                "is not a valid URI: check the host and port, and percent-encode any "
                "';', '/', '?', '#', '[' or ']' in the user or password"
            )
    return None


def _parses(uri: str) -> bool:
    try:
        urllib.parse.urlsplit(uri).port  # noqa: B018 - reading the port checks it
    except ValueError:
        return False
    return True


def _user_spills(uri: str) -> bool:
    """Whether a raw '/', '?' or '#' in the user or password ends the host part early, so that
    the rest of them reads as the path, the query or the fragment (whose options a client may
    quote back in an error): the '@' that ends them then comes after it."""
    rest = uri.partition("://")[2]
    ends = [at for at in (rest.find(mark) for mark in "/?#") if at >= 0]
    return "@" in rest[min(ends, default=len(rest)) :]


def is_secret_key(key: object) -> bool:
    """Tell whether a config key names a secret (a password, token, key...)."""
    if not isinstance(key, str):
        return False
    return any(word.lower() in _SECRET_WORDS for word in _KEY_WORD.findall(key))


def mask_secrets(mapping: Mapping) -> dict:
    """Return a deep copy of a config mapping that is safe to print or log."""
    return {key: _mask_value(key, value) for key, value in mapping.items()}


def _mask_value(key: object, value: Any) -> Any:
    if value is not None and is_secret_key(key):
        return REDACTED
    if isinstance(value, Mapping):
        return mask_secrets(value)
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(None, item) for item in value)
    if isinstance(value, str):
        return sanitize_url(value)
    return value


_TRACEBACKS = logging.Formatter()


def mask_log_records() -> None:
    """Make every log record of this process show URIs with their passwords masked, in its
    message and its traceback, whichever logger, handler or config emits it. Idempotent."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "masks_passwords", False):
        return
    logging.setLogRecordFactory(_masking_factory(make_record))


def _masking_factory(make_record: Callable[..., logging.LogRecord]) -> Callable:
    def make_masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _mask_record(record)
        return record

    make_masked_record.masks_passwords = True  # type: ignore[attr-defined]
    return make_masked_record


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format: logging reports it when the record is emitted
        return
    masked = sanitize_url(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        # Formatters use a record's exc_text when it has one: the traceback is masked too.
        record.exc_text = sanitize_url(_TRACEBACKS.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = sanitize_url(record.stack_info)
