"""Resuming a stream that never existed, or that finished, is ``400 unknown_event_id`` (issue 25, item 3).

docs/security.md (the GET table) promises ``400`` for a ``Last-Event-ID`` the store does not
know.  Unknown covers a well-formed id of this session naming a stream nobody used, a number that
stream never had, and a stream that was written to its end on a response (its events are then
forgotten).  A stream that ended while its client was away stays resumable until it is resumed,
and a stream still running resumes with its later events and then its live ones, even when every
stored event was already read.  In memory, exact statuses and bodies.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio

from trio_mcp_sse import MCPServer, MemoryEventStore
from trio_mcp_sse.server import Context
from trio_mcp_sse.testing import EventStream, StreamableTestSession, read_messages, run_asgi_app

UNKNOWN = {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Unknown Last-Event-ID"}}


class Tools:
    def __init__(self) -> None:
        self.server = MCPServer("resume-unknown", "1.0.0")
        self.gates: dict[str, trio.Event] = {}
        self.finished: list[str] = []

        @self.server.tool
        async def gated(ctx: Context, name: str) -> str:
            """Report progress 1, wait for gate ``name``, report progress 2, answer."""
            await ctx.report_progress(1)
            await self.gate(name).wait()
            await ctx.report_progress(2)
            self.finished.append(name)
            return f"opened {name}"

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())

    async def wait_finished(self, name: str) -> None:
        with trio.fail_after(10):
            while name not in self.finished:
                await trio.sleep(0.01)
        await trio.sleep(0.1)  # let the answer be routed and stored


@asynccontextmanager
async def serving(tools: Tools) -> AsyncIterator[tuple[StreamableTestSession, Any]]:
    app = tools.server.http_app(sse_path=None)
    async with run_asgi_app(app) as http:
        session = StreamableTestSession(http)
        await session.initialize()
        yield session, app.extensions["trio_mcp_sse"]


def call(request_id: int, name: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "gated", "arguments": {"name": name}, "_meta": {"progressToken": name}},
    }


async def resume(session: StreamableTestSession, last_event_id: str) -> EventStream:
    """GET with ``Last-Event-ID``, read to the end of its body."""
    async with session.open_get(last_event_id=last_event_id) as resumed:
        with trio.fail_after(10):
            await resumed.read_until_end()
    return resumed


def assert_unknown(resumed: EventStream) -> None:
    assert resumed.status == 400
    assert resumed.headers["content-type"] == "application/json"
    assert orjson.loads(bytes(resumed.raw)) == UNKNOWN


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``(id, message)`` of every event of a body that is nothing but ``id:``/``data:`` events."""
    found = re.findall(rb"id: ([^\n]+)\ndata: ([^\n]+)\n\n", raw)
    assert b"".join(b"id: %s\ndata: %s\n\n" % pair for pair in found) == raw, raw
    return [(event_id.decode(), orjson.loads(data)) for event_id, data in found]


async def test_a_stream_nobody_used_is_400() -> None:
    async with serving(Tools()) as (session, transport):
        streams = transport._streams[session.session_id]
        # initialize's stream r1 was stored (seq 0 and 1), then forgotten once read to its end.
        for never in ("r7.1", "r7.0", "zz.1", "get.0", "get.1"):
            assert_unknown(await resume(session, never))
        assert (await session.request("ping"))["result"] == {}  # the session is unharmed
        assert list(streams.by_name) == ["get"]


async def test_an_id_its_stream_never_had_is_400() -> None:
    tools = Tools()
    async with serving(tools) as (session, _):
        async with session.open_post(call(2, "a")) as stream:
            event = await stream.next_event()
            assert event.id is not None
            name, _, seq = event.id.rpartition(".")
            # Older than the stream's first event: a number this server never gave it.
            assert_unknown(await resume(session, f"{name}.{int(seq) - 1}"))
            assert_unknown(await resume(session, f"{name}.{int(seq) + 50}"))  # not issued yet
            # Neither refusal took the stream from its response: it goes on to its answer.
            tools.gate("a").set()
            messages = await read_messages(stream, 3)
            with trio.fail_after(10):
                await stream.read_until_end()
        assert [m.get("method") for m in messages] == ["notifications/progress"] * 2 + [None]
        assert messages[-1]["result"]["content"][0]["text"] == "opened a"


async def test_a_stream_written_to_its_end_is_forgotten_and_then_400() -> None:
    tools = Tools()
    async with serving(tools) as (session, _):
        tools.gate("done").set()
        async with session.open_post(call(2, "done")) as stream:
            with trio.fail_after(10):
                await stream.read_until_end()
        ids = re.findall(r"^id: (.+)$", bytes(stream.raw).decode(), re.MULTILINE)
        assert len(ids) == 4  # priming, two progress notifications, the answer
        for event_id in ids:
            assert_unknown(await resume(session, event_id))


async def test_a_stream_that_ended_while_its_client_was_away_resumes_once() -> None:
    tools = Tools()
    async with serving(tools) as (session, _):
        async with session.open_post(call(3, "away")) as stream:
            priming = (await stream.next_event()).id
            [first] = await read_messages(stream, 1)
            after_first = stream.decoder.last_event_id
        assert priming is not None and after_first is not None
        tools.gate("away").set()
        await tools.wait_finished("away")

        resumed = await resume(session, after_first)
        assert resumed.status == 200
        assert resumed.headers["content-type"] == "text/event-stream"
        [(progress_id, progress), (answer_id, answer)] = frames(bytes(resumed.raw))
        assert progress == {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "away", "progress": 2},
        }
        assert answer["id"] == 3 and answer["result"]["content"][0]["text"] == "opened away"
        stream_name = priming.rpartition(".")[0]
        assert {progress_id.rpartition(".")[0], answer_id.rpartition(".")[0]} == {stream_name}
        assert first["params"]["progress"] == 1

        # That response carried it to its end: now it is a finished stream like any other.
        for event_id in (priming, after_first, answer_id):
            assert_unknown(await resume(session, event_id))


async def test_a_running_stream_resumes_with_its_later_events_then_live_ones() -> None:
    tools = Tools()
    async with serving(tools) as (session, _):
        async with session.open_post(call(4, "live")) as stream:
            priming = (await stream.next_event()).id
            [progress] = await read_messages(stream, 1)
            last = stream.decoder.last_event_id
        assert priming is not None and last is not None
        async with session.open_get(last_event_id=priming) as resumed:
            assert resumed.status == 200
            [replayed] = await read_messages(resumed, 1)
            assert replayed == progress
            assert resumed.decoder.last_event_id == last
            tools.gate("live").set()
            later, answer = await read_messages(resumed, 2)
            with trio.fail_after(10):
                await resumed.read_until_end()
        assert later["params"]["progress"] == 2
        assert answer["id"] == 4
        [(replayed_id, _), *_] = frames(bytes(resumed.raw))
        assert replayed_id == last
        assert_unknown(await resume(session, last))  # read to its end on the resumed response


async def test_a_running_stream_whose_events_were_all_read_still_resumes() -> None:
    tools = Tools()
    async with serving(tools) as (session, _):
        async with session.open_post(call(5, "all-read")) as stream:
            await stream.next_event()
            await read_messages(stream, 1)
            last = stream.decoder.last_event_id
        assert last is not None
        async with session.open_get(last_event_id=last) as resumed:
            assert resumed.status == 200
            with trio.move_on_after(0.2):
                await resumed.read_chunk()
            assert bytes(resumed.raw) == b""  # nothing to replay, and the stream stays open
            assert not resumed.ended
            tools.gate("all-read").set()
            later, answer = await read_messages(resumed, 2)
            with trio.fail_after(10):
                await resumed.read_until_end()
        assert later["params"]["progress"] == 2
        assert answer["id"] == 5 and answer["result"]["content"][0]["text"] == "opened all-read"
        assert [m for _, m in frames(bytes(resumed.raw))] == [later, answer]


async def test_an_unknown_id_leaves_the_standalone_streams_kept_messages_alone() -> None:
    tools = Tools()
    async with serving(tools) as (session, _):
        async with session.open_get() as standalone:
            primed = (await standalone.next_event()).id
        assert primed is not None and primed.startswith("get.")
        tools.server.add_tool(lambda: "1", name="one")  # kept for the next reader of the stream
        await trio.sleep(0.1)
        assert_unknown(await resume(session, "get.99999"))
        async with session.open_get() as again:
            await again.next_event()  # priming
            [kept] = await read_messages(again, 1)
        assert kept["method"] == "notifications/tools/list_changed"


class SlowStore(MemoryEventStore):
    """A store that takes its time over a response (as one across the network may): the router
    waits in ``store`` while a resume comes in."""

    def __init__(self) -> None:
        super().__init__()
        self.storing_answer = trio.Event()
        self.release = trio.Event()

    async def store(self, session_id: str, stream: str, data: bytes) -> str:
        if b'"result"' in data and b"opened" in data:
            self.storing_answer.set()
            await self.release.wait()
        return await super().store(session_id, stream, data)


async def test_a_resume_while_the_answer_is_being_stored_still_gets_it() -> None:
    tools = Tools()
    store = SlowStore()
    app = tools.server.http_app(sse_path=None, event_store=store)
    async with run_asgi_app(app) as http:
        session = StreamableTestSession(http)
        await session.initialize()
        async with session.open_post(call(6, "slow")) as stream:
            await stream.next_event()
            await read_messages(stream, 1)
            last = stream.decoder.last_event_id
        assert last is not None
        tools.gate("slow").set()
        with trio.fail_after(10):
            await store.storing_answer.wait()
        async with session.open_get(last_event_id=last) as resumed:
            assert resumed.status == 200
            store.release.set()
            later, answer = await read_messages(resumed, 2)
            with trio.fail_after(10):
                await resumed.read_until_end()
        assert later["params"]["progress"] == 2
        assert answer["id"] == 6 and answer["result"]["content"][0]["text"] == "opened slow"
        assert_unknown(await resume(session, last))
