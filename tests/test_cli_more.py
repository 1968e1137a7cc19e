"""The command line beyond tools: resources, prompts, notifications while a request runs, help, errors.

Servers run on real loopback sockets (hypercorn in the test's nursery, or
``python -m trio_mcp_sse serve`` in a subprocess), so the clock is real and
each test has an absolute ``fail_after``.  The progress bar is checked by
driving the printer directly with a stream that says it is a terminal.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import mcp_types
import orjson
import pytest
import trio

from examples.everything_server import app as everything_app
from tests.client_helpers import (
    ROOT,
    SSE_URL,
    FakeServer,
    answer_initialize,
    asgi_http_client,
    free_port,
    serve_in_process,
)
from tests.e2e_support import running_server
from trio_mcp_sse.client import ClientSession, connect_sse
from trio_mcp_sse.client._cli import _watched
from trio_mcp_sse.client._cli import main as cli_main
from trio_mcp_sse.client._cli_output import NotificationPrinter, format_log
from trio_mcp_sse.client._session import JSONRPCNotification
from trio_mcp_sse.server import Context, MCPServer


async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli_main, list(argv))


def _chatty_server() -> MCPServer:
    """A tool that interleaves log messages and progress, with no pause: all of it arrives
    together with the result, which is when the order is easiest to get wrong."""
    server = MCPServer("chatty", "1.0.0")

    @server.tool(description="Logs and reports progress at each step")
    async def chatty(ctx: Context, steps: int = 3) -> str:
        for step in range(1, steps + 1):
            await ctx.info(f"step {step} starting", logger="chatty")
            await ctx.report_progress(step, steps, f"step {step}")
        await ctx.warning({"done": True, "line": "one\nline"})
        return "finished"

    @server.resource("chatty://status", name="status", mime_type="text/plain")
    async def status(ctx: Context) -> str:
        await ctx.info("reading the status")
        await ctx.report_progress(1, 1)
        return "all good"

    return server


CHATTY_LINES = [
    "[info] chatty: step 1 starting",
    "progress 1/3 (33%) step 1",
    "[info] chatty: step 2 starting",
    "progress 2/3 (67%) step 2",
    "[info] chatty: step 3 starting",
    "progress 3/3 (100%) step 3",
    '[warning] {"done":true,"line":"one\\nline"}',
]


# -- help ------------------------------------------------------------------------------------------
async def test_help_shows_every_command_option_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("-h", "--help"):
        assert cli_main([flag]) == 0
        shown = capsys.readouterr().out
        for option in (
            "--tools", "--call TOOL", "--resources", "--templates", "--read URI", "--prompts",
            "--prompt NAME", "--arg NAME=VALUE", "--args-json", "--log-level", "--transport",
            "--protocol", "--header", "--timeout", "--request-timeout", "--read-timeout",
            "--max-event-size", "--oauth", "--client-id", "--client-secret-env",
            "--client-metadata-url", "--token-store", "--redirect-port", "--no-browser",
            "--login-timeout",
        ):  # fmt: skip
            assert option in shown, option
        assert "examples:" in shown
        assert "--prompt greet --arg name=Ada" in shown
        assert "exit status:" in shown


async def test_commands_are_exclusive_and_arguments_need_one(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    assert cli_main([url, "--resources", "--prompts"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli_main([url, "--read", "x://y", "--arg", "a=1"]) == 2
    assert capsys.readouterr().err == "error: --arg and --args-json need --call TOOL or --prompt NAME\n"


# -- resources and prompts -------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/mcp", "/sse"])
async def test_resources_templates_and_read(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(30):
        async with serve_in_process(everything_app) as base:
            url = base + path
            assert await _cli(url, "--resources") == 0
            listed = orjson.loads(capsys.readouterr().out)
            assert {"static-text", "static-binary", "watched-resource"} <= {r["name"] for r in listed}
            assert {r["uri"] for r in listed} >= {"test://static-text", "test://static-binary"}

            assert await _cli(url, "--templates") == 0
            templates = orjson.loads(capsys.readouterr().out)
            assert [t["uriTemplate"] for t in templates] == ["test://template/{id}/data"]

            assert await _cli(url, "--read", "test://static-text") == 0
            captured = capsys.readouterr()
            contents = orjson.loads(captured.out)["contents"]
            assert contents[0]["text"] == "This is the content of the static text resource."
            assert captured.err == ""

            assert await _cli(url, "--read", "test://template/42/data") == 0
            data = orjson.loads(orjson.loads(capsys.readouterr().out)["contents"][0]["text"])
            assert data == {"id": "42", "templateTest": True, "data": "Data for ID: 42"}

            assert await _cli(url, "--read", "test://static-binary") == 0
            assert "blob" in orjson.loads(capsys.readouterr().out)["contents"][0]

            assert await _cli(url, "--read", "test://nowhere") == 1
            assert capsys.readouterr().err.startswith("error: Resource not found: test://nowhere")


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
async def test_prompts_and_prompt_with_arguments(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(30):
        async with serve_in_process(everything_app) as base:
            url = base + path
            assert await _cli(url, "--prompts") == 0
            prompts = {p["name"]: p for p in orjson.loads(capsys.readouterr().out)}
            assert "test_simple_prompt" in prompts
            assert [a["name"] for a in prompts["test_prompt_with_arguments"]["arguments"]] == ["arg1", "arg2"]

            assert await _cli(url, "--prompt", "test_simple_prompt") == 0
            messages = orjson.loads(capsys.readouterr().out)["messages"]
            assert messages[0]["content"]["text"] == "This is a simple prompt for testing."

            # Prompt arguments are strings: "2" stays "2", not the number 2.
            argv = ["--prompt", "test_prompt_with_arguments", "--arg", "arg1=2", "--args-json", '{"arg2": "b"}']
            assert await _cli(url, *argv) == 0
            messages = orjson.loads(capsys.readouterr().out)["messages"]
            assert messages[0]["content"]["text"] == "Prompt with arguments: arg1='2', arg2='b'"

            assert await _cli(url, "--prompt", "test_prompt_with_arguments", "--args-json", '{"arg1": 1}') == 2
            assert capsys.readouterr().err == "error: --args-json: prompt argument 'arg1' must be a string\n"

            assert await _cli(url, "--prompt", "test_prompt_with_arguments", "--arg", "arg1=x") == 1
            assert capsys.readouterr().err.startswith("error: ")


# -- notifications while a request runs ------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "protocol"),
    [("/mcp", "auto"), ("/mcp", "handshake"), ("/sse", "auto")],
)
async def test_logs_and_progress_reach_stderr_in_arrival_order_before_the_result(
    path: str, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(60):
        async with serve_in_process(_chatty_server().http_app()) as base:
            url = base + path
            # Everything arrives at once: repeat, so a race between the handlers and the result shows.
            for _ in range(5):
                assert await _cli(url, "--protocol", protocol, "--call", "chatty") == 0
                captured = capsys.readouterr()
                assert captured.err.splitlines() == CHATTY_LINES
                assert orjson.loads(captured.out)["content"] == [{"type": "text", "text": "finished"}]

            assert await _cli(url, "--protocol", protocol, "--read", "chatty://status") == 0
            captured = capsys.readouterr()
            assert captured.err.splitlines() == ["[info] reading the status", "progress 1/1 (100%)"]
            assert orjson.loads(captured.out)["contents"][0]["text"] == "all good"

            # A higher level keeps the info messages away; progress still comes.
            assert await _cli(url, "--protocol", protocol, "--log-level", "warning", "--call", "chatty") == 0
            assert capsys.readouterr().err.splitlines() == [
                line for line in CHATTY_LINES if not line.startswith("[info]")
            ]


async def test_a_slow_log_handler_still_keeps_the_arrival_order() -> None:
    """Log handlers run on the session's notification task, progress on its receive loop:
    each progress line, and the result, wait for the handlers to catch up."""

    def log(text: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": text}}

    async def on_post(server: FakeServer, message: dict[str, Any]) -> None:
        if await answer_initialize(server, message) or "id" not in message:
            return
        token = message["params"]["_meta"]["progressToken"]
        progress = {"progressToken": token, "progress": 1, "total": 2}
        await server.push(log("first"))
        await server.push({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress})
        await server.push(log("second"))
        result = {"content": [{"type": "text", "text": "done"}]}
        await server.push({"jsonrpc": "2.0", "id": message["id"], "result": result})

    stream = io.StringIO()
    printer = NotificationPrinter(stream)

    async def slow_log(notification: JSONRPCNotification) -> None:
        await trio.sleep(0.05)  # a slow stderr: the result arrives meanwhile
        printer.log(notification.params or {})

    with trio.fail_after(10):
        async with (
            asgi_http_client(FakeServer(on_post=on_post), lifespan=False) as http,
            connect_sse(SSE_URL, http_client=http) as connection,
            ClientSession(connection, notification_handlers={"notifications/message": slow_log}) as session,
        ):
            await session.initialize()
            params = {"name": "work", "arguments": {}}
            result = await _watched(session, printer, mcp_types.CallToolResult, "tools/call", params)
            # Everything that arrived before the result is shown by the time it is returned.
            assert stream.getvalue().splitlines() == ["[info] first", "progress 1/2 (50%)", "[info] second"]
            assert result.content[0].text == "done"  # type: ignore[union-attr]


async def test_the_everything_server_in_a_subprocess_pipes_json_and_reports_on_stderr() -> None:
    argv = [sys.executable, "-m", "trio_mcp_sse", "serve", "examples.everything_server:app", "--bind", "127.0.0.1:0"]
    with trio.fail_after(60):
        async with running_server(argv) as server:

            async def client(*args: str) -> Any:
                return await trio.run_process(
                    [sys.executable, "-m", "trio_mcp_sse", "client", f"{server.url}/mcp", *args],
                    capture_stdout=True,
                    capture_stderr=True,
                    cwd=str(ROOT),
                    check=False,
                )

            done = await client("--call", "test_tool_with_progress")
            assert done.returncode == 0, done.stderr
            assert done.stderr.decode().splitlines() == [
                f"progress {step}/100 ({step}%) Completed step {step} of 100" for step in (0, 50, 100)
            ]
            # The server names the token it was given: the client asked for progress.
            assert orjson.loads(done.stdout)["content"][0]["text"] != "0"

            done = await client("--call", "test_tool_with_logging")
            assert done.returncode == 0, done.stderr
            assert done.stderr.decode().splitlines() == [
                "[info] Tool execution started",
                "[info] Tool processing data",
                "[info] Tool execution completed",
            ]
            assert orjson.loads(done.stdout)["content"][0]["text"] == "Tool with logging executed successfully"

            done = await client("--templates")
            assert done.returncode == 0, done.stderr
            assert orjson.loads(done.stdout)[0]["uriTemplate"] == "test://template/{id}/data"


# -- the printer -----------------------------------------------------------------------------------
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_one_bar_redrawn_in_place() -> None:
    screen = FakeTerminal()
    printer = NotificationPrinter(screen, width=80)
    assert printer.tty
    printer.progress(1, 4, "loading")
    printer.progress(2, 4, "loading more")
    printer.log({"level": "info", "logger": "db", "data": "connected"})
    printer.progress(4, 4, None)
    printer.finish()
    printer.finish()  # nothing left to end
    first = "[#####---------------] 1/4 (25%) loading"
    second = "[##########----------] 2/4 (50%) loading more"
    last = "[####################] 4/4 (100%)"
    assert screen.getvalue() == (
        "\r" + first
        + "\r" + second
        # A log line wipes the bar, takes its line, and the bar is drawn again below it.
        + "\r" + " " * len(second) + "\r" + "[info] db: connected\n" + second
        # A shorter bar is padded over the longer one it replaces.
        + "\r" + last + " " * (len(second) - len(last))
        + "\n"
    )  # fmt: skip
    # What the terminal shows once the carriage returns are applied: one log line, one bar.
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in screen.getvalue().split("\n")]
    assert shown == ["[info] db: connected", last, ""]


def test_on_a_terminal_the_bar_fits_the_line_and_works_without_a_total() -> None:
    screen = FakeTerminal()
    printer = NotificationPrinter(screen, width=30)
    printer.progress(3, None, "a long message that would wrap the line")
    assert screen.getvalue() == "\r3 a long message that woul..."
    assert len(screen.getvalue()) - 1 == 29


def test_elsewhere_progress_and_logs_are_plain_lines() -> None:
    stream = io.StringIO()
    printer = NotificationPrinter(stream)
    assert not printer.tty
    printer.progress(0.5, 2, None)
    printer.log({"level": "error", "data": {"code": 7}})
    printer.progress(3, None, "step\r\x1b[2Jthree")
    printer.finish()
    assert stream.getvalue() == (
        "progress 0.5/2 (25%)\n"
        '[error] {"code":7}\n'
        "progress 3 step\\r\\x1b[2Jthree\n"
    )


def test_a_log_line_is_one_line_whatever_the_server_sends() -> None:
    assert format_log({"level": "debug", "logger": "a\nb", "data": "x\ny"}) == "[debug] a\\nb: x\\ny"
    assert format_log({"level": "notice", "data": None}) == "[notice] null"
    assert format_log({"level": "info", "data": "z" * 5000}) == "[info] " + "z" * 2000 + "..."


# -- errors name the transport ----------------------------------------------------------------------
async def test_errors_name_the_transport_tried(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with trio.fail_after(30):
        assert await _cli(f"http://127.0.0.1:{port}/mcp") == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: Streamable HTTP at http://127.0.0.1:{port}/mcp: cannot connect")
        assert err.count("\n") == 1

        assert await _cli(f"http://127.0.0.1:{port}/sse") == 1
        assert capsys.readouterr().err.startswith(f"error: HTTP+SSE at http://127.0.0.1:{port}/sse: cannot connect")

        assert await _cli(f"ws://127.0.0.1:{port}/ws") == 1
        assert capsys.readouterr().err.startswith(f"error: WebSocket at ws://127.0.0.1:{port}/ws: ")

        async with serve_in_process(everything_app) as base:
            # Refused as Streamable HTTP, then as HTTP+SSE: both attempts are told.
            url = f"{base}/nowhere"
            assert await _cli(url, "--call", "test_simple_text") == 1
            err = capsys.readouterr().err
            assert err.startswith(f"error: Streamable HTTP at {url}: POST to {url} answered 404 Not Found")
            assert err.endswith(f"; then HTTP+SSE at {url}: GET {url} answered 404 Not Found\n")
            assert err.count("\n") == 1

            # No fallback when the transport is named.
            assert await _cli(url, "--transport", "streamable-http") == 1
            err = capsys.readouterr().err
            assert err.startswith(f"error: Streamable HTTP at {url}: POST to {url} answered 404")
            assert "HTTP+SSE" not in err


def test_the_top_level_help_names_every_command_and_where_their_help_is(capsys: pytest.CaptureFixture[str]) -> None:
    from trio_mcp_sse.__main__ import main as top_main

    assert top_main(["-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m trio_mcp_sse {serve,client} ...")
    assert "\n  serve " in out and "\n  client " in out
    assert "serve -h" in out and "client -h" in out
    assert top_main([]) == 2  # no command: the usage on stderr, status 2
    assert capsys.readouterr().err.startswith("usage:")
