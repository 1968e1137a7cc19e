"""Interop with the official TypeScript SDK's WebSocketClientTransport (Node 22), against real hypercorn.

Node 22 is the one the project installs for the conformance suite
(``make conformance/node_modules/.installed``: the ``node`` npm package, pinned in
``conformance/package-lock.json``); the SDK comes from ``tests/interop_ts``'s lock
file.  Both are installed on first use; without npm the test fails, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from .e2e_support import ROOT, hypercorn_argv, running_server, server_state

pytestmark = pytest.mark.e2e

CLIENT_DIR = Path(__file__).resolve().parent / "interop_ts"
NODE_22 = ROOT / "conformance" / "node_modules" / ".bin" / "node"


@pytest.fixture(scope="module")
def node_22_client() -> tuple[Path, Path]:
    """Node 22 and the WebSocket client script, installed from the project's lock files if missing."""
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to install Node 22 and the TypeScript SDK (see docs/conformance.md)")
    if not NODE_22.exists():
        subprocess.run(
            ["make", "conformance/node_modules/.installed"], cwd=ROOT, check=True, timeout=600, stdout=subprocess.DEVNULL
        )
    marker = CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if not marker.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENT_DIR, check=True, timeout=300, stdout=subprocess.DEVNULL,
        )
    version = subprocess.run([str(NODE_22), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v22."), version
    return NODE_22, CLIENT_DIR / "websocket_client.mjs"


@pytest.mark.parametrize(
    ("app", "idle_ms"),
    [
        ("tests.apps.e2e_app:app", 0),
        # Silent for 3 s, while an unanswered ping would close the connection after 1.3 s: the SDK answers.
        ("tests.apps.websocket_ping_app:app", 3000),
    ],
)
async def test_official_typescript_websocket_client(node_22_client: tuple[Path, Path], app: str, idle_ms: int) -> None:
    node, script = node_22_client
    async with running_server(hypercorn_argv(app)) as server:
        with trio.fail_after(60):
            result = await trio.run_process(
                [str(node), str(script), f"ws://127.0.0.1:{server.port}/ws", str(idle_ms)],
                capture_stdout=True, capture_stderr=True, check=False,
            )
            assert result.returncode == 0, result.stderr.decode()
            seen = json.loads(result.stdout)
            assert seen["subprotocol"] == "mcp"
            assert seen["serverVersion"] == {"name": "echo", "version": "1.0.0"}
            assert seen["tools"] == ["add", "echo"]
            assert seen["echoed"] == [{"type": "text", "text": seen["sent"]}]
            assert seen["added"] == [{"type": "text", "text": "5.5"}]
            assert seen["invalid"]["code"] == -32602
            while (await server_state(server))["sessions"] != 0:  # the client's close ended its session
                await trio.sleep(0.05)
        assert "Traceback" not in server.log
