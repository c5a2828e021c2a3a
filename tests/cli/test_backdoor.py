"""`sandbox run --backdoor-port` and `sandbox backdoor`, as `nameko run --backdoor-port` and
`nameko backdoor`: real processes, a real socket and the real netcat."""

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox.cli.backdoor import CLIENTS
from sandbox.testing.utils import find_free_port

SERVICE = """
from sandbox.extensions import Entrypoint


class Greeter:
    name = "greeter"

    @Entrypoint.decorator
    def hello(self):
        pass
"""

SOURCE_ROOT = Path(__file__).resolve().parents[2]
PROMPT = b">>> "


def run_with_backdoor(cli, address="0"):
    """Start `sandbox run` with a backdoor; return the process and the address it serves."""
    proc = cli("run", "services", "--backdoor-port", address, modules={"services": SERVICE})
    line = proc.wait_for_line("backdoor on ")
    host, port = re.search(r"backdoor on ([^:]+):(\d+)", line).groups()
    proc.wait_for_line("started service greeter")
    return proc, (host, int(port))


class Console:
    """A connection to a backdoor, one command at a time."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=30)
        self.banner = self.read_prompt()

    def read_prompt(self):
        received = b""
        while not received.endswith(PROMPT):
            chunk = self.sock.recv(4096)
            if not chunk:
                pytest.fail(f"the backdoor closed the connection after {received!r}")
            received += chunk
        return received[: -len(PROMPT)].decode()

    def run(self, line):
        self.sock.sendall(line.encode() + b"\n")
        return self.read_prompt()


def test_run_serves_a_console_with_the_runner_on_localhost(cli):
    proc, address = run_with_backdoor(cli)
    assert address[0] == "127.0.0.1"
    console = Console(address)
    assert "(InteractiveConsole)" in console.banner
    assert console.run("print(runner.service_names)") == "['greeter']\n"
    assert console.run("print(runner.containers[0].service_name)") == "greeter\n"
    for leave in ("exit()", "quit()"):
        refused = console.run(leave)
        assert "RuntimeError: this would stop the services, not close the backdoor" in refused
    console.sock.close()

    # Still serving: a second console, where the runner is the live one.
    console = Console(address)
    console.sock.sendall(b"runner.stop()\n")
    code, stderr = proc.finish()
    assert code == 0
    assert "stopped" in stderr


def test_run_with_a_host_and_sigterm_while_a_console_is_open(cli):
    port = find_free_port()
    proc, address = run_with_backdoor(cli, f"127.0.0.1:{port}")
    assert address == ("127.0.0.1", port)
    console = Console(address)
    proc.proc.send_signal(signal.SIGTERM)
    code, _ = proc.finish()
    assert code == 0
    console.sock.close()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("x", "argument --backdoor-port: expected [HOST:]PORT, got 'x'"),
        (
            "localhost:70000",
            "argument --backdoor-port: expected [HOST:]PORT, got 'localhost:70000'",
        ),
        ("127.0.0.1:{port}", "sandbox: error: cannot serve the backdoor on 127.0.0.1:{port}: "),
    ],
)
def test_run_backdoor_errors_are_one_line(cli, address, message, taken_port):
    port = str(taken_port)
    proc = cli(
        "run",
        "services",
        "--backdoor-port",
        address.format(port=port),
        modules={"services": SERVICE},
    )
    code, stderr = proc.finish()
    assert code == 2
    assert message.format(port=port) in stderr.splitlines()[-1]
    assert "Traceback" not in stderr


# --- `sandbox backdoor` ------------------------------------------------------------------------


def backdoor_client(*args, path=None):
    """`sandbox backdoor ARGS` with pipes; PATH set to ``path`` when given."""
    pythonpath = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    if path is not None:
        env["PATH"] = str(path)
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli.main", "backdoor", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_without_netcat_nor_telnet_the_error_says_what_to_install(tmp_path):
    client = backdoor_client("1234", path=tmp_path)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 2
    assert stderr == (
        "sandbox: error: no netcat, nc or telnet on PATH to connect with: "
        "install one (apt-get install netcat-openbsd)\n"
    )


needs_netcat = pytest.mark.skipif(
    not any(map(shutil.which, CLIENTS[:2])), reason="needs netcat or nc (netcat-openbsd)"
)


def lines_of(stream):
    lines = queue.Queue()

    def read():
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_output(lines, text, timeout=30):
    deadline = time.monotonic() + timeout
    seen = []
    while not any(text in line for line in seen):
        try:
            seen.append(lines.get(timeout=max(0, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"no {text!r} in the output: {''.join(seen)!r}")


@needs_netcat
def test_backdoor_connects_with_netcat_and_ctrl_d_closes(cli):
    _, (host, port) = run_with_backdoor(cli)
    client = backdoor_client(f"{host}:{port}", "--no-rlwrap")
    try:
        output = lines_of(client.stdout)
        wait_for_output(output, "(InteractiveConsole)")
        client.stdin.write("print(sorted(runner.service_names))\n")
        client.stdin.flush()
        wait_for_output(output, "['greeter']")
        client.stdin.close()  # Ctrl-D
        assert client.wait(timeout=30) == 0
    finally:
        client.kill()


@needs_netcat
def test_nothing_listening_is_a_one_line_error():
    port = find_free_port()
    client = backdoor_client(str(port))
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 2
    assert stderr.splitlines()[-1] == f"sandbox: error: backdoor unreachable on localhost:{port}"
