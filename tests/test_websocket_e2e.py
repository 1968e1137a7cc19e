"""The WebSocket transport end to end: our client and raw trio-websocket peers against real hypercorn."""

from __future__ import annotations

import signal
import sys
from typing import Any

import orjson
import pytest
import trio
import trio_websocket

from trio_mcp_sse.client import (
    ClientSession,
    ConnectError,
    WebSocketClosedError,
    WebSocketRejectedError,
    connect_websocket,
    open_session,
)

from .e2e_support import ROOT, hypercorn_argv, reset, running_server, server_state

pytestmark = pytest.mark.e2e

APP = "tests.apps.e2e_app:app"


@pytest.fixture(params=["hypercorn", "serve"])
def app_argv(request: pytest.FixtureRequest) -> list[str]:
    """Plain hypercorn, and ``serve``, whose llhttp connections hand the upgrade to hypercorn's WebSocket stream."""
    if request.param == "hypercorn":
        return hypercorn_argv(APP)
    return [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


async def wait_for_sessions(server: object, count: int) -> None:
    with trio.fail_after(10):
        while (await server_state(server))["sessions"] != count:  # type: ignore[arg-type]
            await trio.sleep(0.05)


async def test_our_client_over_real_hypercorn(app_argv: list[str]) -> None:
    async with running_server(app_argv) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with trio.fail_after(20):
            async with open_session(url) as session:
                assert session.initialize_result is not None
                assert session.initialize_result.server_info.name == "echo"
                assert sorted(tool.name for tool in (await session.list_tools()).tools) == ["add", "echo"]
                echoed = await session.call_tool("echo", {"text": "héllo ✓\n\"q\""})
                assert echoed.content[0].text == "héllo ✓\n\"q\""  # type: ignore[union-attr]
                await session.ping()
                assert (await server_state(server))["sessions"] == 1
            await wait_for_sessions(server, 0)
            # The same through the transport and session by hand, with pings on a short interval.
            async with connect_websocket(url, ping_interval=0.2) as connection, ClientSession(connection) as session:
                assert connection.subprotocol == "mcp"
                await session.initialize()
                await trio.sleep(0.7)  # a few ping/pong rounds
                added = await session.call_tool("add", {"a": 2, "b": 3.5})
                assert added.content[0].text == "5.5"  # type: ignore[union-attr]
            await wait_for_sessions(server, 0)
        assert "Traceback" not in server.log


async def test_the_client_command_takes_a_websocket_url(app_argv: list[str]) -> None:
    async with running_server(app_argv) as server:
        with trio.fail_after(30):
            done = await trio.run_process(
                [sys.executable, "-m", "trio_mcp_sse", "client", f"ws://127.0.0.1:{server.port}/ws", "--call", "echo", "--arg", "text=hi"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=str(ROOT),
            )
        assert done.returncode == 0, done.stderr.decode()
        assert orjson.loads(done.stdout)["content"] == [{"type": "text", "text": "hi"}]


async def test_refusals_reach_our_client_as_typed_errors(app_argv: list[str]) -> None:
    async with running_server(app_argv) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with trio.fail_after(20):
            with pytest.raises(WebSocketRejectedError) as refused:
                async with connect_websocket(url, headers={"Origin": "https://evil.example"}):
                    pass
            assert refused.value.status_code == 403
            with pytest.raises(WebSocketRejectedError) as refused:
                async with connect_websocket(f"ws://127.0.0.1:{server.port}/sse"):  # not a WebSocket endpoint
                    pass
            assert refused.value.status_code == 404
        assert "Traceback" not in server.log
    with trio.fail_after(20), pytest.raises(ConnectError, match="Connection refused"):
        async with connect_websocket(url):  # the server is gone
            pass


@pytest.mark.parametrize(
    ("subprotocols", "headers", "host", "status"),
    [
        ((), [], "127.0.0.1", 400),
        (("mcp",), [(b"origin", b"https://evil.example")], "127.0.0.1", 403),
        (("mcp",), [], "evil.example", 421),
    ],
)
async def test_the_upgrade_is_refused_before_any_session(app_argv: list[str], subprotocols: tuple[str, ...], headers: list[tuple[bytes, bytes]], host: str, status: int) -> None:
    async with running_server(app_argv) as server:
        with trio.fail_after(20):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            rejected: list[trio_websocket.ConnectionRejected] = []
            try:
                async with trio.open_nursery() as nursery:
                    await trio_websocket.wrap_client_stream(
                        nursery, stream, host, "/ws", subprotocols=subprotocols, extra_headers=headers
                    )
            except* trio_websocket.ConnectionRejected as group:  # (raised by its reader task)
                rejected.extend(group.exceptions)  # type: ignore[arg-type]
            assert [refusal.status_code for refusal in rejected] == [status]
            assert (await server_state(server))["sessions"] == 0
        assert "Traceback" not in server.log


@pytest.mark.parametrize(
    ("frame", "code", "errors"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"}', 1003, []),  # binary
        ("x" * (4 * 1024 * 1024 + 1), 1009, []),  # over the 4 MiB default
        ("{not json", 1007, [-32700]),  # told why as JSON-RPC first
    ],
)
async def test_hostile_frames_close_the_connection_with_a_code(app_argv: list[str], frame: str | bytes, code: int, errors: list[int]) -> None:
    async with running_server(app_argv) as server:
        with trio.fail_after(20):
            async with trio_websocket.open_websocket(
                "127.0.0.1", server.port, "/ws", use_ssl=False, subprotocols=["mcp"], max_message_size=1024
            ) as websocket:
                await websocket.send_message(orjson.dumps(INITIALIZE).decode())
                assert orjson.loads(await websocket.get_message())["id"] == 0
                await websocket.send_message(frame)
                received: list[dict[str, Any]] = []

                async def read_to_the_close() -> None:
                    while True:
                        received.append(orjson.loads(await websocket.get_message()))

                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await read_to_the_close()
                assert closed.value.reason.code == code
                assert [message["error"]["code"] for message in received] == errors
            await wait_for_sessions(server, 0)
        assert "Traceback" not in server.log


async def test_an_abrupt_disconnect_ends_the_session_without_a_traceback(app_argv: list[str]) -> None:
    async with running_server(app_argv) as server:
        with trio.fail_after(20):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with trio.open_nursery() as nursery:
                websocket = await trio_websocket.wrap_client_stream(nursery, stream, "127.0.0.1", "/ws", subprotocols=["mcp"])
                await websocket.send_message(orjson.dumps(INITIALIZE).decode())
                await websocket.get_message()
                assert (await server_state(server))["sessions"] == 1
                reset(stream)
                await stream.aclose()
                nursery.cancel_scope.cancel()
            await wait_for_sessions(server, 0)
            await trio.sleep(0.2)
        assert "Traceback" not in server.log
        assert "Error" not in server.log


async def test_sigterm_drains_each_connection_with_1001() -> None:
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", APP, "--bind", "127.0.0.1:0", "--drain-timeout", "5"]
    async with running_server(argv) as server:

        async def use_until_drained() -> None:
            async with connect_websocket(f"ws://127.0.0.1:{server.port}/ws") as connection, ClientSession(connection) as session:
                await session.initialize()
                server.process.send_signal(signal.SIGTERM)
                await trio.sleep(10)  # cancelled when the connection closes

        with trio.fail_after(20):
            with pytest.raises(WebSocketClosedError) as closed:
                await use_until_drained()
            assert closed.value.code == 1001
            assert closed.value.reason == "server shutting down"
            assert await server.process.wait() == 0
        assert "Traceback" not in server.log
