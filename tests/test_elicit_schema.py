"""``ctx.elicit``: the requested schema is a flat object of primitive properties, as the spec requires.

A model that needs ``$defs`` only for an ``Enum`` is flattened (the enum
inlined), and an optional field loses its ``null`` arm; a model that nests an
object (a model, a list of models, a dict) is refused before anything is sent,
naming the field.
"""

from __future__ import annotations

import datetime
import enum
import logging
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
import pytest
import trio

# The spec's own definition of an elicitation property (the official SDK checks against it too).
from mcp_types._v2025_11_25 import PrimitiveSchemaDefinition

from trio_mcp_sse.server import Context, MCPServer
from trio_mcp_sse.testing import connected_client

PROPERTY = pydantic.TypeAdapter[Any](PrimitiveSchemaDefinition)


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Preferences(pydantic.BaseModel):
    name: str
    age: int = 30
    colour: Colour = Colour.RED
    colours: list[Colour] = []
    nickname: str | None = None
    birthday: datetime.date | None = None
    speed: Literal["fast", "slow"] = "fast"
    subscribed: bool


class Address(pydantic.BaseModel):
    street: str
    city: str


class WithAddress(pydantic.BaseModel):
    name: str
    address: Address


class WithAddresses(pydantic.BaseModel):
    addresses: list[Address]


class WithOptionalAddress(pydantic.BaseModel):
    address: Address | None = None


class WithTags(pydantic.BaseModel):
    tags: list[str]


class WithMapping(pydantic.BaseModel):
    scores: dict[str, int]


class WithUnion(pydantic.BaseModel):
    value: int | str


class WithIntEnum(pydantic.BaseModel):
    priority: Priority


class Simple(pydantic.BaseModel):
    name: str


def make_server(schemas: Mapping[str, type[pydantic.BaseModel] | Mapping[str, Any]]) -> MCPServer:
    server = MCPServer("elicit")

    @server.tool
    async def ask(which: str, ctx: Context) -> str:
        result = await ctx.elicit("Tell me", schemas[which])
        return f"{result.action} {result.content}"

    return server


async def requested(schema: type[pydantic.BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """The ``requestedSchema`` the client is sent for ``schema``."""
    async with connected_client(make_server({"it": schema}), capabilities={"elicitation": {}}) as client:
        call_id = await client.request("tools/call", {"name": "ask", "arguments": {"which": "it"}})
        request = await client.server_request("elicitation/create")
        await client.respond(request["id"], {"action": "decline"})
        assert (await client.response(call_id))["result"]["content"][0]["text"] == "decline None"
        sent: dict[str, Any] = request["params"]["requestedSchema"]
        return sent


async def test_enum_and_optional_fields_are_flattened_into_spec_primitives() -> None:
    sent = await requested(Preferences)
    assert "$defs" not in sent
    assert sent["type"] == "object"
    assert sent["required"] == ["name", "subscribed"]
    properties = sent["properties"]
    assert properties["colour"] == {"type": "string", "enum": ["red", "green"], "title": "Colour", "default": "red"}
    assert properties["colours"]["items"] == {"type": "string", "enum": ["red", "green"], "title": "Colour"}
    assert properties["nickname"] == {"type": "string", "title": "Nickname"}  # no null arm, no null default
    assert properties["birthday"] == {"type": "string", "format": "date", "title": "Birthday"}
    for prop in properties.values():
        PROPERTY.validate_python(prop)
    # The answer still validates with the model.
    assert Preferences.model_validate({"name": "Ann", "colour": "green", "colours": ["red"], "subscribed": True})


async def test_a_flat_model_or_dict_is_sent_as_it_is() -> None:
    assert await requested(Simple) == Simple.model_json_schema()
    schema = {
        "type": "object",
        "properties": {
            "choice": {"type": "string", "oneOf": [{"const": "a", "title": "A"}, {"const": "b", "title": "B"}]},
            "many": {"type": "array", "items": {"anyOf": [{"const": "x", "title": "X"}]}, "default": ["x"]},
            "score": {"type": "number", "minimum": 0, "default": 1.5},
        },
        "required": ["choice"],
    }
    assert await requested(schema) == schema


@pytest.mark.parametrize(
    ("schema", "field", "why"),
    [
        (WithAddress, "address", "a nested object"),
        (WithAddresses, "addresses", "an array of objects"),
        (WithOptionalAddress, "address", "a nested object"),
        (WithTags, "tags", "an array whose items are not an enum of strings"),
        (WithMapping, "scores", "a nested object"),
        (WithUnion, "value", "a union of several types"),
        (WithIntEnum, "priority", "an enum whose values are not all strings"),
        (
            {"type": "object", "properties": {"where": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            "where",
            "a nested object",
        ),
    ],
)
async def test_a_nested_schema_is_refused_before_anything_is_sent(
    schema: type[pydantic.BaseModel] | Mapping[str, Any], field: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected_client(make_server({"it": schema}), capabilities={"elicitation": {}}) as client:
        # (A schema that were sent would leave the call waiting for the user's answer.)
        with caplog.at_level(logging.ERROR, logger="trio_mcp_sse.server"), trio.fail_after(5):
            result = await client.call("tools/call", {"name": "ask", "arguments": {"which": "it"}})
        assert result["isError"] is True
        # No elicitation/create reached the client.
        assert await client.drain() == []
    (record,) = [record for record in caplog.records if record.exc_info]
    error = record.exc_info[1]  # type: ignore[index]
    assert isinstance(error, TypeError)
    message = str(error)
    assert f"field {field!r}: {why}" in message
    assert "the spec allows only flat primitive properties" in message


async def test_the_root_must_be_an_object_schema() -> None:
    async with connected_client(
        make_server({"it": {"type": "string"}}), capabilities={"elicitation": {}}
    ) as client:
        with trio.fail_after(5):
            result = await client.call("tools/call", {"name": "ask", "arguments": {"which": "it"}})
        assert result["isError"] is True
        assert await client.drain() == []
