"""Export a notebook's services to a deployable module and its ``config.yaml``.

``export_cells`` takes the sources of the code cells, in order, and returns the module text:
the chosen service classes (all by default) with their decorators and comments, plus the
imports, helpers, classes and constants they need, found by name analysis with ``ast``, in an
order that runs; nothing interactive (calls, ``sb``, magics, displays). The same cells always
give the same bytes. What cannot be exported is reported in ``Export.warnings``, never dropped
silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.config import DEFAULTS
from sandbox.export.analysis import bind_names
from sandbox.export.module import collect, import_warnings, missing_warnings, ordered, render
from sandbox.export.services import ExportError, select_services
from sandbox.export.settings import render_config, settings_from_cells
from sandbox.export.source import SkippedCell, Statement, read_cells

__all__ = ["CONFIG_FILE", "Export", "ExportError", "export_cells"]

CONFIG_FILE = "config.yaml"


@dataclass
class Export:
    """An export: the module's text, its ``config.yaml`` text, what it holds, what went wrong."""

    module: str
    config: str
    services: list[str]
    warnings: list[str]

    def write(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write the module to ``path`` and ``config.yaml`` beside it; return both paths."""
        module_path = Path(path)
        config_path = module_path.with_name(CONFIG_FILE)
        module_path.write_text(self.module, encoding="utf-8")
        config_path.write_text(self.config, encoding="utf-8")
        return module_path, config_path


def export_cells(
    cells: Iterable[str],
    source: str,
    services: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    local_dir: str | os.PathLike | None = None,
    module_name: str = "services",
) -> Export:
    """Export the services defined by ``cells`` (code cell sources, magics allowed).

    ``source`` names the notebook in the headers. ``services`` picks classes by class or
    service name. ``settings`` is the config to write (a live kernel's); without it the keys
    the cells set are used. Imports of files in ``local_dir`` are reported: ship them too.
    Raises ExportError when there is no service to export.
    """
    statements, warnings = _read(cells)
    names = bind_names(statements)
    chosen, selection_warnings = select_services(names, services)
    closure = collect(chosen, names)
    directory = Path(local_dir) if local_dir is not None else None
    header = [
        f"Services exported from {source} by sandbox: edit the notebook and export again.",
        f"Run them with: sandbox run {module_name} --config {CONFIG_FILE}",
    ]
    if closure.missing:
        missing = ", ".join(sorted(closure.missing))
        header.append(f"Not defined here (see the export warnings): {missing}")
    module = render(header, closure.imports | names.futures, ordered(closure), directory)
    setting_warnings: list[str] = []
    if settings is None:
        found, setting_warnings = settings_from_cells(statements, names)
        settings = {**DEFAULTS, **found}
    config, config_warnings = render_config(
        settings, [f"Config for {module_name}.py, exported from {source}."]
    )
    warnings += selection_warnings + missing_warnings(closure, names)
    warnings += import_warnings(closure.imports, directory) + setting_warnings + config_warnings
    if not module_name.isidentifier():
        warnings.append(
            f"{module_name}.py cannot be imported by `sandbox run`: name it services.py"
        )
    return Export(module, config, [statement.node.name for statement in chosen], warnings)


def _read(cells: Iterable[str]) -> tuple[list[Statement], list[str]]:
    statements, warnings = [], []
    for item in read_cells(cells):
        if isinstance(item, SkippedCell):
            warnings.append(f"cell {item.cell} is not valid Python and was skipped: {item.reason}")
        else:
            statements.append(item)
    return statements, warnings
