"""A client that leaves a Streamable HTTP response while it waits is noticed on both HTTP/1.1 paths.

``serve``'s llhttp layer tells the response through a :class:`DisconnectNotice`
(the response then waits on its event channel alone); hypercorn's own h11
classes give no notice and the response waits in ``receive()``.  Either way
the response must end as soon as its client is gone, while the request itself
goes on, and the session must go on serving.  ``serve`` runs in-process on
127.0.0.1:0 (real sockets, real clock, an absolute ``fail_after``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
from hypercorn.config import Config

from trio_mcp_sse import MCPServer
from trio_mcp_sse._channel import open_channel
from trio_mcp_sse._http import DISCONNECT_NOTICE, DisconnectNotice
from trio_mcp_sse._serve import ServeOptions, serve
from trio_mcp_sse.server import Context

MODERN_FREE = "2025-11-25"


class Gated:
    """A server whose ``gated`` tool waits for the test, and the transport's state."""

    def __init__(self, response_mode: str) -> None:
        self.server = MCPServer("notice-test", "1.0.0")
        self.started = trio.Event()
        self.gate = trio.Event()
        self.finished = trio.Event()
        self.notices: list[bool] = []
        """For each request the app saw: whether it carried a disconnect notice."""

        @self.server.tool
        async def gated(ctx: Context) -> str:
            """Report progress, wait for the test to open the gate, answer."""
            await ctx.report_progress(1)
            self.started.set()
            await self.gate.wait()
            self.finished.set()
            return "opened"

        self.app = self.server.http_app(sse_path=None, response_mode=response_mode)
        self.transport: Any = self.app.extensions["trio_mcp_sse"]

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.notices.append(isinstance(scope.get("extensions", {}).get(DISCONNECT_NOTICE), DisconnectNotice))
        await self.app(scope, receive, send)


@asynccontextmanager
async def served(gated: Gated, http_parser: str, keep_alive_timeout: float = 5) -> AsyncIterator[int]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 5
    config.keep_alive_timeout = keep_alive_timeout
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    options = ServeOptions(drain_timeout=1, gc_threshold=None, http_parser=http_parser)  # type: ignore[arg-type]
    try:
        async with trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(gated.asgi, config, options, sockets=sockets, task_status=task_status)

            binds: list[str] = await nursery.start(run)
            yield int(binds[0].rsplit(":", 1)[1])
            nursery.cancel_scope.cancel()
    finally:
        for sock in sockets.insecure_sockets:
            sock.close()


def post(body: dict[str, Any], session_id: str | None = None) -> bytes:
    data = orjson.dumps(body)
    head = (
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\n"
        f"MCP-Protocol-Version: {MODERN_FREE}\r\nContent-Length: {len(data)}\r\n"
    )
    if session_id is not None:
        head += f"Mcp-Session-Id: {session_id}\r\n"
    return (head + "\r\n").encode() + data


async def exchange(port: int, request: bytes, until: bytes | None = None) -> bytes:
    """One request on its own connection: its answer's head and body (``until``: read to that, for a stream)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        if until is not None:
            while until not in body:
                body += await stream.receive_some(65536)
        else:
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += await stream.receive_some(65536)
        return head + b"\r\n\r\n" + body


async def open_session(port: int) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": MODERN_FREE, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    answer = await exchange(port, post(init), b"\"serverInfo\"")
    session_id = answer.lower().split(b"mcp-session-id: ")[1].split(b"\r\n")[0].decode()
    accepted = await exchange(port, post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session_id))
    assert accepted.startswith(b"HTTP/1.1 202 ")
    return session_id


@pytest.mark.parametrize("http_parser", ["llhttp", "h11"])
@pytest.mark.parametrize("response_mode", ["json", "sse"])
async def test_a_response_ends_when_its_client_leaves_and_the_request_goes_on(
    http_parser: str, response_mode: str
) -> None:
    gated = Gated(response_mode)
    with trio.fail_after(20):
        async with served(gated, http_parser) as port:
            session_id = await open_session(port)
            host = gated.transport.host
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "gated", "arguments": {}}}
            await stream.send_all(post(call, session_id))
            await gated.started.wait()
            assert host._open_streams == 1
            await stream.aclose()  # the client leaves while its response waits for the answer
            while host._open_streams:
                await trio.sleep(0.01)
            assert not gated.finished.is_set()  # the request goes on without its client
            gated.gate.set()
            await gated.finished.wait()
            ping = await exchange(port, post({"jsonrpc": "2.0", "id": 8, "method": "ping"}, session_id), b"\"result\":{}}")
            assert ping.startswith(b"HTTP/1.1 200 ")
            assert b'{"jsonrpc":"2.0","id":8,"result":{}}' in ping
    assert gated.notices and all(notice is (http_parser == "llhttp") for notice in gated.notices)


@pytest.mark.parametrize("http_parser", ["llhttp", "h11"])
async def test_a_connection_read_for_a_waiting_response_keeps_alive_then_times_out(http_parser: str) -> None:
    """Once a response has had its connection watched, the connection still serves the next request
    (also pipelined) and still closes after the keep-alive timeout when idle."""
    gated = Gated("json")
    gated.gate.set()
    with trio.fail_after(20):
        async with served(gated, http_parser, keep_alive_timeout=1) as port:
            session_id = await open_session(port)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "gated", "arguments": {}}}
            ping = {"jsonrpc": "2.0", "id": 8, "method": "ping"}
            await stream.send_all(post(call, session_id) + post(ping, session_id))  # pipelined
            received = b""
            while b'"id":8' not in received:
                received += await stream.receive_some(65536)
            assert received.count(b"HTTP/1.1 200 ") == 2
            assert received.index(b'"id":7') < received.index(b'"id":8')
            assert b'"text":"opened"' in received
            await stream.send_all(post({"jsonrpc": "2.0", "id": 9, "method": "ping"}, session_id))
            received = b""
            while b'"id":9' not in received:
                received += await stream.receive_some(65536)
            with trio.fail_after(5):  # idle now: closed after the keep-alive timeout
                while await stream.receive_some(65536):
                    pass
            await stream.aclose()


def test_a_notice_fires_once_and_calls_back_only_while_set() -> None:
    notice = DisconnectNotice()
    calls: list[str] = []
    notice.callback = lambda: calls.append("first")
    notice.fire()
    notice.fire()
    assert notice.gone and calls == ["first"] and notice.callback is None


async def test_an_interrupted_receive_raises_the_given_error_and_takes_nothing() -> None:
    send, receive = open_channel(1)
    got: list[BaseException] = []

    async def waiter() -> None:
        try:
            await receive.receive()
        except LookupError as error:
            got.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        receive.interrupt(LookupError("gone"))
    assert [str(error) for error in got] == ["gone"]
    send.send_nowait("kept")
    receive.interrupt(LookupError("nobody waits"))  # no waiter: nothing happens
    assert receive.receive_nowait() == "kept"
