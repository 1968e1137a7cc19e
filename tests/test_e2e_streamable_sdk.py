"""The official Python SDK's Streamable HTTP client against our server, under a real hypercorn.

The example servers run in ``hypercorn --worker-class trio`` (``tests/apps/streamable_apps.py``),
once with event-stream answers and once with JSON answers.  Real sockets, real clock, an
absolute ``fail_after`` per test.  The answers are the fixtures' exact texts.
"""

from __future__ import annotations

from typing import Any

import httpx
import mcp_types
import orjson
import pytest
import trio
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from .server_helpers_e2e import RunningServer, hypercorn_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:.*deprecated as of 2026-07-28"),
    pytest.mark.filterwarnings("ignore:.*removed as of 2026-07-28"),
]

TEST_TIMEOUT = 60.0
MODES = ["sse", "json"]


async def sessions_open(server: RunningServer) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.base_url}/metrics")
    response.raise_for_status()
    (line,) = [line for line in response.text.splitlines() if line.startswith("mcp_sessions_open ")]
    return int(line.split()[1])


async def until_no_session_is_open(server: RunningServer) -> None:
    while await sessions_open(server):
        await trio.sleep(0.02)


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent), block
    return block.text


@pytest.mark.parametrize("mode", MODES)
async def test_official_client_drives_the_everything_server(mode: str) -> None:
    logs: list[str] = []
    elicited: list[str] = []
    sampled: list[str] = []

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data))

    async def on_elicit(context: Any, params: Any) -> mcp_types.ElicitResult:
        elicited.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"response": "yes ✓"})

    async def on_sample(context: Any, params: mcp_types.CreateMessageRequestParams) -> mcp_types.CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, mcp_types.TextContent)
        sampled.append(content.text)
        return mcp_types.CreateMessageResult(
            role="assistant", content=mcp_types.TextContent(type="text", text="forty-two"), model="m"
        )

    with trio.fail_after(TEST_TIMEOUT):
        async with hypercorn_server(f"tests.apps.streamable_apps:everything_{mode}") as server:
            async with (
                streamable_http_client(f"{server.base_url}/mcp") as (read, write),
                ClientSession(
                    read, write, logging_callback=on_log, elicitation_callback=on_elicit, sampling_callback=on_sample
                ) as session,
            ):
                init = await session.initialize()
                assert init.server_info.name == "mcp-conformance-test-server"
                assert init.protocol_version == "2025-11-25"
                assert await sessions_open(server) == 1

                tools = {tool.name for tool in (await session.list_tools()).tools}
                assert {"test_simple_text", "test_elicitation", "test_reconnection"} <= tools
                simple = await session.call_tool("test_simple_text", {})
                assert text_of(simple) == "This is a simple text response for testing."
                failed = await session.call_tool("test_error_handling", {})
                assert failed.is_error is True
                assert text_of(failed) == "This tool intentionally returns an error for testing"

                # Progress and log messages made while serving a call.
                progress: list[tuple[float, float | None, str | None]] = []

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append((value, total, message))

                done = await session.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
                token = text_of(done)
                assert token.isdigit() and token != "0"  # the token the client chose was seen
                expected = [(float(step), 100.0, f"Completed step {step} of 100") for step in (0, 50, 100)]
                logged = await session.call_tool("test_tool_with_logging", {})
                assert text_of(logged) == "Tool with logging executed successfully"
                if mode == "sse":
                    # On the request's own stream: all of them, in order, before the result.
                    assert progress == expected
                    assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]
                else:
                    # A JSON answer has no room for them: they travel on the standalone GET
                    # stream, which races the answer, so the last one may come after it.
                    assert progress == expected[: len(progress)] and len(progress) >= 2
                    with trio.fail_after(5):
                        while len(logs) < 3:
                            await trio.sleep(0.01)
                    assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]

                # Requests from the server, answered by the client's callbacks.
                answer = await session.call_tool("test_elicitation", {"message": "Say yes"})
                assert text_of(answer) == 'User response: action=accept, content={"response":"yes ✓"}'
                assert elicited == ["Say yes"]
                sampling = await session.call_tool("test_sampling", {"prompt": "The answer?"})
                assert text_of(sampling) == "LLM response: forty-two"
                assert sampled == ["The answer?"]

                # The server ends the request's stream mid-call; the client resumes it.
                resumed = await session.call_tool("test_reconnection", {})
                assert text_of(resumed) == (
                    "Reconnection test completed successfully. If you received this, "
                    "the client properly reconnected after stream closure."
                )

                # Resources and prompts.
                static = (await session.read_resource("test://static-text")).contents[0]
                assert isinstance(static, mcp_types.TextResourceContents)
                assert static.text == "This is the content of the static text resource."
                templated = (await session.read_resource("test://template/42/data")).contents[0]
                assert isinstance(templated, mcp_types.TextResourceContents)
                assert templated.text == '{"id":"42","templateTest":true,"data":"Data for ID: 42"}'
                prompts = {prompt.name for prompt in (await session.list_prompts()).prompts}
                assert {"test_simple_prompt", "test_prompt_with_arguments"} <= prompts
                prompt = await session.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
                (message,) = prompt.messages
                assert isinstance(message.content, mcp_types.TextContent)
                assert message.content.text == "Prompt with arguments: arg1='a', arg2='b'"
                await session.send_ping()

            # Leaving sent DELETE: the session is gone on the server.
            await until_no_session_is_open(server)
            assert "Traceback" not in server.text(), server.text()


@pytest.mark.parametrize("mode", MODES)
async def test_official_client_drives_the_notes_server(mode: str) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    with trio.fail_after(TEST_TIMEOUT):
        async with hypercorn_server(f"tests.apps.streamable_apps:notes_{mode}") as server:
            async with (
                streamable_http_client(f"{server.base_url}/mcp") as (read, write),
                ClientSession(read, write, message_handler=on_message) as session,
            ):
                init = await session.initialize()
                assert init.server_info.name == "notes"
                assert init.instructions == "Keep short notes. Read them as note://<name> resources."
                tools = {tool.name: tool for tool in (await session.list_tools()).tools}
                assert list(tools) == ["add_note", "delete_note", "find_notes", "process_notes"]
                created = await session.call_tool("add_note", {"name": "groceries", "text": "milk, eggs"})
                assert created.structured_content == {"name": "groceries", "text": "milk, eggs", "created": True}
                missing = await session.call_tool("delete_note", {"name": "nope"})
                assert missing.is_error is True
                assert text_of(missing) == "there is no note named 'nope'"

                # A resource update goes to the standalone GET stream (it belongs to no request).
                await session.subscribe_resource("note://groceries")
                await session.call_tool("add_note", {"name": "groceries", "text": "milk, eggs, bread"})
                read_back = (await session.read_resource("note://groceries")).contents[0]
                assert isinstance(read_back, mcp_types.TextResourceContents)
                assert read_back.text == "milk, eggs, bread"
                with trio.fail_after(5):
                    while not updates:
                        await trio.sleep(0.01)
                assert updates == ["note://groceries"]

                progress: list[float] = []

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append(value)

                done = await session.call_tool(
                    "process_notes", {"steps": 3, "delay": 0.05}, progress_callback=on_progress
                )
                assert text_of(done) == "processed 2 notes in 3 steps"
                if mode == "sse":
                    assert progress == [1, 2, 3]
                else:
                    assert progress == [1, 2, 3][: len(progress)] and len(progress) >= 2

                # Cancellation: abandon a slow call; the server stops exactly that request.
                started = trio.Event()

                async def cancel_soon(value: float, total: float | None, message: str | None) -> None:
                    started.set()

                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            lambda: session.call_tool(
                                "process_notes", {"steps": 1000, "delay": 0.05}, progress_callback=cancel_soon
                            )
                        )
                        await started.wait()
                        scope.cancel()
                stats: dict[str, int] = {}
                while stats.get("cancelled") != 1:
                    await trio.sleep(0.05)
                    contents = (await session.read_resource("notes://stats")).contents[0]
                    assert isinstance(contents, mcp_types.TextResourceContents)
                    stats = orjson.loads(contents.text)
                assert stats == {"notes": 2, "completed": 1, "cancelled": 1}

                prompt = await session.get_prompt("brainstorm", {"topic": "trio", "count": "2"})
                assert [m.role for m in prompt.messages] == ["user", "assistant"]
                completion = await session.complete(
                    mcp_types.PromptReference(type="ref/prompt", name="summarize"), {"name": "name", "value": "gro"}
                )
                assert completion.completion.values == ["groceries"]
            await until_no_session_is_open(server)

            assert "Traceback" not in server.text(), server.text()


@pytest.mark.parametrize("mode", MODES)
async def test_newer_client_object_connects_by_url(mode: str) -> None:
    """``mcp.Client(url)`` probes ``server/discover`` first and lands on the newest era: 2026-07-28."""
    with trio.fail_after(TEST_TIMEOUT):
        async with hypercorn_server(f"tests.apps.streamable_apps:everything_{mode}") as server:
            async with Client(f"{server.base_url}/mcp") as client:
                assert client.protocol_version == "2026-07-28"
                result = await client.call_tool("test_simple_text", {})
                assert text_of(result) == "This is a simple text response for testing."
            await until_no_session_is_open(server)
            assert "Traceback" not in server.text(), server.text()
