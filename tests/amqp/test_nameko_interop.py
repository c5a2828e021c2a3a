"""Wire compatibility with Nameko 2.14.1 on RabbitMQ, both ways, for RPC, events and context.

Nameko runs from its own venv (``scripts/nameko-venv.sh``, made on first use and cached): its
service with ``nameko run``, its client as a script; both talk to a sandbox service in this
process over one fresh vhost. Every wait is on a line the other process prints.
"""

import json
import queue
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox.amqp.pool import close_pools
from sandbox.containers import ServiceContainer
from sandbox.events import EventDispatcher, event_handler
from sandbox.exceptions import IncorrectSignature, MethodNotFound, RemoteError
from sandbox.extensions import DependencyProvider
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.testing.services import entrypoint_waiter

ROOT = Path(__file__).resolve().parents[2]
STANDALONE = r"standalone_rpc_proxy\.call\.[0-9a-f-]{36}"

# The first test also makes Nameko's venv when it is missing (pip, about 25 s here).
pytestmark = pytest.mark.timeout(600)

NAMEKO_SERVICE = """
import json

from nameko.events import EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc


class Context(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


def seen(ctx, value):
    return {"value": value, "stack": ctx.call_id_stack, "custom": ctx.data.get("custom")}


class NamekoService:
    name = "nameko_svc"
    ctx = Context()
    dispatch = EventDispatcher()
    sandbox = RpcProxy("sandbox_svc")

    @rpc
    def echo(self, value):
        return seen(self.ctx, value)

    @rpc
    def fail(self, message):
        raise ValueError(message)

    @rpc
    def relay(self, value):
        return self.sandbox.echo(value)

    @rpc
    def emit(self, payload):
        self.dispatch("pinged", payload)

    @event_handler("sandbox_svc", "ponged")
    def on_pong(self, payload):
        print(json.dumps({"event": seen(self.ctx, payload)}), flush=True)
"""

NAMEKO_CLIENT = """
import json, sys

from nameko.exceptions import IncorrectSignature, MethodNotFound, RemoteError
from nameko.standalone.rpc import ClusterRpcProxy


def outcome(call, *args):
    try:
        return {"result": call(*args)}
    except RemoteError as exc:
        return {"remote_error": [exc.exc_type, exc.value]}
    except (MethodNotFound, IncorrectSignature) as exc:
        return {"instance": [type(exc).__name__, str(exc)]}


config = {"AMQP_URI": sys.argv[1]}
with ClusterRpcProxy(config, context_data={"custom": "from-nameko"}, timeout=10) as cluster:
    service = cluster.sandbox_svc
    outcomes = {
        "echo": outcome(service.echo, "hi"),
        "fail": outcome(service.fail, "boom"),
        "missing": outcome(service.no_such_method),
        "signature": outcome(service.echo),
        "emit": outcome(service.emit, {"from": "nameko-client"}),
    }
    print(json.dumps({"outcomes": outcomes}), flush=True)
"""

# nameko run says when every consumer is up only in a DEBUG line of nameko.runners.
NAMEKO_LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {"nameko.runners": {"level": "DEBUG"}},
}


class Context(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


def seen(ctx, value):
    """What a worker saw: the value it got and the context it ran in."""
    return {"value": value, "stack": ctx.call_id_stack, "custom": ctx.data.get("custom")}


class SandboxService:
    name = "sandbox_svc"
    ctx = Context()
    dispatch = EventDispatcher()

    @rpc
    def echo(self, value):
        return seen(self.ctx, value)

    @rpc
    def fail(self, message):
        raise ValueError(message)

    @rpc
    def emit(self, payload):
        self.dispatch("ponged", payload)

    @event_handler("nameko_svc", "pinged")
    def on_ping(self, payload):
        return seen(self.ctx, payload)


class Process:
    """A subprocess whose output lines (stdout and stderr) are collected as they come."""

    def __init__(self, args, cwd):
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.output = []
        self._lines = queue.Queue()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, match, timeout=20):
        """The first new line for which ``match(line)`` is true."""
        deadline = time.monotonic() + timeout
        ended = 0
        while ended < 2:
            try:
                line = self._lines.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                ended += 1
                continue
            self.output.append(line)
            if match(line):
                return line
        pytest.fail(f"no such line from {self.proc.args}; its output:\n{''.join(self.output)}")

    def json_line(self, key, timeout=20):
        """The value of ``key`` in the next line that is a JSON object starting with it."""
        line = self.wait_for(lambda line: line.startswith(f'{{"{key}"'), timeout)
        return json.loads(line)[key]

    def kill(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def nameko_python(rabbit_manager):
    """Nameko 2.14.1's python; its venv is made once (about 25 s) and kept in .venv-nameko."""
    made = subprocess.run(
        ["bash", str(ROOT / "scripts" / "nameko-venv.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if made.returncode != 0:
        pytest.fail(f"scripts/nameko-venv.sh failed:\n{made.stderr}")
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def amqp_config(rabbit_manager):
    vhost = f"sandbox-interop-{uuid.uuid4().hex[:12]}"
    rabbit_manager.create_vhost(vhost)
    config = {"AMQP_URI": rabbit_manager.uri_for(vhost)}
    yield config
    get_runtime().call(close_pools, config["AMQP_URI"])
    rabbit_manager.delete_vhost(vhost)


@pytest.fixture(scope="module")
def sandbox_service(amqp_config):
    container = ServiceContainer(SandboxService, amqp_config)
    container.start()
    yield container
    container.kill()


@pytest.fixture(scope="module")
def nameko_service(nameko_python, amqp_config, sandbox_service, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nameko")
    (workdir / "nameko_service.py").write_text(NAMEKO_SERVICE)
    config = {**amqp_config, "LOGGING": NAMEKO_LOGGING}
    (workdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    nameko = str(Path(nameko_python).parent / "nameko")
    process = Process([nameko, "run", "--config", "config.yaml", "nameko_service"], workdir)
    try:
        process.wait_for(lambda line: "services started" in line, timeout=30)
        yield process
    finally:
        process.kill()


@pytest.fixture
def cluster(amqp_config, nameko_service):
    with ClusterRpcProxy(amqp_config, context_data={"custom": "from-sandbox"}, timeout=10) as proxy:
        yield proxy


def test_a_sandbox_client_calls_a_nameko_service(cluster):
    echo = cluster.nameko_svc.echo("hi")
    assert (echo["value"], echo["custom"]) == ("hi", "from-sandbox")
    assert_stack(echo["stack"], STANDALONE, "nameko_svc.echo")

    with pytest.raises(MethodNotFound, match="no_such_method"):
        cluster.nameko_svc.no_such_method()
    with pytest.raises(IncorrectSignature):
        cluster.nameko_svc.echo()
    with pytest.raises(RemoteError) as raised:
        cluster.nameko_svc.fail("boom")
    assert (raised.value.exc_type, raised.value.value) == ("ValueError", "boom")


def test_context_travels_sandbox_to_nameko_to_sandbox(cluster):
    echo = cluster.nameko_svc.relay("there and back")
    assert (echo["value"], echo["custom"]) == ("there and back", "from-sandbox")
    assert_stack(echo["stack"], STANDALONE, "nameko_svc.relay", "sandbox_svc.echo")


def test_a_nameko_client_calls_a_sandbox_service(nameko_python, amqp_config, nameko_service):
    client = Process([nameko_python, "-c", NAMEKO_CLIENT, amqp_config["AMQP_URI"]], ROOT)
    outcomes = client.json_line("outcomes")
    echo = outcomes["echo"]["result"]
    assert (echo["value"], echo["custom"]) == ("hi", "from-nameko")
    assert_stack(echo["stack"], STANDALONE, "sandbox_svc.echo")
    # Errors arrive as Nameko's own: its built-in ones as instances, others as RemoteError.
    assert outcomes["fail"] == {"remote_error": ["ValueError", "boom"]}
    assert outcomes["missing"] == {"instance": ["MethodNotFound", "no_such_method"]}
    assert outcomes["signature"]["instance"][0] == "IncorrectSignature"
    assert outcomes["emit"] == {"result": None}
    # ...and the event the sandbox service dispatched reached the Nameko handler.
    event = nameko_service.json_line("event")
    assert (event["value"], event["custom"]) == ({"from": "nameko-client"}, "from-nameko")
    assert_stack(event["stack"], STANDALONE, "sandbox_svc.emit", "nameko_svc.on_pong")
    assert client.proc.wait(10) == 0


def test_nameko_events_reach_sandbox_handlers(cluster, sandbox_service):
    with entrypoint_waiter(sandbox_service, "on_ping", timeout=10) as waited:
        cluster.nameko_svc.emit({"n": 1})
    event = waited.get()
    assert (event["value"], event["custom"]) == ({"n": 1}, "from-sandbox")
    assert_stack(event["stack"], STANDALONE, "nameko_svc.emit", "sandbox_svc.on_ping")


def test_sandbox_events_reach_nameko_handlers(cluster, amqp_config, nameko_service):
    cluster.sandbox_svc.emit({"n": 2})
    event = nameko_service.json_line("event")
    assert (event["value"], event["custom"]) == ({"n": 2}, "from-sandbox")
    assert_stack(event["stack"], STANDALONE, "sandbox_svc.emit", "nameko_svc.on_pong")

    # The standalone dispatcher sends no context, as Nameko's does not.
    event_dispatcher(amqp_config)("sandbox_svc", "ponged", {"n": 3})
    event = nameko_service.json_line("event")
    assert (event["value"], event["custom"]) == ({"n": 3}, None)
    assert_stack(event["stack"], "nameko_svc.on_pong")


def assert_stack(stack, *patterns):
    """Each call id of ``stack`` is ``{pattern}`` or ``{pattern}.{uuid}``, in order."""
    assert len(stack) == len(patterns), stack
    for call_id, pattern in zip(stack, patterns, strict=True):
        if pattern != STANDALONE:
            pattern = pattern.replace(".", r"\.") + r"\.[0-9a-f-]{36}"
        assert re.fullmatch(pattern, call_id), (call_id, stack)
