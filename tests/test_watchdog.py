"""The watchdog names what holds the hub, and says when it lets go."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox import watchdog
from sandbox.rpc import rpc
from sandbox.testing.services import entrypoint_hook
from sandbox.web.handlers import http

release = threading.Event()


class Spinner:
    name = "spinner"

    @rpc
    def spin(self):
        while not release.is_set():  # a busy loop: nothing green to wait on
            pass
        return "spun"


SPIN_LINE = Spinner.spin.__code__.co_firstlineno + 2  # the busy loop


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="sandbox.watchdog")
    return caplog


def test_a_busy_worker_is_named_with_its_line_then_its_release(container_factory, warnings):
    release.clear()
    container = container_factory(Spinner)
    container.start()
    done = []
    with entrypoint_hook(container, "spin") as spin:
        caller = threading.Thread(target=lambda: done.append(spin()))
        caller.start()
        wait_for(lambda: "held the services' thread" in warnings.text)
        message = warnings.records[0].getMessage()
        assert message.startswith("spinner.spin has held the services' thread for 0.5 s")
        assert f"{__file__}:{SPIN_LINE} (in spin)" in message
        assert "sandbox.offload" in message
        assert "let go" not in warnings.text
        release.set()
        caller.join(30)
    assert done == ["spun"]
    wait_for(lambda: "let go" in warnings.text)
    assert warnings.records[-1].getMessage().startswith("spinner.spin let go after")
    assert len(warnings.records) == 2  # one warning per stall, one line when it ends


def test_an_idle_hub_is_no_stall(warnings):
    from sandbox.runtime import get_runtime

    runtime = get_runtime()
    runtime.call(lambda: None)
    time.sleep(watchdog.STALL * 3)  # idle on purpose: the watchdog must stay silent
    assert warnings.text == ""


def test_a_location_may_be_named_as_the_notebook_names_cells():
    watchdog.set_location_format(lambda filename, lineno: f"Cell In[7], line {lineno}")
    try:
        assert "at Cell In[7], line" in watchdog.describe_stall(threading.get_ident())[1]
    finally:
        watchdog.set_location_format(None)
    assert f"at {__file__}:" in watchdog.describe_stall(threading.get_ident())[1]


class HttpSpinner:
    name = "http_spinner"

    @http("GET", "/ready")
    def ready(self, request):
        return "ready"

    @http("GET", "/spin")
    def spin(self, request):
        while not release.is_set():
            pass
        return "spun"


def test_a_worker_resumed_by_its_socket_is_named_too(web_config, container_factory, warnings):
    # On a kept-alive connection the worker's green thread is resumed from inside the hub's
    # wait, by the socket it waits on: that is no poll, so it counts as holding the hub.
    release.clear()
    container_factory(HttpSpinner, web_config).start()
    base = f"http://127.0.0.1:{web_config['WEB_SERVER_ADDRESS'].rpartition(':')[2]}"
    with requests.Session() as session, ThreadPoolExecutor(1) as pool:
        assert session.get(f"{base}/ready", timeout=10).text == "ready"
        spun = pool.submit(session.get, f"{base}/spin", timeout=60)
        try:
            wait_for(lambda: "held the services' thread" in warnings.text)
        finally:
            release.set()  # else a failure would leave the loop holding the hub for ever
        assert warnings.records[0].getMessage().startswith("http_spinner.spin has held")
        assert spun.result().text == "spun"
