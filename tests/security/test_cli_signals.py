"""``sandbox run`` as a process manager sees it: signals after the stop, limits at start."""

import resource
import signal
from pathlib import Path

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


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/PID/limits")
def test_run_raises_its_open_files_limit_to_the_hard_limit_and_logs_it(cli):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 256)
    if low == hard:
        pytest.skip("the hard limit of open files is as low as the soft one")
    # The child inherits the limits of the test process at its start.
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        process = cli("run", "held", modules={"held": HELD_AT_EXIT})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    line = process.wait_for_line("open files:")
    process.wait_for_line("started service")
    limits = Path(f"/proc/{process.proc.pid}/limits").read_text()
    files = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert files.split()[3:5] == [hard_text, hard_text]
    assert f"open files: at most {hard_text} (raised from {low})" in line
    process.kill()
