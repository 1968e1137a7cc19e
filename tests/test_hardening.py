"""Limits, slow clients, drain, authentication, operations endpoints (in memory, mock clock)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_mcp_sse import (
    AuthSettings,
    CorsSettings,
    SessionLimits,
    StaticTokens,
)
from trio_mcp_sse._jsonrpc import JSONRPCRequest, result_response
from trio_mcp_sse.lowlevel import Session, SseServerTransport
from trio_mcp_sse.testing import ASGITestClient, run_asgi_app

from .test_transport import HOST, JSON, echo_handler, post, request, session_id_of

# -- session count -------------------------------------------------------------------------------


async def test_session_cap_answers_503_and_spares_existing_sessions() -> None:
    transport = SseServerTransport(echo_handler, limits=SessionLimits(max_sessions=2))
    async with run_asgi_app(transport) as h, h.stream() as first, h.stream() as second:
        sids = [session_id_of(await s.endpoint()) for s in (first, second)]
        refused = await h.request("GET", "/sse")
        assert refused.status == 503
        assert refused.headers["retry-after"] == "5"
        assert "Too many sessions" in refused.text
        for stream, sid in zip((first, second), sids, strict=True):
            assert (await post(h, sid, request(1, "x"))).status == 202
            assert (await stream.next_message())["id"] == 1
    async with run_asgi_app(transport) as h, h.stream() as again:  # capacity is back once they left
        assert again.status == 200


# -- idle timeout ---------------------------------------------------------------------------------


async def test_idle_session_is_closed_and_its_stream_ends_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    transport = SseServerTransport(echo_handler, keepalive_interval=25, limits=SessionLimits(idle_timeout=60))
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        start = trio.current_time()
        with trio.fail_after(3600):
            await stream.read_until_end()
        assert trio.current_time() - start == 60  # keepalives (at 25 and 50) do not count as activity
        assert stream.raw.count(b": ping") == 2
        assert stream.ended
        assert (await post(h, sid, request(1, "x"))).status == 404
        assert transport.metrics.sessions_closed["idle timeout"] == 1


async def test_traffic_in_either_direction_keeps_a_session_alive(autojump_clock: trio.testing.MockClock) -> None:
    transport = SseServerTransport(echo_handler, limits=SessionLimits(idle_timeout=60))
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        start = trio.current_time()
        for i in range(5):
            await trio.sleep(50)
            assert (await post(h, sid, request(i, "x"))).status == 202
            await stream.next_message()
        with trio.fail_after(3600):
            await stream.read_until_end()
        assert trio.current_time() - start == 5 * 50 + 60


# -- slow and stuck clients -------------------------------------------------------------------------


async def flood_handler(session: Session) -> None:
    """On any request, sends 1,000 large notifications as fast as the session takes them."""
    async for incoming in session.incoming:
        message = incoming.message
        if isinstance(message, JSONRPCRequest):
            payload = json.dumps({"jsonrpc": "2.0", "method": "flood", "params": {"pad": "x" * 10_000}}).encode()
            for _ in range(1000):
                await session.send(payload)
            await session.send(result_response(message.id, {}))


async def test_client_that_stops_reading_is_dropped_within_the_bound(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    limits = SessionLimits(outbound_buffer=8, send_timeout=20)
    transport = SseServerTransport(flood_handler, limits=limits)
    async with run_asgi_app(transport) as h, h.stream(buffer=0) as stuck, h.stream() as healthy:
        stuck_sid = session_id_of(await stuck.endpoint())
        stuck_session = transport.sessions.get(stuck_sid)
        assert stuck_session is not None
        healthy_sid = session_id_of(await healthy.endpoint())
        assert healthy_sid != stuck_sid
        start = trio.current_time()
        assert (await post(h, stuck_sid, request(1, "go"))).status == 202
        # The flood fills the buffer; nothing is read; the session is dropped after send_timeout.
        await stuck_session.finished.wait()
        assert trio.current_time() - start == 20
        assert transport.sessions.get(stuck_sid) is None
        # Meanwhile and afterwards the other session answers at once.
        assert (await post(h, healthy_sid, b'{"jsonrpc":"2.0","id":5,"method":"ping"}')).status == 202
        message = await healthy.next_message()
        assert message["method"] == "flood"  # it is served normally
        assert transport.metrics.sessions_closed["slow consumer"] == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "not reading" in r.getMessage()]
    assert len(warnings) == 1
    assert stuck_sid in warnings[0].getMessage()


# -- drain ----------------------------------------------------------------------------------------------


async def slow_handler(session: Session) -> None:
    """Each request sleeps `params.seconds`, then answers; requests run concurrently."""
    async with trio.open_nursery() as nursery:
        async for incoming in session.incoming:
            message = incoming.message
            assert isinstance(message, JSONRPCRequest)

            async def answer(message: JSONRPCRequest = message) -> None:
                await trio.sleep((message.params or {}).get("seconds", 0))
                await session.send(result_response(message.id, {"slept": True}))

            nursery.start_soon(answer)


async def test_drain_finishes_accepted_work_then_ends_streams_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    transport = SseServerTransport(slow_handler)
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        assert (await post(h, sid, request(1, "work", {"seconds": 5}))).status == 202
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.drain, 30)
            await trio.sleep(1)
            assert transport.draining
            assert (await h.request("GET", "/readyz")).status == 503
            assert (await h.request("GET", "/healthz")).status == 200
            refused = await h.request("GET", "/sse")
            assert (refused.status, refused.headers["retry-after"]) == (503, "5")
            late = await post(h, sid, request(2, "work"))
            assert late.status == 503
            assert "shutting down" in late.text
        assert trio.current_time() - start == 5  # the drain waited for the request, no longer
        assert await stream.next_message() == {"jsonrpc": "2.0", "id": 1, "result": {"slept": True}}
        await stream.read_until_end()
        assert stream.ended
        assert len(transport.sessions) == 0


async def test_drain_cancels_what_outlasts_the_grace_period(autojump_clock: trio.testing.MockClock) -> None:
    transport = SseServerTransport(slow_handler)
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        assert (await post(h, sid, request(1, "work", {"seconds": 3600}))).status == 202
        start = trio.current_time()
        await transport.drain(10)
        assert trio.current_time() - start == 10
        await stream.read_until_end()
        assert stream.ended  # still a complete body
        assert b'"id":1' not in stream.raw


# -- authentication and principal binding -------------------------------------------------------------

TOKENS = {"token-alice": "alice", "token-bob": "bob"}


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


@pytest.fixture
async def authed() -> AsyncIterator[ASGITestClient]:
    auth = AuthSettings(verify_token=StaticTokens(TOKENS), required=False, resource_metadata="https://mcp.example/.well-known/oauth-protected-resource")
    async with run_asgi_app(SseServerTransport(echo_handler, auth=auth)) as h:
        yield h


@pytest.mark.parametrize(
    ("opener", "poster", "status"),
    [
        ("token-alice", "token-alice", 202),
        ("token-alice", "token-bob", 404),
        ("token-alice", None, 404),
        (None, None, 202),
        (None, "token-alice", 404),
    ],
)
async def test_principal_matrix(authed: ASGITestClient, opener: str | None, poster: str | None, status: int) -> None:
    open_headers = (HOST,) if opener is None else (HOST, bearer(opener))
    post_headers = (HOST, JSON) if poster is None else (HOST, JSON, bearer(poster))
    async with authed.stream(headers=open_headers) as stream:
        assert stream.status == 200
        sid = session_id_of(await stream.endpoint())
        response = await post(authed, sid, request(1, "x"), headers=post_headers)
        assert response.status == status
        if status == 404:
            unknown = await post(authed, "f" * 32, request(1, "x"), headers=post_headers)
            assert (response.text, response.headers) == (unknown.text, unknown.headers)  # indistinguishable


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("credentials", "error"),
    [("Bearer wrong", "invalid_token"), ("Basic dXNlcjpwYXNz", "invalid_request"), ("Bearer", "invalid_request")],
)
async def test_bad_credentials_get_401_with_a_challenge(authed: ASGITestClient, method: str, credentials: str, error: str) -> None:
    headers = (HOST, JSON, ("authorization", credentials))
    response = await authed.request(method, "/sse" if method == "GET" else "/messages/", query="session_id=" + "a" * 32, headers=headers)
    assert response.status == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="mcp"')
    assert f'error="{error}"' in challenge
    assert 'resource_metadata="https://mcp.example/.well-known/oauth-protected-resource"' in challenge


async def test_required_auth_refuses_anonymous_get_and_post() -> None:
    auth = AuthSettings(verify_token=StaticTokens(TOKENS))
    async with run_asgi_app(SseServerTransport(echo_handler, auth=auth)) as h:
        for method, path in (("GET", "/sse"), ("POST", "/messages/")):
            response = await h.request(method, path, query="session_id=" + "a" * 32, headers=(HOST, JSON))
            assert response.status == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="mcp"'
        async with h.stream(headers=(HOST, bearer("token-bob"))) as stream:
            sid = session_id_of(await stream.endpoint())
            assert (await post(h, sid, request(1, "x"), headers=(HOST, JSON, bearer("token-bob")))).status == 202
            assert transport_principal(h, sid) == "bob"


def transport_principal(h: ASGITestClient, sid: str) -> str | None:
    for session in h.app.sessions:
        if session.id == sid:
            return session.principal  # type: ignore[no-any-return]
    raise AssertionError("no such session")


async def test_verifier_failure_is_503_and_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(token: str) -> str | None:
        raise ConnectionError("identity provider down")

    async with run_asgi_app(SseServerTransport(echo_handler, auth=AuthSettings(verify_token=broken))) as h:
        response = await h.request("GET", "/sse", headers=(HOST, bearer("secret-token-123")))
        assert response.status == 503
    assert "identity provider down" in caplog.text
    assert "secret-token-123" not in caplog.text


async def test_slow_verifier_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(token: str) -> str | None:
        await trio.sleep(3600)
        return "x"  # pragma: no cover

    auth = AuthSettings(verify_token=slow, timeout=2)
    async with run_asgi_app(SseServerTransport(echo_handler, auth=auth)) as h:
        start = trio.current_time()
        response = await h.request("GET", "/sse", headers=(HOST, bearer("t")))
        assert (response.status, trio.current_time() - start) == (503, 2)


def test_auth_settings_validation() -> None:
    with pytest.raises(ValueError, match="realm"):
        AuthSettings(verify_token=StaticTokens({}), realm='a"b')


# -- operations -----------------------------------------------------------------------------------------


async def test_health_and_readiness() -> None:
    async with run_asgi_app(SseServerTransport(echo_handler)) as h:
        assert (await h.request("GET", "/healthz")).status == 200
        assert (await h.request("HEAD", "/readyz")).status == 200
        assert (await h.request("POST", "/healthz")).status == 405
        assert (await h.request("GET", "/metrics")).status == 404  # opt-in


async def test_ops_paths_can_be_moved_or_disabled() -> None:
    transport = SseServerTransport(echo_handler, health_path=None, ready_path="/ready", metrics_path="/metrics")
    async with run_asgi_app(transport) as h:
        assert (await h.request("GET", "/healthz")).status == 404
        assert (await h.request("GET", "/ready")).status == 200
        assert (await h.request("GET", "/metrics")).status == 200


async def test_metrics_count_sessions_messages_and_rejections() -> None:
    transport = SseServerTransport(echo_handler, metrics_path="/metrics")
    async with run_asgi_app(transport) as h:
        async with h.stream() as stream:
            sid = session_id_of(await stream.endpoint())
            for i in range(3):
                await post(h, sid, request(i, "x"))
                await stream.next_message()
            await post(h, sid, b"{broken")
            await post(h, "0" * 32, request(9, "x"))
            await h.request("GET", "/sse", headers=(("host", "evil.example"),))
            text = (await h.request("GET", "/metrics")).text
        assert "mcp_sessions_open 1" in text
        assert "mcp_sessions_opened_total 1" in text
        assert "mcp_messages_received_total 3" in text
        assert "mcp_messages_sent_total 4" in text  # three answers and one parse error
        assert 'mcp_rejections_total{reason="invalid_message"} 1' in text
        assert 'mcp_rejections_total{reason="unknown_session"} 1' in text
        assert 'mcp_rejections_total{reason="misdirected_host"} 1' in text
        after = (await h.request("GET", "/metrics")).text
        assert "mcp_sessions_open 0" in after
        assert 'mcp_sessions_closed_total{reason="client disconnected"} 1' in after
        response = await h.request("GET", "/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")


async def test_cors_preflight_and_response_headers() -> None:
    cors = CorsSettings(allow_origins=["https://app.example.com"], expose_headers=["x-request-id"])
    transport = SseServerTransport(echo_handler, cors=cors)
    app_origin = ("origin", "https://app.example.com")
    async with run_asgi_app(transport) as h:
        preflight = await h.request(
            "OPTIONS", "/messages/", headers=(HOST, app_origin, ("access-control-request-method", "POST"))
        )
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        assert preflight.headers["vary"] == "Origin"
        denied = await h.request("OPTIONS", "/sse", headers=(HOST, ("origin", "https://evil.example")))
        assert denied.status == 403
        async with h.stream(headers=(HOST, app_origin)) as stream:
            assert stream.headers["access-control-allow-origin"] == "https://app.example.com"
            assert stream.headers["access-control-expose-headers"] == "x-request-id"
            sid = session_id_of(await stream.endpoint())
            accepted = await post(h, sid, request(1, "x"), headers=(HOST, JSON, app_origin))
            assert accepted.status == 202
            assert accepted.headers["access-control-allow-origin"] == "https://app.example.com"
            refused = await post(h, "0" * 32, request(1, "x"), headers=(HOST, JSON, app_origin))
            assert refused.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_without_cors_options_is_405() -> None:
    async with run_asgi_app(SseServerTransport(echo_handler)) as h:
        response = await h.request("OPTIONS", "/messages/", headers=(HOST, ("origin", "http://localhost:3000")))
        assert response.status == 405
        assert "access-control-allow-origin" not in response.headers


def test_cors_settings_validation() -> None:
    with pytest.raises(TypeError):
        CorsSettings(allow_origins="https://x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="credentials"):
        CorsSettings(allow_origins=["*"], allow_credentials=True)


async def test_logs_never_contain_bodies_or_tokens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = AuthSettings(verify_token=StaticTokens({"tok-SECRET-1": "alice"}))
    async with run_asgi_app(SseServerTransport(echo_handler, auth=auth, limits=SessionLimits(inbound_buffer=1, deliver_timeout=0.01))) as h:
        headers = (HOST, JSON, bearer("tok-SECRET-1"))
        async with h.stream(headers=(HOST, bearer("tok-SECRET-1"))) as stream:
            sid = session_id_of(await stream.endpoint())
            await post(h, sid, b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"p":"BODY-SECRET-2"}}', headers=headers)
            await post(h, sid, b"{BODY-SECRET-3", headers=headers)
            await h.request("GET", "/sse", headers=(HOST, bearer("tok-SECRET-4")))
    assert caplog.records  # something was logged
    for secret in ("SECRET-1", "BODY-SECRET-2", "BODY-SECRET-3", "SECRET-4"):
        assert secret not in caplog.text



async def test_drain_lets_an_mcp_tool_call_finish(autojump_clock: trio.testing.MockClock) -> None:
    from trio_mcp_sse import MCPServer

    server = MCPServer("draining")

    @server.tool
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "finished"

    transport = server.sse_transport()
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        await post(h, sid, request(0, "initialize", init))
        await stream.next_message()
        assert (await post(h, sid, request(1, "tools/call", {"name": "slow", "arguments": {"seconds": 4}}))).status == 202
        await trio.sleep(1)
        start = trio.current_time()
        await transport.drain(30)
        assert trio.current_time() - start == 3  # exactly as long as the tool still needed
        result = await stream.next_message()
        assert result == {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "finished"}]}}
        await stream.read_until_end()
        assert stream.ended
