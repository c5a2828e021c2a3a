"""What the docs read from a service's code: type hints, docstrings, and literal calls.

Everything here degrades instead of failing: a hint that cannot be resolved, a class whose
source is gone (a class typed into a console) or a docstring-less method simply gives less
documentation.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.extensions import Entrypoint, get_entrypoints

# The hint of a parameter or return value that has none.
MISSING: Any = inspect.Parameter.empty


@dataclass
class ObjectShape:
    """The hint of a dict literal: its keys and a hint for each value, documented inline."""

    fields: dict[str, Any]


def type_hints(obj: Any) -> dict[str, Any]:
    """``obj``'s annotations, resolved; a string that cannot be resolved becomes MISSING.

    ``typing.get_type_hints`` gives up on the first bad forward reference: then each
    annotation is resolved on its own, so one typo costs one hint, not all of them.
    """
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:
        pass
    namespace = _namespace(obj)
    hints = {}
    for name, annotation in getattr(obj, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # what get_type_hints does, per name
            except Exception:
                annotation = MISSING
        hints[name] = annotation
    return hints


def _namespace(obj: Any) -> dict[str, Any]:
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    return dict(vars(module)) if module is not None else {}


def entrypoints_in_order(service_cls: type) -> list[tuple[str, Entrypoint]]:
    """``(method name, entrypoint)`` of a service class, in the order the methods are written."""

    def line(item: tuple[str, Entrypoint]) -> tuple[int, str]:
        code = getattr(inspect.unwrap(getattr(service_cls, item[0])), "__code__", None)
        return (code.co_firstlineno if code is not None else 0), item[0]

    return sorted(get_entrypoints(service_cls), key=line)


def handler_parameters(fn: Callable) -> list[inspect.Parameter]:
    """The parameters of a service method, ``self`` left out."""
    return list(inspect.signature(fn).parameters.values())[1:]


def first_argument_hint(fn: Callable) -> Any:
    """The hint of the first argument after ``self`` (an event payload, a message body)."""
    parameters = handler_parameters(fn)
    if not parameters:
        return MISSING
    return type_hints(fn).get(parameters[0].name, MISSING)


def docstring(obj: Any) -> str | None:
    """The author's docstring of ``obj``, cleaned of indentation; None when it has none."""
    doc = inspect.getdoc(obj)
    return None if not doc or _is_generated_doc(obj, doc) else doc


def summary_and_description(obj: Any) -> tuple[str | None, str | None]:
    """The docstring's first paragraph on one line, and the paragraphs after it."""
    doc = docstring(obj)
    if doc is None:
        return None, None
    first, _, rest = doc.partition("\n\n")
    return " ".join(first.split()), rest.strip() or None


def service_tag(service_cls: type) -> dict[str, str]:
    """The tag object (OpenAPI and AsyncAPI alike) of a service: its name and docstring."""
    tag = {"name": service_cls.name}
    description = docstring(service_cls)
    if description:
        tag["description"] = description
    return tag


def document_title(tags: list[dict[str, str]]) -> str:
    return ", ".join(tag["name"] for tag in tags) or "sandbox services"


def expected_exceptions(entrypoint: Entrypoint) -> tuple[type[BaseException], ...]:
    expected = entrypoint.expected_exceptions
    return expected if isinstance(expected, tuple) else (expected,)


def _is_generated_doc(obj: Any, doc: str) -> bool:
    # dataclasses and NamedTuple write "Name(field, ...)" as the docstring of an undocumented
    # class, and inspect.getdoc inherits docstrings from base classes: neither is the author's.
    if isinstance(obj, type):
        return doc.startswith(f"{obj.__name__}(") or obj.__dict__.get("__doc__") is None
    return False


class SelfCall:
    """A ``self.<attr>...(...)`` call in a service's source, and what the code around it tells.

    ``path`` holds the attribute names between ``<attr>`` and the call: ``[]`` for
    ``self.dispatch(...)``, ``["hello"]`` for ``self.greeter.hello(...)`` (or its
    ``.call_async(...)``).
    """

    def __init__(
        self, node: ast.Call, path: list[str], names: dict[str, Any], namespace: dict[str, Any]
    ):
        self.node = node
        self.path = path
        self.names = names  # the hints of the parameters of the method holding the call
        self.namespace = namespace  # the globals of the method

    def argument(self, position: int | None, keyword: str) -> ast.expr | None:
        """The argument passed at ``position`` (None: only by keyword) or as ``keyword=``."""
        args = self.node.args
        starred = any(isinstance(arg, ast.Starred) for arg in args)
        if position is not None and position < len(args) and not starred:
            return args[position]
        return next((k.value for k in self.node.keywords if k.arg == keyword), None)

    def hint(self, node: ast.expr | None) -> Any:
        """A hint for what ``node`` evaluates to, as far as it shows without running it.

        Literals give their type, ``{"key": value}`` an ObjectShape, a parameter of the method
        its hint, and ``Name(...)`` or ``asdict(Name(...))`` the class ``Name``.
        """
        if isinstance(node, ast.Constant):
            return type(node.value) if node.value is not None else None
        if isinstance(node, ast.Dict):
            return self._dict_hint(node)
        if isinstance(node, ast.List | ast.ListComp):
            return list
        if isinstance(node, ast.Name):
            return self.names.get(node.id, MISSING)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "asdict" and node.args:
                return self.hint(node.args[0])
            found = self.namespace.get(node.func.id)
            if isinstance(found, type):
                return found
        return MISSING

    def _dict_hint(self, node: ast.Dict) -> Any:
        keys = [literal_string(key) if key is not None else None for key in node.keys]
        if None in keys:
            return dict
        values = (self.hint(value) for value in node.values)
        return ObjectShape(dict(zip(keys, values, strict=True)))


def self_calls(cls: type, attr: str) -> list[SelfCall] | None:
    """Every call of ``self.<attr>`` or of an attribute of it, in the methods of ``cls`` and
    its bases.

    Each method is read on its own: a class typed into a notebook cell has no source file,
    but its methods' code is in the cell (``linecache``). None when some method's source
    cannot be read: then the calls are unknown, not absent.
    """
    calls: list[SelfCall] = []
    for klass in cls.__mro__[:-1]:  # object has no source
        for method in vars(klass).values():
            if not inspect.isfunction(method):
                continue
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
            except (OSError, TypeError, SyntaxError):
                return None
            names = _parameter_hints(method)
            for node in ast.walk(tree):
                path = _path_after(node, attr)
                if path is not None:
                    calls.append(SelfCall(node, path, names, method.__globals__))
    return calls


def _path_after(node: ast.AST, attr: str) -> list[str] | None:
    """For a call of ``self.<attr>.a.b``, ``["a", "b"]``; None for any other node."""
    if not isinstance(node, ast.Call):
        return None
    names, target = [], node.func
    while isinstance(target, ast.Attribute):
        names.append(target.attr)
        target = target.value
    names.reverse()
    if not (isinstance(target, ast.Name) and target.id == "self" and names[:1] == [attr]):
        return None
    return [name for name in names[1:] if name != "call_async"]


def _parameter_hints(method: Callable) -> dict[str, Any]:
    """What each parameter name holds inside the method: ``*args: int`` is a tuple of ints."""
    hints = type_hints(method)
    for parameter in inspect.signature(method).parameters.values():
        hint = hints.get(parameter.name, Any)
        if parameter.kind == inspect.Parameter.VAR_POSITIONAL:
            hints[parameter.name] = tuple[hint, ...]
        elif parameter.kind == inspect.Parameter.VAR_KEYWORD:
            hints[parameter.name] = dict[str, hint]
    return hints


def literal_string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None
