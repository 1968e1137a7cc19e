"""Both protocol eras against real servers: the official SDK's (which speaks both) and ours.

Real loopback sockets, real clock, each test bounded by an absolute
``fail_after``.  The SDK server (``tests/client_helpers_sdk_server.py``) runs
once for the module in a uvicorn subprocess.  The same handlers answer the
SDK's ``sign_up`` tool in both eras: as server->client requests in the
handshake era, as an ``InputRequiredResult`` and a retry in 2026-07-28.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mcp_types
import orjson
import pytest
import trio

from tests.client_helpers import serve_in_process, start_sdk_server, stop_process
from trio_mcp_sse import MCPServer
from trio_mcp_sse.client import ProtocolChoice, open_session
from trio_mcp_sse.client._cli import main as cli_main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sdk_url() -> Iterator[str]:
    process, url = start_sdk_server("streamable")
    try:
        yield f"{url}/mcp"
    finally:
        stop_process(process)


def _text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


@pytest.mark.parametrize(
    ("protocol", "era", "version"),
    [
        ("auto", "modern", "2026-07-28"),
        ("2026-07-28", "modern", "2026-07-28"),
        ("handshake", "handshake", "2025-11-25"),
    ],
)
async def test_the_sdk_server_in_either_era(
    sdk_url: str, protocol: ProtocolChoice, era: str, version: str
) -> None:
    asked: list[str] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def elicit(params: Any) -> dict[str, Any]:
        asked.append(params.message)
        return {"action": "accept", "content": {"name": "octocat"}}

    async def roots() -> dict[str, Any]:
        return {"roots": [{"uri": "file:///work", "name": "work"}]}

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    with trio.fail_after(30):
        async with open_session(
            sdk_url, protocol=protocol, elicitation_handler=elicit, roots_handler=roots
        ) as session:
            assert session.era == era
            assert session.protocol_version == version
            assert session.server_info is not None and session.server_info.name == "sdk-server"
            assert session.instructions == "an interop test server"
            assert {"add", "sign_up"} <= {tool.name for tool in (await session.list_tools()).tools}
            assert _text(await session.call_tool("add", {"a": 2, "b": 3})) == "5.0"
            assert _text(await session.call_tool("sign_up")) == "signed up octocat at file:///work"
            assert asked == ["Who is signing up?"]
            assert (
                _text(await session.call_tool("count", {"n": 2}, progress=on_progress))
                == "counted to 2"
            )
            assert progress == [(1.0, 2.0, "step 1"), (2.0, 2.0, "step 2")]
            read = await session.read_resource("memo://greeting")
            assert read.contents[0].model_dump()["text"] == "hello from a resource"
            prompt = await session.get_prompt("greet", {"who": "Ada"})
            assert prompt.messages[0].content == mcp_types.TextContent(
                type="text", text="Please greet Ada."
            )


async def test_listen_and_cancel_on_the_sdk_server_in_2026(sdk_url: str) -> None:
    with trio.fail_after(30):
        async with open_session(sdk_url, protocol="2026-07-28") as session:
            async with session.listen(
                tools_list_changed=True, resource_subscriptions=["memo://greeting"]
            ) as subscription:
                assert subscription.acknowledged == {
                    "toolsListChanged": True,
                    "resourceSubscriptions": ["memo://greeting"],
                }
            # Cancelling a call closes its stream; the server stops the tool.
            with trio.CancelScope() as scope:

                async def cancel_once_started(
                    value: float, total: float | None, message: str | None
                ) -> None:
                    scope.cancel()

                await session.call_tool("wait_forever", progress=cancel_once_started)
            assert scope.cancelled_caught
            with trio.fail_after(10):  # the server records the cancelled call
                while not (await session.call_tool("was_cancelled")).structured_content["result"]:  # type: ignore[index]
                    await trio.sleep(0.05)


async def test_our_server_speaks_both_eras_and_auto_picks_the_newest() -> None:
    # Fallback to initialize against a handshake-only server is covered in memory
    # (tests/test_client_modern.py); our own server now speaks 2026-07-28 too.
    server = MCPServer("ours", "1.0.0")

    @server.tool
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    with trio.fail_after(30):
        async with serve_in_process(server.http_app()) as base:
            async with open_session(f"{base}/mcp") as session:
                assert (session.era, session.protocol_version) == ("modern", "2026-07-28")
                assert _text(await session.call_tool("echo", {"text": "new"})) == "new"
            async with open_session(f"{base}/mcp", protocol="handshake") as session:
                assert (session.era, session.protocol_version) == ("handshake", "2025-11-25")
                assert _text(await session.call_tool("echo", {"text": "old"})) == "old"


async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli_main, list(argv))


async def test_the_cli_speaks_the_newest_era_or_the_one_asked_for(
    sdk_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(30):
        assert await _cli(sdk_url, "--call", "add", "--arg", "a=1", "--arg", "b=2") == 0
        assert orjson.loads(capsys.readouterr().out)["content"] == [{"type": "text", "text": "3.0"}]
        assert await _cli(sdk_url, "--protocol", "2026-07-28", "--call", "echo", "--arg", "text=new") == 0
        assert orjson.loads(capsys.readouterr().out)["content"] == [{"type": "text", "text": "new"}]
        assert await _cli(sdk_url, "--protocol", "2026-07-28", "--transport", "sse") == 2
        assert "not HTTP+SSE" in capsys.readouterr().err
