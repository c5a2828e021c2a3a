"""Inspector, dashboard and call form in a real kernel: widget state read from inside it."""

import json
import textwrap

import pytest

SETUP = """
import json, logging, time
from sandbox.testing.services import dummy, entrypoint_hook

def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)

def call(method, *args, **kwargs):
    with entrypoint_hook(sb.services["shop"].container, method) as hook:
        return hook(*args, **kwargs)

def row_labels(inspector):
    return [label for label, _ in inspector.rows_widget.options]

class Shop:
    name = "shop"

    @dummy
    def price(self, item, quantity=1):
        return {"item": item, "total": 3 * quantity}

    @dummy
    def explode(self):
        logging.getLogger("shop").warning("about to explode")
        raise ValueError("kaboom")
"""


@pytest.fixture(scope="module")
def k(module_sandbox_kernel):
    module_sandbox_kernel.run(SETUP)
    return module_sandbox_kernel


def run(kernel, code):
    """Run ``code`` and return what it printed as JSON on its last line."""
    out = kernel.run(textwrap.dedent(code)).stdout.strip().splitlines()
    return json.loads(out[-1])


def json_trees(outputs):
    """The JSON trees among a detail view's outputs."""
    data = [o.get("data", {}) for o in outputs]
    return [d["application/json"] for d in data if "application/json" in d]


@pytest.fixture
def inspector(k):
    k.run("insp = sb.inspect(service='', kind='', status='', text=''); insp.resume(); insp.clear()")
    return "insp"


def test_rows_appear_after_calls(k, inspector):
    rows = run(
        k,
        """
        call("price", "apple", quantity=2)
        call("price", "pear")
        wait_until(lambda: len(insp.rows_widget.options) == 2)
        print(json.dumps(row_labels(insp)))
        """,
    )
    assert all("CALL" in row and "shop.price" in row and " ok " in row for row in rows)
    assert rows[0].startswith("#") and "ms" in rows[0]


def test_filters_and_selection_change_the_detail_view(k, inspector):
    state = run(
        k,
        """
        call("price", "needle")
        call("price", "hay")
        try:
            call("explode")
        except ValueError:
            pass
        wait_until(lambda: len(insp.rows_widget.options) == 3)
        insp.text_filter.value = "needle"
        needle_rows = row_labels(insp)
        insp.text_filter.value = ""
        insp.status_filter.value = "error"
        error_rows = row_labels(insp)
        insp.rows_widget.value = insp.rows_widget.options[0][1]
        error_detail = insp.detail_widget.outputs
        insp.status_filter.value = ""
        insp.kind_filter.value = "TIMER"
        timer_rows = row_labels(insp)
        insp.kind_filter.value = ""
        insp.rows_widget.value = [v for _, v in insp.rows_widget.options][-1]
        first_detail = insp.detail_widget.outputs
        print(json.dumps({
            "needle": needle_rows, "errors": error_rows, "timers": timer_rows,
            "error_detail": error_detail, "first_detail": first_detail,
            "kept": insp.rows_widget.value == [v for _, v in insp.rows_widget.options][-1],
        }))
        """,
    )
    assert len(state["needle"]) == 1
    assert len(state["errors"]) == 1 and "shop.explode" in state["errors"][0]
    assert state["timers"] == []
    streams = [o for o in state["error_detail"] if o["output_type"] == "stream"]
    assert 'raise ValueError("kaboom")' in streams[0]["text"]
    # The traceback is shown once, and each detail view has one JSON tree (one search box).
    assert json.dumps(state["error_detail"]).count("Traceback (most recent call last)") == 1
    (error_tree,) = json_trees(state["error_detail"])
    assert error_tree["response"]["error"] == {"type": "ValueError", "message": "kaboom"}
    (trees,) = json_trees(state["first_detail"])
    assert trees["request"] == {"args": ["needle"], "kwargs": {}}
    assert trees["response"] == {"item": "needle", "total": 3}
    assert trees["headers and context data"] == {}
    assert trees["call_id_stack"][0].startswith("shop.price.")
    assert state["kept"]


def test_a_new_message_keeps_the_selection(k, inspector):
    kept = run(
        k,
        """
        call("price", "first")
        wait_until(lambda: len(insp.rows_widget.options) == 1)
        chosen = insp.rows_widget.options[0][1]
        insp.rows_widget.value = chosen
        call("price", "second")
        wait_until(lambda: len(insp.rows_widget.options) == 2)
        print(json.dumps([insp.rows_widget.value == chosen, insp.selected.request["args"]]))
        """,
    )
    assert kept == [True, ["first"]]


def test_replay_produces_a_new_record(k, inspector):
    state = run(
        k,
        """
        call("price", "replayed", quantity=5)
        wait_until(lambda: len(insp.rows_widget.options) == 1)
        insp.rows_widget.value = insp.rows_widget.options[0][1]
        insp.replay_button.click()
        wait_until(lambda: len(insp.rows_widget.options) == 2)
        records = sb.trace.filter(service="shop", kind="CALL")
        print(json.dumps({
            "requests": [r.request for r in records],
            "message": insp.message_widget.value,
        }))
        """,
    )
    request = {"args": ["replayed"], "kwargs": {"quantity": 5}}
    assert state["requests"] == [request, request]
    assert "replayed #" in state["message"] and "&#x27;total&#x27;: 15" in state["message"]


def test_pause_holds_the_list_and_clear_empties_it(k, inspector):
    state = run(
        k,
        """
        insp.pause_button.value = True
        call("price", "while paused")
        wait_until(lambda: "1 new" in insp.count_widget.value)
        paused_rows = len(insp.rows_widget.options)
        insp.pause_button.value = False
        resumed_rows = len(insp.rows_widget.options)
        insp.clear_button.click()
        print(json.dumps([paused_rows, resumed_rows, len(insp.rows_widget.options), len(sb.trace)]))
        """,
    )
    assert state == [0, 1, 0, 0]


def test_call_chains_group_under_the_origin(k, inspector):
    labels = run(
        k,
        """
        with entrypoint_hook(sb.services["shop"].container, "price") as hook:
            hook("root")
        root = sb.trace[-1]
        with entrypoint_hook(sb.services["shop"].container, "price",
                             context_data={"call_id_stack": [root.call_id]}) as hook:
            hook("child")
        call("price", "unrelated")
        wait_until(lambda: len(insp.rows_widget.options) == 3)
        insp.chains_toggle.value = True
        chained = row_labels(insp)
        insp.chains_toggle.value = False
        print(json.dumps(chained))
        """,
    )
    assert "└─" not in labels[0]  # the newest chain, "unrelated", first
    assert "└─" not in labels[1] and "- -> shop.price" in labels[1]
    assert "└─ " in labels[2] and "shop.price -> shop.price" in labels[2]


def test_dashboard_buttons_stop_and_start_services(k):
    state = run(
        k,
        """
        d = sb.dashboard()
        d.buttons["shop"]["stop"].click()
        stopped = (sb.services["shop"].state, d.buttons["shop"]["start"].disabled)
        d.buttons["shop"]["start"].click()
        started = (sb.services["shop"].state, d.buttons["shop"]["start"].disabled)
        row = d._rows["shop"]
        print(json.dumps({
            "stopped": stopped, "started": started, "message": d.message_widget.value,
            "state": row["state"].value, "entrypoints": row["entrypoints"].value,
            "workers": row["workers"].value,
        }))
        """,
    )
    assert state["stopped"] == ["stopped", False]
    assert state["started"] == ["running", True]
    assert "shop running" in state["message"]
    assert "running" in state["state"]
    assert "entrypoint price" in state["entrypoints"]
    assert "0/10 workers busy" in state["workers"]


def test_dashboard_log_panel_shows_the_services_warnings_and_errors(k):
    text = run(
        k,
        """
        d = sb.dashboard()
        try:
            call("explode")
        except ValueError:
            pass
        panel = d.logs.panel("shop")
        wait_until(lambda: "kaboom" in "".join(o.get("text", "") for o in panel.outputs))
        print(json.dumps(panel.outputs[-1]["text"]))
        """,
    )
    assert "WARNING shop: about to explode" in text
    assert "ERROR sandbox.containers: error in <WorkerContext [shop.explode]>" in text
    assert "ValueError: kaboom" in text


def test_call_form_rejects_bad_json_and_shows_the_reply(k):
    state = run(
        k,
        """
        form = sb.call_form()
        form.choose("shop.price")
        form.args_widget.value = '{"item": "fig", '
        form.fire_button.click()
        bad = (form.status_widget.value, form.reply_widget.outputs)
        form.args_widget.value = '{"item": "fig", "quantity": 2}'
        form.fire_button.click()
        print(json.dumps({
            "bad": bad, "status": form.status_widget.value,
            "reply": form.reply_widget.outputs[0]["data"]["application/json"],
            "targets": [label for label, _ in form.target_widget.options],
        }))
        """,
    )
    assert "invalid JSON" in state["bad"][0] and "c62828" in state["bad"][0]
    assert state["bad"][1] == []
    assert "CALL shop.price replied in" in state["status"]
    assert state["reply"] == {"item": "fig", "total": 6}
    assert "CALL shop.explode" in state["targets"]


def test_call_form_chooses_a_target_and_fills_its_arguments_from_the_signature(k):
    state = run(
        k,
        """
        class Typed:
            name = "typed"

            @dummy
            def book(self, title: str, copies: int, rush: bool = False, *notes):
                return title
        """
        + """
        sb.start(Typed)
        form = sb.call_form()
        first = form.target_widget.value is not None
        form.args_widget.value = ""  # what an earlier test typed
        sb.call_form("typed.book")
        template = form.args_widget.value
        form.choose("shop.price")
        price = form.args_widget.value
        form.args_widget.value = '["fig", 2]'
        form.choose("typed.book")
        typed_over = form.args_widget.value
        form.fire_button.click()
        sb.stop("typed")
        print(json.dumps({"first": first, "template": template, "price": price,
                          "typed_over": typed_over, "status": form.status_widget.value}))
        """,
    )
    assert state["first"]
    assert json.loads(state["template"]) == {"title": "", "copies": 0, "rush": False}
    assert json.loads(state["price"]) == {"item": None, "quantity": 1}
    assert state["typed_over"] == '["fig", 2]'  # what the user typed is never replaced
    assert "CALL typed.book replied in" in state["status"]


def test_trace_is_a_table_and_a_cell_s_call_is_the_notebook_s(k):
    k.run(
        "from sandbox.rpc import rpc\n"
        "class Clock:\n"
        "    name = 'clock'\n"
        "    @rpc\n"
        "    def now(self):\n"
        "        return 'noon'\n"
    )
    assert k.run("print(sb.rpc.clock.now())").stdout == "noon\n"
    shown = k.run("sb.trace.filter(service='clock')").data[-1]
    source = k.run("print(sb.trace.filter(service='clock')[-1].source)").stdout
    k.run("sb.stop('clock')")
    assert "application/json" not in shown
    assert "<table>" in shown["text/html"] and "<td>clock.now</td>" in shown["text/html"]
    assert "<td>notebook</td>" in shown["text/html"]
    assert source == "notebook\n"


def test_magics_show_widgets_with_text_fallbacks(k):
    inspect = k.run("%sandbox inspect kind=CALL").data[0]
    status = k.run("%sandbox status").data[0]
    k.run("sb.inspect(kind='')")
    assert "application/vnd.jupyter.widget-view+json" in inspect
    assert inspect["text/plain"].startswith("inspector: ")
    assert isinstance(inspect["application/json"], list)
    assert "application/vnd.jupyter.widget-view+json" in status
    assert "● shop running" in status["text/plain"]


CHAIN = """
from sandbox.events import EventDispatcher, event_handler
from sandbox.rpc import RpcProxy, rpc
from sandbox.web.handlers import http

class Orders:
    name = "orders"
    dispatch = EventDispatcher()

    @rpc
    def place(self, item):
        self.dispatch("placed", {"item": item})
        return {"order": item}

class Gateway:
    name = "gateway"
    orders = RpcProxy("orders")

    @http("POST", "/orders")
    def create(self, request):
        return 201, self.orders.place(request.get_json()["item"])

class Mailer:
    name = "mailer"

    @event_handler("orders", "placed")
    def mail(self, payload):
        return "mailed " + payload["item"]
"""


@pytest.fixture(scope="module")
def chain(k):
    k.run(CHAIN)
    return k


def test_an_http_request_its_rpc_and_event_form_one_chain(chain, inspector):
    state = run(
        chain,
        """
        with sb.wait_for("mailer", "mail"):
            response = sb.http.post("/orders", json={"item": "tea"})
        wait_until(lambda: len(insp.rows_widget.options) == 4)
        insp.chains_toggle.value = True
        chained = row_labels(insp)
        insp.chains_toggle.value = False
        print(json.dumps({"status": response.status, "rows": chained}))
        """,
    )
    assert state["status"] == 201
    root, *below = state["rows"]
    assert "HTTP" in root and "gateway.create" in root and " 201 " in root
    assert "└─" not in root and all("└─" in row for row in below)
    kinds = sorted(row.split()[row.split().index("└─") + 2] for row in below)
    assert kinds == ["EVENT", "EVENT", "RPC"]  # the publish, the handler, the RPC
    assert any("orders.place -> orders.events:placed" in row for row in below)
    assert any("orders.place -> mailer.mail" in row for row in below)


def test_http_record_detail_curl_and_replay(chain, inspector):
    state = run(
        chain,
        """
        with sb.wait_for("mailer", "mail"):
            sb.http.post("/orders", json={"item": "jam"})
        wait_until(lambda: len(insp.rows_widget.options) == 4)
        insp.filter(kind="HTTP")
        insp.rows_widget.value = insp.rows_widget.options[0][1]
        (trees,) = [o["data"]["application/json"] for o in insp.detail_widget.outputs
                    if "application/json" in o.get("data", {})]
        insp.curl_button.click()
        curl = insp.curl_widget.value
        with sb.wait_for("mailer", "mail"):
            insp.replay_button.click()
        wait_until(lambda: len(insp.rows_widget.options) == 2)
        insp.filter(kind="")
        print(json.dumps({"trees": trees, "curl": curl, "http": len(sb.trace.filter(kind="HTTP")),
                          "message": insp.message_widget.value}))
        """,
    )
    assert state["trees"]["request"]["method"] == "POST"
    assert state["trees"]["request"]["body"] == {"item": "jam"}
    assert state["trees"]["response"]["status"] == 201
    assert state["trees"]["response"]["body"] == {"order": "jam"}
    assert state["curl"].startswith("curl -X POST http://127.0.0.1:")
    assert "/orders -H 'Content-Type: application/json'" in state["curl"]
    assert state["curl"].endswith("""--data-raw '{"item": "jam"}'""")
    assert state["http"] == 2
    assert "replayed #" in state["message"] and "201" in state["message"]


def test_rpc_from_the_call_form_and_its_replay(chain, inspector):
    state = run(
        chain,
        """
        form = sb.call_form()
        form.choose("RPC orders.place")
        form.args_widget.value = '["cake"]'
        with sb.wait_for("mailer", "mail"):
            form.fire_button.click()
        reply = form.reply_widget.outputs[0]["data"]["application/json"]
        rpc = sb.trace.filter(kind="RPC")[-1]
        with sb.wait_for("mailer", "mail"):
            again = sb.replay(rpc)
        form.choose("EVENT orders.placed")
        form.args_widget.value = '{"item": "pie"}'
        with sb.wait_for("mailer", "mail") as mailed:
            form.fire_button.click()
        rpcs = len(sb.trace.filter(kind="RPC"))
        print(json.dumps({"reply": reply, "again": again, "mailed": mailed.result,
                          "rpcs": rpcs, "status": form.status_widget.value}))
        """,
    )
    assert state["reply"] == {"order": "cake"}
    assert state["again"] == {"order": "cake"}
    assert state["mailed"] == "mailed pie"
    assert state["rpcs"] == 2
    assert "EVENT orders.placed -&gt; mailer.mail replied in" in state["status"]
