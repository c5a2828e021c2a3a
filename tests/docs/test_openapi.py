"""OpenAPI 3.1 from the @http entrypoints of service classes, checked by openapi-spec-validator."""

import pytest
from docs_example_services import Greeter, Listener, Shop
from openapi_spec_validator import validate

from sandbox.docs.openapi import converter_schema, openapi_document, openapi_path
from sandbox.web.handlers import http


@pytest.fixture(scope="module")
def document():
    document = openapi_document([Shop, Greeter, Listener], server_url="http://127.0.0.1:8000")
    validate(document)
    return document


def test_every_route_and_method_is_an_operation_in_source_order(document):
    operations = [
        (path, verb, op["operationId"])
        for path, item in document["paths"].items()
        for verb, op in item.items()
    ]
    assert operations == [
        ("/items/{item_id}", "get", "shop.get_item"),
        ("/items", "post", "shop.save_item.post"),
        ("/items", "put", "shop.save_item.put"),
        ("/items/{key}/{state}/{rest}", "delete", "shop.delete_item"),
        ("/hello/{lang}/{x}/{who}", "get", "shop.hello"),
        ("/raw", "get", "shop.raw"),
    ]
    assert document["servers"] == [{"url": "http://127.0.0.1:8000"}]
    # Only services with routes are tags; the title names them.
    assert document["tags"] == [{"name": "shop", "description": "Sells items over HTTP."}]
    assert document["info"]["title"] == "shop"


def test_path_parameters_are_typed_by_their_converters(document):
    def parameters(path, verb="get"):
        return {p["name"]: p for p in document["paths"][path][verb]["parameters"]}

    assert parameters("/items/{item_id}")["item_id"] == {
        "name": "item_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
    deleted = parameters("/items/{key}/{state}/{rest}", "delete")
    assert deleted["key"]["schema"] == {"type": "string", "format": "uuid"}
    assert deleted["state"]["schema"] == {"type": "string", "enum": ["draft", "final"]}
    assert deleted["rest"]["schema"] == {"type": "string"}
    assert deleted["rest"]["description"] == "may contain slashes"
    hello = parameters("/hello/{lang}/{x}/{who}")
    assert hello["lang"]["schema"] == {
        "type": "string",
        "pattern": "^[^/]+$",
        "minLength": 2,
        "maxLength": 2,
    }
    assert hello["x"]["schema"] == {"type": "number"}  # signed: no minimum
    assert hello["who"]["schema"] == {"type": "string", "pattern": "^[^/]+$", "minLength": 1}


@pytest.mark.parametrize(
    "converter, args, kwargs, schema",
    [
        ("int", (), {}, {"type": "integer", "minimum": 0}),
        ("int", (), {"min": 3, "max": 9}, {"type": "integer", "minimum": 3, "maximum": 9}),
        ("float", (), {"signed": True, "max": 1.5}, {"type": "number", "maximum": 1.5}),
        ("string", (), {"maxlength": 8}, {"type": "string", "pattern": "^[^/]+$"}),
    ],
)
def test_converter_schemas(converter, args, kwargs, schema):
    found, _ = converter_schema(converter, args, kwargs)
    assert schema.items() <= found.items()


def test_a_custom_converter_is_a_string_with_a_note():
    path, parameters = openapi_path("/posts/<slug:post>")
    assert path == "/posts/{post}"
    assert parameters[0]["schema"] == {"type": "string"}
    assert "slug" in parameters[0]["description"]


def test_summary_and_description_come_from_the_docstring(document):
    operation = document["paths"]["/items/{item_id}"]["get"]
    assert operation["summary"] == "Fetch one item."
    assert operation["description"] == "Raises KeyError for an unknown id."
    assert operation["tags"] == ["shop"]
    assert "summary" not in document["paths"]["/raw"]["get"]


def test_request_and_response_schemas_come_from_type_hints(document):
    save = document["paths"]["/items"]["post"]
    assert save["requestBody"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/NewItem"}}
    }
    assert save["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Item"
    }
    assert "200" not in save["responses"]
    schemas = document["components"]["schemas"]
    assert schemas["NewItem"]["required"] == ["name"]
    assert schemas["NewItem"]["description"] == "What a client sends to create an item."
    assert schemas["NewItem"]["properties"]["size"] == {
        "$ref": "#/components/schemas/Size",
        "default": "s",
    }
    assert schemas["Size"]["enum"] == ["s", "l"]
    assert schemas["Item"]["required"] == ["id", "name"]

    get = document["paths"]["/items/{item_id}"]["get"]
    assert "requestBody" not in get  # a plain Request hint declares no body
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Item"
    }
    assert document["paths"]["/items/{key}/{state}/{rest}"]["delete"]["responses"]["200"] == {
        "description": "Empty body"
    }
    hello = document["paths"]["/hello/{lang}/{x}/{who}"]["get"]["responses"]["200"]
    assert hello["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert document["paths"]["/raw"]["get"]["responses"]["200"] == {"description": "Success"}


def test_expected_exceptions_are_400_and_every_operation_may_fail_with_500(document):
    responses = document["paths"]["/items/{item_id}"]["get"]["responses"]
    assert "KeyError, ValueError" in responses["400"]["description"]
    assert "400" not in document["paths"]["/raw"]["get"]["responses"]
    for item in document["paths"].values():
        for operation in item.values():
            error = operation["responses"]["500"]["content"]
            assert error["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            assert error["text/plain"]["schema"]["type"] == "string"
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "message"]


def test_a_plain_body_hint_and_other_response_forms():
    class Service:
        name = "forms"

        @http("POST", "/text")
        def text(self, request: str) -> bytes:
            pass

        @http("POST", "/pair")
        def pair(self, request) -> tuple[int, dict]:
            pass

    document = openapi_document([Service], title="Forms", version="2.0")
    validate(document)
    text = document["paths"]["/text"]["post"]
    assert text["requestBody"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert text["responses"]["200"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    pair = document["paths"]["/pair"]["post"]["responses"]["200"]
    assert pair["content"] == {"application/json": {"schema": {"type": "object"}}}
    assert document["info"] == {"title": "Forms", "version": "2.0"}


def test_services_without_routes_give_a_valid_empty_document():
    document = openapi_document([Greeter])
    validate(document)
    assert document["paths"] == {}
    assert document["info"]["title"] == "sandbox services"
