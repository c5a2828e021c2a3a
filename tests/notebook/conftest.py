"""Real Jupyter kernels for the notebook tests, driven through jupyter_client."""

from __future__ import annotations

import queue
import socket
import time
from dataclasses import dataclass, field

import pytest
from jupyter_client.manager import start_new_kernel


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    data: list[dict] = field(default_factory=list)
    error: dict | None = None
    # (time.monotonic() on arrival, stream name, text) of each stream message, in order
    streams: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Everything the cell showed as text: streams and text/plain results."""
        shown = [d.get("text/plain", "") for d in self.data]
        return self.stdout + self.stderr + "\n".join(shown)


class Kernel:
    def __init__(self, tmp_path):
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))

    def run(self, code: str, timeout: float = 60, allow_error: bool = False) -> Result:
        msg_id = self.client.execute(code)
        result = self.collect(msg_id, timeout)
        if result.error and not allow_error:
            raise AssertionError(
                f"cell failed: {result.error['ename']}: {result.error['evalue']}\n"
                + "\n".join(result.error["traceback"])
            )
        return result

    def collect(self, msg_id: str, timeout: float) -> Result:
        result = Result()
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no reply within {timeout}s; so far: {result}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                result.streams.append((time.monotonic(), content["name"], content["text"]))
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind in ("execute_result", "display_data"):
                result.data.append(content["data"])
            elif kind == "error":
                result.error = content
            elif kind == "status" and content["execution_state"] == "idle":
                return result

    def page(self, code: str, timeout: float = 60) -> str:
        """What ``code`` (``%magic?``) shows in the pager: the page in the reply's payload."""
        msg_id = self.client.execute(code)
        self.collect(msg_id, timeout)
        while True:  # earlier cells' replies are still queued: nothing else reads them
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        pages = [p for p in reply["content"]["payload"] if p.get("source") == "page"]
        return "".join(p["data"]["text/plain"] for p in pages)

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.shutdown()


@pytest.fixture
def sandbox_kernel(kernel):
    """A kernel with ``%load_ext sandbox`` done, on a free web port."""
    kernel.run("from sandbox.config import config; config['WEB_SERVER_ADDRESS'] = '127.0.0.1:0'")
    kernel.run("%load_ext sandbox")
    return kernel


@pytest.fixture(scope="module")
def module_sandbox_kernel(tmp_path_factory):
    """One sandbox kernel shared by a module's tests, for tests that can share state."""
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    with socket.socket() as sock:  # a real port: sb.http needs to know where to send requests
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    k.run(f"from sandbox.config import config; config['WEB_SERVER_ADDRESS'] = '127.0.0.1:{port}'")
    k.run("%load_ext sandbox")
    yield k
    k.shutdown()


@pytest.fixture(params=["memory", "rabbitmq"])
def broker_kernel(request, sandbox_kernel):
    """A sandbox kernel on the embedded broker, or moved to RabbitMQ with ``sb.connect``."""
    if request.param == "rabbitmq":
        uri = request.getfixturevalue("vhost_uri")
        connected = sandbox_kernel.run(f"sb.connect({uri!r})")
        assert connected.stdout.startswith("connected to amqp://guest:********@")
    return sandbox_kernel
