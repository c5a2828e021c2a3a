"""A notebook becomes a deployment: export it, run it, call it from another notebook.

Over RabbitMQ the exported module runs with `sandbox run` as a process of its own, and
`sandbox shell` reaches it too; on the embedded broker a fresh kernel imports it and starts
it. Either way a kernel connected to the broker calls it over RPC and HTTP and receives its
events.
"""

import signal
import socket
import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from sandbox.cli.main import main

IMPORTS = """
import json

from sandbox import config
from sandbox.events import EventDispatcher, event_handler
from sandbox.rpc import RpcProxy, rpc
from sandbox.web.handlers import http

config["WEB_SERVER_ADDRESS"] = "{address}"
"""

HELPERS = """
# Prices in cents, tax in percent.
PRICES = {"apple": 50, "pear": 80}
TAX = 20


def with_tax(cents):
    return cents + cents * TAX // 100


class Basket:
    \"\"\"What a customer takes.\"\"\"

    def __init__(self, item, count):
        self.item, self.count = item, count

    def total(self):
        return with_tax(PRICES[self.item] * self.count)
"""

SHOP = """
class Shop:
    name = "shop"
    dispatch = EventDispatcher()

    @rpc
    def quote(self, item, count=1):
        return Basket(item, count).total()

    @rpc
    def buy(self, item, count=1):
        total = self.quote(item, count)
        self.dispatch("sold", {"item": item, "count": count, "total": total})
        return total

    @http("GET", "/price/<item>")
    def price(self, request, item):
        return json.dumps({"item": item, "price": self.quote(item)})
"""

LEDGER = """
class Ledger:
    name = "ledger"
    shop = RpcProxy("shop")
    dispatch = EventDispatcher()
    sales = []  # one process, one ledger

    @event_handler("shop", "sold")
    def record(self, sale):
        Ledger.sales.append(sale)
        self.dispatch("recorded", {"sales": len(Ledger.sales), "total": sale["total"]})

    @rpc
    def revenue(self):
        return sum(sale["total"] for sale in Ledger.sales)

    @http("GET", "/ledger/quote/<item>")
    def quote(self, request, item):
        return {"item": item, "price": self.shop.quote(item)}  # an RPC from a service
"""

INTERACTIVE = [
    'sb.rpc.shop.quote("apple", 2)',
    '%rpc shop.buy "pear"',
    "%%http GET /price/apple\n",
    'with sb.wait_for("ledger", "record"):\n    sb.rpc.shop.buy("apple")\nsb.rpc.ledger.revenue()',
    "!echo done",
]

# Defined in the calling kernel: it receives the exported services' events.
WATCHER = """
from sandbox.events import event_handler


class Watcher:
    name = "watcher"

    @event_handler("ledger", "recorded")
    def recorded(self, payload):
        return payload
"""


def free_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def write_notebook(path, address, connect):
    cells = ["%load_ext sandbox", IMPORTS.replace("{address}", address), connect]
    cells += [HELPERS, SHOP, *INTERACTIVE[:2], LEDGER, *INTERACTIVE[2:]]
    notebook = new_notebook(cells=[new_code_cell(textwrap.dedent(c).strip()) for c in cells])
    nbformat.write(notebook, path)


def export(tmp_path, capsys):
    assert main(["export", str(tmp_path / "shop.ipynb"), "-o", str(tmp_path / "services.py")]) == 0
    assert capsys.readouterr().err == ""  # nothing the services need was left behind


def call_everything(kernel, base_url):
    """RPC, HTTP (also one that makes an RPC inside), an event chain back into the kernel."""
    kernel.run(WATCHER)
    quote = kernel.run('print(sb.rpc.shop.quote("apple", 2))')
    assert quote.stdout == "120\n"
    price = kernel.run(f'print(sb.http.get("{base_url}/price/apple").json())')
    assert price.stdout == "{'item': 'apple', 'price': 60}\n"
    nested = kernel.run(f'print(sb.http.get("{base_url}/ledger/quote/pear").json())')
    assert nested.stdout == "{'item': 'pear', 'price': 96}\n"
    # shop.buy dispatches "sold"; the ledger records it and dispatches "recorded" to us.
    bought = kernel.run(
        'with sb.wait_for("watcher", "recorded", timeout=20) as waiter:\n'
        '    print(sb.rpc.shop.buy("pear", 2))\n'
        "print(waiter.result)"
    )
    assert bought.stdout == "192\n{'sales': 1, 'total': 192}\n"
    # An event from the kernel reaches the process too.
    dispatched = kernel.run(
        'with sb.wait_for("watcher", "recorded", timeout=20) as waiter:\n'
        '    sb.dispatch("shop", "sold", {"item": "apple", "count": 1, "total": 60})\n'
        "print(waiter.result, sb.rpc.ledger.revenue())"
    )
    assert dispatched.stdout == "{'sales': 2, 'total': 60} 252\n"


def test_round_trip_over_rabbitmq(vhost_uri, cli, sandbox_kernel, tmp_path, capsys):
    address = free_address()
    write_notebook(tmp_path / "shop.ipynb", address, f"%sandbox connect {vhost_uri}")
    export(tmp_path, capsys)
    vhost = vhost_uri.rsplit("/", 1)[1]
    port = address.rpartition(":")[2]
    assert (
        f"AMQP_URI: ${{AMQP_URI:amqp://guest:${{AMQP_PASSWORD}}@127.0.0.1:5672/{vhost}}}\n"
        f"WEB_SERVER_ADDRESS: ${{WEB_SERVER_ADDRESS:0.0.0.0:{port}}}\n"
    ) in (tmp_path / "config.yaml").read_text()

    proc = cli("run", "services", "--config", "config.yaml", env={"AMQP_PASSWORD": "guest"})
    proc.wait_for_line("started service shop (3 entrypoints)", timeout=30)
    proc.wait_for_line("started service ledger (3 entrypoints)", timeout=30)
    connect_the_client_alone(sandbox_kernel, vhost_uri, address)
    sandbox_kernel.run(f'sb.connect("{vhost_uri}")')
    call_everything(sandbox_kernel, f"http://{address}")

    # A terminal user reaches the same cluster with the exported config.
    command = "print(sb.rpc.ledger.revenue(), sb.http.get('/price/pear').json())"
    env = {"AMQP_PASSWORD": "guest"}
    shell = cli("shell", "--config", "config.yaml", "--command", command, env=env)
    code, stderr = shell.finish(timeout=60)
    assert code == 0, stderr
    assert shell.proc.stdout.read().splitlines()[-1] == "252 {'item': 'pear', 'price': 96}"

    proc.proc.send_signal(signal.SIGTERM)
    code, stderr = proc.finish(timeout=30)
    assert code == 0, stderr
    assert "Traceback" not in stderr


KERNEL_SHOP = """
from sandbox.rpc import rpc


class KernelShop:
    name = "shop"

    @rpc
    def quote(self, item, count=1):
        return "the kernel's"
"""


def connect_the_client_alone(kernel, uri, address):
    """sb reaches the cluster; the kernel's own "shop" stays on the embedded broker."""
    kernel.run(KERNEL_SHOP)
    connected = kernel.run(f'sb.connect("{uri}", services=False, http="http://{address}")')
    assert connected.stdout.endswith("; the kernel's services stay on memory://\n")
    calls = kernel.run(
        'print(sb.rpc.shop.quote("apple", 2), sb.http.get("/price/apple").json()["price"])\n'
        'print(config["AMQP_URI"], sb.services["shop"].state)'
    )
    assert calls.stdout == "120 60\nmemory:// running\n"
    kernel.run('sb.stop("shop")\nsb.http.base_url = None')


def test_round_trip_on_the_embedded_broker(sandbox_kernel, tmp_path, capsys):
    write_notebook(tmp_path / "shop.ipynb", "127.0.0.1:8000", 'sb.connect("memory://")')
    export(tmp_path, capsys)
    # sb.http calls the configured address, so the kernel's server needs a real port.
    sandbox_kernel.run(f"config['WEB_SERVER_ADDRESS'] = '{free_address()}'")
    # The kernel's cwd holds services.py; imported classes are started by name.
    started = sandbox_kernel.run("from services import Ledger, Shop\n%sandbox start Shop Ledger")
    assert "shop running" in started.stdout and "ledger running" in started.stdout
    call_everything(sandbox_kernel, "")
