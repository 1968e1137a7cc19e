"""Plain ``hypercorn --worker-class trio --workers 2``: the workers join the broker named by the environment."""

from __future__ import annotations

import re

import coredis
import httpx
import pytest
import trio

from trio_mcp_sse.client import open_session

from .e2e_support import hypercorn_argv, open_sse, post_json, read_until, running_server

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


async def publishes(redis: coredis.Redis[bytes]) -> int:
    stats = await redis.info("commandstats")
    entry = stats.get("cmdstat_publish") or {}
    return int(entry.get("calls", 0)) if isinstance(entry, dict) else 0


async def test_a_forwarded_post_costs_two_publishes_and_nothing_more(redis_url: str) -> None:
    """The request to the owner's mailbox, the owner's whole ``202`` back: the Redis bill of a forwarded message."""
    app = "examples.echo_server:app"
    env = {"TRIO_MCP_SSE_BROKER": redis_url}
    async with (
        running_server(hypercorn_argv(app), env=env) as owner,
        running_server(hypercorn_argv(app), env=env) as other,
        coredis.Redis.from_url(redis_url, decode_responses=True) as redis,
    ):
        with trio.fail_after(60):
            while "joined the session broker" not in owner.log or "joined the session broker" not in other.log:
                await trio.sleep(0.05)
            stream, buffer, endpoint = await open_sse(owner.port)
            async with stream:
                init = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
                }
                assert b" 202 " in await post_json(owner.port, endpoint, init)
                before = await publishes(redis)
                calls = 10
                for i in range(calls):
                    ping = {"jsonrpc": "2.0", "id": 10 + i, "method": "ping"}
                    assert (await post_json(other.port, endpoint, ping)).startswith(b"HTTP/1.1 202 ")
                    await read_until(stream, buffer, f'"id":{10 + i}'.encode())
                await trio.sleep(0.5)  # a late message would be counted too
                assert await publishes(redis) - before == 2 * calls
