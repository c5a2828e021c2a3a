"""Outside a kernel (terminal IPython, scripts) the same calls give text and JSON, no widgets."""

import html

import pytest

from sandbox.notebook.client import NotebookClient
from sandbox.notebook.session import Session
from sandbox.records import CALL
from sandbox.testing.services import dummy, entrypoint_hook


class Shop:
    name = "shop"

    @dummy
    def price(self, item, quantity=1):
        return {"item": item, "total": 3 * quantity}

    @dummy(sensitive_arguments="card")
    def pay(self, card):
        return "paid"


@pytest.fixture
def sb():
    session = Session()
    client = NotebookClient(session)
    session.start(Shop)
    client.trace.clear()
    yield client
    client.close()
    session.stop_all(timeout=5)


def price(sb, *args, **kwargs):
    with entrypoint_hook(sb.services["shop"].container, "price") as hook:
        return hook(*args, **kwargs)


def test_views_are_text_and_json(sb):
    price(sb, "apple")
    for view in (sb.inspect(), sb.dashboard(), sb.call_form()):
        bundle = view._repr_mimebundle_()
        assert set(bundle) == {"text/plain", "application/json"}, view
    # A table, not a JSON tree (which JupyterLab would prefer to HTML, collapsed).
    trace = sb.trace._repr_mimebundle_()
    assert set(trace) == {"text/plain", "text/html"}
    assert "<td>shop.price</td>" in trace["text/html"]
    assert '<td>{"args": ["apple"], "kwargs": {}}</td>' in html.unescape(trace["text/html"])
    assert sb.inspect().widget is None
    assert "shop.price  ok" in sb.inspect()._repr_mimebundle_()["text/plain"]
    assert sb.inspect()._repr_mimebundle_()["application/json"][0]["request"] == {
        "args": ["apple"],
        "kwargs": {},
    }
    assert "● shop running" in repr(sb.dashboard())
    assert "CALL shop.price" in repr(sb.call_form())


def test_inspect_filters_in_text_mode(sb):
    price(sb, "apple")
    price(sb, "pear")
    assert repr(sb.inspect(text="pear")).count("shop.price") == 1
    assert repr(sb.inspect(text="")).count("shop.price") == 2


def test_trace_is_a_filterable_list(sb):
    price(sb, "apple")
    price(sb, "pear", quantity=2)
    assert len(sb.trace) == 2
    assert sb.trace[-1].response == {"item": "pear", "total": 6}
    assert [r.request["args"] for r in sb.trace.filter(text="apple")] == [["apple"]]
    assert len(sb.trace.filter(kind=CALL, service="shop")) == 2
    assert len(sb.trace[:1]) == 1 and "shop.price" in repr(sb.trace[:1])
    sb.trace.clear()
    assert len(sb.trace) == 0 and repr(sb.trace) == "no messages recorded"


def test_replay_runs_the_call_again(sb):
    price(sb, "apple", quantity=3)
    assert sb.replay(sb.trace[-1]) == {"item": "apple", "total": 9}
    assert sb.replay(sb.trace[0].id) == {"item": "apple", "total": 9}
    assert len(sb.trace) == 3


def test_a_redacted_call_is_not_replayed(sb):
    with entrypoint_hook(sb.services["shop"].container, "pay") as pay:
        pay("4111 1111")
    with pytest.raises(ValueError, match="redacted"):
        sb.replay(sb.trace[-1])
