"""Helpers shared by the test directories: `sandbox` commands run as separate processes."""

import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox import recorder

SOURCE_ROOT = Path(__file__).resolve().parents[1]


class Cli:
    """A `sandbox` process whose stderr lines are collected by a thread as they come."""

    def __init__(self, *args, cwd, env=None):
        pythonpath = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli.main", *args],
            cwd=cwd,
            env={**os.environ, **(env or {}), "PYTHONPATH": pythonpath},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(f"no line with {text!r} in stderr:\n{''.join(self.lines)}")
            self.lines.append(line)
            if text in line:
                return line

    def finish(self, timeout=30):
        """Wait for the exit; return the exit code and the whole stderr. A process still
        running after ``timeout`` seconds is killed, and the test fails with its stderr."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.lines.append(line)
        if code is None:
            pytest.fail(f"still running {timeout}s later; its stderr:\n{''.join(self.lines)}")
        return code, "".join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def cli(tmp_path):
    processes = []

    def start(*args, modules=None, env=None):
        for name, source in (modules or {}).items():
            (tmp_path / f"{name}.py").write_text(source)
        processes.append(Cli(*args, cwd=tmp_path, env=env))
        return processes[-1]

    yield start
    for process in processes:
        process.kill()


class Observed(list):
    """A recorder observer that keeps what it is told of one ``event``, in order."""

    def __init__(self, event: str):
        super().__init__()
        setattr(self, event, self.append)


@pytest.fixture
def taken_port():
    """A port of 127.0.0.1 that another socket listens on for the whole test."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.fixture
def published():
    """Every message published during the test (RPC requests and replies, events...), as the
    recorder is told of it."""
    observed = Observed("message_published")
    recorder.add_observer(observed)
    yield observed
    recorder.remove_observer(observed)


@pytest.fixture
def access_log():
    """Every HTTP request the recorder is told of during the test."""
    observed = Observed("http_request")
    recorder.add_observer(observed)
    yield observed
    recorder.remove_observer(observed)


@pytest.fixture
def vhost_uri(rabbit_manager):
    """A fresh RabbitMQ vhost, for processes that must meet on RabbitMQ (skipped, with the
    reason, when RabbitMQ is unreachable)."""
    vhost = f"sandbox-test-{uuid.uuid4().hex[:12]}"
    rabbit_manager.create_vhost(vhost)
    yield rabbit_manager.uri_for(vhost)
    rabbit_manager.delete_vhost(vhost)
