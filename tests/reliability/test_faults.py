"""Faults: a container killed mid-request, a worker raising mid-burst, a reload and a stop
with requests in flight. Every request is answered, or fails with a clear error; nothing
hangs, and the service keeps serving."""

from __future__ import annotations

import json
import threading

import eventlet
import eventlet.event
import pytest
from eventlet.green.http.client import HTTPConnection
from polling import wait_until
from reliability_tools import green_callers

from sandbox.exceptions import RemoteError, RpcTimeout
from sandbox.notebook.session import Session
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ClusterRpcProxy, ServiceRpcProxy
from sandbox.web.handlers import http
from sandbox.web.server import WEB_SERVER_CONFIG_KEY, parse_address


def http_get(address, path: str) -> tuple[int, object]:
    """GET on a connection of its own, green: in the hub it waits like any other client."""
    connection = HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def open_gate(gate: eventlet.event.Event) -> None:
    get_runtime().call(lambda: gate.ready() or gate.send(None))


# --- a container killed mid-request ----------------------------------------------------------


class Doomed:
    name = "faulty"
    gate = eventlet.event.Event()
    entered = eventlet.event.Event()
    started: list = []

    @rpc
    def work(self, value):
        Doomed.started.append(value)
        if len(Doomed.started) == 3:
            Doomed.entered.send()
        Doomed.gate.wait()  # the doomed instance never gets past this
        return ["doomed", value]


class Survivor(Doomed):
    executed: list = []

    @rpc
    def work(self, value):
        Survivor.executed.append(value)
        return ["survivor", value]


def test_requests_of_a_killed_instance_are_answered_by_a_second_one(
    rabbit_config, container_factory
):
    Doomed.gate, Doomed.entered = eventlet.event.Event(), eventlet.event.Event()
    Doomed.started, Survivor.executed = [], []
    doomed = container_factory(Doomed, {**rabbit_config, "max_workers": 3})
    doomed.start()
    try:
        with ServiceRpcProxy("faulty", rabbit_config, timeout=30) as faulty:
            replies = [faulty.work.call_async(n) for n in range(8)]
            # Three in workers, five waiting for one: the doomed instance holds all eight.
            get_runtime().call(Doomed.entered.wait, timeout=10)
            container_factory(Survivor, rabbit_config).start()
            doomed.kill()
            assert [reply.result() for reply in replies] == [["survivor", n] for n in range(8)]
    finally:
        open_gate(Doomed.gate)
    assert len(Doomed.started) == 3
    assert sorted(Survivor.executed) == list(range(8))  # each once, none lost


# --- a worker raising in the middle of a burst -----------------------------------------------


class Flaky:
    name = "flaky"

    @rpc
    def work(self, n):
        eventlet.sleep(0)  # others run meanwhile: the failure lands in the middle of them
        if n % 10 == 7:
            raise ValueError(f"failed on {n}")
        return n

    @http("GET", "/work/<int:n>")
    def work_http(self, request, n):
        return {"n": self.work(n)}


def expected_outcome(n: int):
    return ("ValueError", f"failed on {n}") if n % 10 == 7 else n


def test_a_worker_raising_mid_burst_fails_its_own_rpc_call_only(
    rabbit_config, web_config, container_factory
):
    # Flaky serves HTTP too: on a free port, not the default one another test may hold.
    container = container_factory(Flaky, {**rabbit_config, **web_config})
    container.start()
    with ClusterRpcProxy(rabbit_config, timeout=30) as cluster:
        replies = [cluster.flaky.work.call_async(n) for n in range(200)]
        outcomes = []
        for reply in replies:
            try:
                outcomes.append(reply.result())
            except RemoteError as error:
                outcomes.append((error.exc_type, error.value))
        assert outcomes == [expected_outcome(n) for n in range(200)]
        assert cluster.flaky.work(1) == 1
    assert container.started


def test_a_worker_raising_mid_burst_fails_its_own_http_request_only(container_factory, web_config):
    container = container_factory(Flaky, web_config)
    container.start()
    address = tuple(parse_address(web_config[WEB_SERVER_CONFIG_KEY]))
    answers = green_callers(200, lambda n: http_get(address, f"/work/{n}"))
    for n, (status, body) in enumerate(answers):
        if n % 10 == 7:
            assert (status, body["error"], body["message"]) == (500, "ValueError", f"failed on {n}")
        else:
            assert (status, body) == (200, {"n": n})
    assert http_get(address, "/work/1") == (200, {"n": 1})
    assert container.started


# --- reload and stop with requests in flight -------------------------------------------------


class Gate:
    """The gate version 1 of the service waits at; version 2 never waits."""

    event = eventlet.event.Event()
    entered: list = []


def version(number: int) -> type:
    """A new class each time, as re-running a notebook cell makes."""

    class Versioned:
        name = "versioned"

        @rpc
        def which(self, n):
            return self._answer(n)

        @http("GET", "/which/<int:n>")
        def which_http(self, request, n):
            return {"version": self._answer(n)}

        def _answer(self, n):
            if number == 1:
                Gate.entered.append(n)
                Gate.event.wait()
            return number

    return Versioned


@pytest.fixture
def session(rabbit_config, web_config):
    Gate.event, Gate.entered = eventlet.event.Event(), []
    session = Session({**rabbit_config, **web_config, "max_workers": 10}, drain_timeout=10)
    yield session
    open_gate(Gate.event)
    session.stop_all(timeout=1)


def in_flight(address, proxy, count: int) -> tuple[list, list]:
    """``count`` RPC calls and ``count`` HTTP requests to the service, sent at once."""
    runtime = get_runtime()
    calls = [proxy.which.call_async(n) for n in range(count)]
    requests = [runtime.submit(http_get, address, f"/which/{n}") for n in range(count)]
    return calls, requests


def test_a_reload_answers_every_request_in_flight_and_sends_new_ones_to_the_new_code(
    rabbit_config, web_config, session
):
    address = tuple(parse_address(web_config[WEB_SERVER_CONFIG_KEY]))
    session.start(version(1))
    with ServiceRpcProxy("versioned", rabbit_config, timeout=30) as proxy:
        old_calls, old_requests = in_flight(address, proxy, 20)
        wait_for_entered(10)  # every worker busy, 30 requests waiting for one

        session.start(version(2))
        new_calls, new_requests = in_flight(address, proxy, 20)
        assert [call.result() for call in new_calls] == [2] * 20
        assert [request.result(10) for request in new_requests] == [(200, {"version": 2})] * 20

        open_gate(Gate.event)
        answers = [call.result() for call in old_calls]
        answers += [request.result(10)[1]["version"] for request in old_requests]
    assert set(answers) <= {1, 2}
    assert answers.count(1) >= 10


def wait_for_entered(count: int) -> None:
    def wait() -> None:
        while len(Gate.entered) < count:
            eventlet.sleep(0.001)

    get_runtime().call(wait, timeout=10)


# How an HTTP client learns that the server closed its connection.
CONNECTION_CUT = {"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError"}


def rpc_outcome(reply) -> object:
    try:
        return reply.result()
    except RpcTimeout as error:
        return type(error).__name__


def http_outcome(future) -> object:
    """What an HTTP client in flight got: the status and body, or the error it ended with."""
    try:
        return future.result(15)
    except OSError as error:  # the connection was closed under it
        return type(error).__name__


def test_a_stop_drains_the_requests_in_flight(rabbit_config, web_config, session):
    address = tuple(parse_address(web_config[WEB_SERVER_CONFIG_KEY]))
    handle = session.start(version(1))
    with ServiceRpcProxy("versioned", rabbit_config, timeout=2) as proxy:
        calls, requests = in_flight(address, proxy, 20)
        wait_for_entered(10)
        stopping = threading.Thread(target=session.stop, args=("versioned",))
        stopping.start()
        wait_until(lambda: handle.container._entrypoints_stopped)
        open_gate(Gate.event)
        stopping.join(15)
        assert not stopping.is_alive()

        # What was in a worker is answered; what waited for one is answered too or, for RPC,
        # back in the queue for the next instance (its caller times out, as nobody serves).
        rpc_outcomes = green_callers(len(calls), lambda n: rpc_outcome(calls[n]))
        http_outcomes = [http_outcome(request) for request in requests]
    assert rpc_outcomes.count(1) + http_outcomes.count((200, {"version": 1})) >= 10
    assert set(rpc_outcomes) <= {1, "RpcTimeout"}
    assert {o for o in http_outcomes if o != (200, {"version": 1})} <= CONNECTION_CUT


def test_a_stop_that_outlasts_its_timeout_kills_and_loses_no_rpc_request(
    rabbit_config, web_config, session
):
    address = tuple(parse_address(web_config[WEB_SERVER_CONFIG_KEY]))
    session.start(version(1))
    with ServiceRpcProxy("versioned", rabbit_config, timeout=30) as proxy:
        calls, requests = in_flight(address, proxy, 20)
        wait_for_entered(10)
        session.stop("versioned", timeout=0.2)  # the gate stays shut: the workers are killed

        http_outcomes = [http_outcome(request) for request in requests]
        assert {o for o in http_outcomes if o[0] != 503} <= CONNECTION_CUT
        # The killed workers' requests were never acked: the next version answers them.
        session.start(version(2))
        assert [call.result() for call in calls] == [2] * 20
