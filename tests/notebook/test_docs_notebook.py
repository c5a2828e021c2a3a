"""sb.docs(), sb.trace.diagram() and the inspector's chain diagram, in a real kernel."""

import json
import textwrap

import pytest

SERVICES = """
import json
from typing import TypedDict
from sandbox.events import EventDispatcher, event_handler
from sandbox.rpc import RpcProxy, rpc
from sandbox.web.handlers import http

class Order(TypedDict):
    item: str

class Orders:
    name = "orders"
    dispatch = EventDispatcher()

    @rpc
    def place(self, item: str) -> Order:
        "Place an order."
        self.dispatch("placed", {"item": item})
        return {"item": item}

class Gateway:
    name = "gateway"
    orders = RpcProxy("orders")

    @http("GET", "/order/<item>")
    def order(self, request, item) -> Order:
        "Order one item."
        return self.orders.place(item)

class Mailer:
    name = "mailer"

    @event_handler("orders", "placed")
    def mail(self, payload: Order):
        raise RuntimeError("the mail server is down")
"""


@pytest.fixture(scope="module")
def k(module_sandbox_kernel):
    module_sandbox_kernel.run(SERVICES)
    module_sandbox_kernel.run(
        """
        with sb.wait_for("mailer", "mail"):
            sb.http.get("/order/tea")
        """
    )
    return module_sandbox_kernel


def printed(kernel, code):
    return kernel.run(textwrap.dedent(code)).stdout


def test_docs_shows_both_documents_offline(k):
    result = k.run("sb.docs()")
    html = result.data[-1]["text/html"]
    assert "/order/{item}" in html and "Order one item." in html
    assert "orders.events / placed" in html and "nameko-rpc / orders.place" in html
    assert "<script" not in html and "src=" not in html
    state = json.loads(
        printed(
            k,
            """
            docs, orders = sb.docs("gateway"), sb.docs(Orders)
            print(json.dumps({"paths": list(docs.openapi["paths"]),
                              "server": docs.openapi["servers"][0]["url"],
                              "operations": list(docs.asyncapi["operations"]),
                              "orders": list(orders.asyncapi["operations"])}))
            """,
        )
    )
    assert state["paths"] == ["/order/{item}"]
    assert state["server"].startswith("http://127.0.0.1:")
    assert state["operations"] == ["gateway.orders.orders.place"]  # the RPC it calls
    # Event types read from the code of a class typed into a cell
    assert state["orders"] == ["orders.place", "orders.dispatch.placed"]


def test_trace_diagram_of_the_latest_chain_and_of_a_record(k):
    latest = printed(k, "print(sb.trace.diagram())").splitlines()
    assert latest == [
        line
        for line in printed(
            k, "print(sb.trace.diagram(sb.trace.filter(kind='RPC')[-1]))"
        ).splitlines()
    ]
    hops = [line.split(" (")[0] for line in latest]
    assert hops[:3] == [
        "client --> gateway: GET /order/tea",
        "gateway --> orders: RPC orders.place",
        "orders --> orders.events: dispatch placed",
    ]
    assert "orders.events --> mailer: EVENT mailer.mail" in hops
    # The event handler runs asynchronously, so it may come before or after the response.
    assert latest[-1] == "client <-- gateway: 200" or hops[-1].startswith(
        "orders.events --> mailer"
    )
    assert "client <-- gateway: 200" in latest
    svg = k.run("sb.trace.diagram()").data[-1]["image/svg+xml"]
    assert svg.index("GET /order/tea") < svg.index("RPC orders.place") < svg.index("mailer.mail")
    assert "✗ RuntimeError" in svg


def test_the_inspector_shows_the_chain_of_the_selected_message(k):
    outputs = json.loads(
        printed(
            k,
            """
            insp = sb.inspect()
            insp.select(sb.trace.filter(kind="HTTP")[-1])
            print(json.dumps([sorted(o.get("data", {})) for o in insp.detail_widget.outputs]))
            """,
        )
    )
    assert ["image/svg+xml", "text/plain"] in outputs
