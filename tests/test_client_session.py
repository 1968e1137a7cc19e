"""ClientSession against our own server (in memory) and against a scripted server.

Our server covers the requests it implements (initialize, tools, ping,
cancellation); a :class:`FakeServer` plays whatever the server layer does not
do yet, or does only when things go wrong: progress, server-to-client
requests, notifications, errors, bad results, unsupported versions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import mcp_types
import pytest
import trio
import trio.testing

from tests.client_helpers import SSE_URL, FakeServer, answer_initialize, asgi_http_client
from trio_mcp_sse import Context, MCPError, MCPServer
from trio_mcp_sse.client import (
    LATEST_PROTOCOL_VERSION,
    ClientSession,
    ConnectionClosedError,
    PostError,
    ProtocolError,
    ProtocolVersionError,
    RequestTimeoutError,
    connect_sse,
    open_session,
)
from trio_mcp_sse.client._session import JSONRPCNotification


class SlowTools:
    """Our server with a tool that runs until cancelled, recording how it ended."""

    def __init__(self) -> None:
        self.server = MCPServer("slow", "1.0.0")
        self.started = trio.Event()
        self.cancelled = trio.Event()
        self.release = trio.Event()

        @self.server.tool
        async def echo(text: str) -> str:
            return text

        @self.server.tool
        async def add(a: float, b: float) -> float:
            return a + b

        @self.server.tool
        async def wait(ctx: Context) -> str:
            self.started.set()
            try:
                await self.release.wait()
            except trio.Cancelled:
                self.cancelled.set()
                raise
            return "released"


@asynccontextmanager
async def our_session(server: MCPServer, **options: Any) -> AsyncIterator[ClientSession]:
    async with (
        asgi_http_client(server.sse_app()) as http,
        open_session(SSE_URL, http_client=http, **options) as session,
    ):
        yield session


@asynccontextmanager
async def fake_session(
    server: FakeServer, *, initialize: bool = True, **options: Any
) -> AsyncIterator[ClientSession]:
    async with (
        asgi_http_client(server, lifespan=False) as http,
        connect_sse(SSE_URL, http_client=http) as connection,
        ClientSession(connection, **options) as session,
    ):
        if initialize:
            await session.initialize()
        yield session


def scripted(
    reply: Callable[[FakeServer, dict[str, Any]], Awaitable[None]],
) -> FakeServer:
    """A fake server that answers initialize, and hands every other message to ``reply``."""

    async def on_post(server: FakeServer, message: dict[str, Any]) -> None:
        if not await answer_initialize(server, message):
            await reply(server, message)

    return FakeServer(on_post=on_post)


async def nothing(server: FakeServer, message: dict[str, Any]) -> None:
    pass


# -- against our server ----------------------------------------------------------------------------
async def test_initialize_list_call_ping_against_our_server() -> None:
    tools = SlowTools()
    with trio.fail_after(10):
        async with our_session(tools.server, client_name="tester", client_version="9") as session:
            assert session.protocol_version == LATEST_PROTOCOL_VERSION
            assert session.server_info is not None
            assert session.server_info.name == "slow"
            assert session.server_capabilities is not None
            assert session.server_capabilities.tools is not None
            listed = await session.list_tools()
            assert {tool.name for tool in listed.tools} == {"echo", "add", "wait"}
            echo = next(tool for tool in listed.tools if tool.name == "echo")
            assert echo.input_schema["required"] == ["text"]
            result = await session.call_tool("echo", {"text": "hi"})
            assert isinstance(result, mcp_types.CallToolResult)
            assert not result.is_error
            assert result.content[0].text == "hi"  # type: ignore[union-attr]
            total = await session.call_tool("add", {"a": 2, "b": 3.5})
            assert total.content[0].text == "5.5"  # type: ignore[union-attr]
            await session.ping()


async def test_errors_from_our_server_raise_mcp_error() -> None:
    tools = SlowTools()
    with trio.fail_after(10):
        async with our_session(tools.server) as session:
            with pytest.raises(MCPError, match="Unknown tool: nope") as unknown:
                await session.call_tool("nope")
            assert unknown.value.code == -32602
            with pytest.raises(MCPError) as not_found:
                await session.send_request("no/such/method")
            assert not_found.value.code == -32601
            with pytest.raises(MCPError, match="Invalid arguments"):
                await session.call_tool("add", {"a": "x"})
            await session.ping()  # the session survives its errors


async def test_concurrent_requests_on_one_session_get_their_own_answers() -> None:
    tools = SlowTools()
    results: dict[int, str] = {}
    with trio.fail_after(10):
        async with our_session(tools.server) as session:

            async def call(index: int) -> None:
                result = await session.call_tool("echo", {"text": f"n{index}"})
                results[index] = result.content[0].text  # type: ignore[union-attr]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.call_tool, "wait")  # a slow call does not block the rest
                await tools.started.wait()
                for index in range(25):
                    nursery.start_soon(call, index)
                while len(results) < 25:
                    await trio.sleep(0.01)
                tools.release.set()
    assert results == {index: f"n{index}" for index in range(25)}


async def test_cancelling_call_tool_cancels_the_tool_on_the_server() -> None:
    tools = SlowTools()
    with trio.fail_after(10):
        async with our_session(tools.server) as session:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.call_tool, "wait")
                    await tools.started.wait()
                    scope.cancel()
            await tools.cancelled.wait()  # notifications/cancelled reached the server's tool
            assert (await session.call_tool("echo", {"text": "still here"})).content[
                0
            ].text == "still here"  # type: ignore[union-attr]


async def test_request_timeout_raises_and_cancels_on_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tools = SlowTools()
    with trio.fail_after(100):
        async with our_session(tools.server, request_timeout=5) as session:
            start = trio.current_time()
            with pytest.raises(RequestTimeoutError, match="tools/call: no response within 5 s"):
                await session.call_tool("wait")
            assert trio.current_time() - start == pytest.approx(5)
            await tools.cancelled.wait()
            with pytest.raises(RequestTimeoutError, match="within 1 s"):
                await session.call_tool("wait", request_timeout=1)  # a per-call bound
            assert isinstance(RequestTimeoutError("x"), TimeoutError)


# -- against a scripted server ---------------------------------------------------------------------
async def test_initialize_sends_version_capabilities_and_initialized() -> None:
    server = scripted(nothing)

    async def sample(params: mcp_types.CreateMessageRequestParams) -> dict[str, Any]:
        return {}

    async def roots() -> dict[str, Any]:
        return {"roots": []}

    with trio.fail_after(10):
        async with fake_session(
            server, protocol_version="2025-03-26", sampling_handler=sample, roots_handler=roots
        ) as session:
            assert session.protocol_version == "2025-03-26"
            initialized = await server.wait_for_post(
                lambda m: m.get("method") == "notifications/initialized"
            )
    initialize = server.posted[0]
    assert initialize["method"] == "initialize"
    assert initialize["params"]["protocolVersion"] == "2025-03-26"
    assert initialize["params"]["capabilities"] == {"sampling": {}, "roots": {"listChanged": True}}
    assert initialize["params"]["clientInfo"]["name"] == "trio-mcp-sse"
    assert "id" not in initialized
    assert server.posted.index(initialized) == 1


async def test_a_version_the_client_does_not_speak_is_refused() -> None:
    async def on_post(server: FakeServer, message: dict[str, Any]) -> None:
        await answer_initialize(server, message, protocolVersion="1999-01-01")

    server = FakeServer(on_post=on_post)
    with trio.fail_after(10):
        async with fake_session(server, initialize=False) as session:
            with pytest.raises(ProtocolVersionError, match="'1999-01-01'"):
                await session.initialize()
            assert session.initialize_result is None
    assert [m.get("method") for m in server.posted] == [
        "initialize"
    ]  # no notifications/initialized


def test_unknown_protocol_version_or_bad_timeout_is_refused_up_front() -> None:
    connection: Any = object()
    with pytest.raises(ValueError, match="protocol_version"):
        ClientSession(connection, protocol_version="2099-01-01")
    with pytest.raises(ValueError, match="request_timeout"):
        ClientSession(connection, request_timeout=0)


async def test_an_invalid_result_is_a_protocol_error() -> None:
    async def reply(server: FakeServer, message: dict[str, Any]) -> None:
        await server.push(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": "not a list"}}
        )

    with trio.fail_after(10):
        async with fake_session(scripted(reply)) as session:
            with pytest.raises(
                ProtocolError,
                match="tools/list: the server's result is not a valid ListToolsResult: tools",
            ):
                await session.list_tools()


async def test_json_rpc_errors_keep_code_message_and_data() -> None:
    async def reply(server: FakeServer, message: dict[str, Any]) -> None:
        error = {"code": -32002, "message": "Resource not found", "data": {"uri": "file:///x"}}
        await server.push({"jsonrpc": "2.0", "id": message["id"], "error": error})

    with trio.fail_after(10):
        async with fake_session(scripted(reply)) as session:
            with pytest.raises(MCPError) as caught:
                await session.read_resource("file:///x")
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        -32002,
        "Resource not found",
        {"uri": "file:///x"},
    )


async def test_resources_and_prompts_requests_and_typed_results() -> None:
    results = {
        "resources/list": {"resources": [{"uri": "file:///a", "name": "a"}], "nextCursor": "p2"},
        "resources/templates/list": {
            "resourceTemplates": [{"uriTemplate": "file:///{x}", "name": "x"}]
        },
        "resources/read": {"contents": [{"uri": "file:///a", "text": "A"}]},
        "prompts/list": {
            "prompts": [{"name": "greet", "arguments": [{"name": "who", "required": True}]}]
        },
        "prompts/get": {
            "messages": [{"role": "user", "content": {"type": "text", "text": "hi bob"}}]
        },
        "logging/setLevel": {},
    }

    async def reply(server: FakeServer, message: dict[str, Any]) -> None:
        await server.push(
            {"jsonrpc": "2.0", "id": message["id"], "result": results[message["method"]]}
        )

    server = scripted(reply)
    with trio.fail_after(10):
        async with fake_session(server) as session:
            resources = await session.list_resources()
            assert [r.name for r in resources.resources] == ["a"]
            assert resources.next_cursor == "p2"
            await session.list_resources(cursor="p2")
            templates = await session.list_resource_templates()
            assert templates.resource_templates[0].uri_template == "file:///{x}"
            read = await session.read_resource("file:///a")
            assert read.contents[0].text == "A"  # type: ignore[union-attr]
            prompts = await session.list_prompts()
            assert prompts.prompts[0].arguments[0].name == "who"  # type: ignore[index]
            prompt = await session.get_prompt("greet", {"who": "bob"})
            assert prompt.messages[0].content.text == "hi bob"  # type: ignore[union-attr]
            await session.set_logging_level("warning")
    sent = {m["method"]: m.get("params") for m in server.posted if "id" in m}
    assert sent["resources/list"] == {"cursor": "p2"}  # the later of the two
    assert sent["resources/read"] == {"uri": "file:///a"}
    assert sent["prompts/get"] == {"name": "greet", "arguments": {"who": "bob"}}
    assert sent["logging/setLevel"] == {"level": "warning"}


async def test_completion_and_subscription_requests() -> None:
    results: dict[str, Any] = {
        "completion/complete": {"completion": {"values": ["bob", "bea"], "hasMore": True}},
        "resources/subscribe": {},
        "resources/unsubscribe": {},
    }

    async def reply(server: FakeServer, message: dict[str, Any]) -> None:
        await server.push(
            {"jsonrpc": "2.0", "id": message["id"], "result": results[message["method"]]}
        )

    server = scripted(reply)
    with trio.fail_after(10):
        async with fake_session(server) as session:
            completed = await session.complete(
                mcp_types.PromptReference(type="ref/prompt", name="greet"), "who", "b"
            )
            assert completed.completion.values == ["bob", "bea"]
            assert completed.completion.has_more is True
            await session.complete(
                {"type": "ref/resource", "uri": "file:///{dir}/{name}"},
                "name",
                "",
                context={"dir": "home"},
            )
            assert await session.subscribe_resource("file:///a") is None
            assert await session.unsubscribe_resource("file:///a") is None
    sent = [(m["method"], m.get("params")) for m in server.posted if "id" in m]
    assert sent[1:] == [
        (
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "greet"},
                "argument": {"name": "who", "value": "b"},
            },
        ),
        (
            "completion/complete",
            {
                "ref": {"type": "ref/resource", "uri": "file:///{dir}/{name}"},
                "argument": {"name": "name", "value": ""},
                "context": {"arguments": {"dir": "home"}},
            },
        ),
        ("resources/subscribe", {"uri": "file:///a"}),
        ("resources/unsubscribe", {"uri": "file:///a"}),
    ]


async def test_progress_arrives_in_order_before_the_result() -> None:
    async def reply(server: FakeServer, message: dict[str, Any]) -> None:
        token = message["params"]["_meta"]["progressToken"]
        for step in range(1, 4):
            params = {
                "progressToken": token,
                "progress": step,
                "total": 3,
                "message": f"step {step}",
            }
            await server.push(
                {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
            )
        await server.push(
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": "other", "progress": 1},
            }
        )
        result = {"content": [{"type": "text", "text": "done"}]}
        await server.push({"jsonrpc": "2.0", "id": message["id"], "result": result})

    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        await trio.lowlevel.checkpoint()
        seen.append((progress, total, message))

    with trio.fail_after(10):
        async with fake_session(scripted(reply)) as session:
            result = await session.call_tool("long", {"n": 3}, progress=on_progress)
            assert seen == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
            assert result.content[0].text == "done"  # type: ignore[union-attr]


async def test_server_requests_are_answered_by_handlers_or_refused() -> None:
    replies: dict[Any, dict[str, Any]] = {}

    async def sample(params: mcp_types.CreateMessageRequestParams) -> mcp_types.CreateMessageResult:
        assert params.max_tokens == 10
        text = params.messages[0].content.text  # type: ignore[union-attr]
        return mcp_types.CreateMessageResult(
            role="assistant",
            content=mcp_types.TextContent(type="text", text=text.upper()),
            model="upper",
        )

    async def elicit(
        params: mcp_types.ElicitRequestFormParams | mcp_types.ElicitRequestURLParams,
    ) -> dict[str, Any]:
        assert isinstance(params, mcp_types.ElicitRequestFormParams)
        return {"action": "accept", "content": {"name": params.message}}

    async def roots() -> mcp_types.ListRootsResult:
        return mcp_types.ListRootsResult(roots=[mcp_types.Root(uri="file:///work", name="work")])

    requests = [
        (
            "s",
            "sampling/createMessage",
            {
                "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
                "maxTokens": 10,
            },
        ),
        (
            "e",
            "elicitation/create",
            {"message": "who?", "requestedSchema": {"type": "object", "properties": {}}},
        ),
        ("r", "roots/list", None),
        ("p", "ping", None),
        ("u", "something/else", {}),
        ("bad", "sampling/createMessage", {"messages": "nope"}),
    ]
    server = scripted(nothing)
    with trio.fail_after(10):
        async with fake_session(
            server, sampling_handler=sample, elicitation_handler=elicit, roots_handler=roots
        ):
            for request_id, method, params in requests:
                message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
                if params is not None:
                    message["params"] = params
                await server.push(message)
            for request_id, _, _ in requests:
                replies[request_id] = await server.wait_for_post(
                    lambda m, i=request_id: m.get("id") == i
                )  # type: ignore[misc]
    assert replies["s"]["result"] == {
        "role": "assistant",
        "content": {"type": "text", "text": "HI"},
        "model": "upper",
    }
    assert replies["e"]["result"] == {"action": "accept", "content": {"name": "who?"}}
    assert replies["r"]["result"]["roots"] == [{"uri": "file:///work", "name": "work"}]
    assert replies["p"]["result"] == {}
    assert replies["u"]["error"]["code"] == -32601
    assert replies["bad"]["error"]["code"] == -32602
    assert "messages" in replies["bad"]["error"]["message"]


async def test_without_handlers_server_requests_get_method_not_found() -> None:
    server = scripted(nothing)
    with trio.fail_after(10):
        async with fake_session(server):
            for index, method in enumerate(
                ["sampling/createMessage", "elicitation/create", "roots/list"]
            ):
                await server.push(
                    {"jsonrpc": "2.0", "id": f"s{index}", "method": method, "params": {}}
                )
            answers = [
                await server.wait_for_post(lambda m, i=i: m.get("id") == f"s{i}") for i in range(3)
            ]  # type: ignore[misc]
    assert [a["error"]["code"] for a in answers] == [-32601] * 3
    assert "does not support sampling" in answers[0]["error"]["message"]
    assert "does not support roots" in answers[2]["error"]["message"]


async def test_handler_failures_become_errors_for_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def refuse(params: Any) -> Any:
        raise MCPError(-1, "User rejected sampling")

    async def broken() -> Any:
        raise RuntimeError("bug")

    server = scripted(nothing)
    with trio.fail_after(10):
        async with fake_session(server, sampling_handler=refuse, roots_handler=broken):
            params = {"messages": [], "maxTokens": 1}
            await server.push(
                {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": params}
            )
            await server.push({"jsonrpc": "2.0", "id": "s2", "method": "roots/list"})
            refused = await server.wait_for_post(lambda m: m.get("id") == "s1")
            failed = await server.wait_for_post(lambda m: m.get("id") == "s2")
    assert refused["error"] == {"code": -1, "message": "User rejected sampling"}
    assert failed["error"]["code"] == -32603
    assert "bug" not in failed["error"]["message"]  # internals stay on the client
    assert any("roots/list handler failed" in r.getMessage() for r in caplog.records)


async def test_the_server_can_cancel_its_own_request() -> None:
    started, cancelled = trio.Event(), trio.Event()

    async def elicit(params: Any) -> dict[str, Any]:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        return {}  # pragma: no cover

    server = scripted(nothing)
    with trio.fail_after(10):
        async with fake_session(server, elicitation_handler=elicit):
            params = {"message": "?", "requestedSchema": {"type": "object", "properties": {}}}
            await server.push(
                {"jsonrpc": "2.0", "id": "q", "method": "elicitation/create", "params": params}
            )
            await started.wait()
            cancel = {"requestId": "q", "reason": "user left"}
            await server.push(
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel}
            )
            await cancelled.wait()
            await server.push({"jsonrpc": "2.0", "id": "after", "method": "ping"})
            await server.wait_for_post(lambda m: m.get("id") == "after")
    assert not [
        m for m in server.posted if m.get("id") == "q"
    ]  # no response for a cancelled request


async def test_server_log_messages_go_to_python_logging_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sse.client.server")
    server = scripted(nothing)
    with trio.fail_after(10):
        async with fake_session(server):
            for level, data in [("warning", "disk low"), ("debug", {"n": 1})]:
                params = {"level": level, "logger": "db", "data": data}
                await server.push(
                    {"jsonrpc": "2.0", "method": "notifications/message", "params": params}
                )
            await server.push({"jsonrpc": "2.0", "id": "sync", "method": "ping"})
            await server.wait_for_post(lambda m: m.get("id") == "sync")
            while len([r for r in caplog.records if r.name == "trio_mcp_sse.client.server"]) < 2:
                await trio.sleep(0.001)
    logged = [r for r in caplog.records if r.name == "trio_mcp_sse.client.server"]
    assert [(r.levelno, r.getMessage()) for r in logged] == [
        (logging.WARNING, "[db] disk low"),
        (logging.DEBUG, "[db] {'n': 1}"),
    ]


async def test_notification_handlers_run_in_order_and_may_call_the_session() -> None:
    async def reply(server: FakeServer, message: dict[str, Any]) -> None:
        if message.get("method") == "ping":
            await server.push({"jsonrpc": "2.0", "id": message["id"], "result": {}})

    server = scripted(reply)
    seen: list[str] = []
    done = trio.Event()
    session_ref: list[ClientSession] = []

    async def on_tools_changed(notification: JSONRPCNotification) -> None:
        await session_ref[0].ping()  # would deadlock if handlers ran on the receive loop
        seen.append(notification.method)

    async def on_anything(notification: JSONRPCNotification) -> None:
        seen.append(notification.method)
        if notification.method == "notifications/last":
            done.set()

    with trio.fail_after(10):
        async with fake_session(
            server, notification_handlers={"notifications/tools/list_changed": on_tools_changed}
        ) as session:
            session_ref.append(session)
            session.set_notification_handler("*", on_anything)
            await server.push({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            await server.push({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"})
            await server.push({"jsonrpc": "2.0", "method": "notifications/last"})
            await done.wait()
            session.set_notification_handler("*", None)
    assert seen == [
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
        "notifications/last",
    ]


async def test_identical_change_notifications_waiting_for_a_handler_are_one() -> None:
    server = scripted(nothing)
    release = trio.Event()
    started = trio.Event()
    seen: list[tuple[str, Any]] = []

    async def on_anything(notification: JSONRPCNotification) -> None:
        seen.append((notification.method, notification.params))
        started.set()
        await release.wait()

    tools_changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    with trio.fail_after(10):
        async with fake_session(server, notification_handlers={"*": on_anything}):
            await server.push(tools_changed)
            await started.wait()  # the handler runs: a new change must be seen again
            for uri in ("file:///a", "file:///b", "file:///a"):
                await server.push(tools_changed)
                await server.push(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/resources/updated",
                        "params": {"uri": uri},
                    }
                )
                await server.push(
                    {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": 1}}
                )
            await server.push({"jsonrpc": "2.0", "method": "notifications/last"})
            await trio.testing.wait_all_tasks_blocked()  # all of it queued behind the handler
            release.set()
            while not seen or seen[-1][0] != "notifications/last":
                await trio.sleep(0.01)
    assert seen == [
        ("notifications/tools/list_changed", None),
        ("notifications/tools/list_changed", None),
        ("notifications/resources/updated", {"uri": "file:///a"}),
        ("notifications/message", {"data": 1}),
        ("notifications/resources/updated", {"uri": "file:///b"}),
        ("notifications/message", {"data": 1}),
        ("notifications/message", {"data": 1}),
        ("notifications/last", None),
    ]


async def test_a_refused_post_fails_only_its_request() -> None:
    async def on_post(server: FakeServer, message: dict[str, Any]) -> None:
        if not await answer_initialize(server, message) and "id" in message:
            await server.push({"jsonrpc": "2.0", "id": message["id"], "result": {}})

    server = FakeServer(
        on_post=on_post, post_status=lambda m: 500 if m.get("method") == "tools/list" else 202
    )
    with trio.fail_after(10):
        async with fake_session(server) as session:
            with pytest.raises(PostError, match="answered 500"):
                await session.list_tools()
            await session.ping()
    assert not [m for m in server.posted if m.get("method") == "notifications/cancelled"]


async def test_pending_requests_end_when_the_stream_ends() -> None:
    server = scripted(nothing)  # never answers tools/call

    async def scenario() -> None:
        async with fake_session(server) as session, trio.open_nursery() as nursery:
            nursery.start_soon(session.call_tool, "x")
            await server.wait_for_post(lambda m: m.get("method") == "tools/call")
            server.end_stream()
            await trio.sleep_forever()

    with trio.fail_after(10), pytest.raises(ConnectionClosedError, match="closed the event stream"):
        await scenario()


async def test_the_session_is_unusable_after_its_block() -> None:
    server = scripted(nothing)
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
        ):
            session = ClientSession(connection)
            with pytest.raises(RuntimeError, match="inside 'async with"):
                await session.ping()
            async with session:
                await session.initialize()
                with pytest.raises(RuntimeError, match="already initialized"):
                    await session.initialize()
            assert session.closed
            with pytest.raises(ConnectionClosedError, match="session is closed"):
                await session.ping()
            with pytest.raises(RuntimeError, match="only once"):
                async with session:
                    pass


async def test_requests_waiting_when_the_session_closes_fail_at_once() -> None:
    server = scripted(nothing)
    outcome: list[BaseException] = []
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
            trio.open_nursery() as nursery,
            ClientSession(connection) as session,
        ):

            async def waiting() -> None:
                try:
                    await session.ping()
                except ConnectionClosedError as error:
                    outcome.append(error)

            nursery.start_soon(waiting)
            await server.wait_for_post(lambda m: m.get("method") == "ping")
    assert len(outcome) == 1
    assert "session is closed" in str(outcome[0])


async def test_open_session_initializes() -> None:
    server = scripted(nothing)
    with trio.fail_after(10):
        async with (
            asgi_http_client(server, lifespan=False) as http,
            open_session(SSE_URL, http_client=http) as session,
        ):
            assert session.server_info is not None
            assert session.server_info.name == "fake"
            assert session.instructions is None
