"""``@server.resource`` needs its URI: the bare form is refused instead of registering nothing."""

from __future__ import annotations

from typing import Any

import pytest

from trio_mcp_sse.server import MCPServer
from trio_mcp_sse.testing import connected_client


def test_a_bare_resource_decorator_is_a_type_error_that_shows_the_called_form() -> None:
    server = MCPServer("resources")
    with pytest.raises(TypeError, match=r'needs the URI: @server\.resource\("notes://\{name\}"\) above \'notes\''):

        @server.resource  # type: ignore[arg-type]
        async def notes() -> str:
            return "a note"

    assert dict(server.resources) == {}
    assert dict(server.resource_templates) == {}


def test_add_resource_with_the_function_in_place_of_the_uri_says_the_uri_comes_first() -> None:
    server = MCPServer("resources")

    async def read() -> str:
        return "text"

    with pytest.raises(TypeError, match=r"URI must be a string, not function: the URI comes first"):
        server.add_resource(read, "text://motd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"the URI comes first"):
        server.add_resource(uri=read, fn=read)  # type: ignore[arg-type]
    assert dict(server.resources) == {}


async def test_the_called_form_still_registers_and_tools_and_prompts_take_both_forms() -> None:
    server = MCPServer("forms")

    @server.resource("notes://{name}")
    async def note(name: str) -> str:
        return f"note {name}"

    @server.resource("config://app")
    async def config() -> str:
        return "debug = true"

    @server.tool
    async def bare_tool() -> str:
        return "bare"

    @server.tool()
    async def called_tool() -> str:
        return "called"

    @server.prompt
    async def bare_prompt() -> str:
        return "bare"

    @server.prompt()
    async def called_prompt() -> str:
        return "called"

    # The decorators hand the functions back unchanged.
    assert await bare_tool() == "bare"
    assert await called_prompt() == "called"
    async with connected_client(server) as client:
        read: dict[str, Any] = await client.call("resources/read", {"uri": "notes://alpha"})
        assert read["contents"][0]["text"] == "note alpha"
        read = await client.call("resources/read", {"uri": "config://app"})
        assert read["contents"][0]["text"] == "debug = true"
        tools = {tool["name"] for tool in (await client.call("tools/list"))["tools"]}
        assert tools == {"bare_tool", "called_tool"}
        prompts = {prompt["name"] for prompt in (await client.call("prompts/list"))["prompts"]}
        assert prompts == {"bare_prompt", "called_prompt"}
