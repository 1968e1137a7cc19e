"""The adapter that serves official-SDK servers over this transport."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context as SdkContext
from mcp.server.mcpserver import MCPServer as SdkMCPServer

from trio_mcp_sse.contrib import SdkSessionHandler, lowlevel_server, sdk_sse_app, sdk_sse_transport
from trio_mcp_sse.testing import serve_sessions

from .server_helpers_e2e import hypercorn_server

E2E_TIMEOUT = 60.0


def make_sdk_server() -> tuple[SdkMCPServer, dict[str, object]]:
    mcp = SdkMCPServer("sdk-test", version="3.1.4")
    seen: dict[str, object] = {}

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    async def whoami(ctx: SdkContext) -> str:
        headers = ctx.headers or {}
        return str(headers.get("user-agent"))

    @mcp.tool()
    async def hang() -> str:
        seen["hang started"] = True
        try:
            await trio.sleep_forever()
        except BaseException as exc:
            seen["hang ended by"] = type(exc).__name__
            raise
        return "unreachable"

    return mcp, seen


INITIALIZE = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"},
}


async def test_sdk_server_answers_through_the_session(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    mcp, _ = make_sdk_server()
    async with serve_sessions(SdkSessionHandler(mcp)) as host:
        client = await host.connect()
        init = await client.call("initialize", INITIALIZE)
        assert init["serverInfo"]["name"] == "sdk-test"
        assert init["protocolVersion"] == "2025-11-25"
        await client.notify("notifications/initialized")
        tools = {tool["name"] for tool in (await client.call("tools/list"))["tools"]}
        assert {"add", "whoami", "hang"} <= tools
        result = await client.call("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}})
        assert result["content"] == [{"type": "text", "text": "5"}]
        assert result["structuredContent"] == {"result": 5}
        result = await client.call("tools/call", {"name": "whoami", "arguments": {}}, headers={"user-agent": "probe/1"})
        assert result["content"][0]["text"] == "probe/1"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_session_close_cancels_the_sdk_server_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    mcp, seen = make_sdk_server()
    async with serve_sessions(SdkSessionHandler(mcp)) as host:
        client = await host.connect()
        await client.call("initialize", INITIALIZE)
        await client.notify("notifications/initialized")
        await client.request("tools/call", {"name": "hang", "arguments": {}})
        while "hang started" not in seen:
            await trio.testing.wait_all_tasks_blocked()
        client.session.close("client disconnected")  # what the transport does on disconnect
        with trio.fail_after(5):
            await client.session.finished.wait()
    assert seen["hang ended by"] == "Cancelled"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_end_of_inbound_channel_ends_the_sdk_run_normally(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    mcp, _ = make_sdk_server()
    async with serve_sessions(SdkSessionHandler(mcp)) as host:
        client = await host.connect()
        await client.call("initialize", INITIALIZE)
        # A transport that stops feeding the session closes the inbound side;
        # the SDK sees end-of-stream and Server.run returns.
        client.session._inbound_send.close()
        with trio.fail_after(5):
            await client.session.finished.wait()
        assert client.session.close_reason is None  # returned, not cancelled or failed
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_outbound_gone_does_not_leak_trio_exceptions_into_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    mcp, _ = make_sdk_server()
    async with serve_sessions(SdkSessionHandler(mcp)) as host:
        client = await host.connect()
        await client.call("initialize", INITIALIZE)
        await client.notify("notifications/initialized")
        # The stream's reader is gone: the next write fails on our side...
        client.session.outgoing.close()
        for _ in range(3):
            await client.request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
        await trio.testing.wait_all_tasks_blocked()
        # ...and the SDK sees the anyio exception it handles, not trio.BrokenResourceError.
        client.session.close("stream ended")
        with trio.fail_after(5):
            await client.session.finished.wait()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_lowlevel_server_accepts_both_sdk_server_kinds() -> None:
    mcp, _ = make_sdk_server()
    lowlevel = lowlevel_server(mcp)
    assert isinstance(lowlevel, Server)
    assert lowlevel_server(lowlevel) is lowlevel
    with pytest.raises(TypeError, match="MCPServer"):
        lowlevel_server(object())
    assert sdk_sse_transport(mcp, sse_path="/events").sse_path == "/events"
    app = sdk_sse_app(mcp)
    assert app.extensions["trio_mcp_sse"].sessions.handler.server is lowlevel


@pytest.mark.e2e
async def test_official_client_calls_an_sdk_server_through_hypercorn_trio() -> None:
    with trio.fail_after(E2E_TIMEOUT):
        async with hypercorn_server("examples.sdk_adapter:app") as server:
            async with sse_client(server.sse_url) as (read, write), ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.server_info.name == "sdk-on-trio"
                result = await session.call_tool("add", {"a": 20, "b": 22})
                assert result.is_error is False
                assert result.structured_content == {"result": 42}
                who = await session.call_tool("whoami", {})
                assert "from python-httpx" in who.content[0].text  # type: ignore[union-attr]
                greeting = await session.read_resource("greeting://trio")
                assert greeting.contents[0].text == "Hello, trio!"  # type: ignore[union-attr]
            # Abandon a second session abruptly, mid-stream.
            with trio.move_on_after(1):
                async with sse_client(server.sse_url) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    await trio.sleep_forever()
            # A fresh session still works after the disconnect.
            async with sse_client(server.sse_url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                assert (await session.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}
            await trio.sleep(0.3)  # give a disconnect traceback, were there one, time to be printed
            assert "Traceback" not in server.text(), server.text()
            assert "Error" not in server.text(), server.text()
