"""The teaching notebooks run top to bottom in a real kernel and show what their prose promises.

Each runs through nbclient (``sandbox.demo.execute``, what ``make demo`` uses), every cell bounded
by a timeout, in a scratch directory and with ``TMPDIR`` there too. Notebook 07 runs against
RabbitMQ, in a vhost of its own. The committed notebooks carry no outputs.
"""

from __future__ import annotations

import ast
import re
import uuid

import nbformat
import pytest

from sandbox.demo import NOTEBOOKS, execute, output_text, render

ROOT = NOTEBOOKS.parent
EXPECTED = [
    "01_quickstart.ipynb",
    "02_rpc.ipynb",
    "03_events.ipynb",
    "04_http.ipynb",
    "05_extensions.ipynb",
    "06_testing.ipynb",
    "07_deployment.ipynb",
    "08_watching.ipynb",
    "09_faults.ipynb",
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def run(tmp_path, monkeypatch):
    """``run(name)``: the executed notebook; scratch files land in ``tmp_path``."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # 06 and 07 write their files with tempfile

    def execute_notebook(name: str) -> Notebook:
        return Notebook(execute(NOTEBOOKS / name, cwd=tmp_path, timeout=120))

    return execute_notebook


class Notebook:
    """An executed notebook; ``nb["code"]`` is the text output of the cell containing ``code``."""

    def __init__(self, notebook):
        self.notebook = notebook
        self.cells = [c for c in notebook.cells if c.cell_type == "code"]

    def __getitem__(self, code: str) -> str:
        return ANSI.sub("", output_text(self.cell(code)))

    def cell(self, code: str):
        """The cell whose source is ``code``, else the only one containing it."""
        found = [c for c in self.cells if c.source == code]
        found = found or [c for c in self.cells if code in c.source]
        assert len(found) == 1, f"{len(found)} cells contain {code!r}"
        return found[0]


# --- the committed notebooks --------------------------------------------------------------


def read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def test_the_course_is_the_listed_notebooks():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebooks_are_clean(name):
    notebook = read(name)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    assert "widgets" not in notebook.metadata, "widget state was saved"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"outputs stored in {name}: {cell.source[:40]!r}"
            assert cell.execution_count is None, f"execution count stored in {name}"
        assert "attachments" not in cell


@pytest.mark.parametrize("name", EXPECTED)
def test_links_between_notebooks_resolve(name):
    text = "\n".join(c.source for c in read(name).cells if c.cell_type == "markdown")
    for target in re.findall(r"\]\(([^)#]+\.ipynb)\)", text):
        assert (NOTEBOOKS / target).is_file(), f"{name} links to missing {target}"


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#:]+)\)", readme)
    assert "docs/inspector.png" in targets
    assert {f"notebooks/{name}" for name in EXPECTED} <= set(targets)
    for target in targets:
        assert (ROOT / target).exists(), f"README links to missing {target}"


# --- each notebook, executed --------------------------------------------------------------


def test_01_quickstart(run):
    nb = run("01_quickstart.ipynb")
    started = nb["class ServiceA:"]
    assert "service_a running: http PUT /dispatch" in started
    assert "service_b running: event service_a.event_type -> handle_event" in started
    fired = nb['response = sb.http.put("/dispatch"']
    assert "service_b received: hello from a cell\n" in fired
    assert "200 OK\ndispatched" in fired
    assert nb["handled.result"] == "'hello from a cell'\n"
    inspector = nb.cell("sb.inspect()").outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in inspector
    assert "HTTP    127.0.0.1 -> service_a.dispatch_method  200" in inspector["text/plain"]
    assert "EVENT   service_a.dispatch_method -> service_b.handle_event  ok" in nb["sb.trace"]
    diagram = nb["sb.trace.diagram()"]
    assert "client --> service_a: PUT /dispatch" in diagram
    assert "service_a.events --> service_b: EVENT service_b.handle_event" in diagram
    dashboard = nb.cell("sb.dashboard()").outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in dashboard
    assert "service_a running" in dashboard["text/plain"]
    form = nb.cell('sb.call_form("service_a.dispatch_method")').outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in form
    assert "HTTP PUT /dispatch  (service_a.dispatch_method)" in form["text/plain"]
    assert "service_b reloaded" in nb["payload.upper()"]
    assert nb["%http PUT /dispatch hello again"].endswith(
        "service_b received: HELLO AGAIN\n'HELLO AGAIN'\n"
    )
    # What `make demo` prints: the headings, the cells and their results as text.
    shown = render(nb.notebook)
    assert shown.startswith("# 01 · Quickstart")
    assert "In [4]: with sb.wait_for(" in shown
    assert "    service_b received: hello from a cell\n" in shown


def test_02_rpc(run):
    nb = run("02_rpc.ipynb")
    assert nb['sb.rpc.prices.price("apple")'] == "50\n"
    assert nb['%rpc prices.price "pear"'] == "80\n"
    assert nb['sb.rpc.orders.quote("pear", 3)'] == "240\n"
    assert nb["for _ in range(10)"].startswith("10 answers in ")
    assert nb['sb.rpc.prices.price("banana")'] == "KeyError 'banana'\n"
    remote_traceback = nb["print(error.traceback)"]
    assert remote_traceback.startswith("Traceback (most recent call last):")
    assert remote_traceback.rstrip().endswith("KeyError: 'banana'")
    assert nb['print(exc.exc_type, "|", exc.value)'] == "RemoteError | KeyError 'banana'\n"
    assert nb['sb.rpc.orders.quote("banana"), '] == "None 100\n"
    assert nb["RpcTimeout:"] == "RpcTimeout: prices.slow_price timed out after 0.2s\n"
    assert nb["UnknownService:"] == "UnknownService: Unknown service `shipping`\n"
    # banana, from the cell, through orders (twice: uncaught, then caught)
    errors = [line.split(maxsplit=3)[3] for line in nb['status="error")'].splitlines()]
    assert [e.split("  error")[0] for e in errors] == [
        "notebook -> prices.price",
        "notebook -> orders.quote",
        "orders.quote -> prices.price",
        "orders.quote -> prices.price",
    ]


def test_03_events(run):
    nb = run("03_events.ipynb")
    queues = nb["entrypoint.queue_name"].splitlines()
    assert queues[:4] == [
        "billing   service_pool  evt-orders-placed--billing.charge",
        "shipping  service_pool  evt-orders-placed--shipping.ship",
        "audit     singleton     evt-orders-placed",
        "archive   singleton     evt-orders-placed",
    ]
    assert re.fullmatch(
        r"notifier  broadcast     evt-orders-placed--notifier\.notify-\w+", queues[4]
    )

    def counts(code):
        handled = ast.literal_eval(nb[code])
        singletons = handled.pop("audit", 0) + handled.pop("archive", 0)
        return handled, singletons

    assert counts("handled_all(4)") == ({"billing": 4, "notifier": 8, "shipping": 4}, 4)
    assert counts("handled_all(1)") == ({"billing": 1, "notifier": 2, "shipping": 1}, 1)
    assert_delayed_retries_and_priorities(nb)
    kiwi = nb['sb.trace.filter(kind="EVENT", text="kiwi")']
    assert "- -> orders.events:placed" in kiwi
    assert kiwi.count("-> notifier.notify  ok") == 2


def assert_delayed_retries_and_priorities(nb):
    waits = re.findall(r"try (\d) came (\d+) ms after", nb["sb.rpc.worker.submit(1)"])
    assert [n for n, _ in waits] == ["2", "3"]
    assert all(int(ms) >= 290 for _, ms in waits)  # each retry waited out the queue's TTL
    assert ast.literal_eval(nb["print(done)"].splitlines()[-1]) == [
        "fix the outage",
        "answer the customer",
        "tidy up",
        "water the plants",
    ]


def test_08_watching(run):
    nb = run("08_watching.ipynb")
    assert "--placed--> evt-orders-placed--kitchen.on_placed" in nb["view = sb.topology()"]
    assert "ready 500, unacked 0, consumers 0" in nb['sb.stop("kitchen")']
    assert "ready 0, unacked 0, consumers 1" in nb["sb.start(Kitchen)"]
    lost = nb['sb.dispatch("orders", "order_placed"']
    assert "No queue is bound for that key" in lost
    assert "'evt-orders-placed--kitchen.on_placed' for 'placed'" in lost
    found = nb['with sb.wait_for("kitchen", "on_placed")']
    assert "delivered to service kitchen (on_placed), which acknowledged it" in found
    rows = re.findall(r"(\d+)/s asked: +([\d.]+)/s done, p99 +(\d+) ms", nb["for rate in"])
    done = {int(rate): (float(throughput), int(p99)) for rate, throughput, p99 in rows}
    assert sorted(done) == [10, 20, 40, 80]
    assert done[10][0] >= 8  # below saturation the kitchen keeps up
    assert done[80][0] < 60  # two workers of 50 ms cook 40 a second at best
    assert done[80][1] > 3 * done[10][1]  # past it, calls wait in the queue


def test_04_http(run):
    nb = run("04_http.ipynb")
    assert nb["created = sb.http.post"] == "201 /notes/1 {'id': 1, 'text': 'buy apples'}\n"
    assert nb["%%http POST /notes"].startswith("201 CREATED\n")
    assert nb['sb.http.get("/notes")'].startswith("200 OK\n[{")
    statuses = {
        line[:16].strip(): line[16:].strip().split(":")[0]
        for line in nb["def status_of"].splitlines()
    }
    assert statuses == {
        "missing note": "404 NOT FOUND",
        "not an int": "404 NOT FOUND",
        "no such method": "405 METHOD NOT ALLOWED",
        "no text": "400 BAD REQUEST",
        "broken JSON": "400 BAD REQUEST",
        "not JSON at all": "415 UNSUPPORTED MEDIA TYPE",
        "deleted": "200 OK",
    }
    failure, still_serving = nb['sb.http.get("/notes/count")'].splitlines()
    assert failure.startswith('500 INTERNAL SERVER ERROR: {"error": "ZeroDivisionError"')
    assert still_serving == '200 OK: {"id": 2, "text": "call Ada"}'
    assert nb[".curl()"].startswith("curl -X POST http://127.0.0.1:")


def test_05_extensions(run):
    nb = run("05_extensions.ipynb")
    tick = re.fullmatch(r"<heartbeat\.beat returned (\d+)>\n", nb['sb.wait_for("heartbeat"'])
    assert tick and int(tick[1]) >= 3
    stopped, ticks = nb['sb.stop("heartbeat")'].splitlines()
    assert stopped == "○ heartbeat stopped" and int(ticks.split()[0]) >= 3
    assert nb['sb.rpc.greeter.greet("Ada")'] == "'Hello, Ada!'\n"
    assert nb['sb.rpc.accounts.deposit("ada", 100)'] == (
        "deposit 100: 100\nwithdraw 150: ValueError ada cannot go below zero\nbalance: 100\n"
    )
    assert nb["loaded.result"] == "['apple', 'pear'] 80\n"
    trace = nb['sb.trace.filter(service="catalogue")']
    assert "CALL    - -> catalogue.load  ok" in trace


def test_06_testing(run):
    nb = run("06_testing.ipynb")
    assert nb["unit test passed"] == "unit test passed\n"
    assert nb["hook test passed"] == "hook test passed\n"
    assert nb["waiter test passed"] == "waiter test passed: 2 x apple: 1.00 EUR\n"
    assert "shop.py (Prices, Orders, Receipts) and " in nb["sb.export("]
    pytest_output = nb["-m pytest"]
    # "3 passed, N warnings in" where a plugin of the environment warns (nameko-sqlalchemy's).
    assert re.search(r"^3 passed(, \d+ warnings?)? in ", pytest_output, re.M), pytest_output
    assert "failed" not in pytest_output and "error" not in pytest_output


@pytest.fixture
def rabbitmq(rabbit_manager, monkeypatch):
    """SANDBOX_AMQP_URI for 07: a fresh vhost (skipped, with the reason, without RabbitMQ)."""
    vhost = f"sandbox-nb07-{uuid.uuid4().hex[:12]}"
    rabbit_manager.create_vhost(vhost)
    monkeypatch.setenv("SANDBOX_AMQP_URI", rabbit_manager.uri_for(vhost))
    yield vhost
    rabbit_manager.delete_vhost(vhost)


def test_07_deployment_over_rabbitmq(rabbitmq, run):
    nb = run("07_deployment.ipynb")
    connected = nb["sb.connect(AMQP_URI)"]
    assert connected.startswith(f"connected to amqp://guest:********@127.0.0.1:5672/{rabbitmq}\n")
    assert "greeter running" in connected
    exported = nb['read_text())\nprint((workdir / "config.yaml")']
    assert "class Greeter:" in exported and "sb." not in exported
    uri = f"amqp://guest:${{AMQP_PASSWORD}}@127.0.0.1:5672/{rabbitmq}"
    assert f"AMQP_URI: ${{AMQP_URI:{uri}}}\n" in exported
    assert nb["show-config"].startswith("AMQP_URI: amqp://guest:********@")
    assert "started service greeter (2 entrypoints)" in nb['wait_for_log("started service']
    assert nb["ClusterRpcProxy(timeout=10) as cluster"] == "Hello, Grace!\n"
    assert nb['sb.wait_for("watcher", "seen"'] == (
        "200 {'greeting': 'Hello, Alan!'} and the notebook saw {'who': 'Alan'}\n"
    )
    stop = nb["process.send_signal(signal.SIGTERM)"]
    assert "stopping gracefully" in stop and stop.endswith("exit code 0\n")
    everything = "".join(output_text(cell) for cell in nb.cells)
    assert "guest:guest@" not in everything, "the password was shown"


def test_09_faults(run):
    nb = run("09_faults.ipynb")
    killed = nb["kill_worker={\"payments.charge\": 0.5}, seed=11) as faults"]
    assert "4 orders, 6 charges: ['B1', 'B1', 'B2', 'B3', 'B3', 'B4']\n" in killed
    assert "faults injected: {'kill_worker': 2}\n" in killed
    assert nb['sb.trace.filter(text="fault")'].count("[fault: kill_worker]") == 2
    assert nb["def wait_idle"].endswith("C1 charged 2 times\n")
    assert nb["duplicate={\"payments.charge\": 0.5}"].endswith(
        "4 orders, 4 charges: ['D1', 'D2', 'D3', 'D4']\n"
    )
    dropped = nb['drop={"payments.charge": 1}']
    assert dropped == "no answer: RpcTimeout\nretried: charged 10 for E1\nE1 charged 1 time(s)\n"
    magic = nb["%sandbox faults latency"]
    assert "faults on until %sandbox faults off" in magic and magic.endswith("faults off\n")
    assert "3 tests of payments; 0 left out" in nb["sb.trace.to_pytest("]
    pytest_output = nb["-m pytest"]
    assert re.search(r"^3 passed(, \d+ warnings?)? in ", pytest_output, re.M), pytest_output
