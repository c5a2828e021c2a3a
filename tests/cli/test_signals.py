import queue
import subprocess
import sys
import time

import pytest

from sandbox.cli.signals import SIGNAL_LATENCY, next_event

# The main thread waits on the queue while SIGUSR1 can only land on another thread: the
# kernel hands a process's signal to any thread that does not block it.
TAKEN_BY_ANOTHER_THREAD = """
import queue, signal, sys, threading, time
from sandbox.cli.signals import next_event

events = queue.SimpleQueue()
signal.signal(signal.SIGUSR1, lambda signum, frame: events.put("signalled"))
other = threading.Thread(target=time.sleep, args=(60,), daemon=True)
other.start()  # it keeps SIGUSR1 open: a thread starts with its creator's mask
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
signal.pthread_kill(other.ident, signal.SIGUSR1)
print(next_event(events), flush=True)
"""


def test_a_queued_event_comes_at_once():
    events = queue.SimpleQueue()
    events.put("stop")
    assert next_event(events) == "stop"


def test_nothing_within_the_timeout_is_empty_after_it():
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        next_event(queue.SimpleQueue(), timeout=SIGNAL_LATENCY * 2)
    assert time.monotonic() - started >= SIGNAL_LATENCY * 2


def test_a_signal_another_thread_took_is_handled_while_the_main_thread_waits():
    done = subprocess.run(
        [sys.executable, "-c", TAKEN_BY_ANOTHER_THREAD], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "signalled", done.stderr
