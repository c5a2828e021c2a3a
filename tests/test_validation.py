"""Config VALIDATE: arguments checked against the type hints, for each entrypoint kind, on both
brokers (``rabbit_config``); off, nothing is checked."""

import logging
import sys
from typing import Annotated

import pytest
from pydantic import BaseModel
from werkzeug.wrappers import Request as WerkzeugRequest

from sandbox import serialization
from sandbox.events import event_handler
from sandbox.exceptions import ConfigurationError, IncorrectSignature
from sandbox.rpc import rpc
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import entrypoint_waiter
from sandbox.validation import VALIDATE_CONFIG_KEY
from sandbox.web.handlers import http
from sandbox.web.server import Request


class Address(BaseModel):
    city: str
    zip: int


class Order(BaseModel):
    item: str
    quantity: int
    ship_to: Address


class Shop:
    name = "shop"

    received: list = []

    @rpc
    def add(self, a: int, b: int) -> int:
        return a + b

    @rpc
    def place(self, order: Order, note: str = "") -> dict:
        self.received.append(order)
        return {"model": type(order).__name__, "zip": order.ship_to.zip, "note": note}

    @rpc
    def untyped(self, value):
        return value

    @http("POST", "/orders")
    def post_order(self, order: Order):
        self.received.append(order)
        return 201, {"item": order.item, "city": order.ship_to.city}

    @http("POST", "/orders/<int:shop_id>/check")
    def check_order(self, request: Annotated[Request, Order], shop_id: int):
        self.received.append(request)
        return {"shop": shop_id, "body": request.get_json()}

    @http("GET", "/plain/<name>")
    def plain(self, request: WerkzeugRequest, name):
        return f"{type(request).__name__} {name}"

    @event_handler("warehouse", "shipped")
    def shipped(self, order: Order):
        self.received.append(order)


@pytest.fixture
def shop_config(rabbit_config, web_config):
    Shop.received = []
    return {**rabbit_config, **web_config, VALIDATE_CONFIG_KEY: True}


@pytest.fixture
def shop(shop_config, container_factory):
    container = container_factory(Shop, shop_config)
    container.start()
    return container


ORDER = {"item": "tea", "quantity": "3", "ship_to": {"city": "Oslo", "zip": 150}}


def test_rpc_arguments_are_converted_and_models_arrive_as_instances(shop, shop_config):
    with ServiceRpcProxy("shop", shop_config) as proxy:
        assert proxy.add("2", 3) == 5
        assert proxy.place(ORDER, note="fragile") == {
            "model": "Order",
            "zip": 150,
            "note": "fragile",
        }
        # A caller that has the model sends it as its JSON dict.
        order = Order(item="tea", quantity=1, ship_to=Address(city="Oslo", zip=151))
        assert proxy.place(order=order)["zip"] == 151
    assert Shop.received[0].quantity == 3


def test_rpc_misfit_is_incorrect_signature_naming_field_expectation_and_value(shop, shop_config):
    bad = {**ORDER, "ship_to": {"city": "Oslo", "zip": "north"}}
    with ServiceRpcProxy("shop", shop_config) as proxy:
        with pytest.raises(IncorrectSignature) as error:
            proxy.place(bad)
        with pytest.raises(IncorrectSignature, match=r"a: Input should be a valid integer"):
            proxy.add("x", 1)
        assert proxy.untyped("anything") == "anything"  # no hints: nothing to check
    assert type(error.value) is IncorrectSignature  # what a Nameko client gets too
    message = str(error.value)
    assert "order.ship_to.zip" in message
    assert "valid integer" in message
    assert "'north'" in message
    assert Shop.received == []  # no worker ran


def test_http_body_model_replaces_the_request(shop, web_session):
    response = web_session.post("/orders", json=ORDER)
    assert response.status_code == 201
    assert response.json() == {"item": "tea", "city": "Oslo"}
    assert isinstance(Shop.received[0], Order)


def test_http_annotated_request_is_checked_and_kept(shop, web_session):
    response = web_session.post("/orders/7/check", json=ORDER)
    assert response.status_code == 200
    assert response.json() == {"shop": 7, "body": ORDER}
    assert isinstance(Shop.received[0], Request)


def test_http_request_hints_that_declare_no_body_are_left_alone(shop, web_session):
    assert web_session.get("/plain/ada").text == "Request ada"


def test_http_misfit_is_400_with_the_errors_as_json(shop, web_session):
    response = web_session.post("/orders/7/check", json={"item": "tea", "ship_to": {}})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "ArgumentsRejected"
    fields = {error["field"]: error for error in body["errors"]}
    assert set(fields) == {"request.quantity", "request.ship_to.city", "request.ship_to.zip"}
    assert fields["request.quantity"]["expected"] == "Field required"
    assert fields["request.quantity"]["value"] == {"item": "tea", "ship_to": {}}
    assert Shop.received == []


def test_http_misfit_value_is_reported(shop, web_session):
    response = web_session.post("/orders", json={**ORDER, "quantity": [1]})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error == {
        "field": "order.quantity",
        "expected": "Input should be a valid integer",
        "value": [1],
    }


def test_event_misfit_is_logged_and_rejected_then_the_next_one_runs(shop, shop_config, caplog):
    caplog.set_level(logging.WARNING, logger="sandbox.messaging")
    dispatch = event_dispatcher(shop_config)
    with entrypoint_waiter(shop, "shipped"):
        dispatch("warehouse", "shipped", {**ORDER, "quantity": "many"})
        dispatch("warehouse", "shipped", ORDER)
    # The good event ran, on an instance; the bad one never reached a worker.
    assert [order.quantity for order in Shop.received] == [3]
    [rejection] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert "shop.shipped(): order.quantity: Input should be a valid integer" in rejection
    assert "'many'" in rejection


def test_off_by_default_nothing_is_checked(shop_config, container_factory):
    config = {k: v for k, v in shop_config.items() if k != VALIDATE_CONFIG_KEY}
    container_factory(Shop, config).start()
    with ServiceRpcProxy("shop", config) as proxy:
        assert proxy.add("2", "3") == "23"  # as under Nameko: the hints are not read
    container = container_factory(Shop, config)
    assert all(entrypoint.validator is None for entrypoint in container.entrypoints)


def test_without_pydantic_the_error_says_what_to_install(monkeypatch, container_factory):
    monkeypatch.setitem(sys.modules, "pydantic", None)  # makes `import pydantic` fail
    with pytest.raises(ConfigurationError) as error:
        container_factory(Shop, {VALIDATE_CONFIG_KEY: True})
    assert str(error.value) == (
        "config VALIDATE needs pydantic 2: pip install service-sandbox[validation]"
    )


def test_models_are_sent_as_their_json_dicts():
    order = Order(item="tea", quantity=1, ship_to=Address(city="Oslo", zip=1))
    _, _, body = serialization.dumps({"args": [order]}, "json")
    assert (
        body == '{"args": [{"item": "tea", "quantity": 1, "ship_to": {"city": "Oslo", "zip": 1}}]}'
    )


def test_one_validator_per_entrypoint_built_when_bound(shop):
    validators = {e.method_name: e.validator for e in shop.entrypoints}
    assert validators["untyped"] is None  # no hint: off for that method, at no cost
    assert validators["add"] is not None
    with ServiceRpcProxy("shop", shop.config) as proxy:
        assert proxy.add(1, 2) == 3
    assert {e.method_name: e.validator for e in shop.entrypoints}["add"] is validators["add"]
