"""The global config, and YAML config files with ``${VAR:default}`` substitution.

``sandbox.config`` is the global ``ConfigDict`` (``sandbox/__init__.py`` re-exports it, as Nameko 3
does), so import helpers from here by name: ``from sandbox.config import load_config``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import yaml

from sandbox import constants
from sandbox.exceptions import ConfigurationError
from sandbox.utils import mask_secrets

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "AMQP_URI": constants.DEFAULT_AMQP_URI,
    "WEB_SERVER_ADDRESS": "127.0.0.1:8000",
    "max_workers": constants.DEFAULT_MAX_WORKERS,
    "parent_calls_tracked": constants.DEFAULT_PARENT_CALLS_TRACKED,
    "serializer": constants.DEFAULT_SERIALIZER,
    "rpc_exchange": constants.DEFAULT_RPC_EXCHANGE,
    "HEARTBEAT": constants.DEFAULT_HEARTBEAT,
    "NOTEBOOK_CALL_TIMEOUT": 30,
}


class ConfigDict(collections.UserDict):
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


config = ConfigDict(DEFAULTS)


def load_config(source: str | os.PathLike | IO[str]) -> dict[str, Any]:
    """Load a YAML config from a path, a YAML text or an open file, as ``nameko --config`` does.

    A str is read as YAML text when it is not an existing file and holds a newline, ":" or
    "{" (every non-empty mapping does); otherwise it is a path.

    ``${VAR}`` and ``${VAR:default}`` in unquoted values (or under ``!env_var``) are replaced
    from ``os.environ`` (see :func:`substitute`) and the result is read as YAML, so
    ``${PORT:8000}`` is an int and ``${HOSTS}`` set to ``[a, b]`` a list; ``!raw_env_var``
    keeps it a string. Raises ConfigurationError naming the file, the line and the key.
    """
    text, name = _read(source)
    try:
        loaded = _load_yaml(text)
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


def _load_yaml(text: str) -> Any:
    # yaml.load, with the key of each node known to the constructors, for their errors.
    loader = _EnvVarLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        loader.key_paths = _key_paths(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _key_paths(node: yaml.Node, path: str = "", paths: dict | None = None) -> dict[yaml.Node, str]:
    """Each node of the tree under ``node``, mapped to its key: ``LOGGING.handlers[0]``."""
    paths = {} if paths is None else paths
    if node in paths:  # an alias met again
        return paths
    paths[node] = path
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _key_paths(value, f"{path}.{key.value}" if path else str(key.value), paths)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _key_paths(item, f"{path}[{index}]", paths)
    return paths


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
# Nameko's: anything up to a brace, a colon or a space.
_VAR_NAME = re.compile(r"[^{}:\s]+")
_QUOTES = "\"'"


class _EnvVarLoader(yaml.SafeLoader):
    """SafeLoader that substitutes environment variables."""

    key_paths: dict[yaml.Node, str] = {}


def _construct_env_var(loader: _EnvVarLoader, node: yaml.Node) -> Any:
    text = _substitute_node(loader, node)
    if text == node.value:  # no reference: kept as written, like Nameko
        return text
    try:
        # A bare SafeLoader: the value of a variable is not expanded again.
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        # The config's text, not the value: the environment is where secrets are kept.
        raise _fail(
            loader,
            node,
            f"{node.value!r} is not valid YAML once substituted ({problem}); "
            "!raw_env_var keeps a string",
        ) from None


def _construct_raw_env_var(loader: _EnvVarLoader, node: yaml.Node) -> str:
    return _substitute_node(loader, node)


def _substitute_node(loader: _EnvVarLoader, node: yaml.Node) -> str:
    try:
        return substitute(loader.construct_scalar(node))
    except ConfigurationError as exc:
        raise _fail(loader, node, str(exc)) from None


def _fail(loader: _EnvVarLoader, node: yaml.Node, problem: str) -> _SubstitutionError:
    key = loader.key_paths.get(node)
    problem = f"key {key}: {problem}" if key else problem
    return _SubstitutionError(None, None, problem, node.start_mark)


_EnvVarLoader.add_constructor(_ENV_VAR_TAG, _construct_env_var)
_EnvVarLoader.add_constructor(_RAW_ENV_VAR_TAG, _construct_raw_env_var)
# Only plain scalars go through implicit resolvers: quoted strings keep their "${" as typed.
_EnvVarLoader.add_implicit_resolver(_ENV_VAR_TAG, re.compile(r".*\$\{", re.DOTALL), None)


def substitute(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:default}`` in ``text``, as Nameko does.

    An unset variable without a default is replaced by nothing. A default may hold references
    and balanced braces, and when it starts with a quote, any brace up to the closing quote:
    ``${GREETING:"{name} says }"}``. Raises ConfigurationError for a malformed reference.
    """
    environ = os.environ if environ is None else environ
    result, _ = _expand(text, 0, environ, in_default=False)
    return result


def _expand(text: str, pos: int, environ: Mapping[str, str], in_default: bool) -> tuple[str, int]:
    """Expand from ``pos`` to the end, or to the "}" closing the default being read."""
    parts = []
    depth = 0  # of braces opened inside the default
    while pos < len(text):
        if text.startswith("${", pos):
            value, pos = _expand_reference(text, pos + 2, environ)
            parts.append(value)
            continue
        if in_default and text[pos] == "}":
            if depth == 0:
                return "".join(parts), pos
            depth -= 1
        elif in_default and text[pos] == "{":
            depth += 1
        parts.append(text[pos])
        pos += 1
    if in_default:
        raise ConfigurationError(f"unclosed '${{' in {text!r}")
    return "".join(parts), pos


def _expand_reference(text: str, pos: int, environ: Mapping[str, str]) -> tuple[str, int]:
    """Expand the reference whose name starts at ``pos``; return its value and its end."""
    match = _VAR_NAME.match(text, pos)
    if match is None:
        raise ConfigurationError(f"expected a variable name after '${{' in {text!r}")
    name, pos = match.group(), match.end()
    default = None
    if text.startswith(":", pos):
        default, pos = _expand_default(text, pos + 1, environ)
    elif not text.startswith("}", pos):
        raise ConfigurationError(f"expected ':' or '}}' after '${{{name}' in {text!r}")
    value = environ.get(name)
    if value is None and default is None:
        # Empty, as in Nameko; said aloud, since it is most often a secret that was not passed
        # (an exported config's ${AMQP_PASSWORD}).
        log.warning("the environment variable %s is not set: ${%s} reads as empty", name, name)
    return (value if value is not None else default or ""), pos + 1


def _expand_default(text: str, pos: int, environ: Mapping[str, str]) -> tuple[str, int]:
    """Expand the default starting at ``pos``; return it and the position of its "}"."""
    quoted = ""
    if text[pos : pos + 1] in _QUOTES:
        end = _quote_end(text, pos)
        quoted, _ = _expand(text[pos:end], 0, environ, in_default=False)
        pos = end
    rest, pos = _expand(text, pos, environ, in_default=True)
    return quoted + rest, pos


def _quote_end(text: str, pos: int) -> int:
    """The position after the YAML quoted string that starts at ``pos``."""
    quote, pos = text[pos], pos + 1
    escape = "\\" if quote == '"' else "''"  # escapes a quote: \" and ''
    while pos < len(text):
        if text.startswith(escape, pos):
            pos += 2
        elif text[pos] == quote:
            return pos + 1
        else:
            pos += 1
    raise ConfigurationError(f"unclosed quote in the default of {text!r}")
