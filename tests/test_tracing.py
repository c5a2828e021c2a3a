"""OpenTelemetry spans: an HTTP request -> RPC -> event chain is one trace whose entrypoint spans
form the tree of the call chains (call_id_stack), in one process on both brokers and across two
`sandbox run` processes on RabbitMQ."""

import json
import os
import subprocess
import sys
from pathlib import Path

import greeting_chain
import pytest
import span_file
from greeting_chain import Gateway, Greeter, Listener
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from polling import wait_until

from sandbox import recorder
from sandbox.notebook.http import HttpClient
from sandbox.testing.services import dummy, entrypoint_hook
from sandbox.testing.utils import find_free_port


@pytest.fixture(scope="module")
def exporter():
    """The spans of this process. The global provider can be set once per process: the first
    module to ask sets it, later ones find it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()


@pytest.fixture
def spans(exporter):
    exporter.clear()
    return exporter


class Chains:
    """A recorder observer keeping each finished worker's call_id_stack, as the inspector
    shows it."""

    def __init__(self):
        self.stacks = {}

    def worker_finished(self, worker_ctx, result, exc_info):
        self.stacks[worker_ctx.call_id] = list(worker_ctx.call_id_stack)


@pytest.fixture
def chains():
    observer = Chains()
    recorder.add_observer(observer)
    yield observer
    recorder.remove_observer(observer)


def describe(spans):
    return [span_file.describe(span) for span in spans]


def check_one_trace(spans, stacks):
    """The spans are one trace, HTTP client -> gateway.greet -> greeter.hello ->
    listener.on_greeted, with a PRODUCER span for the RPC and the event under their senders;
    the entrypoint spans' tree is the call chains' tree."""
    by_name = {span["name"]: span for span in spans}
    assert sorted(by_name) == [
        "GET",
        "gateway.greet",
        "greeter.hello",
        "listener.on_greeted",
        "publish greeter.greeted",
        "send greeter.hello",
    ]
    assert len({span["trace_id"] for span in spans}) == 1
    kinds = {name: span["kind"] for name, span in by_name.items()}
    assert kinds == {
        "GET": "CLIENT",
        "gateway.greet": "SERVER",
        "greeter.hello": "SERVER",
        "listener.on_greeted": "CONSUMER",
        "publish greeter.greeted": "PRODUCER",
        "send greeter.hello": "PRODUCER",
    }
    parent = {name: span["parent_id"] for name, span in by_name.items()}
    ids = {name: span["span_id"] for name, span in by_name.items()}
    assert parent["GET"] is None
    assert parent["gateway.greet"] == ids["GET"]
    assert parent["send greeter.hello"] == parent["greeter.hello"] == ids["gateway.greet"]
    assert parent["publish greeter.greeted"] == ids["greeter.hello"]
    assert parent["listener.on_greeted"] == ids["greeter.hello"]
    failed = [name for name, span in by_name.items() if span["error"]]
    assert failed == ["listener.on_greeted"]  # the listener raises

    # The same tree, read from the call chains: each worker's parent call is its span's parent.
    entry = [span for span in spans if span["call_id"]]
    by_id = {span["span_id"]: span for span in entry}
    assert len(entry) == 3 and set(stacks) == {span["call_id"] for span in entry}
    for span in entry:
        stack = stacks[span["call_id"]]
        parent_span = by_id.get(span["parent_id"])
        assert (parent_span["call_id"] if parent_span else None) == (
            stack[-2] if len(stack) > 1 else None
        )


def test_one_trace_in_one_process(rabbit_config, runner_factory, spans, chains):
    port = find_free_port()
    config = {**rabbit_config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"}
    runner = runner_factory(config, Gateway, Greeter, Listener)
    runner.start()
    client = HttpClient()
    client.base_url = f"http://127.0.0.1:{port}"
    assert client.get("/greet/ada").text == "hello ada"
    wait_until(lambda: len(chains.stacks) == 3, timeout=30)
    wait_until(lambda: len(spans.get_finished_spans()) == 6, timeout=30)
    check_one_trace(describe(spans.get_finished_spans()), chains.stacks)
    (failed,) = [s for s in spans.get_finished_spans() if s.name == "listener.on_greeted"]
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.events[0].attributes["exception.type"] == "ValueError"
    client.close()


# `sandbox run front:Gateway front:Listener` and `sandbox run back:Greeter`.
FRONT = BACK = (
    "import span_file\nspan_file.install()\nfrom greeting_chain import Gateway, Greeter, Listener\n"
)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_one_trace_across_two_processes(vhost_uri, cli, tmp_path, spans):
    port = find_free_port()
    env = {"SPAN_FILE": str(tmp_path / "spans.jsonl"), "CHAIN_FILE": str(tmp_path / "chains.jsonl")}
    modules = {
        "span_file": Path(span_file.__file__).read_text(),
        "greeting_chain": Path(greeting_chain.__file__).read_text(),
        "front": FRONT,
        "back": BACK,
    }
    front = cli(
        "run",
        "front:Gateway",
        "front:Listener",
        "--broker",
        vhost_uri,
        "-d",
        f"WEB_SERVER_ADDRESS=127.0.0.1:{port}",
        modules=modules,
        env=env,
    )
    back = cli(
        "run",
        "back:Greeter",
        "--broker",
        vhost_uri,
        "-d",
        "WEB_SERVER_ADDRESS=127.0.0.1:0",
        env=env,
    )
    front.wait_for_line("started service listener")
    back.wait_for_line("started service greeter")

    client = HttpClient()  # sb.http: its span is this process's, its traceparent goes along
    client.base_url = f"http://127.0.0.1:{port}"
    assert client.get("/greet/ada").text == "hello ada"
    client.close()
    chains = tmp_path / "chains.jsonl"
    wait_until(lambda: len(read_lines(chains)) == 3, timeout=30)
    spans_written = tmp_path / "spans.jsonl"
    wait_until(lambda: len(read_lines(spans_written)) == 5, timeout=30)
    stacks = dict(read_lines(chains))
    check_one_trace(read_lines(spans_written) + describe(spans.get_finished_spans()), stacks)


CONTAINER_THEN_OBSERVED = """
from sandbox import recorder, tracing
from sandbox.containers import ServiceContainer
from sandbox.testing.services import dummy

class Service:
    name = "service"

    @dummy
    def method(self):
        pass

ServiceContainer(Service, {"AMQP_URI": "memory://"})
print(tracing.available(), recorder.observed())
"""


def observed_in_a_process(preamble: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", preamble + CONTAINER_THEN_OBSERVED],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_opentelemetry_nothing_observes_the_workers():
    # A process where `import opentelemetry` fails, as where it is not installed.
    preamble = 'import sys\nsys.modules["opentelemetry"] = None\n'
    assert observed_in_a_process(preamble) == "False False\n"


def test_without_a_tracer_provider_nothing_observes_the_workers():
    # The API alone would make non-recording spans: the cost of tracing for nothing.
    assert observed_in_a_process("") == "True False\n"


def test_a_tracer_provider_set_first_makes_the_container_observe_its_workers():
    preamble = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
    )
    assert observed_in_a_process(preamble) == "True True\n"


class Stock:
    name = "stock"

    @dummy
    def count(self, item):
        with trace.get_tracer("stock").start_as_current_span("lookup"):
            return 3


def test_spans_of_the_service_code_are_children_of_its_entrypoint_span(container_factory, spans):
    container = container_factory(Stock)
    container.start()
    with entrypoint_hook(container, "count") as count:
        assert count("apple") == 3
    lookup, entry = describe(spans.get_finished_spans())
    assert (lookup["name"], entry["name"], entry["kind"]) == ("lookup", "stock.count", "INTERNAL")
    assert lookup["parent_id"] == entry["span_id"] and entry["parent_id"] is None
