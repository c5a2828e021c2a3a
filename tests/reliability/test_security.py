"""Security: loopback unless asked, no password shown anywhere, JSON only, sensitive
arguments redacted."""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import time
import traceback
import uuid
from pathlib import Path

import eventlet.event
import kombu
import kombu.exceptions
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from reliability_tools import shown_by_kernel

from sandbox.amqp.connection import connect
from sandbox.amqp.consume import AmqpConsumer
from sandbox.amqp.pool import get_pool
from sandbox.cli.main import main
from sandbox.config import DEFAULTS, ConfigDict
from sandbox.containers import ServiceContainer
from sandbox.events import event_handler
from sandbox.exceptions import RemoteError
from sandbox.messaging import consume, publisher_for
from sandbox.records import RUNNING, Recorder
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy, ServiceRpcProxy
from sandbox.utils import REDACTED
from sandbox.web.handlers import http
from sandbox.web.server import WebServer, get_listener_address, parse_address

SECRET = f"pw-{uuid.uuid4().hex[:12]}"  # a password that cannot appear by chance
CLOSED_PORT_URI = f"amqp://sandbox:{SECRET}@127.0.0.1:1/"
FAIL_FAST = {"max_retries": 1, "interval_start": 0}


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


# --- binding ---------------------------------------------------------------------------------


class Web:
    name = "web"

    @http("GET", "/")
    def index(self, request):
        return "ok"


def test_http_binds_loopback_unless_told_otherwise(container_factory):
    assert DEFAULTS["WEB_SERVER_ADDRESS"].startswith("127.0.0.1:")
    assert parse_address("8000") == ("127.0.0.1", 8000)
    unconfigured = ServiceContainer(Web, {})
    assert WebServer().bind(unconfigured).configured_addr == ("127.0.0.1", 8000)

    container_factory(Web, {"WEB_SERVER_ADDRESS": "0"}).start()  # a port only
    assert get_listener_address("0").address == "127.0.0.1"
    elsewhere = non_loopback_address()
    if elsewhere is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((elsewhere, get_listener_address("0").port), timeout=2)

    container_factory(Web, {"WEB_SERVER_ADDRESS": "0.0.0.0:0"}).start()  # asked for
    assert get_listener_address("0.0.0.0:0").address == "0.0.0.0"


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


# --- passwords: reprs, logs, exceptions ------------------------------------------------------


@pytest.fixture
def secret_uri(rabbit_manager):
    """A RabbitMQ vhost and a user of it whose password is SECRET."""
    vhost, user = f"sandbox-secret-{uuid.uuid4().hex[:8]}", "sandbox-secret-user"
    rabbit_manager.create_vhost(vhost)
    rabbit_manager.request("PUT", f"/users/{user}", {"password": SECRET, "tags": ""})
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    rabbit_manager.request("PUT", f"/permissions/{vhost}/{user}", everything)
    yield f"amqp://{user}:{SECRET}@127.0.0.1:5672/{vhost}"
    rabbit_manager.delete_vhost(vhost)
    rabbit_manager.request("DELETE", f"/users/{user}")


class Greeter:
    name = "greeter"

    @rpc
    def hello(self, name):
        return f"hello {name}"


def test_no_repr_shows_the_password(secret_uri, container_factory):
    config = {"AMQP_URI": secret_uri}
    container = container_factory(Greeter, config)
    container.start()
    proxy = ClusterRpcProxy(config)
    with proxy as cluster:
        reply = cluster.greeter.hello.call_async("Ada")
        assert reply.result() == "hello Ada"
        shown = [
            ConfigDict(config),
            container,
            *container.extensions,
            proxy,
            cluster,
            cluster.greeter,
            cluster.greeter.hello,
            reply,
            publisher_for(config),
            AmqpConsumer(secret_uri),
            get_runtime().call(get_pool, secret_uri),
            get_runtime().call(connect, secret_uri),
        ]
        assert_hidden(*map(repr, shown), *map(str, shown))


def failures(caplog, attempt) -> list[str]:
    """What a failing ``attempt()`` shows: its error, its traceback, and every log line."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as failed:
        attempt()
    error = failed.value
    return [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]


def test_a_failed_connect_shows_no_password(caplog, container_factory):
    config = {"AMQP_URI": CLOSED_PORT_URI, "TRANSPORT_OPTIONS": FAIL_FAST}
    attempts = [
        container_factory(Greeter, config).start,
        ClusterRpcProxy(config).start,
        lambda: event_dispatcher(config, retry_policy=FAIL_FAST)("greeter", "evt", {}),
    ]
    for attempt in attempts:
        assert_hidden(*failures(caplog, attempt))
    assert "Error connecting to broker at amqp://sandbox:********@127.0.0.1:1/" in caplog.text


def test_a_refused_login_shows_no_password(secret_uri, caplog):
    wrong = secret_uri.replace(SECRET, f"{SECRET}-wrong")
    config = {"AMQP_URI": wrong, "TRANSPORT_OPTIONS": FAIL_FAST}
    assert_hidden(*failures(caplog, ClusterRpcProxy(config).start))


# --- JSON only: a pickle is refused, never unpickled -----------------------------------------


class Unpickled:
    """Unpickling this creates a directory: the proof that something unpickled it."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


PICKLE = {"content_type": "application/x-python-serialize", "content_encoding": "binary"}
PLAIN_QUEUE = kombu.Queue("plain", kombu.Exchange("plain", type="direct"), routing_key="plain")


class Targets:
    name = "targets"
    received: list = []
    gate = eventlet.event.Event()

    @rpc
    def call(self, value):
        return value

    @rpc
    def wait(self):
        Targets.gate.wait()
        return "late"

    @event_handler("source", "happened")
    def on_event(self, payload):
        Targets.received.append(payload)

    @consume(PLAIN_QUEUE)
    def on_message(self, payload):
        Targets.received.append(payload)


def test_a_pickle_is_rejected_not_unpickled_by_any_consumer(
    rabbit_config, container_factory, raw_amqp, published, caplog, tmp_path
):
    caplog.set_level(logging.WARNING, logger="sandbox")
    pickle.loads(pickle.dumps(Unpickled(tmp_path / "control")))
    assert (tmp_path / "control").is_dir()  # the payload does what it says
    payload = pickle.dumps(Unpickled(tmp_path / "unpickled"))
    Targets.received, Targets.gate = [], eventlet.event.Event()
    container_factory(Targets, rabbit_config).start()

    with ClusterRpcProxy(rabbit_config, timeout=10) as cluster:
        pending = cluster.targets.wait.call_async()
        request = next(m for m in published if m["kind"] == "rpc-request")
        reply = raw_amqp.request(
            payload, routing_key="targets.call", correlation_id="request", **PICKLE
        )
        raw_amqp.publish(payload, exchange="source.events", routing_key="happened", **PICKLE)
        raw_amqp.publish(payload, exchange="plain", routing_key="plain", **PICKLE)
        # A reply to a call in flight, under its correlation id: the caller gets an error.
        raw_amqp.publish(
            payload,
            routing_key=request["reply_to"],
            correlation_id=pending.correlation_id,
            **PICKLE,
        )
        with pytest.raises(kombu.exceptions.ContentDisallowed):
            pending.result()
        wait_for(lambda: len(rejections(caplog)) == 3)  # the request, the event, the message
        assert cluster.targets.call("json") == "json"

    assert reply["error"]["exc_type"] == "MalformedRequest"
    assert "untrusted content" in reply["error"]["value"]
    assert Targets.received == []
    assert not (tmp_path / "unpickled").exists()
    get_runtime().call(Targets.gate.send, None)


def rejections(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


# --- sensitive arguments ---------------------------------------------------------------------


class Vault:
    name = "vault"

    @rpc(sensitive_arguments=("password", "profile.token"))
    def login(self, user, password, profile=None):
        if user == "mallory":
            raise PermissionError("denied")
        return "welcome"

    @http("POST", "/reset/<token>", sensitive_arguments=("token",))
    def reset(self, request, token):
        return "reset"


def test_sensitive_arguments_are_redacted_in_records_and_logs(
    rabbit_config, web_config, web_session, container_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    recorder = Recorder().start()
    try:
        container_factory(Vault, {**rabbit_config, **web_config}).start()
        with ServiceRpcProxy("vault", rabbit_config) as vault:
            assert vault.login("ada", SECRET, profile={"token": SECRET}) == "welcome"
            with pytest.raises(RemoteError):
                vault.login("mallory", SECRET)
        assert web_session.post(f"/reset/{SECRET}").text == "reset"
        wait_for(lambda: len(recorder) == 3 and all(r.status != RUNNING for r in recorder))
    finally:
        recorder.stop()
    for record in recorder:
        shown = [json.dumps(record.to_dict()), record.text(), record.curl() or "", repr(record)]
        assert_hidden(*(text.lower() for text in shown))
    assert recorder.records()[0].request["kwargs"]["password"] == REDACTED
    assert recorder.records()[2].request["url"].endswith(f"/reset/{REDACTED}")
    # Every log line but those of the test's own HTTP client.
    assert_hidden(*(r.getMessage() for r in caplog.records if not r.name.startswith("urllib3")))


# --- passwords: command line, notebook, widgets, exports -------------------------------------

SERVICE = """\
from sandbox.rpc import rpc


class Greeter:
    name = "greeter"

    @rpc
    def hello(self, name):
        return f"hello {name}"
"""


def test_the_command_line_shows_no_password(cli, capsys):
    fail_fast = f"TRANSPORT_OPTIONS={json.dumps(FAIL_FAST)}"
    run = cli(
        "run",
        "services",
        "--broker",
        CLOSED_PORT_URI,
        "-d",
        fail_fast,
        modules={"services": SERVICE},
    )
    code, stderr = run.finish(timeout=30)
    assert code == 2
    assert "cannot start services" in stderr
    assert main(["show-config", "--broker", CLOSED_PORT_URI]) == 0
    assert_hidden(stderr, run.proc.stdout.read(), *capsys.readouterr())


def test_notebooks_widgets_and_exports_show_no_password(tmp_path):
    uri = CLOSED_PORT_URI.replace("127.0.0.1:1", "127.0.0.1:1/prod")
    cells = [
        "from sandbox.config import config\n"
        "config['WEB_SERVER_ADDRESS'] = '127.0.0.1:0'\n"
        f"config['TRANSPORT_OPTIONS'] = {FAIL_FAST!r}",
        "%load_ext sandbox",
        "display(sb.dashboard(), sb.inspect())",
        f"%sandbox connect {uri}",
        SERVICE,  # autostart fails to connect: an error line, the dashboard's log
        f"sb.connect({uri!r})",
        "sb.rpc.greeter.hello('Ada')",
        "%sandbox status",
        "sb",
        "sb.services",
        "config",
        "print(config)",
        "sb.export('kernel_services.py')",
        "import ipywidgets\n"
        "print([w.get_state() for w in list(ipywidgets.widgets.widget._instances.values())])",
    ]
    shown = shown_by_kernel(cells, str(tmp_path))
    assert "sandbox:********@127.0.0.1" in shown  # the broker is named, masked

    notebook = new_notebook(cells=[new_code_cell(cell) for cell in cells[:-1]])
    nbformat.write(notebook, tmp_path / "course.ipynb")
    (tmp_path / "cli_export").mkdir()
    exporting = [
        "export",
        str(tmp_path / "course.ipynb"),
        "-o",
        str(tmp_path / "cli_export/services.py"),
    ]
    assert main(exporting) == 0
    files = [
        "kernel_services.py",
        "config.yaml",
        "cli_export/services.py",
        "cli_export/config.yaml",
    ]
    exported = [(tmp_path / name).read_text() for name in files]
    assert all("${" in text for text in exported if "AMQP_URI" in text)
    assert_hidden(shown, *exported)
