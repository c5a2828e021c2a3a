"""``sandbox export``: a notebook's services as a deployable module, with config.yaml beside it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.exceptions import CommandError
from sandbox.export import ExportError, export_cells

HELP = "export a notebook's services to a module"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="services.py",
        help="the module to write (default: services.py); config.yaml is written beside it",
    )
    parser.add_argument(
        "-s",
        "--service",
        metavar="NAME",
        action="append",
        default=[],
        help="export only this class (class or service name); may be repeated",
    )


def handle(args: argparse.Namespace) -> int:
    """Write the service classes of NOTEBOOK, with the imports, helpers and constants they need, to
    a module, and config.yaml beside it (secrets as ${ENV} placeholders)."""
    notebook = Path(args.notebook)
    output = Path(args.output)
    try:
        result = export_cells(
            read_code_cells(notebook),
            notebook.name,
            args.service,
            local_dir=notebook.parent,
            module_name=output.stem,
        )
    except ModuleNotFoundError as exc:  # IPython or nbformat: the notebook extra is missing
        raise CommandError(
            f"export needs {exc.name}: pip install 'service-sandbox[notebook]'"
        ) from None
    except ExportError as exc:
        raise CommandError(f"{notebook}: {exc}") from None
    try:
        module_path, config_path = result.write(output)
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    for warning in result.warnings:
        print(f"sandbox: warning: {warning}", file=sys.stderr)
    print(f"wrote {module_path} ({', '.join(result.services)}) and {config_path}")
    return 0


def read_code_cells(path: Path) -> list[str]:
    """The source of each code cell, "" for other cells: warnings count cells as users do."""
    import nbformat

    try:
        notebook = nbformat.read(path, as_version=4)
    except OSError as exc:
        raise CommandError(f"cannot read notebook {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        raise CommandError(f"{path} is not a notebook: {exc}") from None
    cells = notebook.get("cells", [])
    return [cell.source if cell.get("cell_type") == "code" else "" for cell in cells]
