"""Streamable HTTP against real hypercorn: every refusal's exact answer, and 1,000 sessions leave nothing.

Real loopback sockets and the real clock; each test has an absolute ``trio.fail_after`` bound.
The server is ``tests/apps/streamable_app.py`` in a ``hypercorn --worker-class trio`` subprocess.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
import trio

from .e2e_support import ServerProcess, hypercorn_argv, running_server, server_state

pytestmark = pytest.mark.e2e

APP = "tests.apps.streamable_app:app"
BOTH = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}},
}
BODY_LIMIT = 4096


def post_headers(session_id: str | None = None, *, accept: str = BOTH, **extra: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": accept}
    if session_id is not None:
        headers["mcp-session-id"] = session_id
        headers["mcp-protocol-version"] = "2025-11-25"
    headers.update({key.replace("_", "-"): value for key, value in extra.items()})
    return headers


async def open_session(client: httpx.AsyncClient, url: str, **extra: str) -> str:
    """initialize + initialized; the session id."""
    response = await client.post(url, content=orjson.dumps(INITIALIZE), headers=post_headers(**extra))
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    initialized = await client.post(
        url,
        content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        headers=post_headers(session_id, **extra),
    )
    assert (initialized.status_code, initialized.content) == (202, b"")
    return session_id


@dataclass
class Row:
    """One refusal: the request, and the exact answer."""

    name: str
    method: str
    status: int
    code: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    session: str | None = None
    """Which session id the request carries: "live", "deleted", "alice", "unknown" or none."""
    request_headers: Mapping[str, str] = field(default_factory=dict)
    answer_headers: Mapping[str, str] = field(default_factory=dict)


CALL = orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
JSON_ONLY = {"content-type": "application/json"}

# In intake order (docs/security.md), then what is decided after the table.
ROWS = [
    Row("PUT", "PUT", 405, -32000, "Method not allowed", answer_headers={"allow": "GET, POST, DELETE"}, body=CALL),
    Row("PATCH", "PATCH", 405, -32000, "Method not allowed", answer_headers={"allow": "GET, POST, DELETE"}, body=CALL),
    Row("declared body over the limit", "POST", 413, -32000, "Request body too large",
        body=b"{" + b" " * BODY_LIMIT + b"}", request_headers=JSON_ONLY | {"accept": BOTH}),
    Row("Host not allowed", "POST", 421, -32000, "Host not allowed", body=CALL,
        request_headers={"host": "evil.example.com", **JSON_ONLY, "accept": BOTH}),
    Row("Origin not allowed", "POST", 403, -32000, "Origin not allowed", body=CALL,
        request_headers={"origin": "http://evil.example.com", **JSON_ONLY, "accept": BOTH}),
    Row("invalid bearer token", "POST", 401, -32000, "Invalid or expired token", body=CALL,
        request_headers={"authorization": "Bearer nope", **JSON_ONLY, "accept": BOTH}),
    Row("Content-Type text/plain", "POST", 415, -32000, "Content-Type must be application/json", body=CALL,
        request_headers={"content-type": "text/plain", "accept": BOTH}),
    Row("no Content-Type", "POST", 415, -32000, "Content-Type must be application/json", body=CALL,
        request_headers={"accept": BOTH}),
    Row("unsupported MCP-Protocol-Version", "POST", 400, -32600, "Unsupported MCP-Protocol-Version", body=CALL,
        session="live", request_headers={**JSON_ONLY, "accept": BOTH, "mcp-protocol-version": "1999-01-01"}),
    Row("parse error", "POST", 400, -32700, "Invalid JSON-RPC message: Parse error", body=b'{"jsonrpc": ',
        session="live", request_headers={**JSON_ONLY, "accept": BOTH}),
    Row("batch", "POST", 400, -32600,
        "Invalid JSON-RPC message: Invalid request: JSON-RPC batches are not supported; send one message per POST",
        body=b"[" + CALL + b"]", session="live", request_headers={**JSON_ONLY, "accept": BOTH}),
    Row("no session id on a request", "POST", 400, -32600, "Missing Mcp-Session-Id header", body=CALL,
        request_headers={**JSON_ONLY, "accept": BOTH}),
    Row("no session id on a notification", "POST", 400, -32600, "Missing Mcp-Session-Id header",
        body=b'{"jsonrpc":"2.0","method":"notifications/initialized"}', request_headers={**JSON_ONLY, "accept": BOTH}),
    Row("unknown session", "POST", 404, -32000, "Could not find session", body=CALL, session="unknown",
        request_headers={**JSON_ONLY, "accept": BOTH}),
    Row("deleted session", "POST", 404, -32000, "Could not find session", body=CALL, session="deleted",
        request_headers={**JSON_ONLY, "accept": BOTH}),
    Row("another principal's session", "POST", 404, -32000, "Could not find session", body=CALL, session="alice",
        request_headers={**JSON_ONLY, "accept": BOTH, "authorization": "Bearer bob-token"}),
    Row("POST accepting neither type", "POST", 406, -32000,
        "Accept must list the media types of the response (application/json, text/event-stream)",
        body=CALL, session="live", request_headers={**JSON_ONLY, "accept": "text/html"}),
    Row("GET without text/event-stream", "GET", 406, -32000,
        "Accept must list the media types of the response (application/json, text/event-stream)",
        session="live", request_headers={"accept": "application/json"}),
    Row("GET without a session id", "GET", 400, -32600, "Missing Mcp-Session-Id header",
        request_headers={"accept": "text/event-stream"}),
    Row("GET of an unknown session", "GET", 404, -32000, "Could not find session", session="unknown",
        request_headers={"accept": "text/event-stream"}),
    Row("GET of another principal's session", "GET", 404, -32000, "Could not find session", session="alice",
        request_headers={"accept": "text/event-stream", "authorization": "Bearer bob-token"}),
    Row("DELETE without a session id", "DELETE", 400, -32600, "Missing Mcp-Session-Id header"),
    Row("DELETE of a deleted session", "DELETE", 404, -32000, "Could not find session", session="deleted"),
    Row("DELETE of another principal's session", "DELETE", 404, -32000, "Could not find session", session="alice",
        request_headers={"authorization": "Bearer bob-token"}),
]


def assert_refusal(row: Row, response: httpx.Response) -> None:
    where = f"{row.name}: {response.status_code} {response.text!r}"
    assert response.status_code == row.status, where
    assert response.headers["content-type"] == "application/json", where
    assert response.headers["cache-control"] == "no-store", where
    assert "mcp-session-id" not in response.headers, where
    body = response.json()
    assert set(body) == {"jsonrpc", "error"}, where  # no id
    assert body["jsonrpc"] == "2.0", where
    assert body["error"]["code"] == row.code, where
    if row.code == -32700:
        assert body["error"]["message"].startswith(row.message), where
    else:
        assert body["error"] == {"code": row.code, "message": row.message}, where
    for name, value in row.answer_headers.items():
        assert response.headers.get(name) == value, where


async def test_every_refusal_has_its_status_and_a_json_rpc_error_without_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_SESSIONS", "3")
    monkeypatch.setenv("MAX_BODY", str(BODY_LIMIT))
    with trio.fail_after(60):
        async with running_server(hypercorn_argv(APP)) as server:
            url = f"{server.url}/mcp"
            async with httpx.AsyncClient(timeout=10) as client:
                sessions = {
                    "live": await open_session(client, url),
                    "alice": await open_session(client, url, authorization="Bearer alice-token"),
                    "deleted": await open_session(client, url),
                    "unknown": "0123456789abcdef" * 2,
                }
                deleted = await client.delete(url, headers={"mcp-session-id": sessions["deleted"]})
                assert deleted.status_code == 200
                for row in ROWS:
                    headers = dict(row.request_headers)
                    if row.session is not None:
                        headers.setdefault("mcp-protocol-version", "2025-11-25")
                        headers["mcp-session-id"] = sessions[row.session]
                    response = await client.request(row.method, url, content=row.body, headers=headers)
                    assert_refusal(row, response)

                # A body without a Content-Length, over the limit while it streams: 413 as well.
                async def chunks() -> AsyncIterator[bytes]:
                    yield b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"pad":"'
                    for _ in range(8):
                        yield b"x" * 1024
                    yield b'"}}'

                streamed = await client.post(
                    url, content=chunks(), headers=post_headers(sessions["live"])
                )
                assert "content-length" not in streamed.request.headers
                assert_refusal(Row("streamed body over the limit", "POST", 413, -32000, "Request body too large"), streamed)

                # The session cap (3): the third session fits, a fourth gets 503 with Retry-After.
                await open_session(client, url)
                refused = await client.post(url, content=orjson.dumps(INITIALIZE), headers=post_headers())
                assert_refusal(
                    Row("session cap", "POST", 503, -32000, "Too many sessions; retry later",
                        answer_headers={"retry-after": "5"}),
                    refused,
                )
                # The live sessions are unharmed by all of the above.
                ping = await client.post(
                    url, content=b'{"jsonrpc":"2.0","id":9,"method":"ping"}', headers=post_headers(sessions["live"], accept="application/json")
                )
                assert ping.status_code == 200
                assert ping.json() == {"jsonrpc": "2.0", "id": 9, "result": {}}
                state = await server_state(server)
                assert state["sessions"] == 3
        assert "Traceback" not in server.log, server.log


async def one_cycle(client: httpx.AsyncClient, url: str, index: int) -> None:
    """initialize, initialized, tools/call (answered on an event stream), DELETE."""
    session_id = await open_session(client, url)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": f"n{index}"}}}
    response = await client.post(url, content=orjson.dumps(call), headers=post_headers(session_id))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert f'"id":2,"result":{{"content":[{{"type":"text","text":"n{index}"}}]}}'.encode() in response.content
    deleted = await client.delete(url, headers={"mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"})
    assert deleted.status_code == 200


async def settle(server: ServerProcess, baseline_tasks: int | None = None) -> dict[str, int]:
    """Wait until no session is left (and the task count is back, when given)."""
    with trio.fail_after(20):
        while True:
            state = await server_state(server)
            if state["sessions"] == 0 and (baseline_tasks is None or state["tasks"] <= baseline_tasks):
                return state
            await trio.sleep(0.05)


# Keep-alive, on both sides, so that the connections the task counts include stay the same ones:
# - hypercorn closes a connection idle for its keep-alive timeout whatever the client is doing then,
#   and httpx's own expiry defaulted to the same 5 s, counted from later (when it has read the
#   answer).  A connection idle for about 5 s could so be reused just as the server closed it: the
#   POST failed with "Server disconnected without sending a response".  The client must give a
#   connection up well before the server may close it: its expiry is half the server's timeout.
# - One shared pool hands each request to its first idle connection, so a few connections served
#   nearly everything and the rest idled for seconds and expired, or were replaced, at random: how
#   many connections (two server tasks each) a count included was down to timing.  Each lane here
#   is a client of its own with one connection, used back to back, idle only between rounds.
# - Stock hypercorn keeps the tasks of a connection the client closed until its keep-alive timer
#   runs out (KEEP_ALIVE after its last answer): the final settle's 20 s must outlast that.
KEEP_ALIVE = 10  # hypercorn's --keep-alive takes whole seconds
CLIENT_KEEPALIVE_EXPIRY = KEEP_ALIVE / 2
LANES = 20


async def test_a_thousand_sessions_opened_used_and_deleted_leave_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    async with running_server(hypercorn_argv(APP, "--keep-alive", str(KEEP_ALIVE))) as server:
        url = f"{server.url}/mcp"
        cycles_done = 0
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=CLIENT_KEEPALIVE_EXPIRY)
        async with AsyncExitStack() as clients_open:
            clients = [
                await clients_open.enter_async_context(httpx.AsyncClient(timeout=10, limits=limits)) for _ in range(LANES)
            ]

            async def run_cycles(count: int) -> None:
                nonlocal cycles_done
                indexes = iter(range(cycles_done, cycles_done + count))

                async def lane(client: httpx.AsyncClient) -> None:
                    for index in indexes:  # shared: each lane takes the next cycle when it is free
                        await one_cycle(client, url, index)

                async with trio.open_nursery() as nursery:
                    for client in clients:
                        nursery.start_soon(lane, client)
                cycles_done += count

            with trio.fail_after(90):
                idle = await settle(server)
                await run_cycles(200)  # warm-up: imports, caches, allocator arenas
                baseline = await settle(server)
                samples = [(cycles_done, baseline["rss"])]
                for _ in range(4):
                    await run_cycles(200)
                    state = await settle(server, baseline["tasks"])
                    samples.append((cycles_done, state["rss"]))
        # The lanes' connections are closed now: the server is back to idle once each one's keep-alive
        # timer has run out, at most KEEP_ALIVE from now.
        with trio.fail_after(20):
            closed = await settle(server, idle["tasks"])
    assert cycles_done == 1000
    assert state["tasks"] == baseline["tasks"]
    assert closed["tasks"] == idle["tasks"]
    assert "Traceback" not in server.log, server.log
    xs = [x for x, _ in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(y for _, y in samples) / len(samples)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in samples) / sum((x - mean_x) ** 2 for x in xs)
    with capsys.disabled():
        print(
            f"\nstreamable leak test: tasks {idle['tasks']} idle, {baseline['tasks']} -> {state['tasks']} with the "
            f"client's connections open, {closed['tasks']} after; RSS by cycle: "
            + ", ".join(f"{x}: {y / 2**20:.1f} MiB" for x, y in samples)
            + f"; slope {slope:.0f} B/cycle"
        )
    # A session that leaked even its smallest object graph would cost well over 2 KB.
    assert slope < 2048, samples

