"""A password on the command line, hidden from other users.

Every local user can read a process's command line (``ps``, ``/proc/PID/cmdline``), while its
environment (``/proc/PID/environ``) is readable by its owner only. So when an argument holds a
URI with a password (``--broker amqp://user:pass@host``, ``--define AMQP_URI=...``), the
command warns once and re-executes itself, same process id, with that argument masked and the
original in the environment variable ``SANDBOX_HIDDEN_ARGS``, read back and removed at once.
The password is visible only until the re-execution, a fraction of a second after start:
``--broker-file`` or ``$SANDBOX_AMQP_URI`` never show it at all.
"""

from __future__ import annotations

import json
import os
import sys

from sandbox.cli import BROKER_VARIABLE, warn
from sandbox.utils.masking import sanitize_url

HIDDEN_ARGS_VARIABLE = "SANDBOX_HIDDEN_ARGS"


def hide_passwords(args: list[str]) -> None:
    """Re-execute this process with the passwords in ``args`` (its ``sys.argv[1:]``) masked;
    return without doing anything when there are none or when it cannot."""
    hidden = hidden_arguments(args)
    if not hidden:
        return
    warn(
        "a password on the command line is visible to every local user: "
        f"use --broker-file or ${BROKER_VARIABLE} instead"
    )
    # sys.orig_argv is the interpreter's own command line (python -m ..., or the script), of
    # which args are the tail unless the caller changed sys.argv.
    prefix = sys.orig_argv[: len(sys.orig_argv) - len(args)]
    if os.name != "posix" or sys.orig_argv[len(prefix) :] != args:
        return
    environment = {**os.environ, HIDDEN_ARGS_VARIABLE: json.dumps(hidden)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [*prefix, *map(sanitize_url, args)], environment)


def hidden_arguments(args: list[str]) -> dict[str, str]:
    """The arguments of ``args`` that hold a password, by index (as text): what
    :func:`restore_passwords` reads back from ``SANDBOX_HIDDEN_ARGS``."""
    return {str(index): arg for index, arg in enumerate(args) if sanitize_url(arg) != arg}


def restore_passwords(args: list[str]) -> list[str]:
    """``args`` with the arguments that :func:`hide_passwords` masked given back, and the
    variable that held them removed from the environment (child processes do not inherit it).

    Only an argument that is the masked form of the hidden one is replaced.
    """
    try:
        hidden = json.loads(os.environ.pop(HIDDEN_ARGS_VARIABLE, "{}"))
    except ValueError:
        return args
    restored = []
    for index, arg in enumerate(args):
        original = hidden.get(str(index)) if isinstance(hidden, dict) else None
        is_masked = isinstance(original, str) and sanitize_url(original) == arg
        restored.append(original if is_masked else arg)
    return restored
