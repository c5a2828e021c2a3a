"""The global config, and YAML config files with ``${VAR:default}`` substitution.

``sandbox.config`` is the global ``Config`` (``sandbox/__init__.py`` re-exports it, as Nameko 3
does), so import helpers from here by name: ``from sandbox.config import load_config``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import yaml

from sandbox.exceptions import ConfigurationError
from sandbox.utils import mask_secrets

DEFAULTS: dict[str, Any] = {
    "AMQP_URI": "memory://",
    "WEB_SERVER_ADDRESS": "127.0.0.1:8000",
    "max_workers": 10,
    "parent_calls_tracked": 10,
    "serializer": "json",
    "rpc_exchange": "nameko-rpc",
    "HEARTBEAT": 60,
    "NOTEBOOK_CALL_TIMEOUT": 30,
}


class Config(collections.UserDict):
    """A dict of config keys with ``setup`` and ``patch``, and a repr that hides secrets."""

    def setup(self, mapping: Mapping[str, Any]) -> None:
        """Replace the whole content by the defaults updated with ``mapping``."""
        self.data = {**DEFAULTS, **mapping}

    @contextlib.contextmanager
    def patch(self, mapping: Mapping[str, Any], clear: bool = False) -> Iterator[None]:
        """Change keys for the duration of a ``with`` block or of a decorated function.

        With ``clear=True`` only ``mapping`` is visible inside. The content before the patch
        comes back afterwards exactly, whatever happened inside.
        """
        saved = self.data
        # A deep copy, so that mutating a nested value inside the patch leaves ``saved`` intact.
        self.data = {} if clear else copy.deepcopy(saved)
        self.data.update(mapping)
        try:
            yield
        finally:
            self.data = saved

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_secrets(self.data)!r})"


config = Config(DEFAULTS)


def load_config(source: str | os.PathLike | IO[str]) -> dict[str, Any]:
    """Load a YAML config from a path, a YAML text or an open file.

    A str is read as YAML text when it is not an existing file and holds a newline, ":" or
    "{" (every non-empty mapping does); otherwise it is a path.

    ``${VAR}`` and ``${VAR:default}`` in unquoted values (or under ``!env_var``) are replaced
    from ``os.environ`` and the result is read as a YAML scalar, so ``${PORT:8000}`` is an int;
    ``!raw_env_var`` keeps it a string. Raises ConfigurationError naming the file and line.
    """
    text, name = _read(source)
    try:
        loaded = yaml.load(text, Loader=_EnvVarLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigurationError(_describe(exc, name)) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{name}: invalid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise ConfigurationError(f"{name}: the top level must be a mapping of keys, not a {kind}")
    return loaded


def _read(source: str | os.PathLike | IO[str]) -> tuple[str, str]:
    if hasattr(source, "read"):
        return source.read(), getattr(source, "name", "<stream>")
    if isinstance(source, os.PathLike) or _looks_like_path(source):
        path = os.fspath(source)
        try:
            return Path(path).read_text(encoding="utf-8"), path
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigurationError(f"cannot read config file {path}: {reason}") from None
    return source, "<string>"


def _looks_like_path(text: str) -> bool:
    # A YAML mapping always holds a ":" or starts with "{"; a path has no newline.
    if os.path.isfile(text):
        return True
    return bool(text.strip()) and not any(char in text for char in "\n:{")


def _describe(exc: yaml.MarkedYAMLError, name: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{name}, line {mark.line + 1}" if mark else name
    if isinstance(exc, _SubstitutionError):
        return f"{where}: {exc.problem}"
    return f"{where}: invalid YAML: {exc.problem or exc.context}"


class _SubstitutionError(yaml.constructor.ConstructorError):
    """A ``${VAR}`` that cannot be resolved; marked with the place of the value."""


_ENV_VAR_TAG = "!env_var"
_RAW_ENV_VAR_TAG = "!raw_env_var"
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _EnvVarLoader(yaml.SafeLoader):
    """SafeLoader that substitutes environment variables."""


def _construct_env_var(loader: _EnvVarLoader, node: yaml.Node) -> Any:
    return _parse_scalar(_substitute_node(loader, node))


def _construct_raw_env_var(loader: _EnvVarLoader, node: yaml.Node) -> str:
    return _substitute_node(loader, node)


def _substitute_node(loader: _EnvVarLoader, node: yaml.Node) -> str:
    text = loader.construct_scalar(node)
    try:
        return substitute(text)
    except ConfigurationError as exc:
        raise _SubstitutionError(None, None, str(exc), node.start_mark) from None


_EnvVarLoader.add_constructor(_ENV_VAR_TAG, _construct_env_var)
_EnvVarLoader.add_constructor(_RAW_ENV_VAR_TAG, _construct_raw_env_var)
# Only plain scalars go through implicit resolvers: quoted strings keep their "${" as typed.
_EnvVarLoader.add_implicit_resolver(_ENV_VAR_TAG, re.compile(r".*\$\{", re.DOTALL), None)


def _parse_scalar(text: str) -> Any:
    # Resolve the way YAML resolves a plain scalar ("8000" -> int, "true" -> bool, "" -> None),
    # with a bare SafeLoader so that a "${" inside a variable's value is not expanded again.
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        return loader.construct_object(yaml.ScalarNode(tag, text))
    finally:
        loader.dispose()


def substitute(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:default}`` in ``text``; defaults may nest.

    A default is only evaluated when its variable is unset. Raises ConfigurationError for an
    unset variable without a default and for a malformed reference.
    """
    environ = os.environ if environ is None else environ
    result, _ = _expand(text, 0, environ, inside_default=False, needed=True)
    return result


def _expand(
    text: str, pos: int, environ: Mapping[str, str], inside_default: bool, needed: bool
) -> tuple[str, int]:
    """Expand from ``pos`` to the end, or to the "}" closing the default being read."""
    parts = []
    while pos < len(text):
        if text.startswith("${", pos):
            value, pos = _expand_reference(text, pos + 2, environ, needed)
            parts.append(value)
        elif inside_default and text[pos] == "}":
            return "".join(parts), pos
        else:
            parts.append(text[pos])
            pos += 1
    if inside_default:
        raise ConfigurationError(f"unclosed '${{' in {text!r}")
    return "".join(parts), pos


def _expand_reference(
    text: str, pos: int, environ: Mapping[str, str], needed: bool
) -> tuple[str, int]:
    """Expand the reference whose name starts at ``pos``; return its value and the end."""
    match = _VAR_NAME.match(text, pos)
    if match is None:
        raise ConfigurationError(f"expected a variable name after '${{' in {text!r}")
    name, pos = match.group(), match.end()
    value = environ.get(name)
    if text.startswith(":", pos):
        # An unused default is still parsed, to find its end, but never looked up.
        default, pos = _expand(text, pos + 1, environ, True, needed and value is None)
        value = default if value is None else value
    elif not text.startswith("}", pos):
        raise ConfigurationError(f"expected ':' or '}}' after '${{{name}' in {text!r}")
    if value is None and needed:
        raise ConfigurationError(f"environment variable {name} is not set and has no default")
    return value or "", pos + 1
