"""sandbox.contracts: contract tests written from real traffic pass, then fail after a change."""

import importlib.util
import subprocess
import sys
import time

import pytest
import requests

from sandbox.contracts import ANY_VALUE, Raised, contract_tests, write_contract_tests
from sandbox.exceptions import RemoteError
from sandbox.faults import Faults
from sandbox.records import Record, Recorder
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from tests.polling import wait_until

SERVICES = """
import uuid
from datetime import datetime

from nameko.events import event_handler
from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http

PRICES = {"tea": 3, "cake": 5}
PAID = []


class OutOfStock(Exception):
    pass


class Till:
    name = "till"

    @rpc
    def total(self, items):
        return sum(PRICES[item] for item in items)


class Shop:
    name = "shop"
    till = RpcProxy("till")

    @rpc
    def order(self, items, gift=False):
        if "pie" in items:
            raise OutOfStock("no pie today")
        return {"order": str(uuid.uuid4()), "at": datetime.now().isoformat(),
                "total": self.till.total(items), "gift": gift}

    @rpc
    def paid(self):
        return list(PAID)

    @event_handler("bank", "payment")
    def on_payment(self, payload):
        PAID.append(payload["amount"])

    @http("POST", "/orders/<int:number>")
    def post_order(self, request, number):
        return 201, {"number": number, "items": request.get_json()["items"]}
"""


@pytest.fixture
def recorder():
    recorder = Recorder().start()
    yield recorder
    recorder.stop()


def load_services(path):
    spec = importlib.util.spec_from_file_location(f"contract_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pytest(directory):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_contract.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )


def record_traffic(module, config, runner_factory, recorder, port):
    runner = runner_factory(config, module.Shop, module.Till)
    runner.start()
    with ClusterRpcProxy(config, timeout=30) as cluster:
        assert cluster.shop.order(["tea", "cake"], gift=True)["total"] == 8
        with pytest.raises(RemoteError, match="no pie today"):
            cluster.shop.order(["pie"])
        injected = Faults(error={"shop.order": "ValueError"})
        with injected, pytest.raises(RemoteError, match="ValueError"):
            cluster.shop.order(["tea"])  # a fault's outcome is no contract
        event_dispatcher(config)("bank", "payment", {"amount": 8})
        wait_until(lambda: any(r.target == "shop.on_payment" and r.duration for r in recorder))
        assert cluster.shop.paid() == [8]
    url = f"http://127.0.0.1:{port}/orders/7"
    assert requests.post(url, json={"items": ["tea"]}, timeout=30).status_code == 201
    wait_until(lambda: any(r.kind == "HTTP" and r.http for r in recorder))
    runner.kill()


def test_written_tests_pass_then_fail_naming_the_changed_call(
    tmp_path, rabbit_config, web_config, web_config_port, runner_factory, recorder
):
    services_path = tmp_path / "services.py"
    services_path.write_text(SERVICES)
    module = load_services(services_path)
    config = {**web_config, "AMQP_URI": rabbit_config["AMQP_URI"]}
    record_traffic(module, config, runner_factory, recorder, web_config_port)

    written = write_contract_tests(tmp_path / "test_contract.py", recorder.records())
    text = (tmp_path / "test_contract.py").read_text()
    assert written.services == ["shop", "till"]
    # order, the failed order, paid, the handler and the HTTP request; the nested till.total
    # is replayed by shop.order itself, and the faulted call is left out, saying why.
    assert written.tests == 5, text
    assert "replay.rpc('shop', 'order', ['tea', 'cake'], gift=True) == {'order': ANY," in text
    assert "with replay.then('till.total'):" in text  # waits for what the call led to
    assert "Raised(type='OutOfStock', message='no pie today')" in text
    assert "a fault touched it (error ValueError)" in text
    assert "replay.http('POST', '/orders/7', {'items': ['tea']}" in text

    passed = run_pytest(tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "5 passed" in passed.stdout

    services_path.write_text(SERVICES.replace('"cake": 5', '"cake": 6'))
    failed = run_pytest(tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED test_contract.py::test_001_shop_order" in failed.stdout
    assert "1 failed, 4 passed" in failed.stdout


def record(kind="RPC", **fields):
    made = Record(1, kind, time.time())
    made.service, made.entrypoint, made.status = "shop", "order", "ok"
    made.target = "shop.order"
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def test_volatile_values_become_any():
    now = time.time()
    result = {
        "id": "0b8f7c1e-5d6a-4c1b-9f3e-2a7d8e9f0a1b",
        "at": "2026-12-07T13:00:00",
        "stamp": now,
        "n": 3,
        "flag": True,
        "items": ["tea"],
    }
    written = contract_tests([record(result=result, args=(1,))])
    assert written.tests == 1
    assert "{'id': ANY, 'at': ANY, 'stamp': ANY, 'n': 3, 'flag': True, 'items': ['tea']}" in (
        written.text
    )
    assert repr(ANY_VALUE) == "ANY"


def test_calls_that_cannot_be_replayed_are_listed_not_written():
    written = contract_tests(
        [
            record(args=(object(),)),
            record(status="running"),
            record(kind="TIMER"),
            record(fault="drop", status="dropped"),
        ]
    )
    assert written.tests == 0
    assert [line.split(": ", 1)[1] for line in written.left_out] == [
        "arguments that are not Python literals",
        "no outcome recorded (running)",
        "a fault touched it (drop)",
    ]
    with pytest.raises(ValueError, match="no recorded call to replay"):
        write_contract_tests("unused.py", [])
    with pytest.raises(ValueError, match="not an importable module name"):
        contract_tests([], module="my-services")
    assert Raised("E", "m") == ("E", "m")
