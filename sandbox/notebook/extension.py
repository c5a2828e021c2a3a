"""``%load_ext sandbox``: one line gives a kernel the broker, the web address, ``sb`` and magics."""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

from sandbox import __version__, alias, recorder
from sandbox.config import config
from sandbox.notebook import errors
from sandbox.notebook.client import NotebookClient
from sandbox.notebook.definitions import Definitions
from sandbox.notebook.magics import SandboxMagics
from sandbox.notebook.notices import CellNotices
from sandbox.notebook.output import CellRouter, capture_cell
from sandbox.notebook.session import Session
from sandbox.runtime import add_context_capturer, get_runtime, remove_context_capturer
from sandbox.utils import sanitize_url

_loaded: dict[str, Any] = {}
# (asked, taken) when the configured web address was busy and the kernel took a free port.
_moved_web_address: dict[str, str] = {}


def load(ip, console: bool = False) -> None:
    """Give ``ip`` the runtime, ``sb``, the magics and hot start.

    ``console`` for ``sandbox shell``, which prints its own banner: WEB_SERVER_ADDRESS then
    names a server to call rather than one to bind, the cluster's.
    """
    if _loaded:
        return
    get_runtime()  # one hub thread per kernel; %reload_ext finds it running and reuses it
    add_context_capturer(capture_cell)
    if not console:
        _choose_web_address()
    session = Session()
    session.forget(ip.user_ns.values())
    client = NotebookClient(session)
    definitions = Definitions(ip, session, client)
    ip.register_magics(SandboxMagics(ip, session, client, definitions))
    ip.push({"sb": client})
    router = CellRouter()
    ip.events.register("pre_run_cell", router.pre_run_cell)
    ip.events.register("post_run_cell", router.post_run_cell)
    definitions.install()
    recorder.add_observer(router)
    errors.install(ip)
    notices = CellNotices(ip, router)
    notices.install()
    _loaded.update(
        ip=ip,
        session=session,
        client=client,
        router=router,
        definitions=definitions,
        notices=notices,
    )
    nameko = ", `nameko` is sandbox (Nameko is not installed)" if alias.activate() else ""
    if console:
        return
    print(
        f"sandbox {__version__}: broker {_describe_broker()}, "
        f"HTTP on {_describe_web_address()}{nameko}. "
        "Define a service class in a cell to start it; `sb` is the client, `%sandbox?` helps."
    )


def unload(ip) -> None:
    if not _loaded:
        return
    router = _loaded["router"]
    ip.events.unregister("pre_run_cell", router.pre_run_cell)
    ip.events.unregister("post_run_cell", router.post_run_cell)
    _loaded["definitions"].uninstall()
    _loaded["notices"].uninstall()
    recorder.remove_observer(router)
    errors.uninstall(ip)
    remove_context_capturer(capture_cell)
    _loaded["client"].close()
    _loaded["session"].stop_all(timeout=5)
    if ip.user_ns.get("sb") is _loaded["client"]:
        del ip.user_ns["sb"]
    _loaded.clear()


def _describe_broker() -> str:
    uri = str(config["AMQP_URI"])
    return "memory:// (embedded)" if uri.startswith("memory://") else sanitize_url(uri)


def _describe_web_address() -> str:
    host, _, port = str(config["WEB_SERVER_ADDRESS"]).rpartition(":")
    if port == "0":
        return f"{host or '127.0.0.1'}, a free port chosen when the first service starts"
    return f"http://{host or '127.0.0.1'}:{port}"


def _choose_web_address() -> None:
    """Keep the configured address when it is free, else take a free port on the same host."""
    host, _, port = str(config["WEB_SERVER_ADDRESS"]).rpartition(":")
    host = host or "127.0.0.1"
    if _port_free(host, int(port)):
        config["WEB_SERVER_ADDRESS"] = f"{host}:{port}"
        return
    with socket.socket() as sock:
        sock.bind((host, 0))
        config["WEB_SERVER_ADDRESS"] = f"{host}:{sock.getsockname()[1]}"
    _moved_web_address.update(asked=f"{host}:{port}", taken=config["WEB_SERVER_ADDRESS"])
    print(f"sandbox: port {port} is taken, using {config['WEB_SERVER_ADDRESS']}", file=sys.stderr)


def asked_web_address() -> str:
    """The WEB_SERVER_ADDRESS the user asked for: the configured one, unless the kernel only
    holds it because the address asked for was busy when sandbox loaded."""
    address = str(config["WEB_SERVER_ADDRESS"])
    return _moved_web_address["asked"] if _moved_web_address.get("taken") == address else address


def _port_free(host: str, port: int) -> bool:
    if port == 0:
        return True
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
