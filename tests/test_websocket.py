"""The WebSocket transport in memory: admission, framing, close codes, liveness, drain (mock clock)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_mcp_sse import (
    AuthSettings,
    MCPServer,
    SessionLimits,
    StaticTokens,
    WebSocketSettings,
)
from trio_mcp_sse._websocket import PING_ID_PREFIX, CloseCode, close_for_session
from trio_mcp_sse.lowlevel import WebSocketServerTransport
from trio_mcp_sse.testing import run_asgi_app

from .ws_support import LOOPBACK, websocket_peer, websocket_scope


def make_server() -> MCPServer:
    server = MCPServer("ws-test", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await trio.sleep(seconds)
        return "done"

    return server


def accepted(first: dict[str, Any]) -> None:
    assert first == {"type": "websocket.accept", "subprotocol": "mcp"}


async def refusal(peer: Any, first: dict[str, Any]) -> tuple[int, bytes]:
    assert first["type"] == "websocket.http.response.start", first
    body = await peer.next()
    assert body["type"] == "websocket.http.response.body"
    return first["status"], body["body"]


async def test_a_session_per_connection_speaks_json_rpc_in_text_frames() -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        assert len(transport.sessions) == 1
        answer = await peer.initialize()
        assert answer["id"] == 0
        assert answer["result"]["serverInfo"] == {"name": "ws-test", "version": "1.0.0"}
        called = await peer.request(1, "tools/call", {"name": "echo", "arguments": {"text": "héllo ✓\n"}})
        assert called == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": "héllo ✓\n"}]},
        }
        assert await peer.request(2, "ping") == {"jsonrpc": "2.0", "id": 2, "result": {}}
        await peer.disconnect(1006)  # abrupt: no close frame from the client
        await peer.wait_app_done()
        assert len(transport.sessions) == 0
        assert transport.metrics.sessions_closed["client disconnected"] == 1


async def test_a_normal_close_by_the_client_ends_the_session() -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.initialize()
        await peer.disconnect(1000)
    assert len(transport.sessions) == 0


@pytest.mark.parametrize("http_response", [True, False])
async def test_the_mcp_subprotocol_is_required(http_response: bool) -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    scope = websocket_scope(subprotocols=("graphql-ws",), http_response=http_response)
    async with run_asgi_app(app), websocket_peer(app, scope) as (peer, first):
        if http_response:
            assert await refusal(peer, first) == (400, b"WebSocket subprotocol 'mcp' required")
        else:
            # Without the extension the refusal is a close before accepting (servers answer 403).
            assert first == {"type": "websocket.close", "code": 1008}
    assert transport.metrics.sessions_opened == 0
    assert transport.metrics.rejections["subprotocol_required"] == 1


@pytest.mark.parametrize(
    ("headers", "status", "text"),
    [
        ((("host", "evil.example"),), 421, b"Host not allowed"),
        ((*LOOPBACK, ("origin", "https://evil.example")), 403, b"Origin not allowed"),
    ],
)
async def test_host_and_origin_are_checked_on_the_upgrade(headers: Any, status: int, text: bytes) -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app, websocket_scope(headers=headers)) as (peer, first):
        assert await refusal(peer, first) == (status, text)
    assert transport.metrics.sessions_opened == 0


async def test_a_loopback_origin_is_welcome() -> None:
    app = make_server().sse_app(websocket=True)
    scope = websocket_scope(headers=(*LOOPBACK, ("origin", "http://localhost:3000")))
    async with run_asgi_app(app), websocket_peer(app, scope) as (peer, first):
        accepted(first)
        await peer.disconnect()


async def test_bearer_tokens_bind_the_session_to_its_principal() -> None:
    auth = AuthSettings(verify_token=StaticTokens({"s3cret": "alice"}))
    app = make_server().sse_app(websocket=True, auth=auth)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app):
        async with websocket_peer(app) as (peer, first):
            status, _ = await refusal(peer, first)
            assert status == 401
            assert (b"www-authenticate", b'Bearer realm="mcp"') in first["headers"]
        scope = websocket_scope(headers=(*LOOPBACK, ("authorization", "Bearer wrong")))
        async with websocket_peer(app, scope) as (peer, first):
            assert (await refusal(peer, first))[0] == 401
        scope = websocket_scope(headers=(*LOOPBACK, ("authorization", "Bearer s3cret")))
        async with websocket_peer(app, scope) as (peer, first):
            accepted(first)
            assert [session.principal for session in transport.sessions] == ["alice"]
            await peer.disconnect()


async def test_the_session_cap_is_shared_with_http_sse() -> None:
    app = make_server().sse_app(websocket=True, limits=SessionLimits(max_sessions=1))
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        async with websocket_peer(app) as (second, answer):
            status, text = await refusal(second, answer)
            assert (status, text) == (503, b"Too many sessions; retry later")
            assert (b"retry-after", b"5") in answer["headers"]
        await peer.disconnect()


async def test_a_binary_frame_closes_with_1003() -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.send_bytes(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
        assert await peer.closed() == (1003, "binary frames are not supported: send JSON text")
    assert len(transport.sessions) == 0


async def test_an_oversized_frame_closes_with_1009() -> None:
    app = make_server().sse_app(websocket=WebSocketSettings(max_message_size=100))
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        # 30 characters, 120 bytes: the bound is in UTF-8 bytes.
        await peer.send_text({"jsonrpc": "2.0", "method": "x", "params": {"t": "✓" * 30}})
        assert await peer.closed() == (1009, "message over 100 bytes")


async def test_a_frame_at_the_limit_is_accepted() -> None:
    message = '{"jsonrpc":"2.0","id":1,"method":"ping"}'
    app = make_server().sse_app(websocket=WebSocketSettings(max_message_size=len(message)))
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.send_text(message)
        assert await peer.receive_json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
        await peer.disconnect()


async def test_text_that_is_not_json_gets_a_parse_error_then_1007() -> None:
    app = make_server().sse_app(websocket=True)
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.send_text("{not json")
        error = await peer.receive_json()
        assert error["id"] is None
        assert error["error"]["code"] == -32700
        code, _ = await peer.closed()
        assert code == 1007


async def test_json_that_is_not_a_message_gets_an_invalid_request_then_1002() -> None:
    app = make_server().sse_app(websocket=True)
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.send_text([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
        error = await peer.receive_json()
        assert error["error"]["code"] == -32600
        assert "batches are not supported" in error["error"]["message"]
        code, _ = await peer.closed()
        assert code == 1002


async def test_a_drain_lets_requests_finish_then_closes_with_1001() -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.initialize()
        await peer.send_text(
            {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 1}}}
        )
        await trio.sleep(0.1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.drain, 10.0)
            answer = await peer.receive_json()
            assert answer["id"] == 5
            assert answer["result"]["content"] == [{"type": "text", "text": "done"}]
            assert await peer.closed() == (1001, "server shutting down")
    assert dict(transport.metrics.sessions_closed) == {"drained": 1}


async def test_the_server_pings_a_silent_client_and_closes_on_no_answer(autojump_clock: trio.abc.Clock) -> None:
    app = make_server().sse_app(websocket=WebSocketSettings(ping_interval=5.0, ping_timeout=2.0))
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.initialize()
        started = trio.current_time()
        ping = await peer.receive_json()
        assert trio.current_time() - started == pytest.approx(5.0)
        assert ping["method"] == "ping"
        assert ping["id"].startswith(PING_ID_PREFIX)
        await peer.send_text({"jsonrpc": "2.0", "id": ping["id"], "result": {}})  # alive; the answer is swallowed
        second = await peer.receive_json()
        assert second["method"] == "ping"
        assert second["id"] != ping["id"]
        assert await peer.closed() == (1011, "no answer to ping")
    assert len(transport.sessions) == 0
    assert transport.metrics.sessions_closed["client not answering"] == 1


async def test_the_websocket_endpoint_can_be_moved_or_left_out() -> None:
    moved = make_server().sse_app(websocket=WebSocketSettings(path="/mcp-ws"))
    async with run_asgi_app(moved), websocket_peer(moved, websocket_scope("/mcp-ws")) as (peer, first):
        accepted(first)
        await peer.disconnect()
    without = make_server().sse_app(websocket=False)
    assert "trio_mcp_sse.websocket" not in without.extensions


async def test_standalone_transport_runs_its_own_lifespan_and_answers_other_paths() -> None:
    transport = WebSocketServerTransport(make_server().run_session)
    async with run_asgi_app(transport) as client:
        assert (await client.request("GET", "/ws")).status == 404
        async with websocket_peer(transport, websocket_scope("/elsewhere")) as (_, first):
            assert first == {"type": "websocket.close", "code": 1008}
        async with websocket_peer(transport) as (peer, first):
            accepted(first)
            assert (await peer.initialize())["result"]["serverInfo"]["name"] == "ws-test"
            await peer.disconnect()


def test_close_codes_follow_how_the_session_ended() -> None:
    assert close_for_session(None, draining=False) == (CloseCode.NORMAL, "session ended")
    assert close_for_session(None, draining=True) == (CloseCode.GOING_AWAY, "server shutting down")
    assert close_for_session("slow consumer", draining=False) == (CloseCode.POLICY_VIOLATION, "slow consumer")
    assert close_for_session("handler failed", draining=False) == (CloseCode.INTERNAL_ERROR, "handler failed")
    assert close_for_session("idle timeout", draining=False) == (CloseCode.GOING_AWAY, "idle timeout")
    assert close_for_session("server shutting down", draining=True) == (CloseCode.GOING_AWAY, "server shutting down")


async def test_a_request_sent_while_draining_is_refused_at_once() -> None:
    app = make_server().sse_app(websocket=True)
    transport = app.extensions["trio_mcp_sse"]
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        await peer.initialize()
        await peer.send_text(
            {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 1}}}
        )
        await trio.sleep(0.1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.drain, 10.0)
            await trio.sleep(0.1)
            assert await peer.request(6, "ping") == {
                "jsonrpc": "2.0",
                "id": 6,
                "error": {"code": -32000, "message": "Server is shutting down"},
            }
            assert (await peer.receive_json())["id"] == 5
            assert (await peer.closed())[0] == 1001


async def test_a_failing_handler_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(session: Any) -> None:
        async for _ in session.incoming:
            raise RuntimeError("boom")

    transport = WebSocketServerTransport(handler)
    async with run_asgi_app(transport), websocket_peer(transport) as (peer, first):
        accepted(first)
        await peer.send_text({"jsonrpc": "2.0", "method": "notifications/anything"})
        assert await peer.closed() == (1011, "handler failed")
    assert len(transport.sessions) == 0
    assert "handler failed" in caplog.text


async def test_http_app_serves_websocket_beside_streamable_http_on_one_host() -> None:
    app = make_server().http_app(websocket=True, limits=SessionLimits(max_sessions=1))
    streamable = app.extensions["trio_mcp_sse"]
    endpoint = app.extensions["trio_mcp_sse.websocket"]
    assert endpoint.host is streamable.host
    async with run_asgi_app(app), websocket_peer(app) as (peer, first):
        accepted(first)
        assert (await peer.initialize())["result"]["serverInfo"]["name"] == "ws-test"
        assert len(streamable.sessions) == 1
        async with websocket_peer(app) as (second, answer):  # the cap counts every transport's sessions
            assert (await refusal(second, answer))[0] == 503
        await peer.disconnect()
    assert "trio_mcp_sse.websocket" not in make_server().http_app(websocket=False).extensions
