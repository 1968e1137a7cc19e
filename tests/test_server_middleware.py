"""Middleware: order, answers and errors, what it sees, notifications, cancellation, both eras.

In memory: the session level (``connected_client``) for the handshake era, the in-memory HTTP
client (``open_http_client``) for 2026-07-28, where every request stands alone.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic
import pytest
import trio
import trio.testing

from trio_mcp_sse import AccessToken
from trio_mcp_sse.client import open_session
from trio_mcp_sse.server import CallNext, Context, MCPError, MCPServer, RequestInfo, ToolError
from trio_mcp_sse.testing import connected_client, open_http_client, serve_sessions

ADD = {"name": "add", "arguments": {"a": 1, "b": 2}}


def make_server() -> MCPServer:
    server = MCPServer("mw", "1.0.0")

    @server.tool
    async def add(a: int, b: int) -> int:
        return a + b

    @server.resource("notes://{name}")
    async def note(name: str) -> str:
        return f"note {name}"

    @server.prompt
    async def greet(who: str) -> str:
        return f"Hello {who}"

    return server


def text_of(result: dict[str, Any]) -> str:
    text: str = result["content"][0]["text"]
    return text


async def test_middleware_runs_in_registration_order_outermost_first() -> None:
    server = make_server()
    seen: list[str] = []

    def recorder(label: str) -> Any:
        async def middleware(request: RequestInfo, call_next: CallNext) -> Any:
            seen.append(f"{label} in")
            result = await call_next(request)
            seen.append(f"{label} out")
            return result

        return middleware

    first = server.middleware(recorder("first"))
    server.middleware(recorder("second"))
    assert callable(first)
    async with connected_client(server) as client:
        await trio.testing.wait_all_tasks_blocked()  # notifications/initialized went through too
        seen.clear()
        assert text_of(await client.call("tools/call", ADD)) == "3"
    assert seen == ["first in", "second in", "second out", "first out"]


async def test_a_middleware_may_answer_instead_of_the_handler() -> None:
    server = make_server()
    calls: list[str] = []

    @server.middleware
    async def cached(request: RequestInfo, call_next: CallNext) -> Any:
        if request.method == "tools/call" and request.name == "add":
            return {"content": [{"type": "text", "text": "cached"}]}
        return await call_next(request)

    @server.middleware
    async def inner(request: RequestInfo, call_next: CallNext) -> Any:
        calls.append(request.method)
        return await call_next(request)

    async with connected_client(server) as client:
        await trio.testing.wait_all_tasks_blocked()
        calls.clear()
        assert text_of(await client.call("tools/call", ADD)) == "cached"
        assert calls == []
        assert (await client.call("prompts/get", {"name": "greet", "arguments": {"who": "x"}}))["messages"]
        assert calls == ["prompts/get"]


async def test_errors_a_middleware_raises_answer_the_request_and_the_session_lives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()

    @server.middleware
    async def refuse(request: RequestInfo, call_next: CallNext) -> Any:
        what = request.params.get("arguments", {}).get("a") if request.method == "tools/call" else request.name
        if what == 1 or what == "notes://mcp":
            raise MCPError(-32029, "Rate limit exceeded", {"retryAfterSeconds": 2})
        if what == 2 or what == "notes://tool":
            raise ToolError("not today")
        if what == 3 or what == "notes://bug":
            raise RuntimeError("a bug")
        if what == 4:
            return ["not", "a", "dict"]
        return await call_next(request)

    def call(a: int) -> dict[str, Any]:
        return {"name": "add", "arguments": {"a": a, "b": 0}}

    async with connected_client(server) as client:
        error = await client.call_error("tools/call", call(1))
        assert error == {"code": -32029, "message": "Rate limit exceeded", "data": {"retryAfterSeconds": 2}}
        assert await client.call("tools/call", call(2)) == {
            "content": [{"type": "text", "text": "not today"}],
            "isError": True,
        }
        with caplog.at_level(logging.ERROR, logger="trio_mcp_sse.server"):
            assert (await client.call_error("tools/call", call(3)))["code"] == -32603
            assert (await client.call_error("tools/call", call(4)))["code"] == -32603
        assert "a bug" in caplog.text and "not a result object" in caplog.text
        assert (await client.call_error("resources/read", {"uri": "notes://mcp"}))["code"] == -32029
        assert await client.call_error("resources/read", {"uri": "notes://tool"}) == {
            "code": -32603,
            "message": "not today",
        }
        assert (await client.call_error("resources/read", {"uri": "notes://bug"}))["code"] == -32603
        # The session lives on.
        assert await client.call("ping") == {}
        assert text_of(await client.call("tools/call", call(5))) == "5"


async def test_a_middleware_may_pass_the_request_on_changed() -> None:
    server = make_server()

    @server.middleware
    async def double(request: RequestInfo, call_next: CallNext) -> Any:
        if request.method == "tools/call":
            arguments = {key: value * 2 for key, value in request.params["arguments"].items()}
            request = request.replace(params={**request.params, "arguments": arguments})
        result = await call_next(request)
        if request.method == "tools/list":
            result = {**result, "tools": [{**tool, "description": "changed"} for tool in result["tools"]]}
        return result

    async with connected_client(server) as client:
        assert text_of(await client.call("tools/call", ADD)) == "6"
        assert [tool["description"] for tool in (await client.call("tools/list"))["tools"]] == ["changed"]


async def test_a_middleware_sees_the_method_the_request_and_who_asks() -> None:
    server = make_server()
    seen: list[RequestInfo] = []

    @server.middleware
    async def look(request: RequestInfo, call_next: CallNext) -> Any:
        seen.append(request)
        return await call_next(request)

    token = AccessToken("alice", scopes={"notes:read"})
    async with connected_client(server, access_token=token) as client:
        await trio.testing.wait_all_tasks_blocked()
        seen.clear()
        request_id = await client.request("tools/call", {**ADD, "_meta": {"progressToken": "p"}})
        await client.response(request_id)
        (request,) = seen
        assert request.method == "tools/call" and request.name == "add"
        assert request.params["arguments"] == {"a": 1, "b": 2}
        assert request.principal == "alice" and request.access_token == token
        assert request.session_id == client.session.id
        assert request.request_id == request_id and not request.notification
        assert isinstance(request.context, Context) and request.context.progress_token == "p"
        assert request.connection is request.context.connection


async def test_every_routed_method_passes_and_initialize_and_ping_do_not() -> None:
    server = make_server()

    async def custom(connection: Any, params: Any, context: Context) -> dict[str, Any]:
        return {"custom": True}

    server.request_handlers["custom/method"] = custom

    @server.completion
    async def complete(request: Any) -> list[str]:
        return ["x"]

    methods: list[str] = []

    @server.middleware
    async def record(request: RequestInfo, call_next: CallNext) -> Any:
        methods.append(request.method)
        return await call_next(request)

    async with connected_client(server) as client:
        await client.call("ping")
        for method, params in [
            ("tools/list", None),
            ("tools/call", ADD),
            ("resources/list", None),
            ("resources/templates/list", None),
            ("resources/read", {"uri": "notes://a"}),
            ("resources/subscribe", {"uri": "notes://a"}),
            ("resources/unsubscribe", {"uri": "notes://a"}),
            ("prompts/list", None),
            ("prompts/get", {"name": "greet", "arguments": {"who": "x"}}),
            ("completion/complete", {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "who", "value": ""}}),
            ("logging/setLevel", {"level": "debug"}),
            ("custom/method", None),
        ]:
            await client.call(method, params)
        assert (await client.call_error("no/such/method"))["code"] == -32601
    assert methods[0] == "notifications/initialized"
    assert methods[1:] == [
        "tools/list", "tools/call", "resources/list", "resources/templates/list", "resources/read",
        "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
        "completion/complete", "logging/setLevel", "custom/method",
    ]


async def test_notifications_pass_through_the_chain(caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    handled: list[dict[str, Any]] = []
    seen: list[tuple[str, bool, Any, Any]] = []

    @server.notification("notifications/roots/list_changed")
    async def roots_changed(connection: Any, params: Any) -> None:
        handled.append(dict(params))

    @server.middleware
    async def look(request: RequestInfo, call_next: CallNext) -> Any:
        answered = await call_next(request)
        seen.append((request.method, request.notification, request.context, answered))
        return answered

    @server.middleware
    async def gate(request: RequestInfo, call_next: CallNext) -> Any:
        if request.params.get("stop"):
            raise MCPError(-32600, "not this one")
        if request.params.get("crash"):
            raise RuntimeError("a notification bug")
        return await call_next(request)

    async with connected_client(server, access_token=AccessToken("bob")) as client:
        await client.notify("notifications/roots/list_changed", {"n": 1})
        await client.notify("notifications/roots/list_changed", {"stop": True})
        with caplog.at_level(logging.ERROR, logger="trio_mcp_sse.server"):
            await client.notify("notifications/roots/list_changed", {"crash": True})
            await client.notify("notifications/unknown")
            await trio.testing.wait_all_tasks_blocked()
        assert await client.call("ping") == {}
    assert handled == [{"n": 1}]
    assert seen == [
        ("notifications/initialized", True, None, None),
        ("notifications/roots/list_changed", True, None, None),
        ("notifications/unknown", True, None, None),
    ]
    assert "a notification bug" in caplog.text


async def test_a_notification_sees_who_sent_it() -> None:
    server = make_server()
    seen: list[RequestInfo] = []

    @server.middleware
    async def look(request: RequestInfo, call_next: CallNext) -> Any:
        seen.append(request)
        return await call_next(request)

    async with serve_sessions(server) as host:
        client = await host.connect(access_token=AccessToken("carol"))
        await client.initialize()
        await trio.testing.wait_all_tasks_blocked()
    (initialized,) = seen
    assert initialized.principal == "carol" and initialized.access_token is not None
    assert initialized.request_id is None and initialized.name is None


async def test_cancelling_a_request_cancels_the_middleware_await(autojump_clock: Any) -> None:
    server = make_server()
    started = trio.Event()
    outcome: list[str] = []

    @server.tool
    async def slow() -> str:
        started.set()
        await trio.sleep_forever()
        return "never"

    @server.middleware
    async def watch(request: RequestInfo, call_next: CallNext) -> Any:
        try:
            return await call_next(request)
        except trio.Cancelled:
            outcome.append(f"cancelled {request.name}")
            raise
        finally:
            outcome.append("finally")

    async with connected_client(server) as client:
        await trio.testing.wait_all_tasks_blocked()
        outcome.clear()
        request_id = await client.request("tools/call", {"name": "slow"})
        with trio.fail_after(5):
            await started.wait()
        await client.notify("notifications/cancelled", {"requestId": request_id})
        await trio.testing.wait_all_tasks_blocked()
        assert outcome == ["cancelled slow", "finally"]
        assert [m for m in await client.drain() if m.get("id") == request_id] == []
        assert await client.call("ping") == {}


async def test_a_middleware_registered_while_serving_applies_from_the_next_request() -> None:
    server = make_server()
    async with connected_client(server) as client:
        assert text_of(await client.call("tools/call", ADD)) == "3"

        @server.middleware
        async def late(request: RequestInfo, call_next: CallNext) -> Any:
            return {"content": [{"type": "text", "text": "late"}]}

        assert text_of(await client.call("tools/call", ADD)) == "late"


def test_a_middleware_must_be_callable() -> None:
    with pytest.raises(TypeError, match="async callable"):
        MCPServer("x").middleware("not a function")  # type: ignore[arg-type]


# -- 2026-07-28 -------------------------------------------------------------------------------------
class Name(pydantic.BaseModel):
    name: str


async def test_the_chain_runs_in_the_modern_era_and_for_each_round_trip() -> None:
    server = make_server()
    seen: list[tuple[str, str | None, Any]] = []

    @server.tool
    async def greet_me(ctx: Context) -> str:
        answer = await ctx.elicit("Name?", Name)
        assert answer.content is not None
        return f"Hello {answer.content['name']}"

    @server.middleware
    async def look(request: RequestInfo, call_next: CallNext) -> Any:
        try:
            result = await call_next(request)
        except BaseException as error:
            seen.append((request.method, request.name, type(error).__name__))
            raise
        seen.append((request.method, request.name, result.get("resultType")))
        if request.name == "add" and request.params["arguments"]["a"] == 13:
            raise MCPError(-32029, "unlucky")
        return result

    async def elicit(params: Any) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "Ada"}}

    with trio.fail_after(10):
        async with open_http_client(server.http_app()) as http, open_session(
            "http://testserver/mcp", http_client=http, protocol="2026-07-28", elicitation_handler=elicit
        ) as session:
            assert session.era == "modern"
            assert (await session.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            greeted = await session.call_tool("greet_me")
            assert greeted.content[0].text == "Hello Ada"  # type: ignore[union-attr]
            with pytest.raises(MCPError, match="unlucky"):
                await session.call_tool("add", {"a": 13, "b": 0})
            assert (await session.read_resource("notes://x")).contents[0].text == "note x"  # type: ignore[union-attr]
    assert seen == [
        ("server/discover", None, None),
        ("tools/call", "add", None),  # the handler's result: the era adds resultType after the chain
        ("tools/call", "greet_me", "InputRequired"),  # the first round ends with the question
        ("tools/call", "greet_me", None),  # the retry, with the answer
        ("tools/call", "add", None),
        ("resources/read", "notes://x", None),
    ]
