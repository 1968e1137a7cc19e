"""Authentication across workers: a request forwarded to a session's owner is authenticated there.

Two workers, A and B, are two apps sharing one :class:`MemoryBroker`, built the same way: an
OAuth resource server (``ProtectedResource``) requiring ``notes:read`` of every request, with one
tool that needs ``notes:write`` and one that reports the access token it was called with.  Each
worker has a verifier of its own that records the tokens it is asked about, so a test can tell
which worker authenticated a request.  Every session is opened on A; the requests under test are
sent to B, which forwards them whole to A (docs/scaling.md).

What these tests establish, for both transports (Streamable HTTP and HTTP+SSE):

* A forwarded request is authenticated *only at the owner*: the receiving worker forwards a
  request addressed to a session it does not hold before it runs any admission, so B's verifier
  is never called for it and A's is called once per request (docs/security.md: "the worker that
  holds the session verifies the forwarded request's token again").  B verifies only what it
  answers itself: a request for a session no worker holds (answered locally, as unknown).
* Hence the tool sees the token the owner verified, e.g. a refreshed token with more scopes.
* The 401 for a missing or invalid token, the 403 ``insufficient_scope`` and the 404 for another
  principal are all answered by the owner (A) and relayed by B; each is byte-for-byte the answer
  a request gets on the worker it reached directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson
import pytest
import trio

from trio_mcp_sse import AccessToken, AuthSettings, Context, MCPServer, ProtectedResource
from trio_mcp_sse._broker import MemoryBroker
from trio_mcp_sse.testing import open_http_transport

AS = "https://auth.example.com"
TOKENS = {
    "alice-read": AccessToken("alice", scopes=frozenset({"notes:read"})),
    "alice-write": AccessToken("alice", scopes=frozenset({"notes:read", "notes:write"})),
    "bob": AccessToken("bob", scopes=frozenset({"notes:read"})),
}
UNKNOWN_SESSION = "0123456789abcdef" * 2


class RecordingVerifier:
    """A token table that remembers every token it was asked about (one per worker)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, token: str) -> AccessToken | None:
        self.seen.append(token)
        return TOKENS.get(token)


def make_server() -> MCPServer:
    server = MCPServer("notes", "1.0.0")

    @server.tool()
    async def whoami(ctx: Context) -> str:
        token = ctx.access_token
        assert token is not None
        return f"{token.subject} {' '.join(sorted(token.scopes))}"

    @server.tool(required_scopes=["notes:write"])
    async def write(text: str, ctx: Context) -> str:
        return f"{ctx.principal} wrote {text}"

    return server


@dataclass
class Worker:
    name: str
    app: Any
    client: httpx.AsyncClient
    verifier: RecordingVerifier

    @property
    def host(self) -> Any:
        return self.app.extensions["trio_mcp_sse"].host


@asynccontextmanager
async def cluster(broker: MemoryBroker) -> AsyncIterator[tuple[Worker, Worker]]:
    """Workers A and B: the same app twice, each with its own verifier, one broker."""
    async with AsyncExitStack() as stack:
        workers = []
        for name in ("A", "B"):
            verifier = RecordingVerifier()
            auth = AuthSettings(
                verify_token=verifier,
                required_scopes=["notes:read"],
                protected_resource=ProtectedResource(authorization_servers=[AS]),
            )
            app = make_server().http_app(auth=auth, broker=broker)
            transport = await stack.enter_async_context(open_http_transport(app))
            client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            workers.append(Worker(name, app, client, verifier))
        a, b = workers
        yield a, b


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token}"}


def call(call_id: int, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": {"name": tool, "arguments": arguments or {}}}


def text_of(message: dict[str, Any]) -> str:
    assert "result" in message, message
    text: str = message["result"]["content"][0]["text"]
    return text


def sse_messages(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an event stream (other events, priming events and comments skipped)."""

    async def messages() -> AsyncIterator[dict[str, Any]]:
        event, data = "message", []
        async for line in lines:
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").removeprefix(" "))
            elif line == "":
                if event == "message" and "".join(data):  # (a priming event has empty data)
                    yield orjson.loads("\n".join(data))
                event, data = "message", []

    return messages()


def identical(first: httpx.Response, second: httpx.Response) -> tuple[Any, ...]:
    """What a client can see of an answer: its status, headers and body bytes."""
    assert (first.status_code, first.headers.raw, first.content) == (second.status_code, second.headers.raw, second.content)
    return first.status_code, first.headers.raw, first.content


# -- one session, opened on A, spoken to through any worker ------------------------------------------
class Channel:
    """A session of one transport on worker A, and how a request for it is sent and answered."""

    path: str  # the endpoint whose metadata document challenges name
    session_id: str

    async def open(self, a: Worker, b: Worker, stack: AsyncExitStack) -> None:
        raise NotImplementedError

    async def post(self, via: Worker, message: dict[str, Any], token: str | None, *, session_id: str | None = None) -> httpx.Response:
        """``message`` for this session (or ``session_id``) sent to ``via``."""
        raise NotImplementedError

    async def answer(self, response: httpx.Response, call_id: int) -> dict[str, Any]:
        """The JSON-RPC response to request ``call_id`` that ``response`` accepted."""
        raise NotImplementedError

    async def close(self, via: Worker) -> None:
        raise NotImplementedError


class Streamable(Channel):
    path = "/mcp"
    HEADERS: ClassVar[dict[str, str]] = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    async def open(self, a: Worker, b: Worker, stack: AsyncExitStack) -> None:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }
        response = await a.client.post("/mcp", json=init, headers={**self.HEADERS, **bearer("alice-read")})
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.post(b, initialized, "alice-read")).status_code == 202

    async def post(self, via: Worker, message: dict[str, Any], token: str | None, *, session_id: str | None = None) -> httpx.Response:
        headers = {**self.HEADERS, **bearer(token), "mcp-session-id": session_id or self.session_id}
        return await via.client.post("/mcp", json=message, headers=headers)

    async def answer(self, response: httpx.Response, call_id: int) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        if response.headers["content-type"].startswith("application/json"):
            message: dict[str, Any] = response.json()
            return message
        async for message in sse_messages(response.aiter_lines()):
            if message.get("id") == call_id:
                return message
        raise AssertionError(f"no answer to {call_id} in {response.text!r}")

    async def close(self, via: Worker) -> None:
        headers = {**self.HEADERS, **bearer("alice-read"), "mcp-session-id": self.session_id}
        assert (await via.client.delete("/mcp", headers=headers)).status_code == 200


class HttpSse(Channel):
    path = "/sse"

    async def open(self, a: Worker, b: Worker, stack: AsyncExitStack) -> None:
        self._stack = AsyncExitStack()
        stack.push_async_exit(self._stack)
        stream = await self._stack.enter_async_context(a.client.stream("GET", "/sse", headers=bearer("alice-read")))
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        async for line in lines:
            if line.startswith("data: "):
                self.endpoint = line.removeprefix("data: ")
                break
        self.session_id = self.endpoint.partition("session_id=")[2]
        self._messages = sse_messages(lines)
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }
        assert "protocolVersion" in (await self.answer(await self.post(b, init, "alice-read"), 0))["result"]
        assert (await self.post(b, {"jsonrpc": "2.0", "method": "notifications/initialized"}, "alice-read")).status_code == 202

    async def post(self, via: Worker, message: dict[str, Any], token: str | None, *, session_id: str | None = None) -> httpx.Response:
        url = f"/messages/?session_id={session_id or self.session_id}"
        return await via.client.post(url, json=message, headers={"content-type": "application/json", **bearer(token)})

    async def answer(self, response: httpx.Response, call_id: int) -> dict[str, Any]:
        assert response.status_code == 202, response.text  # only the owner answers 202 (docs/scaling.md)
        async for message in self._messages:
            if message.get("id") == call_id:
                return message
        raise AssertionError(f"the stream ended before the answer to {call_id}")

    async def close(self, via: Worker) -> None:
        await self._stack.aclose()  # the client leaves the event stream: its session ends


@pytest.fixture(params=[Streamable, HttpSse], ids=["streamable-http", "http+sse"])
def channel(request: pytest.FixtureRequest) -> Channel:
    made: Channel = request.param()
    return made


@asynccontextmanager
async def session_on_a(channel: Channel) -> AsyncIterator[tuple[Worker, Worker]]:
    """Workers A and B, a session of alice's on A; every session gone once the client closed it."""
    broker = MemoryBroker()
    async with AsyncExitStack() as stack:
        a, b = await stack.enter_async_context(cluster(broker))
        await channel.open(a, b, stack)
        assert broker.owner_of(channel.session_id) == a.host.link.worker_id
        assert len(a.host.sessions) == 1 and len(b.host.sessions) == 0
        a.verifier.seen.clear()
        b.verifier.seen.clear()
        yield a, b
        await channel.close(b)
        await trio.sleep(2 * broker.settings.heartbeat_interval)  # released at the next heartbeat
        assert len(a.host.sessions) == 0 and len(b.host.sessions) == 0
        assert broker.owner_of(channel.session_id) is None
        assert broker.cluster_sessions() == 0


def forwarded(a: Worker, b: Worker) -> tuple[int, int]:
    return b.host.metrics.forwarded_out, a.host.metrics.forwarded_in


# -- 1. served by the owner, with the token it verified -----------------------------------------------
async def test_a_forwarded_request_is_served_with_the_token_the_owner_verified(
    channel: Channel, autojump_clock: trio.abc.Clock
) -> None:
    async with session_on_a(channel) as (a, b):
        before = forwarded(a, b)
        read = await channel.post(b, call(1, "whoami"), "alice-read")
        assert text_of(await channel.answer(read, 1)) == "alice notes:read"
        # A refreshed token (same subject, more scopes) keeps the session, and is what the tool sees.
        refreshed = await channel.post(b, call(2, "whoami"), "alice-write")
        assert text_of(await channel.answer(refreshed, 2)) == "alice notes:read notes:write"
        assert forwarded(a, b) == (before[0] + 2, before[1] + 2)
        # 5. Verified at the owner only: B forwards a request for a session it does not hold
        # before any admission, so its verifier is never asked; A's is asked once per request.
        assert a.verifier.seen == ["alice-read", "alice-write"]
        assert b.verifier.seen == []


# -- 2. another principal: the unknown session's 404 ---------------------------------------------------
async def test_another_principals_forwarded_request_gets_the_unknown_session_404(
    channel: Channel, autojump_clock: trio.abc.Clock
) -> None:
    async with session_on_a(channel) as (a, b):
        before = forwarded(a, b)
        as_bob = await channel.post(b, call(1, "whoami"), "bob")
        assert forwarded(a, b) == (before[0] + 1, before[1] + 1)  # A answered it
        assert a.verifier.seen == ["bob"] and b.verifier.seen == []
        # No worker holds this one: B answers it itself (and so verifies the token itself).
        unknown_at_b = await channel.post(b, call(1, "whoami"), "bob", session_id=UNKNOWN_SESSION)
        assert b.verifier.seen == ["bob"]
        unknown_at_a = await channel.post(a, call(1, "whoami"), "bob", session_id=UNKNOWN_SESSION)
        status, _, body = identical(as_bob, unknown_at_b)
        identical(as_bob, unknown_at_a)
        assert status == 404
        assert b"Could not find session" in body  # (a JSON-RPC error on /mcp, plain text on /messages/)
        # A notification takes another path through the transports (no response stream): same answer.
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
        identical(await channel.post(b, note, "bob"), await channel.post(b, note, "bob", session_id=UNKNOWN_SESSION))
        # The session is untouched: alice still uses it through B.
        assert text_of(await channel.answer(await channel.post(b, call(2, "whoami"), "alice-read"), 2)) == "alice notes:read"


# -- 3. no token, an invalid token: 401 from the owner --------------------------------------------------
async def test_a_forwarded_request_without_a_valid_token_gets_the_owners_401(
    channel: Channel, autojump_clock: trio.abc.Clock
) -> None:
    metadata = f'resource_metadata="http://testserver/.well-known/oauth-protected-resource{channel.path}"'
    async with session_on_a(channel) as (a, b):
        before = forwarded(a, b)
        anonymous = await channel.post(b, call(1, "whoami"), None)
        assert anonymous.status_code == 401
        challenge = anonymous.headers["www-authenticate"]
        assert challenge == f'Bearer realm="mcp", scope="notes:read", {metadata}'
        # B did not refuse it: it forwarded it, and the owner answered 401 (the same bytes
        # as a request without a token that reaches A directly).
        assert forwarded(a, b) == (before[0] + 1, before[1] + 1)
        identical(anonymous, await channel.post(a, call(1, "whoami"), None))

        invalid = await channel.post(b, call(2, "whoami"), "forged")
        assert invalid.status_code == 401
        assert invalid.headers["www-authenticate"] == f'Bearer realm="mcp", error="invalid_token", scope="notes:read", {metadata}'
        assert forwarded(a, b) == (before[0] + 2, before[1] + 2)
        assert a.verifier.seen == ["forged"] and b.verifier.seen == []
        identical(invalid, await channel.post(a, call(2, "whoami"), "forged"))
        assert text_of(await channel.answer(await channel.post(b, call(3, "whoami"), "alice-read"), 3)) == "alice notes:read"


# -- 4. a tool needing more scopes: 403 from the owner, then a step-up ----------------------------------
async def test_a_forwarded_call_short_of_scopes_gets_403_and_the_session_survives_a_step_up(
    channel: Channel, autojump_clock: trio.abc.Clock
) -> None:
    async with session_on_a(channel) as (a, b):
        before = forwarded(a, b)
        short = await channel.post(b, call(1, "write", {"text": "hi"}), "alice-read")
        assert short.status_code == 403
        challenge = short.headers["www-authenticate"]
        assert 'error="insufficient_scope", scope="notes:read notes:write"' in challenge
        assert f'resource_metadata="http://testserver/.well-known/oauth-protected-resource{channel.path}"' in challenge
        assert forwarded(a, b) == (before[0] + 1, before[1] + 1)
        identical(short, await channel.post(a, call(1, "write", {"text": "hi"}), "alice-read"))
        # The step-up: the same call with the broader token, through B again, the same request id.
        stepped_up = await channel.post(b, call(1, "write", {"text": "hi"}), "alice-write")
        assert text_of(await channel.answer(stepped_up, 1)) == "alice wrote hi"
        assert text_of(await channel.answer(await channel.post(b, call(2, "whoami"), "alice-read"), 2)) == "alice notes:read"
        assert a.verifier.seen == ["alice-read", "alice-read", "alice-write", "alice-read"]
        assert b.verifier.seen == []


# -- a challenge never tells that a session exists ------------------------------------------------------
async def test_another_principals_call_short_of_scopes_is_answered_like_an_unknown_sessions(
    channel: Channel, autojump_clock: trio.abc.Clock
) -> None:
    """Bob calling the write tool on alice's session gets what he gets for an unknown session.

    Streamable HTTP checks the scopes before looking the session up, for both: ``403``.  HTTP+SSE
    looks the session up first (its POSTs name one in the query), and answers a session that is
    not the caller's ``404``, challenge or not: a ``403`` would tell bob the session exists.
    """
    async with session_on_a(channel) as (a, b):
        for via in (b, a):
            foreign = await channel.post(via, call(1, "write", {"text": "x"}), "bob")
            unknown = await channel.post(via, call(1, "write", {"text": "x"}), "bob", session_id=UNKNOWN_SESSION)
            identical(foreign, unknown)
