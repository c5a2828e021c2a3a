"""/healthz, /readyz and /metrics of `sandbox run`, as a process of its own."""

import contextlib
import signal
import socket
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families

from sandbox import probes
from sandbox.exceptions import ConfigurationError
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.testing.rabbit import amqp_username
from sandbox.testing.utils import reset_rabbit_connections

RPC_ONLY = """
from sandbox.rpc import rpc


class Counted:
    name = "counted"

    @rpc
    def ok(self, n):
        return n

    @rpc
    def fail(self):
        raise ValueError("no")
"""

# The service's one entrypoint starts only once the file `go` exists.
SLOW_START = """
import os

import eventlet

from sandbox.extensions import Entrypoint
from sandbox.rpc import rpc


class WaitsForGo(Entrypoint):
    def start(self):
        while not os.path.exists("go"):
            eventlet.sleep(0.05)


class Late:
    name = "late"

    @WaitsForGo.decorator
    def method(self):
        pass


class Early:
    name = "early"

    @rpc
    def ping(self):
        return "pong"
"""


def samples(text):
    """(metric sample name, labels as a sorted tuple) -> value, from a Prometheus page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_probes_answer_for_a_module_without_routes(serve, rabbit_config):
    served = serve(RPC_ONLY, uri=rabbit_config["AMQP_URI"])
    health = served.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    ready = served.get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert served.get("/metrics").headers["Content-Type"].startswith("text/plain; version=")


def test_config_moves_and_turns_off_probes(serve):
    served = serve(RPC_ONLY, "-d", "HEALTHZ_PATH=/live", "-d", "METRICS_PATH=null", wait=False)
    wait_until(lambda: served.status("/live") == 200, timeout=30, interval=0.1)
    assert served.get("/healthz").status_code == 404
    assert served.get("/metrics").status_code == 404
    assert served.get("/readyz").status_code == 200


def test_readyz_is_503_until_every_service_has_started(serve, tmp_path):
    served = serve(SLOW_START, wait=False)
    wait_until(lambda: served.status("/healthz") == 200, timeout=30, interval=0.1)

    def only_late_is_missing():
        # early may still be starting when /healthz first answers (on a busy machine it is).
        ready = served.get("/readyz")
        assert ready.status_code == 503, "ready before every service has started"
        return ready.text == "service late is not started\n"

    wait_until(only_late_is_missing, timeout=30, interval=0.05)
    (tmp_path / "go").touch()
    wait_until(lambda: served.get("/readyz").status_code == 200, timeout=30, interval=0.05)


def test_readyz_follows_the_broker_through_a_cut(serve, vhost_uri, rabbit_manager):
    served = serve(RPC_ONLY, uri=vhost_uri)
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(vhost_uri).path[1:])
    user = amqp_username(vhost_uri)
    rabbit_manager.clear_vhost_permissions(vhost, user)

    def cut():
        reset_rabbit_connections(vhost, rabbit_manager)  # listed some time after they open
        return served.get("/readyz").status_code == 503

    wait_until(cut, timeout=60, interval=0.2)
    assert served.get("/readyz").text == "service counted has no broker connection\n"
    assert served.get("/healthz").status_code == 200
    rabbit_manager.set_vhost_permissions(vhost, user, ".*", ".*", ".*")
    wait_until(lambda: served.get("/readyz").status_code == 200, timeout=60, interval=0.1)
    reconnects = ("sandbox_broker_reconnects_total", ())
    wait_until(lambda: samples(served.get("/metrics").text)[reconnects] >= 1, timeout=30)
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=30) as cluster:
        assert cluster.counted.ok(1) == 1


def test_metrics_count_calls_errors_and_latency(serve, vhost_uri):
    assert_counted(serve(RPC_ONLY, uri=vhost_uri), vhost_uri)


def test_metrics_count_calls_errors_and_latency_across_workers(serve, vhost_uri):
    assert_counted(serve(RPC_ONLY, "--workers", "2", uri=vhost_uri, ready_lines=2), vhost_uri)


def assert_counted(served, uri):
    with ClusterRpcProxy({"AMQP_URI": uri}, timeout=30) as cluster:
        for n in range(20):
            assert cluster.counted.ok(n) == n
        for _ in range(3):
            with pytest.raises(Exception, match="no"):
                cluster.counted.fail()
    served.get("/healthz")  # the probes' own calls are not counted
    values = samples(served.get("/metrics").text)
    ok = (("entrypoint", "ok"), ("service", "counted"))
    fail = (("entrypoint", "fail"), ("service", "counted"))
    assert values[("sandbox_entrypoint_calls_total", ok)] == 20
    assert values[("sandbox_entrypoint_calls_total", fail)] == 3
    assert values[("sandbox_entrypoint_errors_total", fail)] == 3
    assert ("sandbox_entrypoint_errors_total", ok) not in values
    assert values[("sandbox_entrypoint_duration_seconds_count", ok)] == 20
    inf = tuple(sorted((*ok, ("le", "+Inf"))))
    assert values[("sandbox_entrypoint_duration_seconds_bucket", inf)] == 20
    assert values[("sandbox_workers_busy", (("service", "counted"),))] == 0
    assert not any(dict(labels).get("service") == "sandbox-probes" for _, labels in values)


# --- in process -------------------------------------------------------------------------------


def test_metrics_without_prometheus_client_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    response = probes.metrics_response()
    assert response.status_code == 501
    assert response.get_data(as_text=True) == (
        "metrics need prometheus_client: pip install 'service-sandbox[metrics]'\n"
    )


@pytest.mark.parametrize("value", ["healthz", 5, ["/x"]])
def test_a_probe_path_must_be_a_path(value):
    with pytest.raises(ConfigurationError) as raised:
        probes.probe_paths({"READYZ_PATH": value})
    assert str(raised.value) == f"READYZ_PATH must be a path starting with '/', not {value!r}"


def test_probe_paths_default_and_turn_off():
    assert probes.probe_paths({}) == {
        "HEALTHZ_PATH": "/healthz",
        "READYZ_PATH": "/readyz",
        "METRICS_PATH": "/metrics",
    }
    assert (
        probes.probe_paths({"HEALTHZ_PATH": None, "READYZ_PATH": False, "METRICS_PATH": ""}) == {}
    )


def test_route_less_services_run_side_by_side_without_probes_when_the_port_is_taken(cli):
    holder = socket.socket()

    def hold():
        # Ours to hold: a port that another process frees meanwhile would be a free port.
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", 8000))
            holder.listen()
            return True
        return False

    wait_until(hold, timeout=120, interval=0.1)
    try:
        process = cli("run", "services", modules={"services": RPC_ONLY})
        line = process.wait_for_line("is in use")
        assert line.rstrip().endswith(
            "WARNING sandbox.cli.run: http://127.0.0.1:8000 is in use: no /healthz, /readyz or "
            "/metrics (set WEB_SERVER_ADDRESS to serve them)"
        )
        process.wait_for_line("started service counted")
    finally:
        holder.close()


HELD = """
import os
import pathlib

import eventlet

from sandbox.web.handlers import http


class Held:
    name = "held"

    @http("GET", "/hold")
    def hold(self, request):
        pathlib.Path("holding").touch()
        while not os.path.exists("go"):
            eventlet.sleep(0.05)
        return "done"
"""


def test_readyz_is_503_while_a_stop_drains(serve, tmp_path):
    served = serve(HELD)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(served.get, "/hold")
        wait_until((tmp_path / "holding").exists, timeout=30)
        served.process.proc.send_signal(signal.SIGTERM)
        served.process.wait_for_line("stopping gracefully")
        wait_until(lambda: served.get("/readyz").status_code == 503, timeout=30, interval=0.05)
        assert served.get("/readyz").text == "service held is stopping\n"
        assert served.get("/healthz").status_code == 200
        (tmp_path / "go").touch()
        assert held.result(timeout=30).text == "done"
    code, stderr = served.process.finish()
    assert code == 0, stderr
