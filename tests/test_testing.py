"""The public in-memory test helpers (``trio_mcp_sse.testing``), and the example in docs/testing.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_mcp_sse import MCPServer
from trio_mcp_sse.client import ConnectionClosedError, connect_sse
from trio_mcp_sse.lowlevel import Delivery, Session, result_response
from trio_mcp_sse.testing import (
    connected_client,
    make_scope,
    open_http_transport,
    run_asgi_app,
    serve_sessions,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def make_server() -> MCPServer:
    server = MCPServer("probe", "2.0")

    @server.tool
    async def echo(text: str) -> str:
        """Echo."""
        return text

    @server.tool
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await trio.sleep(seconds)
        return "done"

    return server


def doc_example() -> dict[str, Any]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    "name",
    [
        "test_forecast_tool",
        "test_forecast_over_http_and_sse",
        "test_forecast_over_streamable_http",
        "test_the_trio_client_against_the_server",
    ],
)
async def test_the_documented_example_passes(name: str) -> None:
    await doc_example()[name]()


async def test_connected_client_has_done_the_handshake() -> None:
    async with connected_client(make_server(), client_info={"name": "me", "version": "9"}) as client:
        assert await client.call("ping") == {}
        tools = await client.call("tools/list")
        assert sorted(tool["name"] for tool in tools["tools"]) == ["echo", "slow"]


async def test_slow_tools_finish_on_the_mock_clock(autojump_clock: trio.abc.Clock) -> None:
    async with connected_client(make_server()) as client:
        before = trio.current_time()
        result = await client.call("tools/call", {"name": "slow", "arguments": {"seconds": 9}})
        assert result["content"] == [{"type": "text", "text": "done"}]
        assert trio.current_time() - before == pytest.approx(9)


async def test_call_error_returns_the_error_and_call_refuses_one() -> None:
    async with connected_client(make_server()) as client:
        error = await client.call_error("no/such/method")
        assert error["code"] == -32601
        with pytest.raises(AssertionError, match="expected a result"):
            await client.call("no/such/method")


async def test_responses_skip_messages_into_the_backlog_in_order() -> None:
    async with connected_client(make_server()) as client:
        first = await client.request("ping")
        second = await client.request("tools/list")
        assert "tools" in (await client.response(second))["result"]
        assert client.backlog == [{"jsonrpc": "2.0", "id": first, "result": {}}]
        assert await client.receive() == {"jsonrpc": "2.0", "id": first, "result": {}}
        assert client.backlog == []


async def test_a_receive_that_never_comes_fails_within_the_bound(autojump_clock: trio.abc.Clock) -> None:
    async with connected_client(make_server()) as client:
        with pytest.raises(trio.TooSlowError):
            await client.receive()


async def test_serve_sessions_takes_a_plain_session_handler() -> None:
    async def handler(session: Session) -> None:
        async for incoming in session.incoming:
            message = incoming.message
            await session.send(result_response(message.id, {"seen": dict(incoming.headers)}))  # type: ignore[union-attr]

    async with serve_sessions(handler) as host:
        client = await host.connect(principal="alice")
        assert client.session.principal == "alice"
        delivery = await client.send({"jsonrpc": "2.0", "id": 7, "method": "x"}, {"x-probe": "1"})
        assert delivery is Delivery.ACCEPTED
        assert await client.response(7) == {"jsonrpc": "2.0", "id": 7, "result": {"seen": {"x-probe": "1"}}}


async def test_asgi_requests_and_the_sse_handshake() -> None:
    app = make_server().sse_app()
    async with run_asgi_app(app) as http:
        missing = await http.request("GET", "/nowhere")
        assert missing.status == 404
        assert missing.starts == 1
        async with http.stream("/sse") as stream:
            assert stream.status == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            endpoint = await stream.endpoint()
            assert re.fullmatch(r"/messages/\?session_id=[0-9a-f]{32}", endpoint)
            assert bytes(stream.raw).startswith(b"event: endpoint\r\ndata: /messages/") or bytes(
                stream.raw
            ).startswith(b"event: endpoint\ndata: /messages/")
        async with http.open_sse_session() as session:
            info = await session.initialize(version="2024-11-05")
            assert info["protocolVersion"] == "2024-11-05"
            answer = await session.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
            assert answer["result"]["content"] == [{"type": "text", "text": "hi"}]
            assert (await session.post({"jsonrpc": "2.0", "id": 99, "method": "ping"})).status == 202
            assert await session.next_message() == {"jsonrpc": "2.0", "id": 99, "result": {}}


async def test_the_stream_refuses_a_second_response_start_unless_lenient() -> None:
    async def twice(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        await send({"type": "http.response.start", "status": 500, "headers": []})

    async with run_asgi_app(twice, strict=False) as http, http.stream("/") as stream:
        assert (await stream.next_event()).data == "x"
        await stream.read_until_end()
        assert stream.ended
    with pytest.raises(BaseExceptionGroup) as caught:
        async with run_asgi_app(twice) as http, http.stream("/") as stream:
            await stream.read_until_end()
    assert caught.group_contains(AssertionError, match="second http.response.start")


def test_make_scope_builds_an_http_scope() -> None:
    scope = make_scope("POST", "/messages/", query="a=1", headers=[("Host", "h")], root_path="/mcp")
    assert scope["path"] == "/mcp/messages/"
    assert scope["raw_path"] == b"/mcp/messages/"
    assert scope["root_path"] == "/mcp"
    assert scope["query_string"] == b"a=1"
    assert scope["headers"] == [(b"host", b"h")]
    assert scope["method"] == "POST"


async def test_the_in_memory_http_transport_records_requests_and_can_die() -> None:
    app = make_server().sse_app()
    async with open_http_transport(app) as transport, httpx.AsyncClient(
        transport=transport, base_url="http://testserver"
    ) as http:
        with pytest.raises(ConnectionClosedError, match="broke"):  # noqa: PT012
            async with connect_sse(
                "http://testserver/sse", http_client=http, headers={"x-probe": "1"}
            ) as connection:
                assert connection.endpoint.startswith("http://testserver/messages/?session_id=")
                assert transport.requests[0].method == "GET"
                assert transport.requests[0].headers["x-probe"] == "1"
                transport.kill()
                await connection.incoming.receive()
        with pytest.raises(httpx.ConnectError):
            await http.get("/sse")
