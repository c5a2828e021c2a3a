"""The ``config.yaml`` of an export: the keys a notebook used, secrets as ``${ENV}`` placeholders.

From a notebook file the keys come from literals: ``%sandbox connect URI``, ``sb.connect(URI)``,
``config["KEY"] = value`` and ``config.update(...)``. From a live kernel they come from the
global config itself.

AMQP_URI and WEB_SERVER_ADDRESS are written as ``${AMQP_URI:...}`` and
``${WEB_SERVER_ADDRESS:...}``, so that a deployment sets them from its environment; their
defaults are deployable: a RabbitMQ instead of ``memory://``, and every interface on the port
the notebook asked for (8000 when it asked for any free one).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from sandbox.config import DEFAULTS
from sandbox.export.analysis import Names, dotted_name
from sandbox.export.source import Statement
from sandbox.utils import is_secret_key, sanitize_url

ALWAYS = ("AMQP_URI", "WEB_SERVER_ADDRESS")
DEPLOYED_AMQP_URI = "amqp://guest:guest@localhost:5672/"
DEPLOYED_PORT = 8000
_CONFIG_OBJECTS = frozenset({"sandbox.config", "sandbox.config.config"})
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<name>[^=&;#\s]+)=)(?P<value>[^&;#\s]+)")
_URI_SUFFIX = re.compile(r"_?(URI|URL)$")


def settings_from_cells(
    statements: Iterable[Statement], names: Names
) -> tuple[dict[str, Any], list[str]]:
    """The config keys the cells set with literals, in order, and warnings for computed ones."""
    found: dict[str, Any] = {}
    warnings: list[str] = []
    for statement in statements:
        for key, node in _assignments(statement.node, names):
            if key is None:  # config.setup(...): the mapping replaces everything set before
                found.clear()
                continue
            try:
                found[key] = ast.literal_eval(node)
            except (ValueError, TypeError):  # not a literal, or an unhashable key
                warnings.append(
                    f"config key {key!r} is computed in cell {statement.cell}: "
                    "not exported, set it in config.yaml"
                )
    return found, warnings


def _assignments(node: ast.stmt, names: Names) -> Iterable[tuple[str | None, ast.expr]]:
    """``(key, value node)`` for each config key ``node`` sets."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if (
            isinstance(target, ast.Subscript)
            and _is_config(target.value, names)
            and isinstance(target.slice, ast.Constant)
            and isinstance(target.slice.value, str)
        ):
            yield target.slice.value, node.value
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return
    call = node.value
    func = call.func
    if dotted_name(func) == "sb.connect":
        uris = call.args[:1] + [kw.value for kw in call.keywords if kw.arg == "uri"]
        yield from (("AMQP_URI", uri) for uri in uris)
    elif isinstance(func, ast.Attribute) and func.attr in ("update", "setup"):
        if _is_config(func.value, names):
            if func.attr == "setup":
                yield None, call
            yield from _mapping_items(call)
    elif _is_magic(call, "sandbox"):
        command, _, rest = call.args[1].value.strip().partition(" ")
        if command == "connect" and rest.strip():
            yield "AMQP_URI", ast.Constant(rest.strip())


def _is_config(node: ast.expr, names: Names) -> bool:
    dotted = dotted_name(node)
    return dotted is not None and names.qualified(dotted) in _CONFIG_OBJECTS


def _mapping_items(call: ast.Call) -> Iterable[tuple[str, ast.expr]]:
    for argument in call.args[:1]:
        if isinstance(argument, ast.Dict):
            for key, value in zip(argument.keys, argument.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, value
    yield from ((kw.arg, kw.value) for kw in call.keywords if kw.arg)


def _is_magic(call: ast.Call, name: str) -> bool:
    """``get_ipython().run_line_magic(name, "...")``, what IPython makes of ``%name ...``."""
    return (
        isinstance(call.func, ast.Attribute)
        and call.func.attr == "run_line_magic"
        and dotted_name(getattr(call.func.value, "func", None)) == "get_ipython"
        and len(call.args) == 2
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args)
        and call.args[0].value == name
    )


def render_config(settings: Mapping[str, Any], header: list[str]) -> tuple[str, list[str]]:
    """The YAML text for ``settings`` (a whole config) and warnings for keys left out.

    AMQP_URI, WEB_SERVER_ADDRESS and every key that differs from the defaults are written.
    """
    keys = [*ALWAYS, *sorted((k for k in settings if k not in ALWAYS), key=str)]
    written: dict[str, Any] = {}
    warnings: list[str] = []
    environment: list[str] = []
    for key in keys:
        value = settings.get(key, DEFAULTS.get(key))
        if key not in ALWAYS and key in DEFAULTS and DEFAULTS[key] == value:
            continue
        if not _is_plain(value):
            warnings.append(f"config key {key!r} holds a {type(value).__name__}: not exported")
            continue
        if key in ALWAYS:
            written[key] = _deployable(key, value, environment)
        else:
            written[str(key)] = _placeholders(value, (str(key),), environment)
    lines = [*header]
    if environment:
        needed = ", ".join(sorted(set(environment)))
        lines.append(f"Secrets are read from the environment: set {needed}.")
    text = "".join(f"# {line}\n" for line in lines)
    text += yaml.safe_dump(written, default_flow_style=False, sort_keys=False, allow_unicode=True)
    return text, warnings


def _deployable(key: str, value: Any, environment: list[str]) -> str:
    """``${KEY:default}``: the environment decides, else a default that works once deployed."""
    if key == "AMQP_URI":
        uri = str(value)
        embedded = uri.startswith("memory://")
        default = DEPLOYED_AMQP_URI if embedded else _uri_placeholders(uri, (key,), environment)
    else:
        port = str(value).rpartition(":")[2]
        default = f"0.0.0.0:{port if port not in ('', '0') else DEPLOYED_PORT}"
    return f"${{{key}:{default}}}"


def _is_plain(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


def _placeholders(value: Any, path: tuple[str, ...], environment: list[str]) -> Any:
    """``value`` with each secret in it replaced by a ``${NAME}`` read from the environment."""
    if isinstance(value, Mapping):
        return {k: _placeholders(v, (*path, str(k)), environment) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_placeholders(item, path, environment) for item in value]
    if is_secret_key(path[-1]) and value not in (None, "") and not isinstance(value, bool):
        return _placeholder(environment, *path)
    if isinstance(value, str) and "://" in value:
        return _uri_placeholders(value, path, environment)
    return value


def _uri_placeholders(uri: str, path: tuple[str, ...], environment: list[str]) -> str:
    prefix = _URI_SUFFIX.sub("", _env_name(*path))
    password = _env_name(prefix, "PASSWORD")
    replaced = sanitize_url(uri, replacement=f"${{{password}}}")
    if replaced != uri:
        environment.append(password)

    def parameter(match: re.Match) -> str:
        if not is_secret_key(match["name"]):
            return match[0]
        return match["head"] + _placeholder(environment, prefix, match["name"])

    return _QUERY_PARAMETER.sub(parameter, replaced)


def _placeholder(environment: list[str], *parts: str) -> str:
    name = _env_name(*parts)
    environment.append(name)
    return f"${{{name}}}"


def _env_name(*parts: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(p for p in parts if p).upper()).strip("_")
