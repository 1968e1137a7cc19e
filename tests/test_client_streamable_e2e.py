"""Our Streamable HTTP client against the official SDK's server, and the CLI's transport choice.

Real loopback sockets, real clock, each test bounded by an absolute
``fail_after``.  The SDK server runs once per test module and mode (event-stream
answers, and JSON answers) in a uvicorn subprocess, stopped in a ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types
import orjson
import pytest
import trio

from tests.client_helpers import serve_in_process, start_sdk_server, stop_process
from trio_mcp_sse import MCPServer
from trio_mcp_sse.client import (
    ClientSession,
    SessionExpiredError,
    StreamableHTTPConnection,
    connect_streamable_http,
    open_session,
)
from trio_mcp_sse.client._cli import main as cli_main
from trio_mcp_sse.client._session import JSONRPCNotification

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sdk_streamable_url() -> Iterator[str]:
    process, url = start_sdk_server("streamable")
    try:
        yield f"{url}/mcp"
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def sdk_json_url() -> Iterator[str]:
    process, url = start_sdk_server("streamable-json")
    try:
        yield f"{url}/mcp"
    finally:
        stop_process(process)


def _text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def _session_is_gone(url: str, connection: StreamableHTTPConnection) -> bool:
    """Whether the server forgot the connection's session (it answers 404 to it)."""
    assert connection.session_id is not None
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url,
            content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            headers={
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                "mcp-session-id": connection.session_id,
                "mcp-protocol-version": connection.protocol_version or "",
            },
        )
    return response.status_code == 404


async def test_event_stream_mode_tools_progress_elicitation_and_delete(
    sdk_streamable_url: str,
) -> None:
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(notification: JSONRPCNotification) -> None:
        logs.append((notification.params or {}).get("data"))

    async def elicit(params: Any) -> dict[str, Any]:
        assert params.message == "What is your name?"
        return {"action": "accept", "content": {"name": "Ada"}}

    async def sample(params: mcp_types.CreateMessageRequestParams) -> dict[str, Any]:
        question = params.messages[0].content.text  # type: ignore[union-attr]
        return {"role": "assistant", "content": {"type": "text", "text": question[::-1]}, "model": "m"}

    with trio.fail_after(30):
        async with (
            connect_streamable_http(sdk_streamable_url) as connection,
            ClientSession(
                connection,
                elicitation_handler=elicit,
                sampling_handler=sample,
                notification_handlers={"notifications/message": on_log},
            ) as session,
        ):
            await session.initialize()
            assert session.server_info is not None
            assert session.server_info.name == "sdk-server"
            assert session.protocol_version == "2025-11-25"
            assert connection.session_id
            assert connection.protocol_version == "2025-11-25"
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", "add", "count", "ask_user"} <= names
            assert _text(await session.call_tool("echo", {"text": "hi"})) == "hi"
            result = await session.call_tool("count", {"n": 3}, progress=on_progress)
            assert _text(result) == "counted to 3"
            assert _text(await session.call_tool("ask_user")) == "accept: Ada"
            assert _text(await session.call_tool("ask_model", {"question": "abc"})) == "model said: cba"
            answers: dict[int, str] = {}

            async def add(index: int) -> None:
                answers[index] = _text(await session.call_tool("add", {"a": index, "b": 0.5}))

            async with trio.open_nursery() as nursery:
                for index in range(10):
                    nursery.start_soon(add, index)
            assert answers == {index: f"{index + 0.5}" for index in range(10)}
            with trio.fail_after(5):
                while not logs:
                    await trio.sleep(0.01)
        assert await _session_is_gone(sdk_streamable_url, connection)  # DELETE on close
    assert progress == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert logs == ["counted"]


async def test_cancelling_a_call_cancels_it_on_the_sdk_server(sdk_streamable_url: str) -> None:
    with trio.fail_after(30):
        async with open_session(sdk_streamable_url) as session:
            with trio.CancelScope() as scope:

                async def cancel_once_started(
                    progress: float, total: float | None, message: str | None
                ) -> None:
                    scope.cancel()

                await session.call_tool("wait_forever", progress=cancel_once_started)
            assert scope.cancelled_caught
            cancelled: Any = []
            while not cancelled:
                result = await session.call_tool("was_cancelled")
                cancelled = (result.structured_content or {}).get("result")
                await trio.sleep(0.05)
            assert len(cancelled) == 1


async def test_json_mode_initialize_list_call_and_delete(sdk_json_url: str) -> None:
    with trio.fail_after(30):
        async with (
            connect_streamable_http(sdk_json_url) as connection,
            ClientSession(connection) as session,
        ):
            await session.initialize()
            assert session.protocol_version == "2025-11-25"
            assert connection.session_id
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", "add", "count"} <= names
            assert _text(await session.call_tool("echo", {"text": "hi"})) == "hi"
            assert (await session.call_tool("add", {"a": 1, "b": 2})).structured_content == {
                "result": 3.0
            }
            # No wire for progress in JSON mode: the result still arrives.
            assert _text(await session.call_tool("count", {"n": 2})) == "counted to 2"
            await session.ping()
        assert await _session_is_gone(sdk_json_url, connection)


async def test_a_session_the_server_forgot_is_a_typed_error(sdk_streamable_url: str) -> None:
    async def scenario() -> None:
        async with (
            connect_streamable_http(sdk_streamable_url) as connection,
            ClientSession(connection) as session,
        ):
            await session.initialize()
            async with httpx.AsyncClient() as client:
                deleted = await client.delete(
                    sdk_streamable_url, headers={"mcp-session-id": connection.session_id or ""}
                )
            assert deleted.status_code == 200
            await session.list_tools()

    with trio.fail_after(30), pytest.raises(SessionExpiredError) as raised:
        await scenario()
    assert raised.value.session_id


# -- the command line: one URL, either transport ---------------------------------------------------
def _tool_server() -> MCPServer:
    server = MCPServer("cli", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return server


async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli_main, list(argv))


async def test_cli_speaks_streamable_http(
    sdk_streamable_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(30):
        assert await _cli(sdk_streamable_url, "--call", "echo", "--arg", "text=hi") == 0
        assert orjson.loads(capsys.readouterr().out)["content"] == [{"type": "text", "text": "hi"}]
        assert await _cli(sdk_streamable_url, "--transport", "streamable-http") == 0
        assert "echo" in {tool["name"] for tool in orjson.loads(capsys.readouterr().out)}


async def test_cli_falls_back_to_http_sse(capsys: pytest.CaptureFixture[str]) -> None:
    # The event stream is not at .../sse, so only the server's answer to the
    # initialize POST can tell the client to use HTTP+SSE.
    app = _tool_server().sse_app(sse_path="/events", message_path="/events/messages/")
    with trio.fail_after(30):
        async with serve_in_process(app) as base:
            assert await _cli(f"{base}/events", "--call", "echo", "--arg", "text=old") == 0
            captured = capsys.readouterr()
            assert orjson.loads(captured.out)["content"] == [{"type": "text", "text": "old"}]
            assert captured.err == ""
            # Asked for Streamable HTTP only, the same URL is refused.
            assert await _cli(f"{base}/events", "--transport", "streamable-http") == 1
            assert capsys.readouterr().err.startswith(
                f"error: Streamable HTTP at {base}/events: POST to {base}/events answered 40"
            )
