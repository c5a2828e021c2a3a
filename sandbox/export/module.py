"""The exported module: the chosen classes and everything they need, in an order that runs."""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.export.analysis import (
    BUILTIN_NAMES,
    KERNEL_NAMES,
    Names,
    RunTime,
    amended_names,
    label,
    references,
)
from sandbox.export.imports import ImportedName, is_local_module, render_imports
from sandbox.export.source import Statement


@dataclass
class Closure:
    """The statements and imports some roots need, and the names nothing in the notebook binds."""

    statements: dict[int, Statement] = field(default_factory=dict)
    imports: set[ImportedName] = field(default_factory=set)
    needs: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    missing: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def collect(roots: Iterable[Statement], names: Names) -> Closure:
    closure = Closure()
    todo = list(roots)
    while todo:
        statement = todo.pop()
        if statement.index in closure.statements:
            continue
        closure.statements[statement.index] = statement
        for name in sorted(references(statement) | set(amended_names(statement))):
            todo.extend(_resolve(name, statement, names, closure))
    return closure


def _resolve(name: str, user: Statement, names: Names, closure: Closure) -> list[Statement]:
    """Record what ``name`` is for ``user``; return the statements it brings in."""
    binding = names.bindings.get(name)
    if isinstance(binding, ImportedName):
        closure.imports.add(binding)
        return []
    if isinstance(binding, Statement):
        # Amendments run in their notebook order, after the definition, before any user.
        chain = [binding, *names.amendments.get(name, [])]
        for earlier, later in zip(chain, chain[1:], strict=False):
            closure.needs[later.index].add(earlier.index)
        if user not in chain:
            closure.needs[user.index].update(s.index for s in chain)
        return chain
    if binding is not None or name not in BUILTIN_NAMES:
        closure.missing[name].add(label(user))
    return []


def ordered(closure: Closure) -> list[Statement]:
    """Dependencies first, otherwise notebook order; a cycle falls back to notebook order."""
    waiting = {i: set(closure.needs[i]) - {i} for i in closure.statements}
    result = []
    while waiting:
        ready = [i for i, needs in waiting.items() if not needs]
        index = min(ready or waiting)
        del waiting[index]
        for needs in waiting.values():
            needs.discard(index)
        result.append(closure.statements[index])
    return result


def missing_warnings(closure: Closure, names: Names) -> list[str]:
    """One line per name the module uses but cannot define, saying why and who uses it."""
    lines = []
    for name in sorted(closure.missing):
        binding = names.bindings.get(name)
        if isinstance(binding, RunTime):
            why = f"only set by running code ({binding.reason} in cell {binding.cell})"
        else:
            why = KERNEL_NAMES.get(name, "not defined in the notebook")
        lines.append(f"{name!r} is {why}; used by {', '.join(sorted(closure.missing[name]))}")
    return lines


def import_warnings(imports: Iterable[ImportedName], local_dir: Path | None) -> list[str]:
    """Imports the module keeps but that will not work as they are, one line per name."""
    lines = []
    for imported in sorted(imports, key=lambda i: i.bound):
        problem = _import_problem(imported, local_dir)
        if problem:
            lines.append(f"{imported.bound!r} is imported from {problem}")
    return lines


def _import_problem(imported: ImportedName, local_dir: Path | None) -> str | None:
    module = "." * imported.level + imported.module
    if imported.level:
        return f"{module}, a relative import: make it absolute"
    top = imported.top_module
    if top in sys.stdlib_module_names:
        return None
    if is_local_module(top, local_dir):
        return f"{module}, a local file: ship {top} with the module"
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{module}, which is not installed here"


def render(
    header: list[str],
    imports: Iterable[ImportedName],
    statements: list[Statement],
    local_dir: Path | None,
) -> str:
    text = "".join(f"# {line}\n" for line in header) + "\n"
    import_block = render_imports(imports, local_dir)
    if import_block:
        # What ruff's isort wants: two blank lines before a def or class, else one.
        definition = isinstance(
            statements[0].node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        )
        text += import_block + ("\n\n\n" if definition else "\n\n")
    return text + _body(statements) + "\n"


def _body(statements: list[Statement]) -> str:
    """Statements separated by two blank lines; neighbours in a cell keep what was between."""
    parts: list[str] = []
    previous = None
    for statement in statements:
        if previous is not None and statement.follows(previous):
            parts.extend(["\n", *(f"{line}\n" for line in statement.gap_after(previous))])
        elif previous is not None:
            parts.append("\n\n\n")
        parts.append(statement.text)
        previous = statement
    return "".join(parts)
