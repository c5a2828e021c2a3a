"""Blocking calls made green where they would stall the services: sleep, sockets, subprocesses,
DNS, ``select`` and sqlite3.

Service code runs in green threads of the runtime's hub thread. A call there that blocks the OS
thread (``time.sleep``, ``requests``, ``subprocess.run``, a locked sqlite3 database) stalls every
service of the process, and a service calling its own HTTP route deadlocks. Nameko answers with
``eventlet.monkey_patch()``, but in a Jupyter kernel that wedges the kernel's own threads, which
must keep blocking for real. So each replacement installed here asks where it runs:

- in a green thread of a sandbox hub, it is eventlet's green version, or, for C code that no
  green socket can reach (sqlite3, DNS), the call runs on a plain thread while the green thread
  waits (:func:`offload`);
- anywhere else (a cell, ipykernel's threads, the hub's own loop), it is the original, unchanged.

A module that bound the original before :func:`install` ran (``from time import sleep``) keeps
it; the watchdog names such calls when they stall the hub. A process that was monkey patched by
its author is green already and is left as it is.
"""

from __future__ import annotations

import functools
import select
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.green.select
import eventlet.green.ssl
import eventlet.green.subprocess
import eventlet.greenio
import eventlet.hubs
import eventlet.patcher
import greenlet

Offload = Callable[..., Any]

# Hubs are OS threads, also where threading makes green threads (a monkey-patched process).
os_thread_ident: Callable[[], int] = eventlet.patcher.original("_thread").get_ident

# Hub thread ident -> how its runtime hands a call to a plain thread. Written by the runtimes,
# read on every patched call.
_hubs: dict[int, Offload] = {}
_lock = threading.Lock()
_installed = False


def add_hub(ident: int, hand_off: Offload) -> None:
    """Make the patched calls green in thread ``ident``, a hub thread that runs services;
    ``hand_off(fn, *args, **kwargs)`` runs ``fn`` on a plain thread for one of its green
    threads, which it may assume the caller is."""
    _hubs[ident] = hand_off
    install()


def remove_hub(ident: int) -> None:
    _hubs.pop(ident, None)


def hub_offload() -> Offload | None:
    """The hand-off of the hub whose green thread calls this, or None where calls may block:
    any other thread, and the hub's own greenlet, which must never wait."""
    hand_off = _hubs.get(os_thread_ident())
    if hand_off is None or greenlet.getcurrent() is eventlet.hubs.get_hub().greenlet:
        return None
    return hand_off


def install() -> None:
    """Put the hub-aware versions in place of the originals, once per process."""
    global _installed
    with _lock:
        if _installed or eventlet.patcher.is_monkey_patched("socket"):
            return
        _installed = True
        time.sleep = _either(time.sleep, eventlet.sleep)
        select.select = _either(select.select, eventlet.green.select.select)
        socket.socket = _dispatching_class(socket.socket, eventlet.greenio.GreenSocket)
        socket.getaddrinfo = _offloaded(socket.getaddrinfo)
        socket.gethostbyname = _offloaded(socket.gethostbyname)
        ssl.SSLContext.wrap_socket = _green_ssl_wrap(ssl.SSLContext.wrap_socket)
        subprocess.Popen = _dispatching_class(subprocess.Popen, _GreenPopen)
        # sqlite3 re-exports sqlite3.dbapi2's connect, which SQLAlchemy calls: patch both.
        sqlite3.connect = sqlite3.dbapi2.connect = _offloading_connect(sqlite3.connect)


def offload(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` so that the services keep running meanwhile.

    In a service (a green thread of a sandbox hub), on a plain thread while the worker waits
    greenly; anywhere else, simply. For CPU-heavy work and C calls that block, which nothing
    can make green. Killing the waiting worker does not stop ``fn``: a plain thread cannot be
    interrupted.
    """
    hand_off = hub_offload()
    if hand_off is None:
        return fn(*args, **kwargs)
    return hand_off(fn, *args, **kwargs)


def _either(original: Callable, green: Callable) -> Callable:
    @functools.wraps(original)
    def either(*args: Any, **kwargs: Any) -> Any:
        if hub_offload() is None:
            return original(*args, **kwargs)
        return green(*args, **kwargs)

    return either


def _offloaded(original: Callable) -> Callable:
    # A function, not a partial: as a class attribute (sqlite3's methods) it must bind self.
    @functools.wraps(original)
    def offloaded(*args: Any, **kwargs: Any) -> Any:
        return offload(original, *args, **kwargs)

    return offloaded


class _DispatchingMeta(type):
    """``isinstance(x, socket.socket)`` stays true for real and green instances alike."""

    def __instancecheck__(cls, obj: Any) -> bool:
        if cls.__dict__.get("_dispatching"):
            return isinstance(obj, (cls._original, cls._green))
        return super().__instancecheck__(obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if cls.__dict__.get("_dispatching"):
            return issubclass(sub, (cls._original, cls._green))
        return super().__subclasscheck__(sub)


def _dispatching_class(original: type, green: type) -> type:
    """A stand-in for class ``original`` whose instances are ``green`` ones in a hub's green
    thread and ``original`` ones elsewhere. Subclasses of the stand-in get ``original``'s
    behaviour, as they would have without it."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls.__dict__.get("_dispatching"):
            # Not an instance of ``cls``: Python does not call __init__ again on it.
            return (original if hub_offload() is None else green)(*args, **kwargs)
        return original.__new__(cls)

    namespace = {
        "__new__": __new__,
        "__module__": original.__module__,
        "__qualname__": original.__qualname__,
        "__doc__": original.__doc__,
        "_original": original,
        "_green": green,
        "_dispatching": True,
    }
    return _DispatchingMeta(original.__name__, (original,), namespace)


class _GreenPopen(eventlet.green.subprocess.Popen):
    # eventlet's communicate() waits for the pipes in a real poll(): run it on a plain thread.
    communicate = _offloaded(eventlet.green.subprocess.Popen.communicate)


def _green_ssl_wrap(original: Callable) -> Callable:
    @functools.wraps(original)
    def wrap_socket(self: ssl.SSLContext, sock: Any, *args: Any, **kwargs: Any) -> Any:
        # A green socket wrapped by the real SSLSocket would be put back in blocking mode.
        if isinstance(sock, eventlet.greenio.GreenSocket):
            return eventlet.green.ssl.GreenSSLSocket(sock, *args, _context=self, **kwargs)
        return original(self, sock, *args, **kwargs)

    return wrap_socket


# --- sqlite3 ------------------------------------------------------------------------------------
# sqlite3 waits for a locked database inside C (its busy timeout), out of any green socket's
# reach. A connection opened in a hub's green thread runs its statements on a plain thread
# (the offload) instead; so it must not insist on being used from the thread that opened it.

_CONNECTION_CALLS = ("execute", "executemany", "executescript", "commit", "rollback", "__exit__")
_CURSOR_CALLS = ("execute", "executemany", "executescript", "fetchall", "fetchmany")


def _offloading_connect(original: Callable) -> Callable:
    @functools.wraps(original)
    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        # Positional flags past isolation_level are rare: those calls go through unchanged.
        if hub_offload() is None or len(args) > 3:
            return original(database, *args, **kwargs)
        factory = kwargs.pop("factory", sqlite3.Connection)
        kwargs["check_same_thread"] = False
        return original(database, *args, factory=_offloading_connection(factory), **kwargs)

    return connect


@functools.lru_cache
def _offloading_connection(connection_cls: type) -> type:
    plain_cursor = connection_cls.cursor

    def cursor(self: sqlite3.Connection, factory: type = sqlite3.Cursor) -> sqlite3.Cursor:
        return plain_cursor(self, _offloading_cursor(factory))

    namespace = _offloading_methods(connection_cls, _CONNECTION_CALLS)
    namespace["cursor"] = cursor
    return type(connection_cls.__name__, (connection_cls,), namespace)


@functools.lru_cache
def _offloading_cursor(factory: type) -> type:
    return type(factory.__name__, (factory,), _offloading_methods(factory, _CURSOR_CALLS))


def _offloading_methods(cls: type, names: tuple[str, ...]) -> dict[str, Callable]:
    return {name: _offloaded(getattr(cls, name)) for name in names} | {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
