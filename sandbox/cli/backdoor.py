"""``sandbox backdoor [HOST:]PORT``: a Python console inside a running ``sandbox run``.

As with ``nameko backdoor``: ``sandbox run --backdoor-port [HOST:]PORT`` serves an eventlet
backdoor (HOST defaults to localhost), where each connection gets an interactive interpreter
that runs in the services' green thread, with ``runner``, the process's ServiceRunner, at hand.
``sandbox backdoor`` connects to it with netcat, nc or telnet, through rlwrap when it is
installed. Ctrl-C (or Ctrl-D) closes the console; ``exit()`` and ``quit()`` refuse, as they
would stop the services rather than the console.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess

import eventlet
from eventlet import backdoor as eventlet_backdoor

from sandbox.exceptions import CommandError
from sandbox.runners import ServiceRunner
from sandbox.runtime import get_runtime

DEFAULT_HOST = "localhost"
CLIENTS = ("netcat", "nc", "telnet")
# What makes each netcat close the connection when its input ends (Ctrl-D), by the name of the
# program that the command links to: the flags differ, and a wrong one is a usage error.
_CLOSE_ON_EOF = {"nc.openbsd": ["-N"], "nc.traditional": ["-q", "0"], "netcat": ["--close"]}


HELP = "open a console in a running `sandbox run --backdoor-port`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="[HOST:]PORT", type=backdoor_address, help="where the backdoor listens"
    )
    parser.add_argument(
        "--rlwrap",
        action=argparse.BooleanOptionalAction,
        help="line editing with rlwrap (default: when it is installed)",
    )


def backdoor_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` as ``(host, port)``, HOST defaulting to localhost (an argparse type)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}")
    return host or DEFAULT_HOST, int(port)


def handle(args: argparse.Namespace) -> int:
    """Connect to the backdoor of a running `sandbox run --backdoor-port [HOST:]PORT`: a Python
    console in the services' process, with `runner` at hand. Needs netcat, nc or telnet.
    Ctrl-C closes it."""
    host, port = args.target
    command = client_command(host, port, args.rlwrap)
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:  # Ctrl-C is how one leaves the console
        print()
        return 0
    if code != 0:
        raise CommandError(f"backdoor unreachable on {host}:{port}")
    return 0


def client_command(host: str, port: int, rlwrap: bool | None) -> list[str]:
    """The netcat, nc or telnet command line that connects to ``host:port``."""
    program = next((path for path in map(shutil.which, CLIENTS) if path), None)
    if program is None:
        raise CommandError(
            f"no {', '.join(CLIENTS[:-1])} or {CLIENTS[-1]} on PATH to connect with: "
            "install one (apt-get install netcat-openbsd)"
        )
    flags = _CLOSE_ON_EOF.get(os.path.basename(os.path.realpath(program)), [])
    command = [program, *flags, host, str(port)]
    if rlwrap is None:
        rlwrap = shutil.which("rlwrap") is not None
    return ["rlwrap", *command] if rlwrap else command


# --- the server, in `sandbox run` ---------------------------------------------------------


def serve_backdoor(runner: ServiceRunner, address: tuple[str, int]) -> tuple[str, int]:
    """Serve the backdoor on ``address`` from the services' hub; return the address bound."""
    return get_runtime().call(_serve, runner, address)


def _serve(runner: ServiceRunner, address: tuple[str, int]) -> tuple[str, int]:
    try:
        listener = eventlet.listen(address)
    except OSError as exc:
        reason = exc.strerror or exc
        raise CommandError(
            f"cannot serve the backdoor on {address[0]}:{address[1]}: {reason}"
        ) from None
    namespace = {"runner": runner, "exit": _refuse_exit, "quit": _refuse_exit}
    get_runtime().spawn(eventlet_backdoor.backdoor_server, listener, locals=namespace)
    host, port = listener.getsockname()[:2]
    return host, port


def _refuse_exit(*args: object) -> None:
    raise RuntimeError("this would stop the services, not close the backdoor: close it with Ctrl-C")
