"""A proxy on real loopback sockets, end to end: our client -> the proxy (hypercorn) -> the remote.

The remote is our own server over each transport the client speaks (Streamable HTTP, HTTP+SSE,
WebSocket), and the official Python SDK's server (uvicorn, in a subprocess, over HTTP+SSE and
Streamable HTTP).  Real clock; each test bounded by an absolute ``fail_after``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types
import pytest
import trio

from tests.client_helpers import ROOT, serve_in_process, start_sdk_server, stop_process
from trio_mcp_sse.client import ClientSession, connect_stdio, open_session
from trio_mcp_sse.client._session import JSONRPCNotification
from trio_mcp_sse.server import Context, MCPServer
from trio_mcp_sse.testing import connected_client

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


@asynccontextmanager
async def through_proxy(upstream_url: str, **session_options: Any) -> AsyncIterator[ClientSession]:
    """A client session with a proxy of ``upstream_url``, the proxy served by hypercorn."""
    proxy = MCPServer.as_proxy(upstream_url, name="proxy")
    # The handshake era: the upstream's questions to the client need a downstream session.
    options = {"protocol": "handshake", **session_options}
    async with serve_in_process(proxy.http_app()) as base, open_session(f"{base}/mcp", **options) as session:
        assert session.server_info is not None and session.server_info.name == "proxy"
        yield session


def our_remote() -> MCPServer:
    remote = MCPServer("remote")

    @remote.tool
    async def count(n: int, ctx: Context) -> str:
        for step in range(1, n + 1):
            await ctx.report_progress(step, n)
        await ctx.info("counted")
        return f"counted to {n}"

    @remote.tool
    async def model(ctx: Context) -> str:
        sampled = await ctx.sample("hi?", max_tokens=5)
        return f"model said {sampled.content.text}"  # type: ignore[union-attr]

    @remote.resource("memo://{name}")
    async def memo(name: str) -> str:
        return f"memo {name}"

    return remote


async def _sample(params: mcp_types.CreateMessageRequestParams) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": "yes"}, "model": "test"}


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "websocket"])
async def test_a_proxy_in_front_of_our_server_over_each_transport(transport: str) -> None:
    remote = our_remote()
    progress: list[float] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_log(notification: JSONRPCNotification) -> None:
        logs.append((notification.params or {}).get("data"))

    with trio.fail_after(30):
        async with serve_in_process(remote.http_app(websocket=True)) as remote_base:
            path = {"streamable-http": "/mcp", "sse": "/sse", "websocket": "/ws"}[transport]
            url = remote_base.replace("http://", "ws://") + path if transport == "websocket" else remote_base + path
            async with through_proxy(
                url, sampling_handler=_sample, notification_handlers={"notifications/message": on_log}
            ) as session:
                tools = await session.list_tools()
                assert [tool.name for tool in tools.tools] == ["count", "model"]
                assert _text(await session.call_tool("count", {"n": 2}, progress=on_progress)) == "counted to 2"
                assert _text(await session.call_tool("model")) == "model said yes"
                read = await session.read_resource("memo://x")
                assert read.contents[0].text == "memo x"  # type: ignore[union-attr]
                while not logs:
                    await trio.sleep(0.01)
            # A 2026-07-28 client of the proxy: each request is forwarded on its own.
            async with through_proxy(url, protocol="2026-07-28") as modern:
                assert modern.era == "modern"
                assert _text(await modern.call_tool("count", {"n": 1})) == "counted to 1"
    assert progress == [1.0, 2.0]
    assert logs == ["counted"]


@pytest.fixture(scope="module", params=["sse", "streamable"])
def sdk_url(request: pytest.FixtureRequest) -> Iterator[str]:
    process, url = start_sdk_server(request.param)
    try:
        yield f"{url}/sse" if request.param == "sse" else f"{url}/mcp"
    finally:
        stop_process(process)


async def test_a_proxy_in_front_of_the_sdk_server(sdk_url: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(notification: JSONRPCNotification) -> None:
        logs.append((notification.params or {}).get("data"))

    async def sample(params: mcp_types.CreateMessageRequestParams) -> dict[str, Any]:
        question = params.messages[0].content.text  # type: ignore[union-attr]
        return {"role": "assistant", "content": {"type": "text", "text": question[::-1]}, "model": "reverser"}

    async def elicit(params: Any) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "Ada"}}

    async def roots() -> dict[str, Any]:
        return {"roots": [{"uri": "file:///work/project", "name": "project"}]}

    with trio.fail_after(40):
        async with through_proxy(
            sdk_url,
            sampling_handler=sample,
            elicitation_handler=elicit,
            roots_handler=roots,
            notification_handlers={"notifications/message": on_log},
        ) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", "add", "count", "ask_model", "ask_user", "roots"} <= names
            assert _text(await session.call_tool("echo", {"text": "hi"})) == "hi"
            assert _text(await session.call_tool("count", {"n": 3}, progress=on_progress)) == "counted to 3"
            assert _text(await session.call_tool("ask_model", {"question": "abc"})) == "model said: cba"
            assert _text(await session.call_tool("ask_user")) == "accept: Ada"
            assert (await session.call_tool("roots")).structured_content == {"result": ["file:///work/project"]}
            read = await session.read_resource("memo://items/7")
            assert read.contents[0].text == "item 7"  # type: ignore[union-attr]
            prompt = await session.get_prompt("greet", {"who": "Ada"})
            assert prompt.messages[0].content.text == "Please greet Ada."  # type: ignore[union-attr]
            # Cancelling through the proxy cancels on the SDK server.
            with trio.CancelScope() as scope:

                async def cancel_once_started(value: float, total: float | None, message: str | None) -> None:
                    scope.cancel()

                await session.call_tool("wait_forever", progress=cancel_once_started)
            assert scope.cancelled_caught
            cancelled: Any = []
            while not cancelled:
                result = await session.call_tool("was_cancelled")
                cancelled = (result.structured_content or {}).get("result")
                await trio.sleep(0.05)
            while not logs:
                await trio.sleep(0.01)
        # A 2026-07-28 client of the proxy: the SDK server's questions become input rounds.
        async with through_proxy(sdk_url, protocol="2026-07-28", elicitation_handler=elicit) as modern:
            assert modern.era == "modern"
            assert _text(await modern.call_tool("echo", {"text": "modern"})) == "modern"
            assert _text(await modern.call_tool("ask_user")) == "accept: Ada"
    assert progress == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert logs == ["counted"]


async def test_a_proxy_in_front_of_a_server_over_stdio() -> None:
    """The factory form: each session of the proxy starts its own server subprocess."""
    command = [sys.executable, "-m", "trio_mcp_sse", "serve", "--stdio", "examples.echo_server:server"]

    @asynccontextmanager
    async def over_stdio(**handlers: Any) -> AsyncIterator[ClientSession]:
        async with (
            connect_stdio(command, env={"PYTHONPATH": str(ROOT)}, stderr="discard") as connection,
            ClientSession(connection, protocol="handshake", **handlers) as session,
        ):
            await session.initialize()
            yield session

    proxy = MCPServer.as_proxy(over_stdio, name="proxy")
    with trio.fail_after(30):
        async with connected_client(proxy) as client:
            listed = await client.call("tools/list")
            assert [tool["name"] for tool in listed["tools"]] == ["echo", "add"]
            result = await client.call("tools/call", {"name": "echo", "arguments": {"text": "over stdio"}})
            assert result["content"] == [{"type": "text", "text": "over stdio"}]
