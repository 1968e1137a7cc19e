"""End to end: real `hypercorn --worker-class trio` processes, real sockets, real clock."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from mcp import ClientSession, MCPError
from mcp.client.sse import sse_client

from .e2e_support import ServerProcess, hypercorn_argv, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture
async def echo_server() -> ServerProcess:  # type: ignore[misc]
    async with running_server(hypercorn_argv("tests.apps.e2e_app:app")) as server:
        yield server


async def session_count(server: ServerProcess) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/debug/sessions")
        return int(response.json()["sessions"])


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


async def _abrupt_session(url_port: int, index: int) -> None:
    """Open a stream, call echo through it, then drop the connection without a goodbye."""
    stream = await trio.open_tcp_stream("127.0.0.1", url_port)
    try:
        await stream.send_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        buffer = b""
        while b"session_id=" not in buffer or b"\n\n" not in buffer.split(b"event: endpoint", 1)[-1]:
            chunk = await stream.receive_some(65536)
            assert chunk, "stream closed before the endpoint event"
            buffer += chunk
        endpoint = buffer.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()

        async def post(message: dict[str, object]) -> None:
            body = json.dumps(message).encode()
            poster = await trio.open_tcp_stream("127.0.0.1", url_port)
            async with poster:
                await poster.send_all(
                    f"POST {endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
                )
                reply = b""
                while chunk := await poster.receive_some(65536):
                    reply += chunk
                assert reply.startswith(b"HTTP/1.1 202"), reply[:100]

        init = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}
        await post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        await post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": f"n{index}"}}})
        while f'"text":"n{index}"'.encode() not in buffer:
            chunk = await stream.receive_some(65536)
            assert chunk, "stream closed before the tool result"
            buffer += chunk
    finally:
        # Abrupt: no more reads, reset the connection if the platform allows it.
        sock = stream.socket
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()


async def test_many_abrupt_disconnects_leave_no_trace(echo_server: ServerProcess) -> None:
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for index in range(200):
                nursery.start_soon(_abrupt_session, echo_server.port, index)
        while await session_count(echo_server):
            await trio.sleep(0.05)
    assert "Traceback" not in echo_server.log
    assert "Error" not in echo_server.log
