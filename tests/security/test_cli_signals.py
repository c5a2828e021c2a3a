"""``sandbox run`` as a process manager sees it: signals after the stop, limits at start."""

import signal

import pytest

# A service whose process, once its services stopped, is held at exit (as a leftover thread
# or a slow atexit hook would hold it) until a signal ends it.
HELD_AT_EXIT = """
import atexit
import sys
import threading

from sandbox.rpc import rpc


class Held:
    name = "held"

    @rpc
    def ping(self):
        return "pong"


def hold():
    print("held at exit", file=sys.stderr, flush=True)
    threading.Event().wait(120)


atexit.register(hold)
"""


@pytest.mark.parametrize("late_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_graceful_stop_ends_the_process_with_code_0(cli, late_signal):
    process = cli("run", "held", modules={"held": HELD_AT_EXIT})
    process.wait_for_line("started service")
    process.proc.send_signal(signal.SIGTERM)
    process.wait_for_line("stopped")
    process.wait_for_line("held at exit")
    process.proc.send_signal(late_signal)
    code, stderr = process.finish(timeout=30)
    assert code == 0
    assert f"{late_signal.name}: already stopped, exiting" in stderr
