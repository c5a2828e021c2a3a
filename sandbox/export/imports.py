"""The import block of an exported module, laid out the way ruff's isort rule (I001) wants it.

An exported module must pass ``ruff check``, and ruff is not a runtime dependency, so the
ordering is reproduced here: sections (future, standard library, third party, first party,
relative), ``import x`` lines before ``from x import y`` lines, natural case-insensitive order,
members ordered by type (CONSTANTS, Classes, functions), one line per aliased member.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Wrapping long from-imports at ruff's default width keeps them valid under any wider limit:
# ruff leaves a wrapped import with a trailing comma wrapped.
WRAP_WIDTH = 88
INDENT = "    "

FUTURE, STDLIB, THIRD_PARTY, FIRST_PARTY, RELATIVE = range(5)


@dataclass(frozen=True)
class ImportedName:
    """One name an import statement binds: ``import a.b``, ``from a import b as c``."""

    module: str
    member: str | None = None
    alias: str | None = None
    level: int = 0

    @property
    def bound(self) -> str:
        """The name the import binds in the module."""
        if self.alias:
            return self.alias
        return self.member if self.member is not None else self.module.partition(".")[0]

    @property
    def qualified(self) -> str:
        """The dotted path of the bound object (``sandbox.rpc.rpc``), for relative ones too."""
        if self.member is None:
            return self.module if self.alias else self.bound
        prefix = "." * self.level + self.module
        return f"{prefix}.{self.member}" if self.module else f"{prefix}{self.member}"

    @property
    def top_module(self) -> str:
        return self.module.partition(".")[0]


def imported_names(node: ast.Import | ast.ImportFrom) -> list[ImportedName]:
    """The names an import statement binds; a star import binds none we can know."""
    if isinstance(node, ast.Import):
        return [ImportedName(alias.name, None, alias.asname) for alias in node.names]
    module = node.module or ""
    return [
        ImportedName(module, alias.name, alias.asname, node.level)
        for alias in node.names
        if alias.name != "*"
    ]


def is_local_module(module: str, directory: Path | None) -> bool:
    """True when ``module`` is a file or package in ``directory`` (next to the notebook)."""
    if directory is None:
        return False
    return (directory / f"{module}.py").is_file() or (directory / module / "__init__.py").is_file()


def section(name: ImportedName, local_dir: Path | None) -> int:
    if name.level:
        return RELATIVE
    if name.module == "__future__":
        return FUTURE
    if name.top_module in sys.stdlib_module_names:
        return STDLIB
    return FIRST_PARTY if is_local_module(name.top_module, local_dir) else THIRD_PARTY


def render_imports(names: Iterable[ImportedName], local_dir: Path | None = None) -> str:
    """The import block binding ``names``: sections separated by one blank line."""
    by_section: dict[int, list[ImportedName]] = {}
    for name in set(names):
        by_section.setdefault(section(name, local_dir), []).append(name)
    blocks = [_render_section(by_section[key]) for key in sorted(by_section)]
    return "\n\n".join(blocks)


def _render_section(names: list[ImportedName]) -> str:
    straight = sorted(
        (n for n in names if n.member is None),
        key=lambda n: (*_module_key(n.module), _natural(n.alias or "")),
    )
    lines = [f"import {n.module}" + (f" as {n.alias}" if n.alias else "") for n in straight]
    statements = _from_statements([n for n in names if n.member is not None])
    statements.sort(key=lambda s: (s[0], *_module_key(s[1]), _member_key(s[2][0])))
    lines.extend(_from_line(module, members) for _, module, members in statements)
    return "\n".join(lines)


def _from_statements(names: list[ImportedName]) -> list[tuple]:
    """``(level key, module, members)`` per from-import line to write."""
    plain: dict[tuple[int, str], list[str]] = {}
    statements = []
    for name in names:
        prefix = "." * name.level + name.module
        if name.alias:
            member = f"{name.member} as {name.alias}"
            statements.append((-name.level, prefix, [member]))
        else:
            plain.setdefault((name.level, prefix), []).append(name.member)
    for (level, prefix), members in plain.items():
        members.sort(key=_member_key)
        statements.append((-level, prefix, members))
    return statements


def _from_line(module: str, members: list[str]) -> str:
    line = f"from {module} import {', '.join(members)}"
    if len(line) <= WRAP_WIDTH:
        return line
    body = "".join(f"{INDENT}{member},\n" for member in members)
    return f"from {module} import (\n{body})"


def _module_key(module: str) -> tuple:
    return _natural(module.lower()), _natural(module)


def _member_key(member: str) -> tuple:
    name, _, alias = member.partition(" as ")
    if len(name) > 1 and name.isupper():
        kind = 0  # CONSTANT
    elif name[:1].isupper():
        kind = 1  # Class
    else:
        kind = 2
    return kind, _natural(name.lower()), _natural(name), _natural(alias)


_DIGITS = re.compile(r"(\d+)")


def _natural(text: str) -> tuple:
    # Digit runs compare as numbers, as ruff does: "v2" sorts before "v10".
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in _DIGITS.split(text)
        if part
    )
