"""sb.load in a real kernel: the live plot, the max_workers slider, the result, bad input."""

import json
import textwrap

import pytest

SETUP = """
import json, time
from sandbox.rpc import rpc
from sandbox.web.handlers import http

def wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)

class Shop:
    name = "shop"

    @rpc
    def slow(self):
        time.sleep(0.05)  # green in a worker: one worker serves 20 calls a second at best

    @http("GET", "/price/<int:item>")
    def price(self, request, item):
        return str(item * 3)
"""


@pytest.fixture(scope="module")
def k(module_sandbox_kernel):
    module_sandbox_kernel.run(SETUP)
    return module_sandbox_kernel


def run(kernel, code):
    """Run ``code`` and return what it printed as JSON on its last line."""
    out = kernel.run(textwrap.dedent(code), timeout=120).stdout.strip().splitlines()
    return json.loads(out[-1])


def test_the_slider_resizes_the_pool_and_the_plot_shows_the_backpressure(k):
    state = run(
        k,
        """
        sb.services["shop"].container.set_max_workers(1)
        view = sb.load("shop.slow", rate=60, duration=2, timeout=30)
        before = view.workers_slider.value
        view.workers_slider.value = 2   # what dragging the slider does
        max_workers = sb.services["shop"].container.max_workers
        result = view.result(timeout=120)
        view.refresh()
        print(json.dumps({
            "before": before, "after": max_workers, "done": view.run.done,
            "throughput": view.throughput, "p50": view.p50, "errors": view.errors,
            "completed": result.completed, "header": view.header.value,
            "plot": view.plot.value, "table": view.table(),
            "depth": max(w.queue_depth or 0 for w in result.timeline),
            "busy": max(w.busy_workers or 0 for w in result.timeline),
            "message": view.message_widget.value,
        }))
        """,
    )
    assert (state["before"], state["after"]) == (1, 2)
    assert "shop: max_workers = 2" in state["message"]
    assert state["done"] and state["completed"] == 120 and state["errors"] == 0
    # Two workers at 50 ms a call serve at most 40 of the 60 asked a second; the rest queue up.
    assert state["throughput"] < 50, state["table"]
    assert state["depth"] > 0 and 1 <= state["busy"] <= 2, state
    assert "done" in state["header"] and "<svg" in state["plot"]
    for label in ("throughput /s", "p50 ms", "p99 ms", "errors", "busy workers", "queue depth"):
        assert label in state["plot"]
    assert "p50 / p90 / p99" in state["table"]
    k.run("sb.services['shop'].container.set_max_workers(10)")


def test_http_route_with_a_converter_finds_its_service(k):
    state = run(
        k,
        """
        view = sb.load("GET /price/7", rate=20, duration=1)
        result = view.result(timeout=60)
        print(json.dumps({"service": view.service, "completed": result.completed,
                          "errors": result.errors, "slider": view.workers_slider is not None}))
        """,
    )
    assert state == {"service": "shop", "completed": 20, "errors": 0, "slider": True}


def test_bad_input_is_one_line(k):
    result = k.run("print(sb.load('shop', rate=5))")
    assert result.stderr.strip().splitlines() == [
        "sandbox: cannot load 'shop': 'shop' is not a target: give 'service.method' (RPC), "
        "'GET /path' (HTTP) or 'event:source.event_type'"
    ]
    assert result.stdout.strip() == "None"
    result = k.run("sb.load('shop.slow', rate=-1)")
    assert result.stderr.strip() == (
        "sandbox: cannot load 'shop.slow': rate must be a positive number, not -1"
    )
