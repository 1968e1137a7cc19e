"""Tools: listing, schemas, structured output, content types, errors."""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
from typing import Annotated, Any

import mcp_types
import pydantic
import pytest
import trio
from typing_extensions import TypedDict

from trio_mcp_sse.server import (
    Context,
    MCPError,
    MCPServer,
    ToolError,
    audio_content,
    embedded_resource,
    image_content,
    resource_link,
    text_content,
)
from trio_mcp_sse.testing import connected_client, serve_sessions

from .conformance import conforms


class Weather(pydantic.BaseModel):
    city: str
    celsius: float
    conditions: list[str]


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass
class Size:
    width: int
    height: int


def make_server() -> MCPServer:
    server = MCPServer("tools")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(
        name="add-numbers",
        title="Add numbers",
        description="Adds two numbers.",
        annotations={"readOnlyHint": True, "idempotentHint": True},
    )
    async def add(a: float, b: Annotated[float, pydantic.Field(description="the second term")] = 1.0) -> float:
        return a + b

    @server.tool
    async def weather(city: str) -> Weather:
        """Current weather."""
        return Weather(city=city, celsius=21.5, conditions=["sunny"])

    @server.tool
    async def point() -> Point:
        return {"x": 1, "y": 2}

    @server.tool
    async def size() -> Size:
        return Size(width=3, height=4)

    @server.tool
    async def mapping() -> dict[str, int]:
        return {"a": 1}

    @server.tool
    async def untyped():  # type: ignore[no-untyped-def]
        return {"free": "form"}

    @server.tool
    async def media() -> list[dict[str, Any]]:
        return [
            text_content("hello", annotations={"audience": ["user"], "priority": 0.5}),
            image_content(b"\x89PNG", "image/png"),
            audio_content(b"RIFF", "audio/wav"),
            embedded_resource("file:///a.txt", text="inside", mime_type="text/plain"),
            embedded_resource("file:///b.bin", blob=b"\x00\x01"),
            resource_link("file:///c.txt", "c", title="C", description="a file", mime_type="text/plain", size=3),
        ]

    @server.tool
    async def nothing() -> None:
        return None

    @server.tool
    async def fails_for_the_model() -> str:
        raise ToolError("the city does not exist")

    @server.tool
    async def fails_with_protocol_error() -> str:
        raise MCPError(-32042, "custom failure", {"hint": "x"})

    @server.tool
    async def crashes() -> str:
        raise RuntimeError("secret internal detail")

    @server.tool
    def blocking(text: str) -> str:
        return f"{text} from {threading.current_thread() is threading.main_thread()}"

    @server.tool
    async def with_context(ctx: Context, text: str) -> str:
        return f"{text} in {ctx.request_id!r} via {ctx.method}"

    return server


async def test_tools_list_describes_every_tool() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("tools/list")
        conforms("tools/list", result)
        tools = {tool["name"]: tool for tool in result["tools"]}
        assert tools["echo"] == {
            "name": "echo",
            "description": "Return the text unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"title": "Text", "type": "string"}},
                "required": ["text"],
                "additionalProperties": False,
            },
        }
        add = tools["add-numbers"]
        assert add["title"] == "Add numbers"
        assert add["description"] == "Adds two numbers."
        assert add["annotations"] == {"readOnlyHint": True, "idempotentHint": True}
        assert add["inputSchema"]["required"] == ["a"]
        assert add["inputSchema"]["properties"]["b"]["description"] == "the second term"
        # float is not an object: the value is wrapped as {"result": ...}
        assert add["outputSchema"] == {
            "type": "object", "properties": {"result": {"type": "number"}}, "required": ["result"],
        }
        assert "ctx" not in tools["with_context"]["inputSchema"]["properties"]


@pytest.mark.parametrize(
    ("name", "structured"),
    [
        ("weather", {"city": "Oslo", "celsius": 21.5, "conditions": ["sunny"]}),
        ("point", {"x": 1, "y": 2}),
        ("size", {"width": 3, "height": 4}),
        ("mapping", {"a": 1}),
    ],
)
async def test_object_returning_tools_declare_an_output_schema_and_return_structured_content(
    name: str, structured: dict[str, Any]
) -> None:
    async with connected_client(make_server()) as client:
        tools = {tool["name"]: tool for tool in (await client.call("tools/list"))["tools"]}
        schema = tools[name]["outputSchema"]
        assert schema["type"] == "object"
        arguments = {"city": "Oslo"} if name == "weather" else {}
        result = await client.call("tools/call", {"name": name, "arguments": arguments})
        conforms("tools/call", result)
        assert result["structuredContent"] == structured
        # Older clients read the same JSON from the text block.
        assert len(result["content"]) == 1
        assert pydantic.TypeAdapter(dict[str, Any]).validate_json(result["content"][0]["text"]) == structured
        # The structured content satisfies the declared schema.
        if name == "weather":
            assert set(schema["required"]) == {"city", "celsius", "conditions"}


async def test_simple_results() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        assert result == {"content": [{"type": "text", "text": "hi"}]}
        result = await client.call("tools/call", {"name": "add-numbers", "arguments": {"a": 2}})
        assert result == {"content": [{"type": "text", "text": "3.0"}], "structuredContent": {"result": 3.0}}
        assert await client.call("tools/call", {"name": "nothing"}) == {"content": []}
        result = await client.call("tools/call", {"name": "untyped", "arguments": {}})
        assert result["structuredContent"] == {"free": "form"}
        conforms("tools/call", result)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_every_content_type_is_valid_on_the_wire(version: str) -> None:
    async with connected_client(make_server(), version=version) as client:
        result = await client.call("tools/call", {"name": "media"})
        conforms("tools/call", result, version)
        content = result["content"]
        assert [block["type"] for block in content] == [
            "text", "image", "audio", "resource", "resource", "resource_link",
        ]
        assert content[0]["annotations"] == {"audience": ["user"], "priority": 0.5}
        assert base64.b64decode(content[1]["data"]) == b"\x89PNG"
        assert content[1]["mimeType"] == "image/png"
        assert base64.b64decode(content[2]["data"]) == b"RIFF"
        assert content[3]["resource"] == {"uri": "file:///a.txt", "mimeType": "text/plain", "text": "inside"}
        assert base64.b64decode(content[4]["resource"]["blob"]) == b"\x00\x01"
        assert content[5] == {
            "type": "resource_link", "uri": "file:///c.txt", "name": "c", "title": "C",
            "description": "a file", "mimeType": "text/plain", "size": 3,
        }
        parsed = mcp_types.CallToolResult.model_validate(result)
        assert isinstance(parsed.content[5], mcp_types.ResourceLink)


async def test_arguments_are_validated_and_converted() -> None:
    async with connected_client(make_server()) as client:
        # Lax conversion, as for any pydantic model: "2" is a fine float.
        result = await client.call("tools/call", {"name": "add-numbers", "arguments": {"a": "2", "b": 0.5}})
        assert result["content"][0]["text"] == "2.5"
        error = await client.call_error("tools/call", {"name": "add-numbers", "arguments": {"a": "many"}})
        assert error["code"] == -32602
        assert "a:" in error["message"]
        assert "add-numbers" in error["message"]
        error = await client.call_error("tools/call", {"name": "echo", "arguments": {"text": "x", "extra": 1}})
        assert error["code"] == -32602
        assert "extra" in error["message"]
        error = await client.call_error("tools/call", {"name": "echo"})
        assert error["code"] == -32602
        assert "text" in error["message"]
        error = await client.call_error("tools/call", {"name": "echo", "arguments": ["x"]})
        assert error["code"] == -32602


async def test_unknown_tool_is_invalid_params() -> None:
    async with connected_client(make_server()) as client:
        error = await client.call_error("tools/call", {"name": "nope", "arguments": {}})
        assert error == {"code": -32602, "message": "Unknown tool: nope"}
        error = await client.call_error("tools/call", {"arguments": {}})
        assert error["code"] == -32602


async def test_tool_error_is_reported_to_the_model_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("tools/call", {"name": "fails_for_the_model"})
        assert result == {"content": [{"type": "text", "text": "the city does not exist"}], "isError": True}
        conforms("tools/call", result)
    assert not [r for r in caplog.records if r.exc_info]


async def test_mcp_error_from_a_tool_is_the_response_error() -> None:
    async with connected_client(make_server()) as client:
        error = await client.call_error("tools/call", {"name": "fails_with_protocol_error"})
        assert error == {"code": -32042, "message": "custom failure", "data": {"hint": "x"}}


async def test_unexpected_exception_is_an_internal_error_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    async with connected_client(make_server()) as client:
        result = await client.call("tools/call", {"name": "crashes"})
        assert result["isError"] is True  # the model learns the call failed...
        assert result["content"] == [{"type": "text", "text": "Tool 'crashes' failed with an internal error"}]
        assert "secret" not in str(result)  # ...but internals stay in the server log
        # The session lives on.
        assert (await client.call("tools/call", {"name": "echo", "arguments": {"text": "still here"}}))[
            "content"
        ][0]["text"] == "still here"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert "secret internal detail" in str(tracebacks[0].exc_info[1])  # type: ignore[index]


async def test_sync_tools_run_in_a_worker_thread() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("tools/call", {"name": "blocking", "arguments": {"text": "hi"}})
        assert result["content"][0]["text"] == "hi from False"


async def test_an_inline_sync_tool_runs_on_the_event_loop_thread_with_its_context() -> None:
    server = MCPServer("inline")
    calls: list[tuple[bool, str | int | None, bool]] = []

    @server.tool(inline=True)
    def quick(ctx: Context, text: str) -> str:
        calls.append((threading.current_thread() is threading.main_thread(), ctx.request_id, trio.lowlevel.in_trio_run()))
        return text.upper()

    async with connected_client(server) as client:
        result = await client.call("tools/call", {"name": "quick", "arguments": {"text": "hi"}}, request_id="r1")
    assert result["content"] == [{"type": "text", "text": "HI"}]
    assert calls == [(True, "r1", True)]
    assert server.tools["quick"].signature.inline
    assert "inline" not in server.tools["quick"].definition  # not part of the listing


async def test_inline_is_refused_for_an_async_tool() -> None:
    server = MCPServer("inline")

    async def already_async(text: str) -> str:
        return text

    with pytest.raises(TypeError, match="inline=True is for a plain def"):
        server.add_tool(already_async, inline=True)
    assert "already_async" not in server.tools


async def test_context_is_injected() -> None:
    async with connected_client(make_server()) as client:
        result = await client.call("tools/call", {"name": "with_context", "arguments": {"text": "hi"}}, request_id="r1")
        assert result["content"][0]["text"] == "hi in 'r1' via tools/call"


def test_registration_errors_are_clear() -> None:
    server = MCPServer("bad")

    @server.tool
    async def dup() -> str:
        return ""

    with pytest.raises(ValueError, match="already registered"):
        server.add_tool(dup)
    with pytest.raises(TypeError, match=r"\*args"):
        server.add_tool(lambda *args: None, name="varargs")

    async def positional(a: int, /) -> int:
        return a

    with pytest.raises(TypeError, match="positional-only"):
        server.add_tool(positional)

    async def text() -> None:
        return None

    with pytest.raises(TypeError, match="structured output"):
        server.add_tool(text, structured_output=True)


async def test_structured_output_can_be_switched_off() -> None:
    server = MCPServer("plain")

    async def weather() -> Weather:
        return Weather(city="Oslo", celsius=1.0, conditions=[])

    server.add_tool(weather, structured_output=False, annotations=mcp_types.ToolAnnotations(read_only_hint=True))
    async with connected_client(server) as client:
        (tool,) = (await client.call("tools/list"))["tools"]
        assert "outputSchema" not in tool
        assert tool["annotations"] == {"readOnlyHint": True}
        result = await client.call("tools/call", {"name": "weather"})
        # A model is still sent as JSON, but without a schema to hold it to.
        assert result["structuredContent"]["city"] == "Oslo"


async def test_a_slow_tool_does_not_block_ping(autojump_clock: trio.abc.Clock) -> None:
    server = MCPServer("slow")

    @server.tool
    async def slow() -> str:
        await trio.sleep(5)
        return "done"

    async with connected_client(server) as client:
        slow_id = await client.request("tools/call", {"name": "slow"})
        ping_id = await client.request("ping")
        first = await client.receive()
        assert first["id"] == ping_id
        assert (await client.response(slow_id))["result"]["content"][0]["text"] == "done"


async def test_a_complete_call_tool_result_passes_through() -> None:
    server = MCPServer("raw")

    @server.tool
    async def raw() -> Weather:
        return mcp_types.CallToolResult(  # type: ignore[return-value]
            content=[mcp_types.TextContent(type="text", text="partial")],
            is_error=True,
            _meta={"com.example/trace": "t1"},
        )

    async with connected_client(server) as client:
        result = await client.call("tools/call", {"name": "raw"})
        conforms("tools/call", result)
        assert result == {
            "content": [{"type": "text", "text": "partial"}],
            "isError": True,
            "_meta": {"com.example/trace": "t1"},
        }


async def test_tools_list_changed_reaches_every_initialized_session() -> None:
    server = make_server()
    async with serve_sessions(server) as host:
        clients = [await host.initialized_client() for _ in range(2)]
        pending = await host.connect()  # not initialized: not told

        @server.tool
        async def late() -> str:
            return "late"

        server.remove_tool("echo")
        for client in clients:
            await client.notification("notifications/tools/list_changed")
            await client.notification("notifications/tools/list_changed")
            names = {tool["name"] for tool in (await client.call("tools/list"))["tools"]}
            assert "late" in names
            assert "echo" not in names
        assert await pending.drain() == []
        with pytest.raises(KeyError):
            server.remove_tool("echo")


def test_unresolvable_type_hints_are_a_registration_error() -> None:
    server = MCPServer("hints")

    async def tool(value: Missing) -> str:  # noqa: F821
        return ""

    with pytest.raises(TypeError, match="cannot resolve the type hints"):
        server.add_tool(tool)


async def test_partials_and_callable_objects_are_tools() -> None:
    import functools

    server = MCPServer("callables")

    async def scaled(factor: int, value: int) -> str:
        return str(factor * value)

    class Counter:
        async def __call__(self, step: int) -> str:
            return f"+{step}"

    server.add_tool(functools.partial(scaled, 10), name="times_ten")
    server.add_tool(Counter(), name="count")
    async with connected_client(server) as client:
        tools = {tool["name"]: tool for tool in (await client.call("tools/list"))["tools"]}
        assert list(tools["times_ten"]["inputSchema"]["properties"]) == ["value"]
        result = await client.call("tools/call", {"name": "times_ten", "arguments": {"value": 4}})
        assert result["content"][0]["text"] == "40"
        result = await client.call("tools/call", {"name": "count", "arguments": {"step": 2}})
        assert result["content"][0]["text"] == "+2"


def test_lambdas_need_a_name_for_tools_and_prompts_alike() -> None:
    server = MCPServer("x")
    with pytest.raises(TypeError, match=r"cannot tell the name of tool .*: pass name="):
        server.add_tool(lambda: "hi")
    with pytest.raises(TypeError, match=r"cannot tell the name of prompt .*: pass name="):
        server.add_prompt(lambda: "hi")
    assert server.add_tool(lambda: "hi", name="hello").name == "hello"
    assert server.add_prompt(lambda: "hi", name="hello").name == "hello"
    assert list(server.tools) == list(server.prompts) == ["hello"]


async def test_a_definition_changes_by_replacement_and_the_listing_follows_at_once() -> None:
    server = MCPServer("x")

    @server.tool
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    tool = server.tools["add"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tool.description = "changed in place"  # type: ignore[misc]
    with pytest.raises(TypeError):
        server.tools["add"] = tool  # type: ignore[index]
    async with connected_client(server) as client:
        before = (await client.call("tools/list"))["tools"]
        assert before[0]["description"] == "Add two numbers."
        server.replace(dataclasses.replace(tool, description="Adds.", title="Adder"))
        await client.notification("notifications/tools/list_changed")
        (listed,) = (await client.call("tools/list"))["tools"]
        assert (listed["description"], listed["title"]) == ("Adds.", "Adder")
        result = await client.call("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}})
        assert result["content"] == [{"type": "text", "text": "5"}]
    with pytest.raises(KeyError):
        server.replace(dataclasses.replace(tool, name="other"))


def test_a_declared_input_schema_is_listed_verbatim_and_must_describe_an_object() -> None:
    server = MCPServer("x")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    tool = server.add_tool(lambda a: a, name="ident", input_schema=schema)
    assert tool.definition["inputSchema"] == schema
    assert tool.input_schema is not schema  # a copy: the caller's dict cannot change the listing
    with pytest.raises(TypeError, match='input_schema must be a JSON Schema with "type": "object"'):
        server.add_tool(lambda a: a, name="bad", input_schema={"type": "string"})
