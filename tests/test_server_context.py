"""The request context: progress, logging, identity, and server->client requests."""

from __future__ import annotations

from typing import Any

import mcp_types
import mcp_types.methods
import pydantic
import pytest
import trio
import trio.testing

from trio_mcp_sse.lowlevel import SessionClosed
from trio_mcp_sse.server import (
    ClientCapabilityError,
    ClientRequestTimeout,
    Context,
    MCPError,
    MCPServer,
    ServerConnection,
    ToolError,
)
from trio_mcp_sse.testing import connected_client, serve_sessions

ALL_CAPABILITIES = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}


class Contact(pydantic.BaseModel):
    name: str
    email: str


def make_server(**options: Any) -> tuple[MCPServer, dict[str, Any]]:
    server = MCPServer("context", **options)
    seen: dict[str, Any] = {}

    @server.tool
    async def work(steps: int, ctx: Context) -> str:
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
        return "worked"

    @server.tool
    async def who(ctx: Context) -> dict[str, Any]:
        return {
            "session": ctx.session_id,
            "principal": ctx.principal,
            "agent": ctx.headers.get("user-agent"),
            "client": dict(ctx.client_info or {}),
            "version": ctx.protocol_version,
            "token": ctx.progress_token,
        }

    @server.tool
    async def chatty(ctx: Context) -> str:
        await ctx.debug("debug detail")
        await ctx.info("info message", logger="app")
        await ctx.warning({"structured": True})
        await ctx.error("bad thing")
        return "logged"

    @server.tool
    async def ask_model(question: str, ctx: Context) -> str:
        try:
            result = await ctx.sample(question, max_tokens=50, system_prompt="Be brief.", temperature=0.1)
        except ClientCapabilityError as error:
            raise ToolError(str(error)) from None
        assert isinstance(result.content, mcp_types.TextContent)
        return f"{result.model}: {result.content.text}"

    @server.tool
    async def ask_user(ctx: Context) -> str:
        result = await ctx.elicit("Who should we contact?", Contact)
        if result.action != "accept":
            return result.action
        return Contact.model_validate(result.content).email

    @server.tool
    async def roots(ctx: Context) -> list[str]:
        return [str(root.uri) for root in await ctx.list_roots()]

    @server.tool
    async def wait_for_model(ctx: Context) -> str:
        seen["connection"] = ctx.connection
        try:
            await ctx.sample("anything?", max_tokens=5)
        except BaseException as exc:
            seen["raised"] = type(exc)
            raise
        return "unreachable"

    return server, seen


async def test_progress_arrives_in_order_before_the_result() -> None:
    server, _ = make_server()
    async with connected_client(server) as client:
        request_id = await client.request(
            "tools/call", {"name": "work", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok"}}
        )
        messages = [await client.receive() for _ in range(4)]
        progress = [m for m in messages[:3]]
        assert [m["method"] for m in progress] == ["notifications/progress"] * 3
        assert [m["params"] for m in progress] == [
            {"progressToken": "tok", "progress": step, "total": 3, "message": f"step {step}"} for step in (1, 2, 3)
        ]
        for message in progress:
            mcp_types.methods.parse_server_notification(message["method"], "2025-11-25", message.get("params"))
        assert messages[3]["id"] == request_id
        assert messages[3]["result"]["content"][0]["text"] == "worked"


async def test_no_progress_without_a_token_and_no_message_on_old_protocols() -> None:
    server, _ = make_server()
    async with connected_client(server) as client:
        await client.call("tools/call", {"name": "work", "arguments": {"steps": 2}})
        assert await client.drain() == []
    async with connected_client(server, version="2024-11-05") as client:
        await client.call("tools/call", {"name": "work", "arguments": {"steps": 1}, "_meta": {"progressToken": 7}})
        (progress,) = await client.drain()
        assert progress["params"] == {"progressToken": 7, "progress": 1, "total": 1}


async def test_identity_and_headers() -> None:
    server, _ = make_server()
    async with serve_sessions(server) as host:
        client = await host.connect(principal="alice")
        await client.initialize(version="2025-06-18", client_info={"name": "probe", "version": "9"})
        result = await client.call(
            "tools/call", {"name": "who", "_meta": {"progressToken": 5}}, headers={"user-agent": "probe/9"}
        )
        assert result["structuredContent"] == {
            "session": client.session.id,
            "principal": "alice",
            "agent": "probe/9",
            "client": {"name": "probe", "version": "9"},
            "version": "2025-06-18",
            "token": 5,
        }


async def test_logging_respects_the_level() -> None:
    server, _ = make_server()
    async with connected_client(server) as client:
        # The server's default threshold is "info".
        await client.call("tools/call", {"name": "chatty"})
        messages = await client.drain()
        assert [m["params"]["level"] for m in messages] == ["info", "warning", "error"]
        assert messages[0]["params"] == {"level": "info", "data": "info message", "logger": "app"}
        assert messages[1]["params"]["data"] == {"structured": True}
        for message in messages:
            mcp_types.methods.parse_server_notification(message["method"], "2025-11-25", message["params"])

        assert await client.call("logging/setLevel", {"level": "warning"}) == {}
        await client.call("tools/call", {"name": "chatty"})
        assert [m["params"]["level"] for m in await client.drain()] == ["warning", "error"]

        await client.call("logging/setLevel", {"level": "debug"})
        await client.call("tools/call", {"name": "chatty"})
        assert len(await client.drain()) == 4

        error = await client.call_error("logging/setLevel", {"level": "verbose"})
        assert error["code"] == -32602


async def test_sampling_round_trip() -> None:
    server, _ = make_server()
    async with connected_client(server, capabilities=ALL_CAPABILITIES) as client:
        call_id = await client.request("tools/call", {"name": "ask_model", "arguments": {"question": "2+2?"}})
        request = await client.server_request("sampling/createMessage")
        mcp_types.methods.parse_server_request(request["method"], "2025-11-25", request["params"])
        assert request["params"] == {
            "messages": [{"role": "user", "content": {"type": "text", "text": "2+2?"}}],
            "maxTokens": 50,
            "systemPrompt": "Be brief.",
            "temperature": 0.1,
        }
        await client.respond(
            request["id"],
            {"role": "assistant", "content": {"type": "text", "text": "4"}, "model": "tiny", "stopReason": "endTurn"},
        )
        result = (await client.response(call_id))["result"]
        assert result["content"][0]["text"] == "tiny: 4"
        assert server.connections[0].rpc.pending == {}


async def test_a_refusal_by_the_client_is_the_tools_result() -> None:
    """The user declining a sampling request is news for the model, not a protocol error."""
    server, _ = make_server()
    async with connected_client(server, capabilities=ALL_CAPABILITIES) as client:
        call_id = await client.request("tools/call", {"name": "ask_model", "arguments": {"question": "?"}})
        request = await client.server_request("sampling/createMessage")
        await client.respond_error(request["id"], -1, "User rejected sampling request")
        result = (await client.response(call_id))["result"]
        assert result["isError"] is True
        assert result["content"] == [
            {"type": "text", "text": "The client refused the request: User rejected sampling request"}
        ]


async def test_elicitation_and_roots() -> None:
    server, _ = make_server()
    async with connected_client(server, capabilities=ALL_CAPABILITIES) as client:
        call_id = await client.request("tools/call", {"name": "ask_user"})
        request = await client.server_request("elicitation/create")
        assert request["params"]["message"] == "Who should we contact?"
        assert request["params"]["requestedSchema"]["properties"].keys() == {"name", "email"}
        await client.respond(request["id"], {"action": "accept", "content": {"name": "Ann", "email": "ann@example.org"}})
        assert (await client.response(call_id))["result"]["content"][0]["text"] == "ann@example.org"

        call_id = await client.request("tools/call", {"name": "ask_user"})
        request = await client.server_request("elicitation/create")
        await client.respond(request["id"], {"action": "decline"})
        assert (await client.response(call_id))["result"]["content"][0]["text"] == "decline"

        call_id = await client.request("tools/call", {"name": "roots"})
        request = await client.server_request("roots/list")
        await client.respond(request["id"], {"roots": [{"uri": "file:///home/ann", "name": "home"}]})
        result = (await client.response(call_id))["result"]
        # A list of strings is a list of text blocks.
        assert result["content"] == [{"type": "text", "text": "file:///home/ann"}]


async def test_requests_need_the_client_capability() -> None:
    server, _ = make_server()
    async with connected_client(server, capabilities={}) as client:
        result = await client.call("tools/call", {"name": "ask_model", "arguments": {"question": "?"}})
        assert result["isError"] is True
        assert "'sampling' capability" in result["content"][0]["text"]
        # A tool that lets ClientCapabilityError escape reports it as its result, not a hang.
        roots = await client.call("tools/call", {"name": "roots"})
        assert roots["isError"] is True
        assert "'roots' capability" in roots["content"][0]["text"]
        # Nothing was sent to the client.
        assert await client.drain() == []


async def test_client_error_answer_raises_mcp_error() -> None:
    server = MCPServer("errors")

    @server.tool
    async def ask(ctx: Context) -> str:
        try:
            await ctx.sample("hi", max_tokens=1)
        except MCPError as error:
            return f"{error.code}: {error.message}"
        return "no error"

    async with connected_client(server, capabilities=ALL_CAPABILITIES) as client:
        call_id = await client.request("tools/call", {"name": "ask"})
        request = await client.server_request("sampling/createMessage")
        await client.respond_error(request["id"], -1, "User rejected sampling request")
        result = (await client.response(call_id))["result"]
        assert result["content"][0]["text"] == "-1: User rejected sampling request"


async def test_unanswered_request_times_out_and_the_client_is_told(autojump_clock: trio.abc.Clock) -> None:
    server = MCPServer("timeout", client_request_timeout=5)

    @server.tool
    async def ask(ctx: Context) -> str:
        try:
            await ctx.sample("hi", max_tokens=1)
        except ClientRequestTimeout as error:
            return str(error)
        return "answered"

    async with connected_client(server, capabilities=ALL_CAPABILITIES) as client:
        call_id = await client.request("tools/call", {"name": "ask"})
        request = await client.server_request("sampling/createMessage")
        cancelled = await client.notification("notifications/cancelled")
        assert cancelled["params"]["requestId"] == request["id"]
        result = (await client.response(call_id))["result"]
        assert result["content"][0]["text"] == "the client did not answer sampling/createMessage within 5s"
        # A late answer is ignored.
        await client.respond(request["id"], {"role": "assistant", "content": {"type": "text", "text": "late"}, "model": "m"})
        assert await client.call("ping") == {}


async def test_cancelling_the_caller_tells_the_client_to_stop(autojump_clock: trio.abc.Clock) -> None:
    server = MCPServer("shorter")

    @server.tool
    async def ask(ctx: Context) -> str:
        with trio.move_on_after(1):
            await ctx.sample("hi", max_tokens=1)
            return "answered"
        return "gave up"

    async with connected_client(server, capabilities=ALL_CAPABILITIES) as client:
        call_id = await client.request("tools/call", {"name": "ask"})
        request = await client.server_request("sampling/createMessage")
        cancelled = await client.notification("notifications/cancelled")
        assert cancelled["params"]["requestId"] == request["id"]
        assert (await client.response(call_id))["result"]["content"][0]["text"] == "gave up"


async def test_disconnect_during_a_pending_client_request_fails_it_without_leaks() -> None:
    server, seen = make_server()
    async with serve_sessions(server) as host:
        client = await host.initialized_client(capabilities=ALL_CAPABILITIES)
        await client.request("tools/call", {"name": "wait_for_model"})
        await client.server_request("sampling/createMessage")
        connection: ServerConnection = seen["connection"]
        assert len(connection.rpc.pending) == 1
        assert len(connection.in_flight) == 1

        client.session.close("client went away")  # what the transport does on disconnect
        with trio.fail_after(5):
            await client.session.finished.wait()
        assert seen["raised"] is trio.Cancelled
        assert connection.rpc.pending == {}
        assert connection.in_flight == {}
        assert connection.closed
        assert server.connections == ()


async def test_a_waiter_outside_the_session_gets_session_closed() -> None:
    server, _ = make_server()
    async with serve_sessions(server) as host:
        client = await host.initialized_client(capabilities=ALL_CAPABILITIES)
        (connection,) = server.connections
        outcome: list[BaseException] = []

        async def ask_from_elsewhere() -> None:
            try:
                await connection.send_request("roots/list", capability="roots")
            except SessionClosed as error:
                outcome.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_from_elsewhere)
            await client.server_request("roots/list")
            client.session.close("gone")
        assert len(outcome) == 1
        assert connection.rpc.pending == {}
        with pytest.raises(SessionClosed):
            await connection.send_request("ping")


async def test_custom_server_to_client_request_and_notification_handlers() -> None:
    server = MCPServer("custom")
    changes: list[str] = []

    @server.notification("notifications/roots/list_changed")
    async def roots_changed(connection: ServerConnection, params: Any) -> None:
        changes.append(connection.session.id)

    @server.tool
    async def ping_client(ctx: Context) -> str:
        return str(await ctx.send_request("ping"))

    async with connected_client(server) as client:
        await client.notify("notifications/roots/list_changed")
        call_id = await client.request("tools/call", {"name": "ping_client"})
        request = await client.server_request("ping")
        await client.respond(request["id"], {})
        assert (await client.response(call_id))["result"]["content"][0]["text"] == "{}"
        await trio.testing.wait_all_tasks_blocked()
        assert changes == [client.session.id]
