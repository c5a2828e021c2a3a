"""sandbox.load: the open-loop schedule holds its rate, saturation shows as latency and queue."""

import eventlet
import pytest
from polling import wait_until

from sandbox.events import event_handler
from sandbox.load import EVENT, HTTP, RPC, LoadRun, LoadTarget, percentile
from sandbox.rpc import rpc
from sandbox.web.handlers import http


class Echo:
    name = "echo"

    @rpc
    def echo(self, value):
        return value

    @rpc
    def slow(self):
        eventlet.sleep(0.05)


def test_targets_parse_and_bad_ones_say_what_is_expected():
    assert LoadTarget.parse("echo.echo") == LoadTarget(RPC, "echo", "echo")
    assert LoadTarget.parse("get /items/1") == LoadTarget(HTTP, "/items/1", "GET")
    assert LoadTarget.parse("event:shop.order-placed") == LoadTarget(EVENT, "shop", "order-placed")
    assert str(LoadTarget.parse("event:shop.order-placed")) == "event:shop.order-placed"
    for bad in ("echo", "GET items", "event:shop", ""):
        with pytest.raises(ValueError, match="'service.method' \\(RPC\\)"):
            LoadTarget.parse(bad)
    with pytest.raises(ValueError, match="rate must be a positive number"):
        LoadRun("echo.echo", rate=0)
    with pytest.raises(TypeError, match="args must be a list"):
        LoadRun("echo.echo", args="x")


def test_percentile_is_nearest_rank():
    values = list(range(100))
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50, 99)
    assert percentile([], 0.5) is None


@pytest.mark.parametrize("rate", [50, 100])
def test_rpc_load_holds_the_asked_rate(rabbit_config, container_factory, rate):
    container = container_factory(Echo, rabbit_config)
    container.start()
    run = LoadRun(
        "echo.echo",
        args=["x"],
        rate=rate,
        duration=2,
        config=rabbit_config,
        busy_workers=lambda: container.busy_workers,
    ).start()
    result = run.wait(timeout=60)
    assert result.sent == result.completed == 2 * rate
    assert result.errors == 0
    assert abs(result.throughput - rate) <= 0.1 * rate, result.table()
    assert 0 < result.p50 <= result.p99 <= result.max
    assert run.timeline and run.timeline[-1].completed == 2 * rate
    assert all(w.busy_workers is not None and w.queue_depth is not None for w in run.timeline)


def test_a_saturated_service_shows_latency_and_a_queue_not_a_lower_rate(
    rabbit_config, container_factory
):
    # One worker at 50 ms a call serves 20/s at best: asked 60/s, requests pile up in its
    # queue, and their latencies, counted from when each was due, grow with the pile.
    container = container_factory(Echo, {**rabbit_config, "max_workers": 1})
    container.start()
    result = (
        LoadRun("echo.slow", rate=60, duration=1, timeout=30, config=rabbit_config)
        .start()
        .wait(timeout=90)
    )
    assert result.sent == result.completed == 60 and result.errors == 0
    assert result.throughput < 0.6 * 60, result.table()
    # The last one, due at ~1 s, waited for the 59 before it, 50 ms each: ~2 s late; the
    # median one for half of them, far above a call's own 50 ms.
    assert result.max > 1.0 and result.p50 > 0.2, result.table()
    assert max(w.queue_depth or 0 for w in result.timeline) > 0


def test_http_load_counts_error_statuses(web_config, container_factory):
    class Web:
        name = "web"

        @http("GET", "/ping")
        def ping(self, request):
            return "pong"

    container_factory(Web, web_config).start()
    ok = LoadRun("GET /ping", rate=50, duration=1, config=web_config).start().wait(timeout=60)
    assert ok.completed == 50 and ok.errors == 0, ok.table()
    assert abs(ok.throughput - 50) <= 5, ok.table()
    missing = LoadRun("GET /nowhere", rate=20, duration=0.5, config=web_config).start()
    result = missing.wait(timeout=60)
    assert result.errors == result.completed == 10
    assert result.error_kinds == {"HttpStatusError": 10}
    assert "HttpStatusError" in result.table()


def test_event_load_reaches_its_handlers(rabbit_config, container_factory):
    handled = []

    class Listener:
        name = "listener"

        @event_handler("src", "ping")
        def on_ping(self, payload):
            handled.append(payload)

    container_factory(Listener, rabbit_config).start()
    result = (
        LoadRun("event:src.ping", args=[{"n": 1}], rate=50, duration=1, config=rabbit_config)
        .start()
        .wait(timeout=60)
    )
    assert result.completed == 50 and result.errors == 0, result.table()
    wait_until(lambda: len(handled) == 50)
    assert handled[0] == {"n": 1}


def test_an_unknown_service_is_counted_as_errors_and_stop_ends_the_schedule(rabbit_config):
    run = LoadRun("nobody.here", rate=20, duration=30, config=rabbit_config).start()
    wait_until(lambda: run.errors >= 3)
    run.stop()
    result = run.wait(timeout=60)
    assert result.sent < 600 and result.errors == result.completed == result.sent
    assert result.error_kinds == {"UnknownService": result.sent}
