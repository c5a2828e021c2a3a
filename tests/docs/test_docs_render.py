"""The offline HTML rendering of both documents, and the schema text it shows."""

import re

import pytest
from docs_example_services import Greeter, Listener, Shop

from sandbox.docs import service_docs
from sandbox.docs.render import schema_text


@pytest.fixture(scope="module")
def docs():
    return service_docs([Shop, Greeter, Listener], {}, server_url="http://127.0.0.1:8000")


def test_every_operation_is_shown(docs):
    html = docs._repr_html_()
    for text in (
        "/items/{item_id}",
        "Fetch one item.",
        "shop.save_item.put",
        "nameko-rpc / greeter.hello",
        "greeter.events / greeted",
        "queue audit-log",
        "greeter.tick",
        "every 30 s",
    ):
        assert text in html
    # its schema text: the RPC arguments and the event payload
    assert "{args: [string, boolean], kwargs: {who?: string, polite?: boolean}}" in html
    assert "{who: string, count: integer}" in html


def test_it_needs_no_network_and_no_script(docs):
    html = docs.page()
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=""", html)
    assert "@import" not in html and "url(" not in html


def test_text_summary_and_saved_page(docs, tmp_path):
    lines = str(docs).splitlines()
    assert lines[0] == "GET     /items/{item_id}  Fetch one item."
    assert "receive nameko-rpc / greeter.hello  Greet someone." in lines
    assert docs.save(tmp_path / "api.html").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    "schema, text",
    [
        ({}, "any"),
        ({"type": "string", "format": "uuid"}, "string (uuid)"),
        ({"$ref": "#/components/schemas/Item"}, "Item"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "integer | null"),
        ({"enum": ["a", 1]}, '"a" | 1'),
        ({"type": "array", "items": {"type": "integer"}}, "integer[]"),
        (
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
            "(integer | null)[]",
        ),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {}]}, "[integer, any]"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "{string: number}"),
        ({"type": "object"}, "object"),
        ({"allOf": [{"$ref": "#/x/A"}, {"$ref": "#/x/B"}]}, "A & B"),
    ],
)
def test_schema_text(schema, text):
    assert schema_text(schema) == text
