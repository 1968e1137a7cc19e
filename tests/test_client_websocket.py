"""connect_websocket against our server in memory: hypercorn's connection code over memory streams, no sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app

from trio_mcp_sse import AuthSettings, MCPServer, StaticTokens, WebSocketSettings
from trio_mcp_sse.client import (
    ClientSession,
    ConnectionClosedError,
    WebSocketClosedError,
    WebSocketRejectedError,
    connect_websocket,
    open_session,
)
from trio_mcp_sse.client._open import choose_transport
from trio_mcp_sse.testing import run_asgi_app

URL = "ws://127.0.0.1:8000/ws"


class _LoopbackSocket:
    """What hypercorn asks of a connection's socket: its family and both addresses."""

    family = socket.AF_INET

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 50000)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8000)


class MemoryNetwork:
    """Every ``trio.open_tcp_stream`` becomes a memory stream served by hypercorn's own connection code."""

    def __init__(self, app: Any, nursery: trio.Nursery) -> None:
        self.app = app
        self.nursery = nursery
        self.served: list[Any] = []

    async def open_tcp_stream(self, host: str, port: int, **_: Any) -> trio.abc.Stream:
        client, served = trio.testing.memory_stream_pair()
        served.socket = _LoopbackSocket()  # type: ignore[attr-defined]
        self.served.append(served)
        server = TCPServer(wrap_app(self.app, 0, "asgi"), Config(), WorkerContext(None), {}, served)
        self.nursery.start_soon(server.run)
        return client

    def silence_server(self) -> None:
        """From now on nothing the server writes reaches the client (a peer that vanished)."""

        async def swallow() -> None:
            pass

        for served in self.served:
            served.send_stream.send_all_hook = swallow


def make_server() -> MCPServer:
    server = MCPServer("ws-memory", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    return server


@asynccontextmanager
async def served(monkeypatch: pytest.MonkeyPatch, app: Any) -> AsyncIterator[MemoryNetwork]:
    async with run_asgi_app(app), trio.open_nursery() as nursery:
        network = MemoryNetwork(app, nursery)
        monkeypatch.setattr(trio, "open_tcp_stream", network.open_tcp_stream)
        yield network
        nursery.cancel_scope.cancel()


async def test_open_session_over_websocket(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with served(monkeypatch, app):
        with trio.fail_after(10):
            async with open_session(URL, client_name="memory") as session:
                assert session.initialize_result is not None
                assert session.initialize_result.server_info.name == "ws-memory"
                assert [tool.name for tool in (await session.list_tools()).tools] == ["echo"]
                result = await session.call_tool("echo", {"text": "in memory ✓"})
                assert result.content[0].text == "in memory ✓"  # type: ignore[union-attr]
                assert [s.headers["sec-websocket-protocol"] for s in transport.sessions] == ["mcp"]
            while len(transport.sessions):
                await trio.sleep(0.01)


async def test_a_refused_upgrade_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served(monkeypatch, make_server().sse_app(websocket=True)):
        with trio.fail_after(10), pytest.raises(WebSocketRejectedError, match="403 Origin not allowed") as refused:
            async with connect_websocket(URL, headers={"Origin": "https://evil.example"}):
                pass
        assert refused.value.status_code == 403


async def test_a_bearer_token_travels_on_the_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_server().sse_app(websocket=True, auth=AuthSettings(verify_token=StaticTokens({"s3cret": "alice"})))
    transport = app.extensions["trio_mcp_sse"]
    async with served(monkeypatch, app):
        with trio.fail_after(10):
            with pytest.raises(WebSocketRejectedError) as refused:
                async with connect_websocket(URL):
                    pass
            assert refused.value.status_code == 401
            async with open_session(URL, headers={"Authorization": "Bearer s3cret"}) as session:
                assert (await session.call_tool("echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
                assert [s.principal for s in transport.sessions] == ["alice"]


async def use_until_closed(connect: Callable[[], Any], during: Callable[[], Any]) -> None:
    async with connect() as connection, ClientSession(connection) as session:
        await session.initialize()
        await during()
        await trio.sleep(30)  # the connection's failure cancels this


async def test_a_drain_reaches_the_client_as_close_code_1001(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with served(monkeypatch, app), trio.open_nursery() as nursery:

        async def drain() -> None:
            nursery.start_soon(transport.drain, 5.0)

        with trio.fail_after(10), pytest.raises(WebSocketClosedError) as closed:
            await use_until_closed(lambda: connect_websocket(URL), drain)
        assert (closed.value.code, closed.value.reason) == (1001, "server shutting down")


async def test_a_message_over_the_clients_limit_closes_with_1009(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served(monkeypatch, make_server().sse_app(websocket=True)):

        async def connect_and_call() -> None:
            async with connect_websocket(URL, max_message_size=500) as connection, ClientSession(connection) as session:
                await session.initialize()
                await session.call_tool("echo", {"text": "x" * 1000})

        with trio.fail_after(10), pytest.raises(WebSocketClosedError) as closed:
            await connect_and_call()
        assert closed.value.code == 1009


async def test_a_server_that_stops_answering_pings_fails_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_server().sse_app(websocket=WebSocketSettings(ping_interval=None))
    async with served(monkeypatch, app) as network:

        async def vanish() -> None:
            network.silence_server()

        with trio.fail_after(10), pytest.raises(WebSocketClosedError, match="no pong") as dead:
            await use_until_closed(lambda: connect_websocket(URL, ping_interval=0.2, timeout=0.5), vanish)
        assert dead.value.code is None


async def test_sending_on_a_closed_connection_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served(monkeypatch, make_server().sse_app(websocket=True)):
        with trio.fail_after(10):
            async with connect_websocket(URL) as connection:
                assert connection.subprotocol == "mcp"
                assert not connection.closed
            assert connection.closed
            with pytest.raises(ConnectionClosedError):
                await connection.send(b'{"jsonrpc":"2.0","method":"x"}')


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://127.0.0.1:8000/ws", {}, "ws:// or wss://"),
        ("ws:///ws", {}, "ws:// or wss://"),
        (URL, {"timeout": 0}, "timeout must be > 0"),
        (URL, {"ping_interval": 0}, "ping_interval must be > 0"),
        (URL, {"max_message_size": 0}, "max_message_size must be >= 1"),
    ],
)
async def test_arguments_are_checked_before_connecting(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with connect_websocket(url, **options):
            pass


async def test_open_session_refuses_http_only_options_for_websocket() -> None:
    with pytest.raises(ValueError, match="give a WebSocket its token in headers"):
        async with open_session(URL, auth=("user", "password")):
            pass


def test_auto_takes_a_websocket_url_as_websocket() -> None:
    assert choose_transport("ws://127.0.0.1:8000/ws", "auto") == "websocket"
    assert choose_transport("wss://example.com/mcp", "auto") == "websocket"
    assert choose_transport("http://127.0.0.1:8000/sse", "auto") == "sse"
