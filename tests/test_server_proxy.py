"""``MCPServer.as_proxy``: a remote server served through ours, one upstream session per session.

In memory: the remote server's app answers the upstream client through ``open_http_client``;
the downstream client is the session-level test client.  Real-socket interop (our server over
each transport, the official SDK's server) is in ``test_server_proxy_e2e.py``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
import trio
import trio.testing

from trio_mcp_sse.client import ClientSession, open_session
from trio_mcp_sse.server import CallNext, Context, MCPServer, RequestInfo
from trio_mcp_sse.testing import SessionClient, connected_client, open_http_client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAMPLING = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}


class Name(pydantic.BaseModel):
    name: str


def make_remote() -> tuple[MCPServer, dict[str, Any]]:
    remote = MCPServer("remote", "3.0")
    state: dict[str, Any] = {"cancelled": 0, "started": trio.Event()}

    @remote.tool
    async def add(a: int, b: int, ctx: Context) -> int:
        """Add, reporting progress and logging."""
        await ctx.report_progress(1, 2, "half way")
        await ctx.info(f"adding {a} and {b}")
        await ctx.debug("details")
        return a + b

    @remote.tool
    async def ask(ctx: Context) -> str:
        """Ask the client: its model, its user, its roots."""
        sampled = await ctx.sample("Say hi", max_tokens=5)
        answer = await ctx.elicit("Name?", Name)
        roots = await ctx.list_roots()  # the list of Root models
        assert answer.content is not None
        return f"{sampled.content.text} {answer.content['name']} {len(roots)}"  # type: ignore[union-attr]

    @remote.tool
    async def slow() -> str:
        state["started"].set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            state["cancelled"] += 1
            raise
        return "never"

    @remote.resource("memo://{name}", mime_type="text/plain")
    async def memo(name: str) -> str:
        return f"memo {name}"

    @remote.resource("memo-static://greeting")
    async def greeting() -> str:
        return "hello"

    @remote.prompt
    async def greet(who: str) -> str:
        return f"Hello {who}"

    @remote.completion
    async def complete(request: Any) -> list[str]:
        return ["remote-suggestion"]

    return remote, state


@contextlib.asynccontextmanager
async def proxy_of(remote: MCPServer, **options: Any) -> AsyncIterator[MCPServer]:
    async with open_http_client(remote.http_app()) as http:
        factory = functools.partial(open_session, "http://remote/mcp", http_client=http, protocol="handshake")
        yield MCPServer.as_proxy(factory, name="proxy", **options)


def names(result: dict[str, Any], key: str = "tools", field: str = "name") -> list[str]:
    return [entry[field] for entry in result[key]]


async def test_lists_and_calls_are_forwarded() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            assert names(await client.call("tools/list")) == ["add", "ask", "slow"]
            assert names(await client.call("prompts/list"), "prompts") == ["greet"]
            assert names(await client.call("resources/list"), "resources", "uri") == ["memo-static://greeting"]
            templates = await client.call("resources/templates/list")
            assert names(templates, "resourceTemplates", "uriTemplate") == ["memo://{name}"]
            result = await client.call("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
            assert result == {"content": [{"type": "text", "text": "3"}], "structuredContent": {"result": 3}}
            read = await client.call("resources/read", {"uri": "memo://x"})
            assert read == {"contents": [{"uri": "memo://x", "mimeType": "text/plain", "text": "memo x"}]}
            prompt = await client.call("prompts/get", {"name": "greet", "arguments": {"who": "Bo"}})
            assert prompt["messages"][0]["content"]["text"] == "Hello Bo"
            completed = await client.call(
                "completion/complete", {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "who", "value": ""}}
            )
            assert completed["completion"]["values"] == ["remote-suggestion"]
            assert "completions" in proxy.capabilities()
            # The upstream's errors are passed on as they are.
            unknown = await client.call_error("tools/call", {"name": "nope"})
            assert unknown == {"code": -32602, "message": "Unknown tool: nope"}
            missing = await client.call_error("resources/read", {"uri": "nothing://here"})
            assert missing["code"] == -32002 and missing["data"] == {"uri": "nothing://here"}
            # initialize and ping are the proxy's own
            assert await client.call("ping") == {}


async def test_progress_and_log_messages_reach_the_request_in_order() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            request_id = await client.request(
                "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}, "_meta": {"progressToken": "tok"}}
            )
            response = await client.response(request_id)
            assert response["result"]["structuredContent"] == {"result": 5}
            before = [(m["method"], m["params"]) for m in client.backlog]
            assert before == [
                ("notifications/progress", {"progressToken": "tok", "progress": 1.0, "total": 2.0, "message": "half way"}),
                ("notifications/message", {"level": "info", "data": "adding 2 and 3"}),
            ]
            client.backlog.clear()
            # The session's log level is passed upstream: the debug line now comes through.
            await client.call("logging/setLevel", {"level": "debug"})
            await client.call("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
            assert [m["params"]["data"] for m in client.backlog if m.get("method") == "notifications/message"] == [
                "adding 1 and 1",
                "details",
            ]


async def test_the_upstreams_questions_are_asked_of_the_downstream_client() -> None:
    remote, _ = make_remote()

    async def answer(client: SessionClient) -> None:
        sampling = await client.server_request("sampling/createMessage")
        assert sampling["params"]["messages"][0]["content"]["text"] == "Say hi"
        await client.respond(sampling["id"], {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"})
        elicitation = await client.server_request("elicitation/create")
        await client.respond(elicitation["id"], {"action": "accept", "content": {"name": "Ada"}})
        roots = await client.server_request("roots/list")
        await client.respond(roots["id"], {"roots": [{"uri": "file:///a"}, {"uri": "file:///b"}]})

    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy, capabilities=SAMPLING) as client:
            request_id = await client.request("tools/call", {"name": "ask"})
            await answer(client)
            response = await client.response(request_id)
            assert response["result"]["content"] == [{"type": "text", "text": "hi Ada 2"}]
        # A client that declared none: the upstream session declares none either.
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            result = await client.call("tools/call", {"name": "ask"})
            assert result["isError"] is True and "sampling" in result["content"][0]["text"]


async def test_list_changes_and_subscribed_updates_are_relayed() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            await client.call("resources/subscribe", {"uri": "memo://x"})

            @remote.tool
            async def added() -> str:
                return "new"

            await client.notification("notifications/tools/list_changed")
            assert "added" in names(await client.call("tools/list"))
            remote.notify_resource_updated("memo://x")
            updated = await client.notification("notifications/resources/updated")
            assert updated["params"] == {"uri": "memo://x"}
            await client.call("resources/unsubscribe", {"uri": "memo://x"})
            remote.notify_resource_updated("memo://x")
            await client.call("ping")
            with trio.move_on_after(0.2):
                await client.notification("notifications/resources/updated")
                raise AssertionError("an update after unsubscribing")


async def test_cancelling_a_forwarded_call_cancels_it_upstream() -> None:
    remote, state = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            request_id = await client.request("tools/call", {"name": "slow"})
            await state["started"].wait()
            await client.notify("notifications/cancelled", {"requestId": request_id})
            while state["cancelled"] == 0:
                await trio.sleep(0.01)
            assert await client.call("ping") == {}
            assert [m for m in client.backlog if m.get("id") == request_id] == []


async def test_each_session_has_its_own_upstream_session_for_its_lifetime() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy:
            async with connected_client(proxy) as first, connected_client(proxy) as second:
                assert len(remote.connections) == 0  # opened at the first forwarded request
                await first.call("tools/list")
                await second.call("tools/list")
                await first.call("tools/list")
                assert len(remote.connections) == 2
                upstream_ids = {connection.session_id for connection in remote.connections}
                assert len(upstream_ids) == 2
            while remote.connections:  # closed with the downstream sessions
                await trio.sleep(0.01)


async def test_a_draining_session_keeps_its_upstream_until_its_forwarded_requests_answer() -> None:
    remote, _ = make_remote()
    release = trio.Event()
    running = trio.Event()

    @remote.tool
    async def wait_for_release() -> str:
        running.set()
        await release.wait()
        return "released"

    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            request_id = await client.request("tools/call", {"name": "wait_for_release"})
            await running.wait()
            client.session.drain()  # no new messages; the ones accepted still answer
            await trio.sleep(0.1)
            assert len(remote.connections) == 1
            release.set()
            response = await client.response(request_id)
            assert response["result"]["content"] == [{"type": "text", "text": "released"}]
            while remote.connections:
                await trio.sleep(0.01)


async def test_an_upstream_session_that_goes_away_is_replaced() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, connected_client(proxy) as client:
            await client.call("tools/list")
            (upstream,) = remote.connections
            upstream.session.close("gone")
            while remote.connections:
                await trio.sleep(0.01)
            first = await client.response(await client.request("tools/list"))
            if "error" in first:  # the first request may be the one that finds out
                assert first["error"]["code"] == -32603 and "ended" in first["error"]["message"]
                first = await client.response(await client.request("tools/list"))
            assert "add" in names(first["result"])
            assert len(remote.connections) == 1 and remote.connections[0] is not upstream


async def test_an_unavailable_upstream_fails_the_request_and_the_next_one_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote, _ = make_remote()
    attempts: list[int] = []
    async with open_http_client(remote.http_app()) as http:

        @contextlib.asynccontextmanager
        async def flaky(**handlers: Any) -> AsyncIterator[ClientSession]:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("connection refused")
            if len(attempts) == 2:
                await trio.sleep_forever()
            async with open_session("http://remote/mcp", http_client=http, protocol="handshake", **handlers) as session:
                yield session

        proxy = MCPServer.as_proxy(flaky, connect_timeout=0.5)
        with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="trio_mcp_sse.server"):
            async with connected_client(proxy) as client:
                refused = await client.call_error("tools/list")
                assert refused["code"] == -32603 and "connection refused" in refused["message"]
                timed_out = await client.call_error("tools/list")
                assert timed_out["code"] == -32603 and "within 0.5 s" in timed_out["message"]
                assert "add" in names(await client.call("tools/list"))
    assert len(attempts) == 3


async def test_a_proxy_with_tools_and_middleware_of_its_own() -> None:
    remote, _ = make_remote()
    seen: list[str | None] = []
    with trio.fail_after(10):
        async with proxy_of(remote, page_size=2) as proxy:

            @proxy.tool
            async def local() -> str:
                return "local"

            @proxy.middleware
            async def look(request: RequestInfo, call_next: CallNext) -> Any:
                if request.method == "tools/call":
                    seen.append(request.name)
                return await call_next(request)

            async with connected_client(proxy) as client:
                first = await client.call("tools/list")
                assert names(first) == ["local", "add"] and first["nextCursor"]
                second = await client.call("tools/list", {"cursor": first["nextCursor"]})
                assert names(second) == ["ask", "slow"] and "nextCursor" not in second
                assert (await client.call("tools/call", {"name": "local"}))["content"][0]["text"] == "local"
                await client.call("tools/call", {"name": "add", "arguments": {"a": 0, "b": 0}})
    assert seen == ["local", "add"]


async def test_a_mounted_proxy_is_served_under_its_prefix() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy:
            gateway = MCPServer("gateway")

            @gateway.tool
            async def own() -> str:
                return "own"

            gateway.mount(proxy, prefix="r")
            async with connected_client(gateway) as client:
                assert names(await client.call("tools/list")) == ["own", "r_add", "r_ask", "r_slow"]
                templates = await client.call("resources/templates/list")
                assert names(templates, "resourceTemplates", "uriTemplate") == ["memo://r/{name}"]
                result = await client.call("tools/call", {"name": "r_add", "arguments": {"a": 4, "b": 4}})
                assert result["structuredContent"] == {"result": 8}
                read = await client.call("resources/read", {"uri": "memo://r/x"})
                assert read["contents"][0] == {"uri": "memo://r/x", "mimeType": "text/plain", "text": "memo x"}
                prompt = await client.call("prompts/get", {"name": "r_greet", "arguments": {"who": "Al"}})
                assert prompt["messages"][0]["content"]["text"] == "Hello Al"
                assert (await client.call_error("tools/call", {"name": "r_nope"}))["message"] == "Unknown tool: nope"
                await client.call("resources/subscribe", {"uri": "memo://r/x"})
                remote.notify_resource_updated("memo://x")
                updated = await client.notification("notifications/resources/updated")
                assert updated["params"] == {"uri": "memo://r/x"}
                remote.remove_tool("slow")
                await client.notification("notifications/tools/list_changed")
                assert names(await client.call("tools/list")) == ["own", "r_add", "r_ask"]


async def test_a_modern_downstream_request_is_forwarded_on_an_upstream_session_of_its_own() -> None:
    remote, _ = make_remote()
    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, open_http_client(proxy.http_app()) as http, open_session(
            "http://proxy/mcp", http_client=http, protocol="2026-07-28"
        ) as session:
            assert session.era == "modern"
            assert [tool.name for tool in (await session.list_tools()).tools] == ["add", "ask", "slow"]
            result = await session.call_tool("add", {"a": 20, "b": 22})
            assert result.structured_content == {"result": 42}
            assert result.meta is not None and result.meta["io.modelcontextprotocol/serverInfo"]["name"] == "proxy"
            asked = await session.call_tool("ask")  # a client that declared no capability
            assert asked.is_error
            while remote.connections:  # each request's upstream session ended with it
                await trio.sleep(0.01)


async def test_the_upstreams_questions_become_input_rounds_for_a_modern_client() -> None:
    """Each question ends the forwarded call with an InputRequiredResult; the client's retry
    forwards it again, and the answers it brings answer the upstream's questions."""
    remote, _ = make_remote()
    asked: list[str] = []

    async def sample(params: Any) -> dict[str, Any]:
        asked.append("sampling")
        return {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}

    async def elicit(params: Any) -> dict[str, Any]:
        asked.append("elicitation")
        return {"action": "accept", "content": {"name": "Ada"}}

    async def roots() -> dict[str, Any]:
        asked.append("roots")
        return {"roots": [{"uri": "file:///a"}]}

    with trio.fail_after(10):
        async with proxy_of(remote) as proxy, open_http_client(proxy.http_app()) as http, open_session(
            "http://proxy/mcp",
            http_client=http,
            protocol="2026-07-28",
            sampling_handler=sample,
            elicitation_handler=elicit,
            roots_handler=roots,
        ) as session:
            result = await session.call_tool("ask")
            assert not result.is_error
            assert result.content[0].text == "hi Ada 1"  # type: ignore[union-attr]
    assert asked == ["sampling", "elicitation", "roots"]


def test_as_proxy_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="client_options are for a URL"):
        MCPServer.as_proxy(open_session, client_options={"headers": {}})
    with pytest.raises(TypeError, match="a URL or an upstream factory"):
        MCPServer.as_proxy(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect_timeout"):
        MCPServer.as_proxy("http://x/mcp", connect_timeout=0)
    proxy = MCPServer.as_proxy("http://x/mcp", name="named", version="9")
    assert proxy.server_info() == {"name": "named", "version": "9"}
