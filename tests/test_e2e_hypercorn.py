"""End to end: real `hypercorn --worker-class trio` processes, real sockets, real clock."""

from __future__ import annotations

import pytest
import trio
from mcp import ClientSession, MCPError
from mcp.client.sse import sse_client

from .e2e_support import ServerProcess, abrupt_session, hypercorn_argv, running_server, server_state

pytestmark = pytest.mark.e2e


@pytest.fixture
async def echo_server() -> ServerProcess:  # type: ignore[misc]
    async with running_server(hypercorn_argv("tests.apps.e2e_app:app")) as server:
        yield server


async def session_count(server: ServerProcess) -> int:
    return (await server_state(server))["sessions"]


async def test_official_sdk_client_round_trip(echo_server: ServerProcess) -> None:
    text = "héllo, wörld ✓ 日本語\nsecond line\n\n  indented \"quoted\" \\ back\r\nslash"
    with trio.fail_after(30):
        async with sse_client(f"{echo_server.url}/sse") as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "echo"
            assert init.protocol_version in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
            tools = await session.list_tools()
            assert sorted(tool.name for tool in tools.tools) == ["add", "echo"]
            echo_tool = next(tool for tool in tools.tools if tool.name == "echo")
            assert echo_tool.input_schema["required"] == ["text"]
            result = await session.call_tool("echo", {"text": text})
            assert not result.is_error
            assert [block.text for block in result.content] == [text]  # type: ignore[union-attr]
            added = await session.call_tool("add", {"a": 2, "b": 0.5})
            assert added.content[0].text == "2.5"  # type: ignore[union-attr]
            with pytest.raises(MCPError) as invalid:
                await session.call_tool("add", {"a": "x"})
            assert invalid.value.error.code == -32602
            assert "b: Field required" in invalid.value.error.message
            await session.send_ping()
    with trio.fail_after(10):
        while await session_count(echo_server):
            await trio.sleep(0.05)
    assert "Traceback" not in echo_server.log


async def test_many_abrupt_disconnects_leave_no_trace(echo_server: ServerProcess) -> None:
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for index in range(200):
                nursery.start_soon(abrupt_session, echo_server.port, index)
        while await session_count(echo_server):
            await trio.sleep(0.05)
    assert "Traceback" not in echo_server.log
    assert "Error" not in echo_server.log
