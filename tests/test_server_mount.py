"""Mounting one server on another: names, delegation with the parent's context, live changes,
middleware on both sides, errors, nesting, and both protocol eras.  In memory."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pydantic
import pytest
import trio
import trio.testing

from trio_mcp_sse import AccessToken
from trio_mcp_sse.client import open_session
from trio_mcp_sse.server import (
    CallNext,
    Context,
    MCPError,
    MCPServer,
    RequestInfo,
    ResourceNotFound,
)
from trio_mcp_sse.server._mount import prefixed_uri, unprefixed_uri
from trio_mcp_sse.testing import connected_client, open_http_client


def make_child() -> MCPServer:
    child = MCPServer("weather", "2.0")

    @child.tool
    async def forecast(city: str, ctx: Context) -> str:
        """Tomorrow's weather."""
        await ctx.report_progress(1, 1)
        await ctx.info(f"looking up {city}")
        return f"Sunny in {city} ({ctx.server.name})"

    @child.tool(required_scopes=["weather:read"])
    async def secret() -> str:
        return "classified"

    @child.resource("weather://today", mime_type="text/plain")
    async def today() -> str:
        return "today"

    @child.resource("weather://cities/{city}", mime_type="text/plain")
    async def city(city: str) -> str:
        if city == "Atlantis":
            raise ResourceNotFound(f"weather://cities/{city}")
        return f"{city} is a city"

    @child.prompt
    async def packing(city: str) -> str:
        """What to pack."""
        return f"What to pack for {city}?"

    @child.completion
    async def complete(request: Any) -> list[str]:
        return [f"{request.ref}:{request.argument}"]

    return child


def make_parent() -> tuple[MCPServer, MCPServer]:
    parent = MCPServer("assistant")

    @parent.tool
    async def echo(text: str) -> str:
        return text

    child = make_child()
    parent.mount(child, prefix="weather")
    return parent, child


def names(result: dict[str, Any], key: str = "tools", field: str = "name") -> list[str]:
    return [entry[field] for entry in result[key]]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("notes://today", "notes://w/today"),
        ("notes://{name}", "notes://w/{name}"),
        ("file:///etc/hosts", "file://w//etc/hosts"),
        ("urn:isbn:1", "urn:w/isbn:1"),
        ("{+path}", "w/{+path}"),
        ("relative/path", "w/relative/path"),
    ],
)
def test_the_uri_rule_and_its_inverse(uri: str, expected: str) -> None:
    assert prefixed_uri("w", uri) == expected
    assert unprefixed_uri("w", expected) == uri


def test_a_uri_without_the_prefix_is_not_unprefixed() -> None:
    assert unprefixed_uri("w", "notes://other/today") is None
    assert unprefixed_uri("w", "notes://today") is None
    assert unprefixed_uri("w", "w_x") is None


async def test_the_mounted_items_are_listed_under_prefixed_names() -> None:
    parent, _ = make_parent()
    assert list(parent.mounted) == ["weather"]
    assert set(parent.tools) == {"echo", "weather_forecast", "weather_secret"}
    async with connected_client(parent) as client:
        assert names(await client.call("tools/list")) == ["echo", "weather_forecast", "weather_secret"]
        tool = (await client.call("tools/list"))["tools"][1]
        assert tool["description"] == "Tomorrow's weather." and "city" in tool["inputSchema"]["properties"]
        assert names(await client.call("prompts/list"), "prompts") == ["weather_packing"]
        assert names(await client.call("resources/list"), "resources", "uri") == ["weather://weather/today"]
        templates = await client.call("resources/templates/list")
        assert names(templates, "resourceTemplates", "uriTemplate") == ["weather://weather/cities/{city}"]
        initialized = await client.call("ping")
        assert initialized == {}


async def test_requests_run_the_mounted_functions_with_the_parents_context() -> None:
    parent, _ = make_parent()
    async with connected_client(parent) as client:
        request_id = await client.request(
            "tools/call", {"name": "weather_forecast", "arguments": {"city": "Oslo"}, "_meta": {"progressToken": 7}}
        )
        response = await client.response(request_id)
        assert response["result"]["content"] == [{"type": "text", "text": "Sunny in Oslo (assistant)"}]
        assert [message["method"] for message in client.backlog] == ["notifications/progress", "notifications/message"]
        assert client.backlog[0]["params"]["progressToken"] == 7
        read = await client.call("resources/read", {"uri": "weather://weather/cities/Oslo"})
        assert read == {"contents": [{"uri": "weather://weather/cities/Oslo", "mimeType": "text/plain", "text": "Oslo is a city"}]}
        read = await client.call("resources/read", {"uri": "weather://weather/today"})
        assert read["contents"][0]["uri"] == "weather://weather/today"
        missing = await client.call_error("resources/read", {"uri": "weather://weather/cities/Atlantis"})
        assert missing["code"] == -32002 and missing["data"] == {"uri": "weather://weather/cities/Atlantis"}
        prompt = await client.call("prompts/get", {"name": "weather_packing", "arguments": {"city": "Rome"}})
        assert prompt["messages"][0]["content"]["text"] == "What to pack for Rome?"
        completed = await client.call(
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "weather_packing"}, "argument": {"name": "city", "value": ""}},
        )
        assert completed["completion"]["values"] == ["packing:city"]
        completed = await client.call(
            "completion/complete",
            {"ref": {"type": "ref/resource", "uri": "weather://weather/cities/{city}"}, "argument": {"name": "city", "value": "O"}},
        )
        assert completed["completion"]["values"] == ["weather://cities/{city}:city"]
        assert (await client.call_error("tools/call", {"name": "weather_nothing"}))["code"] == -32602


async def test_the_parent_announces_completions_a_mounted_server_offers() -> None:
    parent = MCPServer("parent")
    assert "completions" not in parent.capabilities()
    parent.mount(make_child(), prefix="w")
    assert "completions" in parent.capabilities()


async def test_a_mounted_tools_scopes_hold_on_the_parent() -> None:
    parent, _ = make_parent()
    message = type("Message", (), {"method": "tools/call", "params": {"name": "weather_secret"}})()
    assert parent.scopes_for(message) == frozenset({"weather:read"})
    async with connected_client(parent, access_token=AccessToken("eve")) as client:
        refused = await client.call_error("tools/call", {"name": "weather_secret"})
        assert refused["code"] == -32003
    async with connected_client(parent, access_token=AccessToken("ann", scopes={"weather:read"})) as client:
        allowed = await client.call("tools/call", {"name": "weather_secret"})
        assert allowed["content"][0]["text"] == "classified"


async def test_changes_to_the_mounted_server_follow_live() -> None:
    parent, child = make_parent()
    async with connected_client(parent) as client:
        await client.call("resources/subscribe", {"uri": "weather://weather/today"})

        @child.tool
        async def alerts() -> list[str]:
            return ["storm"]

        await client.notification("notifications/tools/list_changed")
        assert names(await client.call("tools/list"))[-1] == "weather_alerts"
        assert (await client.call("tools/call", {"name": "weather_alerts"}))["structuredContent"] == {"result": ["storm"]}

        child.replace(dataclasses.replace(child.tools["alerts"], description="Severe weather."))
        await client.notification("notifications/tools/list_changed")
        assert (await client.call("tools/list"))["tools"][-1]["description"] == "Severe weather."

        child.remove_tool("alerts")
        await client.notification("notifications/tools/list_changed")
        assert "weather_alerts" not in names(await client.call("tools/list"))

        child.add_resource("weather://tomorrow", "rain")
        await client.notification("notifications/resources/list_changed")
        read = await client.call("resources/read", {"uri": "weather://weather/tomorrow"})
        assert read["contents"][0]["text"] == "rain"

        child.add_prompt(lambda: "hi", name="hello")
        await client.notification("notifications/prompts/list_changed")
        assert "weather_hello" in names(await client.call("prompts/list"), "prompts")

        child.notify_resource_updated("weather://today")
        updated = await client.notification("notifications/resources/updated")
        assert updated["params"] == {"uri": "weather://weather/today"}
        child.notify_resource_updated("weather://elsewhere")  # nobody subscribed to its parent's name
        assert [m for m in await client.drain() if m.get("method") == "notifications/resources/updated"] == []


def test_registrations_after_mounting_at_import_time_follow_too() -> None:
    """No Trio is running at import time: the change reaches the parent's catalog directly."""
    parent, child = make_parent()

    @child.tool
    async def later() -> str:
        return "later"

    assert "weather_later" in parent.tools
    child.remove_tool("later")
    assert "weather_later" not in parent.tools


async def test_the_parents_and_the_mounted_servers_middleware_both_apply() -> None:
    parent, child = make_parent()
    seen: list[tuple[str, str, str | None]] = []

    @parent.middleware
    async def parent_side(request: RequestInfo, call_next: CallNext) -> Any:
        if not request.notification:
            seen.append(("parent", request.method, request.name))
        if request.name == "weather_forecast" and request.principal == "mallory":
            raise MCPError(-32602, "Unknown tool: weather_forecast")
        return await call_next(request)

    @child.middleware
    async def child_side(request: RequestInfo, call_next: CallNext) -> Any:
        seen.append(("child", request.method, request.name))
        assert isinstance(request.context, Context) and request.context.server is parent
        if request.method == "tools/call" and request.params["arguments"].get("city") == "Mordor":
            raise MCPError(-32001, "one does not simply")
        return await call_next(request)

    async with connected_client(parent, access_token=AccessToken("frodo")) as client:
        await client.call("tools/list")
        await client.call("tools/call", {"name": "weather_forecast", "arguments": {"city": "Oslo"}})
        refused = await client.call_error("tools/call", {"name": "weather_forecast", "arguments": {"city": "Mordor"}})
        assert refused == {"code": -32001, "message": "one does not simply"}
        await client.call("resources/read", {"uri": "weather://weather/cities/Oslo"})
        await client.call("tools/call", {"name": "echo", "arguments": {"text": "x"}})
    async with connected_client(parent, access_token=AccessToken("mallory")) as client:
        assert (await client.call_error("tools/call", {"name": "weather_forecast", "arguments": {"city": "x"}}))["code"] == -32602
    assert seen == [
        ("parent", "tools/list", None),
        ("parent", "tools/call", "weather_forecast"),
        ("child", "tools/call", "forecast"),
        ("parent", "tools/call", "weather_forecast"),
        ("child", "tools/call", "forecast"),
        ("parent", "resources/read", "weather://weather/cities/Oslo"),
        ("child", "resources/read", "weather://cities/Oslo"),
        ("parent", "tools/call", "echo"),
        ("parent", "tools/call", "weather_forecast"),
    ]


async def test_a_mounted_server_without_middleware_of_its_own_still_answers() -> None:
    """The child has no middleware and the parent none either: the mount alone routes."""
    parent, _ = make_parent()
    assert parent.composition.active and not parent.composition.middleware
    async with connected_client(parent) as client:
        result = await client.call("tools/call", {"name": "weather_forecast", "arguments": {"city": "Lima"}})
        assert result["content"][0]["text"].startswith("Sunny in Lima")


def test_mounting_refuses_clashes_cycles_and_bad_prefixes() -> None:
    parent, child = make_parent()
    with pytest.raises(ValueError, match="already mounted"):
        parent.mount(MCPServer("other"), prefix="weather")
    with pytest.raises(ValueError, match="cycle"):
        parent.mount(parent, prefix="me")
    with pytest.raises(ValueError, match="cycle"):
        child.mount(parent, prefix="up")
    with pytest.raises(ValueError, match="prefix"):
        parent.mount(MCPServer("x"), prefix="bad prefix")
    with pytest.raises(ValueError, match="prefix"):
        parent.mount(MCPServer("x"), prefix="")
    with pytest.raises(TypeError, match="MCPServer"):
        parent.mount("weather", prefix="w")  # type: ignore[arg-type]
    clashing = MCPServer("clash")

    @clashing.tool
    async def echo() -> str:
        return "mine"

    host = MCPServer("host")

    @host.tool
    async def c_echo() -> str:
        return "host's"

    with pytest.raises(ValueError, match="already registered: c_echo"):
        host.mount(clashing, prefix="c")
    assert host.mounted == {} and set(host.tools) == {"c_echo"}


async def test_a_later_clash_keeps_the_parents_own(caplog: pytest.LogCaptureFixture) -> None:
    parent, child = make_parent()

    @parent.tool
    async def weather_later() -> str:
        return "the parent's"

    with caplog.at_level(logging.WARNING, logger="trio_mcp_sse.server"):

        @child.tool
        async def later() -> str:
            return "the child's"

    assert "is the parent's own" in caplog.text
    async with connected_client(parent) as client:
        result = await client.call("tools/call", {"name": "weather_later"})
        assert result["content"][0]["text"] == "the parent's"


async def test_mounts_nest_and_one_server_mounts_on_several_parents() -> None:
    inner = MCPServer("inner")

    @inner.tool
    async def deep(ctx: Context) -> str:
        return f"deep in {ctx.server.name}"

    @inner.resource("deep://{thing}")
    async def thing(thing: str) -> str:
        return thing

    middle = MCPServer("middle")
    middle.mount(inner, prefix="in")
    top = MCPServer("top")
    top.mount(middle, prefix="mid")
    other = MCPServer("other")
    other.mount(inner, prefix="x")
    async with connected_client(top) as client:
        assert names(await client.call("tools/list")) == ["mid_in_deep"]
        assert (await client.call("tools/call", {"name": "mid_in_deep"}))["content"][0]["text"] == "deep in top"
        read = await client.call("resources/read", {"uri": "deep://mid/in/stone"})
        assert read["contents"][0] == {"uri": "deep://mid/in/stone", "mimeType": "text/plain", "text": "stone"}

        @inner.tool
        async def deeper() -> str:
            return "deeper"

        await client.notification("notifications/tools/list_changed")
        assert names(await client.call("tools/list")) == ["mid_in_deep", "mid_in_deeper"]
    assert set(other.tools) == {"x_deep", "x_deeper"}


class Name(pydantic.BaseModel):
    name: str


async def test_mounted_items_in_the_modern_era() -> None:
    parent, child = make_parent()

    @child.tool
    async def greet(ctx: Context) -> str:
        answer = await ctx.elicit("Name?", Name)
        assert answer.content is not None
        return f"Hello {answer.content['name']}"

    async def elicit(params: Any) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "Ada"}}

    with trio.fail_after(10):
        async with open_http_client(parent.http_app()) as http, open_session(
            "http://testserver/mcp", http_client=http, protocol="2026-07-28", elicitation_handler=elicit
        ) as session:
            assert session.era == "modern"
            listed = await session.list_tools()
            assert [tool.name for tool in listed.tools] == ["echo", "weather_forecast", "weather_secret", "weather_greet"]
            result = await session.call_tool("weather_forecast", {"city": "Oslo"})
            assert result.content[0].text == "Sunny in Oslo (assistant)"  # type: ignore[union-attr]
            greeted = await session.call_tool("weather_greet")
            assert greeted.content[0].text == "Hello Ada"  # type: ignore[union-attr]
            read = await session.read_resource("weather://weather/cities/Oslo")
            assert str(read.contents[0].uri) == "weather://weather/cities/Oslo"
            with pytest.raises(MCPError) as missing:
                await session.read_resource("weather://weather/cities/Atlantis")
            assert missing.value.code == -32602 and missing.value.data == {"uri": "weather://weather/cities/Atlantis"}


def test_a_server_with_a_lifespan_of_its_own_is_refused() -> None:
    """Its tools would run with the parent's context, whose lifespan value is the parent's."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def pool(server: MCPServer) -> AsyncIterator[str]:
        yield "weather pool"

    parent = MCPServer("parent", "1.0.0")
    child = MCPServer("weather", "1.0.0", lifespan=pool)
    with pytest.raises(ValueError, match="MCPServer 'weather' has a lifespan, which mount\\(\\) does not enter") as refused:
        parent.mount(child, "weather")
    assert "move what it sets up into the lifespan of 'parent'" in str(refused.value)
    assert parent.mounted == {}
