"""Hostile input: every bad request gets its documented answer, and a healthy session beside it
never notices.  Plus property-based fuzzing of the POST intake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_mcp_sse import MCPServer, SecuritySettings
from trio_mcp_sse.testing import ASGITestClient, EventStream, run_asgi_app
from trio_mcp_sse.testing._asgi import make_scope

from .test_transport import HOST, JSON, session_id_of

LIMIT = 64 * 1024


def make_server() -> MCPServer:
    server = MCPServer("hostile")

    @server.tool
    async def echo(text: str) -> str:
        return text

    return server


@dataclass
class World:
    h: ASGITestClient
    healthy: EventStream
    healthy_sid: str
    fresh: EventStream  # opened, never initialized
    fresh_sid: str
    victim: EventStream  # initialized, takes the abuse
    victim_sid: str


async def initialize(h: ASGITestClient, stream: EventStream, sid: str) -> None:
    params = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    body = json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": params}).encode()
    assert (await post_to(h, sid, body)).status == 202
    assert (await stream.next_message())["id"] == "init"
    assert (await post_to(h, sid, b'{"jsonrpc":"2.0","method":"notifications/initialized"}')).status == 202


async def post_to(h: ASGITestClient, sid: str, body: bytes | list[bytes], headers: Any = (HOST, JSON), query: str | None = None) -> Any:
    return await h.request(
        "POST", "/messages/", query=f"session_id={sid}" if query is None else query, headers=headers, body=body
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    transport = make_server().sse_transport(security=SecuritySettings(max_body_size=LIMIT, body_budget=LIMIT))
    async with run_asgi_app(transport) as h, h.stream() as healthy, h.stream() as fresh, h.stream() as victim:
        sids = [session_id_of(await s.endpoint()) for s in (healthy, fresh, victim)]
        await initialize(h, healthy, sids[0])
        await initialize(h, victim, sids[2])
        yield World(h, healthy, sids[0], fresh, sids[1], victim, sids[2])


def rpc(method: str, params: Any = None, id: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


# (name, body parts sent before the client stalls or ends, ends, body bytes held by other
#  requests, status, extra header the answer must carry)
SLOW_BODY_CASES: list[tuple[str, list[bytes], bool, int, int, tuple[str, str] | None]] = [
    ("stalls after the head", [], False, 0, 408, ("connection", "close")),
    ("stalls mid-body", [b'{"jsonrpc":'], False, 0, 408, ("connection", "close")),
    ("trickles and stalls", [b"{", b'"', b"j"], False, 0, 408, ("connection", "close")),
    ("body budget held by other requests", [rpc("ping")], True, LIMIT, 503, ("retry-after", "1")),
    ("budget nearly held, small body fits", [rpc("ping")], True, LIMIT - 100, 202, None),
]


@pytest.mark.parametrize(
    ("name", "parts", "ends", "held", "status", "header"), SLOW_BODY_CASES, ids=[c[0] for c in SLOW_BODY_CASES]
)
async def test_slow_and_budgeted_bodies(
    autojump_clock: trio.testing.MockClock,
    world: World,
    name: str,
    parts: list[bytes],
    ends: bool,
    held: int,
    status: int,
    header: tuple[str, str] | None,
) -> None:
    transport = world.h.app
    budget = transport.body_limits.budget
    assert budget.take(held)
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    if ends:
        messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await trio.sleep_forever()  # the client stalls (the deadline is what ends this)
        raise AssertionError

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    scope = make_scope("POST", "/messages/", query=f"session_id={world.victim_sid}", headers=(HOST, JSON))
    start = trio.current_time()
    with trio.fail_after(60):
        await transport(scope, receive, send)
    budget.give_back(held)
    assert sent[0]["status"] == status
    if status == 408:
        assert trio.current_time() - start == SecuritySettings().body_timeout
    if header is not None:
        assert (header[0].encode(), header[1].encode()) in sent[0]["headers"]
    assert budget.in_use == 0
    await assert_unaffected(world)


# (name, body, status, JSON-RPC error code expected on the victim's stream or None)
BODY_CASES: list[tuple[str, bytes | list[bytes], int, int | None]] = [
    ("malformed json", b"{", 400, -32700),
    ("truncated json", b'{"jsonrpc":"2.0","id":1,"method":"ping"', 400, -32700),
    ("empty body", b"", 400, -32700),
    ("trailing garbage", b'{"jsonrpc":"2.0","id":1,"method":"ping"} x', 400, -32700),
    ("invalid utf-8", b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}', 400, -32700),
    ("utf-8 bom", b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}', 400, -32700),
    ("deeply nested", b"[" * 20_000 + b"]" * 20_000, 400, -32700),
    ("NaN", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', 400, -32700),
    ("json null", b"null", 400, -32600),
    ("json number", b"1e3", 400, -32600),
    ("json string", b'"ping"', 400, -32600),
    ("empty batch", b"[]", 400, -32600),
    ("batch", b"[" + rpc("ping") + b"," + rpc("ping", id=2) + b"]", 400, -32600),
    ("no jsonrpc member", b'{"id":1,"method":"ping"}', 400, -32600),
    ("wrong jsonrpc version", b'{"jsonrpc":"1.0","id":1,"method":"ping"}', 400, -32600),
    ("method not a string", b'{"jsonrpc":"2.0","id":1,"method":{"x":1}}', 400, -32600),
    ("id is an object", b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', 400, -32600),
    ("id is a bool", b'{"jsonrpc":"2.0","id":false,"method":"ping"}', 400, -32600),
    ("id is a float", b'{"jsonrpc":"2.0","id":0.5,"method":"ping"}', 400, -32600),
    ("params is an array", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', 400, -32600),
    ("params is a string", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}', 400, -32600),
    ("result and error", b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}', 400, -32600),
    ("error without code", b'{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}', 400, -32600),
    ("no method/result/error", b'{"jsonrpc":"2.0","id":1}', 400, -32600),
    ("huge declared body", b"x" * (LIMIT + 1), 413, None),
    ("huge chunked body", [b"x" * 4096] * (LIMIT // 4096 + 1), 413, None),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), BODY_CASES, ids=[c[0] for c in BODY_CASES])
async def test_bad_bodies(world: World, name: str, body: bytes | list[bytes], status: int, code: int | None) -> None:
    response = await post_to(world.h, world.victim_sid, body)
    assert response.status == status, response.text
    assert response.starts == 1
    if code is not None:
        error = await world.victim.next_message()
        assert error["error"]["code"] == code
        assert error["jsonrpc"] == "2.0"
    await assert_unaffected(world)


# (name, method, headers, query, status)
REQUEST_CASES: list[tuple[str, str, Any, str | None, int]] = [
    ("PUT", "PUT", (HOST, JSON), None, 405),
    ("GET on the message path", "GET", (HOST, JSON), None, 405),
    ("DELETE", "DELETE", (HOST, JSON), None, 405),
    ("bad host", "POST", (("host", "attacker.example"), JSON), None, 421),
    ("missing host", "POST", (JSON,), None, 421),
    ("rebinding host with loopback port", "POST", (("host", "attacker.example:8000"), JSON), None, 421),
    ("bad origin", "POST", (HOST, JSON, ("origin", "https://attacker.example")), None, 403),
    ("null origin", "POST", (HOST, JSON, ("origin", "null")), None, 403),
    ("text/plain", "POST", (HOST, ("content-type", "text/plain")), None, 415),
    ("no content type", "POST", (HOST,), None, 415),
    ("form", "POST", (HOST, ("content-type", "application/x-www-form-urlencoded")), None, 415),
    ("multipart", "POST", (HOST, ("content-type", "multipart/form-data; boundary=x")), None, 415),
    ("missing session id", "POST", (HOST, JSON), "", 400),
    ("short session id", "POST", (HOST, JSON), "session_id=abc", 400),
    ("upper-case session id", "POST", (HOST, JSON), "session_id=" + "A" * 32, 400),
    ("path traversal session id", "POST", (HOST, JSON), "session_id=../../etc/passwd", 400),
    ("percent-encoded junk", "POST", (HOST, JSON), "session_id=%00%ff" + "a" * 28, 400),
    ("forged session id", "POST", (HOST, JSON), "session_id=" + "0123456789abcdef" * 2, 404),
]


@pytest.mark.parametrize(("name", "method", "headers", "query", "status"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
async def test_bad_requests(world: World, name: str, method: str, headers: Any, query: str | None, status: int) -> None:
    q = f"session_id={world.victim_sid}" if query is None else query
    response = await world.h.request(method, "/messages/", query=q, headers=headers, body=rpc("ping"))
    assert response.status == status, response.text
    assert b"ping" not in response.body  # bodies are never echoed
    await assert_unaffected(world)
    # The victim session is fine too: a valid ping still works.
    assert (await post_to(world.h, world.victim_sid, rpc("ping", id="after"))).status == 202
    assert (await world.victim.next_message())["id"] == "after"


# (name, body, expected error code on the stream or None for "no answer")
PROTOCOL_CASES: list[tuple[str, bytes, int | None]] = [
    ("unknown method", rpc("no/such/method"), -32601),
    ("server/discover", rpc("server/discover", {}), -32601),
    ("second initialize", rpc("initialize", {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}), -32600),
    ("unknown tool", rpc("tools/call", {"name": "nope", "arguments": {}}), -32602),
    ("wrong argument type", rpc("tools/call", {"name": "echo", "arguments": {"text": 5}}), -32602),
    ("missing argument", rpc("tools/call", {"name": "echo", "arguments": {}}), -32602),
    ("unexpected argument", rpc("tools/call", {"name": "echo", "arguments": {"text": "a", "x": 1}}), -32602),
    ("tool name not a string", rpc("tools/call", {"name": ["echo"]}), -32602),
    ("arguments not an object", rpc("tools/call", {"name": "echo", "arguments": "text"}), -32602),
    ("unknown notification", b'{"jsonrpc":"2.0","method":"notifications/whatever","params":{"a":1}}', None),
    ("response to nothing", b'{"jsonrpc":"2.0","id":"nobody-asked","result":{}}', None),
    ("error to nothing", b'{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}', None),
    ("cancel of an unknown request", b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope"}}', None),
    ("cancel with a junk id", b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"a":[]}}}', None),
]


@pytest.mark.parametrize(("name", "body", "code"), PROTOCOL_CASES, ids=[c[0] for c in PROTOCOL_CASES])
async def test_protocol_abuse(
    autojump_clock: trio.testing.MockClock, world: World, name: str, body: bytes, code: int | None
) -> None:
    assert (await post_to(world.h, world.victim_sid, body)).status == 202
    # Requests run concurrently, so a ping sent after the abuse may be answered first;
    # either way, exactly the expected messages arrive.
    assert (await post_to(world.h, world.victim_sid, rpc("ping", id="after"))).status == 202
    expected = 1 if code is None else 2
    messages = [await world.victim.next_message() for _ in range(expected)]
    assert {"jsonrpc": "2.0", "id": "after", "result": {}} in messages
    if code is not None:
        [error] = [m for m in messages if m.get("id") != "after"]
        assert error["error"]["code"] == code
        assert error["id"] == 1
    await assert_unaffected(world)
    with trio.move_on_after(0.5):  # nothing else follows (on the mock clock this is instant)
        extra = await world.victim.next_message()
        raise AssertionError(f"unexpected message {extra}")


async def test_requests_before_initialize_are_refused_but_ping_works(world: World) -> None:
    assert (await post_to(world.h, world.fresh_sid, rpc("tools/list"))).status == 202
    error = await world.fresh.next_message()
    assert error["error"]["code"] == -32600
    assert "initialize" in error["error"]["message"]
    assert (await post_to(world.h, world.fresh_sid, rpc("ping", id=2))).status == 202
    assert await world.fresh.next_message() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    await assert_unaffected(world)


async def assert_unaffected(world: World) -> None:
    with trio.fail_after(5):
        assert (await post_to(world.h, world.healthy_sid, rpc("tools/call", {"name": "echo", "arguments": {"text": "ok"}}, id="h"))).status == 202
        reply = await world.healthy.next_message()
    assert reply == {"jsonrpc": "2.0", "id": "h", "result": {"content": [{"type": "text", "text": "ok"}]}}


# -- fuzzing ----------------------------------------------------------------------------------------

header_names = st.sampled_from(["content-type", "content-length", "host", "origin", "authorization", "x-junk", "transfer-encoding"])
header_values = st.one_of(
    st.sampled_from(["application/json", "127.0.0.1:8000", "http://localhost:1", "-1", "99999999999999999999", "0", ""]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_like.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "method": st.one_of(st.text(max_size=20), st.sampled_from(["ping", "tools/call", "initialize", "tools/list"])), "params": json_like},
        optional={"id": json_like},
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=bodies,
    chunks=st.integers(min_value=1, max_value=4),
    extra_headers=st.lists(st.tuples(header_names, header_values), max_size=4),
    query=st.one_of(st.none(), st.text(max_size=60)),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS"]),
)
def test_fuzz_post_intake_never_5xx_never_crashes(
    body: bytes, chunks: int, extra_headers: list[tuple[str, str]], query: str | None, method: str
) -> None:
    async def main() -> None:
        transport = make_server().sse_transport(security=SecuritySettings(max_body_size=LIMIT))
        async with run_asgi_app(transport) as h, h.stream() as stream:
            sid = session_id_of(await stream.endpoint())
            await initialize(h, stream, sid)
            size = max(1, len(body) // chunks)
            parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
            headers = [HOST, JSON, *extra_headers]
            q = f"session_id={sid}" if query is None else query
            with trio.fail_after(10):
                response = await h.request(method, "/messages/", query=q, headers=headers, body=parts)
            assert response.status < 500, (response.status, response.text)
            assert response.starts == 1
            # The session still works afterwards.
            assert (await post_to(h, sid, rpc("ping", id="alive"))).status == 202
            with trio.fail_after(10):
                while (await stream.next_message()).get("id") != "alive":
                    pass

    trio.run(main)


async def test_refusals_are_logged_once_without_bodies_or_tokens(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_mcp_sse import _logs

    monkeypatch.setattr(_logs, "_refusals", _logs.RateLimiter(2, 60.0))
    caplog.set_level("INFO", logger="trio_mcp_sse")
    headers = (("host", "attacker.example"), JSON, ("authorization", "Bearer hunter2"))
    for _ in range(5):
        response = await world.h.request("POST", "/messages/", query=f"session_id={world.victim_sid}", headers=headers, body=rpc("secret-method"))
        assert response.status == 421
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "request_refused"]
    assert lines[0] == f"refused POST /messages/: 421 misdirected_host (session {world.victim_sid[:8]}…, peer 127.0.0.1:50000)"
    assert len(lines) == 2  # rate-limited
    assert not any("hunter2" in r.getMessage() or "secret-method" in r.getMessage() for r in caplog.records)
