"""The Streamable HTTP server transport in memory: exact answers, on the mock clock."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio

from trio_mcp_sse import AuthSettings, MCPServer, SessionLimits, StaticTokens
from trio_mcp_sse.server import Context
from trio_mcp_sse.testing import (
    ASGIResponse,
    ASGITestClient,
    EventStream,
    StreamableTestSession,
    messages_of,
    read_messages,
    run_asgi_app,
)

from .e2e_support import task_count

EVENT_ID = re.compile(r"[A-Za-z0-9_-]+\.\d+")


class Tools:
    """A server whose tools block on gates the test opens, and record what happened to them."""

    def __init__(self) -> None:
        self.server = MCPServer("streamable-test", "1.0.0")
        self.gates: dict[str, trio.Event] = {}
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        server = self.server

        @server.tool
        async def progress(ctx: Context) -> str:
            """Three progress notifications, then the answer."""
            for step in (1, 2, 3):
                await ctx.report_progress(step, 3)
            return "progressed"

        @server.tool
        async def gated(ctx: Context, name: str) -> str:
            """Report progress 1, wait for the test to open gate ``name``, report 2, answer."""
            gate = self.gates.setdefault(name, trio.Event())
            await ctx.report_progress(1)
            try:
                await gate.wait()
            except trio.Cancelled:
                self.cancelled.append(name)
                raise
            await ctx.report_progress(2)
            self.finished.append(name)
            return f"opened {name}"

        @server.tool
        async def reconnect(ctx: Context, name: str) -> str:
            """Report progress, end the response early, wait for gate ``name``, answer."""
            gate = self.gates.setdefault(name, trio.Event())
            await ctx.report_progress(1)
            await ctx.close_sse_stream()
            await gate.wait()
            self.finished.append(name)
            return "after reconnect"

        @server.tool
        async def ask(ctx: Context) -> str:
            """Elicit a name, then sample a completion; answer with both."""
            answer = await ctx.elicit("Your name?", {"type": "object", "properties": {"name": {"type": "string"}}})
            sampled = await ctx.sample("Say hi", max_tokens=10)
            assert answer.content is not None
            return f"{answer.content['name']} / {sampled.content.text}"  # type: ignore[union-attr]

        @server.tool
        async def silent(seconds: float) -> str:
            """Sleep, then answer."""
            await trio.sleep(seconds)
            return "woke"

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())


@asynccontextmanager
async def serving(tools: Tools | None = None, **options: Any) -> AsyncIterator[tuple[ASGITestClient, Any]]:
    """Run ``tools.server.http_app(**options)`` (Streamable HTTP only) in memory."""
    tools = tools or Tools()
    app = tools.server.http_app(sse_path=None, **options)
    async with run_asgi_app(app) as http:
        yield http, app.extensions["trio_mcp_sse"]


def call(request_id: int, name: str, arguments: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def error_body(response: ASGIResponse) -> dict[str, Any]:
    """The JSON-RPC error of a refusal; it must carry no id."""
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = orjson.loads(response.body)
    assert set(body) == {"jsonrpc", "error"}, body
    assert body["jsonrpc"] == "2.0"
    return body["error"]  # type: ignore[no-any-return]


async def priming(stream: EventStream) -> str:
    """Read the priming event (id, retry, empty data); return its id."""
    event = await stream.next_event()
    assert event.data == ""
    assert event.id is not None and EVENT_ID.fullmatch(event.id), event
    assert event.retry == 1000
    return event.id


async def initialized(http: ASGITestClient, **kwargs: Any) -> StreamableTestSession:
    session = StreamableTestSession(http, **kwargs)
    await session.initialize(capabilities={"elicitation": {}, "sampling": {}})
    return session


def text_of(response: dict[str, Any]) -> str:
    return response["result"]["content"][0]["text"]  # type: ignore[no-any-return]


# -- the handshake and the 202s ---------------------------------------------------------------------
async def test_initialize_mints_a_32_hex_session_id_and_answers_on_an_event_stream() -> None:
    async with serving() as (http, _):
        session = StreamableTestSession(http)
        response = await session.post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            }
        )
        assert response.status == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["mcp-session-id"])
        assert response.headers["content-type"] == "text/event-stream"
        [answer] = messages_of(response)
        assert answer["id"] == 1
        assert answer["result"]["protocolVersion"] == "2025-11-25"
        assert answer["result"]["serverInfo"]["name"] == "streamable-test"
        # A second initialize opens another session with another id.
        other = StreamableTestSession(http)
        await other.initialize()
        assert other.session_id != response.headers["mcp-session-id"]


async def test_notifications_and_responses_are_answered_202_with_an_empty_body() -> None:
    async with serving() as (http, _):
        session = await initialized(http)
        for message in (
            {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
            {"jsonrpc": "2.0", "id": "nobody-asked", "result": {}},
            {"jsonrpc": "2.0", "id": "nobody-asked-either", "error": {"code": -1, "message": "no"}},
        ):
            response = await session.post(message)
            assert (response.status, response.body) == (202, b"")
            assert response.headers["mcp-session-id"] == session.session_id
        # The session still works.
        assert (await session.request("ping")) == {"jsonrpc": "2.0", "id": session._last_id, "result": {}}


# -- a request's own stream -------------------------------------------------------------------------------
async def test_tool_call_with_progress_streams_priming_then_progress_then_response_then_ends() -> None:
    async with serving() as (http, _):
        session = await initialized(http)
        async with session.open_post(call(7, "progress", token="tok")) as stream:
            assert stream.status == 200
            assert stream.headers["content-type"] == "text/event-stream"
            assert stream.headers["mcp-session-id"] == session.session_id
            first_id = await priming(stream)
            assert stream.raw.startswith(f"id: {first_id}\nretry: 1000\ndata: \n\n".encode())
            messages = await read_messages(stream, 4)
            with trio.fail_after(10):
                await stream.read_until_end()
        assert [m.get("method") for m in messages] == ["notifications/progress"] * 3 + [None]
        assert [m["params"]["progress"] for m in messages[:3]] == [1, 2, 3]
        assert all(m["params"]["progressToken"] == "tok" for m in messages[:3])
        assert messages[3] == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {"content": [{"type": "text", "text": "progressed"}]},
        }
        assert stream.ended
        # Every event after the priming one has an id of the same stream.
        ids = re.findall(rb"^id: (.+)$", bytes(stream.raw), re.MULTILINE)
        assert len(ids) == 5
        assert len({i.rpartition(b".")[0] for i in ids}) == 1


@pytest.mark.parametrize(
    ("mode", "accept"),
    [("json", "application/json, text/event-stream"), ("sse", "application/json")],
    ids=["json-mode", "json-only-client"],
)
async def test_json_answers_are_one_body_and_related_notifications_go_to_the_standalone_stream(
    mode: str, accept: str
) -> None:
    async with serving(response_mode=mode) as (http, _):
        session = await initialized(http)
        async with session.open_get() as standalone:
            await priming(standalone)
            response = await session.post(call(3, "progress", token=9), accept=accept)
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers["content-length"] == str(len(response.body))
            assert orjson.loads(response.body) == {
                "jsonrpc": "2.0",
                "id": 3,
                "result": {"content": [{"type": "text", "text": "progressed"}]},
            }
            notes = await read_messages(standalone, 3)
        assert [(n["method"], n["params"]["progressToken"], n["params"]["progress"]) for n in notes] == [
            ("notifications/progress", 9, 1),
            ("notifications/progress", 9, 2),
            ("notifications/progress", 9, 3),
        ]


async def test_a_request_accepting_neither_json_nor_event_stream_is_406() -> None:
    async with serving() as (http, _):
        session = await initialized(http)
        response = await session.post(call(1, "progress"), accept="text/html")
        assert response.status == 406
        assert error_body(response)["code"] == -32000


async def test_server_requests_ride_the_post_stream_and_the_client_answers_by_post() -> None:
    async with serving() as (http, _):
        session = await initialized(http)
        async with session.open_post(call(11, "ask")) as stream:
            await priming(stream)
            [elicit] = await read_messages(stream, 1)
            assert elicit["method"] == "elicitation/create"
            assert elicit["params"]["message"] == "Your name?"
            await session.respond(elicit["id"], {"action": "accept", "content": {"name": "Ada"}})
            [sample] = await read_messages(stream, 1)
            assert sample["method"] == "sampling/createMessage"
            await session.respond(
                sample["id"],
                {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m", "stopReason": "endTurn"},
            )
            [answer] = await read_messages(stream, 1)
            with trio.fail_after(10):
                await stream.read_until_end()
        assert answer["id"] == 11
        assert text_of(answer) == "Ada / hi"


# -- the standalone stream ----------------------------------------------------------------------------------
async def test_standalone_stream_receives_list_changed_and_a_second_one_is_409() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_get() as standalone:
            assert standalone.status == 200
            assert standalone.headers["content-type"] == "text/event-stream"
            await priming(standalone)
            second = StreamableTestSession(http)
            second.session_id = session.session_id
            async with second.open_get() as conflict:
                assert conflict.status == 409
                await conflict.read_until_end()
            error = orjson.loads(bytes(conflict.raw))
            assert error == {
                "jsonrpc": "2.0",
                "error": {"code": -32000, "message": "This session already has a standalone stream"},
            }

            @tools.server.tool
            async def newcomer() -> str:
                """Added while the session is open."""
                return "new"

            [note] = await read_messages(standalone, 1)
            assert note == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
            assert standalone.decoder.last_event_id is not None
        # Once the first GET is gone, a new one is welcome.
        async with session.open_get() as again:
            assert again.status == 200


# -- resumption -------------------------------------------------------------------------------------------
async def test_resume_replays_exactly_that_streams_later_events() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_post(call(1, "gated", {"name": "a"}, token="a")) as stream_a:
            await priming(stream_a)
            [first_a] = await read_messages(stream_a, 1)
            assert first_a["params"]["progress"] == 1
            resume_from = stream_a.decoder.last_event_id
            assert resume_from is not None
        # Stream a is gone; b runs and finishes, a list_changed goes to the standalone stream,
        # then a finishes with nobody reading it.
        async with session.open_post(call(2, "gated", {"name": "b"}, token="b")) as stream_b:
            await priming(stream_b)
            tools.gate("b").set()
            b_messages = await read_messages(stream_b, 3)
        assert text_of(b_messages[-1]) == "opened b"
        tools.server.add_tool(lambda: "x", name="later")
        tools.gate("a").set()
        with trio.fail_after(10):
            while "a" not in tools.finished:
                await trio.sleep(0.01)
        await trio.sleep(0.1)  # let the answer be routed and stored
        async with session.open_get(last_event_id=resume_from) as resumed:
            assert resumed.status == 200
            with trio.fail_after(10):
                await resumed.read_until_end()
        replayed = messages_of(ASGIResponse(200, resumed.headers, bytes(resumed.raw)))
        assert [m.get("method") for m in replayed] == ["notifications/progress", None]
        assert replayed[0]["params"] == {"progressToken": "a", "progress": 2}
        assert replayed[1]["id"] == 1
        assert text_of(replayed[1]) == "opened a"
        ids = re.findall(rb"^id: (.+)$", bytes(resumed.raw), re.MULTILINE)
        assert {i.rpartition(b".")[0] for i in ids} == {resume_from.rpartition(".")[0].encode()}


async def test_close_sse_stream_ends_the_response_early_and_the_resume_delivers_the_result() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_post(call(4, "reconnect", {"name": "r"}, token="p")) as stream:
            await priming(stream)
            [note] = await read_messages(stream, 1)
            assert note["method"] == "notifications/progress"
            with trio.fail_after(10):
                await stream.read_until_end()  # the server ended it: no response on it
            last_id = stream.decoder.last_event_id
        assert b'"id":4' not in bytes(stream.raw)
        assert tools.finished == []
        assert last_id is not None
        async with session.open_get(last_event_id=last_id) as resumed:
            assert resumed.status == 200
            tools.gate("r").set()
            [answer] = await read_messages(resumed, 1)
            with trio.fail_after(10):
                await resumed.read_until_end()
        assert answer["id"] == 4
        assert text_of(answer) == "after reconnect"


async def test_a_dropped_post_stream_is_not_a_cancel_and_the_result_is_replayable() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_post(call(5, "gated", {"name": "d"})) as stream:
            priming_id = await priming(stream)
        tools.gate("d").set()
        with trio.fail_after(10):
            while "d" not in tools.finished:
                await trio.sleep(0.01)
        assert tools.cancelled == []
        await trio.sleep(0.1)
        async with session.open_get(last_event_id=priming_id) as resumed:
            with trio.fail_after(10):
                await resumed.read_until_end()
        [answer] = messages_of(ASGIResponse(200, resumed.headers, bytes(resumed.raw)))
        assert answer["id"] == 5
        assert text_of(answer) == "opened d"


async def test_an_unknown_last_event_id_is_400() -> None:
    async with serving() as (http, _):
        session = await initialized(http)
        for bogus in ("nonsense", "r99.12", "get.x"):
            async with session.open_get(last_event_id=bogus) as resumed:
                assert resumed.status == 400
                await resumed.read_until_end()
            body = orjson.loads(bytes(resumed.raw))
            assert body == {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Unknown Last-Event-ID"}}


async def test_notifications_cancelled_ends_the_stream_without_a_response() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_post(call(6, "gated", {"name": "c"})) as stream:
            await priming(stream)
            await session.notify("notifications/cancelled", {"requestId": 6, "reason": "changed my mind"})
            with trio.fail_after(10):
                await stream.read_until_end()
        assert tools.cancelled == ["c"]
        assert b'"id":6' not in bytes(stream.raw)
        # The id is free again.
        tools.gate("c2").set()
        answer = await session.request("tools/call", {"name": "gated", "arguments": {"name": "c2"}})
        assert text_of(answer) == "opened c2"


async def test_a_duplicate_in_flight_request_id_is_400() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_post(call(8, "gated", {"name": "dup"})) as stream:
            await priming(stream)
            response = await session.post(call(8, "progress"))
            assert response.status == 400
            assert error_body(response) == {"code": -32600, "message": "Request id is already in use in this session"}
            tools.gate("dup").set()
            [answer] = await read_messages(stream, 1)
        assert answer["id"] == 8
        assert text_of(answer) == "opened dup"


# -- the end of sessions -----------------------------------------------------------------------------------
async def test_delete_ends_the_session_and_its_streams_then_everything_is_404() -> None:
    async with serving() as (http, transport):
        session = await initialized(http)
        async with session.open_get() as standalone:
            await priming(standalone)
            deleted = await session.delete()
            assert deleted.status == 200
            assert deleted.body == b""
            with trio.fail_after(10):
                await standalone.read_until_end()
        assert len(transport.sessions) == 0
        for response in (
            await session.post(call(9, "progress")),
            await session.post({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            await session.delete(),
        ):
            assert response.status == 404
            assert error_body(response) == {"code": -32000, "message": "Could not find session"}
        async with session.open_get() as gone:
            assert gone.status == 404


async def test_the_session_cap_is_503_with_retry_after() -> None:
    async with serving(limits=SessionLimits(max_sessions=1)) as (http, _):
        await initialized(http)
        refused = await StreamableTestSession(http).post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            }
        )
        assert refused.status == 503
        assert refused.headers["retry-after"] == "5"
        assert "mcp-session-id" not in refused.headers
        assert error_body(refused) == {"code": -32000, "message": "Too many sessions; retry later"}


async def test_an_idle_session_expires_and_then_is_404(autojump_clock: trio.abc.Clock) -> None:
    async with serving(limits=SessionLimits(idle_timeout=60)) as (http, transport):
        session = await initialized(http)
        await trio.sleep(30)
        assert (await session.request("ping"))["result"] == {}
        await trio.sleep(59)
        assert len(transport.sessions) == 1  # the ping pushed the deadline back
        await trio.sleep(2)
        assert len(transport.sessions) == 0
        response = await session.post(call(1, "progress"))
        assert response.status == 404


async def test_an_idle_session_is_one_task_and_leaves_nothing_once_it_ends(autojump_clock: trio.abc.Clock) -> None:
    """Between requests a session is its own task and nothing else (its messages are routed by
    the tasks that send them); ended by DELETE or by the idle timeout, it leaves nothing behind."""
    async with serving(limits=SessionLimits(idle_timeout=60)) as (http, transport):
        before = task_count()
        sessions = [await initialized(http) for _ in range(3)]
        assert (await sessions[0].request("ping"))["result"] == {}
        async with sessions[1].open_post(call(1, "progress", token="p")) as stream:
            await priming(stream)
            *_, answer = await read_messages(stream, 4)  # three progress notifications, the answer
            assert text_of(answer) == "progressed"
        assert task_count() - before == 3
        assert (await sessions[2].delete()).status == 200
        assert task_count() - before == 2
        await trio.sleep(61)  # the two others expire
        assert task_count() == before
        assert len(transport.sessions) == 0
        assert transport._streams == {}
        assert len(transport.event_store) == 0


async def test_drain_refuses_new_sessions_and_ends_streams_cleanly(autojump_clock: trio.abc.Clock) -> None:
    async with serving() as (http, transport):
        session = await initialized(http)
        async with session.open_get() as standalone, trio.open_nursery() as nursery:
            await priming(standalone)
            nursery.start_soon(transport.drain, 5.0)
            while not transport.draining:
                await trio.sleep(0.01)
            refused = await StreamableTestSession(http).post(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
                }
            )
            assert refused.status == 503
            assert refused.headers["retry-after"] == "5"
            assert error_body(refused) == {"code": -32000, "message": "Server is shutting down"}
            with trio.fail_after(10):
                await standalone.read_until_end()
        # The stream ended on an event boundary: nothing half-written.
        assert bytes(standalone.raw).endswith(b"\n\n")
        assert not standalone.decoder.holds_partial_event
        assert len(transport.sessions) == 0


async def test_another_principals_session_id_is_answered_like_an_unknown_one() -> None:
    auth = AuthSettings(verify_token=StaticTokens({"alice-token": "alice", "bob-token": "bob"}))
    async with serving(auth=auth) as (http, _):
        alice = await initialized(http, headers=(("host", "127.0.0.1:8000"), ("authorization", "Bearer alice-token")))
        bob = StreamableTestSession(http, headers=(("host", "127.0.0.1:8000"), ("authorization", "Bearer bob-token")))
        bob.session_id = alice.session_id
        stranger = StreamableTestSession(http, headers=(("host", "127.0.0.1:8000"), ("authorization", "Bearer bob-token")))
        stranger.session_id = "0" * 32
        for request in (call(1, "progress"), {"jsonrpc": "2.0", "method": "notifications/initialized"}):
            stolen = await bob.post(request)
            unknown = await stranger.post(request)
            assert stolen.status == unknown.status == 404
            assert stolen.body == unknown.body
            assert stolen.headers == unknown.headers
        stolen_delete, unknown_delete = await bob.delete(), await stranger.delete()
        assert (stolen_delete.status, stolen_delete.body) == (unknown_delete.status, unknown_delete.body)
        assert stolen_delete.status == 404
        async with bob.open_get() as stolen_get:
            assert stolen_get.status == 404
        # Alice's session is untouched.
        assert (await alice.request("ping"))["result"] == {}


# -- keepalive -----------------------------------------------------------------------------------------
async def test_silent_streams_get_keepalive_comments(autojump_clock: trio.abc.Clock) -> None:
    async with serving(keepalive_interval=5.0) as (http, _):
        session = await initialized(http)
        async with session.open_get() as standalone:
            await priming(standalone)
            with trio.fail_after(11.5):
                while bytes(standalone.raw).count(b": ping\n") < 2:
                    await standalone.read_chunk()
        async with session.open_post(call(2, "silent", {"seconds": 9})) as stream:
            await priming(stream)
            [answer] = await read_messages(stream, 1)
            with trio.fail_after(10):
                await stream.read_until_end()
        assert bytes(stream.raw).count(b": ping\n") == 1
        assert text_of(answer) == "woke"


async def test_an_initialize_refused_406_opens_no_session() -> None:
    async with serving() as (http, transport):
        response = await StreamableTestSession(http).post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            },
            accept="text/html",
        )
        assert response.status == 406
        assert "mcp-session-id" not in response.headers
        assert error_body(response)["code"] == -32000
        assert len(transport.sessions) == 0


async def test_delete_ends_a_request_stream_in_flight_and_cancels_its_request() -> None:
    tools = Tools()
    async with serving(tools) as (http, transport):
        session = await initialized(http)
        async with session.open_post(call(3, "gated", {"name": "del"})) as stream:
            await priming(stream)
            assert (await session.delete()).status == 200
            with trio.fail_after(10):
                await stream.read_until_end()
        assert b'"id":3' not in bytes(stream.raw)
        assert tools.cancelled == ["del"]
        assert len(transport.sessions) == 0


async def test_drain_lets_a_request_in_flight_finish_on_its_stream(autojump_clock: trio.abc.Clock) -> None:
    tools = Tools()
    async with serving(tools) as (http, transport):
        session = await initialized(http)
        async with session.open_post(call(3, "gated", {"name": "dr"})) as stream, trio.open_nursery() as nursery:
            await priming(stream)
            nursery.start_soon(transport.drain, 30.0)
            while not transport.draining:
                await trio.sleep(0.01)
            await trio.sleep(1)
            tools.gate("dr").set()
            [answer] = await read_messages(stream, 1)
            with trio.fail_after(10):
                await stream.read_until_end()
        assert text_of(answer) == "opened dr"
        assert len(transport.sessions) == 0


async def test_the_standalone_stream_resumes_with_what_was_sent_while_nobody_read() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_get() as standalone:
            await priming(standalone)
            tools.server.add_tool(lambda: "1", name="one")
            [first] = await read_messages(standalone, 1)
            last_id = standalone.decoder.last_event_id
        assert first["method"] == "notifications/tools/list_changed"
        assert last_id is not None and last_id.startswith("get.")
        tools.server.add_tool(lambda: "2", name="two")
        await trio.sleep(0.1)
        async with session.open_get(last_event_id=last_id) as resumed:
            assert resumed.status == 200
            [missed] = await read_messages(resumed, 1)
            assert missed["method"] == "notifications/tools/list_changed"
            tools.server.add_tool(lambda: "3", name="three")
            [live] = await read_messages(resumed, 1)
            assert live["method"] == "notifications/tools/list_changed"
            # Nothing twice: exactly two messages so far, and the stream stays open.
            await trio.sleep(0.1)
            ids = re.findall(rb"^id: (get\.\d+)$", bytes(resumed.raw), re.MULTILINE)
            assert len(ids) == len(set(ids)) == 2
            assert not resumed.ended


async def test_a_notification_for_a_session_of_the_other_transport_is_404_and_not_delivered(
    autojump_clock: trio.abc.Clock,
) -> None:
    tools = Tools()
    app = tools.server.http_app()  # Streamable HTTP at /mcp, HTTP+SSE at /sse
    async with run_asgi_app(app) as http, http.open_sse_session() as sse:
        await sse.initialize()
        posted = await sse.post(call(1, "gated", {"name": "x"}))
        assert posted.status == 202
        while "x" not in tools.gates:
            await trio.sleep(0.01)
        intruder = StreamableTestSession(http)
        intruder.session_id = sse.endpoint.rpartition("session_id=")[2]
        response = await intruder.post(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
        )
        assert response.status == 404
        assert error_body(response) == {"code": -32000, "message": "Could not find session"}
        await trio.sleep(1)  # time for a cancellation to land, had it been delivered
        tools.gate("x").set()
        answer = await sse.next_message()
        while answer.get("id") != 1:
            answer = await sse.next_message()
        assert tools.cancelled == []
        assert text_of(answer) == "opened x"


@pytest.mark.parametrize(
    "options",
    [{"response_mode": "json"}, {"event_store": None}, {}],
    ids=["json", "sse-without-store", "sse-with-store"],
)
async def test_requests_whose_client_left_keep_nothing_once_answered(
    options: dict[str, Any], autojump_clock: trio.abc.Clock
) -> None:
    """A long session whose clients drop requests must not accumulate their streams or answers."""
    tools = Tools()
    async with serving(tools, **options) as (http, transport):
        session = await initialized(http)
        for index in range(5):
            name = f"left{index}"
            with trio.move_on_after(1):  # a JSON answer never starts: the client gives up waiting
                async with session.open_post(call(100 + index, "gated", {"name": name})) as stream:
                    assert stream.status == 200
                    while name not in tools.gates:
                        await trio.sleep(0.01)
            tools.gate(name).set()
            with trio.fail_after(10):
                while name not in tools.finished:
                    await trio.sleep(0.01)
        await trio.sleep(0.1)
        streams = transport._streams[session.session_id]
        assert list(streams.by_name) == ["get"]
        assert streams.requests == {}
        # Still answerable: the session works.
        assert (await session.request("ping"))["result"] == {}


async def test_a_resume_takes_over_a_stream_whose_old_response_is_still_open() -> None:
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        async with session.open_post(call(12, "gated", {"name": "t"}, token="t")) as old:
            priming_id = await priming(old)
            [first] = await read_messages(old, 1)
            async with session.open_get(last_event_id=priming_id) as resumed:
                assert resumed.status == 200
                with trio.fail_after(10):
                    await old.read_until_end()  # replaced: the old response ends
                [replayed] = await read_messages(resumed, 1)
                assert replayed == first
                tools.gate("t").set()
                progress, answer = await read_messages(resumed, 2)
                with trio.fail_after(10):
                    await resumed.read_until_end()
        assert progress["params"]["progress"] == 2
        assert answer["id"] == 12
        assert text_of(answer) == "opened t"
        assert b'"id":12' not in bytes(old.raw)


async def test_initialize_may_carry_mcp_protocol_version_and_mcp_method_headers() -> None:
    async with serving() as (http, _):
        response = await StreamableTestSession(http).post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            },
            headers=(("mcp-protocol-version", "2025-11-25"), ("mcp-method", "initialize")),
        )
        assert response.status == 200
        assert re.fullmatch(r"[\x21-\x7e]+", response.headers["mcp-session-id"])
        [answer] = messages_of(response)
        assert answer["result"]["protocolVersion"] == "2025-11-25"


async def test_messages_kept_for_a_standalone_stream_nobody_read_arrive_first_and_in_order() -> None:
    # More kept messages than a writer's channel holds: all of them still go out before
    # anything sent after the GET attached, in the order they were sent.
    tools = Tools()
    async with serving(tools) as (http, _):
        session = await initialized(http)
        for index in range(40):
            tools.server.add_tool(lambda: "x", name=f"early{index}")
        await trio.sleep(0.1)
        async with session.open_get() as standalone:
            await priming(standalone)
            early = await read_messages(standalone, 40)
            tools.server.add_tool(lambda: "x", name="late")
            [late] = await read_messages(standalone, 1)
    assert [m["method"] for m in early] == ["notifications/tools/list_changed"] * 40
    assert late["method"] == "notifications/tools/list_changed"
    ids = [int(i) for i in re.findall(rb"^id: get\.(\d+)$", bytes(standalone.raw), re.MULTILINE)]
    assert ids == sorted(ids) and len(ids) == 42  # priming, 40 kept, 1 live


async def test_an_http_sse_post_naming_a_streamable_session_is_404_and_not_delivered(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The reverse of the test above: the HTTP+SSE intake of a shared app takes only its own sessions.
    tools = Tools()
    app = tools.server.http_app()
    async with run_asgi_app(app) as http:
        session = await initialized(http)
        assert session.session_id is not None
        posted = await http.request(
            "POST",
            "/messages/",
            query=f"session_id={session.session_id}",
            headers=(("host", "127.0.0.1:8000"), ("content-type", "application/json")),
            body=orjson.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
        )
        assert posted.status == 404
        assert posted.text == "Could not find session"
        async with session.open_get() as standalone:
            await priming(standalone)
            await trio.sleep(1)  # time for an answer to land on this stream, had it been delivered
            assert b"\"id\":9" not in bytes(standalone.raw)
