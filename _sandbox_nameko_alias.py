"""``import nameko`` gives sandbox's own modules when the real Nameko is not installed.

``nameko.rpc`` is then the very module object ``sandbox.rpc``, so ``isinstance`` checks and
``mock.patch("nameko.rpc...")`` agree with code that imports from ``sandbox``. Nameko community
extensions (``from nameko.extensions import DependencyProvider``) run unchanged on sandbox.

``sandbox-nameko-alias.pth``, installed with sandbox, imports this module at interpreter start,
before any pytest plugin loads: nameko-sqlalchemy's plugin imports ``nameko.extensions`` when
pytest loads it, in an order nobody controls. Hence a top-level module that imports nothing of
sandbox's (importing sandbox starts eventlet, which every Python process of the environment
would pay for). ``sandbox.alias`` is the side that sandbox's own code and users talk to.

Turned off by the environment variable ``SANDBOX_NAMEKO_ALIAS=0`` or by the sandbox config
key ``NAMEKO_ALIAS: false``, read when ``nameko`` is first imported.

PYTEST_DONT_REWRITE: pytest would rewrite the asserts of a pytest plugin's distribution, and
warn that this module, imported before pytest started, cannot be.
"""

from __future__ import annotations

# Only what Python has loaded before site runs, or nearly: this module runs at the start of every
# interpreter of the environment. importlib.abc alone would add pathlib and tempfile to each.
import importlib
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

ALIAS = "nameko"
TARGET = "sandbox"
ENV_VAR = "SANDBOX_NAMEKO_ALIAS"
CONFIG_KEY = "NAMEKO_ALIAS"
_OFF_VALUES = ("0", "false", "no", "off")


class NamekoAliasFinder:
    """Finds ``nameko`` and ``nameko.<sub>`` as ``sandbox`` and ``sandbox.<sub>``.

    It sits first in ``sys.meta_path``: the submodules of an aliased ``nameko`` are sandbox's,
    and Python's path finder, asked first, would load a second copy of each from sandbox's
    folder under the ``nameko`` name. Whether to alias at all, it decides after the other
    finders: only when none of them finds a real ``nameko``.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == ALIAS:
            if not self._should_alias(target):
                return None
        elif fullname.startswith(ALIAS + ".") and is_aliased():
            _require(fullname)
        else:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(target_name(fullname)))

    def _should_alias(self, target: ModuleType | None) -> bool:
        if not enabled() or _find_spec(TARGET) is None:
            return False
        return not self._found_elsewhere(ALIAS, target)

    def _found_elsewhere(self, fullname: str, target: ModuleType | None) -> bool:
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is not self and find_spec and find_spec(fullname, None, target):
                return True
        return False


class _AliasLoader:
    """Loads ``nameko.<sub>`` as the module object ``sandbox.<sub>`` itself."""

    def __init__(self, target_name: str):
        self.target_name = target_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder, replaced below

    def exec_module(self, module: ModuleType) -> None:
        # The import system hands out what sys.modules holds under the name once this returns,
        # so the placeholder's entry is replaced by sandbox's module, left untouched: its
        # __spec__ and __name__ stay sandbox's, as reload() and pickle expect.
        sys.modules[module.__name__] = importlib.import_module(self.target_name)


def target_name(fullname: str) -> str:
    """``nameko.testing.services`` -> ``sandbox.testing.services``."""
    return TARGET + fullname[len(ALIAS) :]


def _require(fullname: str) -> None:
    sandbox_name = target_name(fullname)
    if _find_spec(sandbox_name) is None:
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: nameko is sandbox here (Nameko is not installed) "
            f"and sandbox has no module {sandbox_name!r}",
            name=fullname,
        )


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    import importlib.util  # not at the top: see the imports

    return importlib.util.find_spec(name)


def enabled() -> bool:
    """Whether ``import nameko`` may give sandbox: neither the environment variable nor, once
    sandbox is imported, its config key turns the alias off."""
    if os.environ.get(ENV_VAR, "").strip().lower() in _OFF_VALUES:
        return False
    # Read from sys.modules, not imported: this module must not import sandbox (see above).
    settings = getattr(sys.modules.get(f"{TARGET}.config"), "config", {})
    return bool(settings.get(CONFIG_KEY, True))


def is_aliased() -> bool:
    """Whether ``nameko`` was imported, and is sandbox."""
    module = sys.modules.get(ALIAS)
    return module is not None and module is sys.modules.get(TARGET)


def install() -> None:
    """Put the finder first in ``sys.meta_path``, once per process."""
    if not any(isinstance(finder, NamekoAliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, NamekoAliasFinder())
