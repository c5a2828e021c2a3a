"""Type hints to JSON Schema, for the OpenAPI and AsyncAPI documents.

Builtins, ``Optional``/``Union``, ``Literal``, ``Annotated``, collections, enums, dataclasses,
TypedDicts and NamedTuples need nothing else; a class with pydantic's ``model_json_schema``
is asked for its own schema (pydantic itself is never imported). Named types become shared
components, referenced with ``$ref``; anything unknown is documented as "any value" (``{}``).
"""

from __future__ import annotations

import collections
import collections.abc as abc
import dataclasses
import datetime
import enum
import re
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sandbox.docs.source import MISSING, ObjectShape, docstring, type_hints

REF_PREFIX = "#/components/schemas/"

_FORMATS: dict[type, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "format": "binary"},
    type(None): {"type": "null"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}
# Concrete classes (a bare ``list`` hint, a subclass) and the origins of generic hints.
_CONCRETE_ARRAYS = (list, tuple, set, frozenset, collections.deque)
_ARRAYS = (*_CONCRETE_ARRAYS, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet)
_ARRAYS += (abc.Iterable, abc.Collection)
_CONCRETE_MAPPINGS = (dict,)
_MAPPINGS = (*_CONCRETE_MAPPINGS, abc.Mapping, abc.MutableMapping)
_UNIONS = (typing.Union, types.UnionType)
_WRAPPERS = (typing.Required, typing.NotRequired, typing.ClassVar, typing.Final)


def json_type(value: Any) -> str | None:
    """The JSON Schema type name of a Python value, None when it has none."""
    if isinstance(value, enum.Enum):
        value = value.value
    for python_type in (bool, int, float, str, type(None)):
        if isinstance(value, python_type):
            return _FORMATS[python_type]["type"]
    return None


class Schemas:
    """Builds JSON Schemas from hints and collects the named ones in ``components``.

    ``draft07`` writes fixed-length arrays the draft-07 way (``items`` as a list) for
    AsyncAPI; the default is JSON Schema 2020-12's ``prefixItems``, OpenAPI 3.1's dialect.
    """

    def __init__(self, draft07: bool = False):
        self.draft07 = draft07
        self.components: dict[str, dict[str, Any]] = {}
        self._names: dict[type, str] = {}

    def of(self, hint: Any) -> dict[str, Any]:
        """The schema of values of type ``hint``; ``{}`` (anything) when it cannot tell."""
        if hint is None:
            hint = type(None)
        if isinstance(hint, ObjectShape):
            return self.object(hint.fields, required=list(hint.fields))
        if typing.get_origin(hint) is not None:
            return self._generic(typing.get_origin(hint), typing.get_args(hint))
        if hasattr(hint, "__supertype__"):  # typing.NewType
            return self.of(hint.__supertype__)
        if isinstance(hint, type) and hint not in (object, MISSING):
            return self._class(hint)
        return {}  # Any, TypeVars, unresolved forward references

    def component(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """Register a hand-written schema under ``name``; the reference to it."""
        self.components.setdefault(name, schema)
        return {"$ref": REF_PREFIX + name}

    def object(
        self, fields: dict[str, Any], required: Sequence[str] = (), more: bool = True
    ) -> dict[str, Any]:
        """An object with a property per field hint; ``more=False`` allows no other keys."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: self.of(hint) for name, hint in fields.items()},
        }
        if required:
            schema["required"] = list(required)
        if not more:
            schema["additionalProperties"] = False
        return schema

    def positional(
        self, items: list[dict[str, Any]], more: bool | dict[str, Any] = False
    ) -> dict[str, Any]:
        """An array whose n-th item has the n-th schema; items past them are allowed when
        ``more`` is True, must match it when it is a schema, are not when it is False."""
        schema: dict[str, Any] = {"type": "array"}
        if not items:  # a schema list may not be empty
            if more is False:
                schema["maxItems"] = 0
            elif more is not True:
                schema["items"] = more
            return schema
        first, rest = ("items", "additionalItems") if self.draft07 else ("prefixItems", "items")
        schema[first] = items
        if more is not True:
            schema[rest] = more
        return schema

    # --- generics ---------------------------------------------------------------------------

    def _generic(self, origin: Any, args: tuple) -> dict[str, Any]:
        if origin is typing.Annotated:
            return self._annotated(args[0], args[1:])
        if origin in _WRAPPERS:
            return self.of(args[0])
        if origin in _UNIONS:
            return _any_of([self.of(arg) for arg in args])
        if origin is typing.Literal:
            return _literal(args)
        if origin is tuple:
            return self._tuple(args)
        if origin in _ARRAYS:
            return self._array(origin, self.of(args[0]) if args else {})
        if origin in _MAPPINGS:
            return self._mapping(self.of(args[1]) if len(args) == 2 else {})
        if isinstance(origin, type):  # a generic class of the user's: Page[Item]
            return self._class(origin)
        return {}

    def _annotated(self, hint: Any, metadata: tuple) -> dict[str, Any]:
        schema = self.of(hint)
        description = next((m for m in metadata if isinstance(m, str)), None)
        return {**schema, "description": description} if description else schema

    def _tuple(self, args: tuple) -> dict[str, Any]:
        if len(args) == 2 and args[1] is Ellipsis:
            return self._array(tuple, self.of(args[0]))
        return {**self.positional([self.of(arg) for arg in args]), "minItems": len(args)}

    def _array(self, origin: Any, items: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": items}
        if origin in (set, frozenset, abc.Set, abc.MutableSet):
            schema["uniqueItems"] = True
        return schema

    def _mapping(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}

    # --- classes ----------------------------------------------------------------------------

    def _class(self, cls: type) -> dict[str, Any]:
        if cls in _FORMATS:
            return dict(_FORMATS[cls])
        builder = self._builder(cls)
        if builder is not None:
            return self._named(cls, builder)
        base = next((b for b in cls.__mro__ if b in _FORMATS), None)
        if base is not None:
            return dict(_FORMATS[base])
        if issubclass(cls, _CONCRETE_ARRAYS):
            return self._array(cls, {})
        if issubclass(cls, _CONCRETE_MAPPINGS):
            return self._mapping({})
        return {}

    def _builder(self, cls: type) -> Callable[[type], dict[str, Any]] | None:
        if issubclass(cls, enum.Enum):
            return _enum
        if dataclasses.is_dataclass(cls):
            return self._dataclass
        if typing.is_typeddict(cls):
            return self._typeddict
        if issubclass(cls, tuple) and hasattr(cls, "_fields"):
            return self._namedtuple
        if callable(getattr(cls, "model_json_schema", None)):
            return self._pydantic
        return None

    def _named(self, cls: type, build: Callable[[type], dict[str, Any]]) -> dict[str, Any]:
        name = self._names.get(cls)
        if name is None:
            name = self._names[cls] = self._free_name(cls)
            self.components[name] = {}  # taken before building: a recursive type refers to it
            schema = build(cls)
            description = docstring(cls)
            if description and "description" not in schema:
                schema["description"] = description
            self.components[name] = schema
        return {"$ref": REF_PREFIX + name}

    def _free_name(self, cls: type) -> str:
        # Two classes may share a name (two modules, a class redefined in a notebook cell).
        return self._free_name_of([cls.__name__, f"{cls.__module__}.{cls.__qualname__}"])

    def _free_name_of(self, candidates: list[str]) -> str:
        for candidate in candidates:
            name = re.sub(r"[^\w.\-]", "_", candidate)
            if name not in self.components:
                return name
        counter = 2
        while f"{name}_{counter}" in self.components:
            counter += 1
        return f"{name}_{counter}"

    def _dataclass(self, cls: type) -> dict[str, Any]:
        hints = type_hints(cls)
        fields = dataclasses.fields(cls)
        schema = self.object({f.name: hints.get(f.name, MISSING) for f in fields})
        schema["title"] = cls.__name__
        for field in fields:
            if field.default is not dataclasses.MISSING:
                set_default(schema["properties"][field.name], field.default)
            if field.metadata.get("description"):
                schema["properties"][field.name]["description"] = field.metadata["description"]
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if required:
            schema["required"] = required
        return schema

    def _typeddict(self, cls: type) -> dict[str, Any]:
        hints = type_hints(cls)
        required = [name for name in hints if name in cls.__required_keys__]
        return {**self.object(hints, required), "title": cls.__name__}

    def _namedtuple(self, cls: type) -> dict[str, Any]:
        # A NamedTuple travels as a JSON array.
        hints = type_hints(cls)
        items = [{**self.of(hints.get(name, MISSING)), "title": name} for name in cls._fields]
        for name, default in cls._field_defaults.items():
            set_default(items[cls._fields.index(name)], default)
        required = len(cls._fields) - len(cls._field_defaults)
        schema = {**self.positional(items), "title": cls.__name__}
        if required:
            schema["minItems"] = required
        return schema

    def _pydantic(self, cls: type) -> dict[str, Any]:
        # pydantic names the nested types of each model on its own, by class name: two models
        # whose nested classes share a name (two modules' Address) would share one component.
        # Each nested class gets the component its class has (or a free name), as ours do.
        schema = cls.model_json_schema(ref_template=REF_PREFIX + "{model}")
        definitions = schema.pop("$defs", {})
        nested = _named_types(cls)
        names: dict[str, str] = {}
        new: list[str] = []
        for name, definition in definitions.items():
            owner = nested.get(name)
            if owner is not None and owner in self._names:
                names[name] = self._names[owner]
                continue
            if owner is not None:
                names[name] = self._names[owner] = self._free_name(owner)
            elif self.components.get(name, definition) == definition:
                names[name] = name
            else:
                names[name] = self._free_name_of([name])
            self.components[names[name]] = {}  # taken: the next one picks another name
            new.append(name)
        for name in new:
            self.components[names[name]] = _renamed(definitions[name], names)
        schema = _renamed(schema, names)
        own = self._names[cls]
        if schema == {"$ref": REF_PREFIX + own}:  # a recursive model: pydantic defines it aside
            return _renamed(definitions[_key_of(names, own)], names)
        return schema


def _named_types(cls: type) -> dict[str, type]:
    """The classes that pydantic may define aside in ``cls``'s schema, by class name (a name
    two of them share is left out: pydantic qualifies those itself)."""
    found: dict[str, type | None] = {}
    pending: list[Any] = [cls]
    seen: set[int] = set()
    while pending:
        hint = pending.pop()
        if id(hint) in seen:
            continue
        seen.add(id(hint))
        pending.extend(typing.get_args(hint))
        if not isinstance(hint, type):
            continue
        if found.setdefault(hint.__name__, hint) is not hint:
            found[hint.__name__] = None
        fields = getattr(hint, "model_fields", None)
        if isinstance(fields, dict):
            pending.extend(field.annotation for field in fields.values())
        elif dataclasses.is_dataclass(hint) or typing.is_typeddict(hint):
            pending.extend(type_hints(hint).values())
    return {name: found_cls for name, found_cls in found.items() if found_cls is not None}


def _renamed(schema: Any, names: dict[str, str]) -> Any:
    """``schema`` with its references to components renamed by ``names``."""
    if isinstance(schema, list):
        return [_renamed(item, names) for item in schema]
    if not isinstance(schema, dict):
        return schema
    renamed = {key: _renamed(value, names) for key, value in schema.items()}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        target = ref[len(REF_PREFIX) :]
        renamed["$ref"] = REF_PREFIX + names.get(target, target)
    return renamed


def _key_of(names: dict[str, str], value: str) -> str:
    return next(key for key, name in names.items() if name == value)


def _enum(cls: type[enum.Enum]) -> dict[str, Any]:
    return {"title": cls.__name__, **_literal(tuple(member.value for member in cls))}


def _literal(values: tuple) -> dict[str, Any]:
    values = tuple(v.value if isinstance(v, enum.Enum) else v for v in values)
    schema: dict[str, Any] = {"enum": list(values)}
    kinds = {json_type(value) for value in values}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


def _any_of(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    unique = []
    for schema in schemas:
        if schema not in unique:
            unique.append(schema)
    if {} in unique:  # one option takes anything: so does the union
        return {}
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def set_default(schema: dict[str, Any], value: Any) -> None:
    """Document ``value`` as the default, when it is plain JSON data."""
    if isinstance(value, enum.Enum):
        value = value.value
    if json_type(value) is not None:
        schema["default"] = value
