"""``python -m sandbox.demo [NOTEBOOK]`` (``make demo``): run a notebook headless, show its results.

By default the quickstart, ``notebooks/01_quickstart.ipynb``. The notebook runs top to bottom in a
fresh kernel, in a scratch directory; then each section heading, each code cell and the text of its
outputs are printed, as a reader would see them. The exit code is 1 when a cell failed.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = NOTEBOOKS / "01_quickstart.ipynb"
CELL_TIMEOUT = 120  # seconds, for any one cell


def execute(path: str | Path, cwd: str | Path | None = None, timeout: float = CELL_TIMEOUT) -> Any:
    """Run the notebook at ``path`` in a new kernel; return it with its outputs.

    Raises nbclient's ``CellExecutionError`` when a cell fails (unless tagged
    ``raises-exception``) and ``CellTimeoutError`` when one runs longer than ``timeout``; the
    exception's ``notebook`` attribute holds the outputs so far.
    """
    import subprocess

    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    with contextlib.ExitStack() as stack:
        if cwd is None:
            cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix="sandbox-demo-"))
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}
        )
        try:
            # The kernel's own stderr holds only start-up notices: what cells print is captured.
            client.execute(stderr=subprocess.DEVNULL)
        except Exception as exc:
            exc.notebook = notebook
            raise
    return notebook


def render(notebook: Any) -> str:
    """The notebook as text: headings, then each code cell with the text of its outputs."""
    lines: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            lines += [f"\n{line}" for line in cell.source.splitlines() if line.startswith("#")]
        elif cell.cell_type == "code":
            count = cell.get("execution_count") or " "
            source = cell.source.splitlines() or [""]
            lines.append(f"In [{count}]: {source[0]}")
            lines += [f"{' ' * (len(str(count)) + 4)}...: {line}" for line in source[1:]]
            lines += [f"    {line}" for line in output_text(cell).splitlines()]
    return "\n".join(line.rstrip() for line in lines).strip() + "\n"


def output_text(cell: Any) -> str:
    """What the cell's outputs say as text: streams, plain-text results, errors."""
    parts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", "") + "\n")
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else QUICKSTART
    if not path.is_file():
        print(f"sandbox.demo: no notebook at {path}", file=sys.stderr)
        return 2
    try:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError
    except ImportError:
        print("sandbox.demo: needs nbclient (pip install nbclient)", file=sys.stderr)
        return 2
    print(f"running {path} in a fresh kernel...", file=sys.stderr, flush=True)
    try:
        notebook = execute(path)
    except (CellExecutionError, CellTimeoutError) as exc:
        print(render(exc.notebook), end="")
        print(f"sandbox.demo: {path.name} failed:\n{exc}", file=sys.stderr)
        return 1
    print(render(notebook), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
