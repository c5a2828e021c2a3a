"""``sb.export(path, *services)`` and ``%sandbox export``: export from the kernel's history.

The cells are the kernel's input history, which holds every cell run, in the order run: that
is the code that made the services the kernel has now. The config is the kernel's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from IPython import get_ipython

from sandbox.config import config
from sandbox.export import ExportError, export_cells
from sandbox.export.manifests import write_deployment
from sandbox.notebook.errors import show_error
from sandbox.notebook.extension import asked_web_address


def export_from_kernel(
    path: str | os.PathLike, services: Sequence[str] = (), manifests: bool = False
) -> None:
    """Write the module and its config.yaml (and with ``manifests`` the deployment files, see
    ``sandbox manifests``); print what was written and every warning."""
    ip = get_ipython()
    if ip is None:
        raise ExportError("export works in IPython: it exports the cells run so far")
    output = Path(path)
    result = export_cells(
        ip.history_manager.input_hist_raw[1:],  # entry 0 is a placeholder
        notebook_name(ip.user_ns),
        services,
        # The port a busy kernel fell back to is no deployment's: export the one asked for.
        settings={**config, "WEB_SERVER_ADDRESS": asked_web_address()},
        local_dir=Path.cwd(),
        module_name=output.stem,
    )
    module_path, config_path = result.write(output)
    for warning in result.warnings:
        show_error(f"warning: {warning}")
    print(f"wrote {module_path} ({', '.join(result.services)}) and {config_path}")
    if manifests:
        written, warnings = write_deployment(module_path, config_path, module_path.parent)
        for warning in warnings:
            show_error(f"warning: {warning}")
        print(f"wrote {', '.join(str(p) for p in written)}")


def notebook_name(namespace: dict) -> str:
    """The notebook's file name when the front end told the kernel, else the history."""
    session = namespace.get("__session__") or os.environ.get("JPY_SESSION_NAME")
    return Path(session).name if session else "the kernel's input history"
