"""``sandbox shell``: IPython with ``sb`` connected to the configured broker, like ``nameko shell``.

``sb.rpc.<service>.<method>(...)``, ``sb.dispatch(...)`` and ``sb.http`` reach the services of
the cluster the config names; the magics (``%rpc``, ``%dispatch``...) work as in a notebook.
Without IPython it falls back to Python's plain interactive console.
"""

from __future__ import annotations

import argparse
import code
import sys
import traceback

from sandbox import alias
from sandbox.cli import add_config_arguments, config_from_args
from sandbox.config import config
from sandbox.exceptions import CommandError
from sandbox.utils import sanitize_url


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shell",
        help="an interactive shell with `sb` connected to the broker",
        description=(
            "Open IPython with `sb`, the client, connected to the configured broker: "
            "sb.rpc.SERVICE.METHOD(...), sb.dispatch(SERVICE, EVENT, PAYLOAD), sb.http.get(PATH)."
        ),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--command", metavar="CODE", help="run CODE in the shell and exit (for scripts)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="use Python's plain console even if IPython is here"
    )
    parser.set_defaults(handler=shell)


def shell(args: argparse.Namespace) -> int:
    config.setup(config_from_args(args))
    alias.activate()
    if not args.plain:
        try:
            return ipython_shell(args.command)
        except ModuleNotFoundError as exc:
            if exc.name != "IPython":
                raise
    return plain_shell(args.command)


def ipython_shell(command: str | None) -> int:
    from IPython import start_ipython
    from IPython.core.getipython import get_ipython
    from traitlets.config import Config

    from sandbox.notebook.extension import unload

    settings = Config()
    settings.InteractiveShellApp.extensions = [__name__]
    settings.TerminalIPythonApp.display_banner = False
    settings.TerminalInteractiveShell.confirm_exit = False
    try:
        start_ipython(argv=["-c", command] if command is not None else [], config=settings)
    except SystemExit as exc:  # IPython exits this way when the command failed
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        ip = get_ipython()
        if ip is not None:
            unload(ip)
    return 0


def load_ipython_extension(ip) -> None:
    """How the shell's IPython loads sandbox: WEB_SERVER_ADDRESS is the cluster's, to call."""
    from sandbox.notebook.extension import load

    load(ip, keep_web_address=True)


def plain_shell(command: str | None) -> int:
    try:
        from sandbox.notebook.client import Client
        from sandbox.notebook.session import Session
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"the shell needs {exc.name}: pip install 'service-sandbox[notebook]'"
        ) from None
    client = Client(Session())
    namespace = {"sb": client, "config": config, "__name__": "__console__"}
    try:
        if command is None:
            code.interact(banner=banner(), local=namespace, exitmsg="")
            return 0
        try:
            exec(compile(command, "<command>", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            return 1
        return 0
    finally:
        client.close()


def banner() -> str:
    return (
        f"sandbox shell, Python {sys.version.split()[0]}, broker "
        f"{sanitize_url(str(config['AMQP_URI']))}. `sb` is the client: "
        "sb.rpc.SERVICE.METHOD(...), sb.dispatch(SERVICE, EVENT, PAYLOAD), sb.http.get(PATH)."
    )
