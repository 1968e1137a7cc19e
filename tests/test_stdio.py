"""The stdio transport: framing without I/O, the server over memory streams, then real processes.

The process tests use real pipes and the real clock, each under an absolute ``fail_after``:
our server (``python -m trio_mcp_sse serve --stdio`` and ``server.run_stdio()``) against the
official Python SDK's stdio client (on asyncio, in a process of its own), the official
TypeScript SDK's ``StdioClientTransport``, our own :func:`connect_stdio` and raw pipes; and
our client against the official Python SDK's stdio server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types
import orjson
import pytest
import trio
import trio.testing

from trio_mcp_sse._session import Session, SessionLimits
from trio_mcp_sse._stdio import (
    DEFAULT_MAX_MESSAGE_SIZE,
    LineFramer,
    Oversized,
    StdioEnd,
    one_line,
    serve_stdio,
)
from trio_mcp_sse.client import (
    ClientSession,
    ConnectError,
    EventTooLargeError,
    ServerExitedError,
    connect_stdio,
)
from trio_mcp_sse.server import Context, MCPServer

from .test_e2e_typescript import installed_ts_client

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
PYTHON = sys.executable
SERVE = [PYTHON, "-m", "trio_mcp_sse", "serve", "--stdio"]
STDIO_APP = [*SERVE, "tests.apps.stdio_app:server"]
STDIO_SCRIPT = [PYTHON, str(ROOT / "tests" / "apps" / "stdio_app.py")]
SDK_SERVER = [PYTHON, str(ROOT / "tests" / "apps" / "sdk_stdio_server.py")]
TEXT = 'héllo ✓\nsecond line\t"quoted"'
PROCESS_TIMEOUT = 60

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(request_id: int, name: str, arguments: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, **params},
    }


def line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


# -- framing, without I/O -------------------------------------------------------------------------------
def test_the_framer_joins_lines_split_across_reads() -> None:
    framer = LineFramer(100)
    assert framer.feed(b'{"a":') == []
    assert framer.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert framer.buffered == 4
    assert framer.feed(b":3}\n") == [b'{"c":3}']
    assert framer.buffered == 0


def test_the_framer_drops_blank_lines_and_keeps_a_carriage_return_json_can_read() -> None:
    framer = LineFramer(100)
    found = framer.feed(b'\n  \n{"a":1}\r\n\r\n')
    assert found == [b'{"a":1}\r']
    assert orjson.loads(found[0]) == {"a": 1}


def test_an_oversized_line_is_reported_once_skipped_and_never_held() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"0123456789") == []  # exactly the bound: still a line in the making
    assert framer.feed(b"a") == [Oversized(11)]
    for _ in range(1000):  # the rest of the line streams in and is dropped as it comes
        assert framer.feed(b"x" * 1000) == []
        assert framer.buffered == 0
    assert framer.feed(b'yyy\n{"ok":1}\n') == [b'{"ok":1}']
    assert framer.feed(b"z" * 11 + b"\n" + b"0123456789\n") == [Oversized(11), b"0123456789"]


def test_the_last_line_needs_no_newline_but_a_skipped_one_stays_skipped() -> None:
    framer = LineFramer(10)
    framer.feed(b'{"a":1}')
    assert framer.end() == [b'{"a":1}']
    framer.feed(b"y" * 20)
    assert framer.end() == []
    with pytest.raises(ValueError, match="max_size"):
        LineFramer(0)


def test_what_is_written_is_always_one_line() -> None:
    compact = b'{"a":"x\\ny"}'
    assert one_line(compact) is compact
    assert one_line(b'{\n  "a": "x\\ny"\n}') == compact


# -- the server over memory streams -------------------------------------------------------------------------
class Wire:
    """The client's ends of a stdio server running in this process."""

    def __init__(self, to_server: trio.abc.SendStream, from_server: trio.abc.ReceiveStream) -> None:
        self.to_server = to_server
        self.from_server = from_server
        self.framer = LineFramer(DEFAULT_MAX_MESSAGE_SIZE)
        self.pending: list[bytes] = []
        self.end: StdioEnd | None = None

    async def send(self, message: dict[str, Any] | bytes) -> None:
        await self.to_server.send_all(message if isinstance(message, bytes) else line(message))

    async def receive(self) -> dict[str, Any]:
        while not self.pending:
            chunk = await self.from_server.receive_some()
            assert chunk, "the server's stdout ended"
            self.pending.extend(found for found in self.framer.feed(chunk) if isinstance(found, bytes))
        message: dict[str, Any] = orjson.loads(self.pending.pop(0))
        return message

    async def initialize(self) -> None:
        await self.send(INITIALIZE)
        assert (await self.receive())["id"] == 1
        await self.send(INITIALIZED)


def slow_server() -> MCPServer:
    server = MCPServer("memory", "1.0.0")

    @server.tool
    async def slow(seconds: float, ctx: Context) -> str:
        await ctx.report_progress(0, 1, "started")
        await trio.sleep(seconds)
        return "slept"

    return server


@asynccontextmanager
async def served(
    server: MCPServer | None = None,
    *,
    stdout: trio.abc.SendStream | None = None,
    **options: Any,
) -> AsyncIterator[Wire]:
    to_server, stdin = trio.testing.memory_stream_one_way_pair()
    server_out, from_server = trio.testing.memory_stream_one_way_pair()
    wire = Wire(to_server, from_server)
    handler = (server or slow_server()).run_session
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            wire.end = await serve_stdio(
                handler, stdin=stdin, stdout=stdout or server_out, handle_signals=False, **options
            )

        nursery.start_soon(run)
        yield wire


async def test_invalid_json_is_answered_with_a_parse_error_and_the_session_goes_on() -> None:
    with trio.fail_after(5):
        async with served() as wire:
            await wire.initialize()
            await wire.send(b"{this is not json\n")
            error = await wire.receive()
            assert error["id"] is None and error["error"]["code"] == -32700
            await wire.send(b'{"jsonrpc":"2.0","id":7}\n')  # JSON, but not a message: -32600, with its id
            invalid = await wire.receive()
            assert invalid["id"] == 7 and invalid["error"]["code"] == -32600
            await wire.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            assert await wire.receive() == {"jsonrpc": "2.0", "id": 2, "result": {}}
            await wire.to_server.aclose()
    assert wire.end is StdioEnd.END_OF_INPUT


async def test_a_line_over_the_bound_is_refused_and_the_next_one_is_read() -> None:
    with trio.fail_after(5):
        async with served(max_message_size=1000) as wire:
            await wire.initialize()
            await wire.send(b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"pad":"' + b"x" * 5000)
            refused = await wire.receive()
            assert refused["id"] is None
            assert refused["error"]["code"] == -32600
            assert "over 1000 bytes" in refused["error"]["message"]
            await wire.send(b'"}}\n')  # the end of that line: skipped with the rest of it
            await wire.send({"jsonrpc": "2.0", "id": 4, "method": "ping"})
            assert await wire.receive() == {"jsonrpc": "2.0", "id": 4, "result": {}}
            await wire.to_server.aclose()


async def test_end_of_input_lets_requests_in_flight_answer() -> None:
    with trio.fail_after(5):
        async with served() as wire:
            await wire.initialize()
            await wire.send(call(2, "slow", {"seconds": 0.2}, _meta={"progressToken": "t"}))
            assert (await wire.receive())["method"] == "notifications/progress"
            await wire.to_server.aclose()
            answer = await wire.receive()
            assert answer["id"] == 2 and answer["result"]["content"][0]["text"] == "slept"
    assert wire.end is StdioEnd.END_OF_INPUT


async def test_end_of_input_cancels_what_outlasts_the_drain() -> None:
    with trio.fail_after(5):
        async with served(drain_timeout=0.2) as wire:
            await wire.initialize()
            await wire.send(call(2, "slow", {"seconds": 60}, _meta={"progressToken": "t"}))
            assert (await wire.receive())["method"] == "notifications/progress"
            started = trio.current_time()
            await wire.to_server.aclose()
    assert trio.current_time() - started < 2
    assert wire.end is StdioEnd.END_OF_INPUT


class StuckStdout(trio.abc.SendStream):
    """A client that never reads (or, with ``broken``, has closed its end of the pipe)."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken:
            raise trio.BrokenResourceError("EPIPE")
        await trio.sleep_forever()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_client_that_stops_reading_ends_the_session() -> None:
    limits = SessionLimits(max_sessions=1, idle_timeout=None, write_timeout=0.2)
    with trio.fail_after(5):
        async with served(stdout=StuckStdout(), limits=limits) as wire:
            await wire.send(INITIALIZE)
    assert wire.end is StdioEnd.CLIENT_NOT_READING


async def test_a_client_that_closes_stdout_ends_the_session() -> None:
    with trio.fail_after(5):
        async with served(stdout=StuckStdout(broken=True)) as wire:
            await wire.send(INITIALIZE)
    assert wire.end is StdioEnd.CLIENT_GONE


async def test_a_handler_that_returns_ends_the_session() -> None:
    async def handler(session: Session) -> None:
        async for incoming in session.incoming:
            assert incoming.message.method == "bye"  # type: ignore[union-attr]
            return

    to_server, stdin = trio.testing.memory_stream_one_way_pair()
    stdout, _ = trio.testing.memory_stream_one_way_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(to_server.send_all, b'{"jsonrpc":"2.0","method":"bye"}\n')
            end = await serve_stdio(handler, stdin=stdin, stdout=stdout, handle_signals=False)
    assert end is StdioEnd.SESSION_ENDED


async def test_streams_are_given_together_and_options_are_checked() -> None:
    _, stdin = trio.testing.memory_stream_one_way_pair()
    with pytest.raises(ValueError, match="both stdin and stdout"):
        await serve_stdio(slow_server().run_session, stdin=stdin)
    with pytest.raises(ValueError, match="max_message_size"):
        await serve_stdio(slow_server().run_session, max_message_size=0)
    with pytest.raises(ValueError, match="drain_timeout"):
        await serve_stdio(slow_server().run_session, drain_timeout=0)


# -- our server in a real process, over raw pipes -----------------------------------------------------------
class RawServer:
    """A server process and its pipes, spoken to one line at a time."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.framer = LineFramer(DEFAULT_MAX_MESSAGE_SIZE)
        self.pending: list[bytes] = []
        self.stdout = bytearray()
        self.stderr = bytearray()

    async def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(message if isinstance(message, bytes) else line(message))

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while not self.pending:
            chunk = await self.process.stdout.receive_some()
            assert chunk, f"the server's stdout ended; stderr:\n{self.stderr.decode()}"
            self.stdout += chunk
            self.pending.extend(found for found in self.framer.feed(chunk) if isinstance(found, bytes))
        message: dict[str, Any] = orjson.loads(self.pending.pop(0))
        return message

    async def until(self, request_id: int) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message.get("id") == request_id:
                return message

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def rest_of_stdout(self) -> bytes:
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self.stdout += chunk
        return bytes(self.stdout)

    @property
    def log(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@asynccontextmanager
async def raw_server(argv: list[str]) -> AsyncIterator[RawServer]:
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT), env=ENV
    )
    server = RawServer(process)
    try:
        async with trio.open_nursery() as nursery:

            async def collect_stderr() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    server.stderr += chunk

            nursery.start_soon(collect_stderr)
            yield server
            with trio.move_on_after(10):
                await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


def every_line_is_json_rpc(stdout: bytes) -> list[dict[str, Any]]:
    messages = []
    for raw in stdout.split(b"\n")[:-1]:
        message = orjson.loads(raw)
        assert message["jsonrpc"] == "2.0", raw
        assert {"method", "result", "error"} & set(message), raw
        messages.append(message)
    assert stdout.endswith(b"\n")
    return messages


@pytest.mark.e2e
async def test_stdout_carries_only_json_rpc_lines_whatever_a_tool_prints() -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        async with raw_server(STDIO_APP) as server:
            await server.send(INITIALIZE)
            await server.until(1)
            await server.send(INITIALIZED)
            await server.send({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "info"}})
            await server.until(2)
            await server.send(call(3, "chatty", {}, _meta={"progressToken": 9}))
            answer = await server.until(3)
            assert answer["result"]["content"] == [{"type": "text", "text": "chatted"}]
            await server.close_stdin()
            stdout = await server.rest_of_stdout()
        assert server.process.returncode == 0, server.log
    messages = every_line_is_json_rpc(stdout)
    methods = [message.get("method") for message in messages]
    assert methods.count("notifications/progress") == 2
    assert "notifications/message" in methods
    for printed in (
        "stdio_app imported (a print at import time)",
        "printed by a tool",
        "written to sys.stdout by a tool",
        "written to fd 1 by a tool",
        "logged by a tool",
        "printed by a child process",
    ):
        assert printed in server.log
        assert printed.encode() not in stdout
    assert "stdin closed" in server.log
    assert "Traceback" not in server.log


@pytest.mark.e2e
async def test_end_of_input_exits_0_after_answering_what_is_in_flight() -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        async with raw_server(STDIO_APP) as server:
            await server.send(INITIALIZE)
            await server.until(1)
            await server.send(INITIALIZED)
            await server.send(call(2, "slow", {"seconds": 0.5}))
            await server.close_stdin()
            answer = await server.until(2)
            assert answer["result"]["content"] == [{"type": "text", "text": "slept 0.5s"}]
            await server.rest_of_stdout()
        assert server.process.returncode == 0, server.log


@pytest.mark.e2e
async def test_invalid_json_and_an_oversized_line_over_real_pipes() -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        async with raw_server(STDIO_APP) as server:
            await server.send(INITIALIZE)
            await server.until(1)
            await server.send(b"not json at all\n")
            assert (await server.receive())["error"]["code"] == -32700
            await server.send(b'{"jsonrpc":"2.0","id":5,"method":"ping","params":{"x":"' + b"y" * DEFAULT_MAX_MESSAGE_SIZE)
            refused = await server.receive()
            assert refused["id"] is None and refused["error"]["code"] == -32600
            await server.send(b'"}}\n')
            await server.send({"jsonrpc": "2.0", "id": 6, "method": "ping"})
            assert await server.receive() == {"jsonrpc": "2.0", "id": 6, "result": {}}
            await server.close_stdin()
            await server.rest_of_stdout()
        assert server.process.returncode == 0, server.log
    assert "more than 16777216 bytes" in server.log


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_cancels_requests_and_the_server_exits(signum: signal.Signals) -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        async with raw_server(STDIO_APP) as server:
            await server.send(INITIALIZE)
            await server.until(1)
            await server.send(INITIALIZED)
            await server.send(call(2, "slow", {"seconds": 60}))
            await server.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
            await server.until(3)  # the slow call is running
            server.process.send_signal(signum)
            with trio.fail_after(10):
                stdout = await server.rest_of_stdout()
        assert server.process.returncode == 0, server.log
    assert [message.get("id") for message in every_line_is_json_rpc(stdout)] == [1, 3]
    assert f"{signum.name} received" in server.log
    assert "Traceback" not in server.log


@pytest.mark.e2e
async def test_the_command_refuses_what_it_cannot_serve_over_stdio() -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        app = await trio.run_process(
            [*SERVE, "examples.echo_server:app"], capture_stdout=True, capture_stderr=True, check=False, cwd=str(ROOT), env=ENV
        )
        workers = await trio.run_process(
            [*SERVE, "--workers", "2", "examples.echo_server:server"],
            capture_stdout=True, capture_stderr=True, check=False, cwd=str(ROOT), env=ENV,
        )
        missing = await trio.run_process(
            [*SERVE, "examples.echo_server:nothing"], capture_stdout=True, capture_stderr=True, check=False, cwd=str(ROOT), env=ENV
        )
    assert app.returncode == 2 and app.stdout == b""
    assert b"not an MCPServer" in app.stderr and b"Traceback" not in app.stderr
    assert workers.returncode == 2 and b"--stdio serves one session" in workers.stderr
    assert missing.returncode == 2 and b"has no attribute 'nothing'" in missing.stderr


# -- our client, against our server and against processes that misbehave ----------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("command", [STDIO_APP, STDIO_SCRIPT], ids=["serve-stdio", "run_stdio"])
async def test_our_client_against_our_server(command: list[str]) -> None:
    stderr: list[str] = []
    logs: list[Any] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_log(notification: Any) -> None:
        logs.append(notification.params["data"])

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def sample(params: mcp_types.CreateMessageRequestParams) -> dict[str, Any]:
        asked = params.messages[0].content
        assert isinstance(asked, mcp_types.TextContent)
        return {"role": "assistant", "content": {"type": "text", "text": asked.text[::-1]}, "model": "reverse"}

    with trio.fail_after(PROCESS_TIMEOUT):
        async with (
            connect_stdio(command, env={"PYTHONPATH": str(ROOT)}, cwd=ROOT, stderr=stderr.append) as connection,
            ClientSession(
                connection, notification_handlers={"notifications/message": on_log}, sampling_handler=sample
            ) as session,
        ):
            await session.negotiate()  # server/discover is refused: the handshake era
            assert session.era == "handshake"
            assert session.protocol_version == "2025-11-25"
            assert session.server_info is not None and session.server_info.name == "stdio-test"
            tools = await session.list_tools()
            assert sorted(tool.name for tool in tools.tools) == ["ask_model", "big", "chatty", "echo", "slow"]
            echoed = await session.call_tool("echo", {"text": TEXT})
            assert echoed.content == [mcp_types.TextContent(type="text", text=TEXT)]
            big = await session.call_tool("big", {"size": 3 * 1024 * 1024})  # one 3 MiB line
            assert isinstance(big.content[0], mcp_types.TextContent) and len(big.content[0].text) == 3 * 1024 * 1024
            await session.set_logging_level("info")
            chatted = await session.call_tool("chatty", {}, progress=on_progress)
            assert chatted.content == [mcp_types.TextContent(type="text", text="chatted")]
            asked = await session.call_tool("ask_model", {"question": "stdio"})  # the server asks the client
            assert asked.content == [mcp_types.TextContent(type="text", text="the model said: oidts")]
            with trio.move_on_after(0.2):  # a cancelled call: notifications/cancelled over stdin
                await session.call_tool("slow", {"seconds": 60})
            await session.ping()
    assert connection.returncode == 0
    assert progress == [(1.0, 2.0, "halfway"), (2.0, 2.0, "done")]
    assert logs == ["a log message for the client"]
    text = "\n".join(stderr)
    assert "printed by a tool" in text and "logged by a tool" in text
    # It exited at end of stdin: it logs a SIGTERM it gets (the next step of the shutdown).
    assert "stdin closed" in text and "SIGTERM" not in text and "Traceback" not in text


@pytest.mark.e2e
async def test_a_server_that_ignores_end_of_input_gets_sigterm() -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        async with connect_stdio(
            [PYTHON, "-c", "import time; time.sleep(60)"], shutdown_timeout=0.3, kill_timeout=5
        ) as connection:
            pass
    assert connection.returncode == -signal.SIGTERM


@pytest.mark.e2e
async def test_a_server_that_ignores_sigterm_gets_sigkill() -> None:
    script = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', file=sys.stderr, flush=True); time.sleep(60)"
    ready = trio.Event()
    with trio.fail_after(PROCESS_TIMEOUT):
        async with connect_stdio(
            [PYTHON, "-c", script], stderr=lambda text: ready.set(), shutdown_timeout=0.2, kill_timeout=0.3
        ) as connection:
            await ready.wait()  # SIGTERM is ignored from here on
        assert connection.returncode == -signal.SIGKILL


@pytest.mark.e2e
async def test_a_server_that_exits_ends_the_connection_with_its_status() -> None:
    script = "import sys; sys.stdin.readline(); print('giving up', file=sys.stderr); sys.exit(3)"
    connections = []

    async def use() -> None:
        async with connect_stdio([PYTHON, "-c", script], stderr="discard") as connection:
            connections.append(connection)
            await connection.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            await trio.sleep_forever()

    with trio.fail_after(PROCESS_TIMEOUT), pytest.raises(ServerExitedError) as raised:
        await use()
    assert raised.value.returncode == 3
    assert "exited with status 3" in str(raised.value)
    assert connections[0].closed


@pytest.mark.e2e
async def test_lines_that_are_not_messages_are_skipped_and_an_oversized_one_ends_the_connection() -> None:
    script = (
        "import sys; "
        "sys.stdout.write('garbage\\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/hello\"}\\n'); "
        "sys.stdout.write('x' * 5000 + '\\n'); sys.stdout.flush(); sys.stdin.read()"
    )
    connections = []

    async def use() -> None:
        async with connect_stdio([PYTHON, "-c", script], max_message_size=1000) as connection:
            connections.append(connection)
            first = await connection.incoming.receive()
            assert getattr(first, "method", None) == "notifications/hello"
            await trio.sleep_forever()

    with trio.fail_after(PROCESS_TIMEOUT), pytest.raises(EventTooLargeError) as raised:
        await use()
    assert raised.value.limit == 1000
    assert connections[0].returncode == 0  # its stdin was closed: it read to the end and exited


@pytest.mark.e2e
async def test_a_cancelled_caller_leaves_no_process_behind() -> None:
    with trio.fail_after(PROCESS_TIMEOUT):
        with trio.move_on_after(0.5):
            async with connect_stdio(
                [PYTHON, "-c", "import time; time.sleep(60)"], shutdown_timeout=0.2, kill_timeout=0.5
            ) as connection:
                await trio.sleep_forever()
    assert connection.returncode is not None


@pytest.mark.e2e
async def test_the_command_is_checked() -> None:
    with pytest.raises(ConnectError, match="cannot start the server"):
        async with connect_stdio(["/nonexistent/mcp-server"]):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="sequence of arguments"):
        async with connect_stdio("python -m server"):  # type: ignore[arg-type]
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="stderr"):
        async with connect_stdio([PYTHON], stderr="somewhere"):  # type: ignore[arg-type]
            pass  # pragma: no cover


@pytest.mark.e2e
async def test_the_environment_is_inherited_added_to_or_replaced() -> None:
    script = "import json, os, sys; sys.stderr.write(json.dumps([os.environ.get('EXTRA'), 'HOME' in os.environ]) + '\\n')"
    seen: list[str] = []
    with trio.fail_after(PROCESS_TIMEOUT):
        async with connect_stdio([PYTHON, "-c", script], env={"EXTRA": "1"}, stderr=seen.append):
            pass
        async with connect_stdio([PYTHON, "-c", script], env={"EXTRA": "2"}, inherit_env=False, stderr=seen.append):
            pass
    assert [json.loads(text) for text in seen] == [["1", "HOME" in os.environ], ["2", False]]


# -- the official SDKs ------------------------------------------------------------------------------------
async def run_checked(argv: list[str], **options: Any) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(PROCESS_TIMEOUT):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False, **options)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    return result


@pytest.mark.e2e
@pytest.mark.parametrize("command", [STDIO_APP, STDIO_SCRIPT], ids=["serve-stdio", "run_stdio"])
async def test_the_official_python_sdk_stdio_client(command: list[str]) -> None:
    result = await run_checked([PYTHON, str(ROOT / "tests" / "sdk_stdio_client.py"), *command], cwd=str(ROOT), env=ENV)
    seen = json.loads(result.stdout)
    assert seen["protocolVersion"] == "2025-11-25"  # discover refused, initialize negotiated
    assert seen["serverInfo"] == {"name": "stdio-test", "version": "1.0.0"}
    assert seen["tools"] == ["ask_model", "big", "chatty", "echo", "slow"]
    assert seen["echoed"] == [seen["sent"]]
    assert seen["chatty"] == ["chatted"]
    assert seen["progress"] == [[1.0, 2.0, "halfway"], [2.0, 2.0, "done"]]
    assert seen["logs"] == ["a log message for the client"]
    assert seen["slow"] == ["slept 0.05s"]
    assert b"Traceback" not in result.stderr


@pytest.mark.e2e
async def test_the_official_typescript_sdk_stdio_client() -> None:
    script = installed_ts_client("stdio_client.mjs")
    result = await run_checked(["node", str(script), *STDIO_APP], cwd=str(ROOT), env=ENV)
    seen = json.loads(result.stdout)
    assert seen["serverVersion"] == {"name": "stdio-test", "version": "1.0.0"}
    assert seen["tools"] == ["ask_model", "big", "chatty", "echo", "slow"]
    assert seen["echoed"] == [{"type": "text", "text": seen["sent"]}]
    assert seen["chatty"] == [{"type": "text", "text": "chatted"}]
    assert seen["progress"] == [[1, 2, "halfway"], [2, 2, "done"]]
    assert seen["logs"] == ["a log message for the client"]
    assert seen["invalid"]["code"] == -32602
    assert "printed by a tool" in seen["stderr"]
    assert "stdin closed" in seen["stderr"] and "SIGTERM" not in seen["stderr"]


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["handshake", "auto"])
async def test_our_client_against_the_official_python_sdk_stdio_server(protocol: str) -> None:
    stderr: list[str] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    with trio.fail_after(PROCESS_TIMEOUT):
        async with (
            connect_stdio(SDK_SERVER, env={"PYTHONPATH": str(ROOT)}, stderr=stderr.append) as connection,
            ClientSession(connection, protocol=protocol) as session,  # type: ignore[arg-type]
        ):
            await session.negotiate()
            assert session.era == ("handshake" if protocol == "handshake" else "modern")
            assert session.server_info is not None and session.server_info.name == "sdk-stdio-server"
            tools = await session.list_tools()
            assert {"echo", "count", "shout"} <= {tool.name for tool in tools.tools}
            echoed = await session.call_tool("echo", {"text": TEXT})
            assert echoed.content == [mcp_types.TextContent(type="text", text=TEXT)]
            counted = await session.call_tool("count", {"n": 3}, progress=on_progress)
            assert counted.content == [mcp_types.TextContent(type="text", text="counted to 3")]
            shouted = await session.call_tool("shout", {"text": "hi"})
            assert shouted.content == [mcp_types.TextContent(type="text", text="HI")]
    assert progress == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert "the SDK server's stderr" in stderr
    assert connection.returncode == 0  # it exited at end of stdin: SIGTERM would have killed it


@pytest.mark.e2e
async def test_the_client_command_starts_a_stdio_server() -> None:
    argv = [PYTHON, "-m", "trio_mcp_sse", "client", "--call", "echo", "--arg", f"text={TEXT}", "--stdio", "--", *STDIO_APP]
    result = await run_checked(argv, cwd=str(ROOT), env=ENV)
    assert json.loads(result.stdout) == {"content": [{"type": "text", "text": TEXT}]}
    with trio.fail_after(PROCESS_TIMEOUT):
        failed = await trio.run_process(
            [PYTHON, "-m", "trio_mcp_sse", "client", "--stdio", PYTHON, "-c", "import sys; sys.exit(4)"],
            capture_stdout=True, capture_stderr=True, check=False, cwd=str(ROOT), env=ENV,
        )
    assert failed.returncode == 1 and failed.stdout == b""
    assert failed.stderr.decode().startswith("error: the stdio server ")
    assert "exited with status 4" in failed.stderr.decode()


# -- the server's lifespan, as an app would run it ---------------------------------------------------------
LIFESPAN_APP = [*SERVE, "tests.apps.lifespan_app:server"]


@pytest.mark.e2e
async def test_serve_stdio_enters_the_lifespan_once_and_leaves_it_at_end_of_input(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    env = {**ENV, "LIFESPAN_LOG": str(log)}
    async with connect_stdio(LIFESPAN_APP, env=env, stderr="discard") as connection, ClientSession(connection, protocol="handshake") as session:
        with trio.fail_after(PROCESS_TIMEOUT):
            await session.initialize()
            result = await session.call_tool("opened")
            assert result.structured_content == {"result": 1}  # the pool the lifespan opened, seen by the tool
    lines = log.read_text().split()
    assert lines[0::2] == ["entered", "exited"], lines


@pytest.mark.e2e
async def test_serve_stdio_whose_lifespan_fails_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    env = {**ENV, "LIFESPAN_LOG": str(tmp_path / "lifespan.log"), "LIFESPAN_FAIL": "1"}
    with trio.fail_after(PROCESS_TIMEOUT):
        result = await trio.run_process(LIFESPAN_APP, stdin=b"", capture_stdout=True, capture_stderr=True, check=False, env=env)
    assert result.returncode == 1
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.strip().splitlines() == [
        "error: start-up failed: the lifespan of MCPServer 'lifespan-e2e' failed to start: "
        "ConnectionRefusedError: database at 127.0.0.1:5432 refused the connection"
    ], stderr


async def test_serve_stdio_in_process_enters_the_lifespan() -> None:
    seen: list[str] = []

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[str]:
        seen.append("entered")
        yield "pool"
        seen.append("exited")

    server = MCPServer("with-lifespan", "1.0.0", lifespan=lifespan)

    @server.tool
    async def where(ctx: Context) -> str:
        return str(ctx.lifespan_context)

    to_server_send, to_server_receive = trio.testing.memory_stream_one_way_pair()
    from_server_send, from_server_receive = trio.testing.memory_stream_one_way_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: server.serve_stdio(stdin=to_server_receive, stdout=from_server_send, handle_signals=False)
            )
            for message in (INITIALIZE, INITIALIZED, call(2, "where", {})):
                await to_server_send.send_all(line(message))
            received = b""
            while b'"id":2' not in received:
                received += await from_server_receive.receive_some()
            await to_server_send.aclose()
    answer = orjson.loads(received.strip().splitlines()[-1])
    assert answer["result"]["content"][0]["text"] == "pool"
    assert seen == ["entered", "exited"]
