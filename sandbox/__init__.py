"""sandbox: Nameko-style services in notebook cells, running in background green threads."""

import warnings

# eventlet warns once per process that it is in maintenance mode; sandbox is built on eventlet
# (see docs/architecture.md), so the warning is nothing a sandbox user can act on.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet  # noqa: F401

from sandbox.blocking import offload  # noqa: E402
from sandbox.config import config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["config", "load_ipython_extension", "offload", "unload_ipython_extension"]


def load_ipython_extension(ipython):  # pragma: no cover - exercised by the notebook tests
    from sandbox.notebook.extension import load

    load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover - exercised by the notebook tests
    from sandbox.notebook.extension import unload

    unload(ipython)
