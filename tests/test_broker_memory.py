"""Sessions across workers in one process: two apps joined by a MemoryBroker, a client balanced across them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
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
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return f"slept {seconds:g}s"

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
    async with (
        cluster(broker) as (_apps, http),
        open_session("http://testserver/sse", transport="sse", http_client=http) as session,
    ):
        for i in range(10):
            result = await session.call_tool("echo", {"text": f"hi {i}"})
            assert result.content[0].text == f"hi {i}"


# -- raw HTTP against chosen workers ------------------------------------------------------------------
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@asynccontextmanager
async def workers(broker: MemoryBroker, count: int = 2, **app_options: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per worker, so a test says where each request lands."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            transport = await stack.enter_async_context(open_http_transport(make_server().http_app(broker=broker, **app_options)))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver")))
        yield clients


async def initialize(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    response = await client.post("/mcp", json=INIT, headers={**HEADERS, **(headers or {})})
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await client.post("/mcp", json=done, headers={**HEADERS, **(headers or {}), "mcp-session-id": session_id})).status_code == 202
    return session_id


def echo_call(call_id: int, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}


async def test_a_forwarded_request_is_answered_by_the_owner_in_its_own_response_mode() -> None:
    async with workers(MemoryBroker(), response_mode="json") as (first, second):
        session_id = await initialize(first)
        response = await second.post("/mcp", json=echo_call(2, "there"), headers={**HEADERS, "mcp-session-id": session_id})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json()["result"]["content"] == [{"type": "text", "text": "there"}]


async def test_a_long_answer_is_acknowledged_before_it_starts(autojump_clock: trio.abc.Clock) -> None:
    """In JSON mode nothing of the answer moves until the tool returns: the owner says it took the request."""
    async with workers(MemoryBroker(), response_mode="json") as (first, second):
        session_id = await initialize(first)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 60}}}
        response = await second.post("/mcp", json=call, headers={**HEADERS, "mcp-session-id": session_id}, timeout=120)
        assert response.status_code == 200
        assert response.json()["result"]["content"] == [{"type": "text", "text": "slept 60s"}]


async def test_a_forwarded_call_costs_two_frames_over_the_broker() -> None:
    """The request, and its whole answer in one frame (which also acknowledges it): nothing else."""
    broker = MemoryBroker()
    async with workers(broker, response_mode="json") as (first, second):
        session_id = await initialize(first)
        headers = {**HEADERS, "mcp-session-id": session_id}
        before = broker.frames_delivered
        assert (await second.post("/mcp", json=echo_call(2, "x"), headers=headers)).status_code == 200
        done = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
        assert (await second.post("/mcp", json=done, headers=headers)).status_code == 202
        await trio.sleep(0.5)  # anything sent late would be counted too
        assert broker.frames_delivered - before == 4


async def test_an_unknown_session_is_404_on_every_worker() -> None:
    async with workers(MemoryBroker()) as (first, second):
        await initialize(first)
        for client in (first, second):
            response = await client.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": "0" * 32})
            assert response.status_code == 404
            assert response.json()["error"]["message"] == "Could not find session"


async def test_another_principal_cannot_use_a_session_through_another_worker() -> None:
    from trio_mcp_sse import AuthSettings, StaticTokens

    auth = AuthSettings(verify_token=StaticTokens({"alice-token": "alice", "bob-token": "bob"}))
    async with workers(MemoryBroker(), auth=auth) as (first, second):
        alice = {"authorization": "Bearer alice-token"}
        session_id = await initialize(first, alice)
        as_bob = {**HEADERS, "authorization": "Bearer bob-token", "mcp-session-id": session_id}
        assert (await second.post("/mcp", json=echo_call(2, "x"), headers=as_bob)).status_code == 404
        as_alice = {**HEADERS, **alice, "mcp-session-id": session_id}
        response = await second.post("/mcp", json=echo_call(3, "x"), headers=as_alice)
        assert response.status_code == 200


async def test_sse_post_through_another_worker_is_202_once_the_owner_queued_it() -> None:
    broker = MemoryBroker()
    async with workers(broker) as (first, second), first.stream("GET", "/sse") as stream:
        lines = stream.aiter_lines()
        endpoint = None
        async for line in lines:
            if line.startswith("data: "):
                endpoint = line.removeprefix("data: ")
                break
        assert endpoint is not None and "session_id=" in endpoint
        init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2025-03-26"}}
        response = await second.post(endpoint, json=init, headers={"content-type": "application/json"})
        assert response.status_code == 202
        assert response.content == b""
        async for line in lines:
            if line.startswith("data: "):
                assert '"id":1' in line and "protocolVersion" in line
                break


async def test_a_dead_owner_gives_404_within_the_worker_ttl(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker()
    async with workers(broker, 1) as (survivor,):
        async with AsyncExitStack() as doomed_stack:
            app = make_server().http_app(broker=broker)
            transport = await doomed_stack.enter_async_context(open_http_transport(app))
            doomed = await doomed_stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            session_id = await initialize(doomed)
            owner = broker.owner_of(session_id)
            assert owner == app.extensions["trio_mcp_sse"].host.link.worker_id
            broker.kill(owner)  # its connection to the broker closes, as a killed process's would
            doomed_stack.push_async_callback(trio.lowlevel.checkpoint)
        # The owner's liveness key still runs for worker_ttl: "retry", never a hang.
        started = trio.current_time()
        statuses = []
        while True:
            response = await survivor.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": session_id})
            statuses.append(response.status_code)
            if response.status_code == 404:
                break
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            await trio.sleep(0.5)
        assert trio.current_time() - started <= broker.settings.worker_ttl + 1
        assert statuses[0] == 503 and statuses[-1] == 404
        assert broker.owner_of(session_id) is None


async def test_a_stopping_worker_releases_its_sessions_before_its_shutdown_completes() -> None:
    """Closed on shutdown, released at once: the other workers answer 404, not 503 until a liveness key expires."""
    broker = MemoryBroker()
    app = make_server().http_app(broker=broker)
    async with open_http_transport(app) as transport, httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        session_id = await initialize(client)
        assert broker.owner_of(session_id) == app.extensions["trio_mcp_sse"].host.link.worker_id
        await app.extensions["trio_mcp_sse"].host.close_all_sessions()  # what the lifespan's shutdown runs first
        assert broker.owner_of(session_id) is None  # no heartbeat in between: this test takes milliseconds


async def test_broker_down_fails_new_sessions_and_forwards_fast_but_keeps_local_traffic(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker()
    async with workers(broker) as (first, second):
        session_id = await initialize(first)
        broker.available = False
        response = await first.post("/mcp", json=INIT, headers=HEADERS)
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "Session broker unavailable; retry later"
        forwarded = await second.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": session_id})
        assert forwarded.status_code == 503
        local = await first.post("/mcp", json=echo_call(3, "still here"), headers={**HEADERS, "mcp-session-id": session_id})
        assert local.status_code == 200 and "still here" in local.text
        broker.available = True
        await trio.sleep(broker.settings.heartbeat_interval * 2)
        again = await second.post("/mcp", json=echo_call(4, "back"), headers={**HEADERS, "mcp-session-id": session_id})
        assert again.status_code == 200 and "back" in again.text
        assert (await first.post("/mcp", json=INIT, headers=HEADERS)).status_code == 200


async def test_the_session_cap_holds_across_workers(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker(max_sessions=2)
    async with workers(broker) as (first, second):
        one = await initialize(first)
        await initialize(second)
        refused = await first.post("/mcp", json=INIT, headers=HEADERS)
        assert refused.status_code == 503
        assert refused.json()["error"]["message"] == "Too many sessions; retry later"
        # Ending a session (through the other worker) frees its place at the next heartbeat.
        assert (await second.delete("/mcp", headers={**HEADERS, "mcp-session-id": one})).status_code == 200
        await trio.sleep(broker.settings.heartbeat_interval * 2)
        assert broker.cluster_sessions() == 1
        await initialize(second)


async def test_a_client_leaving_a_forwarded_stream_ends_it_at_the_owner(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker()
    async with workers(broker) as (first, second):
        session_id = await initialize(first)
        async with second.stream("GET", "/mcp", headers={**HEADERS, "mcp-session-id": session_id}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        await trio.sleep(1)
        # The owner's standalone stream is free again: a new GET through either worker gets it.
        async with first.stream("GET", "/mcp", headers={**HEADERS, "mcp-session-id": session_id}) as again:
            assert again.status_code == 200


def test_workers_share_the_request_state_secret_through_the_environment(monkeypatch: Any) -> None:
    """A 2026-07-28 retry carrying requestState may reach any worker: every worker must open what another sealed."""
    from trio_mcp_sse.server import RequestStateKey

    monkeypatch.setenv("TRIO_MCP_SSE_REQUEST_STATE_SECRET", "one secret for the whole deployment")
    sealed = RequestStateKey().seal("tools/call:ask", {"q": {"action": "accept"}})
    assert RequestStateKey().open(sealed, "tools/call:ask") == {"q": {"action": "accept"}}
    monkeypatch.delenv("TRIO_MCP_SSE_REQUEST_STATE_SECRET")
    with pytest.raises(Exception, match="requestState"):
        RequestStateKey().open(sealed, "tools/call:ask")


async def test_a_broker_outage_ends_forwarded_streams_instead_of_leaving_them_hanging(autojump_clock: trio.abc.Clock) -> None:
    """Frames may be lost while the broker is away; the stream ends, its client resumes or reconnects."""
    broker = MemoryBroker()
    async with workers(broker) as (first, second):
        session_id = await initialize(first)
        started = trio.current_time()
        async with second.stream("GET", "/mcp", headers={**HEADERS, "mcp-session-id": session_id}) as stream:
            assert stream.status_code == 200
            broker.available = False
            async for _ in stream.aiter_raw():
                pass  # until the receiving worker ends it
        assert trio.current_time() - started <= 2 * broker.settings.heartbeat_interval + 1
        broker.available = True
        await trio.sleep(2 * broker.settings.heartbeat_interval)
        # The owner let its side go too: the session's standalone stream is free again.
        async with second.stream("GET", "/mcp", headers={**HEADERS, "mcp-session-id": session_id}) as again:
            assert again.status_code == 200



def test_an_exchange_ending_before_its_owner_took_it_stops_waiting_for_the_acknowledgement() -> None:
    """A broker outage or a dead owner is the answer at once, not after the whole ack_timeout."""
    from trio_mcp_sse._broker import _BROKER_LOST, _Outgoing

    outgoing = _Outgoing(4)
    outgoing.push(_BROKER_LOST)
    assert outgoing.acked.is_set()
    assert outgoing.receive_nowait() == _BROKER_LOST
