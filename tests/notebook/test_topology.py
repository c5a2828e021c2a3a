"""sb.topology() and sb.why in a real kernel: widget state and answers read from inside it."""

import json
import textwrap

SETUP = """
import json, time
from sandbox.events import EventDispatcher, event_handler
from sandbox.rpc import rpc

def wait_until(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)

def queues(view):
    return {q["name"]: q for q in view.widget.snapshot["queues"]}

class Shop:
    name = "shop"
    dispatch = EventDispatcher()

    @rpc
    def order(self, item):
        self.dispatch("ordered", {"item": item})
        return item

class Billing:
    name = "billing"

    @event_handler("shop", "ordered")
    def bill(self, payload):
        return payload
"""


def run(kernel, code):
    """Run ``code`` and return what it printed as JSON on its last line."""
    out = kernel.run(textwrap.dedent(code)).stdout.strip().splitlines()
    return json.loads(out[-1])


def test_the_widget_shows_services_queues_bindings_and_details(sandbox_kernel):
    k = sandbox_kernel
    k.run(SETUP)
    state = run(
        k,
        """
        view = sb.topology()
        wait_until(lambda: "evt-shop-ordered--billing.bill" in queues(view))
        snap = view.widget.snapshot
        print(json.dumps({
            "services": {
                s["name"]: [e["name"] for e in s["entrypoints"]] for s in snap["services"]
            },
            "publishes": {s["name"]: s["publishes"] for s in snap["services"]},
            "bindings": [[b["exchange"], b["routing_key"], b["queue"]] for b in snap["bindings"]],
            "source": snap["source"],
            "esm": "export default" in view.widget._esm,
        }))
        """,
    )
    assert state["services"] == {"billing": ["bill"], "shop": ["order"]}
    assert state["publishes"]["shop"] == ["shop.events"]
    assert ["shop.events", "ordered", "evt-shop-ordered--billing.bill"] in state["bindings"]
    assert state["source"].startswith("embedded broker")
    assert state["esm"] is True  # the packaged front end, not a URL

    details = run(
        k,
        """
        view.widget.selected = "queue:evt-shop-ordered--billing.bill"  # as a click does
        print(json.dumps(view.widget.details))
        """,
    )
    assert "consumed by: billing" in details
    assert "shop.events --ordered-->" in details
    service = run(k, "print(json.dumps(view.select('service:shop')))")
    assert "rpc    order  queue rpc-shop" in service


def test_a_burst_grows_the_counts_in_a_few_syncs(sandbox_kernel):
    k = sandbox_kernel
    k.run(SETUP)
    counts = run(
        k,
        """
        sb.stop("billing")
        view = sb.topology()
        before = view.syncs
        for n in range(2000):
            sb.rpc.shop.order.call_async(n)
        wait_until(lambda: queues(view)["evt-shop-ordered--billing.bill"]["ready"] == 2000, 60)
        q = queues(view)["evt-shop-ordered--billing.bill"]
        print(json.dumps({"syncs": view.syncs - before, "ready": q["ready"],
                          "consumers": q["consumers"], "received": q["received"]}))
        """,
    )
    assert counts["ready"] == 2000 and counts["received"] == 2000
    assert counts["consumers"] == 0  # billing is stopped; its queue stays (durable events)
    # Counts, not messages: 2000 events came through in a handful of snapshots.
    assert 1 <= counts["syncs"] < 200


def test_text_fallback_and_magic(sandbox_kernel):
    k = sandbox_kernel
    k.run(SETUP)
    k.run('wait_until(lambda: "rpc-shop" in sb.topology().text())')
    shown = k.run("%sandbox topology")
    (bundle,) = shown.data
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "service shop: rpc order" in bundle["text/plain"]
    assert "queue rpc-shop: ready 0, unacked 0, consumers 1" in bundle["text/plain"]


def test_why_in_the_kernel_and_in_the_inspector(broker_kernel):
    k = broker_kernel
    k.run(SETUP)
    k.run('wait_until(lambda: "evt-shop-ordered--billing.bill" in sb.topology().text())')
    answers = run(
        k,
        """
        with sb.wait_for("billing", "bill"):
            sb.rpc.shop.order("pen")
        delivered = next(r for r in reversed(sb.trace) if r.event is not None)
        sb.dispatch("shop", "refunded", {"item": "pen"})
        lost = sb.trace[-1]
        wait_until(lambda: "delivered" in sb.why(delivered))
        insp = sb.inspect()
        insp.select(lost)
        shown = [o["data"].get("text/plain", "") for o in insp.detail_widget.outputs]
        print(json.dumps({"delivered": sb.why(delivered), "lost": sb.why(lost.id),
                          "detail": [t for t in shown if t.startswith("why:")]}))
        """,
    )
    assert "'evt-shop-ordered--billing.bill'" in answers["delivered"]
    assert "service billing" in answers["delivered"]
    assert "No queue is bound" in answers["lost"]
    assert "'evt-shop-ordered--billing.bill' for 'ordered'" in answers["lost"]
    assert answers["detail"] == [f"why: {answers['lost']}"]


def test_topology_on_rabbitmq_reads_the_management_api(broker_kernel):
    k = broker_kernel
    k.run(SETUP)
    k.run('wait_until(lambda: "rpc-shop" in sb.topology().text())')
    source = run(k, "print(json.dumps(sb.topology().widget.snapshot['source']))")
    assert source.startswith(("embedded broker", "RabbitMQ management API at http://"))
    k.run(
        "from sandbox.config import config; config['RABBIT_MANAGEMENT_URI'] = 'http://127.0.0.1:9'"
    )
    notice = run(k, "view = sb.topology(); view.refresh(); print(json.dumps(view.text()))")
    if source.startswith("RabbitMQ"):
        assert "does not answer" in notice
    else:  # the embedded broker needs no management API
        assert "does not answer" not in notice
