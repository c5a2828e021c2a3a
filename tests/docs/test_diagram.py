"""Sequence diagrams of recorded call chains: synthetic records, then real services."""

import xml.etree.ElementTree as ElementTree

import pytest
from greeting_chain import Gateway, Greeter, Listener

from sandbox.docs.diagram import ERROR_COLOUR, SequenceDiagram, call_chain
from sandbox.records import ERROR, EVENT, HTTP, OK, RPC, TIMER, Record, Recorder
from sandbox.testing.services import entrypoint_waiter
from sandbox.testing.utils import get_container

SVG = "{http://www.w3.org/2000/svg}"


def worker(record_id, kind, start, service, method, parent=None, duration=0.002, **fields):
    record = Record(record_id, kind, start)
    record.service, record.entrypoint = service, method
    record.target = f"{service}.{method}"
    record.call_id = f"{service}.{method}.{record_id}"
    record.call_id_stack = [*(parent.call_id_stack if parent else []), record.call_id]
    record.source = parent.target if parent else None
    record.duration, record.status = duration, OK
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def published(record_id, start, publisher, exchange, routing_key):
    record = Record(record_id, EVENT, start)
    record.call_id_stack = list(publisher.call_id_stack)
    record.source = publisher.target
    record.service = exchange.removesuffix(".events")
    record.target = f"{exchange}:{routing_key}"
    record.status = OK
    record.event = {"payload": {"who": "Ada"}}
    return record


@pytest.fixture
def chain():
    request = worker(1, HTTP, 10.0, "gateway", "greet", duration=0.010, code=200)
    request.http = {
        "request": {"method": "GET", "url": "http://127.0.0.1:8000/greet/Ada"},
        "response": {},
    }
    call = worker(2, RPC, 10.001, "greeter", "hello", parent=request, duration=0.004)
    event = published(3, 10.002, call, "greeter.events", "greeted")
    handled = worker(4, EVENT, 10.006, "listener", "on_greeted", parent=call, duration=0.001)
    handled.status = ERROR
    handled.error = {"type": "ValueError", "message": "no", "traceback": ""}
    unrelated = worker(5, TIMER, 10.003, "clock", "tick")
    return [unrelated, handled, event, call, request]


def labels(svg):
    root = ElementTree.fromstring(svg)  # well-formed XML
    return [
        "".join(group.find(f"{SVG}text").itertext())
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "hop"
    ]


def test_a_chain_is_every_record_with_the_same_origin(chain):
    for call_id in ("gateway.greet.1", "greeter.hello.2", "listener.on_greeted.4"):
        assert [r.id for r in call_chain(chain, call_id)] == [1, 2, 3, 4]
    assert [r.id for r in call_chain(chain, "clock.tick.5")] == [5]
    with pytest.raises(KeyError, match="no recorded call 'nope'"):
        call_chain(chain, "nope")


def test_each_hop_in_order_with_durations_replies_and_errors(chain):
    diagram = SequenceDiagram(call_chain(chain, "gateway.greet.1"))
    assert labels(diagram.svg) == [
        "GET /greet/Ada (10.0 ms)",
        "RPC greeter.hello (4.0 ms)",
        "dispatch greeted",
        "ok",  # the RPC reply, at 10.005
        "EVENT listener.on_greeted (1.0 ms) ✗ ValueError",
        "200",  # the HTTP response, at 10.010
    ]
    assert str(diagram).splitlines() == [
        "client --> gateway: GET /greet/Ada (10.0 ms)",
        "gateway --> greeter: RPC greeter.hello (4.0 ms)",
        "greeter --> greeter.events: dispatch greeted",
        "gateway <-- greeter: ok",
        "greeter.events --> listener: EVENT listener.on_greeted (1.0 ms) ✗ ValueError",
        "client <-- gateway: 200",
    ]
    root = ElementTree.fromstring(diagram.svg)
    heads = [
        "".join(g.find(f"{SVG}text").itertext())
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "lifeline"
    ]
    assert heads == ["client", "gateway", "greeter", "greeter.events", "listener"]
    failed = [g for g in root.iter(f"{SVG}g") if g.get("data-record") == "4"]
    assert failed[0].find(f"{SVG}line").get("stroke") == ERROR_COLOUR
    assert diagram._repr_svg_() == diagram.svg


def test_a_timer_calls_its_own_service_and_a_running_call_has_no_reply(tmp_path):
    tick = worker(1, TIMER, 1.0, "clock", "tick")
    slow = worker(2, RPC, 1.001, "clock", "slow", parent=tick, duration=None)
    slow.status = "running"
    diagram = SequenceDiagram([tick, slow])
    assert labels(diagram.svg) == ["TIMER clock.tick (2.0 ms)", "RPC clock.slow (running)"]
    assert "<path" in diagram.svg  # drawn as a loop on one lifeline
    assert diagram.save(tmp_path / "d.svg").read_text() == diagram.svg
    assert str(SequenceDiagram([])) == "no records"
    ElementTree.fromstring(SequenceDiagram([]).svg)


# --- real services -------------------------------------------------------------------------------


def test_a_recorded_http_rpc_event_chain(rabbit_config, web_config, runner_factory, web_session):
    recorder = Recorder(size=100).start()
    try:
        runner = runner_factory({**rabbit_config, **web_config}, Gateway, Greeter, Listener)
        runner.start()
        with entrypoint_waiter(get_container(runner, Listener), "on_greeted"):
            assert web_session.get("/greet/Ada").text == "hello Ada"
        records = recorder.records()
    finally:
        recorder.stop()
    request = next(r for r in records if r.kind == HTTP)
    diagram = SequenceDiagram(call_chain(records, request.call_id))
    hops = [label.split(" (")[0] for label in labels(diagram.svg)]
    # The event handler runs asynchronously: it may start before or after the RPC reply and
    # the HTTP response. Everything else follows cause and effect.
    assert sorted(hops) == sorted(
        [
            "GET /greet/Ada",
            "RPC greeter.hello",
            "dispatch greeted",
            "ok",
            "200",
            "EVENT listener.on_greeted",
        ]
    )
    assert hops[:3] == ["GET /greet/Ada", "RPC greeter.hello", "dispatch greeted"]
    assert hops.index("ok") < hops.index("200")
    assert "✗ ValueError" in diagram.svg
