"""The HTTP+SSE transport over an in-memory ASGI harness (mock clock, no sockets)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from trio_mcp_sse import MCPServer, SecuritySettings, SessionLimits
from trio_mcp_sse._jsonrpc import JSONRPCRequest, result_response
from trio_mcp_sse.lowlevel import Session, SseServerTransport
from trio_mcp_sse.testing import ASGITestClient, run_asgi_app

from .conftest import error_records

JSON = ("content-type", "application/json")
HOST = ("host", "127.0.0.1:8000")


def session_id_of(endpoint: str) -> str:
    assert endpoint.startswith("/messages/?session_id=")
    return endpoint.rsplit("=", 1)[1]


def request(id: int | str, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


async def echo_handler(session: Session) -> None:
    """Answers every request with its own params: the transport, nothing else."""
    async for incoming in session.incoming:
        message = incoming.message
        if isinstance(message, JSONRPCRequest):
            await session.send(result_response(message.id, {"echo": message.params or {}}))


@pytest.fixture
async def harness() -> AsyncIterator[ASGITestClient]:
    async with run_asgi_app(SseServerTransport(echo_handler)) as h:
        yield h


async def post(h: ASGITestClient, session_id: str, body: bytes, headers: Any = (HOST, JSON), **kw: Any) -> Any:
    return await h.request("POST", "/messages/", query=f"session_id={session_id}", headers=headers, body=body, **kw)


# -- the stream ---------------------------------------------------------------------------------
async def test_stream_headers_and_endpoint_event(harness: ASGITestClient) -> None:
    async with harness.stream() as stream:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-cache, no-transform"
        assert stream.headers["x-accel-buffering"] == "no"
        endpoint = await stream.endpoint()
        sid = session_id_of(endpoint)
        assert len(sid) == 32 and int(sid, 16) >= 0
        assert stream.raw.startswith(b"event: endpoint\ndata: /messages/?session_id=")


async def test_session_ids_are_unique(harness: ASGITestClient) -> None:
    ids = set()
    for _ in range(20):
        async with harness.stream() as stream:
            ids.add(session_id_of(await stream.endpoint()))
    assert len(ids) == 20


async def test_endpoint_honours_mount_prefix() -> None:
    async with run_asgi_app(SseServerTransport(echo_handler)) as h, h.stream(root_path="/tools/mcp") as stream:
        endpoint = await stream.endpoint()
        assert endpoint.startswith("/tools/mcp/messages/?session_id=")
        sid = endpoint.rsplit("=", 1)[1]
        response = await h.request(
            "POST", "/messages/", root_path="/tools/mcp", query=f"session_id={sid}",
            headers=(HOST, JSON), body=request(1, "ping"),
        )
        assert response.status == 202
        assert (await stream.next_message())["id"] == 1


async def test_custom_paths() -> None:
    transport = SseServerTransport(echo_handler, sse_path="/events", message_path="/rpc")
    async with run_asgi_app(transport) as h, h.stream("/events") as stream:
        endpoint = await stream.endpoint()
        assert endpoint.startswith("/rpc?session_id=")
        assert (await h.request("GET", "/sse")).status == 404


async def test_messages_flow_in_order(harness: ASGITestClient) -> None:
    async with harness.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        for i in range(10):
            assert (await post(harness, sid, request(i, "x", {"n": i}))).status == 202
        for i in range(10):
            assert await stream.next_message() == {"jsonrpc": "2.0", "id": i, "result": {"echo": {"n": i}}}


async def test_keepalive_comment_at_exact_interval(autojump_clock: trio.testing.MockClock) -> None:
    async with run_asgi_app(SseServerTransport(echo_handler, keepalive_interval=7.5)) as h, h.stream() as stream:
        await stream.endpoint()
        start = trio.current_time()
        arrivals = []
        for _ in range(3):
            chunk = await stream.read_chunk()
            assert chunk == b": ping\n\n"
            arrivals.append(trio.current_time() - start)
        assert arrivals == [7.5, 15.0, 22.5]


async def test_keepalive_interval_restarts_after_traffic(autojump_clock: trio.testing.MockClock) -> None:
    async with run_asgi_app(SseServerTransport(echo_handler, keepalive_interval=10)) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        await trio.sleep(6)
        assert (await post(h, sid, request(1, "x"))).status == 202
        await stream.next_message()
        sent_at = trio.current_time()
        assert await stream.read_chunk() == b": ping\n\n"
        assert trio.current_time() - sent_at == 10


async def test_keepalive_can_be_disabled(autojump_clock: trio.testing.MockClock) -> None:
    transport = SseServerTransport(echo_handler, keepalive_interval=None, limits=SessionLimits(idle_timeout=None))
    async with run_asgi_app(transport) as h, h.stream() as stream:
        await stream.endpoint()
        with trio.move_on_after(3600) as waited:
            await stream.read_chunk()
        assert waited.cancelled_caught
        assert b"ping" not in stream.raw


async def test_default_keepalive_is_fifteen_seconds(autojump_clock: trio.testing.MockClock, harness: ASGITestClient) -> None:
    async with harness.stream() as stream:
        await stream.endpoint()
        start = trio.current_time()
        assert await stream.read_chunk() == b": ping\n\n"
        assert trio.current_time() - start == 15


# -- disconnect and cleanup ---------------------------------------------------------------------
async def test_disconnect_cancels_session_and_empties_registry(library_errors: pytest.LogCaptureFixture) -> None:
    cancelled = trio.Event()
    started = trio.Event()

    async def handler(session: Session) -> None:
        try:
            started.set()
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    transport = SseServerTransport(handler)
    async with run_asgi_app(transport) as h:
        async with h.stream() as stream:
            await stream.endpoint()
            await started.wait()
            assert len(transport.sessions) == 1
            stream.disconnect()
            with trio.fail_after(5):
                await cancelled.wait()
        assert len(transport.sessions) == 0
    assert error_records(library_errors) == []


async def test_disconnect_mid_request_cancels_the_request(library_errors: pytest.LogCaptureFixture) -> None:
    server = MCPServer("t")
    in_tool = trio.Event()
    tool_cancelled = trio.Event()

    @server.tool
    async def slow() -> str:
        in_tool.set()
        try:
            await trio.sleep_forever()
        finally:
            tool_cancelled.set()
        return "never"  # pragma: no cover

    transport = server.sse_transport()
    async with run_asgi_app(transport) as h:
        async with h.stream() as stream:
            sid = session_id_of(await stream.endpoint())
            await initialize(h, stream, sid)
            assert (await post(h, sid, request(2, "tools/call", {"name": "slow"}))).status == 202
            with trio.fail_after(5):
                await in_tool.wait()
        with trio.fail_after(5):
            await tool_cancelled.wait()
        assert len(transport.sessions) == 0
    assert error_records(library_errors) == []


async def test_post_after_disconnect_is_404(harness: ASGITestClient) -> None:
    async with harness.stream() as stream:
        sid = session_id_of(await stream.endpoint())
    assert (await post(harness, sid, request(1, "x"))).status == 404


async def test_exception_in_one_session_leaves_others_running(library_errors: pytest.LogCaptureFixture) -> None:
    async def handler(session: Session) -> None:
        async for incoming in session.incoming:
            message = incoming.message
            assert isinstance(message, JSONRPCRequest)
            if message.method == "explode":
                raise RuntimeError("boom")
            await session.send(result_response(message.id, {}))

    transport = SseServerTransport(handler)
    async with run_asgi_app(transport) as h, h.stream() as healthy, h.stream() as doomed:
        healthy_sid = session_id_of(await healthy.endpoint())
        doomed_sid = session_id_of(await doomed.endpoint())
        assert (await post(h, doomed_sid, request(1, "explode"))).status == 202
        with trio.fail_after(5):
            await doomed.read_until_end()  # that stream ends cleanly
        assert doomed.ended
        assert (await post(h, doomed_sid, request(2, "x"))).status == 404
        assert (await post(h, healthy_sid, request(3, "x"))).status == 202
        assert (await healthy.next_message())["id"] == 3
        assert len(transport.sessions) == 1
    [record] = error_records(library_errors)
    assert doomed_sid in record.getMessage()


async def test_handler_returning_ends_the_stream_cleanly() -> None:
    async def handler(session: Session) -> None:
        await session.send(b'{"jsonrpc":"2.0","method":"bye"}')

    async with run_asgi_app(SseServerTransport(handler)) as h, h.stream() as stream:
        await stream.endpoint()
        assert (await stream.next_message())["method"] == "bye"
        with trio.fail_after(5):
            await stream.read_until_end()
        assert stream.ended


async def test_lifespan_shutdown_closes_open_streams() -> None:
    started = trio.Event()

    async def handler(session: Session) -> None:
        started.set()
        await trio.sleep_forever()

    transport = SseServerTransport(handler)
    ended = False
    async with run_asgi_app(transport) as h, trio.open_nursery() as nursery:

        async def hold_stream() -> None:
            nonlocal ended
            async with h.stream() as stream:
                await stream.endpoint()
                await stream.read_until_end()
                ended = stream.ended

        nursery.start_soon(hold_stream)
        await started.wait()
        await transport.close_all_sessions()
    assert ended
    assert len(transport.sessions) == 0


# -- POST: the status table, row by row ------------------------------------------------------------
@pytest.fixture
async def live(harness: ASGITestClient) -> AsyncIterator[tuple[ASGITestClient, Any, str]]:
    async with harness.stream() as stream:
        yield harness, stream, session_id_of(await stream.endpoint())


async def test_accepted_is_202(live: tuple[ASGITestClient, Any, str]) -> None:
    h, _, sid = live
    response = await post(h, sid, request(1, "x"))
    assert (response.status, response.text) == (202, "")
    assert response.headers["content-length"] == "0"
    assert response.starts == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_on_messages_is_405(live: tuple[ASGITestClient, Any, str], method: str) -> None:
    h, _, sid = live
    response = await h.request(method, "/messages/", query=f"session_id={sid}", headers=(HOST, JSON))
    assert response.status == 405
    assert response.headers["allow"] == "POST"


async def test_wrong_method_on_stream_is_405(harness: ASGITestClient) -> None:
    response = await harness.request("POST", "/sse", headers=(HOST, JSON), body=b"{}")
    assert response.status == 405
    assert response.headers["allow"] == "GET"


async def test_declared_body_over_limit_is_413_before_reading(live: tuple[ASGITestClient, Any, str]) -> None:
    h, _, sid = live
    headers = (HOST, JSON, ("content-length", str(4 * 1024 * 1024 + 1)))
    response = await post(h, sid, b"", headers=headers)
    assert response.status == 413


async def test_streamed_body_over_limit_is_413() -> None:
    transport = SseServerTransport(echo_handler, security=SecuritySettings(max_body_size=1000))
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        chunks = [b"x" * 400] * 3  # chunked: no content-length
        response = await h.request("POST", "/messages/", query=f"session_id={sid}", headers=(HOST, JSON), body=chunks)
        assert response.status == 413
        ok = await h.request("POST", "/messages/", query=f"session_id={sid}", headers=(HOST, JSON), body=[request(1, "x")])
        assert ok.status == 202


async def test_body_at_exactly_the_limit_is_accepted() -> None:
    body = request(1, "x", {"pad": ""})
    body = body.replace(b'"pad": ""', b'"pad": "' + b"y" * (1000 - len(body)) + b'"')
    assert len(body) == 1000
    transport = SseServerTransport(echo_handler, security=SecuritySettings(max_body_size=1000))
    async with run_asgi_app(transport) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        assert (await post(h, sid, body)).status == 202


async def test_bad_host_is_421(live: tuple[ASGITestClient, Any, str]) -> None:
    h, _, sid = live
    response = await post(h, sid, request(1, "x"), headers=(("host", "evil.example"), JSON))
    assert response.status == 421


async def test_bad_host_on_stream_is_421(harness: ASGITestClient) -> None:
    response = await harness.request("GET", "/sse", headers=(("host", "evil.example:8000"),))
    assert response.status == 421
    assert len(harness.app.sessions) == 0


async def test_bad_origin_is_403(live: tuple[ASGITestClient, Any, str]) -> None:
    h, _, sid = live
    response = await post(h, sid, request(1, "x"), headers=(HOST, JSON, ("origin", "http://evil.example")))
    assert response.status == 403
    good = await post(h, sid, request(2, "x"), headers=(HOST, JSON, ("origin", "http://localhost:6274")))
    assert good.status == 202


async def test_bad_origin_on_stream_is_403(harness: ASGITestClient) -> None:
    response = await harness.request("GET", "/sse", headers=(HOST, ("origin", "https://evil.example")))
    assert response.status == 403


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
async def test_wrong_content_type_is_415(live: tuple[ASGITestClient, Any, str], content_type: str | None) -> None:
    h, _, sid = live
    headers = (HOST,) if content_type is None else (HOST, ("content-type", content_type))
    response = await post(h, sid, request(1, "x"), headers=headers)
    assert response.status == 415


async def test_content_type_parameters_are_fine(live: tuple[ASGITestClient, Any, str]) -> None:
    h, _, sid = live
    response = await post(h, sid, request(1, "x"), headers=(HOST, ("content-type", "Application/JSON; charset=utf-8")))
    assert response.status == 202


@pytest.mark.parametrize("query", ["", "session_id=", "session_id=abc", "sessionId=" + "a" * 32, "session_id=" + "A" * 32, "session_id=" + "g" * 32])
async def test_missing_or_malformed_session_id_is_400(harness: ASGITestClient, query: str) -> None:
    response = await harness.request("POST", "/messages/", query=query, headers=(HOST, JSON), body=request(1, "x"))
    assert response.status == 400
    assert "session_id" in response.text


async def test_unknown_session_is_404(harness: ASGITestClient) -> None:
    response = await post(harness, "0" * 32, request(1, "x"))
    assert (response.status, response.text) == (404, "Could not find session")


async def test_invalid_json_is_400_and_reported_on_the_stream(live: tuple[ASGITestClient, Any, str]) -> None:
    h, stream, sid = live
    response = await post(h, sid, b"{nope")
    assert response.status == 400
    assert "Parse error" in response.text
    error = await stream.next_message()
    assert error["id"] is None
    assert error["error"]["code"] == -32700


async def test_not_a_message_is_400_and_reported_with_its_id(live: tuple[ASGITestClient, Any, str]) -> None:
    h, stream, sid = live
    response = await post(h, sid, b'{"jsonrpc":"2.0","id":9,"method":["x"]}')
    assert response.status == 400
    error = await stream.next_message()
    assert (error["id"], error["error"]["code"]) == (9, -32600)
    # The session is unharmed.
    assert (await post(h, sid, request(10, "x"))).status == 202
    assert (await stream.next_message())["id"] == 10


async def test_rejections_never_echo_the_body(live: tuple[ASGITestClient, Any, str]) -> None:
    h, _, sid = live
    for body in (b"{secret-abc", b'["secret-abc"]'):
        response = await post(h, sid, body)
        assert b"secret-abc" not in response.body


async def test_status_table_order() -> None:
    """When several rules fail at once, the earliest row of the table wins."""
    transport = SseServerTransport(echo_handler, security=SecuritySettings(max_body_size=10))
    async with run_asgi_app(transport) as h:
        everything_wrong = (("host", "evil.example"), ("origin", "http://evil.example"), ("content-type", "text/plain"))
        big = (*everything_wrong, ("content-length", "11"))
        assert (await h.request("PUT", "/messages/", headers=big)).status == 405
        assert (await h.request("POST", "/messages/", headers=big, body=b"x" * 11)).status == 413
        assert (await h.request("POST", "/messages/", headers=everything_wrong)).status == 421
        assert (await h.request("POST", "/messages/", headers=(*everything_wrong[1:], HOST))).status == 403
        assert (await h.request("POST", "/messages/", headers=(HOST, ("content-type", "text/plain")))).status == 415
        assert (await h.request("POST", "/messages/", headers=(HOST, JSON))).status == 400
        assert (await h.request("POST", "/messages/", query="session_id=" + "0" * 32, headers=(HOST, JSON), body=b"{")).status == 404


async def test_full_inbound_queue_is_503_never_a_lost_202(autojump_clock: trio.testing.MockClock) -> None:
    release = trio.Event()
    seen: list[Any] = []

    async def stuck_handler(session: Session) -> None:
        await release.wait()
        async for incoming in session.incoming:
            seen.append(incoming.message.id)  # type: ignore[union-attr]

    limits = SessionLimits(inbound_buffer=2, deliver_timeout=3)
    async with run_asgi_app(SseServerTransport(stuck_handler, limits=limits)) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        statuses = [(await post(h, sid, request(i, "x"))).status for i in range(3)]
        assert statuses == [202, 202, 503]
        busy = await post(h, sid, request(3, "x"))
        assert busy.headers["retry-after"] == "1"
        release.set()
        await trio.sleep(1)
        assert seen == [0, 1]


async def test_unknown_path_is_404(harness: ASGITestClient) -> None:
    assert (await harness.request("GET", "/nope")).status == 404


# -- the MCP layer through the transport ------------------------------------------------------------
async def initialize(h: ASGITestClient, stream: Any, sid: str) -> dict[str, Any]:
    params = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    assert (await post(h, sid, request(0, "initialize", params))).status == 202
    result = await stream.next_message()
    notification = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
    assert (await post(h, sid, notification)).status == 202
    return dict(result)


async def test_slow_tool_does_not_block_ping(autojump_clock: trio.testing.MockClock) -> None:
    server = MCPServer("t")

    @server.tool
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "done"

    async with run_asgi_app(server.sse_transport()) as h, h.stream() as stream:
        sid = session_id_of(await stream.endpoint())
        await initialize(h, stream, sid)
        start = trio.current_time()
        await post(h, sid, request(1, "tools/call", {"name": "slow", "arguments": {"seconds": 100}}))
        await post(h, sid, request(2, "tools/call", {"name": "slow", "arguments": {"seconds": 10}}))
        await post(h, sid, request(3, "ping"))
        first = await stream.next_message()
        assert first == {"jsonrpc": "2.0", "id": 3, "result": {}}
        assert trio.current_time() == start
        second = await stream.next_message()
        assert second["id"] == 2 and trio.current_time() - start == 10
        third = await stream.next_message()
        assert third["id"] == 1 and trio.current_time() - start == 100
        assert third["result"]["content"] == [{"type": "text", "text": "done"}]


async def test_quart_app_keeps_its_own_routes_and_lifespan() -> None:
    server = MCPServer("t")
    app = server.sse_app()
    assert isinstance(app, QuartTrio)
    events: list[str] = []

    @app.route("/health")
    async def health() -> str:
        return "ok"

    @app.before_serving
    async def startup() -> None:
        events.append("startup")

    @app.after_serving
    async def shutdown() -> None:
        events.append("shutdown")

    async with run_asgi_app(app) as h:
        assert events == ["startup"]
        response = await h.request("GET", "/health")
        assert (response.status, response.text) == (200, "ok")
        assert (await h.request("GET", "/missing")).status == 404
        async with h.stream() as stream:
            sid = session_id_of(await stream.endpoint())
            result = await initialize(h, stream, sid)
            assert result["result"]["serverInfo"]["name"] == "t"
        assert len(app.extensions["trio_mcp_sse"].sessions) == 0
    assert events == ["startup", "shutdown"]


async def test_without_lifespan_each_stream_hosts_its_session() -> None:
    transport = SseServerTransport(echo_handler)
    async with trio.open_nursery() as nursery:
        h = ASGITestClient(transport, nursery)
        async with h.stream() as stream:
            sid = session_id_of(await stream.endpoint())
            assert (await post(h, sid, request(1, "x"))).status == 202
            assert (await stream.next_message())["id"] == 1
        assert len(transport.sessions) == 0


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="start with"):
        SseServerTransport(echo_handler, sse_path="sse")
    with pytest.raises(ValueError, match="differ"):
        SseServerTransport(echo_handler, sse_path="/x", message_path="/x")
    with pytest.raises(ValueError, match="keepalive"):
        SseServerTransport(echo_handler, keepalive_interval=0)


async def test_without_lifespan_later_streams_outlive_the_first() -> None:
    transport = SseServerTransport(echo_handler)
    async with trio.open_nursery() as nursery:
        h = ASGITestClient(transport, nursery)
        async with h.stream() as first:
            await first.endpoint()
            async with h.stream() as second:
                sid = session_id_of(await second.endpoint())
                first.disconnect()
                await trio.testing.wait_all_tasks_blocked()
                assert len(transport.sessions) == 1
                assert (await post(h, sid, request(1, "x"))).status == 202
                assert (await second.next_message())["id"] == 1
        assert len(transport.sessions) == 0
        assert not transport.sessions.running


async def test_every_transport_of_an_app_joins_the_servers_drain_group(autojump_clock: trio.testing.MockClock) -> None:
    from trio_mcp_sse import DrainGroup

    inner = SseServerTransport(echo_handler, sse_path="/a/sse", message_path="/a/messages/")
    outer = SseServerTransport(echo_handler, sse_path="/b/sse", message_path="/b/messages/", health_path=None, ready_path=None)
    group = DrainGroup()
    async with run_asgi_app(group.wrap(outer.wrap(inner))) as h:
        assert len(group) == 2
        async with h.stream("/a/sse") as a, h.stream("/b/sse") as b:
            await a.endpoint()
            await b.endpoint()
            await group.drain(5)
            assert inner.draining and outer.draining
            await a.read_until_end()
            await b.read_until_end()
            assert a.ended and b.ended
    assert len(group) == 0


async def test_an_invalid_body_for_an_unknown_session_is_the_same_404(harness: ASGITestClient) -> None:
    response = await post(harness, "0" * 32, b"{nope")
    assert (response.status, response.text) == (404, "Could not find session")
