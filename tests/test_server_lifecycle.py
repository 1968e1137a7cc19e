"""Lifecycle rules: what may come before initialize, version negotiation, unknown methods."""

from __future__ import annotations

import pytest
import trio

from trio_mcp_sse.server import LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, MCPServer
from trio_mcp_sse.testing import connected_client, serve_sessions


def make_server() -> MCPServer:
    server = MCPServer("lifecycle", "2.0.0", title="Lifecycle", instructions="Be nice.")

    @server.tool
    async def echo(text: str) -> str:
        return text

    return server


async def test_ping_is_answered_before_initialize() -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        assert await client.call("ping") == {}


async def test_requests_before_initialize_are_refused_and_the_session_survives() -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        error = await client.call_error("tools/list")
        assert error["code"] == -32600
        assert "initialize" in error["message"]
        await client.initialize()
        result = await client.call("tools/list")
        assert [tool["name"] for tool in result["tools"]] == ["echo"]


@pytest.mark.parametrize("version", SUPPORTED_PROTOCOL_VERSIONS)
async def test_a_supported_version_is_echoed(version: str) -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        result = await client.initialize(version=version)
        assert result["protocolVersion"] == version


@pytest.mark.parametrize("version", ["2026-07-28", "1999-01-01", "draft"])
async def test_an_unsupported_version_gets_the_latest(version: str) -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        result = await client.initialize(version=version)
        assert result["protocolVersion"] == LATEST_PROTOCOL_VERSION == "2025-11-25"


async def test_initialize_result_describes_the_server() -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        result = await client.initialize()
        assert result["serverInfo"] == {"name": "lifecycle", "version": "2.0.0", "title": "Lifecycle"}
        assert result["instructions"] == "Be nice."
        capabilities = result["capabilities"]
        assert capabilities["tools"] == {"listChanged": True}
        assert capabilities["resources"] == {"subscribe": True, "listChanged": True}
        assert capabilities["prompts"] == {"listChanged": True}
        assert capabilities["logging"] == {}
        assert "completions" not in capabilities  # no completer registered


async def test_a_second_initialize_is_refused() -> None:
    async with connected_client(make_server(), version="2025-03-26") as client:
        error = await client.call_error(
            "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}
        )
        assert error["code"] == -32600
        assert "already initialized" in error["message"]
        # The first negotiation stands.
        assert client.session is not None
        assert await client.call("ping") == {}


async def test_initialize_without_a_protocol_version_is_invalid_params() -> None:
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        error = await client.call_error("initialize", {"capabilities": {}})
        assert error["code"] == -32602
        # Not initialized by the failed attempt.
        assert (await client.call_error("tools/list"))["code"] == -32600


@pytest.mark.parametrize("initialized", [False, True])
async def test_server_discover_is_method_not_found(initialized: bool) -> None:
    # Newer official clients try server/discover first and fall back to
    # initialize only on -32601.
    async with serve_sessions(make_server()) as host:
        client = await host.connect()
        if initialized:
            await client.initialize()
        error = await client.call_error("server/discover", {})
        assert error["code"] == -32601


async def test_unknown_method_is_method_not_found() -> None:
    async with connected_client(make_server()) as client:
        error = await client.call_error("tools/frobnicate")
        assert error["code"] == -32601
        assert "tools/frobnicate" in error["message"]


async def test_unknown_notifications_and_stray_responses_are_ignored() -> None:
    async with connected_client(make_server()) as client:
        await client.notify("notifications/whatever", {"x": 1})
        await client.respond(12345, {})
        await client.respond_error("nope", -1, "no")
        assert await client.call("ping") == {}
        assert await client.drain() == []


async def test_a_request_id_in_flight_cannot_be_reused(autojump_clock: trio.abc.Clock) -> None:
    server = make_server()
    release = trio.Event()

    @server.tool
    async def wait() -> str:
        await release.wait()
        return "done"

    async with connected_client(server) as client:
        await client.request("tools/call", {"name": "wait"}, request_id="same")
        error = await client.call_error("tools/call", {"name": "echo", "arguments": {"text": "x"}}, request_id="same")
        assert error["code"] == -32600
        release.set()
        response = await client.response("same")
        assert response["result"]["content"] == [{"type": "text", "text": "done"}]


async def test_too_many_requests_in_flight_are_refused_not_queued() -> None:
    server = MCPServer("busy", max_concurrent_requests=2)
    release = trio.Event()

    @server.tool
    async def wait() -> str:
        await release.wait()
        return "done"

    async with connected_client(server) as client:
        first = await client.request("tools/call", {"name": "wait"})
        second = await client.request("tools/call", {"name": "wait"})
        error = await client.call_error("tools/call", {"name": "wait"})
        assert error["code"] == -32000
        assert await client.call("ping") == {}  # ping is never refused
        release.set()
        assert "result" in await client.response(first)
        assert "result" in await client.response(second)


async def test_the_server_forgets_the_session_when_it_ends() -> None:
    server = make_server()
    async with serve_sessions(server) as host:
        client = await host.connect()
        await client.initialize()
        assert len(server.connections) == 1
        client.session.close("test")
        with trio.fail_after(5):
            await client.session.finished.wait()
        assert server.connections == ()


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="log_level"):
        MCPServer("x", log_level="loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page_size"):
        MCPServer("x", page_size=0)
    with pytest.raises(ValueError, match="client_request_timeout"):
        MCPServer("x", client_request_timeout=0)
    with pytest.raises(ValueError, match="max_concurrent_requests"):
        MCPServer("x", max_concurrent_requests=0)
