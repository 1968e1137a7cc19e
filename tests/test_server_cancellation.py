"""Per-request cancel scopes: a client cancels one request; a disconnect cancels them all."""

from __future__ import annotations

import logging

import pytest
import trio

from trio_mcp_sse.server import Context, MCPServer
from trio_mcp_sse.testing import connected_client, serve_sessions


def make_server() -> tuple[MCPServer, dict[str, list[str]]]:
    server = MCPServer("cancel")
    events: dict[str, list[str]] = {"started": [], "cancelled": [], "finished": []}

    @server.tool
    async def slow(label: str, seconds: float, ctx: Context) -> str:
        events["started"].append(label)
        try:
            for step in range(int(seconds)):
                await trio.sleep(1)
                await ctx.report_progress(step + 1, seconds)
        except trio.Cancelled:
            events["cancelled"].append(label)
            raise
        events["finished"].append(label)
        return f"{label} done"

    return server, events


async def test_cancel_one_of_two_concurrent_calls(autojump_clock: trio.abc.Clock) -> None:
    server, events = make_server()
    async with connected_client(server) as client:
        first = await client.request("tools/call", {"name": "slow", "arguments": {"label": "A", "seconds": 5}})
        second = await client.request(
            "tools/call",
            {"name": "slow", "arguments": {"label": "B", "seconds": 5}, "_meta": {"progressToken": "b"}},
        )
        await trio.sleep(2.5)
        assert events["started"] == ["A", "B"]
        await client.notify("notifications/cancelled", {"requestId": first, "reason": "user pressed stop"})
        response = await client.response(second)
        assert response["result"]["content"][0]["text"] == "B done"
        assert events["cancelled"] == ["A"]
        assert events["finished"] == ["B"]
        # Nothing at all was sent for the cancelled request.
        leftovers = await client.drain()  # backlog included
        assert [m for m in leftovers if m.get("id") == first] == []
        # B's progress was untouched by A's cancellation.
        progress = [m["params"]["progress"] for m in leftovers if m.get("method") == "notifications/progress"]
        assert progress == [1, 2, 3, 4, 5]
        assert server.connections[0].in_flight == {}
        # The session carries on.
        assert await client.call("ping") == {}


async def test_cancelling_an_unknown_or_finished_request_is_harmless(autojump_clock: trio.abc.Clock) -> None:
    server, events = make_server()
    async with connected_client(server) as client:
        done = await client.request("tools/call", {"name": "slow", "arguments": {"label": "A", "seconds": 1}})
        await client.response(done)
        await client.notify("notifications/cancelled", {"requestId": done})
        await client.notify("notifications/cancelled", {"requestId": "never-sent"})
        await client.notify("notifications/cancelled", {})
        assert events["cancelled"] == []
        assert await client.call("ping") == {}


async def test_disconnect_cancels_every_request_of_the_session(autojump_clock: trio.abc.Clock) -> None:
    server, events = make_server()
    async with serve_sessions(server) as host:
        leaving = await host.initialized_client()
        staying = await host.initialized_client()
        for label in ("A", "B"):
            await leaving.request("tools/call", {"name": "slow", "arguments": {"label": label, "seconds": 10}})
        kept = await staying.request("tools/call", {"name": "slow", "arguments": {"label": "C", "seconds": 3}})
        await trio.sleep(1.5)
        leaving.session.close("client disconnected")
        with trio.fail_after(5):
            await leaving.session.finished.wait()
        assert sorted(events["cancelled"]) == ["A", "B"]
        # Another session's request is not affected.
        assert (await staying.response(kept))["result"]["content"][0]["text"] == "C done"
        assert len(server.connections) == 1


async def test_handler_exception_does_not_end_the_session(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    server = MCPServer("boom")

    @server.resource("boom://now")
    async def explode() -> str:
        raise ValueError("kaboom")

    async with connected_client(server) as client:
        for _ in range(2):
            error = await client.call_error("resources/read", {"uri": "boom://now"})
            assert error["code"] == -32603
        assert await client.call("ping") == {}
    assert len([r for r in caplog.records if r.exc_info]) == 2  # once per failure, not more


async def test_a_cancel_that_overtakes_its_request_stops_it_from_running() -> None:
    """Every message is its own POST, so a cancel can arrive before the request it cancels."""
    server = MCPServer("early")
    runs: list[str] = []

    @server.tool
    async def work(label: str) -> str:
        runs.append(label)
        return label

    async with connected_client(server) as client:
        await client.notify("notifications/cancelled", {"requestId": 41, "reason": "changed my mind"})
        await client.request("tools/call", {"name": "work", "arguments": {"label": "cancelled"}}, request_id=41)
        result = await client.call("tools/call", {"name": "work", "arguments": {"label": "kept"}})
        assert result["content"][0]["text"] == "kept"
        assert runs == ["kept"]  # the overtaken request never ran, and got no answer
        assert await client.drain() == []
