"""The server's lifespan (``MCPServer(lifespan=...)``, ``ctx.lifespan_context``) and per-session state.

In memory with the mock clock (the apps' ASGI lifespan driven by ``run_asgi_app``, sessions
by ``trio_mcp_sse.testing``), then end to end: ``python -m trio_mcp_sse serve module:server``
in a subprocess, real sockets, real clock, absolute bounds.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mcp_sse import Context, MCPServer
from trio_mcp_sse.lowlevel import Incoming, SessionManager, parse_message
from trio_mcp_sse.testing import (
    ASGITestClient,
    StreamableTestSession,
    connected_client,
    run_asgi_app,
    serve_sessions,
)

from .e2e_support import ROOT, running_server


class Pool:
    """What a lifespan typically opens: shared by every session of the app."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


def recording_server(events: list[str], **options: Any) -> MCPServer:
    """A server whose lifespan, tool, resource and prompt record what they see, in order."""
    opened = 0

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[Pool]:
        nonlocal opened
        opened += 1
        await trio.sleep(0.1)  # opening a pool takes a while
        events.append(f"enter {opened}")
        pool = Pool(opened)
        try:
            yield pool
        finally:
            await trio.sleep(0.1)  # closing it too: the exit is not cancelled
            pool.closed = True
            events.append(f"exit {pool.number} (sessions left: {len(server.connections)})")

    server = MCPServer("pooled", lifespan=lifespan, **options)

    @server.tool
    async def number(ctx: Context[Pool]) -> int:
        events.append("tool")
        assert not ctx.lifespan_context.closed
        return ctx.lifespan_context.number

    @server.resource("pool://number")
    async def pool_number(ctx: Context[Pool]) -> str:
        return str(ctx.lifespan_context.number)

    @server.prompt
    async def about(ctx: Context[Pool]) -> str:
        return f"pool {ctx.lifespan_context.number}"

    return server


def lifespan_scope() -> dict[str, Any]:
    return {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}


async def call_number(session: Any) -> int:
    response = await session.request("tools/call", {"name": "number", "arguments": {}})
    return int(response["result"]["structuredContent"]["result"])


# -- the app's lifespan ------------------------------------------------------------------------------
async def test_entered_once_before_the_first_request_and_exited_after_the_sessions_ended(
    autojump_clock: trio.abc.Clock,
) -> None:
    events: list[str] = []
    server = recording_server(events)
    app = server.http_app()
    assert events == []  # building the app enters nothing
    async with run_asgi_app(app) as client:
        assert events == ["enter 1"]  # start-up waited for it
        first, second = StreamableTestSession(client), StreamableTestSession(client)
        await first.initialize()
        await second.initialize()
        assert await call_number(first) == 1
        assert await call_number(second) == 1
        async with client.open_sse_session() as sse:  # HTTP+SSE beside it: the same run
            await sse.initialize()
            assert await call_number(sse) == 1
        assert len(server.connections) == 2
        assert events == ["enter 1", "tool", "tool", "tool"]
    assert events[-1] == "exit 1 (sessions left: 0)"
    assert server.connections == ()


async def test_resources_and_prompts_see_it_too(autojump_clock: trio.abc.Clock) -> None:
    server = recording_server([])
    async with run_asgi_app(server.http_app()) as client:
        session = StreamableTestSession(client)
        await session.initialize()
        read = await session.request("resources/read", {"uri": "pool://number"})
        assert read["result"]["contents"][0]["text"] == "1"
        prompt = await session.request("prompts/get", {"name": "about"})
        assert prompt["result"]["messages"][0]["content"]["text"] == "pool 1"


async def test_the_context_parameter_stays_out_of_the_input_schema() -> None:
    server = recording_server([])
    assert server.tools["number"].definition["inputSchema"].get("properties", {}) == {}
    assert server.prompts["about"].definition.get("arguments", []) == []


@pytest.mark.parametrize(
    "build",
    [
        lambda server: server.sse_app(),
        lambda server: server.sse_transport(),
        lambda server: server.streamable_http_transport(),
        lambda server: server.http_app(sse_path=None, websocket=True),
    ],
    ids=["sse_app", "sse_transport", "streamable_http_transport", "http_app-websocket"],
)
async def test_every_app_builder_runs_it(
    build: Callable[[MCPServer], Any], autojump_clock: trio.abc.Clock
) -> None:
    events: list[str] = []
    async with run_asgi_app(build(recording_server(events))):
        assert events == ["enter 1"]
    assert events == ["enter 1", "exit 1 (sessions left: 0)"]


async def test_a_quart_apps_own_hooks_run_inside_it(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    app = recording_server(events).http_app()

    @app.before_serving
    async def opened() -> None:
        events.append("before_serving")

    @app.after_serving
    async def closed() -> None:
        events.append("after_serving")

    async with run_asgi_app(app):
        pass
    assert events == ["enter 1", "before_serving", "after_serving", "exit 1 (sessions left: 0)"]


async def test_an_open_stream_is_ended_before_the_lifespan_exits(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    server = recording_server(events)
    async with run_asgi_app(server.sse_app()) as client, client.open_sse_session() as sse:
        await sse.initialize()
        assert await call_number(sse) == 1
        # Leaving the app with the stream still open: shutdown closes the session first.
    assert events[-1] == "exit 1 (sessions left: 0)"


async def test_it_may_run_background_tasks_in_a_nursery_of_its_own(autojump_clock: trio.abc.Clock) -> None:
    ticks: list[int] = []

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[list[int]]:
        async def tick() -> None:
            while True:
                ticks.append(len(ticks))
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick)
            yield ticks
            nursery.cancel_scope.cancel()

    server = MCPServer("ticking", lifespan=lifespan)

    @server.tool
    async def count(ctx: Context[list[int]]) -> int:
        return len(ctx.lifespan_context)

    async with run_asgi_app(server.http_app()) as client:
        session = StreamableTestSession(client)
        await session.initialize()
        await trio.sleep(5.5)
        response = await session.request("tools/call", {"name": "count", "arguments": {}})
        assert response["result"]["structuredContent"]["result"] == 6
    seen = len(ticks)
    await trio.sleep(5)
    assert len(ticks) == seen  # the ticker ended with the app


async def test_a_failure_to_enter_fails_the_start_up_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    entered_app = False

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        raise ConnectionRefusedError("database at 127.0.0.1:5432 refused the connection\nmore detail")
        yield

    app = MCPServer("down", lifespan=lifespan).http_app()

    @app.before_serving
    async def never() -> None:
        nonlocal entered_app
        entered_app = True

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(5), caplog.at_level(logging.ERROR, logger="trio_mcp_sse"):
        await app(lifespan_scope(), receive, send)
    line = (
        "the lifespan of MCPServer 'down' failed to start: "
        "ConnectionRefusedError: database at 127.0.0.1:5432 refused the connection"
    )
    assert sent == [{"type": "lifespan.startup.failed", "message": line}]
    assert not entered_app  # nothing of the app started half-way
    assert [record.getMessage() for record in caplog.records] == [f"start-up failed: {line}"]
    assert not app.extensions["trio_mcp_sse"].host.running  # no session can be served


async def test_the_in_memory_harness_reports_a_failed_start_up() -> None:
    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        raise RuntimeError("no configuration")
        yield

    with trio.fail_after(5), pytest.RaisesGroup(
        pytest.RaisesExc(AssertionError, match="MCPServer 'broken' failed to start: RuntimeError: no configuration"),
        flatten_subgroups=True,
    ):
        async with run_asgi_app(MCPServer("broken", lifespan=lifespan).http_app()):
            pass


async def test_a_failure_on_exit_fails_the_shutdown_with_the_line(caplog: pytest.LogCaptureFixture) -> None:
    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        yield
        raise OSError("pool did not close")

    line = "the lifespan of MCPServer 'leaky' failed on exit: OSError: pool did not close"
    with trio.fail_after(5), pytest.RaisesGroup(
        pytest.RaisesExc(AssertionError, match=f"lifespan shutdown failed: .*{line}"), flatten_subgroups=True
    ):
        async with run_asgi_app(MCPServer("leaky", lifespan=lifespan).http_app()):
            pass
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == [line]


async def test_where_no_asgi_lifespan_runs_the_first_stream_enters_it_for_its_duration(
    autojump_clock: trio.abc.Clock,
) -> None:
    events: list[str] = []
    app = recording_server(events).sse_transport()
    async with trio.open_nursery() as nursery:
        client = ASGITestClient(app, nursery)  # no lifespan: as under a sub-app mount that does not pass it on
        async with client.open_sse_session() as sse:
            await sse.initialize()
            assert await call_number(sse) == 1
            assert events == ["enter 1", "tool"]
        with trio.fail_after(5):
            while len(events) < 3:
                await trio.sleep(0.1)
    assert events == ["enter 1", "tool", "exit 1 (sessions left: 0)"]


# -- one server, several apps or runs --------------------------------------------------------------
async def test_two_apps_of_one_server_running_at_once_enter_it_once_each(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    server = recording_server(events)
    async with run_asgi_app(server.http_app()) as one, run_asgi_app(server.sse_app()) as two:
        assert events == ["enter 1", "enter 2"]
        streamable = StreamableTestSession(one)
        await streamable.initialize()
        assert await call_number(streamable) == 1
        async with two.open_sse_session() as sse:
            await sse.initialize()
            assert await call_number(sse) == 2  # each app's sessions see that app's value
    # The second app stops first: the first one's session is still served meanwhile.
    assert events[-2:] == ["exit 2 (sessions left: 1)", "exit 1 (sessions left: 0)"]


async def test_an_app_started_again_enters_it_again(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    app = recording_server(events).http_app()
    for _ in range(2):
        async with run_asgi_app(app) as client:
            session = StreamableTestSession(client)
            await session.initialize()
            await call_number(session)
    assert [event for event in events if event != "tool"] == [
        "enter 1",
        "exit 1 (sessions left: 0)",
        "enter 2",
        "exit 2 (sessions left: 0)",
    ]


async def test_blocks_of_running_inside_one_another_share_one_entering(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    server = recording_server(events)
    async with connected_client(server) as first, connected_client(server) as second:
        for client in (first, second):
            result = await client.call("tools/call", {"name": "number", "arguments": {}})
            assert result["structuredContent"] == {"result": 1}
    assert events == ["enter 1", "tool", "tool", "exit 1 (sessions left: 0)"]


async def test_the_block_that_entered_it_waits_for_those_that_joined(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    server = recording_server(events)
    joined = trio.Event()

    async def owner() -> None:
        async with server.running() as pool:
            await joined.wait()
        events.append(f"owner left, pool closed: {pool.closed}")

    async def guest() -> None:
        async with server.running() as pool:
            joined.set()
            await trio.sleep(10)
            events.append(f"guest leaving, pool closed: {pool.closed}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await trio.sleep(1)
        nursery.start_soon(guest)
    assert events == [
        "enter 1",
        "guest leaving, pool closed: False",
        "exit 1 (sessions left: 0)",
        "owner left, pool closed: True",
    ]


async def test_one_app_started_again_while_it_runs_shares_the_running_lifespan(
    autojump_clock: trio.abc.Clock,
) -> None:
    events: list[str] = []
    app = recording_server(events).http_app()
    async with run_asgi_app(app):
        async with run_asgi_app(app) as again:  # (the host is running: only the app's own lifespan runs)
            session = StreamableTestSession(again)
            await session.initialize()
            assert await call_number(session) == 1
        assert events == ["enter 1", "tool"]
    assert events == ["enter 1", "tool", "exit 1 (sessions left: 0)"]


# -- sessions served without an app ----------------------------------------------------------------
async def test_connected_client_runs_it_around_the_session(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []
    server = recording_server(events)
    async with connected_client(server) as client:
        assert events == ["enter 1"]
        result = await client.call("tools/call", {"name": "number", "arguments": {}})
        assert result["structuredContent"] == {"result": 1}
    assert events == ["enter 1", "tool", "exit 1 (sessions left: 0)"]


async def test_unentered_the_context_says_how_to_enter_it(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = recording_server([])
    manager = SessionManager(server.run_session)
    async with manager.run():
        session = await manager.open_session()
        for message in (
            b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
            b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}',
            b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"number","arguments":{}}}',
        ):
            await session.deliver(Incoming(parse_message(message)))
        await session.outgoing.receive()
        reply = (await session.outgoing.receive()).data.decode()
        assert '"isError":true' in reply  # (the client is not told the server's internals)
        session.close("done")
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert "the lifespan of MCPServer 'pooled' is not running" in logged
    assert "server.running()" in logged


async def test_without_a_lifespan_the_value_is_none(autojump_clock: trio.abc.Clock) -> None:
    server = MCPServer("plain")

    @server.tool
    async def value(ctx: Context) -> bool:
        return ctx.lifespan_context is None

    async with connected_client(server) as client:
        result = await client.call("tools/call", {"name": "value", "arguments": {}})
        assert result["structuredContent"] == {"result": True}
    async with run_asgi_app(server.http_app()) as http:
        session = StreamableTestSession(http)
        await session.initialize()
        response = await session.request("tools/call", {"name": "value", "arguments": {}})
        assert response["result"]["structuredContent"] == {"result": True}


# -- per-session state -------------------------------------------------------------------------------
def remembering_server(kept: list[dict[str, Any]]) -> MCPServer:
    server = MCPServer("remembering")

    @server.tool
    async def remember(item: str, ctx: Context) -> list[str]:
        items: list[str] = ctx.session_state.setdefault("items", [])
        items.append(item)
        if not any(state is ctx.session_state for state in kept):
            kept.append(ctx.session_state)
        return list(items)

    return server


async def test_session_state_is_kept_across_requests_and_isolated_between_sessions(
    autojump_clock: trio.abc.Clock,
) -> None:
    kept: list[dict[str, Any]] = []
    async with serve_sessions(remembering_server(kept)) as host:
        alice, bob = await host.initialized_client(), await host.initialized_client()
        remember = {"name": "remember", "arguments": {"item": "a1"}}
        assert (await alice.call("tools/call", remember))["structuredContent"] == {"result": ["a1"]}
        remember = {"name": "remember", "arguments": {"item": "b1"}}
        assert (await bob.call("tools/call", remember))["structuredContent"] == {"result": ["b1"]}
        remember = {"name": "remember", "arguments": {"item": "a2"}}
        assert (await alice.call("tools/call", remember))["structuredContent"] == {"result": ["a1", "a2"]}
        assert len(kept) == 2

        alice.session.close("client gone")
        with trio.fail_after(5):
            await alice.session.finished.wait()
        assert kept[0] == {}  # dropped with its session
        assert kept[1] == {"items": ["b1"]}  # the other session's untouched


async def test_session_state_over_http_lives_as_long_as_the_session(autojump_clock: trio.abc.Clock) -> None:
    kept: list[dict[str, Any]] = []
    async with run_asgi_app(remembering_server(kept).http_app()) as client:
        session = StreamableTestSession(client)
        await session.initialize()
        for item in ("x", "y"):
            response = await session.request("tools/call", {"name": "remember", "arguments": {"item": item}})
        assert response["result"]["structuredContent"] == {"result": ["x", "y"]}
        assert (await session.delete()).status == 200
        await trio.sleep(1)
        assert kept == [{}]


# -- end to end ----------------------------------------------------------------------------------------
def serve_argv() -> list[str]:
    return [sys.executable, "-m", "trio_mcp_sse", "serve", "tests.apps.lifespan_app:server", "--bind", "127.0.0.1:0"]


async def test_served_it_runs_once_and_exits_on_sigterm(tmp_path: Path) -> None:
    from trio_mcp_sse.client import open_session

    record = tmp_path / "lifespan.log"
    with trio.fail_after(60):
        async with running_server(serve_argv(), env={"LIFESPAN_LOG": str(record)}) as server:
            pid = server.process.pid
            assert record.read_text() == f"entered {pid}\n"  # before the server said it was running
            for _ in range(2):
                async with open_session(f"{server.url}/mcp") as session:
                    result = await session.call_tool("opened")
                    assert result.structured_content == {"result": 1}
            async with open_session(f"{server.url}/sse", transport="sse") as session:
                assert (await session.call_tool("opened")).structured_content == {"result": 1}
            assert record.read_text() == f"entered {pid}\n"
            server.process.send_signal(signal.SIGTERM)
            await server.process.wait()
        assert server.process.returncode == 0, server.log
        assert record.read_text() == f"entered {pid}\nexited {pid}\n"
        assert "drained" in server.log


async def test_served_a_failure_to_enter_exits_with_the_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LIFESPAN_LOG": str(tmp_path / "lifespan.log"),
        "LIFESPAN_FAIL": "1",
    }
    with trio.fail_after(60):
        done = await trio.run_process(
            serve_argv(), cwd=str(ROOT), env=env, capture_stdout=True, stderr=subprocess.STDOUT, check=False
        )
    output = done.stdout.decode()
    assert done.returncode == 1, output
    assert output.rstrip().splitlines()[-1] == (
        "error: start-up failed: the lifespan of MCPServer 'lifespan-e2e' failed to start: "
        "ConnectionRefusedError: database at 127.0.0.1:5432 refused the connection"
    )
    assert "Traceback" not in output
    assert not (tmp_path / "lifespan.log").exists()
