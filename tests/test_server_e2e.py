"""The official Python SDK client drives examples/notes_server.py over a real hypercorn trio server."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest
import trio
from mcp import Client, ClientSession
from mcp.client.sse import sse_client

from .server_helpers_e2e import hypercorn_server

pytestmark = [
    pytest.mark.e2e,
    # The client flags protocol features a future revision drops; this server speaks 2025-11-25.
    pytest.mark.filterwarnings("ignore:.*deprecated as of 2026-07-28"),
    pytest.mark.filterwarnings("ignore:.*removed as of 2026-07-28"),
]

TEST_TIMEOUT = 60.0


async def test_official_client_drives_the_notes_server() -> None:
    logs: list[mcp_types.LoggingMessageNotificationParams] = []
    updates: list[str] = []

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    with trio.fail_after(TEST_TIMEOUT):
        async with hypercorn_server("examples.notes_server:app") as server:
            async with (
                sse_client(server.sse_url) as (read, write),
                ClientSession(read, write, logging_callback=on_log, message_handler=on_message) as session,
            ):
                init = await session.initialize()
                assert init.server_info.name == "notes"
                assert init.protocol_version == "2025-11-25"
                assert init.capabilities.resources is not None
                assert init.capabilities.resources.subscribe is True

                # Tools, with structured output checked by the client against the schema.
                tools = {tool.name: tool for tool in (await session.list_tools()).tools}
                assert {"add_note", "delete_note", "find_notes", "process_notes"} <= set(tools)
                assert tools["add_note"].output_schema is not None
                result = await session.call_tool("add_note", {"name": "groceries", "text": "milk, eggs"})
                assert result.is_error is False
                assert result.structured_content == {"name": "groceries", "text": "milk, eggs", "created": True}
                bad = await session.call_tool("delete_note", {"name": "nope"})
                assert bad.is_error is True
                links = await session.call_tool("find_notes", {"word": "milk"})
                assert isinstance(links.content[0], mcp_types.ResourceLink)
                assert str(links.content[0].uri) == "note://groceries"

                # Resources: listed, read directly and through the template, subscribed to.
                listed = {str(r.uri) for r in (await session.list_resources()).resources}
                assert {"note://welcome", "note://groceries", "notes://stats"} <= listed
                templates = (await session.list_resource_templates()).resource_templates
                assert [t.uri_template for t in templates] == ["note://{name}"]
                read = await session.read_resource("note://groceries")
                assert isinstance(read.contents[0], mcp_types.TextResourceContents)
                assert read.contents[0].text == "milk, eggs"
                await session.subscribe_resource("note://groceries")
                await session.call_tool("add_note", {"name": "groceries", "text": "milk, eggs, bread"})
                await session.set_logging_level("debug")

                # Prompts and completion.
                prompts = {p.name: p for p in (await session.list_prompts()).prompts}
                assert set(prompts) == {"summarize", "brainstorm"}
                prompt = await session.get_prompt("brainstorm", {"topic": "trio", "count": "2"})
                assert [m.role for m in prompt.messages] == ["user", "assistant"]
                completion = await session.complete(
                    mcp_types.PromptReference(type="ref/prompt", name="summarize"), {"name": "name", "value": "gro"}
                )
                assert completion.completion.values == ["groceries"]

                # Progress: in order, before the result.
                progress: list[float] = []

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append(value)

                done = await session.call_tool(
                    "process_notes", {"steps": 3, "delay": 0.01}, progress_callback=on_progress
                )
                assert done.is_error is False
                assert progress == [1, 2, 3]

                # Cancellation: abandon a slow call; the server stops exactly that request.
                seen_progress = trio.Event()

                async def cancel_soon(value: float, total: float | None, message: str | None) -> None:
                    seen_progress.set()

                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            lambda: session.call_tool(
                                "process_notes", {"steps": 1000, "delay": 0.05}, progress_callback=cancel_soon
                            )
                        )
                        await seen_progress.wait()
                        scope.cancel()
                stats: dict[str, int] = {}
                while stats.get("cancelled") != 1:
                    await trio.sleep(0.05)
                    contents = (await session.read_resource("notes://stats")).contents[0]
                    assert isinstance(contents, mcp_types.TextResourceContents)
                    stats = pydantic_json(contents.text)
                assert stats["completed"] == 1
                # The session is still fine afterwards.
                await session.send_ping()

            # Disconnect in the middle of a slow call: the server cancels it.
            started = trio.Event()

            async def note_start(value: float, total: float | None, message: str | None) -> None:
                started.set()

            with trio.CancelScope() as scope:
                async with (
                    sse_client(server.sse_url) as (read, write),
                    ClientSession(read, write) as session,
                    trio.open_nursery() as nursery,
                ):
                    await session.initialize()
                    nursery.start_soon(
                        lambda: session.call_tool(
                            "process_notes", {"steps": 1000, "delay": 0.05}, progress_callback=note_start
                        )
                    )
                    await started.wait()
                    scope.cancel()
            async with sse_client(server.sse_url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                while stats.get("cancelled") != 2:
                    await trio.sleep(0.05)
                    contents = (await session.read_resource("notes://stats")).contents[0]
                    assert isinstance(contents, mcp_types.TextResourceContents)
                    stats = pydantic_json(contents.text)

            # The newer Client probes server/discover first and falls back to initialize on -32601.
            async with Client(sse_client(server.sse_url)) as newer:
                assert newer.protocol_version == "2025-11-25"
                found = await newer.call_tool("find_notes", {"word": "bread"})
                assert isinstance(found.content[0], mcp_types.ResourceLink)

            assert updates == ["note://groceries"]
            assert any("created note groceries" in str(entry.data) for entry in logs)
            await trio.sleep(0.3)  # let the server log the disconnect, if it were to
            assert "Traceback" not in server.text(), server.text()


def pydantic_json(text: str) -> dict[str, int]:
    import pydantic

    return pydantic.TypeAdapter(dict[str, int]).validate_json(text)
