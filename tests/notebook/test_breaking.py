"""The notice under a cell that reloads a service so that recorded calls would break."""

import textwrap

from pydantic import BaseModel

from sandbox.notebook.breaking import breaking_notice, broken_calls
from sandbox.records import EVENT, RPC, Record
from sandbox.rpc import rpc
from sandbox.utils import REDACTED


class Item(BaseModel):
    name: str
    price: float


def call(record_id, method, *args, kind=RPC, **kwargs):
    record = Record(record_id, kind, 0.0)
    record.service, record.entrypoint = "shop", method
    record.target = f"shop.{method}"
    record.args, record.kwargs = args, kwargs
    return record


class ShopV1:
    name = "shop"

    @rpc
    def add(self, a, b):
        return [a, b]

    @rpc
    def price(self, item: Item):
        return item.price

    @rpc
    def greet(self, who):
        return who


class ShopV2:
    name = "shop"

    @rpc
    def add(self, a: int, b: int, c):  # stricter, and one more argument
        return a + b + c

    @rpc
    def price(self, item: Item, currency: str = "EUR"):
        return item.price


RECORDED = [
    call(1, "add", 1, 2),
    call(2, "price", Item(name="tea", price=2.5)),  # kept as the instance the worker got
    call(3, "greet", "Ada"),
    call(4, "greet", "Ada", kind=EVENT),  # another kind's record under the same name
    call(5, "price", {"name": "tea", "price": "cheap"}),
]


def test_each_kind_of_break_is_named():
    broken = {record.id: why for record, why in broken_calls(ShopV2, RECORDED)}
    assert broken == {
        1: "add() missing a required argument: 'c'",
        3: "no RPC entrypoint greet any more",
        4: "no EVENT entrypoint greet any more",
        5: "item.price: Input should be a valid number, unable to parse string as a number, "
        "got 'cheap'",
    }


def test_a_stricter_type_breaks_calls_that_bound_before():
    class ShopV3(ShopV1):
        @rpc
        def greet(self, who: int):
            return who

    broken = broken_calls(ShopV3, [call(1, "greet", "Ada"), call(2, "greet", "7")])
    assert [(record.id, why) for record, why in broken] == [
        (1, "who: Input should be a valid integer, unable to parse string as an integer, got 'Ada'")
    ]


def test_the_notice_counts_and_lists_them():
    notice = breaking_notice(ShopV2, RECORDED)
    assert notice == textwrap.dedent(
        """\
        the new "shop" would refuse 4 of the 5 recorded calls to it:
          #1 shop.add(1, 2): add() missing a required argument: 'c'
          #3 shop.greet('Ada'): no RPC entrypoint greet any more
          #4 shop.greet('Ada'): no EVENT entrypoint greet any more
          #5 shop.price({'name': 'tea', 'price': 'cheap'}): item.price: Input should be a valid \
number, unable to parse string as a number, got 'cheap'"""
    )


def test_a_type_misfit_says_it_needs_validate_when_that_is_off():
    [(_, why)] = broken_calls(ShopV2, RECORDED[-1:], validating=False)
    assert why.endswith("got 'cheap' (with config VALIDATE on)")


def test_no_notice_when_everything_still_fits_or_cannot_be_told():
    assert breaking_notice(ShopV1, RECORDED[:3]) is None
    secret = call(9, "add", a=REDACTED, b=REDACTED)
    assert breaking_notice(ShopV2, [secret]) is None


SHOP_CELL = """
from sandbox.rpc import rpc

class Shop:
    name = "shop"

    @rpc
    def add(self, a{hint}, b{hint}):
        return a + b
"""


def test_reloading_cell_shows_the_notice_in_a_real_kernel(sandbox_kernel):
    sandbox_kernel.run(SHOP_CELL.format(hint=""))
    calls = sandbox_kernel.run('print(sb.rpc.shop.add(1, 2), sb.rpc.shop.add("x", "y"))')
    assert calls.stdout.strip() == "3 xy"
    reloaded = sandbox_kernel.run(SHOP_CELL.format(hint=": int"))
    assert "shop reloaded" in reloaded.stdout
    assert reloaded.stderr.count("sandbox: ") == 1  # one notice
    assert 'the new "shop" would refuse 1 of the 2 recorded calls to it:' in reloaded.stderr
    assert (
        "shop.add('x', 'y'): a: Input should be a valid integer, unable to parse string as an "
        "integer, got 'x'; b: Input should be a valid integer, unable to parse string as an "
        "integer, got 'y' (with config VALIDATE on)"
    ) in reloaded.stderr
    unchanged = sandbox_kernel.run(SHOP_CELL.format(hint=": int"))
    assert "would refuse 1 of the 2" in unchanged.stderr  # the record is still there to break
    sandbox_kernel.run("sb.trace.clear()")
    cleared = sandbox_kernel.run(SHOP_CELL.format(hint=": int"))
    assert "would refuse" not in cleared.stderr


ROUTE_CELL = """
from pydantic import BaseModel
from sandbox.web.handlers import http

class Item(BaseModel):
    name: str
    price: float

class Catalog:
    name = "catalog"

    @http("POST", "/items")
    def create(self, {first}):
        return 201, "created"
"""


def test_recorded_http_bodies_are_checked_against_a_new_body_model(sandbox_kernel):
    sandbox_kernel.run("from sandbox import config; config['VALIDATE'] = True")
    sandbox_kernel.run(ROUTE_CELL.format(first="request"))
    posted = sandbox_kernel.run(
        'print(sb.http.post("/items", json={"name": "tea", "price": "cheap"}).status,'
        ' sb.http.post("/items", json={"name": "tea", "price": 2}).status)'
    )
    assert posted.stdout.strip() == "201 201"
    reloaded = sandbox_kernel.run(ROUTE_CELL.format(first="item: Item"))
    assert 'the new "catalog" would refuse 1 of the 2 recorded calls to it:' in reloaded.stderr
    assert "POST http://" in reloaded.stderr
    assert "/items: item.price: Input should be a valid number" in reloaded.stderr
    assert "with config VALIDATE on" not in reloaded.stderr
