"""Sessions across workers in one process: two apps joined by a MemoryBroker, a client balanced across them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import trio

from trio_mcp_sse import MCPServer
from trio_mcp_sse._broker import MemoryBroker
from trio_mcp_sse.client import open_session
from trio_mcp_sse.server import Context
from trio_mcp_sse.testing import open_http_transport


def make_server() -> MCPServer:
    server = MCPServer("broker-test")

    @server.tool()
    async def echo(text: str) -> str:
        return text

    @server.tool()
    async def count(n: int, ctx: Context) -> str:
        for i in range(n):
            await ctx.report_progress(i + 1, n)
        return f"counted {n}"

    return server


class RoundRobin(httpx.AsyncBaseTransport):
    """Every request to the next worker: no stickiness at all."""

    def __init__(self, workers: Sequence[httpx.AsyncBaseTransport]) -> None:
        self._next = itertools.cycle(workers)
        self.seen: list[int] = []
        self._workers = list(workers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        worker = next(self._next)
        self.seen.append(self._workers.index(worker))
        return await worker.handle_async_request(request)


@asynccontextmanager
async def cluster(broker: MemoryBroker, workers: int = 2) -> AsyncIterator[tuple[list[Any], httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        apps = [make_server().http_app(broker=broker) for _ in range(workers)]
        transports = [await stack.enter_async_context(open_http_transport(app)) for app in apps]
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=RoundRobin(transports), base_url="http://testserver")
        )
        yield apps, client


async def test_streamable_calls_reach_the_owner_from_any_worker() -> None:
    broker = MemoryBroker()
    async with cluster(broker) as (apps, http):
        async with open_session("http://testserver/mcp", transport="streamable-http", protocol="handshake", http_client=http) as session:
            for i in range(10):
                result = await session.call_tool("echo", {"text": f"hi {i}"})
                assert result.content[0].text == f"hi {i}"
            progress: list[float] = []

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                progress.append(done)

            result = await session.call_tool("count", {"n": 3}, progress=on_progress)
            assert result.content[0].text == "counted 3"
            assert progress == [1, 2, 3]
        hosts = [app.extensions["trio_mcp_sse"].host for app in apps]
        assert sum(h.metrics.forwarded_out for h in hosts) >= 5
        assert sum(h.metrics.forwarded_in for h in hosts) >= 5


async def test_sse_posts_reach_the_owner_from_any_worker() -> None:
    broker = MemoryBroker()
    async with cluster(broker) as (apps, http):
        async with open_session("http://testserver/sse", transport="sse", http_client=http) as session:
            for i in range(10):
                result = await session.call_tool("echo", {"text": f"hi {i}"})
                assert result.content[0].text == f"hi {i}"
