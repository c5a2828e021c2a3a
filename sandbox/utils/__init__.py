"""Small helpers shared by the core and the command line."""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import re
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

# Masking has a module of its own; these names stay importable from here.
from sandbox.utils.masking import REDACTED, is_secret_key, mask_secrets, sanitize_url

__all__ = [
    "REDACTED",
    "Registrations",
    "get_redacted_args",
    "import_from_path",
    "is_secret_key",
    "mask_secrets",
    "sanitize_url",
    "unique_id",
]

T = TypeVar("T")


class Registrations(Generic[T]):
    """Hooks registered once each, in order; removing one that is not there is no error.

    ``hooks`` is a tuple, replaced on every change: iterating it needs no copy (the recorder
    goes through its observers twice per worker), and a hook may remove itself while the
    others run."""

    def __init__(self) -> None:
        self.hooks: tuple[T, ...] = ()
        self._changing = threading.Lock()

    def add(self, hook: T) -> None:
        with self._changing:
            if hook not in self.hooks:
                self.hooks = (*self.hooks, hook)

    def remove(self, hook: T) -> None:
        with self._changing:
            hooks = list(self.hooks)
            if hook in hooks:
                hooks.remove(hook)
                self.hooks = tuple(hooks)

    def __iter__(self) -> Iterator[T]:
        return iter(self.hooks)

    def __bool__(self) -> bool:
        return bool(self.hooks)


def unique_id() -> str:
    """A random (version 4) UUID as a string, like ``str(uuid.uuid4())`` at a third of the
    cost: correlation and call ids are made for every call."""
    data = bytearray(_random_bytes())
    data[6] = data[6] & 0x0F | 0x40  # version 4
    data[8] = data[8] & 0x3F | 0x80  # RFC 4122 variant
    h = data.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# os.urandom's randomness, fetched 256 ids at a time. An RPC call makes two ids, and a system
# call for each would let go of the interpreter lock twice per call: with several threads
# calling, each let-go can cost a sleep and a wake-up. list.pop, and extend with a list, are
# atomic: any thread may take one.
_RANDOM_BATCH = 256
_random_pool: list[bytes] = []
# A child process must not hand out ids its parent has (or will have) handed out.
os.register_at_fork(after_in_child=_random_pool.clear)


def _random_bytes() -> bytes:
    try:
        return _random_pool.pop()
    except IndexError:
        block = os.urandom(16 * _RANDOM_BATCH)
        _random_pool.extend([block[start : start + 16] for start in range(16, len(block), 16)])
        return block[:16]


def import_from_path(path: str) -> Any:
    """Import the object named by ``"pkg.mod:Name"`` or ``"pkg.mod.Name"``.

    Raises ImportError with a message naming what could not be found.
    """
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise ImportError(f"cannot import {path!r}: expected 'module:Name' or 'module.Name'")
    try:
        target = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _is_module_or_parent(exc.name, module_name):
            raise  # the module exists but one of its own imports is missing
        raise ImportError(f"cannot import {path!r}: no module named {exc.name!r}") from None
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ImportError(f"cannot import {path!r}: {attr!r} not found") from None
    return target


def _is_module_or_parent(name: str | None, module_name: str) -> bool:
    return name is not None and (module_name == name or module_name.startswith(name + "."))


_ARGUMENT_PATH = re.compile(r"(\w+)|\[(\d+)\]")


def get_redacted_args(entrypoint: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The call's arguments by name, with the entrypoint's ``sensitive_arguments`` redacted.

    A sensitive argument is a name (``"password"``) or a path into one (``"user.token"``,
    ``"items[0]"``), as in Nameko. The arguments themselves are left untouched.
    """
    method = getattr(entrypoint.container.service_cls, entrypoint.method_name)
    bound = inspect.signature(method).bind(None, *args, **kwargs)
    callargs = copy.deepcopy(dict(list(bound.arguments.items())[1:]))
    for path in entrypoint.sensitive_arguments:
        keys = [key or int(index) for key, index in _ARGUMENT_PATH.findall(path)]
        if keys and keys[0] in callargs:
            _redact(callargs, keys)
    return callargs


def _redact(data: Any, keys: list[Any]) -> None:
    key, rest = keys[0], keys[1:]
    try:
        if rest:
            _redact(data[key], rest)
        else:
            data[key] = REDACTED
    except (KeyError, IndexError, TypeError):
        pass  # a path that does not fit this call's data redacts nothing
