"""Attacks on a deployed service: ``sandbox run`` as a process of its own, serving HTTP and RPC.

``serve(amqp_uri, **config)`` starts one on a free port and returns it once its service has
started; every attack test that can runs against such a process, not only in-process.
"""

import uuid
from dataclasses import dataclass

import pytest
import yaml

from sandbox.testing.utils import find_free_port

TARGET = """
from sandbox.rpc import rpc
from sandbox.web.handlers import http


class Target:
    name = "target"

    @rpc
    def echo(self, value):
        return value

    @http("GET", "/ping")
    def ping(self, request):
        return "pong"

    @http("POST", "/echo")
    def echo_body(self, request):
        return request.get_data(as_text=True)
"""


@dataclass
class Served:
    """A running ``sandbox run`` of :data:`TARGET` (or another module)."""

    process: object  # tests.conftest.Cli: .proc, .wait_for_line(), .finish(), .lines
    host: str
    port: int
    config: dict

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def serve(cli, tmp_path):
    """``serve(amqp_uri="memory://", module=TARGET, env=None, **config) -> Served``.

    The config goes in a file (a password never on the command line); extra keys override."""

    def start(amqp_uri: str = "memory://", module: str = TARGET, env=None, **config) -> Served:
        port = find_free_port()
        settings = {"AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}", **config}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
        process = cli(
            "run", "target", "--config", "config.yaml", modules={"target": module}, env=env
        )
        process.wait_for_line("started service")
        return Served(process, "127.0.0.1", port, settings)

    return start


@pytest.fixture
def rabbitmq_uri(rabbit_manager):
    """The AMQP URI of a fresh RabbitMQ vhost (deleted after the test): a process's broker that
    the test reaches too, as the embedded broker of another process cannot be."""
    vhost = f"sandbox-security-{uuid.uuid4().hex[:12]}"
    yield rabbit_manager.create_vhost_for_amqp_user(vhost)
    rabbit_manager.delete_vhost(vhost)
