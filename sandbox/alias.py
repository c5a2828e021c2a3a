"""``nameko`` as another name of ``sandbox``, when the real Nameko is not installed.

``from nameko.rpc import rpc`` then gives sandbox's ``rpc``, and ``nameko.rpc is sandbox.rpc``:
Nameko code, its tests and Nameko's community extensions (nameko-sqlalchemy, nameko-redis...)
run unchanged. A ``nameko.<sub>`` that sandbox lacks fails with a ModuleNotFoundError naming the
``sandbox.<sub>`` looked for. With the real Nameko installed, nothing is aliased.

Every Python process of an environment where sandbox is installed has the alias from its start
(a ``.pth`` file sets it up, early enough for pytest plugins that import ``nameko``). Turn it off
with the config key ``NAMEKO_ALIAS: false`` or the environment variable
``SANDBOX_NAMEKO_ALIAS=0``; either is read when ``nameko`` is first imported.
"""

from __future__ import annotations

import sys

from _sandbox_nameko_alias import ALIAS, CONFIG_KEY, ENV_VAR, NamekoAliasFinder, install, is_aliased

NAMEKO_ALIAS_CONFIG_KEY = CONFIG_KEY
NAMEKO_ALIAS_ENV_VAR = ENV_VAR

__all__ = [
    "ALIAS_NOTICE",
    "NAMEKO_ALIAS_CONFIG_KEY",
    "NAMEKO_ALIAS_ENV_VAR",
    "activate",
    "is_aliased",
]

# What `sandbox run` logs when the services' modules imported nameko.
ALIAS_NOTICE = (
    "`nameko` is sandbox here: Nameko is not installed, so `import nameko` gives sandbox's "
    f"modules ({NAMEKO_ALIAS_CONFIG_KEY}: false or {NAMEKO_ALIAS_ENV_VAR}=0 turns that off)"
)


def activate() -> bool:
    """Let ``import nameko`` give sandbox from now on; return whether it does in this process.

    The ``.pth`` file has done it already in an installed sandbox; this covers processes that
    skipped it (``python -S``, a source checkout on ``PYTHONPATH``).
    """
    install()
    if ALIAS in sys.modules:
        return is_aliased()
    finder = next(f for f in sys.meta_path if isinstance(f, NamekoAliasFinder))
    return finder.find_spec(ALIAS) is not None
