"""Both protocol eras on one endpoint, against the official Python client on real hypercorn.

The official ``mcp`` 2.3 client speaks 2026-07-28 when pinned to it, finds it
by itself with ``mode="auto"`` (``server/discover`` first), and falls back to
the handshake with ``mode="legacy"``.  The same tool, which elicits twice,
completes in every mode: through two InputRequiredResult rounds for the
modern client, through two server->client requests for the handshake one.
"""

from __future__ import annotations

from typing import Any

import mcp.types as types
import pytest
import trio
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged

from tests.server_helpers_e2e import hypercorn_server

APP = "tests.apps.eras_app:app"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def answering(asked: list[str]) -> Any:
    """An elicitation callback that books for 4 and confirms, noting every question."""

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        if "for how many" in params.message:
            return types.ElicitResult(action="accept", content={"size": 4})
        return types.ElicitResult(action="accept", content={"ok": True})

    return elicit


@pytest.mark.parametrize(
    ("mode", "version"), [("2026-07-28", "2026-07-28"), ("auto", "2026-07-28"), ("legacy", "2025-11-25")]
)
async def test_one_eliciting_tool_completes_in_every_mode_of_the_official_client(mode: str, version: str) -> None:
    asked: list[str] = []
    with trio.fail_after(60):
        async with hypercorn_server(APP) as running, Client(
            f"{running.base_url}/mcp", mode=mode, elicitation_callback=answering(asked)
        ) as client:
            assert client.protocol_version == version
            result = await client.call_tool("book", {"restaurant": "Chez Trio"})
            echoed = await client.call_tool("echo", {"text": "still here"})
    assert result.is_error is not True
    assert [block.text for block in result.content if isinstance(block, types.TextContent)] == [
        f"Booked Chez Trio for 4 ({version})."
    ]
    assert asked == ["Booking at Chez Trio: for how many?", "Book Chez Trio for 4?"]
    assert [block.text for block in echoed.content if isinstance(block, types.TextContent)] == ["still here"]


async def test_auto_mode_lands_on_2026_07_28_and_reads_discovery_and_cache_hints() -> None:
    with trio.fail_after(60):
        async with hypercorn_server(APP) as running, Client(f"{running.base_url}/mcp", mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            assert client.server_info is not None
            assert (client.server_info.name, client.server_info.version) == ("eras", "3.1.0")
            tools = await client.list_tools()
    assert [tool.name for tool in tools.tools] == ["book", "echo", "add_special"]
    assert (tools.ttl_ms, tools.cache_scope) == (30_000, "public")


async def test_a_listen_stream_of_the_official_client_hears_a_tool_list_change() -> None:
    with trio.fail_after(60):
        async with hypercorn_server(APP) as running, Client(f"{running.base_url}/mcp", mode="2026-07-28") as client:
            async with client.listen(tools_list_changed=True, prompts_list_changed=False) as subscription:
                assert subscription.honored is not None
                assert subscription.honored.tools_list_changed is True
                await client.call_tool("add_special", {})
                event = await subscription.__anext__()
            tools = await client.list_tools()
    assert isinstance(event, ToolsListChanged)
    assert "special" in [tool.name for tool in tools.tools]
