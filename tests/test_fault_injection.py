"""sandbox.faults: each fault kind's effect on RPC, events and HTTP, and its clean removal."""

import contextlib
import json
import random
import threading
import time

import pytest
import requests

from sandbox.events import event_handler
from sandbox.exceptions import RemoteError, RpcTimeout
from sandbox.faults import FaultRuleError, Faults, InjectedFault, active_faults
from sandbox.notebook.widgets.inspector import detail_outputs
from sandbox.records import Recorder
from sandbox.rpc import rpc
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.web.handlers import http
from tests.polling import wait_until


class Runs:
    """How many times each method ran, and when it last started."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name):
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            self.started[name] = time.monotonic()

    def __getitem__(self, name):
        return self.counts.get(name, 0)


@pytest.fixture
def runs():
    Shop.runs = Runs()
    return Shop.runs


class Shop:
    name = "shop"
    runs: Runs

    @rpc
    def buy(self, item):
        self.runs.add("buy")
        return f"bought {item}"

    @rpc
    def other(self):
        self.runs.add("other")
        return "other"

    @event_handler("till", "paid")
    def on_paid(self, payload):
        self.runs.add("on_paid")

    @http("GET", "/buy/<item>")
    def buy_http(self, request, item):
        self.runs.add("buy_http")
        return f"bought {item}"


@pytest.fixture
def recorder():
    recorder = Recorder().start()
    yield recorder
    recorder.stop()


@pytest.fixture
def shop(rabbit_config, web_config, container_factory, runs):
    # Shop serves HTTP too: on a free port, not the default one that another test may hold.
    container = container_factory(Shop, {**rabbit_config, **web_config})
    container.start()
    with ServiceRpcProxy("shop", rabbit_config, timeout=30) as proxy:
        yield proxy


@pytest.fixture
def web_shop(web_config, container_factory, runs, web_session):
    container_factory(Shop, web_config).start()
    return web_session


def faulted(recorder, target):
    return [r.fault for r in recorder.records() if r.target == target and r.fault]


# --- rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"drop": {"nodot": 0.1}}, "is not 'service.method'"),
        ({"drop": {"a.b": 1.5}}, "probability in 0..1"),
        ({"duplicate": {"a.b": True}}, "probability in 0..1"),
        ({"latency": {"a.b": -1}}, "seconds >= 0"),
        ({"kill_worker": {"a.b": 1}}, "kills every redelivery too"),
        ({"error": {"a.b": 3}}, "expected an exception"),
        ({"drop": ["a.b"]}, "expected a dict"),
    ],
)
def test_bad_rules_are_refused_in_one_line(rules, message):
    with pytest.raises(FaultRuleError, match=message) as raised:
        Faults(**rules)
    assert "\n" not in str(raised.value)


def test_error_names_a_builtin_or_makes_a_class():
    plan = Faults(error={"a.b": "KeyError", "a.c": "OutOfStock"}).plan
    assert plan("a.b").error is KeyError
    assert issubclass(plan("a.c").error, InjectedFault)
    assert plan("a.c").error.__name__ == "OutOfStock"


def test_patterns_match_and_the_exact_key_wins():
    faults = Faults(drop={"shop.*": 0.5, "shop.buy": 0.25, "*": 0.1})
    assert faults.plan("shop.buy").drop == 0.25
    assert faults.plan("shop.sell").drop == 0.1  # the last pattern that matches
    assert faults.plan("till.pay").drop == 0.1
    assert Faults(drop={"shop.*": 0.5}).plan("till.pay") is None


# --- each fault on RPC, on both brokers -------------------------------------------------------


def test_latency_delays_the_method(shop, runs, recorder):
    with Faults(latency={"shop.buy": 0.3}):
        called = time.monotonic()
        assert shop.buy("tea") == "bought tea"
    assert runs.started["buy"] - called >= 0.3
    assert faulted(recorder, "shop.buy") == ["latency 0.3s"]


def test_error_fails_the_call_before_the_method_runs(shop, runs, recorder):
    with Faults(error={"shop.buy": "ValueError"}):
        with pytest.raises(RemoteError) as raised:
            shop.buy("tea")
        assert shop.other() == "other"  # other entrypoints are untouched
    assert raised.value.exc_type == "ValueError"
    assert runs["buy"] == 0
    assert shop.buy("tea") == "bought tea"  # removed when the block ended
    assert faulted(recorder, "shop.buy") == ["error ValueError"]
    record = next(r for r in recorder.records() if r.fault)
    assert record.to_dict()["fault"] == "error ValueError"
    assert record.summary().endswith("[fault: error ValueError]")
    shown = json.dumps(detail_outputs(record))
    assert "fault injected: error ValueError" in shown


def test_drop_acks_the_request_and_the_caller_times_out(rabbit_config, shop, runs, recorder):
    impatient = ServiceRpcProxy("shop", rabbit_config, timeout=0.5)
    with Faults(drop={"shop.buy": 1}) as faults, impatient as proxy, pytest.raises(RpcTimeout):
        proxy.buy("tea")
    assert faults.counts == {"drop": 1}
    assert runs["buy"] == 0
    dropped = [r for r in recorder.records() if r.fault == "drop"]
    assert [(r.target, r.status, r.args) for r in dropped] == [("shop.buy", "dropped", ("tea",))]
    # Acked, not left for later: nothing comes back once the block is gone.
    assert shop.buy("coffee") == "bought coffee"
    assert runs["buy"] == 1


def test_duplicate_runs_the_method_twice_and_answers_once(shop, runs, recorder):
    with Faults(duplicate={"shop.buy": 1}):
        assert shop.buy("tea") == "bought tea"
        wait_until(lambda: runs["buy"] == 2)
    assert sorted(faulted(recorder, "shop.buy")) == ["duplicate", "duplicate copy"]
    assert shop.buy("tea") == "bought tea"
    wait_until(lambda: runs["buy"] == 3)


def seed_drawing(*outcomes, rate=0.5):
    """A seed whose first draws against ``rate`` come out as ``outcomes`` (True: struck)."""
    for seed in range(1000):
        draws = random.Random(seed)
        if all((draws.random() < rate) == outcome for outcome in outcomes):
            return seed
    raise AssertionError("no such seed")


def test_kill_worker_requeues_and_the_redelivery_answers(shop, runs, recorder):
    seed = seed_drawing(True, False)
    with Faults(kill_worker={"shop.buy": 0.5}, seed=seed) as faults:
        assert shop.buy("tea") == "bought tea"
    assert faults.counts == {"kill_worker": 1}
    assert runs["buy"] == 2  # the killed run's side effects happened: at-least-once
    buys = [r for r in recorder.records() if r.target == "shop.buy"]
    assert [(r.status, r.fault) for r in buys] == [("error", "kill_worker"), ("ok", None)]
    assert buys[0].error["type"] == "WorkerKilled"


def test_events_are_dropped_and_duplicated(rabbit_config, shop, runs, recorder):
    dispatch = event_dispatcher(rabbit_config)
    with Faults(drop={"shop.on_paid": 1}):
        dispatch("till", "paid", 1)
        wait_until(lambda: any(r.fault == "drop" for r in recorder.records()))
    with Faults(duplicate={"shop.on_paid": 1}):
        dispatch("till", "paid", 2)
        wait_until(lambda: runs["on_paid"] == 2)
    dispatch("till", "paid", 3)
    wait_until(lambda: runs["on_paid"] == 3)
    handled = [r.args for r in recorder.records() if r.target == "shop.on_paid"]
    assert handled == [(1,), (2,), (2,), (3,)]  # 1 dropped, 2 twice, 3 once


def test_a_seed_repeats_the_same_choices(rabbit_config, shop):
    def dropped_calls():
        chosen = []
        quick = ServiceRpcProxy("shop", rabbit_config, timeout=0.3)
        with Faults(drop={"shop.buy": 0.5}, seed=7) as faults, quick as proxy:
            for n in range(10):
                before = faults.counts.get("drop", 0)
                with contextlib.suppress(RpcTimeout):
                    proxy.buy(n)
                chosen.append(faults.counts.get("drop", 0) > before)
        return chosen

    first = dropped_calls()
    assert first == dropped_calls()
    assert True in first and False in first


# --- removal --------------------------------------------------------------------------------


def test_faults_are_removed_after_an_exception_or_interrupt(shop, runs):
    for escaping in (RuntimeError("cell failed"), KeyboardInterrupt()):
        faults = Faults(error={"shop.buy": "ValueError"}, latency={"shop.*": 5})
        with pytest.raises(type(escaping)), faults:
            assert active_faults()
            raise escaping
        assert active_faults() == ()
        assert shop.buy("tea") == "bought tea"


def test_decorator_form_is_active_only_during_the_call(shop, runs):
    @Faults(error={"shop.buy": "LookupError"})
    def attempt():
        with pytest.raises(RemoteError, match="LookupError"):
            shop.buy("tea")
        return active_faults()

    assert len(attempt()) == 1
    assert active_faults() == ()
    assert shop.buy("tea") == "bought tea"


def test_nested_blocks_both_apply_and_leave_in_turn(shop, runs, recorder):
    with Faults(latency={"shop.buy": 0.01}):
        with Faults(error={"shop.buy": "ValueError"}), pytest.raises(RemoteError):
            shop.buy("tea")
        assert shop.buy("tea") == "bought tea"
    assert faulted(recorder, "shop.buy") == ["latency 0.01s, error ValueError", "latency 0.01s"]


# --- HTTP -----------------------------------------------------------------------------------


def test_http_faults(web_shop, runs, recorder):
    with Faults(error={"shop.buy_http": "ValueError"}):
        failed = web_shop.get("/buy/tea")
    assert (failed.status_code, failed.text) == (
        500,
        "Error: ValueError: injected by an error fault\n",
    )
    with Faults(drop={"shop.buy_http": 1}), pytest.raises(requests.ConnectionError):
        web_shop.get("/buy/tea")
    assert runs["buy_http"] == 0
    with Faults(kill_worker={"shop.buy_http": 0.99}, seed=seed_drawing(True, rate=0.99)):
        killed = web_shop.get("/buy/tea")
    assert killed.status_code == 503
    assert runs["buy_http"] == 1
    with Faults(duplicate={"shop.buy_http": 1}):
        assert web_shop.get("/buy/tea").text == "bought tea"
        wait_until(lambda: runs["buy_http"] == 3)
    assert web_shop.get("/buy/tea").text == "bought tea"
    marks = [r.fault for r in recorder.records() if r.fault]
    assert marks == ["error ValueError", "drop", "kill_worker", "duplicate", "duplicate copy"]
