"""Our client on real loopback sockets: against our server, and against the official SDK's server.

Real clock, each test bounded by an absolute ``fail_after``.  The official
server runs once per test session in a subprocess (uvicorn), stopped in a
``finally``; the test that kills a server starts its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from typing import Any

import mcp_types
import orjson
import pytest
import trio

from tests.client_helpers import ROOT, free_port, serve_in_process, start_sdk_server, stop_process
from trio_mcp_sse import MCPServer, ToolError
from trio_mcp_sse.client import (
    ClientSession,
    ConnectionClosedError,
    SSEConnectionError,
    connect_sse,
    open_session,
)
from trio_mcp_sse.client._cli import main as cli_main
from trio_mcp_sse.client._session import JSONRPCNotification

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def sdk_url() -> Iterator[str]:
    process, url = start_sdk_server()
    try:
        yield f"{url}/sse"
    finally:
        stop_process(process)


def _tool_server() -> MCPServer:
    server = MCPServer("e2e", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool
    async def add(a: float, b: float) -> float:
        return a + b

    @server.tool
    async def fail(reason: str) -> str:
        raise ToolError(f"failed because {reason}")

    return server


def _text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


# -- our server -----------------------------------------------------------------------------------
async def test_our_client_against_our_server_over_loopback() -> None:
    from examples.echo_server import app

    with trio.fail_after(20):
        async with serve_in_process(app) as base, open_session(f"{base}/sse") as session:
            assert session.server_info is not None
            assert session.server_info.name == "echo"
            tools = await session.list_tools()
            assert [tool.name for tool in tools.tools] == ["echo", "add"]
            assert _text(await session.call_tool("echo", {"text": "hi"})) == "hi"
            await session.ping()
            answers: dict[int, str] = {}

            async def add(index: int) -> None:
                answers[index] = _text(await session.call_tool("add", {"a": index, "b": 0.5}))

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(add, index)
            assert answers == {index: f"{index + 0.5}" for index in range(20)}


# -- the official SDK's server --------------------------------------------------------------------
async def test_initialize_list_call_ping_against_the_sdk_server(sdk_url: str) -> None:
    with trio.fail_after(20):
        async with open_session(sdk_url) as session:
            assert session.server_info is not None
            assert session.server_info.name == "sdk-server"
            assert session.protocol_version == "2025-11-25"
            assert session.instructions == "an interop test server"
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", "add", "count"} <= names
            assert _text(await session.call_tool("echo", {"text": "hi"})) == "hi"
            assert (await session.call_tool("add", {"a": 1, "b": 2})).structured_content == {
                "result": 3.0
            }
            await session.ping()
        # The oldest revision is still spoken by both.
        async with open_session(sdk_url, protocol_version="2024-11-05") as session:
            assert session.protocol_version == "2024-11-05"
            await session.ping()


async def test_progress_and_log_notifications_from_the_sdk_server(sdk_url: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(notification: JSONRPCNotification) -> None:
        logs.append((notification.params or {}).get("data"))

    with trio.fail_after(20):
        async with open_session(
            sdk_url, notification_handlers={"notifications/message": on_log}
        ) as session:
            result = await session.call_tool("count", {"n": 3}, progress=on_progress)
            assert _text(result) == "counted to 3"
            with trio.fail_after(5):
                while not logs:
                    await trio.sleep(0.01)
    assert progress == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert logs == ["counted"]


async def test_resources_and_prompts_from_the_sdk_server(sdk_url: str) -> None:
    with trio.fail_after(20):
        async with open_session(sdk_url) as session:
            resources = await session.list_resources()
            assert [str(resource.uri) for resource in resources.resources] == ["memo://greeting"]
            read = await session.read_resource("memo://greeting")
            assert read.contents[0].text == "hello from a resource"  # type: ignore[union-attr]
            templates = await session.list_resource_templates()
            assert [t.uri_template for t in templates.resource_templates] == ["memo://items/{item}"]
            assert (await session.read_resource("memo://items/7")).contents[0].text == "item 7"  # type: ignore[union-attr]
            prompts = await session.list_prompts()
            assert [prompt.name for prompt in prompts.prompts] == ["greet"]
            prompt = await session.get_prompt("greet", {"who": "Ada"})
            assert prompt.messages[0].content.text == "Please greet Ada."  # type: ignore[union-attr]


async def test_sampling_elicitation_and_roots_handlers_with_the_sdk_server(sdk_url: str) -> None:
    async def sample(params: mcp_types.CreateMessageRequestParams) -> mcp_types.CreateMessageResult:
        question = params.messages[0].content.text  # type: ignore[union-attr]
        return mcp_types.CreateMessageResult(
            role="assistant",
            content=mcp_types.TextContent(type="text", text=question[::-1]),
            model="reverser",
        )

    async def elicit(params: Any) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "Ada"}}

    async def roots() -> dict[str, Any]:
        return {"roots": [{"uri": "file:///work/project", "name": "project"}]}

    with trio.fail_after(20):
        async with open_session(
            sdk_url, sampling_handler=sample, elicitation_handler=elicit, roots_handler=roots
        ) as session:
            assert (
                _text(await session.call_tool("ask_model", {"question": "abc"}))
                == "model said: cba"
            )
            assert _text(await session.call_tool("ask_user")) == "accept: Ada"
            listed = await session.call_tool("roots")
            assert listed.structured_content == {"result": ["file:///work/project"]}


async def test_cancelling_a_call_cancels_it_on_the_sdk_server(sdk_url: str) -> None:
    with trio.fail_after(20):
        async with open_session(sdk_url) as session:
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


async def test_server_dying_mid_request_fails_the_connection() -> None:
    process, base = await trio.to_thread.run_sync(start_sdk_server)

    async def scenario() -> None:
        started = trio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            started.set()

        async with open_session(f"{base}/sse") as session, trio.open_nursery() as nursery:
            nursery.start_soon(partial(session.call_tool, "wait_forever", progress=on_progress))
            await started.wait()  # the tool is running on the server
            process.kill()
            await trio.sleep_forever()  # must be cancelled by the connection's failure

    try:
        with trio.fail_after(20), pytest.raises(ConnectionClosedError):
            await scenario()
    finally:
        await trio.to_thread.run_sync(stop_process, process)


async def test_nothing_listening_is_a_prompt_connection_error() -> None:
    with trio.fail_after(10), pytest.raises(SSEConnectionError, match="Connection refused"):
        async with connect_sse(f"http://127.0.0.1:{free_port()}/sse"):
            pass


async def test_session_over_raw_connection_against_the_sdk_server(sdk_url: str) -> None:
    with trio.fail_after(20):
        async with (
            connect_sse(sdk_url, timeout=5) as connection,
            ClientSession(connection) as session,
        ):
            assert connection.session_id
            await session.initialize()
            await session.ping()


# -- the command line -----------------------------------------------------------------------------
async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli_main, list(argv))


async def test_cli_lists_and_calls_tools(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(30):
        async with serve_in_process(_tool_server().sse_app()) as base:
            url = f"{base}/sse"
            assert await _cli(url) == 0
            listed = orjson.loads(capsys.readouterr().out)
            assert [tool["name"] for tool in listed] == ["echo", "add", "fail"]
            assert listed[0]["inputSchema"]["required"] == ["text"]

            assert await _cli(url, "--call", "echo", "--arg", "text=123") == 0
            called = orjson.loads(capsys.readouterr().out)
            assert called["content"] == [
                {"type": "text", "text": "123"}
            ]  # kept a string, as the schema says

            assert await _cli(url, "--call", "add", "--arg", "a=1", "--arg", "b=2.5") == 0
            assert orjson.loads(capsys.readouterr().out)["content"][0]["text"] == "3.5"

            assert await _cli(url, "--call", "add", "--args-json", '{"a": 2, "b": 2}') == 0
            assert orjson.loads(capsys.readouterr().out)["content"][0]["text"] == "4.0"

            assert await _cli(url, "--call", "fail", "--arg", "reason=testing") == 1
            captured = capsys.readouterr()
            assert orjson.loads(captured.out)["isError"] is True
            assert captured.err == "error: tool 'fail' reported an error: failed because testing\n"

            assert await _cli(url, "--call", "nope", "--arg", "x=1") == 1
            assert (
                capsys.readouterr().err
                == "error: the server has no tool named 'nope' (its tools: add, echo, fail)\n"
            )

            assert await _cli(url, "--call", "nope") == 1
            assert capsys.readouterr().err == "error: Unknown tool: nope (code -32602)\n"

            assert await _cli(url, "--call", "add", "--arg", "a=one", "--arg", "b=1") == 2
            assert capsys.readouterr().err == "error: --arg a=one: expected number (as JSON)\n"

            assert await _cli(f"{base}/not-sse") == 1
            err = capsys.readouterr().err  # refused as Streamable HTTP, then as HTTP+SSE
            assert err.startswith(f"error: Streamable HTTP at {base}/not-sse: POST to {base}/not-sse answered 404")
            assert err.endswith(f"; then HTTP+SSE at {base}/not-sse: GET {base}/not-sse answered 404 Not Found\n")


async def test_cli_failures_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(30):
        url = f"http://127.0.0.1:{free_port()}/sse"
        assert await _cli(url) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: HTTP+SSE at {url}: cannot connect to {url}: ")
        assert err.endswith("(Connection refused)\n")
        assert err.count("\n") == 1

        assert await _cli("not a url") == 2
        assert capsys.readouterr().err.startswith("error: the SSE URL must be an absolute http")
        assert await _cli(url, "--arg", "x=1") == 2
        assert capsys.readouterr().err == "error: --arg and --args-json need --call TOOL or --prompt NAME\n"
        assert await _cli(url, "--timeout", "0") == 2
        assert capsys.readouterr().err == "error: --timeout must be > 0\n"
        assert await _cli(url, "-H", "no colon") == 2
        assert capsys.readouterr().err == "error: --header 'no colon': expected 'NAME: VALUE'\n"
        assert await _cli() == 2  # neither a URL nor --stdio
        assert capsys.readouterr().err == "error: give the server's URL, or --stdio and the command that starts it\n"


async def test_python_dash_m_dispatches_to_the_client_command() -> None:
    with trio.fail_after(30):
        async with serve_in_process(_tool_server().sse_app()) as base:
            result = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "trio_mcp_sse",
                    "client",
                    f"{base}/sse",
                    "--call",
                    "echo",
                    "--arg",
                    "text=hi",
                ],
                capture_stdout=True,
                capture_stderr=True,
                cwd=str(ROOT),
                check=False,
            )
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["content"] == [{"type": "text", "text": "hi"}]
