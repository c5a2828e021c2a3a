"""Which classes of a notebook are services, decided from the source alone.

A service class has a ``name`` set to a string literal in its body and at least one method
decorated by an entrypoint: a decorator imported from sandbox under an entrypoint's name
(``rpc``, ``http``, ``event_handler``, ``timer``, ``consume``, ``dummy``), or one made the
Nameko way with ``SomeEntrypoint.decorator``.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from sandbox.export.analysis import Names, dotted_name
from sandbox.export.source import Statement

ENTRYPOINT_DECORATORS = frozenset({"rpc", "http", "event_handler", "timer", "consume", "dummy"})


class ExportError(Exception):
    """Nothing sensible to export: no service classes, or an unknown one asked for."""


def service_name(node: ast.ClassDef) -> str | None:
    """The string literal assigned to ``name`` in the class body, if any."""
    for item in node.body:
        if isinstance(item, ast.Assign):
            targets, value = item.targets, item.value
        elif isinstance(item, ast.AnnAssign) and item.value is not None:
            targets, value = [item.target], item.value
        else:
            continue
        named = any(isinstance(t, ast.Name) and t.id == "name" for t in targets)
        if named and isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


def is_service(node: ast.ClassDef, names: Names) -> bool:
    if service_name(node) is None:
        return False
    methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return any(is_entrypoint(d, names) for method in methods for d in method.decorator_list)


def is_entrypoint(decorator: ast.expr, names: Names) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    dotted = dotted_name(target)
    if dotted is None:
        return False
    if dotted.endswith(".decorator"):
        return True
    qualified = names.qualified(dotted)
    if qualified is not None:
        return (
            qualified.startswith("sandbox.")
            and qualified.rpartition(".")[2] in ENTRYPOINT_DECORATORS
        )
    # "dummy = Entrypoint.decorator" in a cell, then "@dummy".
    binding = names.bindings.get(dotted)
    if isinstance(binding, Statement) and isinstance(binding.node, ast.Assign):
        source = dotted_name(binding.node.value)
        return source is not None and source.endswith(".decorator")
    return False


def find_services(names: Names) -> list[Statement]:
    """The service classes the notebook ends with, the last class of each service name."""
    classes = [
        binding
        for binding in names.bindings.values()
        if isinstance(binding, Statement) and isinstance(binding.node, ast.ClassDef)
    ]
    by_name: dict[str, Statement] = {}
    for statement in sorted(classes, key=lambda s: s.index):
        if is_service(statement.node, names):
            # As in the kernel, where a later class of the same service name reloaded it.
            by_name[service_name(statement.node)] = statement
    return sorted(by_name.values(), key=lambda s: s.index)


def select_services(names: Names, wanted: Sequence[str]) -> tuple[list[Statement], list[str]]:
    """The classes to export (all services when ``wanted`` is empty), and warnings.

    ``wanted`` holds class names or service names. A class asked for by name is exported even
    when it does not look like a service, with a warning.
    """
    if not wanted:
        found = find_services(names)
        if not found:
            raise ExportError(
                "no service classes in the notebook "
                "(a class with a str 'name' and a method decorated by an entrypoint)"
            )
        return found, []
    chosen, warnings = [], []
    for wanted_name in wanted:
        statement = _class_named(names, wanted_name)
        if not is_service(statement.node, names):
            warnings.append(
                f"{statement.node.name} does not look like a service class "
                "(no str 'name' or no entrypoint found); exported as asked"
            )
        if statement not in chosen:
            chosen.append(statement)
    return sorted(chosen, key=lambda s: s.index), warnings


def _class_named(names: Names, wanted: str) -> Statement:
    binding = names.bindings.get(wanted)
    if isinstance(binding, Statement) and isinstance(binding.node, ast.ClassDef):
        return binding
    for service in find_services(names):
        if service_name(service.node) == wanted:
            return service
    known = ", ".join(f"{s.node.name} ({service_name(s.node)})" for s in find_services(names))
    raise ExportError(f"no service class {wanted!r} in the notebook (services: {known or 'none'})")
