"""connect_streamable_http against a scripted server, in memory (no sockets, mock clock).

What a user relies on: the headers every request carries, JSON and event-stream
answers, a dropped stream resumed with ``Last-Event-ID`` after the server's
``retry``, and every way the connection can fail ending in a typed exception
instead of a hang.  Each test has an absolute ``fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import mcp_types
import pytest
import trio

from tests.client_helpers import FakeServer, answer_initialize, asgi_http_client
from tests.client_helpers_streamable import (
    ENDPOINT,
    SESSION_ID,
    Answer,
    FakeStreamableServer,
    message_event,
    priming_event,
    result,
)
from trio_mcp_sse import MCPError
from trio_mcp_sse.client import (
    ClientSession,
    ConnectError,
    ConnectionClosedError,
    PostError,
    RequestTimeoutError,
    SessionExpiredError,
    StreamableHTTPConnection,
    connect_streamable_http,
    open_session,
)
from trio_mcp_sse.client._open import choose_transport

TEXT_RESULT = {"content": [{"type": "text", "text": "done"}]}


@asynccontextmanager
async def session_with(
    server: FakeStreamableServer, **options: Any
) -> AsyncIterator[tuple[ClientSession, StreamableHTTPConnection]]:
    handlers = {
        key: options.pop(key)
        for key in ("elicitation_handler", "sampling_handler")
        if key in options
    }
    async with (
        asgi_http_client(server, lifespan=False) as http_client,
        connect_streamable_http(ENDPOINT, http_client=http_client, **options) as connection,
        ClientSession(connection, **handlers) as session,
    ):
        await session.initialize()
        yield session, connection


def _text(call: mcp_types.CallToolResult) -> str:
    block = call.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def test_json_answers_and_the_headers_every_request_carries(autojump_clock: Any) -> None:
    server = FakeStreamableServer(protocol_version="2025-06-18")
    with trio.fail_after(10):
        async with session_with(server) as (session, connection):
            assert session.protocol_version == "2025-06-18"
            assert connection.session_id == SESSION_ID
            assert connection.protocol_version == "2025-06-18"
            assert (await session.list_tools()).tools == []
            # The standalone stream is asked for once initialized; 405 is fine.
            await server.wait_for(lambda: server.requests("GET"))
            await session.ping()  # still usable
    initialize, initialized, listing = (
        server.posted("initialize")[0],
        server.posted("notifications/initialized")[0],
        server.posted("tools/list")[0],
    )
    for seen in (initialize, initialized, listing):
        assert seen.headers["accept"] == "application/json, text/event-stream"
        assert seen.headers["content-type"] == "application/json"
    assert "mcp-session-id" not in initialize.headers
    assert "mcp-protocol-version" not in initialize.headers
    for seen in (initialized, listing, *server.requests("GET"), *server.requests("DELETE")):
        assert seen.headers["mcp-session-id"] == SESSION_ID
        assert seen.headers["mcp-protocol-version"] == "2025-06-18"
    get = server.requests("GET")[0]
    assert get.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in get.headers
    assert len(server.requests("DELETE")) == 1  # the session is deleted on close


async def test_an_event_stream_answer_carries_progress_and_a_server_request(
    autojump_clock: Any,
) -> None:
    server = FakeStreamableServer()
    elicit = {
        "jsonrpc": "2.0",
        "id": "s1",
        "method": "elicitation/create",
        "params": {
            "message": "name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
    }

    def call(message: dict[str, Any]) -> Answer:
        progress = {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {
                "progressToken": message["params"]["_meta"]["progressToken"],
                "progress": 1,
                "total": 2,
                "message": "half",
            },
        }

        async def after_the_reply() -> list[bytes]:
            await server.wait_for(lambda: replies())
            return [message_event(result(message, TEXT_RESULT), id="e3")]

        return Answer(
            frames=[priming_event("e0"), message_event(progress, id="e1"), message_event(elicit, id="e2")],
            then=after_the_reply,
        )

    def replies() -> list[Any]:
        return [seen.message for seen in server.requests("POST") if seen.message.get("id") == "s1"]

    server.answers["tools/call"] = call
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def answer_elicitation(params: Any) -> dict[str, Any]:
        assert params.message == "name?"
        return {"action": "accept", "content": {"name": "Ada"}}

    with trio.fail_after(10):
        async with session_with(server, elicitation_handler=answer_elicitation) as (session, _):
            assert _text(await session.call_tool("t", progress=on_progress)) == "done"
            await server.wait_for(lambda: server.requests("GET"))  # the standalone stream (405)
    assert progress == [(1.0, 2.0, "half")]
    assert replies() == [
        {"jsonrpc": "2.0", "id": "s1", "result": {"action": "accept", "content": {"name": "Ada"}}}
    ]


async def test_a_dropped_stream_is_resumed_with_last_event_id_after_retry(
    autojump_clock: Any,
) -> None:
    server = FakeStreamableServer()
    closed_at: list[float] = []

    def call(message: dict[str, Any]) -> Answer:
        closed_at.append(trio.current_time())
        server.get_answers.append(Answer(frames=[message_event(result(message, TEXT_RESULT), id="e2")]))
        # A priming event with an id and a retry of 500 ms, then the connection is closed.
        return Answer(frames=[priming_event("e1", retry=500)])

    server.answers["tools/call"] = call
    with trio.fail_after(10):
        async with session_with(server, standalone_stream=False) as (session, _):
            assert _text(await session.call_tool("slow")) == "done"
    (resume,) = server.requests("GET")
    assert resume.headers["last-event-id"] == "e1"
    assert resume.headers["mcp-session-id"] == SESSION_ID
    assert resume.time - closed_at[0] >= 0.5  # the server's retry was honoured
    assert resume.time - closed_at[0] < 0.6


async def test_resumption_is_retried_a_bounded_number_of_times(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    server.answers["tools/call"] = lambda message: Answer(frames=[priming_event("e1", retry=100)])
    server.get_answers = [Answer(status=503)] * 10

    async def scenario() -> None:
        async with session_with(server, standalone_stream=False, reconnect_attempts=2) as (session, _):
            await session.call_tool("slow")

    with trio.fail_after(10), pytest.raises(ConnectionClosedError, match=r"could not be resumed \(2 attempts\)"):
        await scenario()
    assert [seen.headers["last-event-id"] for seen in server.requests("GET")] == ["e1", "e1"]


async def test_a_stream_ending_without_an_event_id_fails_the_connection(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    server.answers["tools/call"] = lambda message: Answer(frames=[b": nothing to say\n\n"])

    async def scenario() -> None:
        async with session_with(server) as (session, _):
            await session.call_tool("t")
            pytest.fail("the call cannot be answered")

    with trio.fail_after(10), pytest.raises(ConnectionClosedError, match="no event id to resume from"):
        await scenario()


async def test_404_for_the_session_fails_every_pending_request(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    server.answers["tools/call"] = lambda message: Answer(end=False, frames=[priming_event("e1")])
    server.answers["tools/list"] = lambda message: Answer(status=404, body=b"Session not found")

    async def scenario() -> None:
        async with session_with(server, standalone_stream=False) as (session, _):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.call_tool, "waits")
                await server.wait_for(lambda: server.posted("tools/call"))
                await session.list_tools()
            pytest.fail("the pending call must not keep waiting")

    with trio.fail_after(10), pytest.raises(SessionExpiredError) as raised:
        await scenario()
    assert raised.value.session_id == SESSION_ID
    assert "no longer knows session session-1" in str(raised.value)
    assert server.requests("DELETE") == []  # nothing left to delete


async def test_a_request_given_up_on_stops_its_stream_without_failing_the_connection(
    autojump_clock: Any,
) -> None:
    server = FakeStreamableServer()

    def call(message: dict[str, Any]) -> Answer:
        async def end_once_cancelled() -> list[bytes]:
            await server.wait_for(lambda: server.posted("notifications/cancelled"))
            return []  # then the stream ends without a response, as servers do

        return Answer(frames=[b": working\n\n"], then=end_once_cancelled)

    server.answers["tools/call"] = call
    with trio.fail_after(10):
        async with session_with(server) as (session, connection):
            with pytest.raises(RequestTimeoutError):
                await session.call_tool("slow", request_timeout=1)
            (cancelled,) = server.posted("notifications/cancelled")
            assert cancelled.message["params"]["requestId"] == server.posted("tools/call")[0].message["id"]
            await trio.sleep(1)
            await session.ping()
            assert not connection.closed


async def test_an_http_error_answer_fails_only_its_request(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    server.answers["tools/call"] = lambda message: Answer(status=500, body=b"boom")
    with trio.fail_after(10):
        async with session_with(server) as (session, connection):
            with pytest.raises(MCPError) as raised:
                await session.call_tool("t")
            assert raised.value.code == -32603
            assert raised.value.message == f"POST to {ENDPOINT} answered 500 Internal Server Error: boom"
            assert raised.value.data == {"httpStatus": 500}
            assert (await session.list_tools()).tools == []
            assert not connection.closed


async def test_a_refused_notification_raises_to_its_sender(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    with trio.fail_after(10):
        async with session_with(server) as (session, _):
            server.answers["tools/list"] = lambda message: Answer(json=result(message, {"tools": []}))
            original = server._answer_post
            server._answer_post = lambda message: (  # type: ignore[method-assign]
                Answer(status=400, body=b"bad") if "id" not in message else original(message)
            )
            with pytest.raises(PostError) as raised:
                await session.send_notification("notifications/roots/list_changed")
            assert raised.value.status_code == 400
            await session.ping()


async def test_an_event_over_max_event_size_fails_the_connection(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    # One event's data arriving in pieces, never finished: memory must stay bounded.
    pieces = [b"data: " + b"x" * 60 + b"\n"] * 10
    server.answers["tools/call"] = lambda message: Answer(end=False, frames=[priming_event("e1"), *pieces])

    async def scenario() -> None:
        async with session_with(server, max_event_size=200) as (session, _):
            await session.call_tool("big")

    with trio.fail_after(10), pytest.raises(ConnectionClosedError, match=r"over max_event_size \(200 bytes\)"):
        await scenario()


async def test_events_split_across_chunks_are_not_mistaken_for_one_big_event(
    autojump_clock: Any,
) -> None:
    server = FakeStreamableServer()
    progress = [
        message_event(
            {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x" * 50}}
        )
        for _ in range(20)
    ]

    def call(message: dict[str, Any]) -> Answer:
        stream = b"".join([priming_event("e1"), *progress, message_event(result(message, TEXT_RESULT))])
        # Every chunk ends in the middle of an event.
        return Answer(frames=[stream[start : start + 97] for start in range(0, len(stream), 97)])

    server.answers["tools/call"] = call
    with trio.fail_after(10):
        async with session_with(server, max_event_size=200) as (session, _):
            assert _text(await session.call_tool("chatty")) == "done"


async def test_no_session_id_means_no_delete(autojump_clock: Any) -> None:
    server = FakeStreamableServer(session_id=None)
    with trio.fail_after(10):
        async with session_with(server) as (session, connection):
            assert connection.session_id is None
            await session.ping()
    assert server.requests("DELETE") == []
    assert all("mcp-session-id" not in seen.headers for seen in server.seen)


async def test_delete_405_is_fine_and_the_standalone_stream_delivers(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    server.delete_status = 405
    changed = {
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
    }
    server.get_answers.append(Answer(end=False, frames=[priming_event("g1"), message_event(changed, id="g2")]))
    got = trio.Event()

    async def on_changed(notification: Any) -> None:
        got.set()

    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http_client,
            connect_streamable_http(ENDPOINT, http_client=http_client) as connection,
            ClientSession(
                connection, notification_handlers={"notifications/tools/list_changed": on_changed}
            ) as session,
        ):
            await session.initialize()
            await got.wait()
    assert len(server.requests("DELETE")) == 1


async def test_nothing_listening_is_a_connect_error(autojump_clock: Any) -> None:
    class Refusing(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("All connection attempts failed", request=request)

    with trio.fail_after(10), pytest.raises(ConnectError, match=f"cannot connect to {ENDPOINT}"):
        async with (
            httpx.AsyncClient(transport=Refusing()) as http_client,
            connect_streamable_http(ENDPOINT, http_client=http_client) as connection,
            ClientSession(connection) as session,
        ):
            await session.initialize()


async def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="absolute http"):
        async with connect_streamable_http("ftp://x/mcp"):
            pass
    with pytest.raises(ValueError, match="read_timeout must be > 0"):
        async with connect_streamable_http(ENDPOINT, read_timeout=0):
            pass


# -- open_session: the transport from the URL's answer ---------------------------------------------
def test_auto_takes_a_path_ending_in_sse_as_http_sse() -> None:
    assert choose_transport("http://h/sse", "auto") == "sse"
    assert choose_transport("http://h/tools/sse/", "auto") == "sse"
    assert choose_transport("http://h/mcp", "auto") == "streamable-http"
    assert choose_transport("http://h/", "auto") == "streamable-http"
    assert choose_transport("http://h/sse", "streamable-http") == "streamable-http"


async def test_open_session_falls_back_to_http_sse_when_the_post_gets_405(
    autojump_clock: Any,
) -> None:
    posted: list[dict[str, Any]] = []

    def status(message: dict[str, Any]) -> int:
        posted.append(message)
        return 405 if len(posted) == 1 else 202  # the first is the Streamable HTTP attempt

    async def on_post(server: FakeServer, message: dict[str, Any]) -> None:
        await answer_initialize(server, message)

    server = FakeServer(post_status=status, on_post=on_post)
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http_client,
            open_session(ENDPOINT, http_client=http_client, protocol="handshake") as session,
        ):
            assert session.server_info is not None
            assert session.server_info.name == "fake"
    assert [message.get("method") for message in posted] == [
        "initialize",
        "initialize",
        "notifications/initialized",
    ]
    assert server.get_headers["accept"] == "text/event-stream"


async def test_open_session_does_not_fall_back_on_other_failures(autojump_clock: Any) -> None:
    server = FakeStreamableServer()
    server.answers["initialize"] = lambda message: Answer(status=500, body=b"broken")
    with trio.fail_after(10), pytest.raises(PostError, match="answered 500 Internal Server Error: broken"):
        async with asgi_http_client(server, lifespan=False) as http_client:
            await _open(http_client)
    assert server.requests("GET") == []


async def _open(http_client: httpx.AsyncClient) -> None:
    async with open_session(ENDPOINT, http_client=http_client):
        pytest.fail("the session cannot open")
