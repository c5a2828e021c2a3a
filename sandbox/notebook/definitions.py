"""Service classes as cells define them: each started once, or its mistake said once.

A class runs as a service as soon as its ``class`` statement has run, so the rest of the cell
can call it: an AST transformer follows each top-level class statement with a call to a hook.
After the cell, the classes it defined some other way (inside an ``if``, by ``exec``) start too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from sandbox.notebook.client import NotebookClient
from sandbox.notebook.errors import show_error
from sandbox.notebook.session import Session

# The hook's name in the user namespace: dunder, so that no cell's own names clash with it.
DEFINE_HOOK = "__sandbox_define__"


class Definitions:
    """Takes up the classes cells define: starts the services, names what is wrong with others."""

    def __init__(self, shell, session: Session, client: NotebookClient):
        self.shell = shell
        self.session = session
        self.client = client
        self.inserter = DefineHookInserter(shell)

    def install(self) -> None:
        self.shell.push({DEFINE_HOOK: self.define}, interactive=False)
        self.shell.ast_transformers.append(self.inserter)
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def uninstall(self) -> None:
        self.shell.events.unregister("post_run_cell", self.post_run_cell)
        if self.inserter in self.shell.ast_transformers:  # IPython drops one that fails
            self.shell.ast_transformers.remove(self.inserter)
        self.shell.user_ns.pop(DEFINE_HOOK, None)

    def start_new(self, values: Iterable[object]) -> None:
        """Start the service classes among ``values`` not seen before; say what stops others."""
        for cls in self.session.new_definitions(values):
            problem = naming_problem(cls)
            if problem:
                show_error(problem)
            else:
                self.client.start(cls)

    def define(self, value: object) -> None:
        """The hook a cell calls after each class statement."""
        if self.session.autostart:
            self.start_new([value])

    def post_run_cell(self, result: object = None) -> None:
        if self.session.autostart:
            self.start_new(self.shell.user_ns.values())


def naming_problem(cls: type) -> str | None:
    """What keeps a class with entrypoints from running as a service, if anything."""
    name = getattr(cls, "name", None)
    if name is None:
        return f'class {cls.__name__} has entrypoints but no `name`; add name = "..." to start it'
    if not isinstance(name, str):
        return f"class {cls.__name__} has a `name` that is a {type(name).__name__}, not a str"
    return None


class DefineHookInserter(ast.NodeTransformer):
    """Follows each top-level class statement of a cell with ``__sandbox_define__(Class)``.

    Only while the hook is in the namespace: after a ``%reset`` the post-run look still
    starts the cell's classes, at the end of the cell.
    """

    def __init__(self, shell):
        self.shell = shell

    def visit_Module(self, module: ast.Module) -> ast.Module:
        if DEFINE_HOOK not in self.shell.user_ns:
            return module
        body: list[ast.stmt] = []
        for statement in module.body:
            body.append(statement)
            if isinstance(statement, ast.ClassDef):
                body.append(_hook_call(statement))
        module.body = body
        return module


def _hook_call(class_def: ast.ClassDef) -> ast.stmt:
    call = ast.Call(
        func=ast.Name(DEFINE_HOOK, ast.Load()),
        args=[ast.Name(class_def.name, ast.Load())],
        keywords=[],
    )
    # At the class's place, so that a traceback through the hook points at the class.
    return ast.fix_missing_locations(ast.copy_location(ast.Expr(call), class_def))
