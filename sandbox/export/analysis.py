"""What each name of a notebook is bound to, and what a statement needs, found with ``ast``.

The last binding of a name wins, as in the kernel after running every cell in order. A binding
is an import, a definition the export can copy (def, class, assignment), or code that only
runs in the notebook (a loop, a ``with`` block...) whose names cannot be exported. Statements
that change a defined name without rebinding it (``ROUTES["a"] = f``, ``X += 1``) are
*amendments*: they go with the definition they follow.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from collections.abc import Iterable
from dataclasses import dataclass, field

from sandbox.export.imports import ImportedName, imported_names
from sandbox.export.source import Statement

# IPython puts these in builtins inside a kernel; an exported module has none of them.
KERNEL_NAMES = {
    "sb": "the notebook's client; in a service, call others through RpcProxy/EventDispatcher",
    "get_ipython": "only in IPython (a magic or shell command inside kept code?)",
    "display": "only in IPython",
    "In": "the kernel's input history",
    "Out": "the kernel's output history",
}
BUILTIN_NAMES = frozenset(dir(builtins)) - KERNEL_NAMES.keys() - {"__IPYTHON__"} | {
    "__file__",
    "__name__",
}

_RUNTIME_REASONS = {
    ast.For: "a for loop",
    ast.AsyncFor: "an async for loop",
    ast.While: "a while loop",
    ast.If: "an if block",
    ast.With: "a with block",
    ast.AsyncWith: "an async with block",
    ast.Try: "a try block",
    ast.TryStar: "a try block",
    ast.Match: "a match block",
    ast.Expr: "an expression",
    ast.Delete: "a del statement",
}
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (*_DEFINITIONS, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class RunTime:
    """A name bound only by running notebook code."""

    reason: str
    cell: int


Binding = ImportedName | Statement | RunTime


@dataclass
class Names:
    """The final binding of every name of a notebook, and the amendments that follow it."""

    bindings: dict[str, Binding] = field(default_factory=dict)
    amendments: dict[str, list[Statement]] = field(default_factory=dict)
    futures: set[ImportedName] = field(default_factory=set)

    def bind(self, name: str, binding: Binding) -> None:
        self.bindings[name] = binding
        self.amendments[name] = []

    def amend(self, name: str, statement: Statement) -> None:
        self.amendments.setdefault(name, []).append(statement)

    def qualified(self, dotted: str) -> str | None:
        """``rpc.rpc`` -> ``sandbox.rpc.rpc`` when its first name is imported, else None."""
        root, dot, rest = dotted.partition(".")
        binding = self.bindings.get(root)
        if not isinstance(binding, ImportedName):
            return None
        return binding.qualified + dot + rest


def bind_names(statements: Iterable[Statement]) -> Names:
    """Play the statements in order, as running the cells would."""
    names = Names()
    for statement in statements:
        node = statement.node
        if isinstance(node, ast.Import | ast.ImportFrom):
            for imported in imported_names(node):
                if imported.module == "__future__":
                    names.futures.add(imported)
                else:
                    names.bind(imported.bound, imported)
        elif isinstance(node, _DEFINITIONS):
            names.bind(node.name, statement)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and not _awaits(node):
            _bind_assignment(names, statement)
        else:
            reason = RunTime(_runtime_reason(node), statement.cell)
            for name in bound_names(node):
                names.bind(name, reason)
    return names


def _runtime_reason(node: ast.stmt) -> str:
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        return "an await"
    return _RUNTIME_REASONS.get(type(node), "code that runs")


def _bind_assignment(names: Names, statement: Statement) -> None:
    node = statement.node
    if isinstance(node, ast.AnnAssign) and node.value is None:
        return  # "x: int" binds nothing
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    value_names = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
    for target in targets:
        for name, rebinds in _target_names(target):
            # "X = X + [1]" and "X += 1" build on the X before them, like an item assignment.
            if rebinds and name not in value_names and not isinstance(node, ast.AugAssign):
                names.bind(name, statement)
            else:
                names.amend(name, statement)


def _target_names(target: ast.expr) -> Iterable[tuple[str, bool]]:
    """``(name, rebinds)`` for each name an assignment target binds or changes."""
    if isinstance(target, ast.Name):
        yield target.id, True
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)
    else:  # an attribute or item of something: it changes that thing
        root = target
        while isinstance(root, ast.Attribute | ast.Subscript):
            root = root.value
        if isinstance(root, ast.Name):
            yield root.id, False


def _awaits(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Await) for n in _walk_module_scope(node))


def bound_names(node: ast.AST) -> list[str]:
    """The module-level names a statement of any kind binds (or deletes)."""
    found = []
    for child in _walk_module_scope(node):
        if isinstance(child, _DEFINITIONS):
            found.append(child.name)
        elif isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
            found.append(child.id)
        elif isinstance(child, ast.alias) and child.name != "*":
            found.append(child.asname or child.name.partition(".")[0])
        elif isinstance(child, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and child.name:
            found.append(child.name)
        elif isinstance(child, ast.MatchMapping) and child.rest:
            found.append(child.rest)
    return sorted(set(found))


def _walk_module_scope(node: ast.AST) -> Iterable[ast.AST]:
    """Like ``ast.walk``, without entering the bodies of functions, classes and comprehensions."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current is node or not isinstance(current, _SCOPES):
            stack.extend(ast.iter_child_nodes(current))


def references(statement: Statement) -> set[str]:
    """The module-level names a statement reads, found with ``symtable`` (exact scoping)."""
    found: set[str] = set()
    tables = [symtable.symtable(statement.text, f"<cell {statement.cell}>", "exec")]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        for symbol in table.get_symbols():
            if symbol.is_global() and (symbol.is_referenced() or symbol.is_declared_global()):
                found.add(symbol.get_name())
    return found - set(defined_names(statement))


def defined_names(statement: Statement) -> list[str]:
    node = statement.node
    if isinstance(node, _DEFINITIONS):
        return [node.name]
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [name for t in targets for name, rebinds in _target_names(t) if rebinds]
    return []


def amended_names(statement: Statement) -> list[str]:
    node = statement.node
    if isinstance(node, ast.AugAssign):
        return [name for name, _ in _target_names(node.target)]
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [name for t in targets for name, rebinds in _target_names(t) if not rebinds]
    return []


def label(statement: Statement) -> str:
    """How warnings name a statement: what it defines or changes."""
    return ", ".join(defined_names(statement) or amended_names(statement)) or "?"


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])
