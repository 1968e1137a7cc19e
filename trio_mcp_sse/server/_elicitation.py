"""The ``requestedSchema`` of a form elicitation, checked before anything is sent.

The spec limits it to a flat object whose properties are primitives: a
string (optionally with a ``format``), a number or integer, a boolean, a
single-select enum of strings (``enum``, or ``oneOf`` of titled ``const``\\ s),
or a multi-select array of such an enum.  Clients build a form from it, and
strict ones refuse a request whose schema is anything else, so a nested model
would surface as a failed or empty form far from its cause.

A pydantic model's schema is brought into that shape where nothing is lost:
a ``$ref`` to a definition that is itself primitive (an ``Enum`` field) is
inlined and ``$defs`` dropped, and an optional field (``X | None``) becomes
``X`` (a field the user may leave out is one not in ``required``; a form has
no null).  Anything that stays nested (an object, an array of objects, a
union of several types) is a :class:`TypeError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pydantic

__all__ = ["requested_schema"]

_PRIMITIVE_TYPES: Final = frozenset({"string", "number", "integer", "boolean"})
_DEFINITIONS: Final = "#/$defs/"
_ALLOWED: Final = (
    "the spec allows only flat primitive properties: string, number, integer, boolean, "
    "an enum of strings, or an array of an enum of strings (multi-select)"
)


def requested_schema(schema: type[pydantic.BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """The schema to send for ``schema`` (a model class or a JSON schema); ``TypeError`` if it is not flat.

    A schema that already is flat comes back equal to what was given (for a
    model, its ``model_json_schema()``).
    """
    if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        given: Mapping[str, Any] = schema.model_json_schema()
        what = f"elicitation schema {schema.__name__}"
    elif isinstance(schema, Mapping):
        given = schema
        what = "elicitation schema"
    else:
        raise TypeError(f"an elicitation schema is a pydantic model class or a JSON schema, not {schema!r}")
    if given.get("type") != "object" or not isinstance(given.get("properties", {}), Mapping):
        raise TypeError(f'{what}: requestedSchema must be an object schema ("type": "object" with "properties")')
    definitions = given.get("$defs") or {}
    flat = {
        name: _primitive(f"{what}, field {name!r}", prop, definitions)
        for name, prop in given.get("properties", {}).items()
    }
    result = {key: value for key, value in given.items() if key != "$defs"}
    result["properties"] = flat
    return result


def _inline(where: str, prop: Any, definitions: Mapping[str, Any]) -> dict[str, Any]:
    """``prop`` with a local ``$ref`` replaced by its definition (its own keys win)."""
    if not isinstance(prop, Mapping):
        raise TypeError(f"{where}: not a JSON schema ({prop!r}); {_ALLOWED}")
    ref = prop.get("$ref")
    if ref is None:
        return dict(prop)
    if not isinstance(ref, str) or not ref.startswith(_DEFINITIONS) or ref[len(_DEFINITIONS):] not in definitions:
        raise TypeError(f"{where}: a reference ({ref!r}) to a definition not in the schema; {_ALLOWED}")
    target = definitions[ref[len(_DEFINITIONS):]]
    if "$ref" in target:
        raise TypeError(f"{where}: a reference to a reference ({ref!r}); {_ALLOWED}")
    return {**target, **{key: value for key, value in prop.items() if key != "$ref"}}


def _without_null(where: str, prop: dict[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """An optional field's ``anyOf: [X, {"type": "null"}]`` as ``X``; other unions are left for the check."""
    arms = prop.get("anyOf")
    if "type" in prop or not isinstance(arms, list) or len(arms) != 2 or {"type": "null"} not in arms:
        return prop
    others = [arm for arm in arms if arm != {"type": "null"}]
    if len(others) != 1:
        return prop
    merged = {**_inline(where, others[0], definitions), **{key: value for key, value in prop.items() if key != "anyOf"}}
    if "default" in merged and merged["default"] is None:
        del merged["default"]
    return merged


def _is_string_enum(prop: Mapping[str, Any]) -> bool:
    """``{"type": "string", "enum": [...]}`` or ``{"anyOf" | "oneOf": [{"const": ..., "title": ...}]}``."""
    if "enum" in prop:
        values = prop["enum"]
        return (
            prop.get("type", "string") == "string"
            and isinstance(values, list)
            and all(isinstance(value, str) for value in values)
        )
    choices = prop.get("oneOf", prop.get("anyOf"))
    return (
        prop.get("type", "string") == "string"
        and isinstance(choices, list)
        and bool(choices)
        and all(isinstance(choice, Mapping) and isinstance(choice.get("const"), str) for choice in choices)
    )


def _primitive(where: str, prop: Any, definitions: Mapping[str, Any]) -> dict[str, Any]:
    flat = _without_null(where, _inline(where, prop, definitions), definitions)
    kind = flat.get("type")
    if kind in _PRIMITIVE_TYPES and "properties" not in flat and "items" not in flat:
        if ("enum" in flat or "oneOf" in flat) and not _is_string_enum(flat):
            raise TypeError(f"{where}: an enum whose values are not all strings; {_ALLOWED}")
        return flat
    if kind == "array":
        items = flat.get("items")
        if isinstance(items, Mapping):
            items = _inline(where, items, definitions)
            if _is_string_enum(items):
                return {**flat, "items": items}
            if items.get("type") == "object" or "properties" in items:
                raise TypeError(f"{where}: an array of objects (models or dicts); {_ALLOWED}")
        raise TypeError(f"{where}: an array whose items are not an enum of strings; {_ALLOWED}")
    if kind == "object" or "properties" in flat or "additionalProperties" in flat:
        raise TypeError(f"{where}: a nested object (a model or a dict); {_ALLOWED}")
    raise TypeError(f"{where}: {_describe(flat)}; {_ALLOWED}")


def _describe(prop: Mapping[str, Any]) -> str:
    if isinstance(prop.get("type"), list) or any(keyword in prop for keyword in ("anyOf", "oneOf", "allOf")):
        return "a union of several types"
    return "a property without a type" if "type" not in prop else f"a property of type {prop['type']!r}"
