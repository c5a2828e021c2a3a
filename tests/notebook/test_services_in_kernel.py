"""Services defined in real kernel cells, called from cells: HTTP, events, RPC, reload, unload."""

import socket
import textwrap

import pytest

FRONT_PAGE = """
from sandbox.events import EventDispatcher, event_handler
from sandbox.web.handlers import http

class ServiceA:
    name = "service_a"
    dispatch = EventDispatcher()

    @http("PUT", "/dispatch")
    def dispatch_event(self, request):
        self.dispatch("event_type", request.body)
        return 200, "dispatched"

class ServiceB:
    name = "service_b"

    @event_handler("service_a", "event_type")
    def handle_event(self, payload):
        print("service_b received:", payload)
        return payload
"""

GREETER = """
import eventlet
from sandbox.rpc import rpc

class Greeter:
    name = "greeter"

    @rpc
    def hello(self, who):
        return f"Hello, {{who}}!"

    @rpc
    def slow(self):
        eventlet.sleep(0.3)
        return {version!r}
"""


def cell(kernel, source, **kwargs):
    return kernel.run(textwrap.dedent(source.format(**kwargs) if kwargs else source))


def test_nameko_front_page_example(broker_kernel):
    started = cell(broker_kernel, FRONT_PAGE)
    assert "service_a running" in started.stdout and "service_b running" in started.stdout
    fired = broker_kernel.run(
        'with sb.wait_for("service_b", "handle_event", timeout=20) as handled:\n'
        '    response = sb.http.put("/dispatch", data="hello from a cell")\n'
        "print(response.status, response.text, handled.result)"
    )
    assert "200 dispatched hello from a cell" in fired.stdout
    assert "service_b received: hello from a cell" in fired.stdout


def test_rpc_from_a_cell_and_the_magic(broker_kernel):
    cell(broker_kernel, GREETER, version="v1")
    called = broker_kernel.run('print(sb.rpc.greeter.hello("Ada"))')
    assert called.stdout == "Hello, Ada!\n"
    magic = broker_kernel.run('%rpc greeter.hello "Grace"')
    assert magic.data[0]["text/plain"] == "'Hello, Grace!'"
    unknown = broker_kernel.run("sb.rpc.nobody.hello()", allow_error=True)
    assert unknown.error["ename"] == "UnknownService"
    assert unknown.error["traceback"] == ["UnknownService: Unknown service `nobody`"]


def test_reload_while_20_calls_are_in_flight(broker_kernel):
    cell(broker_kernel, GREETER, version="v1")
    broker_kernel.run("replies = [sb.rpc.greeter.slow.call_async() for _ in range(20)]")
    reloaded = cell(broker_kernel, GREETER, version="v2")
    assert "greeter reloaded" in reloaded.stdout
    outcome = broker_kernel.run(
        "results = [r.result(timeout=30) for r in replies]\n"
        "print(len(results), results.count('v1'), set(results) <= {'v1', 'v2'})\n"
        "print(sb.rpc.greeter.slow())"
    )
    answered, old_code, only_known = outcome.stdout.splitlines()[0].split()
    assert answered == "20" and only_known == "True"
    assert int(old_code) >= 1, "calls in flight during the reload finish on the old code"
    assert outcome.stdout.splitlines()[1] == "v2"


def test_unload_frees_the_port(sandbox_kernel):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sandbox_kernel.run(
        f"from sandbox.config import config; config['WEB_SERVER_ADDRESS'] = '127.0.0.1:{port}'"
    )
    cell(sandbox_kernel, FRONT_PAGE)
    sandbox_kernel.run(
        'with sb.wait_for("service_b", "handle_event", timeout=20):\n'
        '    status = sb.http.put("/dispatch", data="x").status'
    )
    assert sandbox_kernel.run("print(status)").stdout == "200\n"
    with socket.socket() as taken, pytest.raises(OSError):
        taken.bind(("127.0.0.1", port))
    sandbox_kernel.run("%unload_ext sandbox")
    with socket.socket() as freed:
        freed.bind(("127.0.0.1", port))
