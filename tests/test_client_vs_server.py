"""Our client against our server, method by method.

The server is ``examples/notes_server.py`` (a fresh copy per test: its notes
and counters are module state), with a few tools added where the example has
nothing to exercise (server->client requests, a binary resource).  Most tests
run in memory on the mock clock (``asgi_http_client``: the real ASGI app, the
real client transport, no sockets); the last section drives a real
``hypercorn --worker-class trio`` process over loopback, and the command line
against it.

Each test checks both sides where it can: what the client returned *and* what
the server saw or did (negotiated version, the tool's cancellation, the
session's requests in flight).
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from types import ModuleType
from typing import Any

import mcp_types
import orjson
import pydantic
import pytest
import trio
import trio.lowlevel
import trio.testing

from examples import everything_server
from tests.client_helpers import BASE_URL, ROOT, SSE_URL, asgi_http_client, serve_in_process
from tests.server_helpers_e2e import hypercorn_server
from trio_mcp_sse import Context, MCPError, MCPServer
from trio_mcp_sse.client import (
    SUPPORTED_PROTOCOL_VERSIONS,
    ClientSession,
    ConnectionClosedError,
    PostError,
    connect_sse,
    connect_streamable_http,
    open_session,
)
from trio_mcp_sse.client._cli import main as cli_main
from trio_mcp_sse.client._session import JSONRPCMessage, JSONRPCNotification
from trio_mcp_sse.server import CompletionRequest

NOTES_SERVER = ROOT / "examples" / "notes_server.py"
MCP_URL = f"{BASE_URL}/mcp"
_copies = itertools.count()

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


TRANSPORT_URLS = {"sse": SSE_URL, "streamable-http": MCP_URL}
"""Where each transport of ``MCPServer.http_app()`` answers, in memory."""


@pytest.fixture(params=sorted(TRANSPORT_URLS))
def notes(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """A fresh copy of examples/notes_server.py (its ``server``, ``app``, ``notes``, ``jobs``),
    and ``url``: the endpoint of the transport the test runs over (each test runs over both)."""
    name = f"_notes_server_copy_{next(_copies)}"
    spec = importlib.util.spec_from_file_location(name, NOTES_SERVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        module.url = TRANSPORT_URLS[request.param]
        yield module
    finally:
        del sys.modules[name]


@asynccontextmanager
async def connected(app: Any, url: str, **options: Any) -> AsyncIterator[ClientSession]:
    """``open_session`` against ``app``, in memory (``transport="auto"`` picks it from ``url``).

    The method-by-method comparison is of the handshake era's session semantics (on both
    transports); 2026-07-28 has tests of its own (test_client_modern*, test_protocol_eras_e2e).
    """
    options.setdefault("protocol", "handshake")
    async with (
        asgi_http_client(app) as http,
        open_session(url, http_client=http, **options) as session,
    ):
        yield session


class Tap:
    """A ``ClientTransport`` in front of a connection that records every message either way."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.received: list[JSONRPCMessage] = []
        self.sent: list[dict[str, Any]] = []
        tap = self

        class Incoming(trio.abc.ReceiveChannel[JSONRPCMessage]):
            async def receive(self) -> JSONRPCMessage:
                message = await connection.incoming.receive()
                tap.received.append(message)
                return message

            async def aclose(self) -> None:
                await connection.incoming.aclose()

        self.incoming = Incoming()

    @property
    def closed(self) -> bool:
        return bool(self._connection.closed)

    async def send(self, message: bytes, /) -> None:
        self.sent.append(orjson.loads(message))
        await self._connection.send(message)

    def answers_to(self, request_id: int) -> list[JSONRPCMessage]:
        return [m for m in self.received if getattr(m, "id", None) == request_id]


@asynccontextmanager
async def tapped(app: Any, url: str, **options: Any) -> AsyncIterator[tuple[ClientSession, Tap]]:
    connect = connect_sse if url == SSE_URL else connect_streamable_http
    async with (
        asgi_http_client(app) as http,
        connect(url, http_client=http) as connection,
    ):
        tap = Tap(connection)
        async with ClientSession(tap, **options) as session:
            await session.initialize()
            yield session, tap


class Inbox:
    """A notification handler that keeps what arrives; ``next(method)`` waits for one."""

    def __init__(self) -> None:
        self.received: list[JSONRPCNotification] = []
        self._arrived = trio.Event()

    async def __call__(self, notification: JSONRPCNotification) -> None:
        self.received.append(notification)
        self._arrived.set()
        self._arrived = trio.Event()

    async def next(self, method: str) -> dict[str, Any]:
        """Remove and return the params of the first ``method`` notification (waits for one)."""
        while True:
            for index, notification in enumerate(self.received):
                if notification.method == method:
                    del self.received[index]
                    return dict(notification.params or {})
            await self._arrived.wait()

    def methods(self) -> list[str]:
        return [notification.method for notification in self.received]


def text_of(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


# -- tools the example does not have: requests from the server to the client ------------------------
class Confirmation(pydantic.BaseModel):
    confirm: bool
    reason: str = ""


async def ask_model(question: str, ctx: Context) -> str:
    """Ask the client's model."""
    answer = await ctx.sample(
        question, max_tokens=64, system_prompt="Answer in one word.", temperature=0.5
    )
    assert isinstance(answer.content, mcp_types.TextContent)
    return f"{answer.model} says {answer.content.text}"


async def confirm(name: str, ctx: Context) -> str:
    """Ask the user, through the client."""
    answer = await ctx.elicit(f"Really delete {name}?", Confirmation)
    if answer.action != "accept":
        return answer.action
    decided = Confirmation.model_validate(answer.content)
    return f"confirm={decided.confirm} reason={decided.reason}"


async def client_roots(ctx: Context) -> str:
    """The client's roots."""
    return " ".join(f"{root.name}={root.uri}" for root in await ctx.list_roots())


async def shout(text: str) -> str:
    """Added while sessions are live."""
    return text.upper()


async def ping_client(ctx: Context) -> str:
    """Ping the client: it must answer whatever handlers it has."""
    return f"pong {await ctx.send_request('ping')}"


async def impatient(ctx: Context) -> str:
    """Ask the user, but give up after 5 s."""
    with trio.move_on_after(5):
        await ctx.elicit("Quick, a name?", {"type": "object", "properties": {}})
        return "answered"
    return "gave up"


def with_client_requests(server: MCPServer) -> MCPServer:
    for tool in (ask_model, confirm, client_roots, ping_client, impatient):
        server.add_tool(tool)
    return server


# -- initialize ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", SUPPORTED_PROTOCOL_VERSIONS)
async def test_initialize_negotiates_each_protocol_version(
    notes: ModuleType, version: str, autojump_clock: trio.testing.MockClock
) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    with trio.fail_after(60):
        async with connected(
            notes.app, notes.url, protocol_version=version, client_name="vs", client_version="7"
        ) as session:
            assert session.protocol_version == version
            result = session.initialize_result
            assert result is not None
            assert result.protocol_version == version
            assert result.server_info.name == "notes"
            assert result.server_info.version == "1.0.0"
            assert result.server_info.title == "Notes"
            assert session.instructions == notes.server.instructions
            capabilities = session.server_capabilities
            assert capabilities is not None
            assert capabilities.tools is not None
            assert capabilities.tools.list_changed is True
            assert capabilities.resources is not None
            assert capabilities.resources.subscribe is True
            assert capabilities.resources.list_changed is True
            assert capabilities.prompts is not None
            assert capabilities.logging is not None
            assert capabilities.completions is not None
            # What the server made of it.
            (connection,) = notes.server.connections
            assert connection.protocol_version == version
            assert connection.client_info == {"name": "vs", "version": "7"}
            # notifications/initialized arrived (its 202 says it is queued, not yet handled).
            while not connection.client_ready:
                await trio.sleep(0.01)
            assert connection.client_capabilities == {}
            # A version-dependent detail: progress messages exist from 2025-03-26 on.
            await session.call_tool(
                "process_notes", {"steps": 2, "delay": 0.1}, progress=on_progress
            )
    if version == "2024-11-05":
        assert progress == [(1.0, 2.0, None), (2.0, 2.0, None)]
    else:
        assert progress == [(1.0, 2.0, "processed 1 of 2"), (2.0, 2.0, "processed 2 of 2")]


async def test_client_capabilities_follow_its_handlers(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    async def nothing(*args: Any) -> dict[str, Any]:
        return {}

    with trio.fail_after(60):
        async with connected(
            notes.app, notes.url, sampling_handler=nothing, elicitation_handler=nothing, roots_handler=nothing
        ):
            (connection,) = notes.server.connections
            assert connection.client_supports("sampling")
            assert connection.client_supports("elicitation")
            assert connection.client_capabilities["roots"] == {"listChanged": True}


# -- tools --------------------------------------------------------------------------------------------
async def test_list_tools_carries_schemas_titles_and_annotations(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            listed = await session.list_tools()
    assert listed.next_cursor is None
    tools = {tool.name: tool for tool in listed.tools}
    assert list(tools) == ["add_note", "delete_note", "find_notes", "process_notes"]
    add_note = tools["add_note"]
    assert add_note.description == "Create or replace a note."
    assert add_note.input_schema["required"] == ["name", "text"]
    assert add_note.input_schema["properties"]["name"]["pattern"] == "^[a-z0-9-]+$"
    assert add_note.output_schema is not None
    assert add_note.output_schema["properties"].keys() == {"name", "text", "created"}
    assert add_note.output_schema["required"] == ["name", "text", "created"]
    assert add_note.annotations is not None
    assert add_note.annotations.idempotent_hint is True
    assert add_note.annotations.destructive_hint is False
    assert tools["find_notes"].title == "Find notes"
    assert tools["process_notes"].input_schema["properties"]["steps"]["default"] == 10
    assert tools["process_notes"].output_schema is None  # returns plain text
    assert "required" not in tools["process_notes"].input_schema


async def test_call_tool_returns_structured_content_matching_the_schema(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            schema = next(t for t in (await session.list_tools()).tools if t.name == "add_note")
            created = await session.call_tool("add_note", {"name": "milk", "text": "2 litres"})
            replaced = await session.call_tool("add_note", {"name": "milk", "text": "3 litres"})
            links = await session.call_tool("find_notes", {"word": "LITRES"})
            nothing = await session.call_tool("find_notes", {"word": "zebra"})
    assert created.is_error is False
    assert created.structured_content == {"name": "milk", "text": "2 litres", "created": True}
    # The text block carries the same object, for clients that ignore structuredContent.
    assert orjson.loads(text_of(created)) == created.structured_content
    assert replaced.structured_content == {"name": "milk", "text": "3 litres", "created": False}
    assert schema.output_schema is not None
    assert set(schema.output_schema["required"]) <= set(replaced.structured_content)
    assert notes.notes["milk"] == "3 litres"
    assert links.structured_content is None
    (link,) = links.content
    assert isinstance(link, mcp_types.ResourceLink)
    assert (link.uri, link.name, link.mime_type) == ("note://milk", "milk", "text/plain")
    assert text_of(nothing) == "no note mentions 'zebra'"


async def test_tool_failures_are_results_and_bad_calls_are_errors(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            failed = await session.call_tool("delete_note", {"name": "nope"})
            assert failed.is_error is True
            assert text_of(failed) == "there is no note named 'nope'"
            with pytest.raises(MCPError, match="name: String should match pattern") as invalid:
                await session.call_tool("add_note", {"name": "Not Valid", "text": "x"})
            assert invalid.value.code == -32602
            with pytest.raises(MCPError, match="Unknown tool: nope") as unknown:
                await session.call_tool("nope")
            assert unknown.value.code == -32602
            with pytest.raises(MCPError, match="Method not found") as missing:
                await session.send_request("tools/frobnicate")
            assert missing.value.code == -32601
            deleted = await session.call_tool("delete_note", {"name": "welcome"})
            assert text_of(deleted) == "deleted welcome"
    assert notes.notes == {}


async def test_progress_arrives_in_order_before_the_result(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    with trio.fail_after(60):
        async with tapped(notes.app, notes.url) as (session, tap):
            result = await session.call_tool(
                "process_notes", {"steps": 5, "delay": 0.5}, progress=on_progress
            )
            seen.append(text_of(result))
            call = next(m for m in tap.sent if m.get("method") == "tools/call")
    assert seen == [
        *[(float(step), 5.0, f"processed {step} of 5") for step in range(1, 6)],
        "processed 1 notes in 5 steps",
    ]
    # The token the client chose is the one the server echoed.
    assert call["params"]["_meta"] == {"progressToken": call["id"]}
    tokens = {
        (m.params or {}).get("progressToken")
        for m in tap.received
        if isinstance(m, JSONRPCNotification) and m.method == "notifications/progress"
    }
    assert tokens == {call["id"]}


async def test_without_a_callback_no_progress_is_asked_for_or_sent(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with tapped(notes.app, notes.url) as (session, tap):
            await session.call_tool("process_notes", {"steps": 3, "delay": 0.1})
    call = next(m for m in tap.sent if m.get("method") == "tools/call")
    assert "_meta" not in call["params"]
    assert not [m for m in tap.received if isinstance(m, JSONRPCNotification)]


async def test_cancelling_the_scope_cancels_the_tool_and_no_answer_comes(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with tapped(notes.app, notes.url) as (session, tap):
            with trio.CancelScope() as scope:

                async def cancel_once_running(*progress: Any) -> None:
                    scope.cancel()

                await session.call_tool(
                    "process_notes", {"steps": 100, "delay": 1}, progress=cancel_once_running
                )
            assert scope.cancelled_caught
            call = next(m for m in tap.sent if m.get("method") == "tools/call")
            assert tap.sent[-1] == {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": call["id"], "reason": "cancelled by the client"},
            }
            while notes.jobs["cancelled"] == 0:  # the tool's own cancel scope was cancelled
                await trio.sleep(0.1)
            (connection,) = notes.server.connections
            assert connection.in_flight == {}
            await trio.sleep(10)  # ten more steps' worth: time enough for a stray answer
            await session.ping()
            assert [type(m).__name__ for m in tap.answers_to(call["id"])] == []
            progress_after = [
                m
                for m in tap.received
                if isinstance(m, JSONRPCNotification) and (m.params or {}).get("progress", 0) > 1
            ]
            assert progress_after == []
            # The session carries on, and the same tool runs to completion.
            result = await session.call_tool("process_notes", {"steps": 2, "delay": 0.1})
            assert text_of(result) == "processed 1 notes in 2 steps"
    assert notes.jobs == {"completed": 1, "cancelled": 1}


def delaying_tool_calls(app: Any, delay: float, *, refuse: bool = False) -> Any:
    """``app``, but a POST carrying ``tools/call`` spends ``delay`` seconds on the way.

    Each message is its own POST, so a slow connection can let a later POST
    overtake an earlier one.  With ``refuse``, that POST is then answered 503.
    """

    async def delayed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        first = await receive()
        if b'"tools/call"' in first.get("body", b""):
            await trio.sleep(delay)
            if refuse:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b"busy"})
                return
        replay = [first]

        async def receive_again() -> Any:
            return replay.pop() if replay else await receive()

        await app(scope, receive_again, send)

    return delayed


async def test_cancelling_while_the_request_is_posted_still_cancels_the_tool(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    """The cancel notification must not overtake the request it cancels."""
    with trio.fail_after(60):
        async with connected(delaying_tool_calls(notes.app, 1.0), notes.url) as session:
            with trio.move_on_after(0.5) as scope:  # the tools/call POST is still on its way
                await session.call_tool("process_notes", {"steps": 3, "delay": 1})
            assert scope.cancelled_caught
            await trio.sleep(10)  # the tool would have finished by now
            await session.ping()
    if notes.url == SSE_URL:
        # The client waits for the 202 of the request before it cancels: the tool started.
        assert notes.jobs == {"completed": 0, "cancelled": 1}
    else:
        # The request counts as sent once its body is written, so the cancel overtook it;
        # the server remembers early cancels and never started the tool.
        assert notes.jobs == {"completed": 0, "cancelled": 0}


async def test_a_post_refused_after_the_caller_cancelled_is_just_a_cancellation(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(delaying_tool_calls(notes.app, 1.0, refuse=True), notes.url) as session:
            with trio.move_on_after(0.5) as scope:
                await session.call_tool("process_notes")
            assert scope.cancelled_caught  # not a PostError for a call nobody waits for
            if notes.url == SSE_URL:
                with pytest.raises(PostError, match="503"):
                    await session.call_tool("process_notes")
            else:
                # The request was sent; its HTTP answer is not a JSON-RPC one: that call fails.
                with pytest.raises(MCPError, match="answered 503 Service Unavailable: busy") as refused:
                    await session.call_tool("process_notes")
                assert refused.value.code == -32603
            await session.ping()


async def test_concurrent_requests_each_get_their_own_answer(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    answers: dict[str, Any] = {}
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:

            async def add(index: int) -> None:
                result = await session.call_tool(
                    "add_note", {"name": f"n{index}", "text": f"text {index}"}
                )
                answers[f"add{index}"] = result.structured_content

            async def read(index: int) -> None:
                result = await session.read_resource("note://welcome")
                answers[f"read{index}"] = result.contents[0].text  # type: ignore[union-attr]

            async def slow() -> None:
                answers["slow"] = text_of(
                    await session.call_tool("process_notes", {"steps": 3, "delay": 5})
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                for index in range(15):
                    nursery.start_soon(add, index)
                    nursery.start_soon(read, index)
                    nursery.start_soon(session.ping)
                await trio.sleep(1)
                # The fast requests are done while the slow tool still runs.
                assert len(answers) == 30
                assert "slow" not in answers
    for index in range(15):
        assert answers[f"add{index}"] == {
            "name": f"n{index}",
            "text": f"text {index}",
            "created": True,
        }
        assert answers[f"read{index}"] == notes.notes["welcome"]
    assert answers["slow"].startswith("processed ")


async def test_ping(notes: ModuleType, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with tapped(notes.app, notes.url) as (session, tap):
            assert await session.ping() is None
            ping = tap.sent[-1]
            assert ping["method"] == "ping"
            (answer,) = tap.answers_to(ping["id"])
            assert isinstance(answer, mcp_types.JSONRPCResponse)
            assert answer.result == {}


# -- resources ----------------------------------------------------------------------------------------
async def test_list_resources_and_templates(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            resources = await session.list_resources()
            templates = await session.list_resource_templates()
    listed = {str(resource.uri): resource for resource in resources.resources}
    assert set(listed) == {"note://welcome", "notes://stats"}
    assert listed["note://welcome"].name == "welcome"
    assert listed["note://welcome"].mime_type == "text/plain"
    assert listed["notes://stats"].mime_type == "application/json"
    assert listed["notes://stats"].description == (
        "How many notes there are, and how the slow job fared."
    )
    (template,) = templates.resource_templates
    assert template.uri_template == "note://{name}"
    assert template.name == "note"
    assert template.mime_type == "text/plain"
    assert template.description == "Any note, by name."


async def test_read_resource_text_json_binary_and_missing(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    notes.server.add_resource("notes://logo.png", PNG, mime_type="image/png")
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            welcome = await session.read_resource("note://welcome")
            await session.call_tool("add_note", {"name": "later", "text": "only via template"})
            templated = await session.read_resource("note://later")
            stats = await session.read_resource("notes://stats")
            logo = await session.read_resource("notes://logo.png")
            with pytest.raises(MCPError, match="note://nope") as missing:
                await session.read_resource("note://nope")
    (text,) = welcome.contents
    assert isinstance(text, mcp_types.TextResourceContents)
    assert (text.uri, text.mime_type, text.text) == (
        "note://welcome",
        "text/plain",
        notes.notes["welcome"],
    )
    assert templated.contents[0].text == "only via template"  # type: ignore[union-attr]
    assert orjson.loads(stats.contents[0].text) == {  # type: ignore[union-attr]
        "notes": 2,
        "completed": 0,
        "cancelled": 0,
    }
    (blob,) = logo.contents
    assert isinstance(blob, mcp_types.BlobResourceContents)
    assert blob.mime_type == "image/png"
    assert base64.b64decode(blob.blob) == PNG
    assert missing.value.code == -32002


async def test_subscribed_resources_announce_updates_until_unsubscribed(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = Inbox()
    with trio.fail_after(60):
        async with connected(
            notes.app, notes.url, notification_handlers={"notifications/resources/updated": inbox}
        ) as session:
            await session.subscribe_resource("note://welcome")
            (connection,) = notes.server.connections
            assert connection.subscriptions == {"note://welcome"}
            await session.call_tool("add_note", {"name": "welcome", "text": "edited"})
            assert await inbox.next("notifications/resources/updated") == {"uri": "note://welcome"}
            await session.call_tool("add_note", {"name": "other", "text": "new"})  # not subscribed
            await session.subscribe_resource("note://other")
            await session.unsubscribe_resource("note://welcome")
            await session.call_tool("add_note", {"name": "welcome", "text": "edited again"})
            await session.call_tool("add_note", {"name": "other", "text": "edited"})
            # Only the subscription left is announced (order on the stream is the order of edits).
            assert await inbox.next("notifications/resources/updated") == {"uri": "note://other"}
            assert inbox.received == []


# -- prompts and completion ---------------------------------------------------------------------------
async def test_list_prompts_and_get_prompt_with_arguments(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            listed = await session.list_prompts()
            summary = await session.get_prompt("summarize", {"name": "welcome"})
            ideas = await session.get_prompt("brainstorm", {"topic": "trio", "count": "2"})
            defaulted = await session.get_prompt("brainstorm", {"topic": "trio"})
            with pytest.raises(MCPError, match="there is no note named 'nope'") as unknown_note:
                await session.get_prompt("summarize", {"name": "nope"})
            with pytest.raises(MCPError, match="topic: Field required") as missing:
                await session.get_prompt("brainstorm")
            with pytest.raises(MCPError, match="Unknown prompt: nope"):
                await session.get_prompt("nope")
    prompts = {prompt.name: prompt for prompt in listed.prompts}
    assert list(prompts) == ["summarize", "brainstorm"]
    assert prompts["summarize"].title == "Summarize a note"
    assert [(a.name, a.required, a.description) for a in prompts["summarize"].arguments or []] == [
        ("name", True, "the note to summarize")
    ]
    assert [(a.name, a.required) for a in prompts["brainstorm"].arguments or []] == [
        ("topic", True),
        ("count", False),
    ]
    assert summary.description == "Ask the model for a one-line summary of a note."
    first, second = summary.messages
    assert first.role == "user"
    assert isinstance(first.content, mcp_types.EmbeddedResource)
    assert first.content.resource.uri == "note://welcome"
    assert first.content.resource.text == notes.notes["welcome"]  # type: ignore[union-attr]
    assert (second.role, second.content.text) == (  # type: ignore[union-attr]
        "user",
        "Summarize the note above in one line.",
    )
    assert [(m.role, m.content.text) for m in ideas.messages] == [  # type: ignore[union-attr]
        ("user", "Suggest 2 short notes about trio."),
        ("assistant", "Here are 2 ideas about trio:"),
    ]
    assert defaulted.messages[0].content.text == "Suggest 3 short notes about trio."  # type: ignore[union-attr]
    assert unknown_note.value.code == missing.value.code == -32602


async def test_completion_of_prompt_and_template_arguments(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            for name in ("walk", "water", "bread"):
                await session.call_tool("add_note", {"name": name, "text": "x"})
            for_prompt = await session.complete(
                {"type": "ref/prompt", "name": "summarize"}, "name", "w"
            )
            for_template = await session.complete(
                {"type": "ref/resource", "uri": "note://{name}"}, "name", "b"
            )
            unknown_argument = await session.complete(
                {"type": "ref/prompt", "name": "brainstorm"}, "topic", "x"
            )
            with pytest.raises(MCPError, match=r"params\.ref must be") as bad_ref:
                await session.send_request(
                    "completion/complete",
                    {"ref": {"type": "ref/tool"}, "argument": {"name": "a", "value": ""}},
                )
    assert isinstance(for_prompt, mcp_types.CompleteResult)
    assert for_prompt.completion.values == ["walk", "water", "welcome"]
    assert for_template.completion.values == ["bread"]
    assert unknown_argument.completion.values == []
    assert bad_ref.value.code == -32602


async def test_completion_context_and_long_lists(autojump_clock: trio.testing.MockClock) -> None:
    server = MCPServer("completer")
    requests: list[CompletionRequest] = []

    @server.completion
    async def complete(request: CompletionRequest) -> list[str]:
        requests.append(request)
        return [f"{request.value}{index}" for index in range(150)]

    with trio.fail_after(60):
        async with connected(server.sse_app(), SSE_URL) as session:
            result = await session.complete(
                {"type": "ref/resource", "uri": "files://{dir}/{name}"},
                "name",
                "f",
                context={"dir": "home"},
            )
    assert requests == [
        CompletionRequest(
            ref_type="resource",
            ref="files://{dir}/{name}",
            argument="name",
            value="f",
            context={"dir": "home"},
        )
    ]
    # The spec's cap of 100 values, with the hints that there is more.
    assert result.completion.values == [f"f{index}" for index in range(100)]
    assert (result.completion.total, result.completion.has_more) == (150, True)


# -- logging ------------------------------------------------------------------------------------------
async def test_set_logging_level_moves_the_servers_threshold(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = Inbox()
    with trio.fail_after(60):
        async with connected(
            notes.app, notes.url, notification_handlers={"notifications/message": inbox}
        ) as session:
            await session.call_tool(
                "add_note", {"name": "a", "text": "x"}
            )  # info passes by default
            assert await inbox.next("notifications/message") == {
                "level": "info",
                "logger": "notes",
                "data": "created note a",
            }
            await session.set_logging_level("warning")
            (connection,) = notes.server.connections
            assert connection.log_level == "warning"
            await session.call_tool("add_note", {"name": "b", "text": "x"})  # filtered out
            await session.set_logging_level("debug")
            await session.call_tool("add_note", {"name": "b", "text": "y"})
            assert await inbox.next("notifications/message") == {
                "level": "info",
                "logger": "notes",
                "data": "updated note b",
            }
            assert inbox.received == []
            with pytest.raises(MCPError, match="level must be one of") as invalid:
                await session.set_logging_level("verbose")
            assert invalid.value.code == -32602


async def test_server_log_messages_reach_python_logging_without_a_handler(
    notes: ModuleType, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sse.client.server")
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:
            await session.call_tool("add_note", {"name": "logged", "text": "x"})
            while not caplog.records:
                await trio.sleep(0.1)
    (record,) = [r for r in caplog.records if r.name == "trio_mcp_sse.client.server"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == "[notes] created note logged"


# -- requests from the server to the client -----------------------------------------------------------
async def test_sampling_elicitation_and_roots_round_trip(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with_client_requests(notes.server)
    asked: list[Any] = []

    async def sample(params: mcp_types.CreateMessageRequestParams) -> mcp_types.CreateMessageResult:
        asked.append(params)
        question = params.messages[0].content
        assert isinstance(question, mcp_types.TextContent)
        return mcp_types.CreateMessageResult(
            role="assistant",
            content=mcp_types.TextContent(type="text", text=question.text[::-1]),
            model="mirror",
        )

    async def elicit(params: Any) -> dict[str, Any]:
        asked.append(params)
        return {"action": "accept", "content": {"confirm": True, "reason": "old"}}

    async def roots() -> mcp_types.ListRootsResult:
        return mcp_types.ListRootsResult(
            roots=[
                mcp_types.Root(uri="file:///srv/notes", name="notes"),
                mcp_types.Root(uri="file:///tmp", name="scratch"),
            ]
        )

    with trio.fail_after(60):
        async with connected(
            notes.app, notes.url, sampling_handler=sample, elicitation_handler=elicit, roots_handler=roots
        ) as session:
            sampled = await session.call_tool("ask_model", {"question": "olleh"})
            confirmed = await session.call_tool("confirm", {"name": "welcome"})
            rooted = await session.call_tool("client_roots")
    assert text_of(sampled) == "mirror says hello"
    assert text_of(confirmed) == "confirm=True reason=old"
    assert text_of(rooted) == "notes=file:///srv/notes scratch=file:///tmp"
    sampling, elicitation = asked
    assert isinstance(sampling, mcp_types.CreateMessageRequestParams)
    assert (sampling.max_tokens, sampling.system_prompt, sampling.temperature) == (
        64,
        "Answer in one word.",
        0.5,
    )
    assert sampling.messages[0].role == "user"
    assert isinstance(elicitation, mcp_types.ElicitRequestFormParams)
    assert elicitation.message == "Really delete welcome?"
    assert elicitation.requested_schema["required"] == ["confirm"]


async def test_client_refusals_and_missing_capabilities_reach_the_tool(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with_client_requests(notes.server)

    async def decline(params: Any) -> dict[str, Any]:
        return {"action": "decline"}

    with trio.fail_after(60):
        async with connected(notes.app, notes.url, elicitation_handler=decline) as session:
            assert text_of(await session.call_tool("confirm", {"name": "x"})) == "decline"
            # No sampling or roots handler: the client declared neither, so the server does
            # not even ask, and the tool reports it.
            no_sampling = await session.call_tool("ask_model", {"question": "?"})
            assert no_sampling.is_error is True
            assert "sampling" in text_of(no_sampling)
            no_roots = await session.call_tool("client_roots")
            assert no_roots.is_error is True
            assert "roots" in text_of(no_roots)


async def test_roots_list_changed_reaches_the_server(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[list[str]] = []
    current = ["file:///a"]

    @notes.server.notification("notifications/roots/list_changed")
    async def roots_changed(connection: Any, params: Any) -> None:
        result = await connection.send_request("roots/list", capability="roots")
        seen.append([root["uri"] for root in result["roots"]])

    async def roots() -> dict[str, Any]:
        return {"roots": [{"uri": uri} for uri in current]}

    with trio.fail_after(60):
        async with connected(notes.app, notes.url, roots_handler=roots) as session:
            await session.send_roots_list_changed()
            while not seen:
                await trio.sleep(0.1)
            current.append("file:///b")
            await session.send_roots_list_changed()
            while len(seen) < 2:
                await trio.sleep(0.1)
    assert seen == [["file:///a"], ["file:///a", "file:///b"]]


async def test_the_server_can_ping_the_client(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with_client_requests(notes.server)
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:  # no handlers at all
            assert text_of(await session.call_tool("ping_client")) == "pong {}"


async def test_a_server_giving_up_on_its_request_cancels_the_clients_handler(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    with_client_requests(notes.server)
    notes.server.client_request_timeout = 30
    handler_runs: list[str] = []

    async def never_answer(params: Any) -> dict[str, Any]:
        handler_runs.append("started")
        try:
            await trio.sleep_forever()
        finally:
            handler_runs.append("cancelled")
        raise AssertionError("unreachable")

    with trio.fail_after(120):
        async with tapped(notes.app, notes.url, elicitation_handler=never_answer) as (session, tap):
            # The tool's own deadline: the server cancels the request it sent.
            assert text_of(await session.call_tool("impatient")) == "gave up"
            (asked,) = [m for m in tap.received if isinstance(m, mcp_types.JSONRPCRequest)]
            (cancelled,) = [
                m
                for m in tap.received
                if isinstance(m, JSONRPCNotification) and m.method == "notifications/cancelled"
            ]
            assert (cancelled.params or {})["requestId"] == asked.id
            while handler_runs != ["started", "cancelled"]:
                await trio.sleep(0.1)
            # The server's client_request_timeout: the tool reports it, the handler is stopped.
            timed_out = await session.call_tool("confirm", {"name": "x"})
            assert timed_out.is_error is True
            assert text_of(timed_out) == "the client did not answer elicitation/create within 30s"
            while len(handler_runs) < 4:
                await trio.sleep(0.1)
            await session.ping()
    assert handler_runs == ["started", "cancelled"] * 2
    # A cancelled handler answers nothing: the client sent no response to either request.
    assert [m for m in tap.sent if "id" in m and "method" not in m] == []


async def test_cancelling_a_call_cancels_the_clients_own_handler_the_tool_waits_on(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    """Client cancels tools/call -> the tool stops -> the server withdraws its elicitation."""
    with_client_requests(notes.server)
    asked = trio.Event()
    handler_cancelled = trio.Event()

    async def ask_user(params: Any) -> dict[str, Any]:
        asked.set()
        try:
            await trio.sleep_forever()
        finally:
            handler_cancelled.set()
        raise AssertionError("unreachable")

    with trio.fail_after(60):
        async with tapped(notes.app, notes.url, elicitation_handler=ask_user) as (session, tap):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(session.call_tool, "confirm", {"name": "x"}))
                await asked.wait()
                nursery.cancel_scope.cancel()
            await handler_cancelled.wait()
            assert text_of(await session.call_tool("ping_client")) == "pong {}"
    elicit = next(m for m in tap.received if isinstance(m, mcp_types.JSONRPCRequest))
    assert elicit.method == "elicitation/create"
    assert not [m for m in tap.sent if m.get("id") == elicit.id and "method" not in m]


async def test_leaving_the_block_ends_the_server_session_and_its_work(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    running = trio.Event()
    outcome: list[BaseException] = []

    async def on_progress(*args: Any) -> None:
        running.set()

    async def slow_call(session: ClientSession) -> None:
        try:
            await session.call_tool(
                "process_notes", {"steps": 100, "delay": 1}, progress=on_progress
            )
        except ConnectionClosedError as error:
            outcome.append(error)

    with trio.fail_after(60):
        async with asgi_http_client(notes.app) as http, trio.open_nursery() as nursery:
            async with open_session(notes.url, http_client=http, protocol="handshake") as session:
                nursery.start_soon(slow_call, session)
                await running.wait()
                assert len(notes.server.connections) == 1
            # The request still waiting failed at once; the server learns by the disconnect
            # (there is no session left to send notifications/cancelled on).
            while not outcome or notes.server.connections or notes.jobs["cancelled"] == 0:
                await trio.sleep(0.1)
    assert isinstance(outcome[0], ConnectionClosedError)
    assert notes.jobs == {"completed": 0, "cancelled": 1}


async def test_concurrent_progress_goes_to_the_right_callback(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    seen: dict[int, list[float]] = {2: [], 3: []}

    def recorder(steps: int) -> Any:
        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            assert total == steps
            seen[steps].append(value)

        return on_progress

    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session, trio.open_nursery() as nursery:
            for steps in (2, 3):
                nursery.start_soon(
                    partial(
                        session.call_tool,
                        "process_notes",
                        {"steps": steps, "delay": 1},
                        progress=recorder(steps),
                    )
                )
    assert seen == {2: [1.0, 2.0], 3: [1.0, 2.0, 3.0]}


# -- list changes at run time -------------------------------------------------------------------------
async def test_list_changed_notifications_for_run_time_changes(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = Inbox()
    with trio.fail_after(60):
        async with connected(notes.app, notes.url, notification_handlers={"*": inbox}) as session:
            notes.server.add_tool(shout)
            await inbox.next("notifications/tools/list_changed")
            tools = [tool.name for tool in (await session.list_tools()).tools]
            assert tools[-1] == "shout"
            assert text_of(await session.call_tool("shout", {"text": "hey"})) == "HEY"

            notes.server.remove_tool("shout")
            await inbox.next("notifications/tools/list_changed")
            with pytest.raises(MCPError, match="Unknown tool: shout"):
                await session.call_tool("shout", {"text": "hey"})

            await session.call_tool("add_note", {"name": "fresh", "text": "x"})  # a new resource
            await inbox.next("notifications/resources/list_changed")
            uris = {str(r.uri) for r in (await session.list_resources()).resources}
            assert "note://fresh" in uris

            notes.server.add_prompt(shout, name="shout")
            await inbox.next("notifications/prompts/list_changed")
            assert "shout" in [p.name for p in (await session.list_prompts()).prompts]


async def test_a_handler_may_refresh_the_list_from_the_notification(
    notes: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    """The usual client pattern: on list_changed, ask again, from inside the handler."""
    views: list[list[str]] = []
    with trio.fail_after(60):
        async with connected(notes.app, notes.url) as session:

            async def refresh(notification: JSONRPCNotification) -> None:
                views.append([tool.name for tool in (await session.list_tools()).tools])

            session.set_notification_handler("notifications/tools/list_changed", refresh)
            notes.server.add_tool(shout)
            while not views:
                await trio.sleep(0.1)
    assert views == [["add_note", "delete_note", "find_notes", "process_notes", "shout"]]


async def test_a_burst_of_list_changes_does_not_stall_a_handler_that_relists(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server registering plugins one by one announces each; the handler re-lists each time.

    The handler awaits a request while the announcements keep coming: they
    must not pile up in front of that request's answer.
    """
    server = MCPServer("plugins")
    views: list[int] = []
    with trio.fail_after(50):  # less than the request timeout a stalled handler would hit
        async with connected(server.sse_app(), SSE_URL) as session:

            async def relist(notification: JSONRPCNotification) -> None:
                views.append(len((await session.list_tools()).tools))

            session.set_notification_handler("notifications/tools/list_changed", relist)
            for index in range(400):
                server.add_tool(shout, name=f"plugin{index}")
                await trio.lowlevel.checkpoint()  # as one discovering plugins would
            while not views or views[-1] != 400:
                await trio.sleep(0.1)
    assert views == sorted(views)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_paged_lists_are_followed_with_cursors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = MCPServer("paged", page_size=2)
    for index in range(5):
        server.add_tool(shout, name=f"tool{index}")
        server.add_prompt(shout, name=f"prompt{index}")
        server.add_resource(f"data://{index}", f"item {index}")
        server.add_resource(f"data://{index}/{{text}}", shout, name=f"template{index}")
    with trio.fail_after(60):
        async with connected(server.sse_app(), SSE_URL) as session:
            pages: dict[str, list[list[str]]] = {}
            for kind, method, key in (
                ("tools", session.list_tools, "name"),
                ("prompts", session.list_prompts, "name"),
                ("resources", session.list_resources, "uri"),
                ("resource_templates", session.list_resource_templates, "name"),
            ):
                cursor = None
                pages[kind] = []
                while True:
                    page = await method(cursor)  # type: ignore[operator]
                    pages[kind].append([str(getattr(item, key)) for item in getattr(page, kind)])
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            with pytest.raises(MCPError, match="invalid cursor") as invalid:
                await session.list_tools("not-a-cursor")
            with pytest.raises(MCPError, match="invalid cursor") as superscript:
                await session.list_tools("\u00b2")  # str.isdigit() says yes; int() says no
    assert superscript.value.code == -32602
    assert pages["tools"] == [["tool0", "tool1"], ["tool2", "tool3"], ["tool4"]]
    assert pages["prompts"] == [["prompt0", "prompt1"], ["prompt2", "prompt3"], ["prompt4"]]
    assert pages["resources"] == [["data://0", "data://1"], ["data://2", "data://3"], ["data://4"]]
    assert pages["resource_templates"][-1] == ["template4"]
    assert invalid.value.code == -32602


# -- over real sockets: hypercorn's trio worker serving the example ----------------------------------
E2E_TIMEOUT = 60.0


ENDPOINT_PATHS = ["/sse", "/mcp"]
"""The example's two transports, side by side in one app (``MCPServer.http_app``)."""


@pytest.mark.e2e
@pytest.mark.parametrize("path", ENDPOINT_PATHS)
async def test_end_to_end_against_the_notes_server_under_hypercorn(path: str) -> None:
    inbox = Inbox()
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    with trio.fail_after(E2E_TIMEOUT):
        async with (
            hypercorn_server("examples.notes_server:app") as server,
            open_session(
                server.base_url + path, notification_handlers={"*": inbox}, request_timeout=20, protocol="handshake"
            ) as session,
        ):
            assert session.server_info is not None
            assert session.server_info.name == "notes"
            assert session.protocol_version == SUPPORTED_PROTOCOL_VERSIONS[-1]
            await session.ping()

            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert tools["add_note"].output_schema is not None
            await session.subscribe_resource("note://welcome")
            added = await session.call_tool("add_note", {"name": "e2e", "text": "over tcp"})
            assert added.structured_content == {"name": "e2e", "text": "over tcp", "created": True}
            await inbox.next("notifications/resources/list_changed")
            assert (await inbox.next("notifications/message"))["data"] == "created note e2e"
            await session.call_tool("add_note", {"name": "welcome", "text": "edited"})
            assert await inbox.next("notifications/resources/updated") == {"uri": "note://welcome"}

            read = await session.read_resource("note://e2e")
            assert read.contents[0].text == "over tcp"  # type: ignore[union-attr]
            templates = await session.list_resource_templates()
            assert templates.resource_templates[0].uri_template == "note://{name}"
            prompt = await session.get_prompt("summarize", {"name": "e2e"})
            assert prompt.messages[0].content.resource.text == "over tcp"  # type: ignore[union-attr]
            completed = await session.complete(
                {"type": "ref/prompt", "name": "summarize"}, "name", "e"
            )
            assert completed.completion.values == ["e2e"]

            done = await session.call_tool(
                "process_notes", {"steps": 3, "delay": 0.01}, progress=on_progress
            )
            assert text_of(done) == "processed 2 notes in 3 steps"
            assert progress == [1.0, 2.0, 3.0]

            # Cancel a slow call once it runs; the server's job counter tells the story.
            with trio.CancelScope() as scope:

                async def cancel(*args: Any) -> None:
                    scope.cancel()

                await session.call_tool(
                    "process_notes", {"steps": 1000, "delay": 0.05}, progress=cancel
                )
            assert scope.cancelled_caught
            stats: dict[str, int] = {}
            while stats.get("cancelled") != 1:
                stats = orjson.loads(
                    (await session.read_resource("notes://stats")).contents[0].text
                )  # type: ignore[union-attr]
            assert stats == {"notes": 2, "completed": 1, "cancelled": 1}

            # Many requests at once over one connection.
            answers: dict[int, str] = {}

            async def find(index: int) -> None:
                result = await session.call_tool("find_notes", {"word": "tcp"})
                link = result.content[0]
                assert isinstance(link, mcp_types.ResourceLink)
                answers[index] = link.uri

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(find, index)
                    nursery.start_soon(session.ping)
            assert answers == {index: "note://e2e" for index in range(20)}
    assert "Traceback" not in server.text()


# -- the command line against the example --------------------------------------------------------
async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli_main, list(argv))


@pytest.mark.e2e
@pytest.mark.parametrize("path", ENDPOINT_PATHS)
async def test_cli_against_the_notes_server(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(E2E_TIMEOUT):
        async with hypercorn_server("examples.notes_server:app") as server:
            url = server.base_url + path
            assert await _cli(url) == 0
            listed = orjson.loads(capsys.readouterr().out)
            assert [tool["name"] for tool in listed] == [
                "add_note",
                "delete_note",
                "find_notes",
                "process_notes",
            ]
            assert listed[0]["outputSchema"]["required"] == ["name", "text", "created"]
            assert listed[2]["title"] == "Find notes"

            assert (
                await _cli(url, "--call", "add_note", "--arg", "name=cli", "--arg", "text=☃ 1") == 0
            )
            called = orjson.loads(capsys.readouterr().out)
            assert called["structuredContent"] == {"name": "cli", "text": "☃ 1", "created": True}

            assert await _cli(url, "--call", "find_notes", "--arg", "word=☃") == 0
            assert orjson.loads(capsys.readouterr().out)["content"] == [
                {
                    "type": "resource_link",
                    "uri": "note://cli",
                    "name": "cli",
                    "mimeType": "text/plain",
                }
            ]

            assert (
                await _cli(url, "--call", "add_note", "--arg", "name=Bad", "--arg", "text=x") == 1
            )
            assert capsys.readouterr().err == (
                "error: Invalid arguments for tool add_note: name: String should match pattern "
                "'^[a-z0-9-]+$' (code -32602)\n"
            )

            assert await _cli(url, "--call", "process_notes", "--arg", "steps=two") == 2
            assert capsys.readouterr().err == "error: --arg steps=two: expected integer (as JSON)\n"

            # A request timeout is reported in one line, and the server is told to stop.
            argv = ["--call", "process_notes", "--args-json", '{"steps": 100, "delay": 0.1}']
            assert await _cli(url, *argv, "--request-timeout", "0.5") == 1
            *progress, error = capsys.readouterr().err.splitlines()  # progress lines come first
            assert error == "error: tools/call: no response within 0.5 s"
            assert all(line.startswith("progress ") for line in progress)
            async with open_session(url, protocol="handshake") as session:
                stats: dict[str, int] = {}
                while stats.get("cancelled") != 1:
                    read = await session.read_resource("notes://stats")
                    stats = orjson.loads(read.contents[0].text)  # type: ignore[union-attr]
                    await trio.sleep(0.05)
            assert stats["completed"] == 0

            assert await _cli(url, "--call", "delete_note", "--arg", "name=cli") == 0
            assert orjson.loads(capsys.readouterr().out)["content"][0]["text"] == "deleted cli"
            assert await _cli(url, "--call", "delete_note", "--arg", "name=cli") == 1
            captured = capsys.readouterr()
            assert orjson.loads(captured.out)["isError"] is True
            assert captured.err == (
                "error: tool 'delete_note' reported an error: there is no note named 'cli'\n"
            )

            # A console in a legacy code page (PYTHONIOENCODING here) gets escaped JSON.
            snow = '{"name": "snow", "text": "\\u2603 fell"}'
            ascii_only = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "trio_mcp_sse",
                    "client",
                    url,
                    "--call",
                    "add_note",
                    "--args-json",
                    snow,
                ],
                capture_stdout=True,
                capture_stderr=True,
                cwd=str(ROOT),
                env={**os.environ, "PYTHONIOENCODING": "ascii"},
                check=False,
            )
            assert ascii_only.returncode == 0, ascii_only.stderr
            # Only the tool's log line, on stderr (the result alone is on stdout).
            assert ascii_only.stderr.decode().startswith("[info] ")
            assert ascii_only.stdout.isascii()
            assert b"\\u2603" in ascii_only.stdout
            assert orjson.loads(ascii_only.stdout)["structuredContent"]["text"] == "\u2603 fell"
    assert "Traceback" not in server.text()


@pytest.mark.e2e
async def test_cli_follows_pages_when_listing_and_when_checking_a_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = MCPServer("paged", page_size=2)
    for index in range(5):
        server.add_tool(shout, name=f"tool{index}")
    with trio.fail_after(E2E_TIMEOUT):
        async with serve_in_process(server.sse_app()) as base:
            assert await _cli(f"{base}/sse") == 0
            listed = orjson.loads(capsys.readouterr().out)
            assert [tool["name"] for tool in listed] == [f"tool{index}" for index in range(5)]
            # --arg makes the CLI look the tool up for its schema: on the last page here.
            assert await _cli(f"{base}/sse", "--call", "tool4", "--arg", "text=123") == 0
            assert orjson.loads(capsys.readouterr().out)["content"][0]["text"] == "123"


# -- a request's stream ended by the server mid-call, resumed by the client --------------------------
RECONNECTED = (
    "Reconnection test completed successfully. If you received this, "
    "the client properly reconnected after stream closure."
)


async def test_client_resumes_a_stream_the_server_closed_mid_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with (
            asgi_http_client(everything_server.server.http_app()) as http,
            open_session(MCP_URL, http_client=http, protocol="handshake") as session,
        ):
            result = await session.call_tool("test_reconnection")
            assert text_of(result) == RECONNECTED
            requests = http.transport_under_test.requests  # type: ignore[attr-defined]
            resumed = [r for r in requests if "last-event-id" in r.headers]
            assert [r.method for r in resumed] == ["GET"]
            assert resumed[0].headers["mcp-session-id"] == session_id_of(requests)


def session_id_of(requests: list[Any]) -> str:
    ids = {r.headers["mcp-session-id"] for r in requests if "mcp-session-id" in r.headers}
    (only,) = ids
    return str(only)


@pytest.mark.e2e
async def test_client_resumes_a_stream_the_server_closed_mid_call_under_hypercorn() -> None:
    with trio.fail_after(E2E_TIMEOUT):
        async with (
            hypercorn_server("tests.apps.streamable_apps:everything_sse") as server,
            open_session(f"{server.base_url}/mcp", protocol="handshake") as session,
        ):
            result = await session.call_tool("test_reconnection")
            assert text_of(result) == RECONNECTED
            # The session goes on after the resumed request.
            simple = await session.call_tool("test_simple_text")
            assert text_of(simple) == "This is a simple text response for testing."
    assert "Traceback" not in server.text()
