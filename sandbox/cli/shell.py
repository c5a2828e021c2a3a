"""``sandbox shell``: IPython with ``sb`` and ``n`` connected to the configured broker.

``sb.rpc.<service>.<method>(...)``, ``sb.dispatch(...)`` and ``sb.http`` reach the services of
the cluster the config names: ``sb.http`` sends paths to ``--http URL``, else to the config's
WEB_SERVER_ADDRESS (on this host when it binds every interface); the magics (``%rpc``,
``%dispatch``...) work as in a notebook.
``n`` is ``nameko shell``'s: ``n.rpc.<service>.<method>(...)``,
``n.dispatch_event(service, event_type, event_data)``, ``n.config`` and ``n.disconnect()``.
Without IPython it falls back to Python's plain interactive console.

With piped input, as in ``nameko shell``, the first statement that raises ends the shell with
exit code 1 (``sys.exit(N)`` with N); a syntax error is shown and the rest still runs.
"""

from __future__ import annotations

import argparse
import code
import sys
import traceback
from collections.abc import Mapping
from types import CodeType, ModuleType
from typing import Any

from sandbox import __version__, alias
from sandbox.cli import add_config_arguments, config_from_args
from sandbox.config import config
from sandbox.exceptions import CommandError
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.utils import sanitize_url

HELP = "an interactive shell with `sb` connected to the broker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--command", metavar="CODE", help="run CODE in the shell and exit (for scripts)"
    )
    parser.add_argument(
        "--http",
        metavar="URL",
        help="where sb.http sends its requests, e.g. http://my-cluster:8000 "
        "(default: the config's WEB_SERVER_ADDRESS)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="use Python's plain console even if IPython is here"
    )


def handle(args: argparse.Namespace) -> int:
    """Open IPython with `sb`, the client, connected to the configured broker:
    sb.rpc.SERVICE.METHOD(...), sb.dispatch(SERVICE, EVENT, PAYLOAD), sb.http.get(PATH); and
    Nameko's `n`: n.rpc.SERVICE.METHOD(...), n.dispatch_event(SERVICE, EVENT, PAYLOAD). With
    piped input, the first statement that raises exits with code 1."""
    config.setup(config_from_args(args))
    alias.activate()
    helper = NamekoShellHelper(config)
    try:
        if not args.plain:
            try:
                return ipython_shell(args.command, helper, args.http)
            except ModuleNotFoundError as exc:
                if (exc.name or "").partition(".")[0] != "IPython":
                    raise
        return plain_shell(args.command, helper, args.http)
    finally:
        helper.disconnect()


class NamekoShellHelper(ModuleType):
    """``n``, as in ``nameko shell``: Nameko's helper for calling services and dispatching
    events.

    Usage::

        >>> n.rpc.service.method()
        "reply"

        >>> n.dispatch_event("service", "event_type", "event_data")

    ``n.config`` is the shell's config; ``n.disconnect()`` closes ``n.rpc``'s connection, which
    opens on first use.
    """

    def __init__(self, settings: Mapping[str, Any]):
        super().__init__("nameko", type(self).__doc__)
        self.config = settings
        self.dispatch_event = event_dispatcher(settings)
        self._proxy = ClusterRpcProxy(settings)
        self._rpc: Any = None

    @property
    def rpc(self) -> Any:
        # Connected on first use, so that a shell opens at once, broker or not.
        if self._rpc is None:
            self._rpc = self._proxy.start()
        return self._rpc

    def disconnect(self) -> None:
        self._proxy.stop()


def ipython_shell(command: str | None, helper: NamekoShellHelper, http: str | None) -> int:
    from IPython.terminal.ipapp import TerminalIPythonApp
    from traitlets.config import Config

    from sandbox.notebook.extension import unload

    settings = Config()
    settings.InteractiveShellApp.extensions = [__name__]
    settings.TerminalIPythonApp.display_banner = False
    settings.TerminalInteractiveShell.confirm_exit = False
    # start_ipython, in steps: the shell must exist to be told to stop at a failure.
    app = TerminalIPythonApp.instance(config=settings, user_ns={"n": helper})
    stop = None
    try:
        _extension_options["http"] = http
        app.initialize(["-c", command] if command is not None else [])
        if command is None and not sys.stdin.isatty():
            stop = FirstFailure(app.shell)
            app.shell.events.register("post_run_cell", stop)
        app.start()
    except SystemExit as exc:  # IPython exits this way when the command failed
        return exit_code(exc)
    finally:
        if app.shell is not None:
            unload(app.shell)
    return stop.code if stop else 0


class FirstFailure:
    """A ``post_run_cell`` callback that ends IPython's shell ``ip`` at the first statement that
    raises, as ``nameko shell`` does with piped input; ``code`` is then the exit code."""

    def __init__(self, ip: Any) -> None:
        self.ip = ip
        self.code = 0

    def __call__(self, result: Any) -> None:
        if result.error_in_exec is not None:
            self.code = exit_code(result.error_in_exec)
            self.ip.ask_exit()


def exit_code(error: BaseException) -> int:
    """The exit code of a process that ``error`` ends, as Python computes it."""
    if not isinstance(error, SystemExit):
        return 1
    if error.code is None:
        return 0
    return error.code if isinstance(error.code, int) else 1


# What the shell tells the extension, which IPython loads by name.
_extension_options: dict[str, Any] = {}


def load_ipython_extension(ip) -> None:
    """How the shell's IPython loads sandbox: WEB_SERVER_ADDRESS is the cluster's, to call."""
    from sandbox.notebook.extension import load

    load(ip, console=True)
    client = ip.user_ns["sb"]
    client.http.base_url = _extension_options.get("http")
    print(banner(client))


def plain_shell(command: str | None, helper: NamekoShellHelper, http: str | None) -> int:
    try:
        from sandbox.notebook.client import NotebookClient
        from sandbox.notebook.session import Session
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"the shell needs {exc.name}: pip install 'service-sandbox[notebook]'"
        ) from None
    client = NotebookClient(Session())
    client.http.base_url = http
    namespace = {"sb": client, "n": helper, "config": config, "__name__": "__console__"}
    try:
        if command is None:
            console = PipedConsole(namespace, stop_at_failure=not sys.stdin.isatty())
            console.interact(banner=banner(client), exitmsg="")
            return 0
        try:
            exec(compile(command, "<command>", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            return 1
        return 0
    finally:
        client.close()


class PipedConsole(code.InteractiveConsole):
    """Python's console; with ``stop_at_failure``, the first statement that raises ends the
    process with exit code 1, as ``nameko shell`` does with piped input."""

    def __init__(self, namespace: dict[str, Any], stop_at_failure: bool):
        super().__init__(namespace)
        self.stop_at_failure = stop_at_failure

    def runcode(self, code: CodeType) -> None:
        try:
            exec(code, self.locals)
        except SystemExit:
            raise
        except BaseException:
            self.showtraceback()
            if self.stop_at_failure:
                raise SystemExit(1) from None


def banner(client: Any) -> str:
    return (
        f"sandbox shell {__version__}, Python {sys.version.split()[0]}: broker "
        f"{sanitize_url(str(config['AMQP_URI']))}, HTTP to {client.http.url_of('')}. "
        "`sb` is the client: "
        "sb.rpc.SERVICE.METHOD(...), sb.dispatch(SERVICE, EVENT, PAYLOAD), sb.http.get(PATH). "
        "`n` is Nameko's: n.rpc.SERVICE.METHOD(...), n.dispatch_event(SERVICE, EVENT, PAYLOAD)."
        + (" `nameko` is sandbox (Nameko is not installed)." if alias.activate() else "")
    )
