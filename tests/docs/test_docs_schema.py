"""Type hints to JSON Schema: builtins, unions, collections and the named types of the user."""

import dataclasses
import datetime
import typing
import uuid
from enum import IntEnum
from typing import Annotated, Any, Literal, NamedTuple, NewType, NotRequired, Optional, TypedDict

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from sandbox.docs.schema import Schemas
from sandbox.docs.source import ObjectShape, summary_and_description, type_hints

UserId = NewType("UserId", int)


@dataclasses.dataclass
class Node:
    """A tree.

    Each node has children.
    """

    name: str
    children: list["Node"] = dataclasses.field(default_factory=list)
    weight: float = dataclasses.field(default=1.0, metadata={"description": "how heavy"})


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


class Point(NamedTuple):
    x: int
    y: int = 0


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Label(str):
    pass


@pytest.mark.parametrize(
    "hint, schema",
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (bytes, {"type": "string", "format": "binary"}),
        (datetime.datetime, {"type": "string", "format": "date-time"}),
        (datetime.date, {"type": "string", "format": "date"}),
        (uuid.UUID, {"type": "string", "format": "uuid"}),
        (Label, {"type": "string"}),
        (UserId, {"type": "integer"}),
        (Any, {}),
        (object, {}),
        (typing.TypeVar("T"), {}),
        (Optional[str], {"anyOf": [{"type": "string"}, {"type": "null"}]}),  # noqa: UP045
        (int | str | None, {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}),
        (int | Any, {}),
        (Literal["a", "b"], {"enum": ["a", "b"], "type": "string"}),
        (Literal[1, "x"], {"enum": [1, "x"]}),
        (Annotated[int, "an id"], {"type": "integer", "description": "an id"}),
        (list, {"type": "array", "items": {}}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (typing.Sequence[str], {"type": "array", "items": {"type": "string"}}),
        (set[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (tuple[()], {"type": "array", "maxItems": 0, "minItems": 0}),
        (dict, {"type": "object"}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (typing.Mapping[str, Any], {"type": "object"}),
    ],
)
def test_hints(hint, schema):
    assert Schemas().of(hint) == schema


def test_fixed_tuples_in_both_dialects():
    assert Schemas().of(tuple[int, str]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "items": False,
        "minItems": 2,
    }
    assert Schemas(draft07=True).of(tuple[int, str]) == {
        "type": "array",
        "items": [{"type": "integer"}, {"type": "string"}],
        "additionalItems": False,
        "minItems": 2,
    }


def test_dataclasses_are_components_and_may_refer_to_themselves():
    schemas = Schemas()
    assert schemas.of(list[Node]) == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Node"},
    }
    assert schemas.components["Node"] == {
        "type": "object",
        "title": "Node",
        "description": "A tree.\n\nEach node has children.",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
            "weight": {"type": "number", "default": 1.0, "description": "how heavy"},
        },
        "required": ["name"],
    }


def test_typeddicts_namedtuples_and_enums():
    schemas = Schemas()
    schemas.of(Movie)
    schemas.of(Point)
    schemas.of(Level)
    assert schemas.components["Movie"]["required"] == ["title"]
    assert schemas.components["Movie"]["properties"]["year"] == {"type": "integer"}
    assert schemas.components["Point"] == {
        "type": "array",
        "title": "Point",
        "prefixItems": [
            {"type": "integer", "title": "x"},
            {"type": "integer", "title": "y", "default": 0},
        ],
        "items": False,
        "minItems": 1,
    }
    assert schemas.components["Level"] == {"title": "Level", "enum": [1, 2], "type": "integer"}
    assert "description" not in schemas.components["Level"]  # Enum's own docstring is not ours


def test_classes_that_share_a_name_get_distinct_components():
    def make():
        @dataclasses.dataclass
        class Node:
            value: int

        return Node

    schemas = Schemas()
    first, second = schemas.of(Node), schemas.of(make())
    assert first != second
    assert len(schemas.components) == 2


def test_a_class_with_model_json_schema_is_asked_for_it():
    class Model:  # pydantic's protocol, without pydantic
        @classmethod
        def model_json_schema(cls, ref_template):
            return {
                "type": "object",
                "properties": {"part": {"$ref": ref_template.format(model="Part")}},
                "$defs": {"Part": {"type": "object"}},
            }

    schemas = Schemas()
    assert schemas.of(Model) == {"$ref": "#/components/schemas/Model"}
    assert schemas.components["Model"]["properties"]["part"] == {
        "$ref": "#/components/schemas/Part"
    }
    assert schemas.components["Part"] == {"type": "object"}


def test_object_shapes_are_inline():
    schema = Schemas().of(ObjectShape({"who": str, "n": int}))
    assert schema == {
        "type": "object",
        "properties": {"who": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["who", "n"],
    }


def test_an_unresolvable_hint_costs_only_itself():
    def handler(self, known: int, unknown: "NoSuchType") -> str:  # noqa: F821
        pass

    hints = type_hints(handler)
    assert hints["known"] is int and hints["return"] is str
    assert Schemas().of(hints["unknown"]) == {}


def test_summary_and_description():
    assert summary_and_description(Node) == ("A tree.", "Each node has children.")
    assert summary_and_description(Movie) == (None, None)  # inherited, not written


def test_every_schema_is_valid_json_schema_in_both_dialects():
    hints = [Node, Movie, Point, Level, tuple[int, str], list[Movie] | None, Literal[1, 2]]
    for draft07, validator in ((False, Draft202012Validator), (True, Draft7Validator)):
        schemas = Schemas(draft07=draft07)
        for hint in hints:
            validator.check_schema(schemas.of(hint))
        for schema in schemas.components.values():
            validator.check_schema(schema)


def test_nested_pydantic_models_that_share_a_class_name_stay_apart():
    from pydantic import BaseModel, create_model

    street = create_model("Address", __module__="shop_a", street=(str, ...))
    point = create_model("Address", __module__="shop_b", lat=(float, ...))
    order = create_model("Order", __base__=BaseModel, ship_to=(street, ...))
    depot = create_model("Depot", __base__=BaseModel, where=(point, ...))
    both = create_model("Both", __base__=BaseModel, one=(point, ...), other=(street, ...))
    tree = create_model("Tree", name=(str, ...), children=(list["Tree"], []))  # noqa: F821

    schemas = Schemas()
    schemas.of(order), schemas.of(depot), schemas.of(both), schemas.of(tree)
    components = schemas.components

    def target(model, field):
        name = components[model]["properties"][field]["$ref"].rsplit("/", 1)[1]
        return set(components[name]["properties"])

    assert target("Order", "ship_to") == {"street"}
    assert target("Depot", "where") == {"lat"}
    assert (target("Both", "one"), target("Both", "other")) == ({"lat"}, {"street"})
    assert schemas.of(street) == components["Order"]["properties"]["ship_to"]  # one component
    assert components["Tree"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/Tree"
    }
    for schema in components.values():
        Draft202012Validator.check_schema(schema)
