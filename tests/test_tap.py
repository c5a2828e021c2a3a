"""sandbox.tap on RabbitMQ: a `sandbox run` process's calls and events, seen read-only."""

from functools import partial

import kombu
import pytest
from amqp.exceptions import ResourceLocked
from polling import wait_until

from sandbox.exceptions import RemoteError
from sandbox.records import ERROR, EVENT, OK, RPC, Recorder
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.tap import ClusterTap

OUTSIDE = """
from sandbox.events import EventDispatcher
from sandbox.rpc import rpc


class Outside:
    name = "outside"

    dispatch = EventDispatcher()

    @rpc
    def double(self, value):
        return value * 2

    @rpc
    def fail(self):
        raise ValueError("no luck")

    @rpc
    def announce(self, what):
        self.dispatch("announced", {"what": what})
"""


@pytest.fixture
def outside(cli, rabbit_manager, tmp_path):
    vhost = f"sandbox-tap-{tmp_path.name[-20:]}"
    uri = rabbit_manager.create_vhost_for_amqp_user(vhost)
    proc = cli("run", "outside", "--broker", uri, modules={"outside": OUTSIDE})
    proc.wait_for_line("started service outside", timeout=60)
    yield {"AMQP_URI": uri}, vhost
    proc.kill()
    rabbit_manager.delete_vhost(vhost)


@pytest.fixture
def recorded():
    rec = Recorder(size=100).start()
    yield rec
    rec.stop()


def test_calls_and_events_of_a_service_elsewhere_are_recorded_as_outside(
    outside, recorded, rabbit_manager
):
    config, vhost = outside
    tap = ClusterTap(config, lambda name: False, rabbit_manager).start()
    try:
        tap.wait_until_ready()
        with ClusterRpcProxy(config) as cluster:
            assert cluster.outside.double(21) == 42
            with pytest.raises(RemoteError, match="no luck"):
                cluster.outside.fail()
            wait_until(lambda: "outside.events" in tap.tapped)  # seen calling: tapped
            cluster.outside.announce("news")
        wait_until(lambda: any(r.kind == EVENT for r in recorded.records()))
        wait_until(lambda: all(r.status != "running" for r in recorded.records()))
        queues = {q["name"]: q for q in rabbit_manager.get_queues(vhost)}
        with kombu.Connection(config["AMQP_URI"]) as connection:
            declare = partial(connection.default_channel.queue_declare, passive=True)
            service_consumers = declare("rpc-outside").consumer_count
            with pytest.raises(ResourceLocked):  # exclusive: no other connection may touch it
                declare(tap.queue)
    finally:
        tap.stop()

    calls = {r.target: r for r in recorded.records() if r.kind == RPC}
    assert set(calls) == {"outside.double", "outside.fail", "outside.announce"}
    double, fail = calls["outside.double"], calls["outside.fail"]
    assert (double.outside, double.status, double.args, double.result) == (True, OK, (21,), 42)
    assert double.source == "standalone_rpc_proxy.call" and double.duration >= 0
    assert (fail.status, fail.error["type"], fail.error["message"]) == (
        ERROR,
        "ValueError",
        "no luck",
    )
    (event,) = [r for r in recorded.records() if r.kind == EVENT]
    assert (event.outside, event.service, event.target) == (
        True,
        "outside",
        "outside.events:announced",
    )
    assert event.event["payload"] == {"what": "news"}
    assert event.source == "outside.announce"
    # Read-only: the service's own queue kept its one consumer; the tap's queue is its own.
    assert service_consumers == 1
    (tap_queue,) = [q for name, q in queues.items() if name.startswith("sandbox-tap-")]
    assert tap_queue["exclusive"] and tap_queue["auto_delete"]
    wait_until(lambda: tap.queue not in {q["name"] for q in rabbit_manager.get_queues(vhost)})


def test_local_services_and_our_own_events_are_not_recorded_twice(outside, recorded):
    config, _ = outside
    tap = ClusterTap(config, lambda name: name == "outside", None).start()
    try:
        tap.wait_until_ready()
        with ClusterRpcProxy(config) as cluster:
            assert cluster.outside.double(1) == 2  # "local": its worker would record it
            wait_until(lambda: "outside.events" in tap.tapped)
        dispatch = event_dispatcher(config)
        dispatch("outside", "announced", {"what": "ours"})
        with ClusterRpcProxy(config) as cluster:  # a marker: the tap has read past our event
            cluster.outside.announce("theirs")
        wait_until(lambda: len(recorded.records()) >= 2)
    finally:
        tap.stop()
    events = [r for r in recorded.records() if r.kind == EVENT]
    assert [(e.event["payload"]["what"], e.outside) for e in events] == [
        ("ours", False),  # the publish record this process made itself
        ("theirs", True),
    ]
    assert not [r for r in recorded.records() if r.kind == RPC]
