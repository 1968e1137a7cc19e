"""Plain ``hypercorn --worker-class trio --workers 2``: the workers join the broker named by the environment."""

from __future__ import annotations

import re

import httpx
import pytest
import trio

from trio_mcp_sse.client import open_session

from .e2e_support import hypercorn_argv, running_server

pytestmark = pytest.mark.e2e


async def test_plain_hypercorn_workers_share_sessions_through_the_environments_broker(redis_url: str) -> None:
    argv = hypercorn_argv("examples.echo_server:app", "--workers", "2")
    async with running_server(argv, env={"TRIO_MCP_SSE_BROKER": redis_url}) as server:
        with trio.fail_after(60):
            while len(re.findall(r"worker \S+ joined the session broker", server.log)) < 2:
                await trio.sleep(0.05)
            # A new connection per request: the kernel spreads them over both workers, so
            # about half of each session's requests reach the worker that does not hold it.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                for kind, path in (("streamable-http", "/mcp"), ("sse", "/sse")):
                    async with trio.open_nursery() as nursery:
                        for n in range(5):

                            async def one_session(n: int = n, kind: str = kind, path: str = path) -> None:
                                async with open_session(f"{server.url}{path}", transport=kind, protocol="handshake", http_client=http) as session:
                                    for i in range(10):
                                        result = await session.call_tool("echo", {"text": f"{kind} {n}.{i}"})
                                        assert result.content[0].text == f"{kind} {n}.{i}"

                            nursery.start_soon(one_session)
