"""A server that never ends an event: the client fails with a typed error, in bounded time and
memory, over real loopback sockets.

The server is a few lines of raw Trio TCP so it can misbehave in ways no real server does:
it announces a valid endpoint, answers POSTs 202, then streams one ``data:`` line forever.
Without the decoder's bound every read succeeds (so ``read_timeout`` never fires) and the
client's buffer grows until the process dies.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from trio_mcp_sse.client import ClientSession, EventTooLargeError, connect_sse
from trio_mcp_sse.client._cli import main as cli_main

pytestmark = pytest.mark.e2e

LIMIT = 1024 * 1024
_CHUNK = b"x" * 65536


class EndlessEventServer:
    def __init__(self, *, wait_for_post: bool) -> None:
        self.wait_for_post = wait_for_post
        self.posted = trio.Event()
        self.stream_closed = trio.Event()
        self.bytes_streamed = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(30):
                head = b""
                while b"\r\n\r\n" not in head:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    head += data
            if head.startswith(b"POST "):
                self.posted.set()
                await stream.send_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 8\r\nConnection: close\r\n\r\nAccepted"
                )
                return
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                b"event: endpoint\ndata: /messages/?session_id=abc\n\n"
            )
            if self.wait_for_post:
                with trio.fail_after(30):
                    await self.posted.wait()
            await stream.send_all(b"event: message\ndata: ")
            while True:  # until the client hangs up
                await stream.send_all(_CHUNK)
                self.bytes_streamed += len(_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if not head.startswith(b"POST "):
                self.stream_closed.set()
            await stream.aclose()


@asynccontextmanager
async def endless_event_server(*, wait_for_post: bool) -> AsyncIterator[tuple[str, EndlessEventServer]]:
    server = EndlessEventServer(wait_for_post=wait_for_post)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/sse", server
        nursery.cancel_scope.cancel()


async def test_an_endless_event_ends_the_connection_with_a_typed_error_and_bounded_memory() -> None:
    async with endless_event_server(wait_for_post=False) as (url, server):
        tracemalloc.start()
        try:
            with trio.fail_after(20), pytest.raises(EventTooLargeError) as caught:
                async with connect_sse(url, max_event_size=LIMIT, read_timeout=300) as connection:
                    await connection.incoming.receive()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert caught.value.limit == LIMIT
        assert str(caught.value) == (
            f"the server at {url} sent an event larger than max_event_size "
            f"({LIMIT} characters); connection closed"
        )
        # The decoder held at most LIMIT characters; the rest is the client's own overhead.
        assert peak < 6 * LIMIT
        with trio.fail_after(10):
            await server.stream_closed.wait()  # the client hung up


async def test_a_pending_request_fails_with_the_typed_error() -> None:
    async with endless_event_server(wait_for_post=True) as (url, _server):
        with trio.fail_after(20), pytest.raises(EventTooLargeError):
            async with (
                connect_sse(url, max_event_size=LIMIT) as connection,
                ClientSession(connection, request_timeout=60) as session,
            ):
                await session.initialize()  # posted; its answer would be the endless event


async def test_the_cli_reports_an_oversized_event_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    async with endless_event_server(wait_for_post=True) as (url, _server):
        with trio.fail_after(20):
            status = await trio.to_thread.run_sync(
                cli_main, [url, "--max-event-size", str(LIMIT)]
            )
        assert status == 1
        assert capsys.readouterr().err == (
            f"error: HTTP+SSE at {url}: the server at {url} sent an event larger than max_event_size "
            f"({LIMIT} characters); connection closed\n"
        )
        assert await trio.to_thread.run_sync(cli_main, [url, "--max-event-size", "0"]) == 2
        assert capsys.readouterr().err == "error: --max-event-size must be > 0\n"
