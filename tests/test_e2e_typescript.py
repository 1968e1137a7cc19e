"""Interop with the official TypeScript SDK client (Node.js), against a real hypercorn process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from .e2e_support import hypercorn_argv, running_server

pytestmark = pytest.mark.e2e

CLIENT_DIR = Path(__file__).resolve().parent / "interop_ts"


def installed_ts_client(script: str) -> Path:
    """``tests/interop_ts/<script>`` with its locked dependencies installed (``npm ci`` on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the TypeScript interop test")
    marker = CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if not marker.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENT_DIR, check=True, timeout=300, stdout=subprocess.DEVNULL,
        )
    return CLIENT_DIR / script


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The client script, ready to run."""
    return installed_ts_client("client.mjs")


async def test_official_typescript_client(node_client: Path) -> None:
    async with running_server(hypercorn_argv("tests.apps.e2e_app:app")) as server:
        with trio.fail_after(60):
            result = await trio.run_process(
                ["node", str(node_client), f"{server.url}/sse"], capture_stdout=True, capture_stderr=True, check=False
            )
        assert result.returncode == 0, result.stderr.decode()
        seen = json.loads(result.stdout)
        assert seen["serverVersion"] == {"name": "echo", "version": "1.0.0"}
        assert seen["protocolVersion"] in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
        assert seen["tools"] == ["add", "echo"]
        assert seen["echoed"] == [{"type": "text", "text": seen["sent"]}]
        assert seen["added"] == [{"type": "text", "text": "5.5"}]
        assert seen["invalid"]["code"] == -32602
        assert "Traceback" not in server.log


# -- Streamable HTTP (StreamableHTTPClientTransport) against the example servers --------------------
RECONNECTED = (
    "Reconnection test completed successfully. If you received this, "
    "the client properly reconnected after stream closure."
)


async def run_streamable_client(node_client: Path, app: str, fixture: str) -> tuple[dict[str, Any], str]:
    script = node_client.with_name("streamable_client.mjs")
    async with running_server(hypercorn_argv(f"tests.apps.streamable_apps:{app}")) as server:
        with trio.fail_after(60):
            result = await trio.run_process(
                ["node", str(script), f"{server.url}/mcp", fixture], capture_stdout=True, capture_stderr=True, check=False
            )
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout), server.log


def text(value: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": value}]


@pytest.mark.parametrize("mode", ["sse", "json"])
async def test_official_typescript_streamable_client(node_client: Path, mode: str) -> None:
    seen, log = await run_streamable_client(node_client, f"everything_{mode}", "everything")
    assert seen["serverVersion"] == {"name": "mcp-conformance-test-server", "version": "1.0.0"}
    assert seen["protocolVersion"] == "2025-11-25"
    assert seen["sessionIdLength"] == 32
    assert {"test_simple_text", "test_tool_with_progress", "test_reconnection"} <= set(seen["tools"])
    assert seen["simple"] == text("This is a simple text response for testing.")
    assert seen["logged"] == text("Tool with logging executed successfully")
    assert seen["logs"] == ["Tool execution started", "Tool processing data", "Tool execution completed"]
    assert seen["elicitationMessage"] == "Bonjour?"
    assert seen["elicited"] == text('User response: action=accept, content={"response":"oui"}')
    assert seen["reconnected"] == text(RECONNECTED)
    assert seen["prompt"] == [{"role": "user", "content": {"type": "text", "text": "Prompt with arguments: arg1='x', arg2='y'"}}]
    progress = [[step, 100, f"Completed step {step} of 100"] for step in (0, 50, 100)]
    requests = seen["requests"]
    # The standalone stream was opened after initialization and the session ended with DELETE.
    assert [r["status"] for r in requests if r["method"] == "GET" and r["lastEventId"] is None] == [200]
    assert requests[-1]["method"] == "DELETE" and requests[-1]["status"] == 200
    answered = {r["contentType"] for r in requests if r["method"] == "POST" and r["status"] == 200}
    if mode == "sse":
        assert answered == {"text/event-stream"}
        assert seen["progress"] == progress
        # test_reconnection's stream was ended mid-call: the client resumed it with GET + Last-Event-ID.
        (resumed,) = [r for r in requests if r["lastEventId"] is not None]
        assert resumed["method"] == "GET" and resumed["status"] == 200
        assert resumed["contentType"] == "text/event-stream"
        assert seen["resumptionTokens"] >= 1
    else:
        assert answered == {"application/json"}
        # Progress travels on the standalone stream, which races the JSON answer.
        assert seen["progress"] == progress[: len(seen["progress"])] and len(seen["progress"]) >= 2
        assert [r for r in requests if r["lastEventId"] is not None] == []
    assert "Traceback" not in log


async def test_typescript_streamable_client_gets_updates_on_the_standalone_stream(node_client: Path) -> None:
    seen, log = await run_streamable_client(node_client, "notes_sse", "notes")
    assert seen["serverVersion"] == {"name": "notes", "version": "1.0.0", "title": "Notes"}
    assert seen["updates"] == ["note://welcome"]
    assert seen["read"] == [{"uri": "note://welcome", "mimeType": "text/plain", "text": "edited"}]
    assert "Traceback" not in log
