"""Tools returning data that is not an object: the value is wrapped as ``{"result": value}``.

The spec requires ``outputSchema`` to be an object, so an ``int``, a list or a
union is declared as an object with one required ``result`` property, and
``structuredContent`` carries ``{"result": value}``.  The content is what it
was without the wrapping.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import jsonschema
import mcp_types
import pydantic
import pytest

from trio_mcp_sse.server import MCPServer, text_content
from trio_mcp_sse.testing import connected_client

from .conformance import conforms


class City(pydantic.BaseModel):
    name: str
    population: int


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def make_server() -> MCPServer:
    server = MCPServer("primitives")

    @server.tool
    async def count() -> int:
        return 3

    @server.tool
    async def ratio() -> float:
        return 0.25

    @server.tool
    async def ready() -> bool:
        return True

    @server.tool
    async def names() -> list[str]:
        return ["Oslo", "Bergen"]

    @server.tool
    async def cities() -> list[City]:
        return [City(name="Oslo", population=700_000)]

    @server.tool
    async def maybe_city(found: bool) -> City | None:
        return City(name="Oslo", population=700_000) if found else None

    @server.tool
    async def maybe_count() -> int | None:
        return None

    @server.tool
    async def mode() -> Literal["fast", "slow"]:
        return "fast"

    @server.tool
    async def colour() -> Colour:
        return Colour.BLUE

    @server.tool
    async def pair() -> tuple[int, str]:
        return (1, "one")

    return server


# name, arguments, structuredContent, content as before the wrapping
CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = [
    ("count", {}, {"result": 3}, [{"type": "text", "text": "3"}]),
    ("ratio", {}, {"result": 0.25}, [{"type": "text", "text": "0.25"}]),
    ("ready", {}, {"result": True}, [{"type": "text", "text": "true"}]),
    ("names", {}, {"result": ["Oslo", "Bergen"]}, [{"type": "text", "text": "Oslo"}, {"type": "text", "text": "Bergen"}]),
    (
        "cities", {}, {"result": [{"name": "Oslo", "population": 700_000}]},
        [{"type": "text", "text": '[{"name":"Oslo","population":700000}]'}],
    ),
    (
        "maybe_city", {"found": True}, {"result": {"name": "Oslo", "population": 700_000}},
        [{"type": "text", "text": '{"name":"Oslo","population":700000}'}],
    ),
    ("maybe_city", {"found": False}, {"result": None}, []),
    ("maybe_count", {}, {"result": None}, []),
    ("mode", {}, {"result": "fast"}, [{"type": "text", "text": "fast"}]),
    ("colour", {}, {"result": "blue"}, [{"type": "text", "text": '"blue"'}]),
    ("pair", {}, {"result": [1, "one"]}, [{"type": "text", "text": '[1,"one"]'}]),
]


async def test_a_primitive_return_annotation_is_listed_as_a_wrapped_object_schema() -> None:
    async with connected_client(make_server()) as client:
        listed = await client.call("tools/list")
        conforms("tools/list", listed)
        tools = {tool["name"]: tool for tool in listed["tools"]}
        assert tools["count"]["outputSchema"] == {
            "type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"],
        }
        assert tools["names"]["outputSchema"] == {
            "type": "object",
            "properties": {"result": {"type": "array", "items": {"type": "string"}}},
            "required": ["result"],
        }
        # A nested model's definition sits at the root, where its reference points.
        cities = tools["cities"]["outputSchema"]
        assert cities["properties"]["result"]["items"] == {"$ref": "#/$defs/City"}
        assert cities["$defs"]["City"]["required"] == ["name", "population"]
        for name in {case[0] for case in CASES}:
            schema = tools[name]["outputSchema"]
            assert schema["type"] == "object" and schema["required"] == ["result"], name
            jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(("name", "arguments", "structured", "content"), CASES)
async def test_the_result_carries_the_value_as_structured_content_that_validates(
    name: str, arguments: dict[str, Any], structured: dict[str, Any], content: list[dict[str, Any]]
) -> None:
    async with connected_client(make_server()) as client:
        tools = {tool["name"]: tool for tool in (await client.call("tools/list"))["tools"]}
        result = await client.call("tools/call", {"name": name, "arguments": arguments})
        conforms("tools/call", result)
        assert result["structuredContent"] == structured
        jsonschema.validate(result["structuredContent"], tools[name]["outputSchema"])
        assert result["content"] == content
        parsed = mcp_types.CallToolResult.model_validate(result)
        assert parsed.structured_content == structured


async def test_str_none_untyped_and_content_returns_declare_no_schema() -> None:
    server = MCPServer("plain")

    @server.tool
    async def echo(text: str) -> str:
        return text

    @server.tool
    async def optional_text() -> str | None:
        return "maybe"

    @server.tool
    async def nothing() -> None:
        return None

    @server.tool
    async def untyped():  # type: ignore[no-untyped-def]
        return 3

    @server.tool
    async def blocks() -> list[dict[str, Any]]:
        return [text_content("a"), text_content("b")]

    @server.tool
    async def block() -> mcp_types.TextContent:
        return mcp_types.TextContent(type="text", text="typed")

    @server.tool
    async def typed_blocks() -> list[mcp_types.ContentBlock]:
        return [mcp_types.TextContent(type="text", text="one")]

    @server.tool
    async def raw() -> mcp_types.CallToolResult:
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text="raw")])

    @server.tool
    async def anything() -> Any:
        return {"type": "text", "text": "any"}

    @server.tool
    async def data() -> bytes:
        return b"\x00"

    async with connected_client(server) as client:
        tools = {tool["name"]: tool for tool in (await client.call("tools/list"))["tools"]}
        assert all("outputSchema" not in tool for tool in tools.values()), tools
        # str: the text block is the value; sending it again as structured content would double it.
        result = await client.call("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        assert result == {"content": [{"type": "text", "text": "hi"}]}
        assert await client.call("tools/call", {"name": "nothing"}) == {"content": []}
        assert (await client.call("tools/call", {"name": "untyped"})) == {"content": [{"type": "text", "text": "3"}]}
        result = await client.call("tools/call", {"name": "blocks"})
        assert result == {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        assert await client.call("tools/call", {"name": "block"}) == {"content": [{"type": "text", "text": "typed"}]}
        result = await client.call("tools/call", {"name": "typed_blocks"})
        assert result == {"content": [{"type": "text", "text": "one"}]}
        result = await client.call("tools/call", {"name": "raw"})
        assert result["content"] == [{"type": "text", "text": "raw"}] and "structuredContent" not in result
        assert await client.call("tools/call", {"name": "anything"}) == {"content": [{"type": "text", "text": "any"}]}


async def test_structured_output_true_wraps_a_str_and_false_keeps_an_int_plain() -> None:
    server = MCPServer("switches")

    @server.tool(structured_output=True)
    async def shout(text: str) -> str:
        return text.upper()

    @server.tool(structured_output=False)
    async def plain_count() -> int:
        return 7

    async with connected_client(server) as client:
        tools = {tool["name"]: tool for tool in (await client.call("tools/list"))["tools"]}
        assert tools["shout"]["outputSchema"] == {
            "type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"],
        }
        assert "outputSchema" not in tools["plain_count"]
        result = await client.call("tools/call", {"name": "shout", "arguments": {"text": "hi"}})
        assert result == {"content": [{"type": "text", "text": "HI"}], "structuredContent": {"result": "HI"}}
        jsonschema.validate(result["structuredContent"], tools["shout"]["outputSchema"])
        assert await client.call("tools/call", {"name": "plain_count"}) == {"content": [{"type": "text", "text": "7"}]}


def test_structured_output_true_still_needs_a_return_annotation() -> None:
    server = MCPServer("switches")

    async def nothing() -> None:
        return None

    with pytest.raises(TypeError, match="structured output needs a return annotation"):
        server.add_tool(nothing, structured_output=True)


async def test_a_call_tool_result_from_a_wrapped_tool_passes_through() -> None:
    server = MCPServer("raw")

    @server.tool
    async def count() -> int:
        return mcp_types.CallToolResult(  # type: ignore[return-value]
            content=[mcp_types.TextContent(type="text", text="failed")], is_error=True
        )

    async with connected_client(server) as client:
        result = await client.call("tools/call", {"name": "count"})
        assert result == {"content": [{"type": "text", "text": "failed"}], "isError": True}
