"""connect_sse: the endpoint handshake, and every way a connection fails ending in an exception.

In memory (no sockets), so timed cases run on ``autojump_clock``; each test
still carries an absolute ``fail_after`` so a regression shows up as a
failure, never as a hung suite.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio

from tests.client_helpers import (
    BASE_URL,
    SSE_URL,
    FakeServer,
    answer_initialize,
    asgi_http_client,
    keepalive,
)
from trio_mcp_sse import MCPServer
from trio_mcp_sse.client import (
    ClientError,
    ConnectionClosedError,
    EndpointError,
    EndpointOriginError,
    PostError,
    ReadTimeoutError,
    SSEConnection,
    SSEConnectionError,
    SSEResponseError,
    connect_sse,
)
from trio_mcp_sse.client._transport import _describe

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2024-11-05",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}


def _echo_server() -> MCPServer:
    server = MCPServer("echo", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        return text

    return server


async def test_handshake_with_our_server_resolves_the_endpoint_and_carries_messages() -> None:
    app = _echo_server().sse_app()
    with trio.fail_after(10):
        async with (
            asgi_http_client(app) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            assert connection.endpoint.startswith(f"{BASE_URL}/messages/?session_id=")
            assert connection.session_id is not None
            assert len(connection.session_id) == 32
            assert not connection.closed
            receive, send = connection  # the channel pair, like a server-side session
            await send.send(INITIALIZE)
            reply = await receive.receive()
            assert reply.id == 1
            assert reply.result["serverInfo"]["name"] == "echo"  # type: ignore[union-attr]
            # The direct path raises to its caller and returns once the server accepted.
            await connection.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            assert (await receive.receive()).id == 2
        assert connection.closed


async def test_the_get_asks_for_an_event_stream_and_carries_headers_and_auth() -> None:
    server = FakeServer(on_post=answer_initialize)
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(
                SSE_URL, http_client=http, headers={"x-tenant": "blue"}, auth=("user", "secret")
            ) as connection,
        ):
            await connection.send(INITIALIZE)
    assert server.get_headers["accept"] == "text/event-stream"
    assert server.get_headers["x-tenant"] == "blue"
    assert server.get_headers["authorization"].startswith("Basic ")
    assert server.post_headers[0]["x-tenant"] == "blue"
    assert server.post_headers[0]["authorization"] == server.get_headers["authorization"]
    assert server.post_headers[0]["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("/messages/?session_id=abc", f"{BASE_URL}/messages/?session_id=abc"),
        ("messages?sessionId=abc", f"{BASE_URL}/messages?sessionId=abc"),
        (f"{BASE_URL}/m/?session_id=abc", f"{BASE_URL}/m/?session_id=abc"),
        ("http://TESTSERVER:80/m?session_id=abc", "http://testserver/m?session_id=abc"),
    ],
)
async def test_same_origin_endpoints_are_resolved_against_the_stream_url(
    endpoint: str, expected: str
) -> None:
    server = FakeServer(endpoint=endpoint)
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            assert connection.endpoint == expected
            assert connection.session_id == "abc"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://evil.example/messages/?session_id=abc",
        "//evil.example/messages/?session_id=abc",
        "https://testserver/messages/?session_id=abc",
        "http://testserver:8080/messages/?session_id=abc",
    ],
)
async def test_an_endpoint_on_another_origin_is_refused(endpoint: str) -> None:
    server = FakeServer(endpoint=endpoint)
    with trio.fail_after(10), pytest.raises(EndpointOriginError) as caught:
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http),
        ):
            pytest.fail("connected to another origin")
    assert "another origin" in str(caught.value)
    assert caught.value.endpoint.startswith(
        ("http://evil.example/", "https://testserver/", "http://testserver:8080/")
    )
    assert server.posted == []


async def test_no_endpoint_event_times_out(autojump_clock: trio.testing.MockClock) -> None:
    # The server is alive (it even sends keepalives) but never says where to POST.
    server = FakeServer(endpoint=None, prelude=keepalive())
    with trio.fail_after(60):
        start = trio.current_time()
        with pytest.raises(EndpointError, match="no endpoint event"):
            async with (
                asgi_http_client(server, lifespan=False) as http,
                connect_sse(SSE_URL, http_client=http, timeout=5),
            ):
                pytest.fail("connected without an endpoint")
        assert trio.current_time() - start == pytest.approx(5)


async def test_an_empty_endpoint_event_is_refused() -> None:
    server = FakeServer(endpoint="  ")
    with trio.fail_after(10), pytest.raises(EndpointError, match="empty"):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http),
        ):
            pass


async def test_a_stream_ending_before_the_endpoint_fails() -> None:
    server = FakeServer(endpoint=None)
    server.end_stream()
    with trio.fail_after(10), pytest.raises(EndpointError, match="ended before an endpoint"):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http),
        ):
            pass


@pytest.mark.parametrize(
    ("status", "content_type", "body", "match"),
    [
        (404, "text/plain", b"Not found", "answered 404 Not Found"),
        (401, "application/json", b"{}", "answered 401 Unauthorized"),
        (200, "text/html; charset=utf-8", b"<html>hello</html>", "not an event stream"),
        (200, "application/json", b"{}", "not an event stream"),
    ],
)
async def test_a_get_that_is_not_an_event_stream_fails(
    status: int, content_type: str, body: bytes, match: str
) -> None:
    server = FakeServer(get_status=status, content_type=content_type, get_body=body)
    with trio.fail_after(10), pytest.raises(SSEResponseError, match=match) as caught:
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http),
        ):
            pass
    assert caught.value.status_code == status
    assert caught.value.content_type == content_type


async def test_a_redirect_is_reported_not_followed() -> None:
    async def redirect(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"location", b"http://testserver/sse/"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 307, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    with (
        trio.fail_after(10),
        pytest.raises(SSEResponseError, match=r"redirect to http://testserver/sse/"),
    ):
        async with (
            asgi_http_client(redirect, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http),
        ):
            pass


async def test_a_get_with_no_response_headers_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await trio.sleep_forever()

    with trio.fail_after(60), pytest.raises(SSEConnectionError, match=r"no response .* within 3 s"):
        async with (
            asgi_http_client(silent, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http, timeout=3),
        ):
            pass


async def test_read_timeout_without_keepalive(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer()
    with trio.fail_after(600):
        start = trio.current_time()
        with pytest.raises(ReadTimeoutError, match="for 30 s"):
            async with (
                asgi_http_client(server, lifespan=False) as http,
                connect_sse(SSE_URL, http_client=http, read_timeout=30) as connection,
            ):
                await connection.incoming.receive()  # the body is cancelled, not left waiting
        assert trio.current_time() - start == pytest.approx(30)


async def test_keepalive_comments_count_as_activity(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer()
    with trio.fail_after(600):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http, read_timeout=30) as connection,
        ):
            for _ in range(10):  # 200 s of silence but for comments
                await trio.sleep(20)
                await server.push_raw(keepalive())
            assert not connection.closed
            await server.push({"jsonrpc": "2.0", "method": "notifications/hello"})
            message = await connection.incoming.receive()
            assert message.method == "notifications/hello"  # type: ignore[union-attr]


async def test_unknown_events_and_invalid_messages_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer()
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            await server.push_raw(b"event: ping\ndata: {}\n\n")
            await server.push_raw(b"event: message\ndata: not json\n\n")
            await server.push_raw(b'event: message\ndata: {"jsonrpc": "2.0"}\n\n')
            await server.push_raw(b"event: message\ndata:\n\n")
            await server.push_raw(
                b"event: endpoint\ndata: http://evil.example/x\n\n"
            )  # repeated: ignored
            await server.push({"jsonrpc": "2.0", "method": "notifications/after"})
            message = await connection.incoming.receive()
            assert message.method == "notifications/after"  # type: ignore[union-attr]
            assert connection.endpoint.startswith(BASE_URL)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("ignoring an invalid message" in text for text in warnings)


async def test_stream_end_fails_the_block_and_cancels_its_body() -> None:
    server = FakeServer()
    body_cancelled = False
    connections: list[SSEConnection] = []

    async def scenario() -> None:
        nonlocal body_cancelled
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            connections.append(connection)
            server.end_stream()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                body_cancelled = True
                raise

    with (
        trio.fail_after(10),
        pytest.raises(ConnectionClosedError, match="closed the event stream") as caught,
    ):
        await scenario()
    assert body_cancelled
    assert connections[0].closed
    assert not isinstance(caught.value, BaseExceptionGroup)


async def test_server_dying_mid_stream_fails_the_block() -> None:
    server = FakeServer()

    async def scenario() -> None:
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            http.transport_under_test.kill()  # type: ignore[attr-defined]
            await connection.incoming.receive()

    with trio.fail_after(10), pytest.raises(ConnectionClosedError, match="broke"):
        await scenario()


async def test_post_500_through_the_channel_fails_the_connection() -> None:
    server = FakeServer(post_status=500)

    async def scenario() -> None:
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            await connection.outgoing.send(INITIALIZE)
            await connection.incoming.receive()  # would wait forever for a reply

    with trio.fail_after(10), pytest.raises(PostError) as caught:
        await scenario()
    assert caught.value.status_code == 500
    assert "answered 500 Internal Server Error: Internal Server Error: boom" in str(caught.value)


async def test_post_500_through_send_raises_to_the_caller_only() -> None:
    server = FakeServer(post_status=lambda message: 500 if message.get("id") == 1 else 202)
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            with pytest.raises(PostError, match="answered 500") as caught:
                await connection.send(INITIALIZE)
            assert caught.value.status_code == 500
            await connection.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})  # still usable
            assert not connection.closed
    assert [message["id"] for message in server.posted] == [1, 2]


async def test_a_post_with_no_answer_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer()
    stuck = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            stuck.set()
            await trio.sleep_forever()
        await server(scope, receive, send)

    with trio.fail_after(60):
        async with (
            asgi_http_client(app, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http, timeout=4) as connection,
        ):
            with pytest.raises(PostError, match="no answer within 4 s") as caught:
                await connection.send(INITIALIZE)
            assert caught.value.status_code is None
            assert stuck.is_set()


async def test_send_after_the_block_raises() -> None:
    server = FakeServer()
    with trio.fail_after(10):
        async with asgi_http_client(server, lifespan=False) as http:
            async with connect_sse(SSE_URL, http_client=http) as connection:
                pass
            with pytest.raises(ConnectionClosedError):
                await connection.send(INITIALIZE)


async def test_the_callers_own_exception_leaves_the_block_unchanged() -> None:
    server = FakeServer()
    with trio.fail_after(10):
        async with asgi_http_client(server, lifespan=False) as http:
            with pytest.raises(KeyError, match="mine"):
                async with connect_sse(SSE_URL, http_client=http):
                    raise KeyError("mine")
            # An outer cancel scope still works through the connection's nursery.
            with trio.move_on_after(0.01) as outer:
                async with connect_sse(SSE_URL, http_client=http):
                    await trio.sleep_forever()
            assert outer.cancelled_caught
            assert server.stream_closed.is_set()


async def test_the_stream_is_closed_when_the_block_ends() -> None:
    server = FakeServer()
    with trio.fail_after(10):
        async with asgi_http_client(server, lifespan=False) as http:
            async with connect_sse(SSE_URL, http_client=http):
                await server.stream_open.wait()
            await server.stream_closed.wait()


async def test_connection_refused_on_a_real_socket() -> None:
    from tests.client_helpers import free_port
    from trio_mcp_sse.client import ConnectError

    url = f"http://127.0.0.1:{free_port()}/sse"
    with trio.fail_after(10), pytest.raises(ConnectError, match="cannot connect") as caught:
        async with connect_sse(url, timeout=5):
            pass
    assert isinstance(caught.value, ClientError)
    assert "Connection refused" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ftp://example/sse", {}),
        ("/sse", {}),
        ("http://[::1", {}),
        (SSE_URL, {"timeout": 0}),
        (SSE_URL, {"read_timeout": -1}),
    ],
)
async def test_bad_arguments_are_refused_up_front(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the message varies by argument
        async with connect_sse(url, **options):
            pass


def test_os_reasons_are_dug_out_of_httpx_errors() -> None:
    refused = ConnectionRefusedError(
        111, "Error connecting to ('127.0.0.1', 1): Connection refused"
    )
    group = ExceptionGroup("all attempts failed", [refused])
    outer = httpx.ConnectError("all attempts to connect failed")
    outer.__cause__ = OSError("all attempts to connect failed")
    outer.__cause__.__context__ = group
    assert _describe(outer) == "all attempts to connect failed (Connection refused)"


def test_connection_repr_names_url_and_state() -> None:
    connection = SSEConnection(
        SSE_URL, client=httpx.AsyncClient(), headers={}, auth=None, timeout=1, read_timeout=1
    )
    assert repr(connection) == f"<SSEConnection {SSE_URL} open>"


async def test_leaving_while_the_reader_waits_on_a_full_buffer_is_clean() -> None:
    server = FakeServer()
    with trio.fail_after(10):
        async with asgi_http_client(server, lifespan=False) as http:
            async with connect_sse(SSE_URL, http_client=http) as connection:
                for index in range(100):  # more than the incoming buffer holds
                    await server.push(
                        {"jsonrpc": "2.0", "method": "notifications/n", "params": {"i": index}}
                    )
                await server.push(
                    {"jsonrpc": "2.0", "method": "notifications/n", "params": {"i": 100}}
                )
                first = await connection.incoming.receive()
                assert first.params == {"i": 0}  # type: ignore[union-attr]
                await trio.sleep(0.05)  # let the reader fill the buffer and block
            # Left normally: no ClosedResourceError from the blocked reader.
            assert connection.closed


async def test_an_injected_clients_short_read_timeout_does_not_cut_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    with trio.fail_after(600):
        async with asgi_http_client(server, lifespan=False) as http:
            http.timeout = httpx.Timeout(1)
            async with connect_sse(SSE_URL, http_client=http, read_timeout=60) as connection:
                seen: list[float] = []

                async def requests_extensions() -> None:
                    # The in-memory transport does not enforce timeouts; check what was asked for.
                    get = http.transport_under_test.requests[0]  # type: ignore[attr-defined]
                    seen.append(get.extensions["timeout"]["read"])

                await requests_extensions()
                assert seen == [60]
                await connection.send({"jsonrpc": "2.0", "method": "notifications/x"})
                post = http.transport_under_test.requests[1]  # type: ignore[attr-defined]
                assert post.extensions["timeout"]["read"] == 10
