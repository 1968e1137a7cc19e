"""The Redis broker against a real redis-server: workers in one process, each with its own connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import coredis
import httpx
import trio

from trio_mcp_sse import RedisBroker
from trio_mcp_sse.client import open_session
from trio_mcp_sse.testing import open_http_transport

from .redis_server import RedisServer
from .test_broker_memory import HEADERS, INIT, RoundRobin, echo_call, initialize, make_server

BOUND = 30  # seconds: every test ends within this, Redis restarts included


@asynccontextmanager
async def redis_workers(url: str, count: int = 2, **settings: Any) -> AsyncIterator[tuple[list[Any], list[httpx.AsyncClient]]]:
    async with AsyncExitStack() as stack:
        apps, clients = [], []
        for _ in range(count):
            app = make_server().http_app(broker=RedisBroker(url, **settings))
            transport = await stack.enter_async_context(open_http_transport(app))
            apps.append(app)
            clients.append(await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver")))
        yield apps, clients


def link_of(app: Any) -> Any:
    return app.extensions["trio_mcp_sse"].host.link


async def test_official_client_calls_balanced_across_two_workers(redis_url: str) -> None:
    with trio.fail_after(BOUND):
        async with AsyncExitStack() as stack:
            apps = [make_server().http_app(broker=RedisBroker(redis_url)) for _ in range(2)]
            transports = [await stack.enter_async_context(open_http_transport(app)) for app in apps]
            http = await stack.enter_async_context(httpx.AsyncClient(transport=RoundRobin(transports), base_url="http://testserver"))
            for kind, path in (("streamable-http", "/mcp"), ("sse", "/sse")):
                async with open_session(f"http://testserver{path}", transport=kind, protocol="handshake", http_client=http) as session:
                    for i in range(20):
                        result = await session.call_tool("echo", {"text": f"{kind} {i}"})
                        assert result.content[0].text == f"{kind} {i}"
            assert sum(app.extensions["trio_mcp_sse"].host.metrics.forwarded_out for app in apps) >= 20
            assert all(not link_of(app).metrics.forward_failures for app in apps)


async def test_every_key_has_the_prefix_and_a_ttl(redis_url: str) -> None:
    with trio.fail_after(BOUND):
        async with redis_workers(redis_url + "?prefix=tenant-a", 1) as (apps, (client,)):
            session_id = await initialize(client)
            await trio.sleep(1.5)  # a heartbeat
            worker = link_of(apps[0]).worker_id
            redis = coredis.Redis.from_url(redis_url, decode_responses=True)
            async with redis:
                keys = sorted(await redis.keys("*"))
                assert keys == sorted([f"tenant-a:session:{session_id}", "tenant-a:sessions", f"tenant-a:worker:{worker}"])
                for key in keys:
                    assert 0 < await redis.pttl(key) <= 30_000
                assert await redis.get(f"tenant-a:session:{session_id}") == worker
                assert link_of(apps[0]).cluster_sessions == 1


async def test_closed_sessions_are_released_at_the_next_heartbeat(redis_url: str) -> None:
    with trio.fail_after(BOUND):
        async with redis_workers(redis_url, 2) as (apps, (first, second)):
            one = await initialize(first)
            two = await initialize(second)
            await trio.sleep(1.5)
            assert link_of(apps[0]).cluster_sessions == 2
            response = await second.delete("/mcp", headers={**HEADERS, "mcp-session-id": one})
            assert response.status_code == 200
            await trio.sleep(2.5)
            assert {link_of(app).cluster_sessions for app in apps} == {1}
            assert (await first.post("/mcp", json=echo_call(5, "x"), headers={**HEADERS, "mcp-session-id": one})).status_code == 404
            assert (await first.post("/mcp", json=echo_call(6, "y"), headers={**HEADERS, "mcp-session-id": two})).status_code == 200


async def test_redis_stopped_then_restarted(restartable_redis: RedisServer) -> None:
    """Down: new sessions and forwards get 503 fast, local traffic goes on.  Back: all of it works
    again without restarting a worker, the keys lost with the old server's memory re-created."""
    with trio.fail_after(BOUND):
        async with redis_workers(restartable_redis.url, 2) as (apps, (first, second)):
            session_id = await initialize(first)
            on_first = {**HEADERS, "mcp-session-id": session_id}
            restartable_redis.stop()
            with trio.fail_after(5):  # "fast": a refused connection, not a timeout
                refused = await second.post("/mcp", json=INIT, headers=HEADERS)
                forwarded = await second.post("/mcp", json=echo_call(2, "x"), headers=on_first)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert forwarded.status_code == 503
            local = await first.post("/mcp", json=echo_call(3, "local"), headers=on_first)
            assert local.status_code == 200 and "local" in local.text
            await trio.sleep(1.5)
            assert not link_of(apps[0]).up
            restartable_redis.start()  # empty: every key is gone
            while True:
                response = await second.post("/mcp", json=echo_call(4, "back"), headers=on_first)
                if response.status_code == 200:
                    break
                assert response.status_code in (404, 503)
                await trio.sleep(0.25)
            assert "back" in response.text
            assert link_of(apps[0]).up and link_of(apps[1]).up
            assert (await second.post("/mcp", json=INIT, headers=HEADERS)).status_code == 200
            # Nothing of the outage is left behind: no exchange waits for an answer that will not come.
            for app in apps:
                assert not link_of(app)._outgoing and not link_of(app)._incoming
