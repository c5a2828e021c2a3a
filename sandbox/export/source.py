"""Notebook cells as top-level statements that keep their source text, comments included.

Magics become Python with IPython's own input transformer (``%rpc x`` turns into a
``get_ipython()`` call) so that every cell parses; the text of a kept statement is cut from that
transformed cell, never regenerated, so comments and formatting survive the export.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(eq=False)
class Statement:
    """A top-level statement of a cell; ``index`` orders statements across the notebook.

    ``start`` is its first line counting the comment lines right above it, ``first`` its first
    line of code (decorators included), ``end`` its last line; all 1-based in the cell.
    """

    node: ast.stmt
    cell: int
    index: int
    lines: list[str]
    start: int
    first: int

    @property
    def end(self) -> int:
        return self.node.end_lineno

    @property
    def text(self) -> str:
        """The statement's source, with the comments above it and the one ending its line."""
        code = self.lines[self.first - 1 : self.end]
        last = code[-1].encode()
        rest = last[self.node.end_col_offset :].decode()
        comment = rest.strip() if rest.strip().startswith("#") else ""
        code[-1] = last[: self.node.end_col_offset].decode() + (f"  {comment}" if comment else "")
        if self.first == self.node.lineno:  # an undecorated statement may follow a ";"
            code[0] = code[0].encode()[self.node.col_offset :].decode()
        return "\n".join(self.lines[self.start - 1 : self.first - 1] + code)

    def follows(self, other: Statement) -> bool:
        """True when only blank lines and comments separate ``other`` and this statement."""
        return self.cell == other.cell and self.index == other.index + 1

    def gap_after(self, other: Statement) -> list[str]:
        """The lines between ``other`` and this statement, which ``follows`` it."""
        return self.lines[other.end : self.start - 1] if self.start > other.end else []


@dataclass
class SkippedCell:
    cell: int
    reason: str


def read_cells(cells: Iterable[str]) -> Iterator[Statement | SkippedCell]:
    """The statements of each cell, in order; a cell that does not compile is skipped."""
    transform = _transformer()
    index = 0
    for number, source in enumerate(cells, start=1):
        code = transform(source)
        try:
            module = ast.parse(code)
            # What the kernel refuses to run ("return" in a class...) never defined anything.
            compile(module, f"<cell {number}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            yield SkippedCell(number, f"{exc.msg} (line {exc.lineno})")
            continue
        lines = code.splitlines()
        previous_end = 0
        for node in module.body:
            index += 1
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            start = first
            if node.col_offset == 0:
                while start - 1 > previous_end and lines[start - 2].startswith("#"):
                    start -= 1
            yield Statement(node, number, index, lines, start, first)
            previous_end = node.end_lineno


def _transformer():
    # IPython is needed only here: exporting a notebook means its magics are in the cells.
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell
